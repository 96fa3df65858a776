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
  kVersion = 'V',     // "V"                                 -> u32be format version
  kCounters = 'C',    // "C"                                 -> CountersValue
  kTopic = 'T',       // "T" name                            -> TopicValue
  kPartition = 'P',   // "P" uid:u32be                       -> PartitionValue
  kIndex = 'I',       // "I" uid:u32be base_offset:u64be     -> IndexValue
  kProducer = 'S',    // "S" uid:u32be producer_id:u64be     -> ProducerValue
  kDedup = 'D',       // "D" topic_id:u32be dedup_key        -> DedupValue
  kGroup = 'G',       // "G" name                            -> GroupValue
  kOffset = 'O',      // "O" group_id:u32be topic_id:u32be partition:u32be -> OffsetValue
  kPending = 'E',     // "E" group_id:u32be partition:u32be offset:u64be   -> PendingValue
  kDeadLetter = 'X',  // "X" group_id:u32be partition:u32be offset:u64be   -> DeadLetterValue
  kRedrive = 'R',     // "R" group_id:u32be dlq_topic_id:u32be dlq_partition:u32be -> OffsetValue
  kRedriven = 'Y',    // "Y" group_id:u32be dlq_topic_id:u32be dlq_partition:u32be dlq_offset:u64be
                      //   -> OffsetValue
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
// uid:u32be alone: sorts before every log key of the partition. Range deletions start here, not
// at LogKey(uid, 0), because RocksDB 7.8 corrupts its range-tombstone skiplist when a range
// deletion's start key falls inside the memtable insert-hint prefix domain (5 bytes for logs,
// 9 for meta; see log_store.cc). Meta range deletions likewise start at 5-byte IdPrefixBegin keys.
std::string LogRangeBegin(uint32_t uid);
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

// Layout version 2 added next_group_id, version 3 next_producer_id; older values still decode.
struct CountersValue {
  uint32_t next_topic_id = 1;
  uint32_t next_partition_uid = 1;
  uint32_t next_group_id = 1;
  int64_t next_producer_id = 0;  // 0: none handed out since the store knew how to persist it
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

// Consumer group. `mode` is GroupMode (1 stream, 2 queue). `generation` only grows.
struct GroupValue {
  uint32_t group_id = 0;
  uint8_t mode = 0;
  int32_t generation = 0;
  int64_t created_ms = 0;
  std::vector<std::pair<std::string, std::string>> config;  // every key, sorted
};

// A stream group's committed offset, or a queue group's delivery cursor (next undelivered).
struct OffsetValue {
  int64_t offset = 0;
  int64_t commit_ms = 0;
  std::string metadata;
};

// One pending entry of a queue group. DO NOT CHANGE the state values.
enum class PendingState : uint8_t {
  kLocked = 1,  // delivered to `consumer`, locked until due_ms
  kRetry = 2,   // waiting for redelivery at due_ms (nacked or lock expired)
  kParked = 3,  // not delivered yet: its key is in flight (ordered_keys)
};
struct PendingValue {
  PendingState state = PendingState::kLocked;
  int32_t deliveries = 0;
  int64_t due_ms = 0;
  int64_t first_delivery_ms = 0;
  int64_t last_active_ms = 0;    // last delivery, claim or extend
  int64_t first_failure_ms = 0;  // 0: never failed
  int64_t last_failure_ms = 0;
  std::string consumer;  // empty unless locked
};

// Where a dead-lettered record went.
struct DeadLetterValue {
  int32_t dlq_partition = 0;
  int64_t dlq_offset = 0;
  int64_t dead_lettered_ms = 0;
  std::string reason;
};

std::string GroupKey(std::string_view name);
std::string OffsetKey(uint32_t group_id, uint32_t topic_id, int32_t partition);
std::string PendingKey(uint32_t group_id, int32_t partition, int64_t offset);
std::string DeadLetterKey(uint32_t group_id, int32_t partition, int64_t offset);
// A queue group's redrive cursor in one partition of its private DLQ: the first DLQ offset not
// yet redriven. Written in the same WriteBatch as each redriven copy, so a redrive cut short by a
// crash neither lists nor copies a record twice.
std::string RedriveKey(uint32_t group_id, uint32_t dlq_topic_id, int32_t dlq_partition);
// A dead letter a filtered redrive copied back (so no later redrive copies it again), written in
// the same WriteBatch as the copy. Its OffsetValue: offset = where the copy went, commit_ms = when,
// metadata = the topic it went to.
std::string RedrivenKey(uint32_t group_id, uint32_t dlq_topic_id, int32_t dlq_partition,
                        int64_t dlq_offset);
bool ParseRedrivenKey(std::string_view key, uint32_t* group_id, uint32_t* dlq_topic_id,
                      int32_t* dlq_partition, int64_t* dlq_offset);

std::string Encode(const CountersValue& v);
std::string Encode(const GroupValue& v);
std::string Encode(const OffsetValue& v);
std::string Encode(const PendingValue& v);
std::string Encode(const DeadLetterValue& v);
Status Decode(std::string_view in, GroupValue* v);
Status Decode(std::string_view in, OffsetValue* v);
Status Decode(std::string_view in, PendingValue* v);
Status Decode(std::string_view in, DeadLetterValue* v);
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
