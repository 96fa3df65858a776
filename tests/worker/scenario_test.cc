// The seed scenarios end to end: a real runneld, runnel-worker processes, real SQLite files, and
// workers killed with SIGKILL. Each case states the seed's promise and checks it exactly.
#include <doctest/doctest.h>

#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <map>
#include <set>
#include <thread>

#include "../broker/test_broker.h"
#include "runnel/broker/launch.h"
#include "runnel/client/admin.h"
#include "runnel/client/consumer.h"
#include "runnel/common/json.h"
#include "runnel/worker/barcode.h"
#include "runnel/worker/coupon.h"
#include "runnel/worker/http.h"
#include "runnel/worker/load.h"
#include "runnel/worker/notify.h"
#include "runnel/worker/sqlite.h"

namespace runnel::worker {
namespace {

using Clock = std::chrono::steady_clock;

// A runnel-worker child process; SIGTERMed on destruction unless already gone.
class WorkerProcess {
 public:
  WorkerProcess(const testing::TempDir& dir, std::string name, std::vector<std::string> args)
      : log_(dir.Sub(name + ".log")), args_(std::move(args)) {
    args_.insert(args_.begin(), RUNNEL_WORKER);
    Start();
  }
  ~WorkerProcess() { Stop(SIGTERM); }
  void Start() { pid_ = broker::SpawnProcess(args_, log_); }
  // Returns the wait status.
  int Stop(int sig) {
    if (pid_ <= 0) return 0;
    const int status = broker::StopProcess(pid_, sig);
    pid_ = -1;
    return status;
  }
  std::string Log() const { return broker::ReadTextFile(log_); }

