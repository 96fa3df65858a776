// LogStore: the durable, partitioned, append-only record log on RocksDB.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "runnel/common/clock.h"
#include "runnel/common/ids.h"
#include "runnel/common/record_batch.h"
#include "runnel/common/result.h"
#include "runnel/common/status.h"
#include "runnel/storage/groups.h"
#include "runnel/storage/topic_config.h"

namespace rocksdb {
class Env;
}  // namespace rocksdb

namespace runnel::storage {

// When an append is acknowledged. Values are part of the wire protocol: DO NOT CHANGE.
enum class AckMode : uint8_t {
  kNone = 0,     // acknowledged on enqueue; offsets unknown; may be lost
  kWritten = 1,  // after the write reached the RocksDB WAL (survives a process crash)
  kDurable = 2,  // after the WAL was fsynced (survives power loss). The default.
};

struct AppendRequest {
  std::string topic;
  Partition partition{0};
  std::string batch;  // exactly one Kafka RecordBatch v2; the store takes ownership
  AckMode acks = AckMode::kDurable;
};

// A record dropped because its dedup key was seen within the topic's dedup window.
struct DuplicateRecord {
  int32_t index = 0;       // position of the record in the appended batch
  Partition partition{0};  // where the original is stored
  Offset offset = kNoOffset;
};

struct AppendResult {
  // Offsets of the records actually written. kNoOffset when nothing was written (acks=none, or
  // every record was a duplicate).
  Offset base_offset = kNoOffset;
  Offset last_offset = kNoOffset;
  int32_t records_written = 0;
  // True when this was an idempotent producer's retry of a batch already stored; base/last
  // offsets are then those of the original append.
  bool duplicate_batch = false;
  std::vector<DuplicateRecord> duplicates;

  // The offset record `index` of the batch ended up at (its own or its original's).
  Offset OffsetOf(int32_t index) const;
};

// Zero or more whole batches, concatenated, exactly as stored.
struct ReadResult {
  std::string records;
  int32_t batch_count = 0;
  Offset high_watermark{0};  // durable high watermark when the read started
  Offset log_start{0};
};

// What ListOffset looks up.
struct OffsetQuery {
  enum class Kind { kEarliest, kLatest, kTimestamp };
  Kind kind = Kind::kLatest;
  int64_t timestamp_ms = 0;

  static OffsetQuery Earliest() { return {Kind::kEarliest, 0}; }
  static OffsetQuery Latest() { return {Kind::kLatest, 0}; }
  static OffsetQuery AtTime(int64_t ms) { return {Kind::kTimestamp, ms}; }
};

struct PartitionInfo {
  Partition partition{0};
  Offset log_start{0};
  Offset high_watermark{0};
  uint64_t size_bytes = 0;
};

struct TopicInfo {
  std::string name;
  TopicId id{0};
  TopicConfig config;
  std::vector<PartitionInfo> partitions;
};

// Monotonic counters since Open.
struct StoreStats {
  uint64_t commits = 0;  // committer rounds that wrote
  uint64_t fsyncs = 0;
  uint64_t records_appended = 0;
  uint64_t batches_appended = 0;
  uint64_t bytes_appended = 0;
  uint64_t fsync_micros_total = 0;
  uint64_t queued_bytes = 0;  // current, not cumulative
  uint64_t disk_bytes = 0;    // files in the data directory's store (SSTs, WAL, manifest)
  uint64_t disk_free_bytes = 0;  // free space on its filesystem (for unprivileged users)
};

// One committer round, for metrics.
struct CommitRoundInfo {
  uint64_t records = 0;  // new records written (duplicates excluded)
  uint64_t batches = 0;
  uint64_t bytes = 0;
  int64_t fsync_micros = -1;  // -1: the round did not fsync
};

struct LogStoreOptions {
  std::string data_dir;                  // created if missing; holds the RocksDB files in store/
  TopicConfig default_topic_config;      // for topics created without overrides
  size_t max_commit_bytes = 8u << 20;    // batch bytes per group commit
  size_t max_queued_bytes = 256u << 20;  // committer queue bound; appenders block beyond it
  size_t max_uncompressed_batch_bytes = 64u << 20;  // decompression-bomb bound
  int64_t retention_check_interval_ms = 30'000;     // 0: no background retention thread
  // Idempotent producer state untouched this long is forgotten by the retention pass (Kafka's
  // transactional.id.expiration.ms default); a later batch of that producer is then accepted at
  // any sequence.
  int64_t producer_state_ttl_ms = 7LL * 24 * 3600 * 1000;
  size_t partition_write_buffer_bytes = 64u << 20;  // memtable size per partition
  size_t total_write_buffer_bytes = 1u << 30;       // all memtables together
  size_t block_cache_bytes = 256u << 20;
  Clock* clock = nullptr;  // borrowed, must outlive the store; nullptr = system clock
  // Test hook: the RocksDB Env (and so the file system) the store runs on. Borrowed, must outlive
  // the store; nullptr = RocksDB's default. The power-cut tests pass a simulated file system.
  rocksdb::Env* env = nullptr;
  // Called on the committer thread after a partition's durable high watermark advanced, once the
  // round's append callbacks have run. May read from the store (the broker answers parked
  // fetches here) but must not call its write paths, which wait for this thread.
  std::function<void(std::string_view topic, Partition partition, Offset high_watermark)>
      on_high_watermark;
  // Called on the committer thread after each round that wrote or synced; same rules.
  std::function<void(const CommitRoundInfo&)> on_commit;
  // Open refuses a store whose WAL is damaged before its end (a torn final record, as a crash
  // leaves it, is fine): replaying past the damage would lose acknowledged records silently. With
  // this set, Open keeps what precedes the damage, drops the rest, logs what it dropped and opens
  // (`runneld --recover-truncate`).
  bool recover_truncate = false;
};

// The partitioned log. Thread-safe: every method may be called from any thread concurrently.
// Appends are group-committed by one committer thread; reads never see past a partition's durable
// high watermark. Destroying the store drains queued appends, flushes and closes RocksDB.
class LogStore {
 public:
  // Opens (creating if needed) the store in options.data_dir, recovering offsets, high watermarks,
  // producer state and the dedup window. IOError if the directory is unusable or locked by another
  // process; Corruption if the stored format is unknown or damaged.
  static Result<std::unique_ptr<LogStore>> Open(const LogStoreOptions& options);

