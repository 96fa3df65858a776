// Load generation for the workloads: N records from several producers at a target rate with an
// optional linear ramp (seed 003's "0 -> 2000 users over 60 s" shape).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "runnel/client/connection.h"
#include "runnel/client/producer.h"

namespace runnel::worker {

struct LoadOptions {
  int64_t count = 10'000;
  double rate_per_s = 0;  // 0: as fast as the broker takes them
  int64_t ramp_ms = 0;    // the rate grows linearly from 0 to rate_per_s over this long
  int producers = 1;      // each its own Producer (and producer id) on its own thread
  client::ProducerOptions producer;
};

struct LoadReport {
  int64_t sent = 0;        // acknowledged and stored
  int64_t duplicates = 0;  // acknowledged but dropped by the topic's dedup window
  int64_t errors = 0;      // not acknowledged
  double seconds = 0;
  std::string first_error;
};

// Sends make(i) for every i in [0, count); producer k sends the i with i % producers == k, in
// order. Waits until every record is acknowledged or failed.
LoadReport RunLoad(std::shared_ptr<client::Connection> connection, const LoadOptions& options,
                   const std::function<client::ProducerRecord(int64_t i)>& make);

// The time (ms since the start) at which record number n (0-based, of all producers) is due
// under `options`' rate and ramp. 0 when the rate is unlimited.
double LoadDueMs(const LoadOptions& options, double n);

// Runs of `distinct` items plus repeat_share * distinct repeats of recent items, spread evenly
// (a re-sent scan, a user clicking twice). RepeatRunTotal is the run's length; RepeatRunItem the
// item (0 .. distinct-1) at `position` (0 .. total-1). Originals come in order 0, 1, 2, ...
int64_t RepeatRunTotal(int64_t distinct, double repeat_share);
int64_t RepeatRunItem(int64_t distinct, double repeat_share, int64_t position);

}  // namespace runnel::worker
