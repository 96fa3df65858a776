// Native protocol message bodies (see common/PROTOCOL.md). Each request and response is a plain
// struct whose `Visit` lists its fields in wire order; one generic encoder and one generic decoder
// turn every message into bytes and back, so the struct *is* the specification.
//
// Wire types: integers big-endian; bool = u8 0/1; enums = their underlying integer;
// string = length:i32 bytes; optional string = length:i32 (-1: null) bytes;
// vector = count:i32 elements; pair = first second; struct = its fields in order.
//
// A response body is `error:u16 message:string` followed by the response's fields only when
// error is 0 (none). Items inside a response (one partition of a Produce) carry their own
// `ItemError`. Decoding never trusts a length: counts and lengths are checked against the bytes
// left before anything is allocated, and trailing bytes are an error.
#pragma once

#include <algorithm>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "runnel/common/coding.h"
#include "runnel/common/result.h"
#include "runnel/common/status.h"
#include "runnel/common/wire.h"

namespace runnel::proto {

// ---- error mapping (the one place) ------------------------------------------------------------

// runnel::Status -> wire error code (used by the broker for every response).
wire::ErrorCode ToErrorCode(StatusCode code);
// wire error code + message -> runnel::Status (used by clients). kNone maps to OK.
Status ToStatus(wire::ErrorCode code, std::string_view message);

// ---- shared pieces ----------------------------------------------------------------------------

using ConfigEntries = std::vector<std::pair<std::string, std::string>>;

// Large bytes (record batches) that the encoder emits as their own buffer instead of copying.
struct Payload {
  std::string bytes;
};

struct ItemError {
  wire::ErrorCode error = wire::ErrorCode::kNone;
  std::string message;
  template <class V> void Visit(V& v) { v(error, message); }
  bool ok() const { return error == wire::ErrorCode::kNone; }
  Status ToStatus() const { return proto::ToStatus(error, message); }
  static ItemError From(const Status& s) { return {ToErrorCode(s.code()), s.message()}; }
};

struct TopicPartitionRef {
  std::string topic;
  int32_t partition = 0;
  template <class V> void Visit(V& v) { v(topic, partition); }
  friend bool operator==(const TopicPartitionRef&, const TopicPartitionRef&) = default;
  friend auto operator<=>(const TopicPartitionRef&, const TopicPartitionRef&) = default;
};

struct RecordRefWire {
  int32_t partition = 0;
  int64_t offset = 0;
  template <class V> void Visit(V& v) { v(partition, offset); }
};

struct HeaderWire {
  std::string key;
  std::optional<std::string> value;
  template <class V> void Visit(V& v) { v(key, value); }
};

// ---- 0 ApiVersions ----------------------------------------------------------------------------
struct ApiVersionsRequest {
  static constexpr wire::Api kApi = wire::Api::kApiVersions;
  template <class V> void Visit(V&) {}
};
struct ApiVersionRange {
  uint16_t api = 0;
  uint16_t min_version = 0;
  uint16_t max_version = 0;
  template <class V> void Visit(V& v) { v(api, min_version, max_version); }
};
struct ApiVersionsResponse {
  std::vector<ApiVersionRange> apis;
  std::string broker_version;
  template <class V> void Visit(V& v) { v(apis, broker_version); }
};

// ---- 1 Produce --------------------------------------------------------------------------------
struct ProducePartition {
  std::string topic;
  int32_t partition = 0;
  Payload batch;  // exactly one RecordBatch v2
  template <class V> void Visit(V& v) { v(topic, partition, batch); }
};
struct ProduceRequest {
  static constexpr wire::Api kApi = wire::Api::kProduce;
  uint8_t acks = 2;  // storage::AckMode: 0 none, 1 written, 2 durable
  std::vector<ProducePartition> partitions;
  template <class V> void Visit(V& v) { v(acks, partitions); }
};
struct DuplicateWire {
  int32_t index = 0;
  int32_t partition = 0;
  int64_t offset = -1;
  template <class V> void Visit(V& v) { v(index, partition, offset); }
};
struct ProducePartitionResult {
  std::string topic;
  int32_t partition = 0;
  ItemError error;
  int64_t base_offset = -1;
  int64_t last_offset = -1;
  int32_t records_written = 0;
  bool duplicate_batch = false;
  std::vector<DuplicateWire> duplicates;
  template <class V> void Visit(V& v) {
    v(topic, partition, error, base_offset, last_offset, records_written, duplicate_batch,
      duplicates);
  }
};
struct ProduceResponse {
  std::vector<ProducePartitionResult> partitions;  // same order as the request
  template <class V> void Visit(V& v) { v(partitions); }
};

// ---- 2 Fetch ----------------------------------------------------------------------------------
struct FetchPartition {
  std::string topic;
  int32_t partition = 0;
  int64_t offset = 0;
  int32_t max_bytes = 1 << 20;
  template <class V> void Visit(V& v) { v(topic, partition, offset, max_bytes); }
};
struct FetchRequest {
  static constexpr wire::Api kApi = wire::Api::kFetch;
  int32_t max_wait_ms = 0;  // long-poll: wait up to this long for min_bytes
  int32_t min_bytes = 1;
  int32_t max_bytes = 16 << 20;  // whole response
  std::vector<FetchPartition> partitions;
  template <class V> void Visit(V& v) { v(max_wait_ms, min_bytes, max_bytes, partitions); }
};
struct FetchPartitionResult {
  std::string topic;
  int32_t partition = 0;
  ItemError error;
  int64_t high_watermark = 0;
  int64_t log_start = 0;
  Payload records;  // whole batches, as stored
  template <class V> void Visit(V& v) {
    v(topic, partition, error, high_watermark, log_start, records);
  }
};
struct FetchResponse {
  std::vector<FetchPartitionResult> partitions;
  template <class V> void Visit(V& v) { v(partitions); }
};

// ---- 3 ListOffsets ----------------------------------------------------------------------------
enum class OffsetSpec : uint8_t { kEarliest = 0, kLatest = 1, kTimestamp = 2 };
struct ListOffsetsPartition {
  std::string topic;
  int32_t partition = 0;
  OffsetSpec spec = OffsetSpec::kLatest;
  int64_t timestamp_ms = 0;
  template <class V> void Visit(V& v) { v(topic, partition, spec, timestamp_ms); }
};
struct ListOffsetsRequest {
  static constexpr wire::Api kApi = wire::Api::kListOffsets;
  std::vector<ListOffsetsPartition> partitions;
  template <class V> void Visit(V& v) { v(partitions); }
};
struct ListOffsetsResult {
  std::string topic;
  int32_t partition = 0;
  ItemError error;
  int64_t offset = -1;
  template <class V> void Visit(V& v) { v(topic, partition, error, offset); }
};
struct ListOffsetsResponse {
  std::vector<ListOffsetsResult> partitions;
  template <class V> void Visit(V& v) { v(partitions); }
};

// ---- 4 Metadata -------------------------------------------------------------------------------
struct MetadataRequest {
  static constexpr wire::Api kApi = wire::Api::kMetadata;
  std::vector<std::string> topics;  // empty: every topic
  bool allow_auto_create = false;   // create missing topics when the broker allows it
  template <class V> void Visit(V& v) { v(topics, allow_auto_create); }
};
struct PartitionMetadata {
  int32_t partition = 0;
  int64_t log_start = 0;
  int64_t high_watermark = 0;
  int64_t size_bytes = 0;
  template <class V> void Visit(V& v) { v(partition, log_start, high_watermark, size_bytes); }
};
struct TopicMetadata {
  std::string name;
  ItemError error;
  uint32_t id = 0;
  ConfigEntries config;
  std::vector<PartitionMetadata> partitions;
  template <class V> void Visit(V& v) { v(name, error, id, config, partitions); }
};
struct MetadataResponse {
  std::vector<TopicMetadata> topics;
  template <class V> void Visit(V& v) { v(topics); }
};

// ---- 5 CreateTopic / 6 DeleteTopic / 7 AlterTopic ---------------------------------------------
struct CreateTopicRequest {
  static constexpr wire::Api kApi = wire::Api::kCreateTopic;
  std::string name;
  int32_t partitions = 1;
  ConfigEntries config;  // overrides of the broker's default topic config
  template <class V> void Visit(V& v) { v(name, partitions, config); }
};
struct DeleteTopicRequest {
  static constexpr wire::Api kApi = wire::Api::kDeleteTopic;
  std::string name;
  template <class V> void Visit(V& v) { v(name); }
};
struct AlterTopicRequest {
  static constexpr wire::Api kApi = wire::Api::kAlterTopic;
  std::string name;
  int32_t new_partitions = 0;  // 0 keeps the count
  ConfigEntries config;
  template <class V> void Visit(V& v) { v(name, new_partitions, config); }
};
// Responses with no fields beyond the error.
struct EmptyResponse {
  template <class V> void Visit(V&) {}
};

// ---- 8 InitProducerId -------------------------------------------------------------------------
struct InitProducerIdRequest {
  static constexpr wire::Api kApi = wire::Api::kInitProducerId;
  template <class V> void Visit(V&) {}
};
struct InitProducerIdResponse {
  int64_t producer_id = -1;
  int16_t producer_epoch = 0;
  template <class V> void Visit(V& v) { v(producer_id, producer_epoch); }
};

// ---- 9 Authenticate ---------------------------------------------------------------------------
// The first request on a connection to a broker started with --auth-tokens; until it succeeds
// every other request is answered `unauthenticated` and the connection is closed.
struct AuthenticateRequest {
  static constexpr wire::Api kApi = wire::Api::kAuthenticate;
  std::string token;
  template <class V> void Visit(V& v) { v(token); }
};
struct AuthenticateResponse {
  std::string principal;  // the token's name
  template <class V> void Visit(V& v) { v(principal); }
};

// ---- 10 JoinGroup / 11 Heartbeat / 12 LeaveGroup ----------------------------------------------
struct JoinGroupRequest {
  static constexpr wire::Api kApi = wire::Api::kJoinGroup;
  std::string group;
  std::string member_id;  // empty: join as a new member
  int32_t session_timeout_ms = 10'000;
  std::vector<std::string> topics;
  template <class V> void Visit(V& v) { v(group, member_id, session_timeout_ms, topics); }
};
struct HeartbeatRequest {
  static constexpr wire::Api kApi = wire::Api::kHeartbeat;
  std::string group;
  std::string member_id;
  template <class V> void Visit(V& v) { v(group, member_id); }
};
struct LeaveGroupRequest {
  static constexpr wire::Api kApi = wire::Api::kLeaveGroup;
  std::string group;
  std::string member_id;
  template <class V> void Visit(V& v) { v(group, member_id); }
};
struct MembershipResponse {  // JoinGroup and Heartbeat
  std::string member_id;
  int32_t generation = 0;
  std::vector<TopicPartitionRef> assignment;
  template <class V> void Visit(V& v) { v(member_id, generation, assignment); }
};

// ---- 13 CommitOffsets / 14 FetchOffsets -------------------------------------------------------
struct OffsetCommitWire {
  std::string topic;
  int32_t partition = 0;
  int64_t offset = 0;
  std::string metadata;
  template <class V> void Visit(V& v) { v(topic, partition, offset, metadata); }
};
struct CommitOffsetsRequest {
  static constexpr wire::Api kApi = wire::Api::kCommitOffsets;
  std::string group;
  std::string member_id;  // empty with generation -1: admin reset of a group with no members
  int32_t generation = -1;
  std::vector<OffsetCommitWire> offsets;
  template <class V> void Visit(V& v) { v(group, member_id, generation, offsets); }
};
struct FetchOffsetsRequest {
  static constexpr wire::Api kApi = wire::Api::kFetchOffsets;
  std::string group;
  std::vector<TopicPartitionRef> partitions;
  template <class V> void Visit(V& v) { v(group, partitions); }
};
struct CommittedOffsetWire {
  std::string topic;
  int32_t partition = 0;
  int64_t offset = -1;  // -1: nothing committed
  std::string metadata;
  int64_t commit_ms = 0;
  template <class V> void Visit(V& v) { v(topic, partition, offset, metadata, commit_ms); }
};
struct FetchOffsetsResponse {
  std::vector<CommittedOffsetWire> offsets;
  template <class V> void Visit(V& v) { v(offsets); }
};

// ---- 20 CreateQueueGroup .. 26 Claim ----------------------------------------------------------
enum class StartKind : uint8_t { kEarliest = 0, kLatest = 1, kOffset = 2, kTimestamp = 3 };
struct CreateQueueGroupRequest {
  static constexpr wire::Api kApi = wire::Api::kCreateQueueGroup;
  std::string group;
  ConfigEntries config;  // "topic" plus storage::GroupConfig keys
  StartKind start = StartKind::kLatest;
  int64_t start_value = 0;
  template <class V> void Visit(V& v) { v(group, config, start, start_value); }
};
struct DeliverRequest {
  static constexpr wire::Api kApi = wire::Api::kDeliver;
  std::string group;
  std::string consumer;
  int32_t max_records = 100;
  int32_t max_bytes = 4 << 20;
  int32_t max_wait_ms = 0;  // long-poll when nothing is deliverable
  template <class V> void Visit(V& v) { v(group, consumer, max_records, max_bytes, max_wait_ms); }
};
struct DeliveredRecordWire {
  int32_t partition = 0;
  int64_t offset = 0;
  int64_t timestamp_ms = 0;
  std::optional<std::string> key;
  std::optional<std::string> value;
  std::vector<HeaderWire> headers;
  int32_t deliveries = 0;
  int64_t lock_until_ms = 0;
  template <class V> void Visit(V& v) {
    v(partition, offset, timestamp_ms, key, value, headers, deliveries, lock_until_ms);
  }
};
struct DeliverResponse {  // Deliver and Claim
  std::string topic;
  std::vector<DeliveredRecordWire> records;
  template <class V> void Visit(V& v) { v(topic, records); }
};
struct AckRequest {
  static constexpr wire::Api kApi = wire::Api::kAck;
  std::string group;
  std::string consumer;
  std::vector<RecordRefWire> refs;
  template <class V> void Visit(V& v) { v(group, consumer, refs); }
};
struct NackRequest {
  static constexpr wire::Api kApi = wire::Api::kNack;
  std::string group;
  std::string consumer;
  int64_t delay_ms = 0;
  std::vector<RecordRefWire> refs;
  template <class V> void Visit(V& v) { v(group, consumer, delay_ms, refs); }
};
struct RejectRequest {
  static constexpr wire::Api kApi = wire::Api::kReject;
  std::string group;
  std::string consumer;
  std::string reason;
  std::vector<RecordRefWire> refs;
  template <class V> void Visit(V& v) { v(group, consumer, reason, refs); }
};
struct ExtendRequest {
  static constexpr wire::Api kApi = wire::Api::kExtend;
  std::string group;
  std::string consumer;
  std::vector<RecordRefWire> refs;
  template <class V> void Visit(V& v) { v(group, consumer, refs); }
};
struct ExtendResponse {
  int64_t lock_until_ms = 0;
  template <class V> void Visit(V& v) { v(lock_until_ms); }
};
struct ClaimRequest {
  static constexpr wire::Api kApi = wire::Api::kClaim;
  std::string group;
  std::string consumer;
  int64_t min_idle_ms = 0;
  int32_t max_records = 100;
  template <class V> void Visit(V& v) { v(group, consumer, min_idle_ms, max_records); }
};

// ---- 27 ListPending (XPENDING) ----------------------------------------------------------------
struct ListPendingRequest {
  static constexpr wire::Api kApi = wire::Api::kListPending;
  std::string group;
  std::string consumer;     // empty: every consumer
  int64_t min_idle_ms = 0;  // only entries idle at least this long
  int32_t partition = -1;   // -1: every partition
  int32_t max = 100;
  template <class V> void Visit(V& v) { v(group, consumer, min_idle_ms, partition, max); }
};
enum class PendingKindWire : uint8_t { kLocked = 0, kRetry = 1, kParked = 2 };
struct PendingEntryWire {
  int32_t partition = 0;
  int64_t offset = 0;
  PendingKindWire kind = PendingKindWire::kLocked;
  std::string consumer;  // locked: the owner
  int32_t deliveries = 0;
  int64_t idle_ms = 0;   // since the last delivery, claim or extend
  int64_t due_ms = 0;    // locked: lock expiry; retry: redelivery time (epoch ms)
  int64_t first_delivery_ms = 0;
  template <class V> void Visit(V& v) {
    v(partition, offset, kind, consumer, deliveries, idle_ms, due_ms, first_delivery_ms);
  }
};
struct ListPendingResponse {
  std::string topic;
  std::vector<PendingEntryWire> entries;  // by (partition, offset)
  template <class V> void Visit(V& v) { v(topic, entries); }
};

// ---- 30 ListDeadLetters / 31 Redrive / 32 PurgeDeadLetters ------------------------------------
struct ListDeadLettersRequest {
  static constexpr wire::Api kApi = wire::Api::kListDeadLetters;
  std::string group;
  int32_t max = 100;
  int64_t from_offset = 0;  // first DLQ offset to list, in every DLQ partition
  template <class V> void Visit(V& v) { v(group, max, from_offset); }
};
struct DeadLetterWire {
  int32_t dlq_partition = 0;
  int64_t dlq_offset = 0;
  std::string source_topic;
  int32_t source_partition = 0;
  int64_t source_offset = 0;
  int32_t deliveries = 0;
  std::string reason;
  int64_t first_failure_ms = 0;
  int64_t last_failure_ms = 0;
  std::optional<std::string> key;
  std::optional<std::string> value;
  template <class V> void Visit(V& v) {
    v(dlq_partition, dlq_offset, source_topic, source_partition, source_offset, deliveries, reason,
      first_failure_ms, last_failure_ms, key, value);
  }
};
struct ListDeadLettersResponse {
  std::vector<DeadLetterWire> dead_letters;
  template <class V> void Visit(V& v) { v(dead_letters); }
};
struct RedriveRequest {
  static constexpr wire::Api kApi = wire::Api::kRedrive;
  std::string group;
  std::string to_topic;               // empty: the source topic
  std::optional<std::string> reason;  // a glob (`*`, `?`); null: every reason
  int64_t from = 0;                   // DLQ offsets [from, to)
  int64_t to = INT64_MAX;
  template <class V> void Visit(V& v) { v(group, to_topic, reason, from, to); }
};
struct RedriveResponse {
  int64_t redriven = 0;
  template <class V> void Visit(V& v) { v(redriven); }
};
struct PurgeDeadLettersRequest {
  static constexpr wire::Api kApi = wire::Api::kPurgeDeadLetters;
  std::string group;
  template <class V> void Visit(V& v) { v(group); }
};

// ---- 40 ListGroups / 41 DescribeGroup / 42 DeleteGroup ----------------------------------------
struct ListGroupsRequest {
  static constexpr wire::Api kApi = wire::Api::kListGroups;
  template <class V> void Visit(V&) {}
};
struct ListGroupsResponse {
  std::vector<std::string> groups;
  template <class V> void Visit(V& v) { v(groups); }
};
struct DescribeGroupRequest {
  static constexpr wire::Api kApi = wire::Api::kDescribeGroup;
  std::string group;
  template <class V> void Visit(V& v) { v(group); }
};
struct PartitionLagWire {
  std::string topic;
  int32_t partition = 0;
  int64_t position = 0;
  int64_t log_end = 0;
  int64_t lag = 0;
  int64_t pending = 0;
  int64_t oldest_pending_age_ms = 0;
  template <class V> void Visit(V& v) {
    v(topic, partition, position, log_end, lag, pending, oldest_pending_age_ms);
  }
};
struct ConsumerInfoWire {
  std::string consumer;
  int64_t pending = 0;
  int64_t idle_ms = 0;
  std::vector<TopicPartitionRef> assignment;
  // Kafka groups: the member's client.id, address and group.instance.id ("" when dynamic).
  std::string client_id;
  std::string host;
  std::string instance_id;
  template <class V> void Visit(V& v) {
    v(consumer, pending, idle_ms, assignment, client_id, host, instance_id);
  }
};
// Counters since the broker started (queue groups).
struct GroupCountersWire {
  int64_t deliveries = 0;
  int64_t redeliveries = 0;
  int64_t acks = 0;
  int64_t nacks = 0;
  int64_t rejects = 0;
  int64_t dead_lettered = 0;
  int64_t ack_latency_ms_total = 0;  // first delivery -> ack, summed over acks
  template <class V> void Visit(V& v) {
    v(deliveries, redeliveries, acks, nacks, rejects, dead_lettered, ack_latency_ms_total);
  }
};
enum class GroupModeWire : uint8_t { kStream = 1, kQueue = 2 };
struct DescribeGroupResponse {
  std::string name;
  GroupModeWire mode = GroupModeWire::kQueue;
  int32_t generation = 0;
  ConfigEntries config;
  std::vector<PartitionLagWire> partitions;
  std::vector<ConsumerInfoWire> consumers;
  GroupCountersWire counters;
  // Stream groups: who keeps the membership ("native" or "kafka"), the group's state (Kafka's
  // names: Empty, PreparingRebalance, CompletingRebalance, Stable) and, for Kafka groups, the
  // protocol type and the assignor the members chose.
  std::string protocol;
  std::string state;
  std::string protocol_type;
  std::string assignor;
  template <class V> void Visit(V& v) {
    v(name, mode, generation, config, partitions, consumers, counters, protocol, state,
      protocol_type, assignor);
  }
};
struct DeleteGroupRequest {
  static constexpr wire::Api kApi = wire::Api::kDeleteGroup;
  std::string group;
  template <class V> void Visit(V& v) { v(group); }
};

// ---- 43 RecordStatus --------------------------------------------------------------------------
struct RecordStatusRequest {
  static constexpr wire::Api kApi = wire::Api::kRecordStatus;
  std::string topic;
  bool by_dedup_key = false;
  int32_t partition = 0;
  int64_t offset = 0;
  std::string dedup_key;
  template <class V> void Visit(V& v) { v(topic, by_dedup_key, partition, offset, dedup_key); }
};
enum class RecordStateWire : uint8_t {
  kUndelivered = 0,
  kPending = 1,
  kAcked = 2,
  kDeadLettered = 3
};
struct RecordStatusWire {
  std::string group;
  RecordStateWire state = RecordStateWire::kUndelivered;
  std::string consumer;
  int32_t deliveries = 0;
  int64_t lock_until_ms = 0;
  int32_t dlq_partition = 0;
  int64_t dlq_offset = -1;
  std::string reason;
  template <class V> void Visit(V& v) {
    v(group, state, consumer, deliveries, lock_until_ms, dlq_partition, dlq_offset, reason);
  }
};
struct RecordStatusResponse {
  std::vector<RecordStatusWire> groups;
  template <class V> void Visit(V& v) { v(groups); }
};

// ---- 44 Stats ---------------------------------------------------------------------------------
struct StatsRequest {
  static constexpr wire::Api kApi = wire::Api::kStats;
  template <class V> void Visit(V&) {}
};
struct StatsResponse {
  std::string json;  // the document served at HTTP /api/v1/stats
  template <class V> void Visit(V& v) { v(json); }
};

// ---- 45 Backup --------------------------------------------------------------------------------
struct BackupRequest {
  static constexpr wire::Api kApi = wire::Api::kBackup;
  std::string directory;  // absolute, on the broker's host; must not exist or be empty
  template <class V> void Visit(V& v) { v(directory); }
};
struct BackupResponse {
  int64_t bytes = 0;  // size of the files in the backup
  uint32_t files = 0;
  template <class V> void Visit(V& v) { v(bytes, files); }
};

// ---- the generic encoder / decoder ------------------------------------------------------------

// Appends fields to a list of buffers. Payload fields are moved into their own buffer.
class Writer {
 public:
  Writer() { parts_.emplace_back(); }

