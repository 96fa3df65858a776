#include "runnel/bench/histogram.h"

#include <algorithm>
#include <bit>
#include <cmath>

namespace runnel::bench {

namespace {
constexpr int64_t kExact = int64_t{1} << LatencyHistogram::kPrecisionBits;  // counted exactly
constexpr int64_t kHalf = kExact / 2;  // buckets per power of two above kExact
constexpr int64_t kLargest = (int64_t{1} << LatencyHistogram::kMaxBits) - 1;
}  // namespace

LatencyHistogram::LatencyHistogram() : counts_(BucketCount(), 0) {}

size_t LatencyHistogram::BucketCount() { return IndexOf(kLargest) + 1; }

size_t LatencyHistogram::IndexOf(int64_t value) {
  value = std::clamp<int64_t>(value, 0, kLargest);
  if (value < kExact) return static_cast<size_t>(value);
  // value has bit width kPrecisionBits + shift; its top kPrecisionBits bits pick the bucket.
  const int shift = std::bit_width(static_cast<uint64_t>(value)) - kPrecisionBits;
  const int64_t top = value >> shift;  // in [kHalf, kExact)
  return static_cast<size_t>(kExact + (shift - 1) * kHalf + (top - kHalf));
}

int64_t LatencyHistogram::LowestOf(size_t index) {
  const auto i = static_cast<int64_t>(index);
  if (i < kExact) return i;
  const int64_t shift = (i - kExact) / kHalf + 1;
  const int64_t top = (i - kExact) % kHalf + kHalf;
  return top << shift;
}

int64_t LatencyHistogram::WidthOf(size_t index) {
  const auto i = static_cast<int64_t>(index);
  if (i < kExact) return 1;
  return int64_t{1} << ((i - kExact) / kHalf + 1);
}

void LatencyHistogram::Record(int64_t value, uint64_t count) {
  if (count == 0) return;
  value = std::max<int64_t>(value, 0);
  counts_[IndexOf(value)] += count;
  if (count_ == 0 || value < min_) min_ = value;
  if (count_ == 0 || value > max_) max_ = value;
  count_ += count;
  sum_ += static_cast<long double>(value) * count;
}

void LatencyHistogram::Merge(const LatencyHistogram& other) {
  if (other.count_ == 0) return;
  for (size_t i = 0; i < counts_.size(); ++i) counts_[i] += other.counts_[i];
  if (count_ == 0 || other.min_ < min_) min_ = other.min_;
  if (count_ == 0 || other.max_ > max_) max_ = other.max_;
  count_ += other.count_;
  sum_ += other.sum_;
}

void LatencyHistogram::Reset() {
  std::fill(counts_.begin(), counts_.end(), 0);
  count_ = 0;
  min_ = max_ = 0;
  sum_ = 0;
}

double LatencyHistogram::Mean() const {
  return count_ ? static_cast<double>(sum_ / static_cast<long double>(count_)) : 0.0;
}

int64_t LatencyHistogram::Percentile(double q) const {
  if (count_ == 0) return 0;
  if (q <= 0) return min_;
  if (q >= 100) return max_;
  // The rank of the q-th percentile, 1-based: the smallest value with at least q% at or below.
  const auto rank = std::max<uint64_t>(
      1, static_cast<uint64_t>(std::ceil(q / 100.0 * static_cast<double>(count_))));
  uint64_t seen = 0;
  for (size_t i = 0; i < counts_.size(); ++i) {
    seen += counts_[i];
    if (seen >= rank) {
      const int64_t mid = LowestOf(i) + (WidthOf(i) - 1) / 2;
      return std::clamp(mid, min_, max_);
    }
  }
  return max_;
}

}  // namespace runnel::bench
