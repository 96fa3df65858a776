#include "runnel/bench/report.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "runnel/common/json.h"

namespace runnel::bench {
namespace {

double Median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

std::string Printf(const char* fmt, auto... args) {
  const int n = std::snprintf(nullptr, 0, fmt, args...);
  std::string out(static_cast<size_t>(std::max(n, 0)) + 1, '\0');
  std::snprintf(out.data(), out.size(), fmt, args...);
  out.pop_back();
  return out;
}

void WriteLatency(JsonWriter& w, const LatencyMs& l) {
  w.BeginObject();
  w.Field("min", l.min).Field("p50", l.p50).Field("p95", l.p95).Field("p99", l.p99);
  w.Field("p999", l.p999).Field("max", l.max).Field("mean", l.mean);
  w.EndObject();
}

std::string Escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '&': out += "&amp;"; break;
      case '"': out += "&quot;"; break;
      default: out += c;
    }
  }
  return out;
}

}  // namespace

LatencyMs Latency(const LatencyHistogram& h) {
  auto ms = [](int64_t ns) { return static_cast<double>(ns) / 1e6; };
  LatencyMs l;
  l.min = ms(h.min());
  l.p50 = ms(h.Percentile(50));
  l.p95 = ms(h.Percentile(95));
  l.p99 = ms(h.Percentile(99));
  l.p999 = ms(h.Percentile(99.9));
  l.max = ms(h.max());
  l.mean = h.Mean() / 1e6;
  return l;
}

std::vector<TargetSummary> Summarize(const std::vector<RunResult>& runs) {
  std::vector<TargetSummary> out;
  for (const auto& r : runs) {
    auto it = std::find_if(out.begin(), out.end(), [&](auto& t) { return t.target == r.target; });
    if (it == out.end()) {
      out.push_back({});
      it = out.end() - 1;
      it->target = r.target;
      it->settings = r.settings;
    }
    it->runs.push_back(&r);
  }
  for (auto& t : out) {
    std::vector<double> mps, mbps, mins, p50, p95, p99, p999, maxs, means;
    for (const RunResult* r : t.runs) {
      mps.push_back(r->messages_per_s);
      mbps.push_back(r->mb_per_s);
      const LatencyMs l = Latency(r->latency);
      mins.push_back(l.min), p50.push_back(l.p50), p95.push_back(l.p95), p99.push_back(l.p99);
      p999.push_back(l.p999), maxs.push_back(l.max), means.push_back(l.mean);
      t.errors += r->errors;
    }
    t.median_messages_per_s = Median(mps);
    t.min_messages_per_s = *std::min_element(mps.begin(), mps.end());
    t.max_messages_per_s = *std::max_element(mps.begin(), mps.end());
    t.median_mb_per_s = Median(mbps);
    t.median_latency = {Median(mins), Median(p50), Median(p95), Median(p99),
                        Median(p999), Median(maxs), Median(means)};
    // The run whose throughput is closest to the median.
    t.median_run = *std::min_element(t.runs.begin(), t.runs.end(), [&](auto* a, auto* b) {
      return std::abs(a->messages_per_s - t.median_messages_per_s) <
             std::abs(b->messages_per_s - t.median_messages_per_s);
    });
  }
  return out;
}

std::string FormatRuns(const std::vector<RunResult>& runs) {
  std::string out = Printf("%-18s %-8s %12s %9s %9s %9s %9s %9s %9s %9s %7s\n", "target",
                           "workload", "msgs/s", "MB/s", "min ms", "p50", "p95", "p99", "p99.9",
                           "max", "errors");
  for (const auto& r : runs) {
    const LatencyMs l = Latency(r.latency);
    out += Printf("%-18s %-8s %12.0f %9.1f ", r.target.c_str(),
                  std::string(Name(r.spec.kind)).c_str(), r.messages_per_s, r.mb_per_s);
    if (r.latency.count() == 0) {
      out += Printf("%9s %9s %9s %9s %9s %9s", "-", "-", "-", "-", "-", "-");
    } else {
      out += Printf("%9.3f %9.3f %9.3f %9.3f %9.3f %9.3f", l.min, l.p50, l.p95, l.p99, l.p999, l.max);
    }
    out += Printf(" %7lld\n", static_cast<long long>(r.errors));
    if (!r.first_error.empty()) out += "    first error: " + r.first_error + "\n";
  }
  return out;
}

