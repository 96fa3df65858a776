// Frame encoding and the incremental frame decoder.
#include "runnel/common/wire.h"

#include "runnel/common/coding.h"

namespace runnel::wire {

std::string_view ErrorCodeName(ErrorCode code) {
  switch (code) {
    case ErrorCode::kNone:
      return "none";
    case ErrorCode::kUnknown:
      return "unknown";
    case ErrorCode::kNotFound:
      return "not_found";
    case ErrorCode::kAlreadyExists:
      return "already_exists";
    case ErrorCode::kInvalidArgument:
      return "invalid_argument";
    case ErrorCode::kCorruption:
      return "corruption";
    case ErrorCode::kIOError:
      return "io_error";
    case ErrorCode::kBusy:
      return "busy";
    case ErrorCode::kTimeout:
      return "timeout";
    case ErrorCode::kOutOfRange:
      return "out_of_range";
    case ErrorCode::kTooLarge:
      return "too_large";
    case ErrorCode::kOutOfOrderSequence:
      return "out_of_order_sequence";
    case ErrorCode::kFenced:
      return "fenced";
    case ErrorCode::kShutdown:
      return "shutdown";
    case ErrorCode::kNoSpace:
      return "no_space";
    case ErrorCode::kUnsupportedVersion:
      return "unsupported_version";
    case ErrorCode::kUnknownApi:
      return "unknown_api";
    case ErrorCode::kMalformedRequest:
      return "malformed_request";
    case ErrorCode::kUnauthenticated:
      return "unauthenticated";
    case ErrorCode::kPermissionDenied:
      return "permission_denied";
  }
  return "unrecognized";
}

std::string EncodeFrameHeader(uint16_t api, uint16_t version, uint32_t correlation_id,
                              size_t body_size) {
  std::string out;
  out.reserve(kFrameHeaderBytes + (body_size < 256 ? body_size : 0));
  PutFixed32BE(&out, static_cast<uint32_t>(kHeaderAfterLength + body_size));
  PutFixed16BE(&out, api);
  PutFixed16BE(&out, version);
  PutFixed32BE(&out, correlation_id);
  return out;
}

std::string EncodeFrame(uint16_t api, uint16_t version, uint32_t correlation_id,
                        std::string_view body) {
  std::string out = EncodeFrameHeader(api, version, correlation_id, body.size());
  out.append(body);
  return out;
}

Result<std::optional<Frame>> FrameDecoder::Next() {
  if (!error_.ok()) return error_;
  const size_t available = buffer_.size() - consumed_;
  if (available < kLengthBytes) return std::optional<Frame>();
  const char* p = buffer_.data() + consumed_;
  const uint32_t length = DecodeFixed32BE(p);
  if (length < kHeaderAfterLength) {
    error_ = Status::Corruption("frame length " + std::to_string(length) +
                                " is shorter than its 8-byte header");
    return error_;
  }
  if (length > max_frame_bytes_) {
    error_ = Status::TooLarge("frame of " + std::to_string(length) +
                              " bytes exceeds the limit of " + std::to_string(max_frame_bytes_));
    return error_;
  }
  if (available < kLengthBytes + length) return std::optional<Frame>();  // wait for the rest
  Frame f;
  f.header.length = length;
  f.header.api = DecodeFixed16BE(p + 4);
  f.header.version = DecodeFixed16BE(p + 6);
  f.header.correlation_id = DecodeFixed32BE(p + 8);
  f.body.assign(p + kFrameHeaderBytes, length - kHeaderAfterLength);
  consumed_ += kLengthBytes + length;
  // Drop consumed bytes once they dominate the buffer, keeping appends amortized O(1). An empty
  // buffer gives back the memory of a large frame, so an idle connection does not keep it.
  if (consumed_ == buffer_.size()) {
    buffer_.clear();
    consumed_ = 0;
    if (buffer_.capacity() > (1u << 20)) buffer_.shrink_to_fit();
  } else if (consumed_ > 4096 && consumed_ * 2 > buffer_.size()) {
    buffer_.erase(0, consumed_);
    consumed_ = 0;
  }
  return std::optional<Frame>(std::move(f));
}

}  // namespace runnel::wire
