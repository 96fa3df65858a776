// What a benchmark run does, independent of the system under test: the workload kind and its
// parameters (modelled on the OpenMessaging Benchmark's), the payloads and keys it sends, and the
// fixed-rate pacing that stamps every message with its intended send time.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <random>
#include <string>
#include <string_view>

#include "runnel/common/result.h"

namespace runnel::bench {

using Clock = std::chrono::steady_clock;

enum class WorkloadKind {
  kProduce,  // producers only; latency = intended send -> acknowledgement
  kConsume,  // a backlog is written first (not timed), then consumers drain it
  kE2e,      // producers at a fixed rate and consumers at once; latency = intended send -> receipt
  kQueue,    // a work queue: each message delivered to one consumer and acked on its own, a share
             // nacked and redelivered after a delay; latency = intended send -> ack confirmed
             // (with --rate), or receipt -> ack confirmed (backlog drained)
};
enum class PayloadKind { kRandom, kEvent };
enum class KeyKind { kNone, kRandom, kHot };
enum class AckMode { kNone, kWritten, kDurable };

struct WorkloadSpec {
  WorkloadKind kind = WorkloadKind::kProduce;
  size_t message_bytes = 100;
  PayloadKind payload = PayloadKind::kRandom;
  KeyKind keys = KeyKind::kNone;
  int hot_keys = 16;
  int partitions = 8;
  int producers = 1;
  int consumers = 1;
  double rate = 0;           // messages/s over all producers; 0 = as fast as possible
  double duration_s = 10;    // used when count is 0
  int64_t count = 0;         // messages to send (after warm-up); 0 = run for duration_s
  double warmup_s = 1;       // sent but not measured (produce, e2e, queue with a rate)
  AckMode acks = AckMode::kDurable;
  double nack_share = 0;     // queue: share of first deliveries nacked
  int64_t retry_delay_ms = 100;  // queue: redelivery delay of a nacked message
  // Producer batching, passed to every driver. -1: 0 ms at a fixed rate (latency runs), 2 ms at
  // full speed.
  int64_t linger_ms = -1;
  size_t batch_bytes = 256 * 1024;
  int poll_max = 500;        // messages per consumer poll
  double drain_timeout_s = 60;  // after the last send; what has not arrived by then is lost
  uint64_t seed = 1;
};

std::string_view Name(WorkloadKind k);
std::string_view Name(PayloadKind k);
std::string_view Name(AckMode a);
std::string DescribeKeys(const WorkloadSpec& spec);  // "none", "random", "hot:16"
Result<WorkloadKind> ParseWorkloadKind(std::string_view s);
Result<PayloadKind> ParsePayloadKind(std::string_view s);
Result<AckMode> ParseAckMode(std::string_view s);
// "none", "random" or "hot:N".
Status ParseKeys(std::string_view s, WorkloadSpec* spec);
// Checks ranges and combinations; the message names the offending flag.
Status Validate(const WorkloadSpec& spec);
// Fills in what was left to the workload (linger_ms = -1).
void ResolveDefaults(WorkloadSpec* spec);

// Every payload carries its intended send time (nanoseconds since the run's epoch) as 16 hex
// digits at a fixed place: at the start of a random payload, in the "sent" field of an event.
class PayloadMaker {
 public:
  static constexpr size_t kMinBytes = 48;
  PayloadMaker(const WorkloadSpec& spec, uint64_t seed);
  std::string Make(int64_t seq, int64_t intended_ns);
  std::optional<std::string> Key();

 private:
  const WorkloadSpec spec_;
  uint64_t NextFast();

  std::mt19937_64 rng_;
  uint64_t fast_state_;
};
std::optional<int64_t> ReadStamp(PayloadKind kind, std::string_view payload);

// Hands out intended send times at a fixed rate, or the current time when the rate is 0. The
// schedule never slips: after a stall, the next messages are due at once, and their latency
// counts from when they should have been sent (no coordinated omission).
class Pacer {
 public:
  Pacer(Clock::time_point start, double rate) : start_(start), rate_(rate) {}
  // Waits until message `i` is due and returns its intended send time.
  Clock::time_point Next(int64_t i);
  Clock::time_point Intended(int64_t i) const;

 private:
  Clock::time_point start_;
  double rate_;
};

}  // namespace runnel::bench
