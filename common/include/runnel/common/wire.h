// Native wire protocol framing (see common/PROTOCOL.md): frame header, an incremental decoder
// that never trusts a declared length, and the wire tables (API keys, error codes).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "runnel/common/result.h"

namespace runnel::wire {

// Frame: length:u32be | api:u16be | version:u16be | correlation_id:u32be | body.
// `length` counts everything after itself (8 header bytes + the body).
inline constexpr size_t kLengthBytes = 4;
inline constexpr size_t kHeaderAfterLength = 8;
inline constexpr size_t kFrameHeaderBytes = kLengthBytes + kHeaderAfterLength;
inline constexpr uint32_t kDefaultMaxFrameBytes = 64u << 20;

// Request types. DO NOT CHANGE: values are on the wire. Responses echo the request's api.
enum class Api : uint16_t {
  kApiVersions = 0,
  kProduce = 1,
  kFetch = 2,
  kListOffsets = 3,
  kMetadata = 4,
  kCreateTopic = 5,
  kDeleteTopic = 6,
  kAlterTopic = 7,
  kInitProducerId = 8,
  kAuthenticate = 9,
  kJoinGroup = 10,
  kHeartbeat = 11,
  kLeaveGroup = 12,
  kCommitOffsets = 13,
  kFetchOffsets = 14,
  kCreateQueueGroup = 20,
  kDeliver = 21,
  kAck = 22,
  kNack = 23,
  kReject = 24,
  kExtend = 25,
  kClaim = 26,
  kListPending = 27,
  kListDeadLetters = 30,
  kRedrive = 31,
  kPurgeDeadLetters = 32,
  kListGroups = 40,
  kDescribeGroup = 41,
  kDeleteGroup = 42,
  kRecordStatus = 43,
  kStats = 44,
  kBackup = 45,
};

// Error codes carried in responses. DO NOT CHANGE: values are on the wire. The broker maps
// runnel::Status codes to these in one place.
enum class ErrorCode : uint16_t {
  kNone = 0,
  kUnknown = 1,
  kNotFound = 2,
  kAlreadyExists = 3,
  kInvalidArgument = 4,
  kCorruption = 5,
  kIOError = 6,
  kBusy = 7,
  kTimeout = 8,
  kOutOfRange = 9,
  kTooLarge = 10,
  kOutOfOrderSequence = 11,
  kFenced = 12,
  kShutdown = 13,
  kNoSpace = 14,
  kUnsupportedVersion = 15,
  kUnknownApi = 16,
  kMalformedRequest = 17,
  kUnauthenticated = 18,
  kPermissionDenied = 19,
};

std::string_view ErrorCodeName(ErrorCode code);

struct FrameHeader {
  uint32_t length = 0;  // bytes after the length field
  uint16_t api = 0;     // raw: an unknown value is the handler's error to report, not framing's
  uint16_t version = 0;
  uint32_t correlation_id = 0;
};

struct Frame {
  FrameHeader header;
  std::string body;
};

// The 12 header bytes of a frame whose body is `body_size` bytes (the body is sent separately).
std::string EncodeFrameHeader(uint16_t api, uint16_t version, uint32_t correlation_id,
                              size_t body_size);

// Encodes one frame around `body`.
std::string EncodeFrame(uint16_t api, uint16_t version, uint32_t correlation_id,
                        std::string_view body);

// Splits a byte stream into frames. Buffers only the bytes actually received, whatever length a
// peer declares, so a huge declared size or a slow trickle costs at most what was sent. Not
// thread-safe: one per connection.
class FrameDecoder {
 public:
  explicit FrameDecoder(uint32_t max_frame_bytes = kDefaultMaxFrameBytes)
      : max_frame_bytes_(max_frame_bytes) {}

  void Append(std::string_view bytes) { buffer_.append(bytes); }
  // Changes the limit for the frames not yet returned (the server lowers it before a session
  // authenticated and raises it after).
  void set_max_frame_bytes(uint32_t n) { max_frame_bytes_ = n; }
  uint32_t max_frame_bytes() const { return max_frame_bytes_; }

  // The next complete frame, std::nullopt when more bytes are needed, or TooLarge / Corruption
  // when the stream is unusable (the connection must then be closed; the error stays sticky).
  Result<std::optional<Frame>> Next();

  // Bytes received and not yet returned as frames.
  size_t buffered() const { return buffer_.size() - consumed_; }

 private:
  uint32_t max_frame_bytes_;
  std::string buffer_;
  size_t consumed_ = 0;
  Status error_;
};

}  // namespace runnel::wire
