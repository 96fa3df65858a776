// The system clock.
#include "runnel/common/clock.h"

#include <chrono>

namespace runnel {

int64_t WallClockMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

namespace {

class SystemClock final : public Clock {
 public:
  int64_t NowMs() const override { return WallClockMs(); }
};

}  // namespace

Clock* Clock::System() {
  static SystemClock clock;
  return &clock;
}

}  // namespace runnel