  template <class... Ts> void operator()(Ts&... fields) { (Put(fields), ...); }

  // Total bytes written so far.
  size_t size() const {
    size_t n = 0;
    for (const auto& p : parts_) n += p.size();
    return n;
  }
  std::vector<std::string> TakeParts() { return std::move(parts_); }
  // All parts joined (copies payloads; for tests and small messages).
  std::string Join() const;

  void Put(bool v) { PutFixed8(&cur(), v ? 1 : 0); }
  void Put(uint8_t v) { PutFixed8(&cur(), v); }
  void Put(int8_t v) { PutFixed8(&cur(), static_cast<uint8_t>(v)); }
  void Put(uint16_t v) { PutFixed16BE(&cur(), v); }
  void Put(int16_t v) { PutFixed16BE(&cur(), static_cast<uint16_t>(v)); }
  void Put(uint32_t v) { PutFixed32BE(&cur(), v); }
  void Put(int32_t v) { PutFixed32BE(&cur(), static_cast<uint32_t>(v)); }
  void Put(int64_t v) { PutFixed64BE(&cur(), static_cast<uint64_t>(v)); }
  void Put(const std::string& s) {
    Put(static_cast<int32_t>(s.size()));
    cur().append(s);
  }
  void Put(const std::optional<std::string>& s) {
    if (!s) return Put(int32_t{-1});
    Put(*s);
  }
  void Put(Payload& p) {
    Put(static_cast<int32_t>(p.bytes.size()));
    if (p.bytes.size() < 4096) {
      cur().append(p.bytes);
      return;
    }
    parts_.push_back(std::move(p.bytes));
    parts_.emplace_back();
  }
  template <class A, class B> void Put(std::pair<A, B>& p) {
    Put(p.first);
    Put(p.second);
  }
  template <class T> void Put(std::vector<T>& v) {
    Put(static_cast<int32_t>(v.size()));
    for (auto& e : v) Put(e);
  }
  template <class E>
    requires std::is_enum_v<E>
  void Put(E e) {
    Put(static_cast<std::underlying_type_t<E>>(e));
  }
  template <class T>
    requires requires(T& t, Writer& w) { t.Visit(w); }
  void Put(T& msg) {
    msg.Visit(*this);
  }