 private:
  std::string log_;
  std::vector<std::string> args_;
  pid_t pid_ = -1;
};

template <class F> bool WaitUntil(F done, int64_t timeout_ms) {
  const auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
  while (Clock::now() < deadline) {
    if (done()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return done();
}

// Lag and pending of a group, summed over partitions (-1 when the group is unknown).
std::pair<int64_t, int64_t> Backlog(client::Admin& admin, const std::string& group) {
  auto d = admin.DescribeGroup(group);
  if (!d.ok()) return {-1, -1};
  int64_t lag = 0, pending = 0;
  for (const auto& p : d->partitions) {
    lag += p.lag;
    pending += p.pending;
  }
  return {lag, pending};
}

int64_t QueryInt(SqliteDb& db, const std::string& sql) {
  auto q = db.Prepare(sql);
  REQUIRE(q.ok());
  auto row = q->Step();
  REQUIRE(row.ok());
  REQUIRE(*row);
  return q->Int(0);
}

std::string Broker(const testing::TestBroker& b) { return "127.0.0.1:" + std::to_string(b.port()); }

TEST_CASE("notify: 10,000 notifications against a webhook failing 30% and hanging 2%") {
  testing::TempDir dir;
  testing::TestBroker broker;
  auto conn = broker.Connect();
  client::Admin admin(conn);
  REQUIRE(admin.CreateTopic(kNotifyTopic, 3).ok());

  FlakyWebhookOptions fo;
  fo.fail_rate = 0.30;
  fo.hang_rate = 0.02;
  fo.hang_ms = 1'000;
  fo.seed = 42;
  auto hook = std::make_shared<FlakyWebhook>(fo);
  auto server = HttpServer::Start("127.0.0.1", 0, [hook](const HttpRequest& r) { return hook->Handle(r); }, 4);
  REQUIRE(server.ok());
  const std::string url = "http://127.0.0.1:" + std::to_string((*server)->port()) + "/notify";

  const int64_t initial_ms = 100, max_ms = 800;
  const double jitter = 0.2;
  std::vector<std::unique_ptr<WorkerProcess>> workers;
  const std::string ready = dir.Sub("notify0.ready");
  for (int i = 0; i < 2; ++i) {
    workers.push_back(std::make_unique<WorkerProcess>(
        dir, "notify" + std::to_string(i),
        std::vector<std::string>{"notify", "-b", Broker(broker), "--webhook", url, "--timeout-ms", "300",
                                 "--concurrency", "48", "--retry-initial-ms", std::to_string(initial_ms),
                                 "--retry-max-ms", std::to_string(max_ms), "--retry-jitter", "0.2",
                                 "--max-deliveries", "5", "--http-port", i == 0 ? "0" : "-1",
                                 "--ready-file", i == 0 ? ready : dir.Sub("unused.ready")}));
  }

  NotifyLoadShape shape;
  shape.run_id = "n";
  shape.malformed_every = 500;
  shape.blocked_every = 250;
  LoadOptions lo;
  lo.count = 10'000;
  lo.producers = 2;
  const LoadReport load = RunLoad(conn, lo, [&](int64_t i) { return MakeNotification(shape, i); });
  REQUIRE(load.sent == 10'000);

  REQUIRE_MESSAGE(WaitUntil([&] { return Backlog(admin, kNotifyGroup) == std::make_pair<int64_t, int64_t>(0, 0); },
                            180'000),
                  workers[0]->Log());

  // The first worker's endpoints: Prometheus text, its JSON stats, and seed 000's document.
  auto ready_doc = ParseJson(broker::ReadTextFile(ready));
  REQUIRE(ready_doc.ok());
  HttpClient http;
  const HttpUrl base{"127.0.0.1", static_cast<uint16_t>(ready_doc->Int("http_port")), "/"};
  auto get = [&](const std::string& path) {
    HttpUrl u = base;
    u.target = path;
    auto r = http.Send(u, "GET", "", {}, 5'000);
    REQUIRE(r.ok());
    CHECK(r->status == 200);
    return r->body;
  };
  const std::string prom = get("/metrics");
  CHECK(prom.find("runnel_worker_acked_total{group=\"notify\"}") != std::string::npos);
  CHECK(prom.find("runnel_worker_failures_by_kind_total{group=\"notify\",kind=\"http_5xx\"}") !=
        std::string::npos);
  CHECK(prom.find("runnel_notify_sent_total") != std::string::npos);
  auto stats = ParseJson(get("/api/v1/stats"));
  REQUIRE(stats.ok());
  const JsonValue* worker_stats = stats->Find("worker");
  REQUIRE(worker_stats);
  CHECK(worker_stats->Int("acked") > 0);
  REQUIRE(stats->Find("notify"));
  CHECK(stats->Find("notify")->Int("sent") == worker_stats->Int("acked"));
  auto seed = ParseJson(get("/api/v1/notifications/metrics"));
  REQUIRE(seed.ok());
  const JsonValue* data = seed->Find("data");
  REQUIRE(data);
  CHECK(data->Int("pendingTasks", -1) == 0);
  CHECK(data->Int("sendingTasks", -1) == 0);
  CHECK(data->Int("failedTasks", -1) == 0);
  CHECK(data->Int("requestQueuedLag", -1) == 0);
  CHECK(data->Int("sentTasks") > 0);
  CHECK(data->Double("successRate") > 90.0);
  const int64_t dlq_tasks = data->Int("dlqTasks", -1);

  for (auto& w : workers) CHECK(w->Stop(SIGTERM) == 0);

  // Dead letters by notification id.
  std::map<std::string, std::string> dead;
  auto dlq = admin.ListDeadLetters(kNotifyGroup, 100'000);
  REQUIRE(dlq.ok());
  for (const auto& d : *dlq) {
    std::string id;
    if (d.value) {
      auto doc = ParseJson(*d.value);
      if (doc.ok()) id = doc->Str("id");
    }
    if (id.empty()) {  // malformed: find the id by the offset in the source partition
      id = "offset-" + std::to_string(d.source_partition) + "-" + std::to_string(d.source_offset);
      if (d.value) {
        const size_t a = d.value->find("\"id\":\"");
        if (a != std::string::npos) id = d.value->substr(a + 6, d.value->find('"', a + 6) - a - 6);
      }
    }
    CHECK_MESSAGE(dead.emplace(id, d.reason).second, id);
  }

  const auto calls = hook->Calls();
  int64_t sent = 0, exhausted = 0;
  for (int64_t i = 0; i < lo.count; ++i) {
    const std::string id = "n-" + std::to_string(i);
    int ok = 0;
    auto it = calls.find(id);
    if (it != calls.end())
      for (const auto& c : it->second) ok += c.answer == FlakyWebhook::Answer::kOk;
    CHECK_MESSAGE(ok <= 1, id << " was sent " << ok << " times");
    const bool in_dlq = dead.count(id) > 0;
    if (i % shape.malformed_every == 1) {
      REQUIRE_MESSAGE(in_dlq, id);
      CHECK(dead[id].rfind("malformed", 0) == 0);
      CHECK(it == calls.end());  // never sent
    } else if (i % shape.blocked_every == 2) {
      REQUIRE_MESSAGE(in_dlq, id);
      CHECK(dead[id] == "non_retryable http_4xx: HTTP 422");
      CHECK(ok == 0);
    } else if (ok == 1) {
      CHECK_MESSAGE(!in_dlq, id << " sent and dead-lettered");
      ++sent;
    } else {
      REQUIRE_MESSAGE(in_dlq, id << " neither sent nor dead-lettered");
      CHECK_MESSAGE(dead[id].rfind("retries_exhausted after 5 deliveries", 0) == 0, dead[id]);
      CHECK(it->second.size() == 5);
      ++exhausted;
    }
  }
  CHECK(static_cast<int64_t>(dead.size()) == 20 + 40 + exhausted);
  CHECK(dlq_tasks == static_cast<int64_t>(dead.size()));
  CHECK(sent + exhausted + 20 + 40 == 10'000);

  // Each retry came no sooner than its backoff (jitter only shortens, by at most 20%).
  int64_t checked = 0;
  for (const auto& entry : calls) {
    const auto& id = entry.first;  // a structured binding: clang 14 cannot capture it in CHECK
    const auto& list = entry.second;
    for (size_t k = 0; k + 1 < list.size(); ++k) {
      const auto& a = list[k];
      const auto& b = list[k + 1];
      if (a.answer == FlakyWebhook::Answer::kRefused || b.delivery != a.delivery + 1) continue;
      RetryPolicy p;
      p.initial_backoff_ms = initial_ms;
      p.max_backoff_ms = max_ms;
      const auto min_gap = static_cast<int64_t>(static_cast<double>(p.BaseBackoffMs(a.delivery)) * (1 - jitter));
      CHECK_MESSAGE(b.at_ms - a.at_ms >= min_gap - 5, id << " delivery " << a.delivery);
      ++checked;
    }
  }
  CHECK(checked > 2'000);
  MESSAGE("notify: sent " << sent << ", retries exhausted " << exhausted << ", webhook "
                          << hook->StatsJson());
}

TEST_CASE("barcode: 55,000 scans (10% re-sent) from 4 producers, 3 workers, one SIGKILLed mid-batch") {
  testing::TempDir dir;
  testing::TestBroker broker;
  auto conn = broker.Connect();
  client::Admin admin(conn);
  REQUIRE(admin.CreateTopic(kBarcodeTopic, 3).ok());
  const std::string db_path = dir.Sub("scans.db");
  auto worker_args = [&] {
    return std::vector<std::string>{"barcode", "-b", Broker(broker), "--db", db_path,
                                    "--lock-timeout-ms", "2000", "--batch-max", "500",
                                    "--batch-wait-ms", "100", "--http-port", "-1"};
  };
  std::vector<std::unique_ptr<WorkerProcess>> workers;
  for (int i = 0; i < 3; ++i)
    workers.push_back(std::make_unique<WorkerProcess>(dir, "barcode" + std::to_string(i), worker_args()));

  BarcodeLoadShape shape;
  shape.run_id = "s";
  shape.distinct = 50'000;
  shape.duplicate_share = 0.1;
  LoadOptions lo;
  lo.count = shape.Total();
  lo.producers = 4;
  lo.rate_per_s = 8'000;  // about 7 s, so the kills land while batches are being written
  std::atomic<bool> loading{true};
  int kills = 0;
  std::thread killer([&] {
    while (loading) {
      std::this_thread::sleep_for(std::chrono::milliseconds(1'300));
      if (!loading) break;
      workers[0]->Stop(SIGKILL);
      ++kills;
      workers[0]->Start();
    }
  });
  const LoadReport load = RunLoad(conn, lo, [&](int64_t i) { return MakeScan(shape, shape.ScanNumber(i)); });
  loading = false;
  killer.join();
  CHECK(kills >= 3);
  REQUIRE(load.errors == 0);
  CHECK(load.sent == 50'000);       // the topic's dedup window dropped the re-sent scans ...
  CHECK(load.duplicates == 5'000);  // ... and said so

  REQUIRE_MESSAGE(WaitUntil([&] { return Backlog(admin, kBarcodeGroup) == std::make_pair<int64_t, int64_t>(0, 0); },
                            120'000),
                  workers[1]->Log());
  for (auto& w : workers) CHECK(w->Stop(SIGTERM) == 0);
  // The killed worker held locked, unacknowledged scans each time: they were delivered again.
  auto group = admin.DescribeGroup(kBarcodeGroup);
  REQUIRE(group.ok());
  const int64_t redelivered = group->counters.redeliveries;
  CHECK(redelivered > 0);

  auto db = SqliteDb::Open(db_path);
  REQUIRE(db.ok());
  CHECK(QueryInt(**db, "SELECT COUNT(*) FROM barcode_scans") == 50'000);
  CHECK(QueryInt(**db, "SELECT COUNT(DISTINCT internal_barcode_id) FROM barcode_scans") == 50'000);
  CHECK(QueryInt(**db, "SELECT COUNT(*) FROM barcode_scans WHERE internal_barcode_id NOT LIKE 'IB-s-%'") == 0);
  CHECK(QueryInt(**db, "SELECT MAX(CAST(SUBSTR(internal_barcode_id, 6) AS INTEGER)) FROM barcode_scans") ==
        49'999);
  const int64_t tx = QueryInt(**db, "SELECT transactions FROM barcode_stats");
  const int64_t seen = QueryInt(**db, "SELECT scans_seen FROM barcode_stats");
  CHECK(tx * 20 <= lo.count);  // at least 20x fewer write transactions than scans
  CHECK(seen >= 50'000);        // redelivered batches are seen again, and ignored
  MESSAGE("barcode: " << kills << " kills, " << tx << " transactions for " << lo.count
                      << " scans (" << 1000.0 * static_cast<double>(tx) / static_cast<double>(lo.count)
                      << " per 1,000), " << redelivered << " scans redelivered, " << seen - 50'000
                      << " of them already stored and ignored");
}

TEST_CASE("coupon: 2,000 users ramping in, 100 coupons, repeat requests, a worker SIGKILLed") {
  testing::TempDir dir;
  testing::TestBroker broker;
  auto conn = broker.Connect();
  client::Admin admin(conn);
  REQUIRE(admin.CreateTopic(kCouponTopic, 3).ok());
  REQUIRE(admin.CreateTopic(kCouponResultsTopic, 1).ok());
  const std::string db_path = dir.Sub("coupons.db");
  std::vector<std::unique_ptr<WorkerProcess>> workers;
  for (int i = 0; i < 3; ++i) {
    workers.push_back(std::make_unique<WorkerProcess>(
        dir, "coupon" + std::to_string(i),
        std::vector<std::string>{"coupon", "-b", Broker(broker), "--db", db_path, "--stock", "c0=25",
                                 "--stock", "c1=25", "--stock", "c2=25", "--stock", "c3=25",
                                 "--session-timeout-ms", "2000", "--batch-max", "50",
                                 "--http-port", "-1"}));
  }
  CouponLoadShape shape;
  shape.run_id = "q";
  shape.users = 2'000;
  shape.repeat_share = 0.1;
  shape.coupons = 4;
  LoadOptions lo;
  lo.count = shape.Total();
  lo.rate_per_s = 1'000;
  lo.ramp_ms = 3'000;  // 0 -> 1,000 requests/s over 3 s, like the seed's user ramp
  lo.producers = 2;
  std::thread killer([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(2'000));
    workers[0]->Stop(SIGKILL);
  });
  const LoadReport load = RunLoad(conn, lo, [&](int64_t i) { return MakeCouponRequest(shape, i); });
  killer.join();
  REQUIRE(load.errors == 0);
  REQUIRE(load.sent == 2'200);

  auto db = SqliteDb::Open(db_path);
  REQUIRE(db.ok());
  REQUIRE_MESSAGE(WaitUntil([&] {
                    return QueryInt(**db, "SELECT COUNT(*) FROM coupon_requests") == 2'200 &&
                           QueryInt(**db, "SELECT COUNT(*) FROM coupon_requests WHERE published = 0") == 0;
                  },
                  120'000),
                  workers[1]->Log());
  for (size_t i = 1; i < workers.size(); ++i) CHECK(workers[i]->Stop(SIGTERM) == 0);

  CHECK(QueryInt(**db, "SELECT COUNT(*) FROM issued_coupons") == 100);
  CHECK(QueryInt(**db, "SELECT COUNT(DISTINCT user_id) FROM issued_coupons") == 100);
  CHECK(QueryInt(**db, "SELECT SUM(stock) FROM coupons") == 0);
  CHECK(QueryInt(**db, "SELECT COUNT(*) FROM coupon_requests WHERE outcome = 'SUCCESS'") == 100);
  CHECK(QueryInt(**db, "SELECT COUNT(*) FROM coupon_requests WHERE outcome = 'DUPLICATE_REQUEST'") >= 1);
  CHECK(QueryInt(**db, "SELECT COUNT(*) FROM coupon_requests WHERE outcome = 'SYSTEM_ERROR'") == 0);

  // Exactly one result per request on coupon.results, agreeing with the database.
  auto t = admin.DescribeTopics({kCouponResultsTopic});
  REQUIRE(t.ok());
  int64_t results = 0;
  for (const auto& p : (*t)[0].partitions) results += p.high_watermark - p.log_start;
  CHECK(results == 2'200);
  client::ConsumerOptions co;
  co.topics = {kCouponResultsTopic};
  auto consumer = client::Consumer::Create(conn, co);
  REQUIRE(consumer.ok());
  std::map<std::string, std::string> outcome_of;
  int64_t records = 0;
  WaitUntil([&] {
    auto r = (*consumer)->Poll(200);
    REQUIRE(r.ok());
    for (const auto& rec : *r) {
      ++records;
      auto doc = ParseJson(*rec.value);
      REQUIRE(doc.ok());
      CHECK_MESSAGE(outcome_of.emplace(doc->Str("requestId"), doc->Str("outcome")).second,
                    "two results for " << doc->Str("requestId"));
    }
    return records >= results;
  }, 30'000);
  CHECK(records == 2'200);
  CHECK(outcome_of.size() == 2'200);
  auto q = (*db)->Prepare("SELECT request_id, outcome FROM coupon_requests");
  REQUIRE(q.ok());
  int64_t agree = 0;
  for (;;) {
    auto row = q->Step();
    REQUIRE(row.ok());
    if (!*row) break;
    agree += outcome_of[q->Text(0)] == q->Text(1);
  }
  CHECK(agree == 2'200);
  for (int64_t i = 0; i < lo.count; i += 97) CHECK(outcome_of.count("q-" + std::to_string(i)) == 1);

  // A request's outcome by its id, from the command line.
  auto st = broker::RunProcess({RUNNEL_WORKER, "coupon-status", "--db", db_path, "q-0"});
  CHECK(st.exit_code == 0);
  auto doc = ParseJson(st.out);
  REQUIRE(doc.ok());
  CHECK(doc->Str("outcome") == outcome_of["q-0"]);
  CHECK(doc->Str("requestId") == "q-0");
  st = broker::RunProcess({RUNNEL_WORKER, "coupon-status", "--db", db_path, "no-such-request"});
  CHECK(st.exit_code == 3);
  CHECK(st.out.find("PENDING") != std::string::npos);
}

TEST_CASE("runnel-worker: bad flags and an unreachable broker fail with one clear line") {
  testing::TempDir dir;
  auto r = broker::RunProcess({RUNNEL_WORKER, "notify", "--webhook", "https://example.com/x", "-b",
                               "127.0.0.1:1", "--http-port", "-1"});
  CHECK(r.exit_code == 1);
  CHECK(r.err.find("only http:// URLs are supported") != std::string::npos);
  r = broker::RunProcess({RUNNEL_WORKER, "coupon", "--db", dir.Sub("c.db"), "--stock", "c0", "-b",
                          "127.0.0.1:1", "--http-port", "-1"});
  CHECK(r.exit_code == 1);
  CHECK(r.err.find("expected COUPON=N") != std::string::npos);
  // Valid flags, but nobody listens on the broker's port.
  r = broker::RunProcess({RUNNEL_WORKER, "coupon", "--db", dir.Sub("c.db"), "--stock", "c0=5", "-b",
                          "127.0.0.1:1", "--http-port", "-1"});
  CHECK(r.exit_code == 1);
  CHECK(r.err.find("127.0.0.1:1") != std::string::npos);
  r = broker::RunProcess({RUNNEL_WORKER, "barcode", "--db", "/nonexistent-dir/x.db", "-b", "127.0.0.1:1"});
  CHECK(r.exit_code == 1);
  CHECK(!r.err.empty());
  r = broker::RunProcess({RUNNEL_WORKER, "barcode", "--concurrency", "many"});
  CHECK(r.exit_code != 0);
  r = broker::RunProcess({RUNNEL_WORKER, "db-stats", "ledger", "--db", dir.Sub("x.db")});
  CHECK(r.exit_code != 0);
}

}  // namespace
}  // namespace runnel::worker
