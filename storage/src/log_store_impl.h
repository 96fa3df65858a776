// LogStoreImpl: the RocksDB-backed LogStore. Private to storage/.
//
// Threads: callers (validate + enqueue, read), one committer thread (offsets, idempotence,
// dedup, WriteBatch + WAL sync, high watermarks), one retention thread.
// Locks, in acquisition order: admin_mu_ (topic create/delete/alter) -> commit_mu_ (committer
// state of every partition, persisted partition records) -> topics_mu_ (the topic map and topic
// configs) -> PartitionState::mu (sparse index, start_bytes). queue_mu_ is a leaf.
#pragma once

#include <rocksdb/db.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "dedup_index.h"
#include "group_manager.h"
#include "runnel/storage/format.h"
#include "runnel/storage/log_store.h"

namespace runnel::storage {

// One sparse index entry: a batch boundary with the log bytes and max timestamp before it.
struct IndexEntry {
  int64_t offset = 0;
  uint64_t bytes_before = 0;
  int64_t max_ts_before = -1;
  int64_t created_ms = 0;
};

// State of one partition. Shared (shared_ptr) between the topic map, in-flight appends and
// readers, so a deleted topic's partitions stay valid until the last user lets go; the last
// owner destroys the column family handle.
struct PartitionState {
  PartitionState(rocksdb::DB* db_in, rocksdb::ColumnFamilyHandle* cf_in) : db(db_in), cf(cf_in) {}
  ~PartitionState() { db->DestroyColumnFamilyHandle(cf); }
  PartitionState(const PartitionState&) = delete;
  PartitionState& operator=(const PartitionState&) = delete;

  rocksdb::DB* const db;
  rocksdb::ColumnFamilyHandle* const cf;
  uint32_t uid = 0;
  uint32_t topic_id = 0;
  Partition partition{0};
  std::string topic_name;

  // Guarded by commit_mu_ (written only by the committer, read by retention under commit_mu_).
  int64_t next_offset = 0;
  int64_t max_timestamp = -1;
  std::unordered_map<int64_t, format::ProducerValue> producers;

  // Guarded by mu.
  mutable std::mutex mu;
  std::deque<IndexEntry> index;
  uint64_t start_bytes = 0;

  std::atomic<uint64_t> end_bytes{0};      // written under commit_mu_
  std::atomic<int64_t> high_watermark{0};  // durable; readers stop here
  std::atomic<int64_t> log_start{0};       // written under commit_mu_
  std::atomic<bool> deleted{false};        // written under commit_mu_
};

struct TopicState {
  std::string name;
  uint32_t id = 0;
  int64_t created_ms = 0;
  TopicConfig config;                                       // guarded by topics_mu_
  std::vector<std::shared_ptr<PartitionState>> partitions;  // guarded by topics_mu_
  DedupIndex dedup;                                         // guarded by commit_mu_
};

// One queued append.
struct PendingAppend {
  std::shared_ptr<TopicState> topic;
  std::shared_ptr<PartitionState> part;
  std::string batch;
  BatchHeader header;
  AckMode acks = AckMode::kDurable;
  // Topic settings captured at enqueue time.
  int64_t dedup_window_ms = 0;
  int64_t index_interval_bytes = 0;
  int64_t index_interval_ms = 0;
  std::vector<std::pair<int32_t, std::string>> dedup_keys;  // (record index, key)
  LogStore::AppendCallback done;                            // empty for acks=none
  Result<AppendResult> result{Status::Shutdown("append was not committed")};
  // Extra writes in the same WriteBatch, for consumer-group state. A meta-only op has no
  // partition (part == nullptr) and no batch. `extra` runs while staging, after offsets are
  // assigned (its argument is null for meta-only ops). acks=written meta ops complete without
  // waiting for an fsync.
  std::function<void(const AppendResult*, rocksdb::WriteBatch&)> extra;
};

class LogStoreImpl final : public LogStore {
 public:
  explicit LogStoreImpl(const LogStoreOptions& options);
  ~LogStoreImpl() override;

  // Opens RocksDB and loads all state. Called once by LogStore::Open.
  Status Init();

