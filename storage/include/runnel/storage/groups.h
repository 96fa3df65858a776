// Consumer groups on the log: Kafka-like stream groups (assigned partitions, committed offsets)
// and queue groups (per-record delivery with locks, ack/nack/reject, retry backoff, dead-letter
// topics), plus lag and per-record status.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "runnel/common/ids.h"
#include "runnel/common/result.h"
#include "runnel/common/status.h"

namespace runnel::storage {

// Persisted in GroupValue.mode: DO NOT CHANGE.
enum class GroupMode : uint8_t { kStream = 1, kQueue = 2 };

// Who keeps a stream group's membership: the store (native Join / Heartbeat) or a front-end
// (Kafka's classic group protocol, whose coordinator lives in the Kafka front-end). Offsets live
// in the store either way. A group has one protocol for life: the other kind's clients are
// refused. Persisted as the "protocol" entry of GroupValue.config ("kafka"; absent: native).
enum class GroupProtocol : uint8_t { kNative = 0, kKafka = 1 };
std::string_view GroupProtocolName(GroupProtocol p);

// When a queue group's deliveries and settles are confirmed: after their fsync ("durable") or
// after their WAL write ("written").
enum class SettleDurability : uint8_t { kDurable, kWritten };
std::string_view SettleDurabilityName(SettleDurability d);

// Queue-group settings. A value type. Keys are the string names used by Set / ToList.
struct GroupConfig {
  std::string topic;                 // "topic": the topic a queue group consumes
  int64_t lock_timeout_ms = 30'000;  // "lock.timeout.ms": how long a delivery is locked
  int32_t max_deliveries = 5;        // "max.deliveries": at this many, the record is dead-lettered
  bool ordered_keys = false;         // "ordered.keys": one record per (partition, key) in flight
  int64_t message_ttl_ms = 0;        // "message.ttl.ms": older records are dead-lettered; 0 = off
  std::string dlq_topic;             // "dlq.topic": default "<topic>.dlq.<group>"
  // "dlq.retention.ms": the retention of the DLQ topic the group creates; -1 (the default) keeps
  // dead letters until purged or redriven. Unset only in groups stored before it existed.
  std::optional<int64_t> dlq_retention_ms;
  bool retain_until_acked = false;  // "retain.until.acked": pin retention below the ack floor
  // "ack.durability": when deliveries and settles are confirmed (see Groups::DeliverAsync).
  SettleDurability ack_durability = SettleDurability::kDurable;

  Status Set(std::string_view key, std::string_view value);
  std::vector<std::pair<std::string, std::string>> ToList() const;
};

// Where a new queue group starts reading.
struct StartPosition {
  enum class Kind { kEarliest, kLatest, kOffset, kTimestamp };
  Kind kind = Kind::kLatest;
  int64_t value = 0;  // the offset (all partitions) or the timestamp in ms

