// runnel-bench: one workload (produce, consume, e2e, queue) against Runnel, Redis Streams or
// Kafka, measured by the same code. `run` measures once; `compare` runs every target back to back,
// repeated, and reports medians, ratios and an SVG chart.
#include <CLI/CLI.hpp>

#include <cstdio>
#include <fstream>
#include <sstream>

#include "runnel/bench/report.h"
#include "runnel/bench/runner.h"

namespace {

using namespace runnel;
using namespace runnel::bench;

struct Flags {
  std::string workload = "produce";
  std::string payload = "random";
  std::string keys = "none";
  std::string acks = "durable";
  std::string target = "runnel";
  std::string targets = "runnel,redis";
  int repeat = 3;
  std::string svg;
  std::string json_out;
  bool json = false;
};

void AddWorkloadOptions(CLI::App* app, Flags& f, WorkloadSpec& spec, TargetOptions& to) {
  app->add_option("workload", f.workload, "produce | consume | e2e | queue")->capture_default_str();
  app->add_option("--size", spec.message_bytes, "Message size in bytes (>= 48)")->capture_default_str();
  app->add_option("--payload", f.payload, "random (incompressible) | event (JSON like the seeds')")
      ->capture_default_str();
  app->add_option("--keys", f.keys, "none | random | hot:N")->capture_default_str();
  app->add_option("--partitions", spec.partitions, "Partitions (Redis: one stream each)")
      ->capture_default_str();
  app->add_option("--producers", spec.producers, "Producer threads, one connection each")
      ->capture_default_str();
  app->add_option("--consumers", spec.consumers, "Consumer threads, one connection each")
      ->capture_default_str();
  app->add_option("--rate", spec.rate, "Messages/s over all producers; 0 = as fast as possible")
      ->capture_default_str();
  app->add_option("--duration", spec.duration_s, "Seconds to measure (without --count)")
      ->capture_default_str();
  app->add_option("--count", spec.count,
                  "Messages to measure; consume and backlog queue runs default to 1000000")
      ->capture_default_str();
  app->add_option("--warmup", spec.warmup_s, "Seconds sent before measuring")->capture_default_str();
  app->add_option("--acks", f.acks, "none | written | durable (fsync before ack)")
      ->capture_default_str();
  app->add_option("--nack-share", spec.nack_share, "queue: share of first deliveries nacked")
      ->capture_default_str();
  app->add_option("--retry-delay-ms", spec.retry_delay_ms, "queue: redelivery delay after a nack")
      ->capture_default_str();
  app->add_option("--linger-ms", spec.linger_ms,
                  "Producer linger (Runnel, Kafka); -1: 0 with --rate, else 2")
      ->capture_default_str();
  app->add_option("--batch-bytes", spec.batch_bytes, "Producer batch size (Runnel, Kafka)")
      ->capture_default_str();
  app->add_option("--poll-max", spec.poll_max, "Messages per consumer poll")->capture_default_str();
  app->add_option("--drain-timeout", spec.drain_timeout_s,
                  "Seconds after the last send (or backlog) before missing messages count as lost")
      ->capture_default_str();
  app->add_option("--seed", spec.seed, "Payload and key seed")->capture_default_str();
  app->add_option("--dir", to.scratch_dir, "Scratch directory for servers the harness starts")
      ->capture_default_str();
  app->add_option("--runneld", to.runneld, "runneld binary")->capture_default_str();
  app->add_option("--broker", to.broker, "host:port of a running runneld (target runnel)");
  app->add_option("--redis-server", to.redis_server, "redis-server binary")->capture_default_str();
  app->add_option("--redis", to.redis_url, "redis://host:port of a running Redis (target redis)");
  app->add_option("--kafka", to.kafka, "Bootstrap servers of a running Kafka (target kafka)");
  app->add_flag("--kafka-assign", to.kafka_assign,
                "Kafka consumers assign partitions instead of joining a group");
  app->add_flag("--json", f.json, "Print one JSON document instead of tables");
  app->add_option("--json-out", f.json_out, "Also write the JSON document to this file");
}

Status BuildSpec(const Flags& f, WorkloadSpec* spec) {
  auto kind = ParseWorkloadKind(f.workload);
  if (!kind.ok()) return kind.status();
  spec->kind = *kind;
  auto payload = ParsePayloadKind(f.payload);
  if (!payload.ok()) return payload.status();
  spec->payload = *payload;
  auto acks = ParseAckMode(f.acks);
  if (!acks.ok()) return acks.status();
  spec->acks = *acks;
  if (Status s = ParseKeys(f.keys, spec); !s.ok()) return s;
  ResolveDefaults(spec);
  return Validate(*spec);
}

std::vector<std::string> Split(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream in(s);
  for (std::string item; std::getline(in, item, ',');)
    if (!item.empty()) out.push_back(item);
  return out;
}

int Fail(const Status& s) {
  std::fprintf(stderr, "runnel-bench: %s\n", s.ToString().c_str());
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"runnel-bench: the same workload against Runnel, Redis Streams and Kafka"};
  app.require_subcommand(1);
  Flags f;
  WorkloadSpec spec;
  TargetOptions to;
  to.runneld = RUNNEL_RUNNELD;
  auto* run = app.add_subcommand("run", "Measure one workload against one target once");
  AddWorkloadOptions(run, f, spec, to);
  run->add_option("--target", f.target,
                  "runnel | runnel-embedded | redis[:always|:everysec|:no] | kafka | kafka-mock")
      ->capture_default_str();
  auto* compare = app.add_subcommand(
      "compare", "Run one workload against several targets back to back, repeated; medians, ratios, SVG");
  AddWorkloadOptions(compare, f, spec, to);
  compare->add_option("--targets", f.targets, "Comma-separated targets; ratios are to the first")
      ->capture_default_str();
  compare->add_option("--repeat", f.repeat, "Runs per target (>= 3 for a median)")
      ->check(CLI::Range(1, 100))
      ->capture_default_str();
  compare->add_option("--svg", f.svg, "Write the chart here");
  CLI11_PARSE(app, argc, argv);

