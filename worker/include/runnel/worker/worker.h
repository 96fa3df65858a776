// The worker runtime: runs a handler over a Runnel topic with a concurrency limit, per record or
// in batches, and turns handler outcomes into acks, delayed retries and dead letters (queue
// groups), or into transactional progress kept by the handler itself (stream groups). It also
// pauses fetching behind a circuit breaker, limits the record rate, renews the locks of long
// handlers, drains on Stop, and reports counters as Prometheus text and JSON.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "runnel/client/connection.h"
#include "runnel/client/consumer.h"
#include "runnel/common/json.h"
#include "runnel/common/metrics.h"
#include "runnel/worker/policy.h"

namespace runnel::worker {

struct WorkerOptions {
  std::string topic;          // required
  std::string group;          // required: a queue group (record/batch handlers) or a stream group
  std::string consumer_name;  // default: the client's "<host>-<pid>-<n>"

  // Used when the worker creates its queue group (an existing group keeps its settings).
  int64_t lock_timeout_ms = 30'000;
  bool ordered_keys = false;   // no two records with one key in flight at once
  int64_t message_ttl_ms = 0;  // older records are dead-lettered as "expired"; 0 = off

  int32_t concurrency = 8;          // handler calls (records or batches) running at once
  int32_t batch_max_records = 100;  // batch handlers: a batch closes at this many records ...
  int64_t batch_max_wait_ms = 100;  // ... or this long after its first record arrived
  RetryPolicy retry;
  BreakerOptions breaker;
  double rate_limit_per_s = 0;  // records handed to handlers a second; 0 = unlimited
  double rate_burst = 0;        // bucket size; 0 = one second's worth
  int64_t extend_before_ms = -1;  // renew a lock this long before it expires; -1 = a third of it
  int64_t session_timeout_ms = 10'000;  // stream groups: a silent member loses its partitions
  int64_t poll_timeout_ms = 500;
  int64_t drain_timeout_ms = 30'000;  // Stop waits this long for running handlers
  int64_t request_timeout_ms = 10'000;

  Status Validate() const;
};

// One record, for a handler that takes records one by one. Runs on a pool thread; several run at
// once (up to `concurrency`). Exceptions count as Outcome::Fail("exception", what()).
using RecordHandler = std::function<Outcome(const client::ConsumerRecord&)>;
// A batch, in delivery order. Returns one outcome for the whole batch or one per record.
using BatchHandler = std::function<std::vector<Outcome>(const std::vector<client::ConsumerRecord>&)>;

// For handlers that keep their consumed position in their own database, in the same transaction
// as their effects (exactly-once effect over a stream group). Records of one partition are
// handed over in offset order, one partition at a time.
struct PartitionHandler {
  // The next offset to read of a partition this worker was just assigned, as the handler's store
  // knows it; std::nullopt to start from the group's committed offset.
  std::function<Result<std::optional<int64_t>>(const proto::TopicPartitionRef&)> load_offset;
  // Applies records of one partition (consecutive offsets) and returns the next offset to read:
  // normally the last offset + 1; another value makes the worker seek there (the store was ahead
  // or behind). An error is retried from the first record after the retry policy's backoff.
  std::function<Result<int64_t>(const proto::TopicPartitionRef&,
                                const std::vector<client::ConsumerRecord>&)>
      process;
};

// Counters since the worker started. A snapshot (value type).
struct WorkerStats {
  int64_t received = 0;       // records fetched (redeliveries included)
  int64_t acked = 0;          // records acknowledged (or applied, stream groups)
  int64_t retried = 0;        // nacked for a later retry
  int64_t dead_lettered = 0;  // rejected to the dead-letter topic
  int64_t failures = 0;       // handler outcomes that failed (retried or not)
  int64_t handler_calls = 0;
  int64_t in_flight = 0;      // records fetched and not yet acked, nacked or rejected
  int64_t lock_extensions = 0;
  int64_t locks_lost = 0;       // an ack/nack/extend found the lock gone (another worker has it)
  int64_t settle_errors = 0;    // acks/nacks/rejects the broker did not take (after retries)
  int64_t breaker_opens = 0;
  int64_t rate_limited_ms = 0;  // time the fetch loop waited for rate tokens
  std::string breaker_state = "closed";
  std::map<std::string, int64_t> failures_by_kind;
  std::map<std::string, int64_t> dead_letters_by_reason;  // reason up to its first ':'
  Histogram::Snapshot handler_ms;  // one handler call (a record or a batch)
  Histogram::Snapshot batch_records;
  Histogram::Snapshot end_to_end_ms;  // record timestamp -> acknowledged
};

// Owns its consumer and threads. Create, then Run on one thread; Stop from any thread (or a
// signal-watching thread). Run returns after a drain: no new records are fetched, the open
// batch is handed over, running handlers get drain_timeout_ms to finish and are settled; records
// still running after that are released for redelivery (nack 0) and Run returns Timeout (their
// handlers keep running; the destructor waits for them). Stats and rendering are thread-safe.
class Worker {
 public:
  static Result<std::unique_ptr<Worker>> Create(std::shared_ptr<client::Connection> connection,
                                                WorkerOptions options, RecordHandler handler);
  static Result<std::unique_ptr<Worker>> Create(std::shared_ptr<client::Connection> connection,
                                                WorkerOptions options, BatchHandler handler);
  static Result<std::unique_ptr<Worker>> Create(std::shared_ptr<client::Connection> connection,
                                                WorkerOptions options, PartitionHandler handler);
  virtual ~Worker() = default;

  // Fetches and handles until Stop. An error when the worker cannot run at all (unknown topic,
  // a stream group the topic cannot join), OK after a clean drain, Timeout after a forced one.
  virtual Status Run() = 0;
  virtual void Stop() = 0;
  virtual bool stopping() const = 0;

  virtual WorkerStats Stats() const = 0;
  // Prometheus families runnel_worker_* labelled with the group.
  virtual void WritePrometheus(PrometheusWriter& out) const = 0;
  // {"group":..,"topic":..,"consumer":..,"received":..,...,"breaker":{..},"handler_ms":{..}}
  virtual void WriteJson(JsonWriter& out) const = 0;
  virtual const WorkerOptions& options() const = 0;
};

}  // namespace runnel::worker
