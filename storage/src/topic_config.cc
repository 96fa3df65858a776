// TopicConfig parsing, printing and validation.
#include "runnel/storage/topic_config.h"

#include <charconv>

namespace runnel::storage {
Status ParseConfigInt(std::string_view key, std::string_view value, int64_t min, int64_t max,
                      int64_t* out) {
  int64_t v = 0;
  auto [ptr, ec] = std::from_chars(value.data(), value.data() + value.size(), v);
  if (ec != std::errc() || ptr != value.data() + value.size() || value.empty()) {
    return Status::InvalidArgument(std::string(key) + ": '" + std::string(value) +
                                   "' is not an integer");
  }
  if (v < min || v > max) {
    return Status::InvalidArgument(std::string(key) + ": " + std::to_string(v) + " is outside [" +
                                   std::to_string(min) + ", " + std::to_string(max) + "]");
  }
  *out = v;
  return Status::OK();
}

Status ValidateTopicName(std::string_view name) {
  if (name.empty()) return Status::InvalidArgument("topic name is empty");
  if (name.size() > 249) {
    return Status::InvalidArgument("topic name is longer than 249 characters");
  }
  if (name == "." || name == "..") {
    return Status::InvalidArgument("topic name cannot be '.' or '..'");
  }
  for (char c : name) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '.' || c == '_' || c == '-';
    if (!ok) {
      return Status::InvalidArgument(
          "topic name may only contain ASCII letters, digits, '.', '_' and '-'");
    }
  }
  return Status::OK();
}

Status TopicConfig::Set(std::string_view key, std::string_view value) {
  int64_t v = 0;
  if (key == "retention.ms") {
    RUNNEL_RETURN_IF_ERROR(ParseConfigInt(key, value, -1, INT64_MAX, &v));
    retention_ms = v;
  } else if (key == "retention.bytes") {
    RUNNEL_RETURN_IF_ERROR(ParseConfigInt(key, value, -1, INT64_MAX, &v));
    retention_bytes = v;
  } else if (key == "max.message.bytes") {
    RUNNEL_RETURN_IF_ERROR(ParseConfigInt(key, value, 64, 64 << 20, &v));
    max_message_bytes = static_cast<int32_t>(v);
  } else if (key == "dedup.window.ms") {
    RUNNEL_RETURN_IF_ERROR(ParseConfigInt(key, value, 0, 7LL * 24 * 3600 * 1000, &v));
    dedup_window_ms = v;
  } else if (key == "index.interval.bytes") {
    RUNNEL_RETURN_IF_ERROR(ParseConfigInt(key, value, 1, 1LL << 30, &v));
    index_interval_bytes = v;
  } else if (key == "index.interval.ms") {
    RUNNEL_RETURN_IF_ERROR(ParseConfigInt(key, value, 1, INT64_MAX, &v));
    index_interval_ms = v;
  } else {
    return Status::InvalidArgument("unknown topic config '" + std::string(key) + "'");
  }
  return Status::OK();
}

std::vector<std::pair<std::string, std::string>> TopicConfig::ToList() const {
  return {
      {"dedup.window.ms", std::to_string(dedup_window_ms)},
      {"index.interval.bytes", std::to_string(index_interval_bytes)},
      {"index.interval.ms", std::to_string(index_interval_ms)},
      {"max.message.bytes", std::to_string(max_message_bytes)},
      {"retention.bytes", std::to_string(retention_bytes)},
      {"retention.ms", std::to_string(retention_ms)},
  };
}

Status TopicConfig::Validate() const {
  // Each setter already checks its range; re-run them so a hand-built struct is checked too.
  TopicConfig probe;
  for (const auto& [key, value] : ToList()) RUNNEL_RETURN_IF_ERROR(probe.Set(key, value));
  return Status::OK();
}

}  // namespace runnel::storage