  if (Status s = BuildSpec(f, &spec); !s.ok()) return Fail(s);
  const bool comparing = compare->parsed();
  const std::vector<std::string> targets = comparing ? Split(f.targets) : std::vector{f.target};
  if (targets.empty()) return Fail(Status::InvalidArgument("--targets is empty"));
  std::vector<std::unique_ptr<Driver>> drivers;
  for (const auto& t : targets) {
    auto d = MakeDriver(t, to);
    if (!d.ok()) return Fail(d.status());
    drivers.push_back(std::move(d).value());
  }

  // Rounds of every target in turn, so drift on a shared machine spreads over all of them.
  std::vector<RunResult> results;
  const int rounds = comparing ? f.repeat : 1;
  for (int round = 0; round < rounds; ++round) {
    for (auto& d : drivers) {
      if (!f.json) {
        std::fprintf(stderr, "[%d/%d] %s %s ...\n", round + 1, rounds, d->Name().c_str(),
                     std::string(Name(spec.kind)).c_str());
      }
      auto r = RunWorkload(*d, spec);
      if (!r.ok()) return Fail(Status::IOError(d->Name() + ": " + r.status().ToString()));
      results.push_back(std::move(r).value());
    }
  }
  const auto summary = Summarize(results);
  const std::string json = ToJson(spec, results, comparing ? &summary : nullptr);
  if (f.json) {
    std::printf("%s\n", json.c_str());
  } else {
    std::printf("%s", FormatRuns(results).c_str());
    if (comparing) std::printf("\n%s", FormatSummary(summary).c_str());
    else std::printf("  %s: %s\n", results[0].target.c_str(), results[0].settings.c_str());
  }
  if (!f.json_out.empty()) std::ofstream(f.json_out) << json << "\n";
  if (!f.svg.empty()) {
    std::ofstream(f.svg) << RenderSvg(spec, summary);
    if (!f.json) std::printf("chart: %s\n", f.svg.c_str());
  }
  int64_t errors = 0;
  for (const auto& r : results) errors += r.errors;
  return errors > 0 ? 2 : 0;
}
