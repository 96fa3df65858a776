// The worker's decision rules, free of threads and I/O so they can be tested with a fake clock:
// handler outcomes, the retry policy that maps them to ack / nack(delay) / reject, the circuit
// breaker that pauses fetching while a dependency is failing, and a token-bucket rate limit.
#pragma once

#include <cstdint>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "runnel/common/status.h"

namespace runnel::worker {

// What a handler says about one record (or a whole batch).
struct Outcome {
  enum class Kind {
    kAck,     // done: acknowledge
    kFail,    // failed with error `error`: the retry policy decides (retry later or dead-letter)
    kReject,  // poison or malformed input: dead-letter now with reason `error`
  };
  Kind kind = Kind::kAck;
  std::string error;             // kFail: the error kind ("http_503", "timeout", "db"); kReject: the reason
  std::string detail;            // human text appended to the dead-letter reason
  int64_t retry_after_ms = -1;   // kFail: at least this long before the retry (e.g. Retry-After)

  static Outcome Ack() { return {}; }
  static Outcome Fail(std::string kind, std::string detail = {}, int64_t retry_after_ms = -1) {
    return {Kind::kFail, std::move(kind), std::move(detail), retry_after_ms};
  }
  static Outcome Reject(std::string reason, std::string detail = {}) {
    return {Kind::kReject, std::move(reason), std::move(detail), -1};
  }
};

// Exponential backoff with jitter, a cap on deliveries, and which error kinds are worth retrying.
// A value type.
struct RetryPolicy {
  int64_t initial_backoff_ms = 1'000;  // the delay after the first failed delivery
  double multiplier = 2.0;             // each further failure multiplies the delay
  int64_t max_backoff_ms = 60'000;     // the delay never exceeds this
  double jitter = 0.2;  // the delay is drawn uniformly from [d * (1 - jitter), d]
  int32_t max_deliveries = 5;  // a retryable failure on this delivery dead-letters the record
  // Error kinds dead-lettered at once (matched exactly, or by prefix when the entry ends in '*').
  std::vector<std::string> non_retryable;

  // InvalidArgument naming the bad field.
  Status Validate() const;
  // The un-jittered delay after failed delivery number `deliveries` (1-based).
  int64_t BaseBackoffMs(int32_t deliveries) const;
  // The delay to use: BaseBackoffMs scaled by (1 - jitter * unit_random), unit_random in [0, 1).
  int64_t BackoffMs(int32_t deliveries, double unit_random) const;
  bool Retryable(std::string_view error_kind) const;
};

// What the worker does with a record.
struct Action {
  enum class Kind { kAck, kNack, kReject };
  Kind kind = Kind::kAck;
  int64_t delay_ms = 0;  // kNack
  std::string reason;    // kReject: the dead-letter reason
};

// Maps an outcome of delivery number `deliveries` to an action. Dead-letter reasons are
// "<reason>[: detail]" for rejects, "non_retryable <kind>[: detail]" and
// "retries_exhausted after N deliveries: <kind>[: detail]".
Action Decide(const RetryPolicy& policy, const Outcome& outcome, int32_t deliveries,
              double unit_random);

// ---- circuit breaker --------------------------------------------------------------------------

struct BreakerOptions {
  bool enabled = true;
  int64_t window_ms = 10'000;       // failure rate measured over this sliding window
  double failure_threshold = 0.5;   // open when failures / calls >= this ...
  int32_t min_calls = 20;           // ... over at least this many calls in the window
  int64_t open_ms = 5'000;          // first pause; doubles on each failed probe
  int64_t max_open_ms = 60'000;
  int32_t half_open_probes = 5;     // records let through to test the dependency

  Status Validate() const;
};

// Closed: everything flows. Open: fetch nothing until the pause ends. Half-open: let
// `half_open_probes` records through; if they fail as often as the threshold, open again for twice
// as long, else close. Thread-safe.
class CircuitBreaker {
 public:
  enum class State { kClosed = 0, kOpen = 1, kHalfOpen = 2 };
  explicit CircuitBreaker(BreakerOptions options);

  // How many records may be fetched now: -1 unlimited (closed or disabled), 0 while open, the
  // probes left while half-open. A grant of n is taken at once (call Took(n) for what was used).
  int64_t Permits(int64_t now_ms);
  void Took(int64_t n);
  // The result of one call that started under this breaker.
  void Record(bool success, int64_t now_ms);
  State state(int64_t now_ms);
  // When an open breaker will half-open (0 when not open).
  int64_t OpenUntilMs() const;
  int64_t opens() const;

 private:
  void Transition(int64_t now_ms);  // open -> half-open when the pause ended; mu_ held
  void Open(int64_t now_ms);        // mu_ held

  const BreakerOptions options_;
  mutable std::mutex mu_;
  State state_ = State::kClosed;
  struct Bucket {
    int64_t start_ms = -1;
    int64_t calls = 0;
    int64_t failures = 0;
  };
  std::vector<Bucket> buckets_;  // a ring of window_ms / size() slices
  int64_t bucket_ms_ = 1;
  int64_t open_until_ms_ = 0;
  int64_t current_open_ms_ = 0;
  int64_t probes_left_ = 0;     // half-open: not yet handed out
  int64_t probe_calls_ = 0;     // half-open: results seen
  int64_t probe_failures_ = 0;
  int64_t opens_ = 0;
};

std::string_view BreakerStateName(CircuitBreaker::State s);

// ---- rate limit --------------------------------------------------------------------------------

// A token bucket: `rate_per_s` tokens a second, holding at most `burst`. Thread-safe.
class RateLimiter {
 public:
  // rate_per_s <= 0 disables the limit (every request is granted at once).
  RateLimiter(double rate_per_s, double burst);
  bool enabled() const { return rate_ > 0; }
  // Takes up to `want` whole tokens now and returns how many it took (want when disabled).
  int64_t TryTake(int64_t want, int64_t now_ms);
  // Returns tokens taken but not used.
  void Give(int64_t n);
  // Milliseconds until one token is available (0 if one is now).
  int64_t WaitMs(int64_t now_ms);

 private:
  void Refill(int64_t now_ms);  // mu_ held

  const double rate_;
  const double burst_;
  std::mutex mu_;
  double tokens_;
  int64_t last_ms_ = -1;
};

}  // namespace runnel::worker
