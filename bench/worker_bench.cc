// runnel-worker-bench: each seed workload end to end on this machine, through a runneld this
// program starts (one per workload, fresh data directory) and the worker runtime in-process:
//   notify   notifications produced while the worker POSTs them to a local webhook
//   barcode  scans batch-inserted into SQLite (batches of --batch) vs one transaction per scan
//   coupon   coupon requests decided in SQLite with the consumed offset in the same transaction
// Records/s is records produced / (first send -> last record settled). Prints a table and, with
// --json, one JSON document.
#include <signal.h>

#include <CLI/CLI.hpp>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <thread>

#include "runnel/broker/launch.h"
#include "runnel/client/admin.h"
#include "runnel/common/json.h"
#include "runnel/worker/barcode.h"
#include "runnel/worker/coupon.h"
#include "runnel/worker/http.h"
#include "runnel/worker/load.h"
#include "runnel/worker/notify.h"
#include "runnel/worker/worker.h"

namespace {

using namespace runnel;
using namespace runnel::worker;
using Clock = std::chrono::steady_clock;

[[noreturn]] void Die(const std::string& what, const Status& s) {
  std::fprintf(stderr, "runnel-worker-bench: %s: %s\n", what.c_str(), s.ToString().c_str());
  std::exit(1);
}
template <class T> T Check(Result<T> r, const std::string& what) {
  if (!r.ok()) Die(what, r.status());
  return std::move(r).value();
}

// A runneld in its own directory for one workload.
struct Broker {
  std::string dir;
  broker::RunneldProcess process;
  std::shared_ptr<client::Connection> conn;

