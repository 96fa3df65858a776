// GroupManager: the Groups implementation. Private to storage/.
//
// All group state lives in memory (loaded at open) and is persisted in the meta column family
// through the LogStore's committer, so group writes share its WriteBatches and fsyncs. Each
// group has its own mutex; state changes are made under it and their writes are queued to the
// committer before it is released, so the committer sees them in the order they happened.
#pragma once

#include <deque>
#include <functional>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <shared_mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "runnel/common/record_batch.h"
#include "runnel/storage/format.h"
#include "runnel/storage/groups.h"

namespace runnel::storage {

class LogStoreImpl;
struct TopicState;

// Meta column family writes collected under a group mutex and handed to the committer, which
// adds them to its round's WriteBatch.
struct MetaWrites {
  std::vector<std::pair<std::string, std::optional<std::string>>> ops;  // nullopt: delete
  // [begin, end) ranges to delete; begin must be a short IdPrefixBegin key (see format.h).
  std::vector<std::pair<std::string, std::string>> range_deletes;
  void Put(std::string key, std::string value) {
    ops.emplace_back(std::move(key), std::move(value));
  }
  void Delete(std::string key) { ops.emplace_back(std::move(key), std::nullopt); }
  bool empty() const { return ops.empty() && range_deletes.empty(); }
};

// Group writes not yet handed to the committer: the latest value per key. Each queue operation
// flushes it before answering; an entry it created and deleted again (a record past its TTL
// dead-lettered as it is first seen) never reaches RocksDB. Not thread-safe: owned by a group
// under its mutex.
class WriteOverlay {
 public:
  // `fresh`: the key does not exist on disk (a pending entry just created).
  void Put(std::string key, std::string value, bool fresh = false);
  void Delete(const std::string& key);
  bool empty() const { return ops_.empty(); }
  size_t size() const { return ops_.size(); }
  // Moves everything out as a write list and clears the overlay.
  MetaWrites Take();

 private:
  struct Op {
    std::optional<std::string> value;  // nullopt: delete
    bool fresh = false;
  };
  std::unordered_map<std::string, Op> ops_;
};

struct PelEntry {
  // A new entry is in no index and owned by nobody until Lock() or an explicit state.
  format::PendingState state = format::PendingState::kParked;
  uint32_t consumer = 0;  // index into GroupState::consumers; meaningful when locked
  int32_t deliveries = 0;
  int64_t due_ms = 0;  // lock expiry (locked) or redelivery time (retry); unused when parked
  int64_t first_delivery_ms = 0;
  int64_t last_active_ms = 0;
  int64_t first_failure_ms = 0;
  int64_t last_failure_ms = 0;
  std::optional<std::string> key;  // ordered_keys groups only
};

struct DueKey {
  int64_t due_ms;
  int32_t partition;
  int64_t offset;
  friend auto operator<=>(const DueKey&, const DueKey&) = default;
};

struct QueuePartition {
  int64_t cursor = 0;               // next offset never looked at
  std::map<int64_t, PelEntry> pel;  // pending entries by offset
};

struct ConsumerState {
  std::string name;
  int64_t pending = 0;
  int64_t last_seen_ms = 0;
};

struct StreamMember {
  std::vector<std::string> topics;
  int64_t session_timeout_ms = 0;
  int64_t last_seen_ms = 0;
  std::vector<TopicPartition> assignment;
};

// One record copied out of the log for a delivery or a dead letter.
struct LoadedRecord {
  int64_t timestamp_ms = 0;
  std::optional<std::string> key;
  std::optional<std::string> value;
  std::vector<std::pair<std::string, std::optional<std::string>>> headers;
  size_t size = 0;
};

// Copies a record out of its batch.
LoadedRecord CopyRecord(const Record& r);

// Reads records of one topic for a group, caching the last decoded batch of each partition so
// consecutive deliveries do not decode the same batch again. Not thread-safe: used under the
// group mutex.
class GroupRecordReader {
 public:
  GroupRecordReader(const LogStoreImpl& store, std::string topic);
  // The record at (p, offset). OutOfRange if it is gone or not durable yet.
  Result<LoadedRecord> Get(int32_t p, int64_t offset);
  // Calls fn(record) for records from `from` on, until fn returns false or the durable end.
  Status Scan(int32_t p, int64_t from, const std::function<bool(const Record&)>& fn);

