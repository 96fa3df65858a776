// runnel-worker: runs the built-in workloads (notify, barcode, coupon) on the worker runtime,
// their load generators, a flaky webhook for demos and tests, and database lookups. See
// worker/README.md.
#include <CLI/CLI.hpp>

#include <signal.h>
#include <unistd.h>

#include <charconv>
#include <cstdio>
#include <fstream>
#include <thread>

#include "runnel/client/admin.h"
#include "runnel/common/json.h"
#include "runnel/worker/barcode.h"
#include "runnel/worker/coupon.h"
#include "runnel/worker/http.h"
#include "runnel/worker/load.h"
#include "runnel/worker/notify.h"
#include "runnel/worker/worker.h"

namespace runnel::worker {
namespace {

[[noreturn]] void Die(const std::string& what, const Status& s) {
  std::fprintf(stderr, "runnel-worker: %s: %s\n", what.c_str(), s.ToString().c_str());
  std::exit(1);
}

template <class T> T Check(Result<T> r, const std::string& what) {
  if (!r.ok()) Die(what, r.status());
  return std::move(r).value();
}

void Check(const Status& s, const std::string& what) {
  if (!s.ok()) Die(what, s);
}

std::shared_ptr<client::Connection> Connect(const std::string& broker) {
  return client::ConnectTcp(Check(client::ParseBrokerAddress(broker), "--broker"));
}

// Creates a topic unless it exists.
void EnsureTopic(client::Admin& admin, const std::string& name, int32_t partitions,
                 const proto::ConfigEntries& config = {}) {
  Status s = admin.CreateTopic(name, partitions, config);
  if (!s.ok() && s.code() != StatusCode::kAlreadyExists) Die("create topic " + name, s);
}

// Writes `content` to `path` atomically (a reader never sees half of it).
void WriteReadyFile(const std::string& path, const std::string& content) {
  {
    std::ofstream f(path + ".tmp");
    f << content;
  }
  std::rename((path + ".tmp").c_str(), path.c_str());
}

// Flags every workload shares.
struct Common {
  std::string broker = "127.0.0.1:7070";
  std::string group;
  std::string consumer;
  int32_t partitions = 3;
  std::string http_bind = "127.0.0.1";
  int http_port = 7072;  // 0: any free port; -1: no HTTP endpoint (defaults: 7072/7073/7074)
  std::string ready_file;
  WorkerOptions w;
  bool no_breaker = false;
};

void AddCommon(CLI::App* app, Common& c) {
  app->add_option("--broker,-b", c.broker, "Broker host:port (tls://host:port for TLS; token and CA from RUNNEL_TOKEN, RUNNEL_TLS_CA)")->capture_default_str();
  app->add_option("--group", c.group, "Consumer group (default: the workload's name)");
  app->add_option("--consumer", c.consumer, "Consumer name (default: host-pid-n)");
  app->add_option("--partitions", c.partitions, "Partitions when the worker creates its topic")
      ->capture_default_str();
  app->add_option("--concurrency", c.w.concurrency, "Handler calls at once")->capture_default_str();
  app->add_option("--batch-max", c.w.batch_max_records, "Records per batch (batch workloads)")
      ->capture_default_str();
  app->add_option("--batch-wait-ms", c.w.batch_max_wait_ms, "Close a batch after this long")
      ->capture_default_str();
  app->add_option("--lock-timeout-ms", c.w.lock_timeout_ms, "Lock per delivery (new groups)")
      ->capture_default_str();
  app->add_option("--retry-initial-ms", c.w.retry.initial_backoff_ms, "First retry delay")
      ->capture_default_str();
  app->add_option("--retry-multiplier", c.w.retry.multiplier, "Backoff growth per failure")
      ->capture_default_str();
  app->add_option("--retry-max-ms", c.w.retry.max_backoff_ms, "Longest retry delay")
      ->capture_default_str();
  app->add_option("--retry-jitter", c.w.retry.jitter, "Delays drawn from [d*(1-j), d]")
      ->capture_default_str();
  app->add_option("--max-deliveries", c.w.retry.max_deliveries,
                  "Deliveries before a failing record is dead-lettered")
      ->capture_default_str();
  app->add_flag("--no-breaker", c.no_breaker, "Disable the circuit breaker");
  app->add_option("--breaker-threshold", c.w.breaker.failure_threshold,
                  "Open at this failure share")
      ->capture_default_str();
  app->add_option("--breaker-window-ms", c.w.breaker.window_ms, "Failure-rate window")
      ->capture_default_str();
  app->add_option("--breaker-min-calls", c.w.breaker.min_calls, "Calls needed in the window")
      ->capture_default_str();
  app->add_option("--breaker-open-ms", c.w.breaker.open_ms, "First pause when open")
      ->capture_default_str();
  app->add_option("--rate", c.w.rate_limit_per_s, "Records a second at most (0: no limit)")
      ->capture_default_str();
  app->add_option("--drain-timeout-ms", c.w.drain_timeout_ms, "SIGTERM: wait this long")
      ->capture_default_str();
  app->add_option("--http-bind", c.http_bind, "Address of the metrics endpoint")
      ->capture_default_str();
  app->add_option("--http-port", c.http_port, "Metrics port (0: any, -1: none)")
      ->capture_default_str();
  app->add_option("--ready-file", c.ready_file,
                  "Write {\"http_port\":N} here once running (for scripts and tests)");
}

// Runs `worker` until SIGTERM/SIGINT with the HTTP endpoint; prints the final stats.
int RunWorker(Common& c, Worker& worker, const std::function<void(JsonWriter&)>& extra_json,
              const std::function<void(PrometheusWriter&)>& extra_prom,
              HttpServer::Handler extra_routes) {
  std::unique_ptr<HttpServer> http;
  if (c.http_port >= 0) {
    auto handler = [&](const HttpRequest& req) -> HttpResponse {
      HttpResponse res;
      const std::string path = req.Path();
      if (path == "/health") {
        res.content_type = "application/json";
        res.body = worker.stopping() ? "{\"status\":\"draining\"}\n" : "{\"status\":\"ok\"}\n";
      } else if (path == "/metrics") {
        PrometheusWriter p;
        worker.WritePrometheus(p);
        if (extra_prom) extra_prom(p);
        res.content_type = "text/plain; version=0.0.4; charset=utf-8";
        res.body = p.Take();
      } else if (path == "/api/v1/stats") {
        JsonWriter w;
        w.BeginObject().Key("worker");
        worker.WriteJson(w);
        if (extra_json) extra_json(w);
        w.EndObject();
        res.content_type = "application/json";
        res.body = w.Take() + "\n";
      } else if (extra_routes) {
        res = extra_routes(req);
      } else {
        res.status = 404;
      }
      return res;
    };
    http = Check(HttpServer::Start(c.http_bind, static_cast<uint16_t>(c.http_port), handler),
                 "metrics endpoint");
  }
  if (!c.ready_file.empty()) {
    WriteReadyFile(c.ready_file, "{\"http_port\":" + std::to_string(http ? http->port() : 0) +
                                     ",\"pid\":" + std::to_string(getpid()) + "}\n");
  }
  std::fprintf(stderr, "runnel-worker: %s on %s (group %s)%s\n", worker.options().topic.c_str(),
               c.broker.c_str(), worker.options().group.c_str(),
               http ? (", metrics on http://" + c.http_bind + ":" + std::to_string(http->port()) +
                       "/metrics")
                          .c_str()
                    : "");

  // Signals are blocked in every thread (see Main); this one waits for them.
  std::thread signals([&] {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGUSR1);  // sent by us to end this thread
    int sig = 0;
    sigwait(&set, &sig);
    if (sig != SIGUSR1) {
      std::fprintf(stderr, "runnel-worker: %s: draining\n", sig == SIGINT ? "SIGINT" : "SIGTERM");
      worker.Stop();
    }
  });
  Status s = worker.Run();
  pthread_kill(signals.native_handle(), SIGUSR1);
  signals.join();
  if (http) http->Stop();
  JsonWriter w;
  w.BeginObject().Key("worker");
  worker.WriteJson(w);
  if (extra_json) extra_json(w);
  w.EndObject();
  std::printf("%s\n", w.str().c_str());
  if (!s.ok()) {
    std::fprintf(stderr, "runnel-worker: %s\n", s.ToString().c_str());
    return s.code() == StatusCode::kTimeout ? 0 : 1;
  }
  return 0;
}

void Finish(Common& c, const std::string& workload) {
  if (c.group.empty()) c.group = workload;
  c.w.group = c.group;
  c.w.consumer_name = c.consumer;
  c.w.breaker.enabled = !c.no_breaker;
}

void PrintLoad(const LoadReport& r) {
  JsonWriter w;
  w.BeginObject();
  w.Field("sent", r.sent).Field("duplicates", r.duplicates).Field("errors", r.errors);
  w.Field("seconds", r.seconds);
  w.Field("records_per_s", r.seconds > 0 ? static_cast<double>(r.sent + r.duplicates) / r.seconds : 0.0);
  if (!r.first_error.empty()) w.Field("first_error", r.first_error);
  w.EndObject();
  std::printf("%s\n", w.str().c_str());
}

void WriteCouponStats(JsonWriter& w, const CouponDbStats& s) {
  w.BeginObject();
  w.Field("coupons", s.coupons).Field("initial_stock", s.initial_stock).Field("stock", s.stock);
  w.Field("issued", s.issued).Field("requests", s.requests).Field("unpublished", s.unpublished);
  w.Key("by_outcome").BeginObject();
  for (const auto& [k, n] : s.by_outcome) w.Field(k, n);
  w.EndObject().EndObject();
}

void WriteBarcodeStats(JsonWriter& w, const BarcodeDbStats& s) {
  w.BeginObject();
  w.Field("rows", s.rows).Field("transactions", s.transactions);
  w.Field("rows_inserted", s.rows_inserted).Field("duplicates_ignored", s.duplicates_ignored);
  w.Field("scans_seen", s.scans_seen);
  w.Field("transactions_per_1000_scans", s.TransactionsPerThousand());
  w.EndObject();
}

int Main(int argc, char** argv) {
  // Block the shutdown signals before any thread starts so only the signal thread sees them.
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGUSR1);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);

  CLI::App app{"runnel-worker: the built-in workloads on the Runnel worker runtime"};
  app.name("runnel-worker");
  app.require_subcommand(1);

  // ---- notify ----
  Common notify_c;
  notify_c.w.concurrency = 32;
  notify_c.w.retry.non_retryable = {"http_4xx"};
  NotifyOptions notify_o;
  CLI::App* notify = app.add_subcommand("notify", "POST notifications to a webhook");
  AddCommon(notify, notify_c);
  notify->add_option("--webhook", notify_o.webhook_url, "http://host:port/path")->required();
  notify->add_option("--timeout-ms", notify_o.timeout_ms, "Per call")->capture_default_str();
  notify->callback([&] {
    Finish(notify_c, kNotifyGroup);
    notify_c.w.topic = kNotifyTopic;
    auto handler = Check(NotifyHandler::Create(notify_o), "--webhook");
    auto conn = Connect(notify_c.broker);
    client::Admin admin(conn);
    EnsureTopic(admin, kNotifyTopic, notify_c.partitions);
    auto worker = Check(Worker::Create(conn, notify_c.w,
                                       RecordHandler([handler](const client::ConsumerRecord& r) {
                                         return handler->Handle(r);
                                       })),
                        "worker");
    Worker* wp = worker.get();
    auto seed_metrics = [&admin, handler, wp] { return NotifyMetricsJson(admin, *handler, wp->Stats()); };
    std::exit(RunWorker(
        notify_c, *worker,
        [&](JsonWriter& w) {
          w.Key("notify").BeginObject();
          w.Field("sent", handler->sent()).Field("failed_calls", handler->failed_calls());
          w.Field("sending", handler->sending()).Field("malformed", handler->malformed());
          w.EndObject();
        },
        [&](PrometheusWriter& p) {
          p.Single("runnel_notify_sent_total", "counter", "Notifications the webhook took.",
                   static_cast<double>(handler->sent()));
          p.Single("runnel_notify_failed_calls_total", "counter", "Webhook calls that failed.",
                   static_cast<double>(handler->failed_calls()));
          p.Single("runnel_notify_sending", "gauge", "Webhook calls in progress.",
                   static_cast<double>(handler->sending()));
        },
        [seed_metrics](const HttpRequest& req) {
          HttpResponse res;
          if (req.Path() == "/api/v1/notifications/metrics") {
            res.content_type = "application/json";
            res.body = seed_metrics() + "\n";
          } else {
            res.status = 404;
          }
          return res;
        }));
  });

  // ---- barcode ----
  Common barcode_c;
  barcode_c.http_port = 7073;
  barcode_c.w.concurrency = 2;
  barcode_c.w.batch_max_records = 500;
  barcode_c.w.batch_max_wait_ms = 200;
  std::string barcode_db = "barcode.db";
  bool tx_per_row = false;
  CLI::App* barcode = app.add_subcommand("barcode", "Batch-insert barcode scans into SQLite");
  AddCommon(barcode, barcode_c);
  barcode->add_option("--db", barcode_db, "SQLite database file")->capture_default_str();
  barcode->add_flag("--tx-per-row", tx_per_row, "One transaction per scan (for comparison)");
  barcode->callback([&] {
    Finish(barcode_c, kBarcodeGroup);
    barcode_c.w.topic = kBarcodeTopic;
    if (tx_per_row) barcode_c.w.batch_max_records = 1;
    auto sink = Check(BarcodeSink::Open(barcode_db), "--db");
    auto conn = Connect(barcode_c.broker);
    client::Admin admin(conn);
    EnsureTopic(admin, kBarcodeTopic, barcode_c.partitions);
    auto worker = Check(Worker::Create(conn, barcode_c.w,
                                       BatchHandler([sink](const std::vector<client::ConsumerRecord>& b) {
                                         return sink->Handle(b);
                                       })),
                        "worker");
    std::exit(RunWorker(
        barcode_c, *worker,
        [&](JsonWriter& w) {
          auto s = sink->DbStats();
          w.Key("barcode");
          if (s.ok()) {
            WriteBarcodeStats(w, *s);
          } else {
            w.BeginObject().Field("error", s.status().ToString()).EndObject();
          }
        },
        [&](PrometheusWriter& p) {
          auto s = sink->DbStats();
          if (!s.ok()) return;
          p.Single("runnel_barcode_rows", "gauge", "Rows in barcode_scans.", static_cast<double>(s->rows));
          p.Single("runnel_barcode_transactions_total", "counter", "Write transactions committed.",
                   static_cast<double>(s->transactions));
          p.Single("runnel_barcode_duplicates_ignored_total", "counter",
                   "Scans the UNIQUE index turned away.", static_cast<double>(s->duplicates_ignored));
        },
        nullptr));
  });

  // ---- coupon ----
  Common coupon_c;
  coupon_c.http_port = 7074;
  coupon_c.w.batch_max_records = 500;
  coupon_c.w.retry.initial_backoff_ms = 200;
  coupon_c.w.retry.max_backoff_ms = 5'000;
  std::string coupon_db = "coupon.db";
  std::vector<std::string> stock_specs;
  CLI::App* coupon = app.add_subcommand("coupon", "Issue first-come coupons from SQLite stock");
  AddCommon(coupon, coupon_c);
  coupon->add_option("--db", coupon_db, "SQLite database file")->capture_default_str();
  coupon->add_option("--stock", stock_specs, "Create a coupon unless it exists: COUPON=N (repeatable)");
  coupon->add_option("--session-timeout-ms", coupon_c.w.session_timeout_ms,
                     "Stream-group session timeout")
      ->capture_default_str();
  coupon->callback([&] {
    Finish(coupon_c, kCouponGroup);
    coupon_c.w.topic = kCouponTopic;
    std::vector<std::pair<std::string, int64_t>> stock;
    for (const std::string& spec : stock_specs) {
      const size_t eq = spec.find('=');
      int64_t n = -1;
      if (eq != std::string::npos) {
        const std::string v = spec.substr(eq + 1);
        auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
        if (ec != std::errc() || p != v.data() + v.size()) n = -1;
      }
      if (eq == std::string::npos || eq == 0 || n < 0)
        Die("--stock " + spec, Status::InvalidArgument("expected COUPON=N with N >= 0"));
      stock.emplace_back(spec.substr(0, eq), n);
    }
    auto conn = Connect(coupon_c.broker);
    client::Admin admin(conn);
    EnsureTopic(admin, kCouponTopic, coupon_c.partitions);
    EnsureTopic(admin, kCouponResultsTopic, 1);
    client::ProducerOptions po;
    po.linger_ms = 1;
    std::shared_ptr<client::Producer> producer = Check(client::Producer::Create(conn, po), "producer");
    auto service = Check(CouponService::Open(coupon_db, producer), "--db");
    for (const auto& [id, n] : stock) Check(service->AddCoupon(id, n), "--stock");
    auto worker = Check(Worker::Create(conn, coupon_c.w, service->Handler()), "worker");
    CouponService* sp = service.get();
    int rc = RunWorker(
        coupon_c, *worker,
        [sp](JsonWriter& w) {
          auto s = sp->DbStats();
          w.Key("coupon");
          if (s.ok()) {
            WriteCouponStats(w, *s);
          } else {
            w.BeginObject().Field("error", s.status().ToString()).EndObject();
          }
        },
        nullptr,
        [sp](const HttpRequest& req) {
          HttpResponse res;
          res.content_type = "application/json";
          const std::string prefix = "/api/v1/coupons/requests/";
          const std::string path = req.Path();
          if (path.compare(0, prefix.size(), prefix) != 0) {
            res.status = 404;
            return res;
          }
          auto o = sp->Lookup(path.substr(prefix.size()));
          if (!o.ok()) {
            res.status = 503;
            res.body = "{\"error\":\"" + o.status().ToString() + "\"}\n";
          } else if (!*o) {
            res.status = 404;
            res.body = "{\"outcome\":\"PENDING\",\"detail\":\"not decided yet (or unknown)\"}\n";
          } else {
            res.body = CouponOutcomeJson(**o, true) + "\n";
          }
          return res;
        });
    service->Close();
    producer->Close();
    std::exit(rc);
  });

  // ---- lookups ----
  std::string lookup_db = "coupon.db";
  std::string request_id;
  CLI::App* coupon_status = app.add_subcommand("coupon-status", "A coupon request's outcome");
  coupon_status->add_option("--db", lookup_db, "SQLite database file")->capture_default_str();
  coupon_status->add_option("request-id", request_id, "The request id")->required();
  coupon_status->callback([&] {
    auto service = Check(CouponService::Open(lookup_db, nullptr), "--db");
    auto o = Check(service->Lookup(request_id), "lookup");
    if (!o) {
      std::printf("{\"requestId\":\"%s\",\"outcome\":\"PENDING\"}\n", request_id.c_str());
      std::exit(3);
    }
    std::printf("%s\n", CouponOutcomeJson(*o, true).c_str());
    std::exit(0);
  });

  std::string stats_workload, stats_db;
  CLI::App* stats = app.add_subcommand("db-stats", "Counters kept in a workload's database");
  stats->add_option("workload", stats_workload, "barcode | coupon")
      ->required()
      ->check(CLI::IsMember({"barcode", "coupon"}));
  stats->add_option("--db", stats_db, "SQLite database file")->required();
  stats->callback([&] {
    JsonWriter w;
    if (stats_workload == "barcode") {
      auto sink = Check(BarcodeSink::Open(stats_db), "--db");
      WriteBarcodeStats(w, Check(sink->DbStats(), "stats"));
    } else {
      auto service = Check(CouponService::Open(stats_db, nullptr), "--db");
      WriteCouponStats(w, Check(service->DbStats(), "stats"));
    }
    std::printf("%s\n", w.str().c_str());
    std::exit(0);
  });

  // ---- load generators ----
  CLI::App* load = app.add_subcommand("load", "Generate a workload's records");
  load->require_subcommand(1);
  std::string load_broker = "127.0.0.1:7070";
  LoadOptions lo;
  int32_t load_partitions = 3;
  auto add_load = [&](CLI::App* a) {
    a->add_option("--broker,-b", load_broker, "Broker host:port")->capture_default_str();
    a->add_option("--rate", lo.rate_per_s, "Records a second (0: as fast as possible)")
        ->capture_default_str();
    a->add_option("--ramp-ms", lo.ramp_ms, "Grow the rate from 0 over this long")->capture_default_str();
    a->add_option("--producers", lo.producers, "Producers (threads)")->capture_default_str();
    a->add_option("--partitions", load_partitions, "Partitions when creating the topic")
        ->capture_default_str();
  };
  NotifyLoadShape ns;
  CLI::App* load_notify = load->add_subcommand("notify", "Notifications keyed by user");
  add_load(load_notify);
  load_notify->add_option("--count", lo.count, "Notifications")->capture_default_str();
  load_notify->add_option("--run-id", ns.run_id, "Id prefix")->capture_default_str();
  load_notify->add_option("--users", ns.users, "Distinct users")->capture_default_str();
  load_notify->add_option("--malformed-every", ns.malformed_every, "Every Nth is broken JSON (0: none)")
      ->capture_default_str();
  load_notify->add_option("--blocked-every", ns.blocked_every,
                          "Every Nth goes to a user the flaky webhook refuses (0: none)")
      ->capture_default_str();
  load_notify->callback([&] {
    auto conn = Connect(load_broker);
    client::Admin admin(conn);
    EnsureTopic(admin, kNotifyTopic, load_partitions);
    PrintLoad(RunLoad(conn, lo, [&](int64_t i) { return MakeNotification(ns, i); }));
    std::exit(0);
  });

  BarcodeLoadShape bs;
  CLI::App* load_barcode = load->add_subcommand("barcode", "Barcode scans with re-sent duplicates");
  add_load(load_barcode);
  load_barcode->add_option("--scans", bs.distinct, "Distinct scans")->capture_default_str();
  load_barcode->add_option("--duplicate-share", bs.duplicate_share, "Share re-sent")->capture_default_str();
  load_barcode->add_option("--run-id", bs.run_id, "Id prefix")->capture_default_str();
  load_barcode->add_option("--scanners", bs.scanners, "Scanners (keys)")->capture_default_str();
  load_barcode->add_option("--malformed-every", bs.malformed_every, "Every Nth scan is broken JSON")
      ->capture_default_str();
  load_barcode->callback([&] {
    auto conn = Connect(load_broker);
    client::Admin admin(conn);
    EnsureTopic(admin, kBarcodeTopic, load_partitions);
    lo.count = bs.Total();
    PrintLoad(RunLoad(conn, lo, [&](int64_t i) { return MakeScan(bs, bs.ScanNumber(i)); }));
    std::exit(0);
  });

  CouponLoadShape cs;
  CLI::App* load_coupon = load->add_subcommand("coupon", "Coupon requests, some users twice");
  add_load(load_coupon);
  load_coupon->add_option("--users", cs.users, "Distinct users")->capture_default_str();
  load_coupon->add_option("--repeat-share", cs.repeat_share, "Share of users asking again")
      ->capture_default_str();
  load_coupon->add_option("--coupons", cs.coupons, "Coupon ids c0..cN-1")->capture_default_str();
  load_coupon->add_option("--run-id", cs.run_id, "Request id prefix")->capture_default_str();
  load_coupon->add_option("--invalid-every", cs.invalid_every, "Every Nth request lacks userId")
      ->capture_default_str();
  load_coupon->callback([&] {
    auto conn = Connect(load_broker);
    client::Admin admin(conn);
    EnsureTopic(admin, kCouponTopic, load_partitions);
    lo.count = cs.Total();
    PrintLoad(RunLoad(conn, lo, [&](int64_t i) { return MakeCouponRequest(cs, i); }));
    std::exit(0);
  });

  // ---- flaky webhook ----
  FlakyWebhookOptions fo;
  std::string wh_bind = "127.0.0.1";
  int wh_port = 8089;
  std::string wh_ready;
  CLI::App* webhook = app.add_subcommand("webhook", "A flaky webhook receiver for demos and tests");
  webhook->add_option("--bind", wh_bind, "Address")->capture_default_str();
  webhook->add_option("--port", wh_port, "Port (0: any)")->capture_default_str();
  webhook->add_option("--fail-rate", fo.fail_rate, "Share answered 503")->capture_default_str();
  webhook->add_option("--hang-rate", fo.hang_rate, "Share held and dropped")->capture_default_str();
  webhook->add_option("--hang-ms", fo.hang_ms, "How long a hung call is held")->capture_default_str();
  webhook->add_option("--seed", fo.seed, "Random seed")->capture_default_str();
  webhook->add_option("--ready-file", wh_ready, "Write {\"port\":N} here once listening");
  webhook->callback([&] {
    auto hook = std::make_shared<FlakyWebhook>(fo);
    auto server = Check(HttpServer::Start(wh_bind, static_cast<uint16_t>(wh_port),
                                          [hook](const HttpRequest& r) { return hook->Handle(r); }, 4),
                        "webhook");
    if (!wh_ready.empty()) {
      WriteReadyFile(wh_ready, "{\"port\":" + std::to_string(server->port()) + "}\n");
    }
    std::fprintf(stderr, "runnel-worker webhook: http://%s:%u/ (GET /stats)\n", wh_bind.c_str(),
                 static_cast<unsigned>(server->port()));
    int sig = 0;
    sigwait(&set, &sig);
    server->Stop();
    std::printf("%s\n", hook->StatsJson().c_str());
    std::exit(0);
  });

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  return 0;
}

}  // namespace
}  // namespace runnel::worker

int main(int argc, char** argv) { return runnel::worker::Main(argc, argv); }
