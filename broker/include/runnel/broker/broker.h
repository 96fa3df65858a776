// The broker core: the operations every front-end (native, Kafka, later RESP and HTTP) calls, on
// one LogStore and its Groups, with access control, metrics and long-polls. No sockets, no Asio
// and no wire structs here: a front-end decodes its protocol, checks rights with its session's
// Principal, calls these operations and encodes the answer.
//
// Threads: every operation may be called from any thread. Blocking storage calls (group
// operations, admin) must run on the worker pool (`Post`), never on a network thread. Appends of
// one client connection go through one ProduceLane, so an idempotent producer's pipelined
// batches reach the store in order. Long-polls (Fetch, Deliver) park without a thread and wake
// when a durable high watermark moves or their deadline passes; their callbacks run on a pool or
// on the committer thread and must be quick.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "runnel/common/result.h"
#include "runnel/storage/groups.h"
#include "runnel/storage/log_store.h"

namespace runnel::broker {

class TokenSet;
struct Principal;
class Metrics;

struct BrokerOptions {
  storage::LogStoreOptions store;  // data_dir, default topic config, committer bounds
  bool auto_create_topics = true;  // Produce / Metadata may create unknown topics
  int32_t default_partitions = 1;  // for auto-created topics
  // Creating a topic (CreateTopic or auto-creation) beyond this many fails with OutOfRange
  // naming the limit; topics that exist are untouched.
  size_t max_topics = 10'000;
  int worker_threads = 4;          // reads, group operations, admin
  int append_threads = 2;          // produce submission (may block on committer backpressure)
  int32_t max_wait_ms = 30'000;    // upper bound of a long-poll
  // Access control (auth.h): when set, a session must authenticate with one of these tokens
  // before anything else, and each request is checked against the token's rights. Null: every
  // session may do everything (the loopback default).
  std::shared_ptr<const TokenSet> auth;
};

// Runs tasks one at a time, in post order, on the append pool. Thread-safe. One per client
// connection: it carries the produce order.
class ProduceLane {
 public:
  virtual ~ProduceLane() = default;
  virtual void Post(std::function<void()> task) = 0;
};

// One partition of a fetch, and what was read for it.
struct FetchPartitionSpec {
  std::string topic;
  int32_t partition = 0;
  int64_t offset = 0;
  int32_t max_bytes = 1 << 20;
};
struct FetchSpec {
  std::vector<FetchPartitionSpec> partitions;
  int32_t max_bytes = 50 << 20;  // over all partitions; the first batch is returned whatever its size
  int32_t min_bytes = 1;         // answer as soon as this much is there (or the deadline passes)
  int32_t max_wait_ms = 0;       // clamped to BrokerOptions::max_wait_ms
};
struct FetchPartitionResult {
  Status status;                // NotFound (topic / partition), OutOfRange (offset), ...
  int64_t high_watermark = -1;  // durable high watermark (-1: unknown)
  int64_t log_start = -1;
  std::string records;          // whole stored batches, possibly starting before `offset`
};
using FetchCallback = std::function<void(std::vector<FetchPartitionResult>)>;

// A queue-group delivery long-poll.
struct DeliverSpec {
  std::string group;
  std::string consumer;
  int32_t max_records = 100;
  int32_t max_bytes = 1 << 20;
  int32_t max_wait_ms = 0;  // clamped to BrokerOptions::max_wait_ms
};
// The group's topic ("" if unknown) and the records, or the error.
using DeliverCallback =
    std::function<void(const std::string& topic, Result<std::vector<storage::DeliveredRecord>>)>;

// A stream group whose membership a front-end keeps (Kafka's classic groups): what the core and
// the native admin show of it. Its offsets live in the store like any stream group's.
struct LiveGroupMember {
  std::string member_id;
  std::string instance_id;  // static membership; "" when dynamic
  std::string client_id;
  std::string host;
  std::vector<storage::TopicPartition> assignment;  // decoded when the protocol is known
};
struct LiveGroup {
  std::string state;          // Kafka's: Empty, PreparingRebalance, CompletingRebalance, Stable
  std::string protocol_type;  // "consumer" for Kafka consumers
  std::string assignor;       // the chosen protocol: range, roundrobin, cooperative-sticky, ...
  int32_t generation = 0;
  std::vector<LiveGroupMember> members;
};

// Implemented by a front-end that keeps group membership. Thread-safe; registered with
// Broker::SetLiveGroups and unregistered before it goes away.
class LiveGroups {
 public:
  virtual ~LiveGroups() = default;
  // The group's live state, or nullopt when this front-end holds nothing for it.
  virtual std::optional<LiveGroup> Describe(const std::string& group) = 0;
  // A topic's partitions changed (or it was deleted): groups subscribed to it rebalance.
  virtual void OnTopicChanged(const std::string& topic) = 0;
};

class Broker {
 public:
  // Opens the data directory and starts the pools. IOError (directory unusable or locked by
  // another process), Corruption.
  static Result<std::unique_ptr<Broker>> Open(BrokerOptions options);