 private:
  struct Cached {
    std::unique_ptr<std::string> bytes;
    std::optional<DecodedBatch> batch;
    int64_t base = 0;
    int64_t last = -1;
  };
  Status Load(int32_t p, int64_t offset);

  const LogStoreImpl& store_;
  std::string topic_;
  std::map<int32_t, Cached> cache_;
};

struct GroupState {
  std::string name;
  uint32_t id = 0;
  GroupMode mode = GroupMode::kQueue;
  GroupProtocol protocol = GroupProtocol::kNative;  // stream groups
  int64_t created_ms = 0;

  mutable std::mutex mu;  // guards everything below
  bool deleted = false;   // DeleteGroup ran: every later call on this object is NotFound
  GroupConfig config;
  int32_t generation = 0;
  // Queue groups.
  uint32_t topic_id = 0;
  std::unique_ptr<GroupRecordReader> reader;  // created on first use
  WriteOverlay overlay;                       // writes not yet handed to the committer
  std::vector<QueuePartition> parts;
  std::set<DueKey> due;  // locked and retry entries by due time
  std::vector<ConsumerState> consumers;
  std::unordered_map<std::string, uint32_t> consumer_ids;
  // ordered_keys: offsets of pending entries per (partition, key), oldest first; only the head
  // may be locked or waiting for a retry, the rest are parked.
  std::map<std::pair<int32_t, std::string>, std::deque<int64_t>> key_queues;
  size_t next_partition = 0;  // where Deliver's round-robin over partitions starts
  GroupCounters counters;
  // Stream groups.
  std::map<std::string, StreamMember> members;
  std::map<TopicPartition, format::OffsetValue> committed;
  uint64_t member_seq = 0;
};

// The writes one queue-group call queued. `done` runs once, when the last of them has completed,
// with the first failure that counts: on the committer thread, or on the caller's when nothing
// was written. Held by shared_ptr; each write holds a reference through Part(), and the caller
// drops its own only after releasing the group mutex, so `done` never runs under it.
class CallWrites {
 public:
  explicit CallWrites(std::function<void(Status)> done) : done_(std::move(done)) {}
  ~CallWrites() { done_(std::move(first_)); }
  CallWrites(const CallWrites&) = delete;
  CallWrites& operator=(const CallWrites&) = delete;
  // The completion of one write; `counts` = false ignores its failure (the writer logs it).
  static std::function<void(Status)> Part(const std::shared_ptr<CallWrites>& self,
                                          bool counts = true);

 private:
  std::mutex mu_;
  Status first_;
  std::function<void(Status)> done_;
};

class GroupManager final : public Groups {
 public:
  explicit GroupManager(LogStoreImpl& store);

  // Loads every group from meta. Called by LogStoreImpl::Init after topics are loaded.
  Status Load();
  // The lowest offset of (topic_id, partition) that a retain.until.acked group still needs;
  // INT64_MAX when none pins it.
  int64_t RetentionFloor(uint32_t topic_id, int32_t partition) const;

  Status CreateQueueGroup(std::string_view name, const GroupConfig& config,
                          StartPosition start) override;
  Status DeleteGroup(std::string_view name) override;
  std::vector<std::string> ListGroups() const override;
  Result<GroupDescription> DescribeGroup(std::string_view name) const override;

  Result<Membership> Join(std::string_view group, std::string_view member_id,
                          const std::vector<std::string>& topics,
                          int64_t session_timeout_ms) override;
  Result<Membership> Heartbeat(std::string_view group, std::string_view member_id) override;
  Status Leave(std::string_view group, std::string_view member_id) override;
  void CommitOffsetsAsync(std::string_view group, std::string_view member_id, int32_t generation,
                          const std::vector<OffsetCommit>& offsets,
                          std::function<void(Status)> done) override;
  Result<std::vector<CommittedOffset>> FetchOffsets(
      std::string_view group, const std::vector<TopicPartition>& partitions) const override;
  Status EnsureExternalGroup(std::string_view name, GroupProtocol protocol) override;
  void CommitExternalAsync(std::string_view group, const std::vector<OffsetCommit>& offsets,
                           std::function<void(Status)> done) override;
  Status DeleteOffsets(std::string_view group,
                       const std::vector<TopicPartition>& partitions) override;