  virtual ~LogStore() = default;

  // AlreadyExists, InvalidArgument (name, partitions, config), IOError.
  virtual Status CreateTopic(std::string_view name, int32_t partitions,
                             const TopicConfig& config) = 0;
  // Deletes the topic and all its data. NotFound, IOError.
  virtual Status DeleteTopic(std::string_view name) = 0;
  // Applies config overrides and/or grows the partition count (0 keeps it; shrinking is
  // InvalidArgument). NotFound, InvalidArgument, IOError.
  virtual Status AlterTopic(std::string_view name,
                            const std::vector<std::pair<std::string, std::string>>& config_changes,
                            int32_t new_partition_count) = 0;
  virtual std::vector<std::string> ListTopics() const = 0;
  virtual Result<TopicInfo> DescribeTopic(std::string_view name) const = 0;

  using AppendCallback = std::function<void(Result<AppendResult>)>;
  // Validates the batch and queues it for the committer; `done` runs exactly once, on this thread
  // when validation fails and on the committer thread otherwise (acks=none: before returning).
  // Blocks while the committer queue is full. Errors: NotFound (topic/partition), TooLarge,
  // Corruption / InvalidArgument (bad batch), OutOfOrderSequence, Fenced, IOError, NoSpace,
  // Shutdown. Nothing is written when an error is returned.
  virtual void AppendAsync(AppendRequest request, AppendCallback done) = 0;
  // Blocking convenience wrapper around AppendAsync.
  Result<AppendResult> Append(AppendRequest request);

  // Returns whole batches starting with the one that contains `offset`, until `max_bytes` is
  // reached (at least one batch when any is available) or the durable high watermark.
  // NotFound, OutOfRange (offset below log start or above the high watermark), IOError.
  virtual Result<ReadResult> Read(std::string_view topic, Partition partition, Offset offset,
                                  size_t max_bytes) const = 0;

  // Earliest = log start; Latest = durable high watermark; AtTime = first offset whose record
  // timestamp is >= the time (the high watermark if there is none).
  virtual Result<Offset> ListOffset(std::string_view topic, Partition partition,
                                    OffsetQuery query) const = 0;

  // Runs one retention pass over all topics now (the background thread does this periodically):
  // trims logs by retention.ms / retention.bytes and forgets expired producer state.
  virtual Status EnforceRetention() = 0;

  virtual StoreStats GetStats() const = 0;

  // OK while the store accepts writes. Otherwise why it does not: the failed write or WAL sync
  // that degraded it (NoSpace, IOError), or a RocksDB background error (a failed flush or
  // compaction), until the committer's recovery succeeds. Cheap; for health checks.
  virtual Status Health() const = 0;

  // Reserves `count` (>= 1) producer ids that no earlier reservation handed out, across restarts
  // and steps of the wall clock: the reservation is fsynced before it returns. Returns the first
  // id of the block. IOError, NoSpace.
  virtual Result<int64_t> ReserveProducerIds(int64_t count) = 0;

  // Writes a consistent online copy of the store (an RocksDB checkpoint: hard links where the
  // file system allows, WAL copied) into `dir`/store, so `dir` can serve as a data directory.
  // `dir` must not exist or be empty. Everything acknowledged before the call is in the copy.
  // InvalidArgument (dir), IOError, NoSpace.
  virtual Status Checkpoint(const std::string& dir) = 0;

  // Consumer groups over this store's topics; lives as long as the store.
  virtual Groups& groups() = 0;
};

}  // namespace runnel::storage