  // Stops (see BeginShutdown / WaitIdle) and closes the store.
  ~Broker();

  // ---- request accounting, for the front-ends ----
  // Every request a front-end takes in is counted from BeginRequest to EndRequest (after its
  // answer was handed back), so that WaitIdle knows when all of them are answered.
  void BeginRequest();
  void EndRequest();
  bool shutting_down() const;
  // New requests should be answered "shutting down"; parked long-polls are answered now.
  void BeginShutdown();
  // Blocks until every request between BeginRequest and EndRequest has ended.
  void WaitIdle();

  // ---- execution ----
  // Runs `task` on the worker pool (blocking storage calls belong there).
  void Post(std::function<void()> task);
  std::shared_ptr<ProduceLane> NewProduceLane();

  // ---- operations ----
  // The principal of `token`, or Unauthenticated (counted in runnel_auth_failures_total).
  // Precondition: access control is on (options().auth).
  Result<std::shared_ptr<const Principal>> Authenticate(std::string_view token);
  // Counts a request refused for lack of rights (runnel_auth_denied_total) and passes `s` on.
  Status Denied(Status s);

  // Appends one batch, creating the topic first when it is unknown and auto-create is on.
  // `done` runs once, on an append-pool or committer thread. Call it from a ProduceLane task for
  // per-connection order. Counts produced records and bytes.
  void Append(storage::AppendRequest request,
              std::function<void(Result<storage::AppendResult>)> done);

  // Reads every partition of `spec` (whole batches, up to the durable high watermark); when less
  // than min_bytes is there, parks until a partition grows or max_wait_ms passes. `done` runs
  // exactly once with one result per partition, in order.
  void Fetch(FetchSpec spec, FetchCallback done);

  // Delivers from a queue group; with nothing deliverable parks until the topic grows, a retry
  // comes due or max_wait_ms passes. `done` runs exactly once, after the locks and delivery
  // counts it hands out are confirmed (see storage::Groups::DeliverAsync): on the store's
  // committer thread or the worker pool, so it must be quick and must not block.
  void Deliver(DeliverSpec spec, DeliverCallback done);

  // A topic's description. An unknown topic is created first when `auto_create` is set, the
  // broker auto-creates topics, and `who` (null: access control off) may produce to it.
  Result<storage::TopicInfo> DescribeTopic(const std::string& name, bool auto_create,
                                           const Principal* who);
  // Every topic `who` may see (all of them when `who` is null).
  std::vector<std::string> ListTopics(const Principal* who);
  // Topic admin. `config` holds topic config keys (storage/topic_config.h) over the defaults.
  Status CreateTopic(const std::string& name, int32_t partitions,
                     const std::vector<std::pair<std::string, std::string>>& config);
  Status DeleteTopic(const std::string& name);
  Status AlterTopic(const std::string& name,
                    const std::vector<std::pair<std::string, std::string>>& config,
                    int32_t new_partitions);

  // The topic a queue group consumes ("" for a stream group); NotFound for an unknown group.
  Result<std::string> GroupTopic(const std::string& group);
  // Forgets cached facts about `group` (after it was created, changed or deleted).
  void ForgetGroup(const std::string& group);

  // Groups whose membership a front-end keeps, by protocol (one source per protocol; null
  // unregisters).
  void SetLiveGroups(storage::GroupProtocol protocol, LiveGroups* source);
  // The live state of an external group (nullopt: none, or a native group).
  std::optional<LiveGroup> DescribeLiveGroup(const std::string& group,
                                             storage::GroupProtocol protocol);
  // Busy when `group` is external and has live members: admin changes to its offsets and its
  // deletion wait until it is empty (as kafka-consumer-groups requires).
  Status CheckGroupIdle(const std::string& group);

  // A producer id no other producer of this store got, ever (InitProducerId): ids come from
  // blocks reserved durably in the store, so neither a restart nor a clock step reuses one.
  // IOError / NoSpace when a new block cannot be reserved.
  Result<int64_t> NextProducerId();

  // `runnelctl backup`: a consistent online copy of the store in `directory` (on this host),
  // usable as a data directory. Runs on the calling thread.
  struct BackupInfo {
    uint64_t bytes = 0;
    uint32_t files = 0;
  };
  Result<BackupInfo> Backup(const std::string& directory);

  Metrics& metrics() { return *metrics_; }
  storage::LogStore& store() { return *store_; }
  storage::Groups& groups() { return store_->groups(); }
  const BrokerOptions& options() const { return options_; }

  // GET /metrics (Prometheus text format) and GET /api/v1/stats (JSON).
  std::string PrometheusText();
  std::string StatsJson();

  class Impl;

 private:
  Broker() = default;
  BrokerOptions options_;
  std::unique_ptr<Metrics> metrics_;
  std::unique_ptr<storage::LogStore> store_;
  std::unique_ptr<Impl> impl_;
};

}  // namespace runnel::broker
