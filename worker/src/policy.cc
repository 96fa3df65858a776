// Retry decisions, the circuit breaker and the rate limiter.
#include "runnel/worker/policy.h"

#include <algorithm>
#include <cmath>

namespace runnel::worker {

Status RetryPolicy::Validate() const {
  if (initial_backoff_ms < 0) return Status::InvalidArgument("retry initial backoff must be >= 0");
  if (multiplier < 1.0) return Status::InvalidArgument("retry multiplier must be >= 1");
  if (max_backoff_ms < initial_backoff_ms)
    return Status::InvalidArgument("retry max backoff must be >= the initial backoff");
  if (jitter < 0 || jitter > 1) return Status::InvalidArgument("retry jitter must be in [0, 1]");
  if (max_deliveries < 1) return Status::InvalidArgument("max deliveries must be >= 1");
  return Status::OK();
}

int64_t RetryPolicy::BaseBackoffMs(int32_t deliveries) const {
  double d = static_cast<double>(initial_backoff_ms);
  for (int32_t i = 1; i < deliveries && d < static_cast<double>(max_backoff_ms); ++i) d *= multiplier;
  return std::min<int64_t>(max_backoff_ms, static_cast<int64_t>(d));
}

int64_t RetryPolicy::BackoffMs(int32_t deliveries, double unit_random) const {
  const double base = static_cast<double>(BaseBackoffMs(deliveries));
  const double r = std::clamp(unit_random, 0.0, 1.0);
  return static_cast<int64_t>(std::llround(base * (1.0 - jitter * r)));
}

bool RetryPolicy::Retryable(std::string_view error_kind) const {
  for (const std::string& p : non_retryable) {
    if (!p.empty() && p.back() == '*') {
      if (error_kind.substr(0, p.size() - 1) == std::string_view(p).substr(0, p.size() - 1))
        return false;
    } else if (error_kind == p) {
      return false;
    }
  }
  return true;
}

namespace {
std::string WithDetail(std::string s, const std::string& detail) {
  if (!detail.empty()) s += ": " + detail;
  return s;
}
}  // namespace

Action Decide(const RetryPolicy& policy, const Outcome& outcome, int32_t deliveries,
              double unit_random) {
  switch (outcome.kind) {
    case Outcome::Kind::kAck:
      return {Action::Kind::kAck, 0, {}};
    case Outcome::Kind::kReject:
      return {Action::Kind::kReject, 0, WithDetail(outcome.error, outcome.detail)};
    case Outcome::Kind::kFail:
      break;
  }
  if (!policy.Retryable(outcome.error))
    return {Action::Kind::kReject, 0, WithDetail("non_retryable " + outcome.error, outcome.detail)};
  if (deliveries >= policy.max_deliveries) {
    return {Action::Kind::kReject, 0,
            WithDetail("retries_exhausted after " + std::to_string(deliveries) +
                           " deliveries: " + outcome.error,
                       outcome.detail)};
  }
  int64_t delay = policy.BackoffMs(deliveries, unit_random);
  if (outcome.retry_after_ms > delay) delay = std::min(outcome.retry_after_ms, policy.max_backoff_ms);
  return {Action::Kind::kNack, delay, {}};
}

// ---- circuit breaker --------------------------------------------------------------------------

Status BreakerOptions::Validate() const {
  if (window_ms < 10) return Status::InvalidArgument("breaker window must be >= 10 ms");
  if (failure_threshold <= 0 || failure_threshold > 1)
    return Status::InvalidArgument("breaker failure threshold must be in (0, 1]");
  if (min_calls < 1) return Status::InvalidArgument("breaker min calls must be >= 1");
  if (open_ms < 1 || max_open_ms < open_ms)
    return Status::InvalidArgument("breaker open time must be >= 1 ms and <= its maximum");
  if (half_open_probes < 1) return Status::InvalidArgument("breaker probes must be >= 1");
  return Status::OK();
}

CircuitBreaker::CircuitBreaker(BreakerOptions options)
    : options_(std::move(options)), buckets_(10) {
  bucket_ms_ = std::max<int64_t>(1, options_.window_ms / static_cast<int64_t>(buckets_.size()));
  current_open_ms_ = options_.open_ms;
}

int64_t CircuitBreaker::Permits(int64_t now_ms) {
  if (!options_.enabled) return -1;
  std::lock_guard lk(mu_);
  Transition(now_ms);
  switch (state_) {
    case State::kClosed: return -1;
    case State::kOpen: return 0;
    case State::kHalfOpen: return probes_left_;
  }
  return -1;
}

void CircuitBreaker::Took(int64_t n) {
  if (!options_.enabled || n <= 0) return;
  std::lock_guard lk(mu_);
  if (state_ == State::kHalfOpen) probes_left_ = std::max<int64_t>(0, probes_left_ - n);
}

void CircuitBreaker::Record(bool success, int64_t now_ms) {
  if (!options_.enabled) return;
  std::lock_guard lk(mu_);
  Transition(now_ms);
  if (state_ == State::kHalfOpen) {
    ++probe_calls_;
    if (!success) ++probe_failures_;
    const double rate = static_cast<double>(probe_failures_) / static_cast<double>(probe_calls_);
    if (probe_calls_ >= options_.half_open_probes || rate >= options_.failure_threshold) {
      if (rate >= options_.failure_threshold) {
        current_open_ms_ = std::min(options_.max_open_ms, current_open_ms_ * 2);
        Open(now_ms);
      } else {
        state_ = State::kClosed;
        current_open_ms_ = options_.open_ms;
        for (Bucket& b : buckets_) b = Bucket{};
      }
    }
    return;
  }
  if (state_ == State::kOpen) return;  // stragglers that started before the breaker opened

  const int64_t slot_start = now_ms - now_ms % bucket_ms_;
  Bucket& b = buckets_[static_cast<size_t>((now_ms / bucket_ms_) % static_cast<int64_t>(buckets_.size()))];
  if (b.start_ms != slot_start) b = Bucket{slot_start, 0, 0};
  ++b.calls;
  if (!success) ++b.failures;
  int64_t calls = 0, failures = 0;
  for (const Bucket& x : buckets_) {
    if (x.start_ms < 0 || x.start_ms <= now_ms - options_.window_ms) continue;
    calls += x.calls;
    failures += x.failures;
  }
  if (calls >= options_.min_calls &&
      static_cast<double>(failures) >= options_.failure_threshold * static_cast<double>(calls)) {
    Open(now_ms);
  }
}

void CircuitBreaker::Open(int64_t now_ms) {
  state_ = State::kOpen;
  open_until_ms_ = now_ms + current_open_ms_;
  ++opens_;
  for (Bucket& b : buckets_) b = Bucket{};
}

void CircuitBreaker::Transition(int64_t now_ms) {
  if (state_ == State::kOpen && now_ms >= open_until_ms_) {
    state_ = State::kHalfOpen;
    probes_left_ = options_.half_open_probes;
    probe_calls_ = 0;
    probe_failures_ = 0;
  }
}

CircuitBreaker::State CircuitBreaker::state(int64_t now_ms) {
  std::lock_guard lk(mu_);
  Transition(now_ms);
  return state_;
}

int64_t CircuitBreaker::OpenUntilMs() const {
  std::lock_guard lk(mu_);
  return state_ == State::kOpen ? open_until_ms_ : 0;
}

int64_t CircuitBreaker::opens() const {
  std::lock_guard lk(mu_);
  return opens_;
}

std::string_view BreakerStateName(CircuitBreaker::State s) {
  switch (s) {
    case CircuitBreaker::State::kClosed: return "closed";
    case CircuitBreaker::State::kOpen: return "open";
    case CircuitBreaker::State::kHalfOpen: return "half_open";
  }
  return "?";
}

// ---- rate limit --------------------------------------------------------------------------------

RateLimiter::RateLimiter(double rate_per_s, double burst)
    : rate_(rate_per_s), burst_(std::max(1.0, burst)), tokens_(std::max(1.0, burst)) {}

void RateLimiter::Refill(int64_t now_ms) {
  if (last_ms_ >= 0 && now_ms > last_ms_)
    tokens_ = std::min(burst_, tokens_ + rate_ * static_cast<double>(now_ms - last_ms_) / 1000.0);
  if (now_ms > last_ms_) last_ms_ = now_ms;
}

int64_t RateLimiter::TryTake(int64_t want, int64_t now_ms) {
  if (!enabled()) return want;
  std::lock_guard lk(mu_);
  Refill(now_ms);
  const int64_t n = std::min<int64_t>(want, static_cast<int64_t>(std::floor(tokens_)));
  if (n > 0) tokens_ -= static_cast<double>(n);
  return std::max<int64_t>(0, n);
}

void RateLimiter::Give(int64_t n) {
  if (!enabled() || n <= 0) return;
  std::lock_guard lk(mu_);
  tokens_ = std::min(burst_, tokens_ + static_cast<double>(n));
}

int64_t RateLimiter::WaitMs(int64_t now_ms) {
  if (!enabled()) return 0;
  std::lock_guard lk(mu_);
  Refill(now_ms);
  if (tokens_ >= 1.0) return 0;
  return static_cast<int64_t>(std::ceil((1.0 - tokens_) * 1000.0 / rate_));
}

}  // namespace runnel::worker
