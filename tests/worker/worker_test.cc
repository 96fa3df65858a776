// The worker runtime against the broker core in-process: acks, retries with backoff, dead
// letters with reasons, batches, the circuit breaker, the rate limit, lock renewal, draining,
// and handler-kept offsets.
#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include "runnel/broker/embedded.h"
#include "runnel/client/admin.h"
#include "runnel/client/consumer.h"
#include "runnel/client/producer.h"
#include "runnel/common/clock.h"
#include "runnel/testing/temp_dir.h"
#include "runnel/worker/worker.h"

namespace runnel::worker {
namespace {

using Clock = std::chrono::steady_clock;

// An in-process broker with one topic and helpers.
struct Fixture {
  testing::TempDir dir;
  std::unique_ptr<broker::EmbeddedBroker> broker;
  std::shared_ptr<client::Connection> conn;
  std::unique_ptr<client::Admin> admin;

  explicit Fixture(int32_t partitions = 1) {
    broker::BrokerOptions o;
    o.store.data_dir = dir.Sub("data");
    auto b = broker::EmbeddedBroker::Open(o);
    REQUIRE(b.ok());
    broker = std::move(b).value();
    conn = broker->Connect();
    admin = std::make_unique<client::Admin>(conn);
    REQUIRE(admin->CreateTopic("jobs", partitions).ok());
  }

  void Produce(const std::vector<std::string>& values, const std::string& topic = "jobs") {
    auto p = client::Producer::Create(conn);
    REQUIRE(p.ok());
    for (const auto& v : values) {
      client::ProducerRecord r;
      r.topic = topic;
      r.key = v;
      r.value = v;
      (*p)->Send(std::move(r), [](Result<client::RecordMetadata> m) { REQUIRE(m.ok()); });
    }
    REQUIRE((*p)->Flush().ok());
  }