 private:
  std::string& cur() { return parts_.back(); }
  std::vector<std::string> parts_;
};

namespace detail {

// Sums the fewest bytes each field of a message can take on the wire (a string or an array its
// length prefix, a struct its fields), for MinWireBytes.
struct MinWireSizer {
  size_t bytes = 0;
  template <class... Ts> void operator()(Ts&... fields) { (Add(fields), ...); }
  template <class I>
    requires std::is_integral_v<I>
  void Add(I&) {
    bytes += sizeof(I);
  }
  template <class E>
    requires std::is_enum_v<E>
  void Add(E&) {
    bytes += sizeof(std::underlying_type_t<E>);
  }
  void Add(std::string&) { bytes += 4; }
  void Add(std::optional<std::string>&) { bytes += 4; }
  void Add(Payload&) { bytes += 4; }
  template <class A, class B> void Add(std::pair<A, B>& p) {
    Add(p.first);
    Add(p.second);
  }
  template <class T> void Add(std::vector<T>&) { bytes += 4; }
  template <class T>
    requires requires(T& t, MinWireSizer& s) { t.Visit(s); }
  void Add(T& msg) {
    msg.Visit(*this);
  }
};

}  // namespace detail

// The fewest bytes one T takes on the wire (0 for an empty struct). Computed once per type.
template <class T> size_t MinWireBytes() {
  static const size_t bytes = [] {
    T value{};
    detail::MinWireSizer sizer;
    sizer.Add(value);
    return sizer.bytes;
  }();
  return bytes;
}

// Reads fields from one contiguous body; the first failure sticks.
class Reader {
 public:
  explicit Reader(std::string_view data) : r_(data) {}

