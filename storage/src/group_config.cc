// Group settings (GroupConfig keys and values) and the names of group enums.
#include <limits>

#include "group_manager.h"
#include "runnel/storage/topic_config.h"

namespace runnel::storage {

namespace {

Status ParseBool(std::string_view key, std::string_view value, bool* out) {
  if (value == "true" || value == "1") {
    *out = true;
  } else if (value == "false" || value == "0") {
    *out = false;
  } else {
    return Status::InvalidArgument(std::string(key) + ": '" + std::string(value) +
                                   "' is not a boolean");
  }
  return Status::OK();
}

}  // namespace

std::string_view GroupProtocolName(GroupProtocol p) {
  return p == GroupProtocol::kKafka ? "kafka" : "native";
}

std::string_view SettleDurabilityName(SettleDurability d) {
  return d == SettleDurability::kWritten ? "written" : "durable";
}

std::string_view RecordStateName(RecordState s) {
  switch (s) {
    case RecordState::kUndelivered:
      return "undelivered";
    case RecordState::kPending:
      return "pending";
    case RecordState::kAcked:
      return "acked";
    case RecordState::kDeadLettered:
      return "dead_lettered";
  }
  return "unknown";
}

Status GroupConfig::Set(std::string_view key, std::string_view value) {
  int64_t v = 0;
  if (key == "topic") {
    if (!value.empty()) RUNNEL_RETURN_IF_ERROR(ValidateTopicName(value));  // empty: stream group
    topic = std::string(value);
  } else if (key == "lock.timeout.ms") {
    RUNNEL_RETURN_IF_ERROR(ParseConfigInt(key, value, 1, 7LL * 24 * 3600 * 1000, &v));
    lock_timeout_ms = v;
  } else if (key == "max.deliveries") {
    RUNNEL_RETURN_IF_ERROR(ParseConfigInt(key, value, 1, 1'000'000, &v));
    max_deliveries = static_cast<int32_t>(v);
  } else if (key == "ordered.keys") {
    RUNNEL_RETURN_IF_ERROR(ParseBool(key, value, &ordered_keys));
  } else if (key == "message.ttl.ms") {
    RUNNEL_RETURN_IF_ERROR(ParseConfigInt(key, value, 0, std::numeric_limits<int64_t>::max(), &v));
    message_ttl_ms = v;
  } else if (key == "dlq.retention.ms") {
    RUNNEL_RETURN_IF_ERROR(ParseConfigInt(key, value, -1, std::numeric_limits<int64_t>::max(), &v));
    dlq_retention_ms = v;
  } else if (key == "dlq.topic") {
    if (!value.empty()) RUNNEL_RETURN_IF_ERROR(ValidateTopicName(value));
    dlq_topic = std::string(value);
  } else if (key == "retain.until.acked") {
    RUNNEL_RETURN_IF_ERROR(ParseBool(key, value, &retain_until_acked));
  } else if (key == "ack.durability") {
    if (value == "durable") {
      ack_durability = SettleDurability::kDurable;
    } else if (value == "written") {
      ack_durability = SettleDurability::kWritten;
    } else {
      return Status::InvalidArgument("ack.durability: '" + std::string(value) +
                                     "' is not 'durable' or 'written'");
    }
  } else {
    return Status::InvalidArgument("unknown group config '" + std::string(key) + "'");
  }
  return Status::OK();
}

std::vector<std::pair<std::string, std::string>> GroupConfig::ToList() const {
  std::vector<std::pair<std::string, std::string>> out = {
      {"ack.durability", std::string(SettleDurabilityName(ack_durability))},
      {"dlq.topic", dlq_topic},
      {"lock.timeout.ms", std::to_string(lock_timeout_ms)},
      {"max.deliveries", std::to_string(max_deliveries)},
      {"message.ttl.ms", std::to_string(message_ttl_ms)},
      {"ordered.keys", ordered_keys ? "true" : "false"},
      {"retain.until.acked", retain_until_acked ? "true" : "false"},
      {"topic", topic},
  };
  if (dlq_retention_ms) {
    out.insert(out.begin() + 1, {"dlq.retention.ms", std::to_string(*dlq_retention_ms)});
  }
  return out;
}

}  // namespace runnel::storage
