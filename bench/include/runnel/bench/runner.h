// Runs one workload against one driver and measures it. Every target goes through this code, with
// one clock (steady_clock) and one histogram type, so their numbers compare.
#pragma once

#include <cstdint>
#include <string>

#include "runnel/bench/driver.h"
#include "runnel/bench/histogram.h"
#include "runnel/bench/workload.h"

namespace runnel::bench {

struct RunResult {
  std::string target;
  std::string settings;
  WorkloadSpec spec;
  // What the latency measures: "publish" (intended send -> acknowledgement), "end_to_end"
  // (intended send -> receipt, or -> ack confirmed in a queue run with a rate), "settle" (receipt
  // -> ack confirmed, backlog queue runs) or "none" (consume).
  std::string latency_kind;
  double seconds = 0;        // the measured window
  int64_t messages = 0;      // messages counted in the window
  double messages_per_s = 0;
  double mb_per_s = 0;       // payload bytes only (keys and headers are not counted)
  LatencyHistogram latency;  // nanoseconds
  int64_t errors = 0;        // failed sends, polls and acks, and messages never received
  std::string first_error;
  int64_t sent = 0;          // including warm-up and backlog
  int64_t received = 0;      // deliveries, redeliveries included
  int64_t acked = 0;         // queue: acks
  int64_t nacked = 0;
  int64_t redelivered = 0;
};

// Prepare -> run -> Finish; a failure to set up (server, topic) is returned as the Status, errors
// while running are counted in the result.
Result<RunResult> RunWorkload(Driver& driver, const WorkloadSpec& spec);

}  // namespace runnel::bench