std::string FormatSummary(const std::vector<TargetSummary>& summary) {
  std::string out = "medians over the repeats (latency: " +
                    (summary.empty() || summary[0].runs.empty()
                         ? std::string("-")
                         : summary[0].runs[0]->latency_kind) +
                    ")\n";
  out += Printf("%-18s %5s %12s %25s %9s %9s %9s %9s %7s\n", "target", "runs", "msgs/s",
                "(min - max)", "MB/s", "p50 ms", "p99", "p99.9", "errors");
  for (const auto& t : summary) {
    out += Printf("%-18s %5zu %12.0f %25s %9.1f %9.3f %9.3f %9.3f %7lld\n", t.target.c_str(),
                  t.runs.size(), t.median_messages_per_s,
                  Printf("(%.0f - %.0f)", t.min_messages_per_s, t.max_messages_per_s).c_str(),
                  t.median_mb_per_s, t.median_latency.p50, t.median_latency.p99,
                  t.median_latency.p999, static_cast<long long>(t.errors));
  }
  for (size_t i = 1; i < summary.size(); ++i) {
    const auto& a = summary[0];
    const auto& b = summary[i];
    out += Printf("%s / %s: throughput %.2fx", a.target.c_str(), b.target.c_str(),
                  b.median_messages_per_s > 0 ? a.median_messages_per_s / b.median_messages_per_s : 0.0);
    if (b.median_latency.p99 > 0)
      out += Printf(", p99 latency %.2fx", a.median_latency.p99 / b.median_latency.p99);
    out += "\n";
  }
  for (const auto& t : summary) out += "  " + t.target + ": " + t.settings + "\n";
  return out;
}

std::string ToJson(const WorkloadSpec& spec, const std::vector<RunResult>& runs,
                   const std::vector<TargetSummary>* summary) {
  JsonWriter w;
  w.BeginObject();
  w.Field("tool", "runnel-bench").Field("version", int64_t{1});
  w.Key("workload").BeginObject();
  w.Field("kind", Name(spec.kind));
  w.Field("message_bytes", static_cast<uint64_t>(spec.message_bytes));
  w.Field("payload", Name(spec.payload));
  w.Field("keys", DescribeKeys(spec));
  w.Field("partitions", int64_t{spec.partitions});
  w.Field("producers", int64_t{spec.producers});
  w.Field("consumers", int64_t{spec.consumers});
  w.Field("rate", spec.rate);
  w.Field("duration_s", spec.duration_s);
  w.Field("count", spec.count);
  w.Field("warmup_s", spec.warmup_s);
  w.Field("acks", Name(spec.acks));
  w.Field("nack_share", spec.nack_share);
  w.Field("retry_delay_ms", spec.retry_delay_ms);
  w.Field("linger_ms", spec.linger_ms);
  w.Field("batch_bytes", static_cast<uint64_t>(spec.batch_bytes));
  w.EndObject();
  w.Key("runs").BeginArray();
  for (const auto& r : runs) {
    w.BeginObject();
    w.Field("target", r.target).Field("settings", r.settings);
    w.Field("latency_kind", r.latency_kind);
    w.Field("seconds", r.seconds).Field("messages", r.messages);
    w.Field("messages_per_s", r.messages_per_s).Field("mb_per_s", r.mb_per_s);
    w.Key("latency_ms");
    WriteLatency(w, Latency(r.latency));
    w.Field("latency_samples", r.latency.count());
    w.Field("errors", r.errors);
    if (!r.first_error.empty()) w.Field("first_error", r.first_error);
    w.Field("sent", r.sent).Field("received", r.received).Field("acked", r.acked);
    w.Field("nacked", r.nacked).Field("redelivered", r.redelivered);
    w.EndObject();
  }
  w.EndArray();
  if (summary) {
    w.Key("summary").BeginArray();
    for (const auto& t : *summary) {
      w.BeginObject();
      w.Field("target", t.target).Field("settings", t.settings);
      w.Field("runs", static_cast<int64_t>(t.runs.size()));
      w.Field("median_messages_per_s", t.median_messages_per_s);
      w.Field("min_messages_per_s", t.min_messages_per_s);
      w.Field("max_messages_per_s", t.max_messages_per_s);
      w.Field("median_mb_per_s", t.median_mb_per_s);
      w.Key("median_latency_ms");
      WriteLatency(w, t.median_latency);
      w.Field("errors", t.errors);
      const auto& first = (*summary)[0];
      w.Field("throughput_ratio_first_to_this",
              t.median_messages_per_s > 0 ? first.median_messages_per_s / t.median_messages_per_s : 0.0);
      w.Field("p99_ratio_first_to_this",
              t.median_latency.p99 > 0 ? first.median_latency.p99 / t.median_latency.p99 : 0.0);
      w.EndObject();
    }
    w.EndArray();
  }
  w.EndObject();
  return w.Take();
}