  void DeliverAsync(std::string_view group, std::string_view consumer, int32_t max_records,
                    size_t max_bytes, RecordsFn done) override;
  void AckAsync(std::string_view group, std::string_view consumer, std::span<const RecordRef> refs,
                DoneFn done) override;
  void NackAsync(std::string_view group, std::string_view consumer, std::span<const RecordRef> refs,
                 int64_t delay_ms, DoneFn done) override;
  void RejectAsync(std::string_view group, std::string_view consumer,
                   std::span<const RecordRef> refs, std::string_view reason, DoneFn done) override;
  void ExtendAsync(std::string_view group, std::string_view consumer,
                   std::span<const RecordRef> refs,
                   std::function<void(Result<int64_t>)> done) override;
  void ClaimAsync(std::string_view group, std::string_view consumer, int64_t min_idle_ms,
                  int32_t max_records, RecordsFn done) override;

  Result<std::vector<RecordStatus>> StatusOf(std::string_view topic, Partition partition,
                                             Offset offset) const override;
  Result<std::vector<RecordStatus>> StatusByDedupKey(std::string_view topic,
                                                     std::string_view dedup_key) const override;

  Result<std::vector<PendingEntry>> ListPending(std::string_view group,
                                                const PendingQuery& query) const override;
  Status SetQueuePositions(std::string_view group,
                           const std::vector<std::pair<Partition, Offset>>& positions) override;
  Result<std::vector<DeadLetter>> ListDeadLetters(std::string_view group, size_t max,
                                                  Offset from) const override;
  Result<int64_t> Redrive(std::string_view group, const RedriveSpec& spec) override;
  Status PurgeDeadLetters(std::string_view group) override;

 private:
  GroupRecordReader& ReaderFor(GroupState& g);
  struct DeadLetterMove {
    int32_t partition;
    int64_t offset;
    LoadedRecord record;
    int32_t deliveries;
    int64_t first_failure_ms;
    std::string reason;
  };

  // The DLQ offsets from `from` on in `dlq_partition` that a filtered redrive copied back.
  Result<std::set<int64_t>> RedrivenLetters(const GroupState& g, uint32_t dlq_topic_id,
                                            int32_t dlq_partition, int64_t from) const;
  // The group's redrive cursor in `dlq_partition` of its DLQ topic (0 when it never redrove).
  Result<int64_t> RedriveCursor(const GroupState& g, uint32_t dlq_topic_id,
                                int32_t dlq_partition) const;

  std::shared_ptr<GroupState> Find(std::string_view name) const;
  Result<std::shared_ptr<GroupState>> FindQueue(std::string_view name) const;
  Result<std::shared_ptr<GroupState>> FindStream(std::string_view name) const;
  uint32_t ConsumerId(GroupState& g, std::string_view consumer, int64_t now);
  // The common start of ack / nack / reject / extend (g.mu held): the group is live, every ref is
  // pending and locked by `consumer`, and the consumer is seen now. Returns the sorted entries.
  Result<std::vector<std::pair<int32_t, int64_t>>> BeginRefOp(GroupState& g,
                                                              std::string_view consumer,
                                                              std::span<const RecordRef> refs,
                                                              int64_t now);
  // Validates refs against g (pending, locked by consumer); returns the entries.
  Result<std::vector<std::pair<int32_t, int64_t>>> CheckRefs(GroupState& g,
                                                             std::string_view consumer,
                                                             std::span<const RecordRef> refs) const;

