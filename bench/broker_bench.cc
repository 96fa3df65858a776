// runnel-broker-bench: the broker issue's targets, measured over loopback against a runneld this
// program starts in a temp dir (or --broker host:port):
//   produce  durable 100-byte records, 8 partitions, one producer      (target >= 1.5M rec/s)
//   consume  a backlog of --backlog records (default 10M)              (target >= 3M rec/s)
//   e2e      produce -> consumer receives at a fixed 10,000 rec/s      (p50 <= 1 ms, p99 <= 3 ms,
//                                                                       p99.9 <= 10 ms)
//   idle RSS of runneld (<= 50 MB) and start-to-accepting time (<= 200 ms)
// Prints a table and, with --json, one JSON document.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <CLI/CLI.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <thread>

#include "runnel/bench/report.h"
#include "runnel/broker/launch.h"
#include "runnel/client/admin.h"
#include "runnel/client/consumer.h"
#include "runnel/client/producer.h"
#include "runnel/common/json.h"

namespace {

using namespace runnel;
using Clock = std::chrono::steady_clock;

double Seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

// Starts runneld in `dir`; returns it and the time from spawn to listening, in ms.
double StartRunneld(broker::RunneldProcess& server) {
  const auto t0 = Clock::now();
  if (Status s = server.Start(); !s.ok()) {
    std::fprintf(stderr, "%s\n", s.ToString().c_str());
    std::exit(1);
  }
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

// Sends `n` records of `size` bytes round-robin over the topic's partitions as fast as the
// producer takes them; returns records/s (send start -> last acknowledgement).
double Produce(std::shared_ptr<client::Connection> conn, const std::string& topic, int64_t n,
               size_t size, int partitions) {
  client::ProducerOptions po;
  auto p = client::Producer::Create(conn, po);
  if (!p.ok()) {
    std::fprintf(stderr, "producer: %s\n", p.status().ToString().c_str());
    std::exit(1);
  }
  std::atomic<int64_t> errors{0};
  const std::string value(size, 'x');
  const auto t0 = Clock::now();
  for (int64_t i = 0; i < n; ++i) {
    client::ProducerRecord r{topic, std::nullopt, value, {}, static_cast<int32_t>(i % partitions), 0};
    (*p)->Send(std::move(r), [&errors](Result<client::RecordMetadata> md) {
      if (!md.ok()) ++errors;
    });
  }
  if (Status s = (*p)->Flush(); !s.ok() || errors.load() > 0) {
    std::fprintf(stderr, "produce failed: %s, %lld errors\n", s.ToString().c_str(),
                 static_cast<long long>(errors.load()));
    std::exit(1);
  }
  return static_cast<double>(n) / Seconds(Clock::now() - t0);
}

double Consume(std::shared_ptr<client::Connection> conn, const std::string& topic, int64_t n) {
  client::ConsumerOptions co;
  co.topics = {topic};
  co.max_poll_records = 20'000;
  co.fetch_max_bytes = 32 << 20;
  co.partition_fetch_max_bytes = 8 << 20;
  auto c = client::Consumer::Create(conn, co);
  int64_t got = 0;
  const auto t0 = Clock::now();
  while (got < n) {
    auto r = (*c)->Poll(1000);
    if (!r.ok()) {
      std::fprintf(stderr, "consume: %s\n", r.status().ToString().c_str());
      std::exit(1);
    }
    got += static_cast<int64_t>(r->size());
    if (r->empty() && Seconds(Clock::now() - t0) > 120) break;
  }
  return static_cast<double>(got) / Seconds(Clock::now() - t0);
}

// Fixed-rate producer; the consumer measures now - intended send time carried in the value, so
// a stalled sender cannot hide latency (no coordinated omission).
bench::LatencyMs EndToEnd(std::shared_ptr<client::Connection> pconn,
                     std::shared_ptr<client::Connection> cconn, const std::string& topic,
                     int rate, double seconds, int partitions) {
  client::ConsumerOptions co;
  co.topics = {topic};
  co.auto_offset_reset = client::OffsetReset::kLatest;
  auto c = client::Consumer::Create(cconn, co);
  (void)(*c)->Poll(100);  // assign partitions and take the latest positions
  client::ProducerOptions po;
  po.linger_ms = 0;
  auto p = client::Producer::Create(pconn, po);
  const int64_t total = static_cast<int64_t>(rate * seconds);
  // The first 5% are warm-up (connections, page cache) and are not recorded.
  const int64_t warmup = total / 20;
  bench::LatencyHistogram lat;
  std::atomic<bool> done{false};
  const int64_t interval_ns = 1'000'000'000LL / rate;
  const auto base = Clock::now() + std::chrono::milliseconds(50);
  std::thread consumer([&] {
    int64_t got = 0;
    while (got < total) {
      auto r = (*c)->Poll(500);
      const auto now = Clock::now();
      if (!r.ok()) break;
      for (const auto& rec : *r) {
        const int64_t intended_ns = std::stoll(*rec.value);
        if (intended_ns >= warmup * interval_ns) {
          lat.Record(std::chrono::duration_cast<std::chrono::nanoseconds>(
                         now - (base + std::chrono::nanoseconds(intended_ns)))
                         .count());
        }
        ++got;
      }
      if (r->empty() && done.load() && Clock::now() - base > std::chrono::seconds(static_cast<int>(seconds) + 10))
        break;
    }
  });
  std::string pad(80, 'x');
  for (int64_t i = 0; i < total; ++i) {
    const auto intended = base + std::chrono::nanoseconds(i * interval_ns);
    std::this_thread::sleep_until(intended);
    std::string v = std::to_string(i * interval_ns);
    v.resize(100, ' ');
    (*p)->Send(client::ProducerRecord{topic, std::nullopt, std::move(v), {},
                                      static_cast<int32_t>(i % partitions), 0},
               [](Result<client::RecordMetadata>) {});
  }
  done = true;
  (void)(*p)->Flush();
  consumer.join();
  return bench::Latency(lat);
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"runnel-broker-bench: broker targets over loopback"};
  std::string runneld = RUNNEL_RUNNELD;
  std::string dir = "./bench-data/broker";
  int64_t records = 5'000'000;
  int64_t backlog = 10'000'000;
  int rate = 10'000;
  double e2e_seconds = 10;
  bool json = false;
  int settle_s = 5;
  app.add_option("--runneld", runneld, "runneld binary")->capture_default_str();
  app.add_option("--dir", dir, "Scratch directory (wiped)")->capture_default_str();
  app.add_option("--records", records, "Records for the produce run")->capture_default_str();
  app.add_option("--backlog", backlog, "Records in the consume backlog")->capture_default_str();
  app.add_option("--rate", rate, "e2e fixed rate (records/s)")->capture_default_str();
  app.add_option("--e2e-seconds", e2e_seconds, "e2e duration")->capture_default_str();
  app.add_option("--settle", settle_s, "Seconds to idle between backlog and consume")
      ->capture_default_str();
  app.add_flag("--json", json, "Print one JSON document");
  CLI11_PARSE(app, argc, argv);

  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  broker::RunneldProcess server({runneld, dir});
  const double startup_ms = StartRunneld(server);
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  const int64_t idle_rss_kib = broker::ProcessRssKiB(server.pid());
  client::TcpOptions to;
  to.port = server.port();
  auto conn = client::ConnectTcp(to);
  client::Admin admin(conn);
  for (const char* t : {"produce", "backlog", "e2e"}) {
    if (Status s = admin.CreateTopic(t, 8); !s.ok()) {
      std::fprintf(stderr, "create topic: %s\n", s.ToString().c_str());
      return 1;
    }
  }
  const double produce_rate = Produce(conn, "produce", records, 100, 8);
  // The backlog is produced by the same code; only its consumption is timed.
  (void)Produce(conn, "backlog", backlog, 100, 8);
  // Let the broker finish the background work the backlog caused (memtable flushes) so the
  // consume run measures reading, not competition for the two cores.
  std::this_thread::sleep_for(std::chrono::seconds(settle_s));
  const double consume_rate = Consume(client::ConnectTcp(to), "backlog", backlog);
  const bench::LatencyMs e2e = EndToEnd(client::ConnectTcp(to), client::ConnectTcp(to), "e2e", rate,
                                   e2e_seconds, 8);
  const int64_t loaded_rss_kib = broker::ProcessRssKiB(server.pid());
  // The broker's own fsync latency over the whole run: the floor under durable e2e latency.
  std::string fsync = "{}";
  if (auto stats = admin.Stats(); stats.ok()) {
    const size_t a = stats->find("\"fsync_p50_ms\"");
    const size_t b = stats->find('}', a);
    if (a != std::string::npos && b != std::string::npos) fsync = "{" + stats->substr(a, b - a) + "}";
  }
  server.Stop();

  if (json) {
    JsonWriter w;
    w.BeginObject();
    w.Field("produce_records_per_s", produce_rate);
    w.Field("consume_records_per_s", consume_rate);
    w.Key("e2e_ms").BeginObject();
    w.Field("rate", int64_t{rate});
    w.Field("p50", e2e.p50).Field("p99", e2e.p99).Field("p999", e2e.p999).Field("max", e2e.max);
    w.EndObject();
    w.Field("idle_rss_mb", static_cast<double>(idle_rss_kib) / 1024.0);
    w.Field("loaded_rss_mb", static_cast<double>(loaded_rss_kib) / 1024.0);
    w.Field("startup_ms", startup_ms);
    w.EndObject();
    std::string out = w.Take();
    out.insert(out.size() - 1, ",\"broker_fsync\":" + fsync);
    std::printf("%s\n", out.c_str());
  } else {
    std::printf("%-44s %14s %12s\n", "measure", "value", "target");
    std::printf("%-44s %14.0f %12s\n", "produce 100 B durable, 8 partitions (rec/s)",
                produce_rate, ">= 1500000");
    std::printf("%-44s %14.0f %12s\n", "consume backlog (rec/s)", consume_rate, ">= 3000000");
    std::printf("%-44s %14.3f %12s\n", "e2e p50 at fixed rate (ms)", e2e.p50, "<= 1");
    std::printf("%-44s %14.3f %12s\n", "e2e p99 (ms)", e2e.p99, "<= 3");
    std::printf("%-44s %14.3f %12s\n", "e2e p99.9 (ms)", e2e.p999, "<= 10");
    std::printf("%-44s %14.1f %12s\n", "idle runneld RSS (MB)", idle_rss_kib / 1024.0, "<= 50");
    std::printf("%-44s %14.1f %12s\n", "start to accepting (ms)", startup_ms, "<= 200");
    std::printf("broker fsync latency over the run: %s\n", fsync.c_str());
  }
  return 0;
}
