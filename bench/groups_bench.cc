// runnel-groups-bench: in-process consumer-group benchmark (no network). Measures queue-group
// deliver + ack throughput (pipelined async calls, as a broker serving many connections makes
// them, and one call at a time), one claim of 10,000 expired entries among 1,000,000 pending,
// the memory per pending entry, a group description with them pending, and durable
// stream-group offset commits.
#include <sys/resource.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <deque>
#include <filesystem>
#include <fstream>
#include <future>
#include <memory>
#include <semaphore>
#include <string>
#include <thread>
#include <vector>

#include "runnel/common/record_batch.h"
#include "runnel/storage/log_store.h"

namespace {

using namespace runnel;
using namespace runnel::storage;
using SteadyClock = std::chrono::steady_clock;

double Since(SteadyClock::time_point t0) {
  return std::chrono::duration<double>(SteadyClock::now() - t0).count();
}

void Die(const Status& s, const char* what) {
  std::fprintf(stderr, "error: %s: %s\n", what, s.ToString().c_str());
  std::exit(1);
}

// Appends `records` 100-byte records to each partition of `topic` in 1,000-record LZ4 batches.
void Fill(LogStore& store, const std::string& topic, int partitions, int64_t records) {
  std::vector<std::thread> threads;
  for (int p = 0; p < partitions; ++p) {
    threads.emplace_back([&, p] {
      RecordBatchBuilder b({Compression::kLz4});
      const std::string value(100, 'v');
      for (int64_t i = 0; i < records;) {
        for (int j = 0; j < 1000 && i < records; ++j, ++i)
          b.Add(1'700'000'000'000, std::nullopt, value);
        auto r = store.Append(AppendRequest{topic, Partition(p), b.Build(), AckMode::kDurable});
        if (!r.ok()) Die(r.status(), "fill");
      }
    });
  }
  for (auto& t : threads) t.join();
}

// The resident set size now, in bytes (/proc/self/statm).
int64_t RssBytes() {
  std::ifstream statm("/proc/self/statm");
  int64_t size = 0, resident = 0;
  statm >> size >> resident;
  return resident * ::sysconf(_SC_PAGESIZE);
}

// One consumer keeping `inflight` deliveries going, acking each batch as it arrives (async, so
// durable settles of many calls share one fsync). Returns when the backlog is drained or `stop`.
void PipelinedConsumer(Groups& groups, const std::string& group, const std::string& me, int batch,
                       int inflight, const std::atomic<bool>& stop, std::atomic<uint64_t>& acked) {
  using Delivered = Result<std::vector<DeliveredRecord>>;
  std::deque<std::future<Delivered>> delivers;
  std::deque<std::pair<std::future<Status>, size_t>> acks;
  auto settle_oldest = [&] {
    if (Status s = acks.front().first.get(); !s.ok()) Die(s, "ack");
    acked.fetch_add(acks.front().second, std::memory_order_relaxed);
    acks.pop_front();
  };
  bool drained = false;
  while (!drained || !delivers.empty()) {
    while (!drained && !stop.load(std::memory_order_relaxed) &&
           delivers.size() < static_cast<size_t>(inflight)) {
      auto p = std::make_shared<std::promise<Delivered>>();
      delivers.push_back(p->get_future());
      groups.DeliverAsync(group, me, batch, 16 << 20,
                          [p](Delivered d) { p->set_value(std::move(d)); });
    }
    if (stop.load(std::memory_order_relaxed)) drained = true;
    if (delivers.empty()) break;
    Delivered d = delivers.front().get();
    delivers.pop_front();
    if (!d.ok()) Die(d.status(), "deliver");
    if (d->empty()) {
      drained = true;
      continue;
    }
    std::vector<RecordRef> refs;
    refs.reserve(d->size());
    for (const auto& r : *d) refs.push_back({r.partition, r.offset});
    auto p = std::make_shared<std::promise<Status>>();
    acks.emplace_back(p->get_future(), refs.size());
    groups.AckAsync(group, me, refs, [p](Status s) { p->set_value(std::move(s)); });
    while (acks.size() > static_cast<size_t>(inflight)) settle_oldest();
  }
  while (!acks.empty()) settle_oldest();
}

}  // namespace