  Status CreateTopic(std::string_view name, int32_t partitions, const TopicConfig& config) override;
  Status DeleteTopic(std::string_view name) override;
  Status AlterTopic(std::string_view name,
                    const std::vector<std::pair<std::string, std::string>>& config_changes,
                    int32_t new_partition_count) override;
  std::vector<std::string> ListTopics() const override;
  Result<TopicInfo> DescribeTopic(std::string_view name) const override;
  void AppendAsync(AppendRequest request, AppendCallback done) override;
  Result<ReadResult> Read(std::string_view topic, Partition partition, Offset offset,
                          size_t max_bytes) const override;
  Result<Offset> ListOffset(std::string_view topic, Partition partition,
                            OffsetQuery query) const override;
  Status EnforceRetention() override;
  StoreStats GetStats() const override;
  Status Health() const override;
  Result<int64_t> ReserveProducerIds(int64_t count) override;
  Status Checkpoint(const std::string& dir) override;  // checkpoint.cc
  Groups& groups() override { return *groups_; }

 private:
  friend class GroupManager;
  friend class GroupRecordReader;

  Result<format::CountersValue> ReadCounters() const;
  // Kafka's DeleteRecords: moves the log start of each partition of `topic` to ends[p] (all
  // partitions to their durable end when `ends` is null), never past the durable end. A batch
  // straddling the new start stays stored; its offsets below the start are no longer readable.
  Status TruncateTopic(std::string_view topic, const std::map<int32_t, int64_t>* ends);
  // Per-round scratch state of one partition: applied to PartitionState only if the write succeeds.
  struct PartitionDelta {
    int64_t next_offset = 0;
    uint64_t end_bytes = 0;
    int64_t max_timestamp = -1;
    bool has_index = false;
    uint64_t last_index_bytes = 0;
    int64_t last_index_ms = 0;
    std::vector<IndexEntry> new_index;
    std::unordered_map<int64_t, format::ProducerValue> producers;
    bool wrote = false;
  };
  struct Round {
    std::map<PartitionState*, PartitionDelta> parts;
    std::map<TopicState*, std::unordered_map<std::string, DedupEntry>> dedup;
    rocksdb::WriteBatch batch;
  };

  // Setup.
  rocksdb::ColumnFamilyOptions LogColumnFamilyOptions() const;
  rocksdb::ColumnFamilyOptions MetaColumnFamilyOptions() const;
  Status LoadState(std::map<uint32_t, rocksdb::ColumnFamilyHandle*>& log_cfs);
  Status LoadTopic(const std::string& name, const format::TopicValue& value,
                   std::map<uint32_t, rocksdb::ColumnFamilyHandle*>& log_cfs);
  Status ForEachMeta(std::string_view begin, std::string_view end,
                     const std::function<Status(std::string_view, std::string_view)>& fn) const;
  Status WriteMeta(rocksdb::WriteBatch* batch, std::string_view context);
  Result<std::vector<std::shared_ptr<PartitionState>>> CreatePartitions(
      uint32_t topic_id, const std::string& topic_name, int32_t first, int32_t count,
      format::CountersValue* counters, rocksdb::WriteBatch* batch);

  void DropPartitions(const std::vector<std::shared_ptr<PartitionState>>& parts);

  // Lookup under topics_mu_.
  std::shared_ptr<TopicState> FindTopic(std::string_view name) const;
  Result<std::shared_ptr<PartitionState>> FindPartition(std::string_view topic, Partition p) const;

  // Append path.
  Status Prepare(AppendRequest& request, PendingAppend* out);
  void CommitterLoop();
  // Queues a prepared op for the committer (blocking while the queue is full); on shutdown
  // completes it with Shutdown instead.
  void Enqueue(std::unique_ptr<PendingAppend> req);
  void CommitRound(std::vector<std::unique_ptr<PendingAppend>>& round);
  Status Stage(PendingAppend& req, Round& round, int64_t now_ms);
  Status StageAppend(PendingAppend& req, Round& round, int64_t now_ms);
  PartitionDelta& DeltaFor(Round& round, PartitionState& part);
  const DedupEntry* FindDedup(PendingAppend& req, Round& round, const std::string& key,
                              int64_t now_ms);
  void RecoverDroppedRecords(PendingAppend& req, Round& round,
                             const format::ProducerBatchValue& original, int64_t now_ms,
                             AppendResult* result);
  void ApplyRound(Round& round);
  void ExpireDedup(int64_t now_ms, rocksdb::WriteBatch* batch);
  format::PartitionValue PartitionRecord(const PartitionState& part,
                                         const PartitionDelta* delta) const;

