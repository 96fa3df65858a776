// What runnel-bench prints: a table row per run, the medians of repeated runs with the ratios
// between targets, one JSON document, and an SVG chart (throughput bars and latency percentile
// curves) that a browser opens.
#pragma once

#include <string>
#include <vector>

#include "runnel/bench/runner.h"

namespace runnel::bench {

struct LatencyMs {
  double min = 0, p50 = 0, p95 = 0, p99 = 0, p999 = 0, max = 0, mean = 0;
};
LatencyMs Latency(const LatencyHistogram& h);

// The runs of one target, and their medians.
struct TargetSummary {
  std::string target;
  std::string settings;
  std::vector<const RunResult*> runs;
  double median_messages_per_s = 0, min_messages_per_s = 0, max_messages_per_s = 0;
  double median_mb_per_s = 0;
  LatencyMs median_latency;  // each percentile's median over the runs
  int64_t errors = 0;
  const RunResult* median_run = nullptr;  // the run with the median throughput (for the curves)
};

// Groups by target, in order of first appearance. The result points into `runs`.
std::vector<TargetSummary> Summarize(const std::vector<RunResult>& runs);

std::string FormatRuns(const std::vector<RunResult>& runs);
// Medians per target and, for every later target, first ÷ that target.
std::string FormatSummary(const std::vector<TargetSummary>& summary);
// {"tool","version","workload":{...},"runs":[...],"summary":[...]}; summary only when given.
std::string ToJson(const WorkloadSpec& spec, const std::vector<RunResult>& runs,
                   const std::vector<TargetSummary>* summary);
std::string RenderSvg(const WorkloadSpec& spec, const std::vector<TargetSummary>& summary);

}  // namespace runnel::bench
