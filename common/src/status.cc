// Status names and formatting.
#include "runnel/common/status.h"

namespace runnel {

std::string_view StatusCodeName(StatusCode code) {
  switch (code) {
    case StatusCode::kOk:
      return "ok";
    case StatusCode::kNotFound:
      return "not_found";
    case StatusCode::kAlreadyExists:
      return "already_exists";
    case StatusCode::kInvalidArgument:
      return "invalid_argument";
    case StatusCode::kCorruption:
      return "corruption";
    case StatusCode::kIOError:
      return "io_error";
    case StatusCode::kBusy:
      return "busy";
    case StatusCode::kTimeout:
      return "timeout";
    case StatusCode::kOutOfRange:
      return "out_of_range";
    case StatusCode::kTooLarge:
      return "too_large";
    case StatusCode::kOutOfOrderSequence:
      return "out_of_order_sequence";
    case StatusCode::kFenced:
      return "fenced";
    case StatusCode::kShutdown:
      return "shutdown";
    case StatusCode::kNoSpace:
      return "no_space";
    case StatusCode::kUnauthenticated:
      return "unauthenticated";
    case StatusCode::kPermissionDenied:
      return "permission_denied";
  }
  return "unknown";
}

std::string Status::ToString() const {
  if (ok()) return "ok";
  std::string s(StatusCodeName(code_));
  if (!message_.empty()) {
    s += ": ";
    s += message_;
  }
  return s;
}

Status Status::WithContext(std::string_view context) const {
  if (ok()) return *this;
  std::string msg(context);
  msg += ": ";
  msg += message_;
  return Status(code_, msg);
}

}  // namespace runnel
