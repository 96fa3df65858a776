// The real drivers, each through the same runner: Runnel in-process and over TCP (a runneld the
// driver starts), Redis Streams against a redis-server the driver starts in a temp dir, Kafka
// against librdkafka's mock cluster; and the runnel-bench program's output.
#include <doctest/doctest.h>

#include "runnel/bench/report.h"
#include "runnel/bench/runner.h"
#include "runnel/broker/launch.h"
#include "runnel/common/json.h"
#include "runnel/testing/temp_dir.h"

namespace runnel::bench {
namespace {

struct Target {
  testing::TempDir dir;
  std::unique_ptr<Driver> driver;
  explicit Target(const std::string& name) {
    TargetOptions o;
    o.scratch_dir = dir.path();
    o.runneld = RUNNEL_RUNNELD;
    auto d = MakeDriver(name, o);
    REQUIRE_MESSAGE(d.ok(), d.status().ToString());
    driver = std::move(d).value();
  }
};

WorkloadSpec Small(WorkloadKind kind) {
  WorkloadSpec spec;
  spec.kind = kind;
  spec.count = 2'000;
  spec.warmup_s = 0;
  spec.partitions = 4;
  spec.producers = 2;
  spec.consumers = 2;
  spec.poll_max = 200;
  return spec;
}

RunResult Run(Driver& d, const WorkloadSpec& spec) {
  auto r = RunWorkload(d, spec);
  REQUIRE_MESSAGE(r.ok(), r.status().ToString());
  INFO(d.Name() << " " << Name(spec.kind) << ": " << r->first_error);
  CHECK(r->errors == 0);
  return std::move(r).value();
}

// The checks every target must pass, workload by workload.
// `nacks`: the target supports nacks and delivers exactly once here (Runnel, Redis); Kafka does
// neither.
void CheckAllWorkloads(Driver& d, bool nacks) {
  SUBCASE("produce") {
    auto spec = Small(WorkloadKind::kProduce);
    spec.keys = KeyKind::kHot;
    const RunResult r = Run(d, spec);
    CHECK(r.messages == 2'000);
    CHECK(r.sent == 2'000);
    CHECK(r.latency.count() == 2'000);
    CHECK(r.messages_per_s > 0);
  }
  SUBCASE("consume: every backlog message arrives once") {
    auto spec = Small(WorkloadKind::kConsume);
    spec.payload = PayloadKind::kEvent;
    const RunResult r = Run(d, spec);
    CHECK(r.sent == 2'000);
    if (nacks) {
      CHECK(r.received == 2'000);
      CHECK(r.messages == 2'000);
    } else {
      // Kafka (no nacks) is at-least-once with auto-commit: a consumer-group rebalance on a
      // loaded machine re-reads from the last commit, so a few hundred may arrive twice.
      CHECK(r.received >= 2'000);
      CHECK(r.messages >= 2'000);
    }
  }
  SUBCASE("e2e: at a fixed rate, with warm-up") {
    auto spec = Small(WorkloadKind::kE2e);
    spec.count = 1'000;
    spec.rate = 2'000;
    spec.warmup_s = 0.2;
    const RunResult r = Run(d, spec);
    CHECK(r.received == r.sent);
    CHECK(r.sent >= 1'300);  // the warm-up's 400 plus the 1,000 measured, give or take rounding
    CHECK(r.messages == 1'000);
    CHECK(r.latency.count() == 1'000);
    CHECK(r.latency.min() > 0);
  }
  SUBCASE("queue: per-message acks, a share nacked and redelivered") {
    auto spec = Small(WorkloadKind::kQueue);
    if (nacks) {
      spec.nack_share = 0.1;
      spec.retry_delay_ms = 50;
    }
    const RunResult r = Run(d, spec);
    if (nacks) {
      CHECK(r.acked == 2'000);
    } else {
      // Kafka commits offsets, not messages: after a rebalance (a coordinator request that
      // timed out on a loaded machine) the uncommitted tail is read and acked again.
      CHECK(r.acked >= 2'000);
    }
    if (nacks) {
      CHECK(r.nacked > 100);
      CHECK(r.nacked < 320);
      CHECK(r.redelivered == r.nacked);
      CHECK(r.received == 2'000 + r.nacked);
    }
  }
}

}  // namespace

TEST_CASE("driver runnel-embedded") {
  Target t("runnel-embedded");
  CheckAllWorkloads(*t.driver, true);
}

TEST_CASE("driver runnel (runneld over TCP)") {
  Target t("runnel");
  CheckAllWorkloads(*t.driver, true);
}

TEST_CASE("driver redis: a redis-server started with appendfsync always") {
  Target t("redis:always");
  CHECK(t.driver->Settings(Small(WorkloadKind::kProduce)).find("appendfsync always") !=
        std::string::npos);
  CheckAllWorkloads(*t.driver, true);
}

TEST_CASE("driver redis: the fsync policy follows the ack mode unless named") {
  Target t("redis");
  auto spec = Small(WorkloadKind::kProduce);
  spec.acks = AckMode::kWritten;
  CHECK(t.driver->Settings(spec).find("appendfsync everysec") != std::string::npos);
  spec.acks = AckMode::kDurable;
  CHECK(t.driver->Settings(spec).find("appendfsync always") != std::string::npos);
  TargetOptions o;
  CHECK(MakeDriver("redis:sometimes", o).status().IsInvalidArgument());
  o.redis_server = "/nonexistent/redis-server";
  CHECK(MakeDriver("redis", o).status().ToString().find("--redis-server") != std::string::npos);
}

TEST_CASE("driver kafka against librdkafka's mock cluster") {
  Target t("kafka-mock");
  CHECK(t.driver->Settings(Small(WorkloadKind::kProduce)).find("acks=all") != std::string::npos);
  CheckAllWorkloads(*t.driver, false);
}

TEST_CASE("driver kafka: no nacks, and a real broker must be named") {
  Target t("kafka-mock");
  auto spec = Small(WorkloadKind::kQueue);
  spec.nack_share = 0.1;
  auto r = RunWorkload(*t.driver, spec);
  REQUIRE_FALSE(r.ok());
  CHECK(r.status().ToString().find("nack") != std::string::npos);
  CHECK(MakeDriver("kafka", TargetOptions{}).status().ToString().find("--kafka") !=
        std::string::npos);
  CHECK(MakeDriver("rabbitmq", TargetOptions{}).status().IsInvalidArgument());
}

TEST_CASE("runnel-bench: run --json prints the documented schema; compare writes an SVG") {
  testing::TempDir dir;
  auto out = broker::RunProcess({RUNNEL_BENCH, "run", "produce", "--target", "runnel-embedded",
                                 "--count", "3000", "--warmup", "0", "--dir", dir.path(), "--json"});
  REQUIRE_MESSAGE(out.exit_code == 0, out.err);
  auto doc = ParseJson(out.out);
  REQUIRE_MESSAGE(doc.ok(), out.out);
  CHECK(doc->Str("tool") == "runnel-bench");
  REQUIRE(doc->Find("runs"));
  REQUIRE(doc->Find("runs")->array.size() == 1);
  const JsonValue& run = doc->Find("runs")->array[0];
  CHECK(run.Str("target") == "runnel-embedded");
  CHECK(run.Int("messages") == 3'000);
  CHECK(run.Find("latency_ms")->Double("p99") > 0);
  CHECK(doc->Find("summary") == nullptr);

  const std::string svg = dir.Sub("chart.svg");
  out = broker::RunProcess({RUNNEL_BENCH, "compare", "consume", "--targets",
                            "runnel-embedded,redis:everysec", "--repeat", "1", "--count", "2000",
                            "--dir", dir.path(), "--svg", svg, "--json-out", dir.Sub("c.json")});
  REQUIRE_MESSAGE(out.exit_code == 0, out.err);
  CHECK(out.out.find("runnel-embedded / redis:everysec: throughput") != std::string::npos);
  CHECK(broker::ReadTextFile(svg).starts_with("<svg"));
  auto cdoc = ParseJson(broker::ReadTextFile(dir.Sub("c.json")));
  REQUIRE(cdoc.ok());
  CHECK(cdoc->Find("summary")->array.size() == 2);

  out = broker::RunProcess({RUNNEL_BENCH, "run", "e2e", "--target", "runnel-embedded"});
  CHECK(out.exit_code == 1);
  CHECK(out.err.find("--rate") != std::string::npos);
  out = broker::RunProcess({RUNNEL_BENCH, "run", "produce", "--target", "nats"});
  CHECK(out.exit_code == 1);
  CHECK(out.err.find("unknown target 'nats'") != std::string::npos);
}

}  // namespace runnel::bench
