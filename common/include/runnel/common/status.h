// Status: the outcome of every fallible call in Runnel (LevelDB style, with explicit codes).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>

namespace runnel {

// Error categories. The broker maps these to wire error codes in one place; storage converts
// rocksdb::Status into them in one place. Values are not persisted.
enum class StatusCode : uint8_t {
  kOk = 0,
  kNotFound,            // topic, partition, group or record does not exist
  kAlreadyExists,       // topic or group exists already
  kInvalidArgument,     // request is malformed or violates a limit / config rule
  kCorruption,          // bytes fail validation (CRC, lengths, magic, record count)
  kIOError,             // the filesystem or RocksDB failed
  kBusy,                // a bounded queue is full; retry later
  kTimeout,             // a deadline passed
  kOutOfRange,          // offset outside [log start, high watermark]
  kTooLarge,            // a batch / message exceeds max.message.bytes or a frame limit
  kOutOfOrderSequence,  // idempotent producer sequence gap or stale duplicate
  kFenced,              // idempotent producer epoch is older than the current one
  kShutdown,            // the component is stopping or stopped
  kNoSpace,             // the disk is full
  kUnauthenticated,     // no valid credentials were presented
  kPermissionDenied,    // the credentials do not allow this operation on this resource
};

// Returns a stable lower_snake name for `code`, e.g. "not_found".
std::string_view StatusCodeName(StatusCode code);

// A Status is either OK (cheap: no allocation) or a code plus a human-readable message.
// Thread-safety: a Status is a value; distinct objects may be used from different threads.
class [[nodiscard]] Status {
 public:
  Status() = default;

  static Status OK() { return Status(); }
  static Status NotFound(std::string_view msg) { return Status(StatusCode::kNotFound, msg); }
  static Status AlreadyExists(std::string_view msg) {
    return Status(StatusCode::kAlreadyExists, msg);
  }
  static Status InvalidArgument(std::string_view msg) {
    return Status(StatusCode::kInvalidArgument, msg);
  }
  static Status Corruption(std::string_view msg) { return Status(StatusCode::kCorruption, msg); }
  static Status IOError(std::string_view msg) { return Status(StatusCode::kIOError, msg); }
  static Status Busy(std::string_view msg) { return Status(StatusCode::kBusy, msg); }
  static Status Timeout(std::string_view msg) { return Status(StatusCode::kTimeout, msg); }
  static Status OutOfRange(std::string_view msg) { return Status(StatusCode::kOutOfRange, msg); }
  static Status TooLarge(std::string_view msg) { return Status(StatusCode::kTooLarge, msg); }
  static Status OutOfOrderSequence(std::string_view msg) {
    return Status(StatusCode::kOutOfOrderSequence, msg);
  }
  static Status Fenced(std::string_view msg) { return Status(StatusCode::kFenced, msg); }
  static Status Shutdown(std::string_view msg) { return Status(StatusCode::kShutdown, msg); }
  static Status NoSpace(std::string_view msg) { return Status(StatusCode::kNoSpace, msg); }
  static Status Unauthenticated(std::string_view msg) {
    return Status(StatusCode::kUnauthenticated, msg);
  }
  static Status PermissionDenied(std::string_view msg) {
    return Status(StatusCode::kPermissionDenied, msg);
  }

  bool ok() const { return code_ == StatusCode::kOk; }
  StatusCode code() const { return code_; }
  const std::string& message() const { return message_; }

  bool IsNotFound() const { return code_ == StatusCode::kNotFound; }
  bool IsCorruption() const { return code_ == StatusCode::kCorruption; }
  bool IsInvalidArgument() const { return code_ == StatusCode::kInvalidArgument; }
  bool IsOutOfRange() const { return code_ == StatusCode::kOutOfRange; }

  // "ok" or "<code name>: <message>".
  std::string ToString() const;

  // Returns a copy whose message is prefixed with `context` (e.g. the topic name).
  Status WithContext(std::string_view context) const;

  friend bool operator==(const Status& a, const Status& b) {
    return a.code_ == b.code_ && a.message_ == b.message_;
  }

 private:
  Status(StatusCode code, std::string_view msg) : code_(code), message_(msg) {}

  StatusCode code_ = StatusCode::kOk;
  std::string message_;
};

}  // namespace runnel

// Evaluates `expr` (a Status); returns it from the enclosing function when it is not OK.
#define RUNNEL_RETURN_IF_ERROR(expr) \
  RUNNEL_RETURN_IF_ERROR_IMPL(RUNNEL_STATUS_CAT(_runnel_st_, __COUNTER__), expr)
#define RUNNEL_STATUS_CAT_INNER(a, b) a##b
#define RUNNEL_STATUS_CAT(a, b) RUNNEL_STATUS_CAT_INNER(a, b)
#define RUNNEL_RETURN_IF_ERROR_IMPL(tmp, expr) \
  do {                                         \
    ::runnel::Status tmp = (expr);             \
    if (!tmp.ok()) return tmp;                 \
  } while (0)
