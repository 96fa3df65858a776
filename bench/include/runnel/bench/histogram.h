// A latency histogram with a fixed relative error, in the manner of HdrHistogram: values below
// 2^kPrecisionBits are counted exactly; above, every power-of-two range is split into
// 2^(kPrecisionBits-1) equal buckets. A reported percentile is the middle of its bucket, so it is
// within 2^-kPrecisionBits (0.1%) of a value that was recorded. Values are nanoseconds, from 0 to
// 2^kMaxBits - 1 (about 73 minutes); larger values are counted in the top bucket and still set
// max(). Not thread-safe: one per thread, then Merge.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace runnel::bench {

class LatencyHistogram {
 public:
  static constexpr int kPrecisionBits = 10;
  static constexpr int kMaxBits = 42;

  LatencyHistogram();

  void Record(int64_t value, uint64_t count = 1);
  void Merge(const LatencyHistogram& other);
  void Reset();

  uint64_t count() const { return count_; }
  int64_t min() const { return count_ ? min_ : 0; }
  int64_t max() const { return count_ ? max_ : 0; }
  double Mean() const;
  // q in [0, 100]. 0 gives min(), 100 gives max(); an empty histogram gives 0.
  int64_t Percentile(double q) const;

  // Bucket arithmetic, exposed for tests.
  static size_t IndexOf(int64_t value);
  static int64_t LowestOf(size_t index);
  static int64_t WidthOf(size_t index);
  static size_t BucketCount();

 private:
  std::vector<uint64_t> counts_;
  uint64_t count_ = 0;
  int64_t min_ = 0;
  int64_t max_ = 0;
  long double sum_ = 0;
};

}  // namespace runnel::bench
