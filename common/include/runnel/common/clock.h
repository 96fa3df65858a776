// Wall-clock abstraction so retention and dedup windows can be tested without sleeping.
#pragma once

#include <atomic>
#include <cstdint>

namespace runnel {

// Wall-clock milliseconds since the Unix epoch, from the system clock. For code that takes no
// Clock (clients, workers, tools); what must be testable without sleeping takes a Clock.
int64_t WallClockMs();

// Thread-safe source of wall-clock milliseconds since the Unix epoch.
class Clock {
 public:
  virtual ~Clock() = default;
  virtual int64_t NowMs() const = 0;

  // The process-wide system clock; never deleted.
  static Clock* System();
};

// A clock that only moves when told to. Thread-safe.
class ManualClock final : public Clock {
 public:
  explicit ManualClock(int64_t now_ms) : now_(now_ms) {}
  int64_t NowMs() const override { return now_.load(std::memory_order_acquire); }
  void Set(int64_t now_ms) { now_.store(now_ms, std::memory_order_release); }
  void Advance(int64_t delta_ms) { now_.fetch_add(delta_ms, std::memory_order_acq_rel); }

 private:
  std::atomic<int64_t> now_;
};

}  // namespace runnel
