// Broker crash loop (label crash). runneld under a mixed load is SIGKILLed at random moments,
// RUNNEL_CRASH_ROUNDS times (default 50; RUNNEL_CRASH_SEED repeats a run), and restarted on the
// same port while the load keeps going:
//   - an idempotent producer with durable acks writes numbered records to "ledger" (kept
//     forever), "jobs" (a queue group's topic) and "events" (16 KiB of retention, trimmed
//     every 20 ms, so kills land in the middle of retention passes);
//   - a stream group ("audit") commits its positions on "ledger" after every poll;
//   - two queue consumers of "workers" ack, nack once (every seventh) and reject (every tenth);
//   - a redriver moves the dead letters back to "jobs" every few hundred ms, so kills land in
//     the middle of redrives.
// After each restart: every record acknowledged before the kill is in its log once, at the
// offset its ack named; offsets are contiguous; log starts, high watermarks and committed offsets
// never go backwards; every acknowledged ack and reject stuck; the DLQ lists no record twice and
// nothing but rejected records. At the end, with the load drained, the group is checked exactly:
// each record acked or dead-lettered as its number says, and each rejected number in the DLQ
// exactly once (a redrive repeated or lost by a crash would leave it twice or not at all).
#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <thread>

#include "runnel/broker/launch.h"
#include "runnel/client/admin.h"
#include "runnel/client/consumer.h"
#include "runnel/client/producer.h"
#include "runnel/testing/temp_dir.h"

namespace runnel {
namespace {

using Clock = std::chrono::steady_clock;
using Key = std::pair<int32_t, int64_t>;  // (partition, offset)

int64_t EnvInt(const char* name, int64_t fallback) {
  const char* v = std::getenv(name);
  return v && *v ? std::atoll(v) : fallback;
}

// Broken invariants, from any thread; the main thread asserts there are none.
class Violations {
 public:
  void Add(std::string what) {
    std::lock_guard lk(mu_);
    if (list_.size() < 50) list_.push_back(std::move(what));
    ++count_;
  }
  size_t count() const {
    std::lock_guard lk(mu_);
    return count_;
  }
  std::string Text() const {
    std::lock_guard lk(mu_);
    std::string s;
    for (const auto& v : list_) s += v + "\n";
    return s;
  }

 private:
  mutable std::mutex mu_;
  std::vector<std::string> list_;
  size_t count_ = 0;
};

// Where each acknowledged record of a topic went: number -> (partition, offset).
class AckLog {
 public:
  void Acked(int64_t id, Key at) {
    std::lock_guard lk(mu_);
    acked_[id] = at;
  }
  void Failed() { ++failed_; }
  std::map<int64_t, Key> Snapshot() const {
    std::lock_guard lk(mu_);
    return acked_;
  }
  int64_t failed() const { return failed_.load(); }

 private:
  mutable std::mutex mu_;
  std::map<int64_t, Key> acked_;
  std::atomic<int64_t> failed_{0};
};

// Reads a topic as it grows, checking offsets and where acknowledged records are.
class LogVerifier {
 public:
  LogVerifier(std::string topic, int partitions, bool retention, bool copies_allowed)
      : topic_(std::move(topic)),
        retention_(retention),
        copies_allowed_(copies_allowed),
        next_(static_cast<size_t>(partitions), 0),
        start_seen_(static_cast<size_t>(partitions), 0),
        end_seen_(static_cast<size_t>(partitions), 0) {}