  WorkerOptions Options() const {
    WorkerOptions o;
    o.topic = "jobs";
    o.group = "g";
    o.poll_timeout_ms = 50;
    o.retry.initial_backoff_ms = 50;
    o.retry.jitter = 0;
    o.retry.max_deliveries = 3;
    o.breaker.enabled = false;
    return o;
  }
};

// Runs a worker on a thread; stops and joins it on destruction.
struct Running {
  std::unique_ptr<Worker> worker;
  std::thread thread;
  Status result;
  explicit Running(std::unique_ptr<Worker> w) : worker(std::move(w)) {
    thread = std::thread([this] { result = worker->Run(); });
  }
  ~Running() { Join(); }
  void Join() {
    worker->Stop();
    if (thread.joinable()) thread.join();
  }
  // Waits until `done` holds (polling) or the timeout passes; returns whether it held.
  template <class F> bool WaitFor(F done, int64_t timeout_ms = 20'000) {
    const auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
    while (Clock::now() < deadline) {
      if (done()) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return done();
  }
};

std::unique_ptr<Worker> Make(Fixture& f, const WorkerOptions& o, RecordHandler h) {
  auto w = Worker::Create(f.conn, o, std::move(h));
  REQUIRE(w.ok());
  return std::move(w).value();
}

TEST_CASE("Worker: acks, retries with backoff, and dead-letters with the reason") {
  Fixture f;
  std::vector<std::string> values;
  for (int i = 0; i < 10; ++i) values.push_back("ok-" + std::to_string(i));
  values.push_back("flaky-1");
  values.push_back("fail-1");
  values.push_back("bad-1");
  f.Produce(values);

  std::mutex mu;
  std::map<std::string, std::vector<std::pair<int32_t, int64_t>>> seen;  // value -> (delivery, ms)
  Running run(Make(f, f.Options(), [&](const client::ConsumerRecord& r) {
    const std::string v = *r.value;
    {
      std::lock_guard lk(mu);
      seen[v].emplace_back(r.deliveries, WallClockMs());
    }
    if (v.rfind("ok", 0) == 0) return Outcome::Ack();
    if (v.rfind("flaky", 0) == 0)
      return r.deliveries < 3 ? Outcome::Fail("http_5xx", "HTTP 503") : Outcome::Ack();
    if (v.rfind("fail", 0) == 0) return Outcome::Fail("http_5xx", "HTTP 503");
    return Outcome::Reject("malformed", "not JSON");
  }));
  REQUIRE(run.WaitFor([&] {
    const WorkerStats s = run.worker->Stats();
    return s.acked == 11 && s.dead_lettered == 2;
  }));
  run.Join();
  CHECK(run.result.ok());

  const WorkerStats s = run.worker->Stats();
  CHECK(s.retried == 4);  // flaky twice, fail twice
  CHECK(s.failures_by_kind.at("http_5xx") == 5);
  CHECK(s.dead_letters_by_reason.at("malformed") == 1);
  CHECK(s.dead_letters_by_reason.at("retries_exhausted") == 1);

  auto dlq = f.admin->ListDeadLetters("g");
  REQUIRE(dlq.ok());
  REQUIRE(dlq->size() == 2);
  std::map<std::string, std::string> reasons;
  for (const auto& d : *dlq) reasons[*d.value] = d.reason;
  CHECK(reasons["fail-1"] == "retries_exhausted after 3 deliveries: http_5xx: HTTP 503");
  CHECK(reasons["bad-1"] == "malformed: not JSON");

  // The retries waited at least their backoff: 50 ms, then 100 ms.
  const auto& flaky = seen["flaky-1"];
  REQUIRE(flaky.size() == 3);
  CHECK(flaky[1].second - flaky[0].second >= 45);
  CHECK(flaky[2].second - flaky[1].second >= 95);
  CHECK(seen["ok-3"].size() == 1);

  auto d = f.admin->DescribeGroup("g");
  REQUIRE(d.ok());
  CHECK(d->partitions[0].pending == 0);
  CHECK(d->partitions[0].lag == 0);
}

TEST_CASE("Worker: a handler exception is a retryable failure") {
  Fixture f;
  f.Produce({"boom"});
  WorkerOptions o = f.Options();
  o.retry.max_deliveries = 2;
  Running run(Make(f, o, [](const client::ConsumerRecord&) -> Outcome {
    throw std::runtime_error("disk on fire");
  }));
  REQUIRE(run.WaitFor([&] { return run.worker->Stats().dead_lettered == 1; }));
  run.Join();
  auto dlq = f.admin->ListDeadLetters("g");
  REQUIRE(dlq.ok());
  REQUIRE(dlq->size() == 1);
  CHECK((*dlq)[0].reason == "retries_exhausted after 2 deliveries: exception: disk on fire");
}

TEST_CASE("Worker: batches hold at most batch_max_records and settle per record") {
  Fixture f(3);
  std::vector<std::string> values;
  for (int i = 0; i < 250; ++i) values.push_back("v" + std::to_string(i));
  f.Produce(values);
  WorkerOptions o = f.Options();
  o.batch_max_records = 100;
  o.batch_max_wait_ms = 50;
  o.concurrency = 2;
  std::mutex mu;
  std::vector<size_t> sizes;
  std::multiset<std::string> handled;
  auto w = Worker::Create(f.conn, o, BatchHandler([&](const std::vector<client::ConsumerRecord>& b) {
    std::vector<Outcome> out;
    std::lock_guard lk(mu);
    sizes.push_back(b.size());
    for (const auto& r : b) {
      handled.insert(*r.value);
      out.push_back(*r.value == "v7" ? Outcome::Reject("poison") : Outcome::Ack());
    }
    return out;
  }));
  REQUIRE(w.ok());
  Running run(std::move(w).value());
  REQUIRE(run.WaitFor([&] {
    const WorkerStats s = run.worker->Stats();
    return s.acked == 249 && s.dead_lettered == 1;
  }));
  run.Join();
  std::lock_guard lk(mu);
  size_t total = 0;
  for (size_t n : sizes) {
    CHECK(n <= 100);
    total += n;
  }
  CHECK(total == 250);
  CHECK(handled.size() == 250);
  CHECK(std::set<std::string>(handled.begin(), handled.end()).size() == 250);
  auto dlq = f.admin->ListDeadLetters("g");
  REQUIRE(dlq.ok());
  REQUIRE(dlq->size() == 1);
  CHECK(*(*dlq)[0].value == "v7");
}

TEST_CASE("Worker: the circuit breaker stops fetching while the dependency fails") {
  Fixture f;
  std::vector<std::string> values;
  for (int i = 0; i < 200; ++i) values.push_back("n" + std::to_string(i));
  f.Produce(values);
  WorkerOptions o = f.Options();
  o.concurrency = 1;
  o.retry.max_deliveries = 50;
  o.retry.initial_backoff_ms = 10;
  o.retry.max_backoff_ms = 10;
  o.breaker.enabled = true;
  o.breaker.window_ms = 1'000;
  o.breaker.min_calls = 5;
  o.breaker.failure_threshold = 0.5;
  o.breaker.open_ms = 300;
  o.breaker.max_open_ms = 300;
  o.breaker.half_open_probes = 1;
  std::atomic<bool> down{true};
  std::atomic<int64_t> calls_while_down{0};
  Running run(Make(f, o, [&](const client::ConsumerRecord&) {
    if (down) {
      ++calls_while_down;
      return Outcome::Fail("http_5xx");
    }
    return Outcome::Ack();
  }));
  std::this_thread::sleep_for(std::chrono::milliseconds(1'000));
  CHECK(run.worker->Stats().breaker_opens >= 1);
  // Open 300 ms, then one probe: at most 5 calls to open it plus about one probe per 300 ms.
  // Without the breaker this second would have made hundreds of calls.
  CHECK(calls_while_down.load() <= 5 + 6);
  down = false;
  REQUIRE(run.WaitFor([&] { return run.worker->Stats().acked == 200; }));
  CHECK(run.worker->Stats().breaker_state == "closed");
}

TEST_CASE("Worker: the rate limit caps records handed to the handler") {
  Fixture f;
  std::vector<std::string> values;
  for (int i = 0; i < 100; ++i) values.push_back("r" + std::to_string(i));
  f.Produce(values);
  WorkerOptions o = f.Options();
  o.rate_limit_per_s = 20;
  o.rate_burst = 1;
  std::atomic<int64_t> calls{0};
  const auto start = Clock::now();
  Running run(Make(f, o, [&](const client::ConsumerRecord&) {
    ++calls;
    return Outcome::Ack();
  }));
  std::this_thread::sleep_for(std::chrono::milliseconds(1'000));
  const double secs = std::chrono::duration<double>(Clock::now() - start).count();
  CHECK(calls.load() >= 1);
  CHECK(static_cast<double>(calls.load()) <= 1 + 20 * secs + 2);
  run.Join();
  CHECK(run.worker->Stats().rate_limited_ms > 0);
}

TEST_CASE("Worker: long handlers keep their locks, so nobody else gets the record") {
  Fixture f;
  f.Produce({"slow-1", "slow-2"});
  WorkerOptions o = f.Options();
  o.lock_timeout_ms = 300;
  o.concurrency = 2;
  std::atomic<int> max_delivery{0};
  Running run(Make(f, o, [&](const client::ConsumerRecord& r) {
    max_delivery = std::max(max_delivery.load(), r.deliveries);
    std::this_thread::sleep_for(std::chrono::milliseconds(1'000));
    return Outcome::Ack();
  }));
  REQUIRE(run.WaitFor([&] { return run.worker->Stats().in_flight == 2; }));
  // Another member of the group polls while the locks would have expired three times over.
  client::ConsumerOptions co;
  co.mode = client::ConsumerMode::kQueue;
  co.group = "g";
  co.topics = {"jobs"};
  auto other = client::Consumer::Create(f.conn, co);
  REQUIRE(other.ok());
  const auto until = Clock::now() + std::chrono::milliseconds(800);
  while (Clock::now() < until) {
    auto r = (*other)->Poll(100);
    REQUIRE(r.ok());
    CHECK(r->empty());
  }
  REQUIRE(run.WaitFor([&] { return run.worker->Stats().acked == 2; }));
  CHECK(run.worker->Stats().lock_extensions >= 2);
  CHECK(run.worker->Stats().locks_lost == 0);
  CHECK(max_delivery.load() == 1);
}

TEST_CASE("Worker: Stop drains running handlers and settles them") {
  Fixture f;
  f.Produce({"a", "b", "c", "d"});
  WorkerOptions o = f.Options();
  o.concurrency = 4;
  Running run(Make(f, o, [&](const client::ConsumerRecord&) {
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    return Outcome::Ack();
  }));
  REQUIRE(run.WaitFor([&] { return run.worker->Stats().in_flight == 4; }));
  run.Join();
  CHECK(run.result.ok());
  CHECK(run.worker->Stats().acked == 4);
  auto d = f.admin->DescribeGroup("g");
  REQUIRE(d.ok());
  CHECK(d->partitions[0].pending == 0);
}

TEST_CASE("Worker: a drain that times out releases unfinished records for redelivery") {
  Fixture f;
  f.Produce({"stuck"});
  WorkerOptions o = f.Options();
  o.drain_timeout_ms = 100;
  o.lock_timeout_ms = 60'000;
  Running run(Make(f, o, [&](const client::ConsumerRecord&) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1'500));
    return Outcome::Ack();
  }));
  REQUIRE(run.WaitFor([&] { return run.worker->Stats().in_flight == 1; }));
  run.worker->Stop();
  run.thread.join();
  CHECK(run.result.code() == StatusCode::kTimeout);
  // Released at once, although its lock had a minute left.
  client::ConsumerOptions co;
  co.mode = client::ConsumerMode::kQueue;
  co.group = "g";
  co.topics = {"jobs"};
  auto other = client::Consumer::Create(f.conn, co);
  REQUIRE(other.ok());
  auto r = (*other)->Poll(1'000);
  REQUIRE(r.ok());
  REQUIRE(r->size() == 1);
  CHECK(*(*r)[0].value == "stuck");
  CHECK((*r)[0].deliveries == 2);
}

TEST_CASE("Worker: a partition handler resumes where its own store says and retries errors") {
  // Also: when loading the offset fails, the records polled meanwhile are read again.
  Fixture f(2);
  std::vector<std::string> values;
  for (int i = 0; i < 40; ++i) values.push_back("k" + std::to_string(i));
  f.Produce(values);

  std::mutex mu;
  std::map<int32_t, int64_t> store;  // partition -> next offset (the handler's database)
  std::map<int32_t, std::vector<int64_t>> applied;
  int failures_left = 1;
  int load_failures_left = 2;  // the store is unreachable at first: nothing may be skipped
  auto handler = [&] {
    PartitionHandler h;
    h.load_offset = [&](const proto::TopicPartitionRef& tp) -> Result<std::optional<int64_t>> {
      std::lock_guard lk(mu);
      if (load_failures_left > 0) {
        --load_failures_left;
        return Status::IOError("database unreachable");
      }
      auto it = store.find(tp.partition);
      if (it == store.end()) return std::optional<int64_t>();
      return std::optional<int64_t>(it->second);
    };
    h.process = [&](const proto::TopicPartitionRef& tp,
                    const std::vector<client::ConsumerRecord>& recs) -> Result<int64_t> {
      std::lock_guard lk(mu);
      if (failures_left > 0) {
        --failures_left;
        return Status::Busy("database is locked");
      }
      const int64_t start = store.count(tp.partition) ? store[tp.partition] : recs.front().offset;
      if (recs.front().offset > start) return start;  // a gap: read from the store's offset
      for (const auto& r : recs)
        if (r.offset >= start) applied[tp.partition].push_back(r.offset);
      store[tp.partition] = recs.back().offset + 1;
      return recs.back().offset + 1;
    };
    return h;
  };
  WorkerOptions o = f.Options();
  o.group = "sg";
  o.batch_max_records = 7;
  {
    auto w = Worker::Create(f.conn, o, handler());
    REQUIRE(w.ok());
    Running run(std::move(w).value());
    REQUIRE(run.WaitFor([&] {
      std::lock_guard lk(mu);
      return applied[0].size() + applied[1].size() == 40;
    }));
  }
  std::map<int32_t, int64_t> ends;
  {
    std::lock_guard lk(mu);
    for (auto& [p, offs] : applied) {
      for (size_t i = 0; i < offs.size(); ++i) CHECK(offs[i] == static_cast<int64_t>(i));
      ends[p] = static_cast<int64_t>(offs.size());
    }
    // Pretend the database was restored from a backup two records behind on partition 0.
    store[0] = ends[0] - 2;
    applied.clear();
  }
  f.Produce({"late-1", "late-2", "late-3"});
  auto w = Worker::Create(f.conn, o, handler());
  REQUIRE(w.ok());
  Running run(std::move(w).value());
  REQUIRE(run.WaitFor([&] {
    std::lock_guard lk(mu);
    return applied[0].size() + applied[1].size() == 5;
  }));
  std::lock_guard lk(mu);
  REQUIRE(applied[0].size() >= 2);
  CHECK(applied[0][0] == ends[0] - 2);  // re-applied from the store's offset, not the group's
}

}  // namespace
}  // namespace runnel::worker