  template <class... Ts> void operator()(Ts&... fields) { (Get(fields), ...); }

  bool ok() const { return error_.empty(); }
  bool at_end() const { return r_.remaining() == 0; }
  const std::string& error() const { return error_; }
  size_t remaining() const { return r_.remaining(); }

  void Get(bool& v) {
    uint8_t b = 0;
    Get(b);
    if (ok() && b > 1) Fail("bool must be 0 or 1");
    v = b == 1;
  }
  void Get(uint8_t& v) { Fixed(1, &v); }
  void Get(int8_t& v) { Fixed(1, &v); }
  void Get(uint16_t& v) { Fixed(2, &v); }
  void Get(int16_t& v) { Fixed(2, &v); }
  void Get(uint32_t& v) { Fixed(4, &v); }
  void Get(int32_t& v) { Fixed(4, &v); }
  void Get(int64_t& v) { Fixed(8, &v); }
  void Get(std::string& s) {
    std::optional<std::string> o;
    Get(o);
    if (ok() && !o) Fail("null where a string is required");
    if (o) s = std::move(*o);
  }
  void Get(std::optional<std::string>& s);
  void Get(Payload& p) { Get(p.bytes); }
  template <class A, class B> void Get(std::pair<A, B>& p) {
    Get(p.first);
    Get(p.second);
  }
  // Decoding allocates only for what the bytes present can hold: a count beyond the remaining
  // bytes divided by an element's fewest wire bytes is refused before anything is allocated (an
  // element that takes no bytes cannot be counted at all), and the up-front reservation is at
  // most the remaining bytes' worth of elements; the vector grows past it only as elements
  // really decode.
  template <class T> void Get(std::vector<T>& v) {
    int32_t n = 0;
    Get(n);
    if (!ok()) return;
    const size_t min_bytes = MinWireBytes<T>();
    const size_t cap = min_bytes == 0 ? 0 : r_.remaining() / min_bytes;
    if (n < 0 || static_cast<size_t>(n) > cap) return Fail("array count out of range");
    v.clear();
    v.reserve(std::min(static_cast<size_t>(n), r_.remaining() / sizeof(T) + 1));
    for (int32_t i = 0; i < n && ok(); ++i) Get(v.emplace_back());
  }
  template <class E>
    requires std::is_enum_v<E>
  void Get(E& e) {
    std::underlying_type_t<E> raw{};
    Get(raw);
    e = static_cast<E>(raw);
  }
  template <class T>
    requires requires(T& t, Reader& r) { t.Visit(r); }
  void Get(T& msg) {
    msg.Visit(*this);
  }