  explicit Broker(const std::string& root, const std::string& name)
      : dir(root + "/" + name), process({RUNNEL_RUNNELD, dir}) {
    if (Status s = process.Start(); !s.ok()) {
      std::fprintf(stderr, "runneld: %s\n", s.ToString().c_str());
      std::exit(1);
    }
    client::TcpOptions o;
    o.port = process.port();
    conn = client::ConnectTcp(o);
  }
};

struct Row {
  std::string name;
  int64_t records = 0;
  double seconds = 0;
  double per_s = 0;
  double e2e_p50_ms = 0, e2e_p99_ms = 0;
  std::string note;
};

// Runs `worker` while `load` produces; returns when `done(stats)` holds.
template <class Done>
double Measure(Worker& worker, const std::function<void()>& load, Done done) {
  std::thread runner([&] { (void)worker.Run(); });
  const auto start = Clock::now();
  std::thread producer(load);
  while (!done(worker.Stats())) std::this_thread::sleep_for(std::chrono::milliseconds(2));
  const double secs = std::chrono::duration<double>(Clock::now() - start).count();
  producer.join();
  worker.Stop();
  runner.join();
  return secs;
}

Row Finish(std::string name, int64_t n, double secs, const WorkerStats& s, std::string note = {}) {
  return {std::move(name), n, secs, static_cast<double>(n) / secs, s.end_to_end_ms.Quantile(0.5),
          s.end_to_end_ms.Quantile(0.99), std::move(note)};
}

Row Notify(const std::string& root, int64_t n, int concurrency) {
  Broker b(root, "notify");
  client::Admin admin(b.conn);
  (void)admin.CreateTopic(kNotifyTopic, 3);
  FlakyWebhookOptions fo;
  fo.fail_rate = 0;
  fo.hang_rate = 0;
  auto hook = std::make_shared<FlakyWebhook>(fo);
  auto server = Check(HttpServer::Start("127.0.0.1", 0, [hook](const HttpRequest& r) { return hook->Handle(r); }, 2),
                      "webhook");
  auto handler = Check(NotifyHandler::Create({"http://127.0.0.1:" + std::to_string(server->port()) + "/n", 2'000}),
                       "handler");
  WorkerOptions o;
  o.topic = kNotifyTopic;
  o.group = kNotifyGroup;
  o.concurrency = concurrency;
  auto w = Check(Worker::Create(b.conn, o, RecordHandler([handler](const client::ConsumerRecord& r) {
                   return handler->Handle(r);
                 })),
                 "worker");
  NotifyLoadShape shape;
  LoadOptions lo;
  lo.count = n;
  const double secs = Measure(*w, [&] { RunLoad(b.conn, lo, [&](int64_t i) { return MakeNotification(shape, i); }); },
                              [&](const WorkerStats& s) { return s.acked >= n; });
  return Finish("notify (webhook POST, concurrency " + std::to_string(concurrency) + ")", n, secs,
                w->Stats());
}

Row Barcode(const std::string& root, int64_t n, int32_t batch, double* tx_per_1000) {
  Broker b(root, "barcode-" + std::to_string(batch));
  client::Admin admin(b.conn);
  (void)admin.CreateTopic(kBarcodeTopic, 3);
  auto sink = Check(BarcodeSink::Open(b.dir + "/scans.db"), "sqlite");
  WorkerOptions o;
  o.topic = kBarcodeTopic;
  o.group = kBarcodeGroup;
  o.concurrency = 2;
  o.batch_max_records = batch;
  o.batch_max_wait_ms = batch > 1 ? 100 : 0;
  auto w = Check(Worker::Create(b.conn, o, BatchHandler([sink](const std::vector<client::ConsumerRecord>& r) {
                   return sink->Handle(r);
                 })),
                 "worker");
  BarcodeLoadShape shape;
  shape.distinct = n;
  shape.duplicate_share = 0;
  LoadOptions lo;
  lo.count = n;
  const double secs = Measure(*w, [&] { RunLoad(b.conn, lo, [&](int64_t i) { return MakeScan(shape, i); }); },
                              [&](const WorkerStats& s) { return s.acked >= n; });
  auto st = Check(sink->DbStats(), "stats");
  *tx_per_1000 = st.TransactionsPerThousand();
  char note[96];
  std::snprintf(note, sizeof note, "%.1f write transactions per 1,000 scans", *tx_per_1000);
  return Finish(batch > 1 ? "barcode (SQLite, batches of " + std::to_string(batch) + ")"
                          : "barcode (SQLite, one transaction per scan)",
                n, secs, w->Stats(), note);
}

Row Coupon(const std::string& root, int64_t n) {
  Broker b(root, "coupon");
  client::Admin admin(b.conn);
  (void)admin.CreateTopic(kCouponTopic, 3);
  (void)admin.CreateTopic(kCouponResultsTopic, 1);
  std::shared_ptr<client::Producer> producer = Check(client::Producer::Create(b.conn), "producer");
  auto svc = Check(CouponService::Open(b.dir + "/coupons.db", producer), "sqlite");
  for (int c = 0; c < 4; ++c) (void)svc->AddCoupon(CouponId(c), n / 8);
  WorkerOptions o;
  o.topic = kCouponTopic;
  o.group = kCouponGroup;
  o.batch_max_records = 500;
  auto w = Check(Worker::Create(b.conn, o, svc->Handler()), "worker");
  CouponLoadShape shape;
  shape.users = n;
  shape.repeat_share = 0;
  shape.coupons = 4;
  LoadOptions lo;
  lo.count = n;
  const double secs = Measure(*w, [&] { RunLoad(b.conn, lo, [&](int64_t i) { return MakeCouponRequest(shape, i); }); },
                              [&](const WorkerStats& s) { return s.acked >= n; });
  auto st = Check(svc->DbStats(), "stats");
  svc->Close();
  return Finish("coupon (SQLite decision + offset per batch)", n, secs, w->Stats(),
                std::to_string(st.issued) + " issued, results published to coupon.results");
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"runnel-worker-bench: the seed workloads end to end"};
  int64_t notify_n = 20'000, barcode_n = 50'000, per_row_n = 5'000, coupon_n = 20'000;
  int concurrency = 32;
  int32_t batch = 500;
  bool json = false;
  std::string dir = "/tmp/runnel-worker-bench";
  app.add_option("--notify", notify_n, "Notifications")->capture_default_str();
  app.add_option("--concurrency", concurrency, "Notify handler concurrency")->capture_default_str();
  app.add_option("--barcode", barcode_n, "Scans, batched")->capture_default_str();
  app.add_option("--per-row", per_row_n, "Scans, one transaction each")->capture_default_str();
  app.add_option("--batch", batch, "Barcode batch size")->capture_default_str();
  app.add_option("--coupon", coupon_n, "Coupon requests")->capture_default_str();
  app.add_option("--dir", dir, "Scratch directory (emptied)")->capture_default_str();
  app.add_flag("--json", json, "Print JSON");
  CLI11_PARSE(app, argc, argv);
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);

  std::vector<Row> rows;
  rows.push_back(Notify(dir, notify_n, concurrency));
  double tx_batched = 0, tx_row = 0;
  rows.push_back(Barcode(dir, barcode_n, batch, &tx_batched));
  rows.push_back(Barcode(dir, per_row_n, 1, &tx_row));
  rows.push_back(Coupon(dir, coupon_n));
  const double reduction = tx_row > 0 ? 100.0 * (1.0 - tx_batched / tx_row) : 0;
  const double speedup = rows[2].per_s > 0 ? rows[1].per_s / rows[2].per_s : 0;

  if (json) {
    JsonWriter w;
    w.BeginObject().Key("workloads").BeginArray();
    for (const Row& r : rows) {
      w.BeginObject().Field("name", r.name).Field("records", r.records).Field("seconds", r.seconds);
      w.Field("records_per_s", r.per_s).Field("e2e_p50_ms", r.e2e_p50_ms).Field("e2e_p99_ms", r.e2e_p99_ms);
      w.Field("note", r.note).EndObject();
    }
    w.EndArray().Field("barcode_write_reduction_pct", reduction).Field("barcode_batch_speedup", speedup);
    w.EndObject();
    std::printf("%s\n", w.str().c_str());
    return 0;
  }
  std::printf("%-48s %9s %8s %12s %9s %9s  %s\n", "WORKLOAD", "RECORDS", "SECONDS", "RECORDS/S",
              "E2E P50", "E2E P99", "NOTE");
  for (const Row& r : rows) {
    std::printf("%-48s %9lld %8.2f %12.0f %7.1fms %7.1fms  %s\n", r.name.c_str(),
                static_cast<long long>(r.records), r.seconds, r.per_s, r.e2e_p50_ms, r.e2e_p99_ms,
                r.note.c_str());
  }
  std::printf("\nbarcode: batching cut database write transactions by %.1f%% (seed 002: 73.7%%) and "
              "stored scans %.1fx faster than one transaction per scan\n",
              reduction, speedup);
  return 0;
}