  // In-memory transitions (caller holds g.mu).
  void Lock(GroupState& g, int32_t p, int64_t offset, PelEntry& e, uint32_t consumer, int64_t now);
  void EraseDue(GroupState& g, int32_t p, int64_t offset, const PelEntry& e);
  // Removes a finished entry (acked or dead-lettered) and promotes its key's next parked entry.
  void Finish(GroupState& g, int32_t p, int64_t offset, int64_t now);
  // The record of a pending entry; std::nullopt (and the entry finished) when retention already
  // removed it. Other read errors are returned.
  Result<std::optional<LoadedRecord>> LoadPending(GroupState& g, int32_t p, int64_t offset,
                                                  int64_t now);
  void PutEntry(GroupState& g, int32_t p, int64_t offset, const PelEntry& e, bool fresh = false);
  // Queues a pending entry's record for the DLQ (dropping the entry if the record is gone) and
  // finishes the entry in memory.
  void RetireToDeadLetters(GroupState& g, int32_t p, int64_t offset, std::string reason,
                           int64_t now, std::vector<DeadLetterMove>* dead);
  void PutCursor(GroupState& g, int32_t p);
  void GrowPartitions(GroupState& g);

  // Queues a meta-only write to the committer; `done` runs once it is written (and fsynced when
  // durable). Call with g.mu held so writes reach the committer in the order they were made.
  void SubmitAsync(MetaWrites writes, bool durable, std::function<void(Status)> done);
  std::future<Status> Submit(MetaWrites writes, bool durable);
  // Queues the append of dead letters with the writes that retire their pending entries (one
  // WriteBatch per DLQ partition, durable), as parts of `call`; a failure is logged, and fails
  // the call only when `failures_count`. Call with g.mu held.
  void SubmitDeadLetters(GroupState& g, std::vector<DeadLetterMove> moves, int64_t now,
                         const std::shared_ptr<CallWrites>& call, bool failures_count);
  // Hands the group's overlay to the committer as a part of `call`: fsynced before it completes
  // unless the group's ack.durability is "written" (then written to the WAL). Call with g.mu
  // held; writes reach the committer in the order they were made, and before any later
  // dead-letter move.
  void Flush(GroupState& g, const std::shared_ptr<CallWrites>& call);
  // The frame of every queue operation: finds the queue group and runs
  // body(g, call, value) -> Status under its mutex; `done` gets that error, else the first
  // failure of the writes queued on `call`, else `value`, once they have completed.
  template <typename T, typename Done, typename Body>
  void QueueOp(std::string_view group, Done done, Body body);
  // Hands the overlay over without waiting (written, not fsynced); failures are logged.
  void FlushAsync(GroupState& g);

 public:
  // Flushes every group's overlay; called by the store before it stops its committer.
  void FlushAll();

 private:
  // The GroupValue.config entry naming an external group's protocol.
  static constexpr std::string_view kProtocolKey = "protocol";
  static format::GroupValue GroupValueOf(const GroupState& g);
  // The stream group `group`, created (durably) with `protocol` when missing; InvalidArgument
  // when it is a queue group or has another protocol.
  Result<std::shared_ptr<GroupState>> FindOrCreateStream(std::string_view group,
                                                         GroupProtocol protocol);
  Status PersistGroup(const GroupState& g, bool durable);

 public:
  // Once per group stored before dlq.retention.ms existed: a private DLQ topic still on the
  // store's default retention is switched to keep letters until purged (logged), and the
  // decision is stored in the group. Called by the store once its committer runs.
  Status UpgradeDeadLetterTopics();

 private:
  void PersistGroupAsync(const GroupState& g);
  // NotFound if the group was deleted or its queue topic was deleted (and maybe recreated).
  Status CheckLive(const GroupState& g) const;
  // Validates a commit and queues its durable write, taking *done; returns the error otherwise.
  Status StageCommit(std::string_view group, std::string_view member_id, int32_t generation,
                     const std::vector<OffsetCommit>& offsets, std::function<void(Status)>* done,
                     bool external);
  void ExpireMembers(GroupState& g, int64_t now, bool* changed);
  void Rebalance(GroupState& g);
  Membership MembershipOf(const GroupState& g, const std::string& member) const;
  RecordStatus QueueStatus(const GroupState& g, int32_t p, int64_t offset) const;

  LogStoreImpl& store_;
  mutable std::shared_mutex mu_;  // guards groups_
  std::mutex redrive_mu_;         // one redrive at a time: two would copy the same letters
  std::map<std::string, std::shared_ptr<GroupState>, std::less<>> groups_;
};

}  // namespace runnel::storage