int main(int argc, char** argv) {
  std::string data_dir;
  bool json = false;
  double seconds = 10;
  int consumers = 4;
  int batch = 100;
  int64_t queue_records = 3'000'000;
  int64_t claim_pending = 1'000'000;
  int64_t claim_expired = 10'000;
  int committers = 4;
  int inflight = 64;
  int queue_inflight = 8;
  double sync_seconds = 3;
  std::string ack_durability = "durable";
  CLI::App app{"runnel-groups-bench: consumer-group throughput and claim latency"};
  app.add_option("--data-dir", data_dir,
                 "Directory for the store (default: a fresh ./bench-data/groups-<pid>)");
  app.add_flag("--json", json, "Print one JSON object instead of a table");
  app.add_option("--seconds", seconds, "Duration of the deliver+ack and commit workloads")
      ->check(CLI::PositiveNumber);
  app.add_option("--consumers", consumers, "Queue consumer threads")->check(CLI::Range(1, 256));
  app.add_option("--batch", batch, "Records per deliver / ack call")->check(CLI::Range(1, 100000));
  app.add_option("--queue-inflight", queue_inflight,
                 "Deliver calls each queue consumer keeps outstanding (acked as they arrive)")
      ->check(CLI::Range(1, 1024));
  app.add_option("--sync-seconds", sync_seconds,
                 "Duration of the one-call-at-a-time deliver+ack workload")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--ack-durability", ack_durability,
                 "Queue groups' ack.durability: durable (after the fsync) or written")
      ->check(CLI::IsMember({"durable", "written"}));
  app.add_option("--queue-records", queue_records, "Records produced for the deliver+ack workload");
  app.add_option("--claim-pending", claim_pending, "Pending entries for the claim workload");
  app.add_option("--claim-expired", claim_expired,
                 "How many of them are idle long enough to claim");
  app.add_option("--committers", committers, "Threads committing stream offsets")
      ->check(CLI::Range(1, 1024));
  app.add_option("--inflight", inflight, "Outstanding async commits per committer thread")
      ->check(CLI::Range(1, 4096));
  CLI11_PARSE(app, argc, argv);
  const bool temp = data_dir.empty();
  if (temp) data_dir = "./bench-data/groups-" + std::to_string(::getpid());

  ManualClock clock(1'700'000'000'000);
  LogStoreOptions o;
  o.data_dir = data_dir;
  o.clock = &clock;  // lock expiry is driven explicitly; throughput uses the steady clock
  o.retention_check_interval_ms = 0;
  auto opened = LogStore::Open(o);
  if (!opened.ok()) Die(opened.status(), "open");
  auto store = std::move(opened).value();
  Groups& groups = store->groups();
  TopicConfig tc;
  tc.retention_ms = -1;

  // 1. Queue group: deliver + ack in batches from several consumer threads.
  const int partitions = 4;
  if (Status s = store->CreateTopic("bench.queue", partitions, tc); !s.ok()) Die(s, "create topic");
  Fill(*store, "bench.queue", partitions, queue_records / partitions);
  GroupConfig qc;
  qc.topic = "bench.queue";
  if (Status s = qc.Set("ack.durability", ack_durability); !s.ok()) Die(s, "config");
  if (Status s = groups.CreateQueueGroup("bench-workers", qc, StartPosition::Earliest()); !s.ok())
    Die(s, "group");
  std::atomic<uint64_t> acked{0};
  std::atomic<bool> stop{false};
  auto t0 = SteadyClock::now();
  std::vector<std::thread> threads;
  for (int c = 0; c < consumers; ++c) {
    threads.emplace_back([&, c] {
      PipelinedConsumer(groups, "bench-workers", "consumer-" + std::to_string(c), batch,
                        queue_inflight, stop, acked);
    });
  }
  while (Since(t0) < seconds && acked.load() < static_cast<uint64_t>(queue_records)) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  stop = true;
  for (auto& t : threads) t.join();
  const double queue_secs = Since(t0);
  const double queue_rps = static_cast<double>(acked.load()) / queue_secs;
  threads.clear();

  // 1b. The same from a second group, one deliver and one ack at a time per consumer: each call
  // waits for its own fsync (shared only with the other consumers' calls).
  if (Status s = groups.CreateQueueGroup("bench-sync", qc, StartPosition::Earliest()); !s.ok())
    Die(s, "group");
  std::atomic<uint64_t> sync_acked{0};
  stop = false;
  t0 = SteadyClock::now();
  for (int c = 0; c < consumers; ++c) {
    threads.emplace_back([&, c] {
      const std::string me = "consumer-" + std::to_string(c);
      std::vector<RecordRef> refs;
      while (!stop.load(std::memory_order_relaxed)) {
        auto d = groups.Deliver("bench-sync", me, batch, 16 << 20);
        if (!d.ok()) Die(d.status(), "deliver");
        if (d->empty()) break;
        refs.clear();
        for (const auto& r : *d) refs.push_back({r.partition, r.offset});
        if (Status s = groups.Ack("bench-sync", me, refs); !s.ok()) Die(s, "ack");
        sync_acked.fetch_add(refs.size(), std::memory_order_relaxed);
      }
    });
  }
  while (Since(t0) < sync_seconds && sync_acked.load() < static_cast<uint64_t>(queue_records)) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  stop = true;
  for (auto& t : threads) t.join();
  const double sync_rps = static_cast<double>(sync_acked.load()) / Since(t0);
  threads.clear();
  if (Status s = groups.DeleteGroup("bench-sync"); !s.ok()) Die(s, "delete group");

  // 2. Claim: 1,000,000 pending entries of which 10,000 have been idle past the threshold.
  if (Status s = store->CreateTopic("bench.claim", 1, tc); !s.ok()) Die(s, "create topic");
  Fill(*store, "bench.claim", 1, claim_pending);
  GroupConfig cc;
  cc.topic = "bench.claim";
  cc.lock_timeout_ms = 3'600'000;
  cc.ack_durability = qc.ack_durability;
  if (Status s = groups.CreateQueueGroup("bench-claim", cc, StartPosition::Earliest()); !s.ok())
    Die(s, "group");
  auto deliver_all = [&](const std::string& who, int64_t n) {
    for (int64_t done = 0; done < n;) {
      auto d = groups.Deliver("bench-claim", who,
                              static_cast<int32_t>(std::min<int64_t>(10'000, n - done)), 1u << 30);
      if (!d.ok()) Die(d.status(), "deliver");
      if (d->empty()) break;
      done += static_cast<int64_t>(d->size());
    }
  };
  const int64_t rss_before = RssBytes();
  deliver_all("crashed-worker", claim_expired);
  clock.Advance(20'000);
  deliver_all("live-worker", claim_pending - claim_expired);
  const double bytes_per_pending =
      static_cast<double>(RssBytes() - rss_before) / static_cast<double>(claim_pending);
  // A description (pending counts, oldest pending age) with them all pending.
  auto described_at = SteadyClock::now();
  auto described = groups.DescribeGroup("bench-claim");
  const double describe_ms = Since(described_at) * 1000;
  if (!described.ok()) Die(described.status(), "describe");
  clock.Advance(15'000);  // crashed-worker idle 35 s, live-worker 15 s
  // Let the committer finish writing the setup's pending entries first: a durable append
  // completes only after everything queued before it.
  if (Status s = store->CreateTopic("bench.barrier", 1, tc); !s.ok()) Die(s, "create topic");
  Fill(*store, "bench.barrier", 1, 1);
  t0 = SteadyClock::now();
  auto claimed =
      groups.Claim("bench-claim", "rescuer", 30'000, static_cast<int32_t>(claim_pending));
  const double claim_ms = Since(t0) * 1000;
  if (!claimed.ok()) Die(claimed.status(), "claim");
  const size_t claimed_n = claimed->size();

  // 3. Stream group: durable offset commits from many threads (one offset per commit).
  if (Status s = store->CreateTopic("bench.stream", 8, tc); !s.ok()) Die(s, "create topic");
  Fill(*store, "bench.stream", 8, 1000);
  auto joined = groups.Join("bench-stream", "", {"bench.stream"}, 3'600'000);
  if (!joined.ok()) Die(joined.status(), "join");
  const Membership member = std::move(joined).value();
  std::atomic<uint64_t> commits{0};
  stop = false;
  t0 = SteadyClock::now();
  for (int c = 0; c < committers; ++c) {
    threads.emplace_back([&, c] {
      // Each thread keeps `inflight` asynchronous commits outstanding, like a broker serving many
      // connections; one offset per commit.
      std::counting_semaphore<4096> slots(inflight);
      const TopicPartition tp =
          member.assignment[static_cast<size_t>(c) % member.assignment.size()];
      for (int64_t i = 0; !stop.load(std::memory_order_relaxed); ++i) {
        slots.acquire();
        groups.CommitOffsetsAsync("bench-stream", member.member_id, member.generation,
                                  {{tp, Offset(i % 1000), ""}}, [&](Status s) {
                                    if (!s.ok()) Die(s, "commit");
                                    commits.fetch_add(1, std::memory_order_relaxed);
                                    slots.release();
                                  });
      }
      for (int i = 0; i < inflight; ++i) slots.acquire();
    });
  }
  std::this_thread::sleep_for(std::chrono::duration<double>(std::min(seconds, 5.0)));
  stop = true;
  for (auto& t : threads) t.join();
  const double commit_ps = static_cast<double>(commits.load()) / Since(t0);
  const StoreStats stats = store->GetStats();
  store.reset();
  if (temp) std::filesystem::remove_all(data_dir);
  struct rusage usage {};
  getrusage(RUSAGE_SELF, &usage);
  const double rss_mb = static_cast<double>(usage.ru_maxrss) / 1024.0;

  if (json) {
    std::printf(
        "{\"queue_deliver_ack_records_per_s\":%.0f,"
        "\"queue_deliver_ack_sync_records_per_s\":%.0f,\"settle_durability\":\"%s\","
        "\"claim_expired_10k_of_1m_ms\":%.1f,\"claimed\":%zu,"
        "\"bytes_per_pending_entry\":%.0f,\"describe_group_1m_pending_ms\":%.2f,"
        "\"stream_commit_per_s\":%.0f,\"consumers\":%d,\"batch\":%d,"
        "\"queue_inflight\":%d,\"committers\":%d,\"inflight\":%d,\"fsyncs\":%llu,"
        "\"max_rss_mb\":%.0f}\n",
        queue_rps, sync_rps, std::string(SettleDurabilityName(qc.ack_durability)).c_str(), claim_ms,
        claimed_n, bytes_per_pending, describe_ms, commit_ps, consumers, batch, queue_inflight,
        committers, inflight, static_cast<unsigned long long>(stats.fsyncs), rss_mb);
  } else {
    std::printf(
        "runnel-groups-bench: %d consumers, batches of %d, %d committer threads x %d in flight\n",
        consumers, batch, committers, inflight);
    std::printf("queue settles: %s\n",
                std::string(SettleDurabilityName(qc.ack_durability)).c_str());
    std::printf("%-52s %14.0f records/s\n", "queue group deliver + ack (pipelined)", queue_rps);
    std::printf("%-52s %14.0f records/s\n", "queue group deliver + ack (one call at a time)",
                sync_rps);
    std::printf("%-52s %14.1f ms (%zu claimed)\n", "claim idle entries (of pending)", claim_ms,
                claimed_n);
    std::printf("%-52s %14.0f bytes\n", "memory per pending entry (RSS)", bytes_per_pending);
    std::printf("%-52s %14.2f ms\n", "describe group (of pending)", describe_ms);
    std::printf("%-52s %14.0f commits/s\n", "stream group durable offset commits", commit_ps);
    std::printf("peak RSS: %.0f MB\n", rss_mb);
  }
  return claimed_n == static_cast<size_t>(claim_expired) ? 0 : 1;
}