  // Retention.
  void RetentionLoop();
  Status TrimPartition(const std::shared_ptr<PartitionState>& part, const TopicConfig& config,
                       int64_t now_ms);
  Status ExpireProducers(PartitionState& part, int64_t now_ms);
  Status DeleteFilesBelow(PartitionState& part, int64_t log_start);
  // Under commit_mu_: deletes the log below `cut` (a batch base) and its index entries, and
  // moves the log start to new_start (>= cut) with one synced write; publishes the start first.
  Status MoveLogStart(PartitionState& part, int64_t new_start, int64_t cut, uint64_t start_bytes,
                      std::string_view context);
  // Base offset of the stored batch holding `offset` (`offset` itself if none does).
  Result<int64_t> BatchBaseAt(const PartitionState& part, int64_t offset) const;

  const LogStoreOptions options_;
  Clock* const clock_;
  std::string db_path_;
  std::unique_ptr<rocksdb::Env> env_;  // file-scoped write errors (file_scoped_errors.h); outlives db_
  std::unique_ptr<rocksdb::DB> db_;
  rocksdb::ColumnFamilyHandle* meta_cf_ = nullptr;
  std::shared_ptr<rocksdb::Cache> block_cache_;
  std::shared_ptr<rocksdb::WriteBufferManager> write_buffer_manager_;

  std::mutex admin_mu_;
  std::mutex commit_mu_;
  mutable std::shared_mutex topics_mu_;
  std::map<std::string, std::shared_ptr<TopicState>, std::less<>> topics_;  // topics_mu_
  std::map<uint32_t, std::shared_ptr<TopicState>> dedup_topics_;            // commit_mu_

  // Committer queue.
  mutable std::mutex queue_mu_;
  std::condition_variable queue_cv_;  // work arrived or stopping
  std::condition_variable space_cv_;  // queue drained
  std::deque<std::unique_ptr<PendingAppend>> queue_;
  size_t queued_bytes_ = 0;
  bool stopping_ = false;
  std::thread committer_;
  // Partitions written since the last successful WAL sync (committer thread only).
  std::vector<std::shared_ptr<PartitionState>> unsynced_;
  // Meta-only writes not yet covered by an fsync, and since when (committer thread only).
  bool unsynced_meta_ = false;
  std::chrono::steady_clock::time_point unsynced_meta_since_;
  // Set when a write or a WAL sync failed (a full disk, an I/O error): appends are refused with
  // `degraded_status_`, reads go on, and high watermarks stay where the last good sync left them.
  // The committer calls TryRecover before each round (at most once a second).
  std::atomic<bool> degraded_{false};
  Status degraded_status_;  // committer thread only
  std::chrono::steady_clock::time_point last_recovery_{};  // committer thread only
  // Committer thread, while degraded: resumes RocksDB and flushes every column family, so that
  // everything written before the failure is on disk in synced files (a failed fsync may have
  // dropped WAL pages, "fsyncgate", so the WAL alone is not trusted), then syncs the new WAL and
  // publishes the high watermarks held back. OK when writes may continue.
  Status TryRecover();
  // Keeps a key in the default column family's memtable, never in the WAL, so that a
  // DB::Resume() after a failed WAL write always switches to a new WAL (RocksDB 7.8 switches
  // only when some memtable holds data, and a failed WAL writer never writes again).
  Status PutRecoveryMarker();
  // Committer thread: refuses writes with `cause` until TryRecover succeeds.
  void EnterDegraded(const Status& cause);
  // What Health() answers: the first failure since the store last accepted writes (the
  // committer's degraded status or a RocksDB background error, reported on RocksDB's thread),
  // cleared by a successful TryRecover.
  mutable std::mutex health_mu_;
  Status health_;  // health_mu_
  void SetUnhealthy(const Status& cause);
  // Committer thread, after a good sync (or a recovery flush): moves the high watermark of every
  // partition written since to its end; returns them for NotifyAdvanced.
  std::vector<std::pair<std::shared_ptr<PartitionState>, int64_t>> PublishSynced();
  void NotifyAdvanced(
      const std::vector<std::pair<std::shared_ptr<PartitionState>, int64_t>>& advanced);

  std::unique_ptr<GroupManager> groups_;

  // Retention thread.
  std::mutex retention_mu_;
  std::condition_variable retention_cv_;
  bool retention_stop_ = false;
  std::thread retention_;

  // Stats.
  std::atomic<uint64_t> stat_commits_{0};
  std::atomic<uint64_t> stat_fsyncs_{0};
  std::atomic<uint64_t> stat_records_{0};
  std::atomic<uint64_t> stat_batches_{0};
  std::atomic<uint64_t> stat_bytes_{0};
  std::atomic<uint64_t> stat_fsync_micros_{0};
};

}  // namespace runnel::storage
