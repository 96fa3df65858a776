// The worker's decision rules: retry backoff and jitter, outcome -> action, the circuit breaker
// and the rate limiter, all on explicit timestamps.
#include <doctest/doctest.h>

#include "runnel/worker/policy.h"

namespace runnel::worker {

TEST_CASE("RetryPolicy: backoff grows by the multiplier and stops at the cap") {
  RetryPolicy p;
  p.initial_backoff_ms = 100;
  p.multiplier = 2;
  p.max_backoff_ms = 1'000;
  CHECK(p.BaseBackoffMs(1) == 100);
  CHECK(p.BaseBackoffMs(2) == 200);
  CHECK(p.BaseBackoffMs(3) == 400);
  CHECK(p.BaseBackoffMs(4) == 800);
  CHECK(p.BaseBackoffMs(5) == 1'000);
  CHECK(p.BaseBackoffMs(60) == 1'000);
}

TEST_CASE("RetryPolicy: jitter only shortens the delay, by at most its share") {
  RetryPolicy p;
  p.initial_backoff_ms = 1'000;
  p.jitter = 0.25;
  CHECK(p.BackoffMs(1, 0.0) == 1'000);
  CHECK(p.BackoffMs(1, 0.5) == 875);
  CHECK(p.BackoffMs(1, 0.999999) == 750);
  p.jitter = 0;
  CHECK(p.BackoffMs(1, 0.7) == 1'000);
}

TEST_CASE("RetryPolicy: invalid settings are refused with the field named") {
  RetryPolicy p;
  p.multiplier = 0.5;
  CHECK(p.Validate().message().find("multiplier") != std::string::npos);
  p = RetryPolicy{};
  p.max_deliveries = 0;
  CHECK(!p.Validate().ok());
  p = RetryPolicy{};
  p.jitter = 1.5;
  CHECK(!p.Validate().ok());
  CHECK(RetryPolicy{}.Validate().ok());
}

TEST_CASE("Decide: ack, retry with backoff, then dead-letter when deliveries run out") {
  RetryPolicy p;
  p.initial_backoff_ms = 100;
  p.jitter = 0;
  p.max_deliveries = 3;
  CHECK(Decide(p, Outcome::Ack(), 1, 0).kind == Action::Kind::kAck);

  Action a = Decide(p, Outcome::Fail("http_5xx", "HTTP 503"), 1, 0);
  CHECK(a.kind == Action::Kind::kNack);
  CHECK(a.delay_ms == 100);
  a = Decide(p, Outcome::Fail("http_5xx", "HTTP 503"), 2, 0);
  CHECK(a.delay_ms == 200);
  a = Decide(p, Outcome::Fail("http_5xx", "HTTP 503"), 3, 0);
  CHECK(a.kind == Action::Kind::kReject);
  CHECK(a.reason == "retries_exhausted after 3 deliveries: http_5xx: HTTP 503");
}

TEST_CASE("Decide: rejects and non-retryable kinds are dead-lettered at once") {
  RetryPolicy p;
  p.non_retryable = {"http_4xx", "schema_*"};
  Action a = Decide(p, Outcome::Reject("malformed", "bad JSON"), 1, 0);
  CHECK(a.kind == Action::Kind::kReject);
  CHECK(a.reason == "malformed: bad JSON");
  a = Decide(p, Outcome::Fail("http_4xx", "HTTP 422"), 1, 0);
  CHECK(a.kind == Action::Kind::kReject);
  CHECK(a.reason == "non_retryable http_4xx: HTTP 422");
  CHECK(Decide(p, Outcome::Fail("schema_v2"), 1, 0).kind == Action::Kind::kReject);
  CHECK(Decide(p, Outcome::Fail("schem"), 1, 0).kind == Action::Kind::kNack);
  CHECK(Decide(p, Outcome::Fail("http_5xx"), 1, 0).kind == Action::Kind::kNack);
}

TEST_CASE("Decide: a Retry-After longer than the backoff wins, within the cap") {
  RetryPolicy p;
  p.initial_backoff_ms = 100;
  p.max_backoff_ms = 5'000;
  p.jitter = 0;
  CHECK(Decide(p, Outcome::Fail("http_429", "", 2'000), 1, 0).delay_ms == 2'000);
  CHECK(Decide(p, Outcome::Fail("http_429", "", 60'000), 1, 0).delay_ms == 5'000);
  CHECK(Decide(p, Outcome::Fail("http_429", "", 10), 1, 0).delay_ms == 100);
}

BreakerOptions SmallBreaker() {
  BreakerOptions o;
  o.window_ms = 1'000;
  o.failure_threshold = 0.5;
  o.min_calls = 10;
  o.open_ms = 500;
  o.max_open_ms = 1'500;
  o.half_open_probes = 3;
  return o;
}

TEST_CASE("CircuitBreaker: stays closed below the threshold or the minimum calls") {
  const int64_t t = 10'000;
  CircuitBreaker few(SmallBreaker());
  for (int i = 0; i < 9; ++i) few.Record(false, t);  // 9 calls < min_calls
  CHECK(few.state(t) == CircuitBreaker::State::kClosed);
  CircuitBreaker b(SmallBreaker());
  for (int i = 0; i < 20; ++i) b.Record(true, t);
  for (int i = 0; i < 9; ++i) b.Record(false, t);  // 9 / 29 failed
  CHECK(b.state(t) == CircuitBreaker::State::kClosed);
  CHECK(b.Permits(t) == -1);
}

TEST_CASE("CircuitBreaker: opens at the failure rate, pauses, probes, and closes on success") {
  CircuitBreaker b(SmallBreaker());
  int64_t t = 10'000;
  for (int i = 0; i < 5; ++i) b.Record(true, t);
  for (int i = 0; i < 5; ++i) b.Record(false, t);  // 5 / 10 failed
  CHECK(b.state(t) == CircuitBreaker::State::kOpen);
  CHECK(b.Permits(t) == 0);
  CHECK(b.OpenUntilMs() == t + 500);
  CHECK(b.opens() == 1);

  t += 499;
  CHECK(b.Permits(t) == 0);
  t += 1;
  CHECK(b.state(t) == CircuitBreaker::State::kHalfOpen);
  CHECK(b.Permits(t) == 3);
  b.Took(2);
  CHECK(b.Permits(t) == 1);
  b.Took(1);
  CHECK(b.Permits(t) == 0);
  b.Record(true, t);
  b.Record(true, t);
  b.Record(true, t);
  CHECK(b.state(t) == CircuitBreaker::State::kClosed);
  CHECK(b.Permits(t) == -1);
}

TEST_CASE("CircuitBreaker: a failed probe reopens for twice as long, up to the maximum") {
  CircuitBreaker b(SmallBreaker());
  int64_t t = 10'000;
  for (int i = 0; i < 10; ++i) b.Record(false, t);
  CHECK(b.OpenUntilMs() == t + 500);
  t += 500;
  CHECK(b.Permits(t) == 3);
  b.Record(false, t);  // 1 / 1 failed >= threshold
  CHECK(b.state(t) == CircuitBreaker::State::kOpen);
  CHECK(b.OpenUntilMs() == t + 1'000);
  t += 1'000;
  b.Record(false, t);
  CHECK(b.OpenUntilMs() == t + 1'500);  // capped
  t += 1'500;
  b.Record(false, t);
  CHECK(b.OpenUntilMs() == t + 1'500);
  CHECK(b.opens() == 4);
}

TEST_CASE("CircuitBreaker: failures older than the window are forgotten") {
  CircuitBreaker b(SmallBreaker());
  int64_t t = 10'000;
  for (int i = 0; i < 9; ++i) b.Record(false, t);
  t += 1'500;  // past the window
  for (int i = 0; i < 9; ++i) b.Record(true, t);
  b.Record(false, t);  // 1 / 10 in the window
  CHECK(b.state(t) == CircuitBreaker::State::kClosed);
}

TEST_CASE("CircuitBreaker: disabled means always closed") {
  BreakerOptions o = SmallBreaker();
  o.enabled = false;
  CircuitBreaker b(o);
  for (int i = 0; i < 100; ++i) b.Record(false, 1'000);
  CHECK(b.Permits(1'000) == -1);
}

TEST_CASE("RateLimiter: grants the burst, then refills at the rate") {
  RateLimiter r(10, 5);  // 10/s, burst 5
  int64_t t = 1'000;
  CHECK(r.TryTake(8, t) == 5);
  CHECK(r.TryTake(1, t) == 0);
  CHECK(r.WaitMs(t) == 100);
  t += 250;  // 2.5 tokens
  CHECK(r.TryTake(5, t) == 2);
  r.Give(1);
  CHECK(r.TryTake(5, t) == 1);
  t += 10'000;
  CHECK(r.TryTake(100, t) == 5);  // never more than the burst
}

TEST_CASE("RateLimiter: a zero rate is unlimited") {
  RateLimiter r(0, 0);
  CHECK(!r.enabled());
  CHECK(r.TryTake(1'000'000, 0) == 1'000'000);
  CHECK(r.WaitMs(0) == 0);
}

}  // namespace runnel::worker