std::string RenderSvg(const WorkloadSpec& spec, const std::vector<TargetSummary>& summary) {
  static const char* kColors[] = {"#1f77b4", "#d62728", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b"};
  const double W = 1060, H = 430, panel_w = 420, top = 70, plot_h = 300;
  std::string s = Printf(
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" "
      "font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%%\" height=\"100%%\" "
      "fill=\"white\"/>\n",
      W, H);
  std::string title = "runnel-bench " + std::string(Name(spec.kind)) + ": " +
                      std::to_string(spec.message_bytes) + " B " + std::string(Name(spec.payload)) +
                      ", " + std::to_string(spec.partitions) + " partitions, acks=" +
                      std::string(Name(spec.acks));
  if (spec.rate > 0) title += Printf(", %.0f msg/s", spec.rate);
  s += Printf("<text x=\"20\" y=\"28\" font-size=\"16\">%s</text>\n", Escape(title).c_str());

  // Throughput bars: median, whiskers from min to max.
  const double x0 = 80, y0 = top + plot_h;
  double top_value = 0;
  for (const auto& t : summary) top_value = std::max(top_value, t.max_messages_per_s);
  top_value = top_value > 0 ? top_value * 1.15 : 1;
  s += Printf("<text x=\"%.0f\" y=\"%.0f\">messages/s (median of runs; whiskers: min - max)</text>\n",
              x0, top - 15);
  s += Printf("<line x1=\"%.0f\" y1=\"%.0f\" x2=\"%.0f\" y2=\"%.0f\" stroke=\"black\"/>\n", x0, y0,
              x0 + panel_w, y0);
  s += Printf("<line x1=\"%.0f\" y1=\"%.0f\" x2=\"%.0f\" y2=\"%.0f\" stroke=\"black\"/>\n", x0, top,
              x0, y0);
  for (int i = 0; i <= 4; ++i) {
    const double v = top_value * i / 4, y = y0 - plot_h * i / 4;
    s += Printf("<text x=\"%.0f\" y=\"%.0f\" text-anchor=\"end\">%.0f</text>\n", x0 - 5, y + 4, v);
  }
  const double slot = summary.empty() ? panel_w : panel_w / static_cast<double>(summary.size());
  for (size_t i = 0; i < summary.size(); ++i) {
    const auto& t = summary[i];
    const double bx = x0 + slot * static_cast<double>(i) + slot * 0.2, bw = slot * 0.6;
    auto y_of = [&](double v) { return y0 - plot_h * v / top_value; };
    s += Printf("<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"%s\"/>\n", bx,
                y_of(t.median_messages_per_s), bw, y0 - y_of(t.median_messages_per_s),
                kColors[i % 6]);
    const double cx = bx + bw / 2;
    s += Printf("<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"black\"/>\n", cx,
                y_of(t.min_messages_per_s), cx, y_of(t.max_messages_per_s));
    s += Printf("<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%.0f</text>\n", cx,
                y_of(t.max_messages_per_s) - 6, t.median_messages_per_s);
    s += Printf("<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%s</text>\n", cx, y0 + 16,
                Escape(t.target).c_str());
  }

  // Latency percentile curves of each target's median run, on a "nines" axis.
  const double lx0 = x0 + panel_w + 90;
  bool any = false;
  double lo = 1e18, hi = 0;
  for (const auto& t : summary) {
    if (!t.median_run || t.median_run->latency.count() == 0) continue;
    any = true;
    lo = std::min(lo, std::max(1e-3, t.median_run->latency.min() / 1e6));
    hi = std::max(hi, t.median_run->latency.max() / 1e6);
  }
  if (!any) {
    s += Printf("<text x=\"%.0f\" y=\"%.0f\">no latency measured by this workload</text>\n", lx0,
                top + 20);
    return s + "</svg>\n";
  }
  const double llo = std::floor(std::log10(lo)), lhi = std::ceil(std::log10(std::max(hi, lo * 10)));
  const double max_nines = 5;
  auto px = [&](double nines) { return lx0 + panel_w * nines / max_nines; };
  auto py = [&](double ms) {
    return y0 - plot_h * (std::log10(std::max(ms, 1e-3)) - llo) / (lhi - llo);
  };
  s += Printf("<text x=\"%.0f\" y=\"%.0f\">latency, ms (%s), by percentile</text>\n", lx0, top - 15,
              summary[0].runs[0]->latency_kind.c_str());
  s += Printf("<line x1=\"%.0f\" y1=\"%.0f\" x2=\"%.0f\" y2=\"%.0f\" stroke=\"black\"/>\n", lx0, y0,
              lx0 + panel_w, y0);
  s += Printf("<line x1=\"%.0f\" y1=\"%.0f\" x2=\"%.0f\" y2=\"%.0f\" stroke=\"black\"/>\n", lx0, top,
              lx0, y0);
  static const char* kNines[] = {"0", "90", "99", "99.9", "99.99", "99.999"};
  for (int n = 0; n <= 5; ++n) {
    s += Printf("<text x=\"%.1f\" y=\"%.0f\" text-anchor=\"middle\">%s%%</text>\n", px(n), y0 + 16,
                kNines[n]);
    s += Printf("<line x1=\"%.1f\" y1=\"%.0f\" x2=\"%.1f\" y2=\"%.0f\" stroke=\"#ddd\"/>\n", px(n),
                top, px(n), y0);
  }
  for (double e = llo; e <= lhi; ++e) {
    s += Printf("<text x=\"%.0f\" y=\"%.1f\" text-anchor=\"end\">%g</text>\n", lx0 - 5,
                py(std::pow(10, e)) + 4, std::pow(10, e));
    s += Printf("<line x1=\"%.0f\" y1=\"%.1f\" x2=\"%.0f\" y2=\"%.1f\" stroke=\"#ddd\"/>\n", lx0,
                py(std::pow(10, e)), lx0 + panel_w, py(std::pow(10, e)));
  }
  for (size_t i = 0; i < summary.size(); ++i) {
    const RunResult* r = summary[i].median_run;
    if (!r || r->latency.count() == 0) continue;
    // Up to the percentile the samples support.
    const double nines = std::min(max_nines, std::log10(static_cast<double>(r->latency.count())));
    std::string points;
    for (double n = 0; n <= nines + 1e-9; n += 0.05) {
      const double q = 100.0 * (1.0 - std::pow(10.0, -n));
      points += Printf("%.1f,%.1f ", px(n), py(r->latency.Percentile(q) / 1e6));
    }
    s += Printf("<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"2\" points=\"%s\"/>\n",
                kColors[i % 6], points.c_str());
    s += Printf("<text x=\"%.0f\" y=\"%.0f\" fill=\"%s\">%s</text>\n", lx0 + 10,
                top + 14 + 16 * static_cast<double>(i), kColors[i % 6],
                Escape(summary[i].target).c_str());
  }
  return s + "</svg>\n";
}

}  // namespace runnel::bench
