// Per-topic configuration: retention, limits, dedup window, index granularity.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "runnel/common/status.h"

namespace runnel::storage {

// Valid topic names: 1..249 characters of [A-Za-z0-9._-], not "." or ".." (Kafka's rule, which
// also keeps names safe as file or metric labels). Returns InvalidArgument explaining why not.
Status ValidateTopicName(std::string_view name);
// Parses a config value `key` = `value` as an integer in [min, max]; InvalidArgument naming the
// key.
Status ParseConfigInt(std::string_view key, std::string_view value, int64_t min, int64_t max,
                      int64_t* out);

// Upper bound on partitions per topic.
inline constexpr int32_t kMaxPartitionsPerTopic = 10'000;

// A value type; copy freely. Keys use Kafka's names where Kafka has the concept.
struct TopicConfig {
  // "retention.ms": records older than this are deleted (-1: keep forever). Kafka's default, 7
  // days.
  int64_t retention_ms = 7LL * 24 * 3600 * 1000;
  // "retention.bytes": per-partition size cap (-1: unlimited).
  int64_t retention_bytes = -1;
  // "max.message.bytes": the largest record batch accepted, in bytes. Kafka's default.
  int32_t max_message_bytes = 1'048'588;
  // "dedup.window.ms": how long a record's dedup key is remembered (0 disables dedup).
  int64_t dedup_window_ms = 5LL * 60 * 1000;
  // "index.interval.bytes" / "index.interval.ms": a sparse index entry is written when this many
  // bytes or this much time passed since the previous one. They bound the work of a timestamp
  // lookup and are the granularity at which retention deletes.
  int64_t index_interval_bytes = 1 << 20;
  int64_t index_interval_ms = 10LL * 60 * 1000;

  // Sets one key from its string form. InvalidArgument names an unknown key or a bad value.
  Status Set(std::string_view key, std::string_view value);
  // Every key with its current value, sorted by key.
  std::vector<std::pair<std::string, std::string>> ToList() const;
  // Checks cross-field rules and ranges.
  Status Validate() const;
};

}  // namespace runnel::storage
