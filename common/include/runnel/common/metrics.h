// Metrics building blocks shared by runneld and runnel-worker: a lock-free fixed-bucket histogram
// and a writer for the Prometheus text exposition format (0.0.4).
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace runnel {

// Cumulative-bucket histogram with fixed upper bounds (Prometheus semantics).
class Histogram {
 public:
  explicit Histogram(std::vector<double> upper_bounds);
  void Observe(double v);

  struct Snapshot {
    std::vector<double> bounds;
    std::vector<uint64_t> counts;  // per bucket, not cumulative; one extra for +Inf
    uint64_t count = 0;
    double sum = 0;
    double Quantile(double q) const;  // linear within the bucket; 0 when empty
  };
  Snapshot Snap() const;

 private:
  std::vector<double> bounds_;
  std::unique_ptr<std::atomic<uint64_t>[]> counts_;
  std::atomic<uint64_t> count_{0};
  std::atomic<uint64_t> sum_micros_{0};  // sum * 1e6 (values are >= 0)
};

// Default latency buckets in milliseconds.
std::vector<double> LatencyBucketsMs();

// A label value escaped for the exposition format (backslash, quote, newline).
std::string PromLabel(std::string_view v);
// A sample value as the exposition format writes it.
std::string PromNumber(double v);

// One metric family: name, type ("counter", "gauge", "histogram") and help text.
struct PromFamily {
  const char* name;
  const char* type;
  const char* help;
};
// One labelled object (a partition, a group) with one value per family.
struct PromRow {
  std::string labels;
  std::vector<double> values;
};

// Builds an exposition document. Not thread-safe.
class PrometheusWriter {
 public:
  // Emits each family in turn, with one sample per row: family k takes rows[i].values[k].
  template <size_t N>
  void Families(const PromFamily (&families)[N], const std::vector<PromRow>& rows) {
    for (size_t k = 0; k < N; ++k) {
      Type(families[k].name, families[k].type, families[k].help);
      for (const PromRow& r : rows) Sample(families[k].name, r.labels, r.values[k]);
    }
  }
  void Type(std::string_view name, std::string_view type, std::string_view help);
  void Sample(std::string_view name, std::string_view labels, double v);
  // A one-sample family.
  void Single(std::string_view name, std::string_view type, std::string_view help, double v) {
    Type(name, type, help);
    Sample(name, {}, v);
  }
  // A histogram whose observations are multiplied by `scale` to get the exported unit.
  void Hist(std::string_view name, std::string_view labels, const Histogram::Snapshot& s,
            double scale);
  std::string Take() { return std::move(out_); }

 private:
  std::string out_;
};

}  // namespace runnel