  void Fail(std::string_view why) {
    if (error_.empty()) error_ = std::string(why);
  }

 private:
  template <class T> void Fixed(size_t n, T* out) {
    std::string_view b;
    if (!ok() || !r_.ReadBytes(n, &b)) return Fail("truncated");
    uint64_t u = 0;
    for (char c : b) u = (u << 8) | static_cast<uint8_t>(c);
    *out = static_cast<T>(u);
  }

  ByteReader r_;
  std::string error_;
};

// Encodes a request body.
template <class Msg> std::string EncodeBody(Msg msg) {
  Writer w;
  w.Put(msg);
  return w.Join();
}

// Decodes a request or response-fields body; MalformedRequest-style InvalidArgument on any error.
template <class Msg> Result<Msg> DecodeBody(std::string_view body) {
  Msg msg{};
  Reader r(body);
  r.Get(msg);
  if (r.ok() && !r.at_end()) r.Fail("trailing bytes");
  if (!r.ok()) return Status::InvalidArgument("malformed body: " + r.error());
  return msg;
}

// A response body as buffers: error, message, then (only when the error is kNone) the fields.
template <class Msg>
std::vector<std::string> EncodeResponse(wire::ErrorCode code, std::string_view message, Msg* msg) {
  Writer w;
  w.Put(code);
  std::string m(message);
  w.Put(m);
  if (code == wire::ErrorCode::kNone && msg) w.Put(*msg);
  return w.TakeParts();
}
template <class Msg> std::vector<std::string> EncodeResponse(const Status& status, Msg* msg) {
  return EncodeResponse(ToErrorCode(status.code()), status.message(), msg);
}

// Splits a response body: the error (as a Status) and, on success, the decoded fields.
template <class Msg> Result<Msg> DecodeResponse(std::string_view body) {
  Reader r(body);
  wire::ErrorCode code{};
  std::string message;
  r(code, message);
  if (!r.ok()) return Status::Corruption("malformed response: " + r.error());
  if (code != wire::ErrorCode::kNone) return ToStatus(code, message);
  Msg msg{};
  r.Get(msg);
  if (r.ok() && !r.at_end()) r.Fail("trailing bytes");
  if (!r.ok()) return Status::Corruption("malformed response: " + r.error());
  return msg;
}

// The highest version the broker serves for `api` (all are 0 today), or -1 if unknown.
int ServedVersion(uint16_t api);
std::string_view ApiName(uint16_t api);
// lower_snake names of wire enums, for tools and logs ("unknown" for values outside the enum).
std::string_view PendingKindName(PendingKindWire k);
std::string_view RecordStateName(RecordStateWire s);

}  // namespace runnel::proto