  static StartPosition Earliest() { return {Kind::kEarliest, 0}; }
  static StartPosition Latest() { return {Kind::kLatest, 0}; }
  static StartPosition AtOffset(int64_t o) { return {Kind::kOffset, o}; }
  static StartPosition AtTime(int64_t ms) { return {Kind::kTimestamp, ms}; }
};

struct TopicPartition {
  std::string topic;
  Partition partition{0};
  friend bool operator==(const TopicPartition&, const TopicPartition&) = default;
  friend auto operator<=>(const TopicPartition&, const TopicPartition&) = default;
};

// ---- stream groups ----------------------------------------------------------------------------

struct Membership {
  std::string member_id;
  int32_t generation = 0;
  std::vector<TopicPartition> assignment;  // sorted
};

struct OffsetCommit {
  TopicPartition tp;
  Offset offset{0};  // the next offset to consume
  std::string metadata;
};

struct CommittedOffset {
  Offset offset{-1};  // -1: nothing committed
  std::string metadata;
  int64_t commit_ms = 0;
};

// ---- queue groups -----------------------------------------------------------------------------

struct RecordRef {
  Partition partition{0};
  Offset offset{0};
};

struct DeliveredRecord {
  Partition partition{0};
  Offset offset{0};
  int64_t timestamp_ms = 0;
  std::optional<std::string> key;
  std::optional<std::string> value;
  std::vector<std::pair<std::string, std::optional<std::string>>> headers;
  int32_t deliveries = 0;  // including this one
  int64_t lock_until_ms = 0;
};

// ---- lag and status ---------------------------------------------------------------------------

struct PartitionLag {
  TopicPartition tp;
  Offset position{0};  // committed offset (stream) or next undelivered offset (queue)
  Offset log_end{0};   // durable high watermark
  int64_t lag = 0;     // log_end - position
  int64_t pending = 0;
  int64_t oldest_pending_age_ms = 0;
};

struct ConsumerInfo {
  std::string consumer;
  int64_t pending = 0;                     // queue groups
  int64_t idle_ms = 0;                     // since its last delivery, ack or heartbeat
  std::vector<TopicPartition> assignment;  // stream groups
};

// Queue-group activity since the store opened (not persisted).
struct GroupCounters {
  int64_t deliveries = 0;    // records handed out by Deliver or Claim
  int64_t redeliveries = 0;  // of those, records delivered before
  int64_t acks = 0;
  int64_t nacks = 0;
  int64_t rejects = 0;
  int64_t dead_lettered = 0;         // rejects, max.deliveries and TTL expiry
  int64_t ack_latency_ms_total = 0;  // first delivery -> ack, summed over acks
};

struct GroupDescription {
  std::string name;
  GroupMode mode = GroupMode::kQueue;
  GroupProtocol protocol = GroupProtocol::kNative;
  GroupConfig config;
  int32_t generation = 0;
  std::vector<PartitionLag> partitions;
  std::vector<ConsumerInfo> consumers;
  GroupCounters counters;
};

enum class RecordState { kUndelivered, kPending, kAcked, kDeadLettered };
std::string_view RecordStateName(RecordState s);

struct RecordStatus {
  std::string group;
  RecordState state = RecordState::kUndelivered;
  std::string consumer;        // pending and locked
  int32_t deliveries = 0;      // pending
  int64_t lock_until_ms = 0;   // pending: lock expiry or retry time
  Partition dlq_partition{0};  // dead-lettered
  Offset dlq_offset{-1};
  std::string reason;  // dead-lettered
};

// One pending entry of a queue group, as XPENDING shows it.
enum class PendingKind { kLocked, kRetry, kParked };

struct PendingEntry {
  Partition partition{0};
  Offset offset{0};
  PendingKind kind = PendingKind::kLocked;
  std::string consumer;  // locked: the owner
  int32_t deliveries = 0;
  int64_t idle_ms = 0;  // since its last delivery, claim or extend (0 when parked)
  int64_t due_ms = 0;   // locked: lock expiry; retry: redelivery time
  int64_t first_delivery_ms = 0;
};

struct PendingQuery {
  std::string consumer;              // empty: every consumer
  int64_t min_idle_ms = 0;           // only entries idle at least this long
  std::optional<int32_t> partition;  // only this partition
  size_t max = 100;
};

// ---- dead letters -----------------------------------------------------------------------------

struct DeadLetter {
  Partition dlq_partition{0};
  Offset dlq_offset{0};
  std::string source_topic;
  Partition source_partition{0};
  Offset source_offset{0};
  int32_t deliveries = 0;
  std::string reason;
  int64_t first_failure_ms = 0;
  int64_t last_failure_ms = 0;
  std::optional<std::string> key;
  std::optional<std::string> value;
};

struct RedriveSpec {
  std::string to_topic;               // empty: back to the source topic
  std::optional<std::string> reason;  // only dead letters whose reason matches this glob
  Offset from{0};                     // DLQ offsets [from, to) in every DLQ partition
  Offset to{INT64_MAX};
};

// Thread-safe. Obtained from LogStore::groups(); lives as long as the store.
class Groups {
 public:
  virtual ~Groups() = default;

