// The on-disk format of the storage engine: column families, key layouts and value layouts.
// storage/FORMAT.md documents the same grammar with worked examples; tests/storage/format_test.cc
// pins the bytes. Every constant here is persisted: DO NOT CHANGE existing values.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "runnel/common/status.h"

namespace runnel::storage::format {

// Bumped only with a migration. Stored under kFormatVersionKey in the meta column family.
inline constexpr uint32_t kFormatVersion = 1;

// Column families. The log of partition `uid` lives in "log.<uid>" (decimal uid).
inline constexpr std::string_view kMetaColumnFamily = "meta";
inline constexpr std::string_view kLogColumnFamilyPrefix = "log.";

// First byte of every meta key. DO NOT CHANGE.
enum class MetaKeyType : char {
  kVersion = 'V',    // "V"                                 -> u32be format version
  kCounters = 'C',   // "C"                                 -> CountersValue
  kTopic = 'T',      // "T" name                            -> TopicValue
  kPartition = 'P',  // "P" uid:u32be                       -> PartitionValue
  kIndex = 'I',      // "I" uid:u32be base_offset:u64be     -> IndexValue
  kProducer = 'S',   // "S" uid:u32be producer_id:u64be     -> ProducerValue
  kDedup = 'D',      // "D" topic_id:u32be dedup_key        -> DedupValue
};

// Every value starts with a one-byte layout version (currently 1 for all of them).
inline constexpr uint8_t kValueVersion = 1;

// The record header whose value is a record's dedup key.
inline constexpr std::string_view kDedupKeyHeader = "runnel.dedup.key";

// ---- keys ----------------------------------------------------------------------------------

std::string LogColumnFamilyName(uint32_t uid);
std::optional<uint32_t> ParseLogColumnFamilyName(std::string_view name);

// Log key: uid:u32be | base_offset:u64be (12 bytes). Sorts by partition, then offset.
std::string LogKey(uint32_t uid, int64_t base_offset);
bool ParseLogKey(std::string_view key, uint32_t* uid, int64_t* base_offset);

std::string FormatVersionKey();
std::string CountersKey();
std::string TopicKey(std::string_view name);
std::string TopicKeyPrefix();
std::string PartitionKey(uint32_t uid);
std::string IndexKey(uint32_t uid, int64_t base_offset);
std::string ProducerKey(uint32_t uid, int64_t producer_id);
std::string DedupKey(uint32_t topic_id, std::string_view dedup_key);
// The smallest key of `type`, and the smallest key past all keys of `type`.
std::string TypeBegin(MetaKeyType type);
std::string TypeEnd(MetaKeyType type);
// The smallest key of `type` for `id` (uid or topic id), and the smallest key past all of them.
std::string IdPrefixBegin(MetaKeyType type, uint32_t id);
std::string IdPrefixEnd(MetaKeyType type, uint32_t id);

// ---- values --------------------------------------------------------------------------------

struct CountersValue {
  uint32_t next_topic_id = 1;
  uint32_t next_partition_uid = 1;
};

struct TopicValue {
  uint32_t topic_id = 0;
  int64_t created_ms = 0;
  std::vector<uint32_t> partition_uids;                     // index = partition number
  std::vector<std::pair<std::string, std::string>> config;  // explicit overrides, key order
};

struct PartitionValue {
  uint32_t topic_id = 0;
  int32_t partition = 0;
  int64_t next_offset = 0;     // offset the next record gets
  int64_t log_start = 0;       // first offset still stored
  uint64_t start_bytes = 0;    // cumulative log bytes before log_start
  uint64_t end_bytes = 0;      // cumulative log bytes before next_offset
  int64_t max_timestamp = -1;  // largest batch max timestamp ever appended
};

struct IndexValue {
  uint64_t bytes_before = 0;   // cumulative log bytes before this batch
  int64_t max_ts_before = -1;  // largest timestamp of all earlier batches (monotonic)
  int64_t created_ms = 0;      // wall time the entry was written
};

struct ProducerBatchValue {
  int32_t first_sequence = 0;
  int32_t last_sequence = 0;
  int64_t base_offset = -1;  // -1 when every record was a dedup-window duplicate
  int64_t last_offset = -1;
};

struct ProducerValue {
  int16_t epoch = 0;
  int32_t last_sequence = -1;
  int64_t last_update_ms = 0;
  std::vector<ProducerBatchValue> recent;  // oldest first, at most kMaxRecentBatches
};
inline constexpr size_t kMaxRecentBatches = 5;

struct DedupValue {
  int32_t partition = 0;
  int64_t offset = 0;
  int64_t timestamp_ms = 0;  // when the key was first seen
};

std::string Encode(const CountersValue& v);
std::string Encode(const TopicValue& v);
std::string Encode(const PartitionValue& v);
std::string Encode(const IndexValue& v);
std::string Encode(const ProducerValue& v);
std::string Encode(const DedupValue& v);

// Decoders return Corruption naming the value type on malformed or truncated input.
Status Decode(std::string_view in, CountersValue* v);
Status Decode(std::string_view in, TopicValue* v);
Status Decode(std::string_view in, PartitionValue* v);
Status Decode(std::string_view in, IndexValue* v);
Status Decode(std::string_view in, ProducerValue* v);
Status Decode(std::string_view in, DedupValue* v);

}  // namespace runnel::storage::format