  // Reads every partition up to its current high watermark.
  void CatchUp(const std::shared_ptr<client::Connection>& conn, Violations& v) {
    client::Admin admin(conn, 10'000);
    for (int32_t p = 0; p < static_cast<int32_t>(next_.size()); ++p) {
      const size_t i = static_cast<size_t>(p);
      auto start = admin.ListOffset(topic_, p, proto::OffsetSpec::kEarliest);
      auto end = admin.ListOffset(topic_, p, proto::OffsetSpec::kLatest);
      if (!start.ok() || !end.ok()) {
        v.Add(Where(p) + ": ListOffset failed: " + (start.ok() ? end.status() : start.status()).ToString());
        continue;
      }
      if (*start < start_seen_[i]) {
        v.Add(Where(p) + ": log start went back from " + std::to_string(start_seen_[i]) + " to " +
              std::to_string(*start));
      }
      if (*end < end_seen_[i]) {
        v.Add(Where(p) + ": high watermark went back from " + std::to_string(end_seen_[i]) +
              " to " + std::to_string(*end));
      }
      if (!retention_ && *start != 0) v.Add(Where(p) + ": log start moved without retention");
      start_seen_[i] = std::max(start_seen_[i], *start);
      end_seen_[i] = std::max(end_seen_[i], *end);
      if (next_[i] < *start) next_[i] = *start;  // trimmed before it was read
      if (next_[i] < *end) Read(conn, p, *end, v);
    }
  }

  // Every record in `acked` must be where its ack said (unless retention removed it since).
  void CheckAcked(const std::map<int64_t, Key>& acked, Violations& v) {
    for (const auto& [id, at] : acked) {
      if (confirmed_.count(id)) continue;
      const auto [p, off] = at;
      if (off >= next_[static_cast<size_t>(p)]) {
        v.Add(Where(p) + ": record " + std::to_string(id) + " was acknowledged at offset " +
              std::to_string(off) + ", beyond the high watermark after restart");
        continue;
      }
      auto it = id_at_.find(at);
      if (it == id_at_.end()) {
        if (!(retention_ && off < start_seen_[static_cast<size_t>(p)])) {
          v.Add(Where(p) + ": acknowledged record " + std::to_string(id) + " is missing at offset " +
                std::to_string(off));
        }
      } else if (it->second != id) {
        v.Add(Where(p) + ": offset " + std::to_string(off) + " holds " + std::to_string(it->second) +
              ", its ack named " + std::to_string(id));
      }
      confirmed_.insert(id);
    }
  }

  const std::map<Key, int64_t>& records() const { return id_at_; }
  int64_t start_seen(int32_t p) const { return start_seen_[static_cast<size_t>(p)]; }
  int64_t read() const { return read_; }

 private:
  std::string Where(int32_t p) const { return topic_ + "/" + std::to_string(p); }

  void Read(const std::shared_ptr<client::Connection>& conn, int32_t p, int64_t end, Violations& v) {
    const size_t i = static_cast<size_t>(p);
    client::ConsumerOptions co;
    co.topics = {topic_};
    co.partitions = {p};
    co.start_offset = next_[i];
    co.request_timeout_ms = 10'000;
    auto c = client::Consumer::Create(conn, co);
    if (!c.ok()) {
      v.Add(Where(p) + ": consumer: " + c.status().ToString());
      return;
    }
    const auto deadline = Clock::now() + std::chrono::seconds(30);
    while (next_[i] < end && Clock::now() < deadline) {
      auto records = (*c)->Poll(500);
      if (!records.ok()) {
        v.Add(Where(p) + ": poll: " + records.status().ToString());
        return;
      }
      for (const auto& r : *records) {
        if (r.offset >= end) break;
        if (r.offset < next_[i]) continue;
        if (r.offset != next_[i]) {
          // A gap is retention's only if the log now starts at or past the record.
          client::Admin admin(conn, 10'000);
          auto start = admin.ListOffset(topic_, p, proto::OffsetSpec::kEarliest);
          if (!retention_ || !start.ok() || *start < r.offset) {
            v.Add(Where(p) + ": offsets jump from " + std::to_string(next_[i]) + " to " +
                  std::to_string(r.offset));
          }
          start_seen_[i] = std::max(start_seen_[i], r.offset);
        }
        next_[i] = r.offset + 1;
        ++read_;
        const int64_t id = r.value ? std::atoll(r.value->c_str()) : -1;
        id_at_[{p, r.offset}] = id;
        if (++copies_[id] > 1 && !(copies_allowed_ && id % 10 == 0)) {
          v.Add(Where(p) + ": record " + std::to_string(id) + " is stored twice (again at " +
                std::to_string(r.offset) + ")");
        }
      }
    }
    if (next_[i] < end) v.Add(Where(p) + ": could not read up to " + std::to_string(end));
  }

  std::string topic_;
  bool retention_;
  bool copies_allowed_;  // "jobs": redriven dead letters come back as copies
  std::vector<int64_t> next_;
  std::vector<int64_t> start_seen_;
  std::vector<int64_t> end_seen_;
  std::map<Key, int64_t> id_at_;
  std::map<int64_t, int> copies_;
  std::set<int64_t> confirmed_;
  int64_t read_ = 0;
};

// Threads that run until `stop` is called; stopped and joined on destruction even when an
// assertion throws.
class Threads {
 public:
  explicit Threads(std::function<void()> stop) : stop_(std::move(stop)) {}
  ~Threads() {
    stop_();
    Join();
  }
  void Spawn(std::function<void()> f) { threads_.emplace_back(std::move(f)); }
  void Join() {
    for (auto& t : threads_)
      if (t.joinable()) t.join();
  }

 private:
  std::function<void()> stop_;
  std::vector<std::thread> threads_;
};

TEST_CASE("crash loop: SIGKILL runneld under produce, stream, queue, retention and redrive load") {
  const int rounds = static_cast<int>(EnvInt("RUNNEL_CRASH_ROUNDS", 50));
  const uint64_t seed = static_cast<uint64_t>(EnvInt("RUNNEL_CRASH_SEED", std::random_device{}()));
  MESSAGE("crash loop: " << rounds << " rounds, RUNNEL_CRASH_SEED=" << seed);
  std::mt19937_64 rng(seed);

  testing::TempDir dir;
  broker::RunneldProcess runneld({RUNNEL_RUNNELD, dir.path(), 0, /*http=*/false, "warn",
                                  {"--retention-check-interval", "20ms"}});
  REQUIRE_MESSAGE(runneld.Start().ok(), runneld.Log());
  client::TcpOptions tcp;
  tcp.port = runneld.port();
  auto connect = [&] { return client::ConnectTcp(tcp); };

  client::Admin setup(connect());
  REQUIRE(setup.CreateTopic("ledger", 4).ok());
  REQUIRE(setup.CreateTopic("jobs", 2).ok());
  REQUIRE(setup.CreateTopic("events", 2, {{"retention.bytes", "16384"}, {"index.interval.bytes", "4096"}}).ok());
  REQUIRE(setup.CreateQueueGroup("workers", "jobs",
                                 {{"max.deliveries", "1000"}, {"lock.timeout.ms", "2000"}})
              .ok());

  Violations violations;
  AckLog ledger_acks, jobs_acks, events_acks;
  std::atomic<bool> stop_producing{false}, stop_consuming{false}, stop_redriving{false};
  std::atomic<int64_t> produced{0}, redrives{0}, redriven{0};
  std::atomic<bool> redriving{false};
  std::mutex queue_mu;
  std::map<Key, int64_t> queue_acked, queue_rejected;  // confirmed acks / rejects
  std::mutex commit_mu;
  std::map<int32_t, int64_t> commit_floor;  // "audit": highest acknowledged commit per partition

  Threads load([&] {
    stop_producing = true;
    stop_consuming = true;
    stop_redriving = true;
  });
  // The producer: ~3,000 ledger, ~1,500 events and ~200 jobs records a second.
  auto producer = client::Producer::Create(connect(), [] {
    client::ProducerOptions po;
    po.linger_ms = 1;
    po.request_timeout_ms = 2'000;
    po.retry_backoff_ms = 20;
    return po;
  }());
  REQUIRE(producer.ok());
  load.Spawn([&] {
    int64_t next = 0, next_job = 0;
    auto send = [&](const char* topic, AckLog& log, int64_t id, std::string value) {
      client::ProducerRecord r{topic, std::to_string(id % 64), std::move(value), {}, {}, 0};
      (*producer)->Send(std::move(r), [&log, id](Result<client::RecordMetadata> m) {
        if (m.ok()) {
          log.Acked(id, {m->partition, m->offset});
        } else {
          log.Failed();
        }
      });
    };
    while (!stop_producing.load()) {
      for (int i = 0; i < 30; ++i) {
        const int64_t id = next++;
        send("ledger", ledger_acks, id, std::to_string(id));
        if (i % 2 == 0) send("events", events_acks, id, std::to_string(id) + std::string(200, 'e'));
        if (i % 15 == 0) {
          const int64_t job = next_job++;
          send("jobs", jobs_acks, job, std::to_string(job));
        }
      }
      produced = next;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
  });

  // The stream group: commits exactly the positions it consumed up to, after every poll.
  load.Spawn([&] {
    client::ConsumerOptions co;
    co.group = "audit";
    co.topics = {"ledger"};
    co.auto_commit = false;
    co.session_timeout_ms = 6'000;
    co.heartbeat_interval_ms = 300;
    co.request_timeout_ms = 2'000;
    auto c = client::Consumer::Create(connect(), co);
    if (!c.ok()) return violations.Add("audit consumer: " + c.status().ToString());
    while (!stop_consuming.load()) {
      auto records = (*c)->Poll(200);
      if (!records.ok() || records->empty()) continue;
      std::map<int32_t, int64_t> next;
      for (const auto& r : *records) next[r.partition] = r.offset + 1;
      std::vector<std::pair<proto::TopicPartitionRef, int64_t>> offsets;
      for (const auto& [p, o] : next) offsets.push_back({{"ledger", p}, o});
      if ((*c)->Commit(offsets).ok()) {
        std::lock_guard lk(commit_mu);
        for (const auto& [p, o] : next) commit_floor[p] = std::max(commit_floor[p], o);
      }
    }
    (*c)->Close();
  });

  // Two queue consumers.
  for (int q = 0; q < 2; ++q) {
    load.Spawn([&, q] {
      client::ConsumerOptions co;
      co.mode = client::ConsumerMode::kQueue;
      co.group = "workers";
      co.topics = {"jobs"};
      co.consumer_name = "q" + std::to_string(q);
      co.create_queue_group = false;
      co.request_timeout_ms = 2'000;
      auto c = client::Consumer::Create(connect(), co);
      if (!c.ok()) return violations.Add("queue consumer: " + c.status().ToString());
      while (!stop_consuming.load()) {
        auto records = (*c)->Poll(200, 50);
        if (!records.ok()) continue;
        for (const auto& r : *records) {
          const int64_t id = std::atoll(r.value.value_or("-1").c_str());
          const Key at{r.partition, r.offset};
          if (id % 10 == 0) {
            if ((*c)->Reject(r, "rejected").ok()) {
              std::lock_guard lk(queue_mu);
              queue_rejected[at] = id;
            }
          } else if (id % 7 == 3 && r.deliveries == 1) {
            (void)(*c)->Nack(r, 20);
          } else if ((*c)->Ack(r).ok()) {
            std::lock_guard lk(queue_mu);
            queue_acked[at] = id;
          }
        }
      }
    });
  }

  // The redriver: moves every dead letter back to "jobs" (where it is rejected again).
  load.Spawn([&] {
    client::Admin admin(connect(), 5'000);
    while (true) {
      std::this_thread::sleep_for(std::chrono::milliseconds(150));
      if (stop_redriving.load()) break;
      redriving = true;
      auto r = admin.Redrive("workers", proto::RedriveRequest{});
      redriving = false;
      if (r.ok()) {
        ++redrives;
        redriven += *r;
      }
    }
  });

  LogVerifier ledger("ledger", 4, false, false), events("events", 2, true, false),
      jobs("jobs", 2, false, true);
  std::map<int32_t, int64_t> committed_seen;
  std::map<Key, int64_t> queue_checked;
  int kills_in_redrive = 0;
  std::uniform_int_distribution<int> run_ms(100, 600), down_ms(0, 100);

  auto verify_queue = [&](const std::shared_ptr<client::Connection>& conn) {
    client::Admin admin(conn, 10'000);
    std::map<Key, int64_t> acked, rejected;
    {
      std::lock_guard lk(queue_mu);
      acked = queue_acked;
      rejected = queue_rejected;
    }
    auto check = [&](const std::map<Key, int64_t>& confirmed, proto::RecordStateWire want,
                     const char* what) {
      for (const auto& [at, id] : confirmed) {
        if (queue_checked.count(at)) continue;
        auto s = admin.StatusOf("jobs", at.first, at.second);
        if (!s.ok() || s->size() != 1 || (*s)[0].state != want) {
          violations.Add(std::string("jobs/") + std::to_string(at.first) + "@" +
                         std::to_string(at.second) + ": acknowledged " + what + " did not stick (" +
                         (s.ok() ? std::to_string(s->size()) + " states" : s.status().ToString()) +
                         ")");
        }
        queue_checked[at] = id;
      }
    };
    check(acked, proto::RecordStateWire::kAcked, "ack");
    check(rejected, proto::RecordStateWire::kDeadLettered, "reject");
    auto letters = admin.ListDeadLetters("workers", 1'000'000);
    if (!letters.ok()) return violations.Add("ListDeadLetters: " + letters.status().ToString());
    std::set<Key> sources;
    for (const auto& d : *letters) {
      if (!sources.insert({d.source_partition, d.source_offset}).second) {
        violations.Add("the DLQ lists jobs/" + std::to_string(d.source_partition) + "@" +
                       std::to_string(d.source_offset) + " twice");
      }
      if (std::atoll(d.value.value_or("-1").c_str()) % 10 != 0) {
        violations.Add("the DLQ holds a record that was never rejected: " + d.value.value_or(""));
      }
    }
  };

  for (int round = 1; round <= rounds && violations.count() == 0; ++round) {
    std::this_thread::sleep_for(std::chrono::milliseconds(run_ms(rng)));
    kills_in_redrive += redriving.load();
    runneld.Stop(SIGKILL);
    const auto ledger_snapshot = ledger_acks.Snapshot();
    const auto events_snapshot = events_acks.Snapshot();
    const auto jobs_snapshot = jobs_acks.Snapshot();
    std::map<int32_t, int64_t> floor;
    {
      std::lock_guard lk(commit_mu);
      floor = commit_floor;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(down_ms(rng)));
    Status started = runneld.Start();
    REQUIRE_MESSAGE(started.ok(), "round " << round << ": " << started.ToString());

    auto conn = connect();
    ledger.CatchUp(conn, violations);
    ledger.CheckAcked(ledger_snapshot, violations);
    events.CatchUp(conn, violations);
    events.CheckAcked(events_snapshot, violations);
    jobs.CatchUp(conn, violations);
    jobs.CheckAcked(jobs_snapshot, violations);
    client::Admin admin(conn, 10'000);
    auto committed = admin.FetchOffsets("audit", {{"ledger", 0}, {"ledger", 1}, {"ledger", 2},
                                                  {"ledger", 3}});
    if (committed.ok()) {
      for (const auto& c : *committed) {
        const int64_t got = std::max<int64_t>(c.offset, 0);  // -1: nothing committed yet
        if (got < floor[c.partition] || got < committed_seen[c.partition]) {
          violations.Add("audit committed offset of ledger/" + std::to_string(c.partition) +
                         " went back to " + std::to_string(c.offset) + " (acknowledged " +
                         std::to_string(floor[c.partition]) + ", seen " +
                         std::to_string(committed_seen[c.partition]) + ")");
        }
        committed_seen[c.partition] = std::max(committed_seen[c.partition], got);
      }
    } else if (!floor.empty()) {
      violations.Add("FetchOffsets: " + committed.status().ToString());
    }
    verify_queue(conn);
  }
  INFO(violations.Text());
  REQUIRE(violations.count() == 0);

  // Drain: stop producing, let the consumers finish every job, stop them, then check exactly.
  stop_producing = true;
  REQUIRE((*producer)->Flush(120'000).ok());
  stop_redriving = true;
  auto conn = connect();
  client::Admin admin(conn, 10'000);
  const auto deadline = Clock::now() + std::chrono::seconds(120);
  bool drained = false;
  while (!drained && Clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    auto g = admin.DescribeGroup("workers");
    if (!g.ok()) continue;
    drained = !redriving.load();
    for (const auto& p : g->partitions) drained = drained && p.lag == 0 && p.pending == 0;
  }
  stop_consuming = true;
  load.Join();
  REQUIRE(drained);
  CHECK(ledger_acks.failed() + jobs_acks.failed() + events_acks.failed() == 0);

  ledger.CatchUp(conn, violations);
  ledger.CheckAcked(ledger_acks.Snapshot(), violations);
  events.CatchUp(conn, violations);
  events.CheckAcked(events_acks.Snapshot(), violations);
  jobs.CatchUp(conn, violations);
  jobs.CheckAcked(jobs_acks.Snapshot(), violations);
  verify_queue(conn);
  // Read from scratch, the logs hold exactly what was read piece by piece between the crashes.
  LogVerifier ledger_again("ledger", 4, false, false), jobs_again("jobs", 2, false, true);
  ledger_again.CatchUp(conn, violations);
  jobs_again.CatchUp(conn, violations);
  CHECK(ledger_again.records() == ledger.records());
  CHECK(jobs_again.records() == jobs.records());
  // Every record of "jobs" is in exactly one final state: its number decides which.
  std::map<int64_t, Key> last_copy;  // rejected number -> its newest copy
  for (const auto& [at, id] : jobs.records()) {
    auto s = admin.StatusOf("jobs", at.first, at.second);
    const auto want = id % 10 == 0 ? proto::RecordStateWire::kDeadLettered
                                   : proto::RecordStateWire::kAcked;
    if (!s.ok() || s->size() != 1 || (*s)[0].state != want) {
      violations.Add("jobs/" + std::to_string(at.first) + "@" + std::to_string(at.second) +
                     " (record " + std::to_string(id) + ") is not " +
                     (id % 10 == 0 ? "dead-lettered" : "acked"));
    }
    if (id % 10 == 0) last_copy[id] = std::max(last_copy[id], at);
  }
  // The DLQ holds each rejected number exactly once: the letter of its newest copy. Older
  // copies' letters were redriven (each into exactly one new copy).
  auto letters = admin.ListDeadLetters("workers", 1'000'000);
  REQUIRE(letters.ok());
  std::map<int64_t, std::vector<Key>> letters_of;
  for (const auto& d : *letters)
    letters_of[std::atoll(d.value.value_or("-1").c_str())].push_back({d.source_partition, d.source_offset});
  for (const auto& [id, at] : last_copy) {
    auto it = letters_of.find(id);
    if (it == letters_of.end() || it->second.size() != 1 || it->second[0] != at) {
      violations.Add("record " + std::to_string(id) + ": the DLQ holds " +
                     std::to_string(it == letters_of.end() ? 0 : it->second.size()) +
                     " letters, want exactly one for jobs/" + std::to_string(at.first) + "@" +
                     std::to_string(at.second));
    }
  }
  CHECK(letters_of.size() == last_copy.size());
  // The load really exercised what it claims to.
  CHECK(events.start_seen(0) + events.start_seen(1) > 0);  // retention trimmed
  CHECK(redriven.load() > 0);
  CHECK(jobs.records().size() > jobs_acks.Snapshot().size());  // redriven copies exist
  MESSAGE("crash loop: " << rounds << " kills (" << kills_in_redrive << " during a redrive), "
                         << produced.load() << " numbers produced, " << ledger.read()
                         << " ledger records verified, " << jobs.records().size()
                         << " jobs records (" << redriven.load() << " redriven in "
                         << redrives.load() << " redrives), " << letters->size()
                         << " dead letters at the end");
  INFO(violations.Text());
  CHECK(violations.count() == 0);
}

}  // namespace
}  // namespace runnel