  // Creates a queue group on config.topic (which must exist) and its dead-letter topic (created
  // with the topic's partition count when missing). AlreadyExists, NotFound, InvalidArgument.
  virtual Status CreateQueueGroup(std::string_view name, const GroupConfig& config,
                                  StartPosition start) = 0;
  // Deletes a group of either kind with its offsets and pending entries (not its DLQ topic).
  virtual Status DeleteGroup(std::string_view name) = 0;
  virtual std::vector<std::string> ListGroups() const = 0;
  virtual Result<GroupDescription> DescribeGroup(std::string_view name) const = 0;

  // Stream groups. Join creates the group on first use. An empty member_id joins as a new member
  // (the result names it); every membership change bumps the generation and reassigns the
  // subscribed partitions evenly and stickily. Heartbeat keeps a member alive and returns the
  // current generation and assignment; a member silent for its session timeout is removed.
  // NotFound (unknown group or member: rejoin), InvalidArgument.
  virtual Result<Membership> Join(std::string_view group, std::string_view member_id,
                                  const std::vector<std::string>& topics,
                                  int64_t session_timeout_ms) = 0;
  virtual Result<Membership> Heartbeat(std::string_view group, std::string_view member_id) = 0;
  virtual Status Leave(std::string_view group, std::string_view member_id) = 0;
  // Durable. generation -1 with an empty member id is an admin reset: it commits for a stream
  // group without live members, and moves a queue group's delivery cursors (SetQueuePositions,
  // which waits for the fsync; `done` then runs on the calling thread). Fenced if the generation
  // is stale or a partition is not assigned to the member;
  // OutOfRange for an offset outside the log; InvalidArgument for no offsets. The async form does
  // not wait for the fsync: `done` runs on the calling thread (validation errors) or on the
  // store's committer thread, so it must be quick and must not call back into Groups or wait on
  // the store (hand the result to another thread instead). When the call notices an expired
  // member, the rebalance it triggers is persisted asynchronously.
  virtual void CommitOffsetsAsync(std::string_view group, std::string_view member_id,
                                  int32_t generation, const std::vector<OffsetCommit>& offsets,
                                  std::function<void(Status)> done) = 0;
  Status CommitOffsets(std::string_view group, std::string_view member_id, int32_t generation,
                       const std::vector<OffsetCommit>& offsets);
  virtual Result<std::vector<CommittedOffset>> FetchOffsets(
      std::string_view group, const std::vector<TopicPartition>& partitions) const = 0;

  // Stream groups whose membership a front-end keeps (GroupProtocol other than native).
  // EnsureExternalGroup creates the group (durably) unless it exists with this protocol;
  // InvalidArgument, naming what the group is, when it is a queue group or has another protocol.
  virtual Status EnsureExternalGroup(std::string_view name, GroupProtocol protocol) = 0;
  // Commits for a member the front-end vouches for: the group must be external; each partition
  // must exist (NotFound) and each offset be >= 0 (OutOfRange); any offset past the log end is
  // kept as given, as Kafka does. Durable: `done` runs as for CommitOffsetsAsync.
  virtual void CommitExternalAsync(std::string_view group, const std::vector<OffsetCommit>& offsets,
                                   std::function<void(Status)> done) = 0;
  // Forgets the committed offsets of `partitions` (Kafka's OffsetDelete); durable. Partitions
  // without one are ignored. NotFound (group), InvalidArgument (a queue group).
  virtual Status DeleteOffsets(std::string_view group,
                               const std::vector<TopicPartition>& partitions) = 0;

  // Queue groups. Each operation answers once what it changed is confirmed: after the fsync that
  // covers it (the default, ack.durability "durable"), or after the WAL write (ack.durability
  // "written": a power cut may revert it, a process crash does not). That covers the locks and
  // delivery counts Deliver and Claim hand out as well as acks, nacks, extends and rejects.
  // The *Async forms never block on the disk: `done` runs on the calling thread (validation
  // errors, nothing to write) or on the store's committer thread, so it must be quick and must
  // not call back into Groups or wait on the store (hand the result to another thread instead).
  // The plain forms wait for it.
  using DoneFn = std::function<void(Status)>;
  using RecordsFn = std::function<void(Result<std::vector<DeliveredRecord>>)>;

