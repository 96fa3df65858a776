// The systems under test, behind one interface so every target is measured by the same runner
// code and clock. A Driver is one target: it owns whatever server it started, creates the
// topic/streams a run needs, and hands out producers and consumers.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "runnel/bench/workload.h"
#include "runnel/common/result.h"

namespace runnel::bench {

struct OutMessage {
  std::optional<std::string> key;
  std::string value;
};

// Told the outcome of every message, once, from any thread. A token, not a callback object per
// message, so the harness adds no allocation to a send.
class SendListener {
 public:
  virtual ~SendListener() = default;
  virtual void Done(uint64_t token, const Status& s) = 0;
};

class ProducerDriver {
 public:
  virtual ~ProducerDriver() = default;
  // Queues the message; may block while the driver's buffer is full. The listener given to
  // NewProducer hears of it with `token`.
  virtual void Send(OutMessage m, uint64_t token) = 0;
  // Waits until every queued message has its outcome.
  virtual Status Flush(int64_t timeout_ms) = 0;
};

struct InMessage {
  std::string value;
  int32_t deliveries = 1;  // 1 on first delivery; more after a nack (where the target counts)
  // Where it came from, as the driver needs it to ack: partition/offset (Runnel, Kafka) or
  // stream/entry id (Redis).
  int32_t partition = 0;
  int64_t offset = 0;
  std::string stream;
  std::string id;
};

enum class ConsumerMode { kStream, kQueue };

class ConsumerDriver {
 public:
  virtual ~ConsumerDriver() = default;
  // Appends up to `max` messages; waits up to timeout_ms for the first.
  virtual Status Poll(int64_t timeout_ms, int max, std::vector<InMessage>* out) = 0;
  // Queue mode only. A nacked message comes back after about delay_ms.
  virtual Status Ack(const std::vector<const InMessage*>& messages) = 0;
  virtual Status Nack(const std::vector<const InMessage*>& messages, int64_t delay_ms) = 0;
  // Whether the group has given this consumer its partitions (Poll drives the join). The e2e
  // workload starts its producers only once every consumer is assigned.
  virtual bool Assigned() const { return true; }
};

class Driver {
 public:
  virtual ~Driver() = default;
  // The target's name as given ("runnel", "redis:always", ...).
  virtual std::string Name() const = 0;
  // The settings that decide what is measured: fsync policy, acks, batching. One line.
  virtual std::string Settings(const WorkloadSpec& spec) const = 0;
  // Starts the server when the driver owns one, and creates `topic` with the spec's partitions,
  // plus the consumer group `group` (queue or stream, by the workload).
  virtual Status Prepare(const WorkloadSpec& spec, const std::string& topic,
                         const std::string& group) = 0;
  virtual Result<std::unique_ptr<ProducerDriver>> NewProducer(const WorkloadSpec& spec,
                                                              const std::string& topic,
                                                              SendListener* listener) = 0;
  virtual Result<std::unique_ptr<ConsumerDriver>> NewConsumer(const WorkloadSpec& spec,
                                                              const std::string& topic,
                                                              const std::string& group,
                                                              ConsumerMode mode, int index) = 0;
  // Stops what Prepare started (servers are fresh for every run).
  virtual void Finish() = 0;
};

// Where the targets are and how to start them.
struct TargetOptions {
  std::string scratch_dir = "./bench-data/runnel-bench";  // data of servers the harness starts
  std::string runneld;                       // binary; default: next to runnel-bench, then PATH
  std::string broker;                        // host:port of a running runneld (target runnel)
  std::string redis_server = "redis-server";  // binary
  std::string redis_url;                     // redis://host:port of a running server
  std::string kafka;                         // bootstrap servers of a running Kafka
  // Kafka consumers assign partitions themselves (consumer i of n: every n-th partition from
  // the start) instead of joining a group: for brokers without the group APIs.
  bool kafka_assign = false;
};

// Targets: runnel, runnel-embedded, redis[:always|:everysec|:no], kafka, kafka-mock.
// redis without a policy takes it from the ack mode: durable -> always, written -> everysec,
// none -> no AOF.
Result<std::unique_ptr<Driver>> MakeDriver(const std::string& target, const TargetOptions& options);

// Each kind, made by its own translation unit.
std::unique_ptr<Driver> MakeRunnelDriver(const TargetOptions& options, bool embedded);
std::unique_ptr<Driver> MakeRedisDriver(const TargetOptions& options, std::string fsync_policy);
std::unique_ptr<Driver> MakeKafkaDriver(const TargetOptions& options, bool mock);

}  // namespace runnel::bench
