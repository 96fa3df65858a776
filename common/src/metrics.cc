// Histogram and Prometheus text writer.
#include "runnel/common/metrics.h"

#include <algorithm>
#include <cstdio>

namespace runnel {

Histogram::Histogram(std::vector<double> upper_bounds)
    : bounds_(std::move(upper_bounds)),
      counts_(new std::atomic<uint64_t>[bounds_.size() + 1]) {
  for (size_t i = 0; i <= bounds_.size(); ++i) counts_[i].store(0);
}

void Histogram::Observe(double v) {
  if (v < 0) v = 0;
  const size_t i =
      static_cast<size_t>(std::lower_bound(bounds_.begin(), bounds_.end(), v) - bounds_.begin());
  counts_[i].fetch_add(1, std::memory_order_relaxed);
  count_.fetch_add(1, std::memory_order_relaxed);
  sum_micros_.fetch_add(static_cast<uint64_t>(v * 1e6), std::memory_order_relaxed);
}

Histogram::Snapshot Histogram::Snap() const {
  Snapshot s;
  s.bounds = bounds_;
  s.counts.resize(bounds_.size() + 1);
  for (size_t i = 0; i <= bounds_.size(); ++i) {
    s.counts[i] = counts_[i].load(std::memory_order_relaxed);
    s.count += s.counts[i];
  }
  s.sum = static_cast<double>(sum_micros_.load(std::memory_order_relaxed)) / 1e6;
  return s;
}

double Histogram::Snapshot::Quantile(double q) const {
  if (count == 0) return 0;
  const double rank = q * static_cast<double>(count);
  uint64_t seen = 0;
  for (size_t i = 0; i < counts.size(); ++i) {
    if (counts[i] == 0) continue;
    if (static_cast<double>(seen + counts[i]) >= rank) {
      const double lo = i == 0 ? 0 : bounds[i - 1];
      if (i == bounds.size()) return lo;  // +Inf bucket: its lower bound
      const double frac = (rank - static_cast<double>(seen)) / static_cast<double>(counts[i]);
      return lo + (bounds[i] - lo) * std::clamp(frac, 0.0, 1.0);
    }
    seen += counts[i];
  }
  return bounds.empty() ? 0 : bounds.back();
}

std::vector<double> LatencyBucketsMs() {
  return {0.05, 0.1, 0.25, 0.5, 1, 2, 3, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000,
          30000};
}

std::string PromLabel(std::string_view v) {
  std::string out;
  for (char c : v) {
    if (c == '\\' || c == '"') {
      out.push_back('\\');
      out.push_back(c);
    } else if (c == '\n') {
      out.append("\\n");
    } else {
      out.push_back(c);
    }
  }
  return out;
}

std::string PromNumber(double v) {
  char buf[40];
  std::snprintf(buf, sizeof buf, "%.9g", v);
  return buf;
}

void PrometheusWriter::Type(std::string_view name, std::string_view type, std::string_view help) {
  out_ += "# HELP ";
  out_ += name;
  out_ += ' ';
  out_ += help;
  out_ += "\n# TYPE ";
  out_ += name;
  out_ += ' ';
  out_ += type;
  out_ += '\n';
}

void PrometheusWriter::Sample(std::string_view name, std::string_view labels, double v) {
  out_ += name;
  if (!labels.empty()) {
    out_ += '{';
    out_ += labels;
    out_ += '}';
  }
  out_ += ' ';
  out_ += PromNumber(v);
  out_ += '\n';
}

void PrometheusWriter::Hist(std::string_view name, std::string_view labels,
                            const Histogram::Snapshot& s, double scale) {
  uint64_t cum = 0;
  const std::string sep = labels.empty() ? "" : std::string(labels) + ",";
  for (size_t i = 0; i < s.counts.size(); ++i) {
    cum += s.counts[i];
    const std::string le = i < s.bounds.size() ? PromNumber(s.bounds[i] * scale) : "+Inf";
    Sample(std::string(name) + "_bucket", sep + "le=\"" + le + "\"", static_cast<double>(cum));
  }
  Sample(std::string(name) + "_sum", labels, s.sum * scale);
  Sample(std::string(name) + "_count", labels, static_cast<double>(s.count));
}

}  // namespace runnel