  // Deliver hands out due retries, records whose lock expired and never-delivered records, each
  // locked to `consumer` until now + lock.timeout.ms. Records past max.deliveries or the TTL are
  // dead-lettered instead. NotFound, InvalidArgument.
  virtual void DeliverAsync(std::string_view group, std::string_view consumer, int32_t max_records,
                            size_t max_bytes, RecordsFn done) = 0;
  Result<std::vector<DeliveredRecord>> Deliver(std::string_view group, std::string_view consumer,
                                               int32_t max_records, size_t max_bytes);
  // Each of these checks every ref first (pending, locked by `consumer`) and changes nothing if
  // one fails (NotFound / InvalidArgument naming it). Reject's dead letters are always durable.
  virtual void AckAsync(std::string_view group, std::string_view consumer,
                        std::span<const RecordRef> refs, DoneFn done) = 0;
  Status Ack(std::string_view group, std::string_view consumer, std::span<const RecordRef> refs);
  virtual void NackAsync(std::string_view group, std::string_view consumer,
                         std::span<const RecordRef> refs, int64_t delay_ms, DoneFn done) = 0;
  Status Nack(std::string_view group, std::string_view consumer, std::span<const RecordRef> refs,
              int64_t delay_ms);
  virtual void RejectAsync(std::string_view group, std::string_view consumer,
                           std::span<const RecordRef> refs, std::string_view reason,
                           DoneFn done) = 0;
  Status Reject(std::string_view group, std::string_view consumer, std::span<const RecordRef> refs,
                std::string_view reason);
  // Renews the locks; answers the new lock expiry.
  virtual void ExtendAsync(std::string_view group, std::string_view consumer,
                           std::span<const RecordRef> refs,
                           std::function<void(Result<int64_t>)> done) = 0;
  Result<int64_t> Extend(std::string_view group, std::string_view consumer,
                         std::span<const RecordRef> refs);
  // Takes over up to max_records locked entries idle for at least min_idle_ms (any owner).
  virtual void ClaimAsync(std::string_view group, std::string_view consumer, int64_t min_idle_ms,
                          int32_t max_records, RecordsFn done) = 0;
  Result<std::vector<DeliveredRecord>> Claim(std::string_view group, std::string_view consumer,
                                             int64_t min_idle_ms, int32_t max_records);

  // Where one record is, for every group consuming its topic.
  virtual Result<std::vector<RecordStatus>> StatusOf(std::string_view topic, Partition partition,
                                                     Offset offset) const = 0;
  virtual Result<std::vector<RecordStatus>> StatusByDedupKey(std::string_view topic,
                                                             std::string_view dedup_key) const = 0;

  // Pending entries of a queue group in (partition, offset) order, filtered by `query`.
  virtual Result<std::vector<PendingEntry>> ListPending(std::string_view group,
                                                        const PendingQuery& query) const = 0;
  // Moves a queue group's delivery cursors (the next never-delivered offset) of the given
  // partitions, like Redis' XGROUP SETID; durable. Moving back redelivers acknowledged records;
  // moving forward skips records never delivered. Pending entries stay pending either way.
  // InvalidArgument for a bad partition; OutOfRange for an offset outside the log.
  virtual Status SetQueuePositions(std::string_view group,
                                   const std::vector<std::pair<Partition, Offset>>& positions) = 0;

  // Dead letters of a queue group, oldest first per DLQ partition, at most `max`, starting at
  // DLQ offset `from` in every DLQ partition.
  virtual Result<std::vector<DeadLetter>> ListDeadLetters(std::string_view group, size_t max,
                                                          Offset from = Offset(0)) const = 0;
  // Re-appends matching dead letters (without their runnel.dlq.* headers) to their source
  // partition of spec.to_topic and returns how many. An unfiltered redrive (every reason, every
  // offset) then purges the DLQ; a filtered one leaves the DLQ as it is but durably marks each
  // letter it copied, which listings and later redrives skip. Either way no letter is redriven
  // twice.
  virtual Result<int64_t> Redrive(std::string_view group, const RedriveSpec& spec) = 0;
  // Deletes every dead letter of the group (moves the DLQ topic's log start to its end).
  virtual Status PurgeDeadLetters(std::string_view group) = 0;
};

}  // namespace runnel::storage
