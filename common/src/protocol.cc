// The error mapping and the non-template parts of the protocol codec.
#include "runnel/common/protocol.h"

namespace runnel::proto {

wire::ErrorCode ToErrorCode(StatusCode code) {
  using wire::ErrorCode;
  switch (code) {
    case StatusCode::kOk:
      return ErrorCode::kNone;
    case StatusCode::kNotFound:
      return ErrorCode::kNotFound;
    case StatusCode::kAlreadyExists:
      return ErrorCode::kAlreadyExists;
    case StatusCode::kInvalidArgument:
      return ErrorCode::kInvalidArgument;
    case StatusCode::kCorruption:
      return ErrorCode::kCorruption;
    case StatusCode::kIOError:
      return ErrorCode::kIOError;
    case StatusCode::kBusy:
      return ErrorCode::kBusy;
    case StatusCode::kTimeout:
      return ErrorCode::kTimeout;
    case StatusCode::kOutOfRange:
      return ErrorCode::kOutOfRange;
    case StatusCode::kTooLarge:
      return ErrorCode::kTooLarge;
    case StatusCode::kOutOfOrderSequence:
      return ErrorCode::kOutOfOrderSequence;
    case StatusCode::kFenced:
      return ErrorCode::kFenced;
    case StatusCode::kShutdown:
      return ErrorCode::kShutdown;
    case StatusCode::kNoSpace:
      return ErrorCode::kNoSpace;
    case StatusCode::kUnauthenticated:
      return ErrorCode::kUnauthenticated;
    case StatusCode::kPermissionDenied:
      return ErrorCode::kPermissionDenied;
  }
  return ErrorCode::kUnknown;
}

Status ToStatus(wire::ErrorCode code, std::string_view message) {
  using wire::ErrorCode;
  switch (code) {
    case ErrorCode::kNone:
      return Status::OK();
    case ErrorCode::kNotFound:
      return Status::NotFound(message);
    case ErrorCode::kAlreadyExists:
      return Status::AlreadyExists(message);
    case ErrorCode::kInvalidArgument:
    case ErrorCode::kUnsupportedVersion:
    case ErrorCode::kUnknownApi:
    case ErrorCode::kMalformedRequest:
      return Status::InvalidArgument(std::string(wire::ErrorCodeName(code)) + ": " +
                                     std::string(message));
    case ErrorCode::kCorruption:
      return Status::Corruption(message);
    case ErrorCode::kIOError:
      return Status::IOError(message);
    case ErrorCode::kBusy:
      return Status::Busy(message);
    case ErrorCode::kTimeout:
      return Status::Timeout(message);
    case ErrorCode::kOutOfRange:
      return Status::OutOfRange(message);
    case ErrorCode::kTooLarge:
      return Status::TooLarge(message);
    case ErrorCode::kOutOfOrderSequence:
      return Status::OutOfOrderSequence(message);
    case ErrorCode::kFenced:
      return Status::Fenced(message);
    case ErrorCode::kShutdown:
      return Status::Shutdown(message);
    case ErrorCode::kNoSpace:
      return Status::NoSpace(message);
    case ErrorCode::kUnauthenticated:
      return Status::Unauthenticated(message);
    case ErrorCode::kPermissionDenied:
      return Status::PermissionDenied(message);
    case ErrorCode::kUnknown:
      break;
  }
  return Status::IOError("server error (" + std::string(wire::ErrorCodeName(code)) +
                         "): " + std::string(message));
}

std::string Writer::Join() const {
  std::string out;
  out.reserve(size());
  for (const auto& p : parts_) out.append(p);
  return out;
}

void Reader::Get(std::optional<std::string>& s) {
  int32_t n = 0;
  Get(n);
  if (!ok()) return;
  if (n == -1) {
    s.reset();
    return;
  }
  std::string_view b;
  if (n < 0 || !r_.ReadBytes(static_cast<size_t>(n), &b)) return Fail("string length out of range");
  s.emplace(b);
}

std::string_view PendingKindName(PendingKindWire k) {
  switch (k) {
    case PendingKindWire::kLocked: return "locked";
    case PendingKindWire::kRetry: return "retry";
    case PendingKindWire::kParked: return "parked";
  }
  return "unknown";
}

std::string_view RecordStateName(RecordStateWire s) {
  switch (s) {
    case RecordStateWire::kUndelivered: return "undelivered";
    case RecordStateWire::kPending: return "pending";
    case RecordStateWire::kAcked: return "acked";
    case RecordStateWire::kDeadLettered: return "dead_lettered";
  }
  return "unknown";
}

int ServedVersion(uint16_t api) { return ApiName(api).empty() ? -1 : 0; }

std::string_view ApiName(uint16_t api) {
  using wire::Api;
  switch (static_cast<Api>(api)) {
    case Api::kApiVersions: return "ApiVersions";
    case Api::kProduce: return "Produce";
    case Api::kFetch: return "Fetch";
    case Api::kListOffsets: return "ListOffsets";
    case Api::kMetadata: return "Metadata";
    case Api::kCreateTopic: return "CreateTopic";
    case Api::kDeleteTopic: return "DeleteTopic";
    case Api::kAlterTopic: return "AlterTopic";
    case Api::kInitProducerId: return "InitProducerId";
    case Api::kAuthenticate: return "Authenticate";
    case Api::kJoinGroup: return "JoinGroup";
    case Api::kHeartbeat: return "Heartbeat";
    case Api::kLeaveGroup: return "LeaveGroup";
    case Api::kCommitOffsets: return "CommitOffsets";
    case Api::kFetchOffsets: return "FetchOffsets";
    case Api::kCreateQueueGroup: return "CreateQueueGroup";
    case Api::kDeliver: return "Deliver";
    case Api::kAck: return "Ack";
    case Api::kNack: return "Nack";
    case Api::kReject: return "Reject";
    case Api::kExtend: return "Extend";
    case Api::kClaim: return "Claim";
    case Api::kListPending: return "ListPending";
    case Api::kListDeadLetters: return "ListDeadLetters";
    case Api::kRedrive: return "Redrive";
    case Api::kPurgeDeadLetters: return "PurgeDeadLetters";
    case Api::kListGroups: return "ListGroups";
    case Api::kDescribeGroup: return "DescribeGroup";
    case Api::kDeleteGroup: return "DeleteGroup";
    case Api::kRecordStatus: return "RecordStatus";
    case Api::kStats: return "Stats";
    case Api::kBackup: return "Backup";
  }
  return {};
}

}  // namespace runnel::proto
