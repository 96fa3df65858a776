// The broker core's private state: pools, the long-poll registry, request accounting and the
// small caches (known topics, group topics). Shared by broker.cc (lifecycle, topics, identities)
// and long_poll.cc (Fetch and Deliver).
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <set>
#include <string>
#include <unordered_map>

#include "executors.h"
#include "runnel/broker/broker.h"

namespace runnel::broker {

class Broker::Impl {
 public:
  using SteadyClock = std::chrono::steady_clock;

  Impl(Broker& b, const BrokerOptions& o)
      : broker(b),
        workers(o.worker_threads, "runnel-work"),
        appenders(o.append_threads, "runnel-append"),
        waiters(workers) {}

  // The wait-registry keys a commit notifies: one per partition, one per topic.
  static std::string PartitionKey(std::string_view topic, int32_t partition) {
    std::string k(topic);
    k.push_back('\0');
    k.append(std::to_string(partition));
    return k;
  }

  void OnHighWatermark(std::string_view topic, Partition p) {
    waiters.Notify(PartitionKey(topic, p.value()));
    waiters.Notify(std::string(topic));
  }
  void StopPools() {
    workers.Stop();
    appenders.Stop();
  }

  // Creates `topic` when unknown and auto-create is on; remembers topics known to exist.
  Status EnsureTopic(const std::string& topic);

  struct FetchState;
  void FetchRound(const std::shared_ptr<FetchState>& st, bool final_attempt);
  struct DeliverState;
  void DeliverRound(const std::shared_ptr<DeliverState>& st);

  Broker& broker;
  ThreadPool workers;
  ThreadPool appenders;
  WaitRegistry waiters;
  std::atomic<bool> shutting_down{false};
  std::mutex idle_mu;
  std::condition_variable idle_cv;
  int64_t inflight = 0;
  std::mutex producer_id_mu;
  int64_t next_producer_id = 0;  // next id of the reserved block [next, end)
  int64_t producer_id_end = 0;
  std::mutex cache_mu;
  std::set<std::string, std::less<>> known_topics;
  std::mutex create_mu;  // held by topic creation, so max_topics is exact

  // Creates a topic unless the store already holds max_topics (OutOfRange naming the limit).
  Status CreateTopicWithinLimit(const std::string& name, int32_t partitions,
                                const storage::TopicConfig& config);
  std::unordered_map<std::string, std::string> group_topics;
  std::mutex live_mu;
  LiveGroups* live_groups = nullptr;  // the Kafka front-end's coordinator, when it runs

  // Tells the live-group source that a topic's partitions changed.
  void TopicChanged(const std::string& topic) {
    std::lock_guard lk(live_mu);  // held so the source cannot unregister meanwhile
    if (live_groups) live_groups->OnTopicChanged(topic);
  }
};

}  // namespace runnel::broker
