// runnel-bench's measuring parts, without a real target: the histogram's error bound, the
// pacer's schedule, coordinated omission, the runner's accounting (through an in-memory driver),
// and the shape of the JSON and SVG output.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <deque>
#include <mutex>
#include <random>
#include <set>
#include <thread>

#include "runnel/bench/histogram.h"
#include "runnel/bench/report.h"
#include "runnel/bench/runner.h"
#include "runnel/common/json.h"

namespace runnel::bench {
namespace {

constexpr double kMaxRelativeError = 1.0 / (1 << LatencyHistogram::kPrecisionBits);

int64_t Exact(std::vector<int64_t> v, double q) {
  std::sort(v.begin(), v.end());
  const auto rank = std::max<size_t>(1, static_cast<size_t>(std::ceil(q / 100.0 * v.size())));
  return v[rank - 1];
}

// An in-memory target: a message is acknowledged in Send (after an optional one-time stall) and
// readable by every consumer from one shared log.
struct MemoryLog {
  std::mutex mu;
  std::deque<InMessage> pending;
  std::deque<std::pair<Clock::time_point, InMessage>> delayed;
  int64_t next_offset = 0;
  int64_t acks = 0;
};

class MemoryProducer final : public ProducerDriver {
 public:
  MemoryProducer(MemoryLog& log, SendListener* l, int stall_at, int stall_ms, int lose_at)
      : log_(log), listener_(l), stall_at_(stall_at), stall_ms_(stall_ms), lose_at_(lose_at) {}
  void Send(OutMessage m, uint64_t token) override {
    if (sent_ == stall_at_) std::this_thread::sleep_for(std::chrono::milliseconds(stall_ms_));
    if (sent_++ != lose_at_) {  // a lost message is acknowledged but never stored
      std::lock_guard lock(log_.mu);
      InMessage in;
      in.value = std::move(m.value);
      in.offset = log_.next_offset++;
      log_.pending.push_back(std::move(in));
    }
    listener_->Done(token, Status::OK());
  }
  Status Flush(int64_t) override { return Status::OK(); }

 private:
  MemoryLog& log_;
  SendListener* listener_;
  int sent_ = 0;
  const int stall_at_, stall_ms_, lose_at_;
};

class MemoryConsumer final : public ConsumerDriver {
 public:
  explicit MemoryConsumer(MemoryLog& log) : log_(log) {}
  Status Poll(int64_t timeout_ms, int max, std::vector<InMessage>* out) override {
    const auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
    for (;;) {
      {
        std::lock_guard lock(log_.mu);
        while (!log_.delayed.empty() && log_.delayed.front().first <= Clock::now()) {
          InMessage m = std::move(log_.delayed.front().second);
          ++m.deliveries;
          log_.pending.push_front(std::move(m));
          log_.delayed.pop_front();
        }
        while (!log_.pending.empty() && static_cast<int>(out->size()) < max) {
          out->push_back(std::move(log_.pending.front()));
          log_.pending.pop_front();
        }
      }
      if (!out->empty() || Clock::now() >= deadline) return Status::OK();
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
  }
  Status Ack(const std::vector<const InMessage*>& m) override {
    std::lock_guard lock(log_.mu);
    log_.acks += static_cast<int64_t>(m.size());
    return Status::OK();
  }
  Status Nack(const std::vector<const InMessage*>& m, int64_t delay_ms) override {
    std::lock_guard lock(log_.mu);
    for (const InMessage* x : m)
      log_.delayed.emplace_back(Clock::now() + std::chrono::milliseconds(delay_ms), *x);
    return Status::OK();
  }

 private:
  MemoryLog& log_;
};

class MemoryDriver final : public Driver {
 public:
  int stall_at = -1, stall_ms = 0, lose_at = -1;
  MemoryLog log;
  std::string Name() const override { return name; }
  std::string Settings(const WorkloadSpec&) const override { return "in memory"; }
  Status Prepare(const WorkloadSpec&, const std::string&, const std::string&) override {
    return Status::OK();
  }
  Result<std::unique_ptr<ProducerDriver>> NewProducer(const WorkloadSpec&, const std::string&,
                                                      SendListener* l) override {
    return std::unique_ptr<ProducerDriver>(new MemoryProducer(log, l, stall_at, stall_ms, lose_at));
  }
  Result<std::unique_ptr<ConsumerDriver>> NewConsumer(const WorkloadSpec&, const std::string&,
                                                      const std::string&, ConsumerMode,
                                                      int) override {
    return std::unique_ptr<ConsumerDriver>(new MemoryConsumer(log));
  }
  void Finish() override {}
  std::string name = "memory";
};

}  // namespace

TEST_CASE("histogram: every value falls in its bucket, and buckets are within the error bound") {
  std::mt19937_64 rng(7);
  size_t last = 0;
  for (int64_t v = 0; v < 5'000; ++v) {  // exact region and the first groups, in order
    const size_t i = LatencyHistogram::IndexOf(v);
    CHECK(i >= last);
    last = i;
  }
  for (int k = 0; k < 100'000; ++k) {
    const auto v = static_cast<int64_t>(rng() >> (22 + rng() % 40));
    const size_t i = LatencyHistogram::IndexOf(v);
    const int64_t lo = LatencyHistogram::LowestOf(i), w = LatencyHistogram::WidthOf(i);
    REQUIRE(lo <= v);
    REQUIRE(v < lo + w);
    REQUIRE(static_cast<double>(w - 1) <= 2 * kMaxRelativeError * static_cast<double>(lo) + 1);
  }
  CHECK(LatencyHistogram::BucketCount() < 20'000);
}

TEST_CASE("histogram: percentiles are within 0.1% of the exact ones; min, max and mean are exact") {
  std::mt19937_64 rng(11);
  std::lognormal_distribution<double> dist(13.0, 1.5);  // around 0.4 ms, with a long tail
  LatencyHistogram h;
  std::vector<int64_t> values;
  for (int i = 0; i < 200'000; ++i) {
    const auto v = static_cast<int64_t>(dist(rng));
    values.push_back(v);
    h.Record(v);
  }
  CHECK(h.count() == values.size());
  CHECK(h.min() == *std::min_element(values.begin(), values.end()));
  CHECK(h.max() == *std::max_element(values.begin(), values.end()));
  long double sum = 0;
  for (auto v : values) sum += v;
  CHECK(h.Mean() == doctest::Approx(static_cast<double>(sum / values.size())).epsilon(1e-9));
  for (double q : {1.0, 10.0, 50.0, 90.0, 95.0, 99.0, 99.9, 99.99}) {
    const int64_t exact = Exact(values, q);
    const int64_t got = h.Percentile(q);
    INFO("q=" << q << " exact=" << exact << " got=" << got);
    CHECK(std::abs(static_cast<double>(got - exact)) <= kMaxRelativeError * exact + 1);
  }
  CHECK(h.Percentile(0) == h.min());
  CHECK(h.Percentile(100) == h.max());
}

TEST_CASE("histogram: merge equals recording everything in one; huge values keep max") {
  LatencyHistogram a, b, all;
  for (int64_t v = 1; v < 100'000; v += 7) {
    ((v % 2) ? a : b).Record(v * 13);
    all.Record(v * 13);
  }
  a.Merge(b);
  CHECK(a.count() == all.count());
  for (double q : {50.0, 99.0, 99.9}) CHECK(a.Percentile(q) == all.Percentile(q));
  CHECK(a.min() == all.min());
  CHECK(a.max() == all.max());
  LatencyHistogram big;
  big.Record(int64_t{1} << 50);
  CHECK(big.max() == int64_t{1} << 50);
  CHECK(big.Percentile(50) == int64_t{1} << 50);  // clamped into [min, max]
  LatencyHistogram empty;
  CHECK(empty.Percentile(99) == 0);
}

TEST_CASE("pacer: intended times are exactly 1/rate apart and the achieved rate matches") {
  const auto start = Clock::now() + std::chrono::milliseconds(5);
  Pacer pacer(start, 2'000);
  std::vector<Clock::time_point> actual;
  for (int64_t i = 0; i < 1'000; ++i) {
    const auto intended = pacer.Next(i);
    actual.push_back(Clock::now());
    CHECK(intended == start + std::chrono::microseconds(500 * i));
    CHECK(actual.back() >= intended);  // never early
  }
  const double seconds = std::chrono::duration<double>(actual.back() - actual.front()).count();
  // 999 intervals of 0.5 ms; a loaded machine may stretch it, never shrink it.
  CHECK(seconds >= 0.4995 * 0.999);
  CHECK(999 / seconds > 2'000 * 0.8);
}

TEST_CASE("pacer: after a stall the schedule does not slip, so the stall shows in the latency") {
  // A target that stalls 200 ms on the 100th message, at 1,000 msg/s for 1 s: a closed-loop
  // benchmark would see one slow send; measured from intended times, the ~200 messages due during
  // the stall are late too.
  MemoryDriver d;
  d.stall_at = 100;
  d.stall_ms = 200;
  WorkloadSpec spec;
  spec.kind = WorkloadKind::kProduce;
  spec.rate = 1'000;
  spec.duration_s = 1;
  spec.warmup_s = 0;
  auto r = RunWorkload(d, spec);
  REQUIRE(r.ok());
  CHECK(r->errors == 0);
  CHECK(r->sent == 1'000);
  CHECK(r->messages == 1'000);
  CHECK(r->latency.count() == 1'000);
  CHECK(r->latency.max() >= 190'000'000);
  // At least ~150 messages were due during the stall and waited for it.
  CHECK(r->latency.Percentile(85) >= 10'000'000);
  // The schedule was kept: the whole run took about a second, not a second plus the stall.
  CHECK(r->seconds < 1.15);
}

TEST_CASE("runner: counts in every workload add up (in-memory target)") {
  WorkloadSpec spec;
  spec.count = 3'000;
  spec.warmup_s = 0;
  spec.producers = 2;
  spec.consumers = 2;
  SUBCASE("produce: count, warm-up and the window") {
    MemoryDriver d;
    spec.kind = WorkloadKind::kProduce;
    spec.warmup_s = 0.1;
    auto r = RunWorkload(d, spec);
    REQUIRE(r.ok());
    CHECK(r->messages == 3'000);
    CHECK(r->sent >= 3'000);  // warm-up messages are sent but not counted
    CHECK(r->latency.count() == 3'000);
    CHECK(r->latency_kind == "publish");
    CHECK(r->messages_per_s > 0);
    CHECK(r->mb_per_s == doctest::Approx(r->messages_per_s * 100 / 1e6));
  }
  SUBCASE("consume drains the backlog") {
    MemoryDriver d;
    spec.kind = WorkloadKind::kConsume;
    auto r = RunWorkload(d, spec);
    REQUIRE(r.ok());
    CHECK(r->errors == 0);
    CHECK(r->sent == 3'000);
    CHECK(r->received == 3'000);
    CHECK(r->messages == 3'000);
    CHECK(r->latency_kind == "none");
  }
  SUBCASE("e2e at a rate") {
    MemoryDriver d;
    spec.kind = WorkloadKind::kE2e;
    spec.rate = 3'000;
    spec.count = 1'500;
    spec.warmup_s = 0.1;
    auto r = RunWorkload(d, spec);
    REQUIRE(r.ok());
    CHECK(r->errors == 0);
    CHECK(r->received == r->sent);
    CHECK(r->messages == 1'500);
    CHECK(r->latency.count() == 1'500);
    CHECK(r->latency_kind == "end_to_end");
  }
  SUBCASE("queue: nacked messages come back once and everything is acked once") {
    MemoryDriver d;
    spec.kind = WorkloadKind::kQueue;
    spec.nack_share = 0.2;
    spec.retry_delay_ms = 20;
    auto r = RunWorkload(d, spec);
    REQUIRE(r.ok());
    CHECK(r->errors == 0);
    CHECK(r->acked == 3'000);
    CHECK(d.log.acks == 3'000);
    CHECK(r->nacked > 400);
    CHECK(r->nacked < 800);
    CHECK(r->redelivered == r->nacked);
    CHECK(r->received == 3'000 + r->nacked);
    CHECK(r->latency_kind == "settle");
  }
}

TEST_CASE("runner: a message acknowledged but never delivered is counted as lost") {
  for (WorkloadKind kind : {WorkloadKind::kE2e, WorkloadKind::kConsume, WorkloadKind::kQueue}) {
    MemoryDriver d;
    d.lose_at = 17;
    WorkloadSpec spec;
    spec.kind = kind;
    spec.count = 500;
    spec.rate = kind == WorkloadKind::kE2e ? 5'000 : 0;
    spec.warmup_s = 0;
    spec.drain_timeout_s = 0.5;
    auto r = RunWorkload(d, spec);
    REQUIRE(r.ok());
    INFO(Name(kind));
    CHECK(r->errors == 1);
    CHECK(r->first_error.find("1 of 500 messages not") != std::string::npos);
  }
}

TEST_CASE("runner: bad specs are refused with the flag named") {
  MemoryDriver d;
  WorkloadSpec spec;
  spec.kind = WorkloadKind::kE2e;  // without a rate
  auto r = RunWorkload(d, spec);
  REQUIRE_FALSE(r.ok());
  CHECK(r.status().ToString().find("--rate") != std::string::npos);
  spec = {};
  spec.message_bytes = 10;
  CHECK(RunWorkload(d, spec).status().ToString().find("--size") != std::string::npos);
  spec = {};
  spec.nack_share = 0.5;
  CHECK(RunWorkload(d, spec).status().ToString().find("--nack-share") != std::string::npos);
  WorkloadSpec keys;
  CHECK(ParseKeys("hot:0", &keys).IsInvalidArgument());
  CHECK(ParseKeys("hot:12", &keys).ok());
  CHECK(keys.hot_keys == 12);
  CHECK(!ParseWorkloadKind("stream").ok());
}

TEST_CASE("payloads carry their stamp, have the asked size, and keys follow the key mode") {
  for (PayloadKind kind : {PayloadKind::kRandom, PayloadKind::kEvent}) {
    WorkloadSpec spec;
    spec.payload = kind;
    spec.message_bytes = 200;
    spec.keys = KeyKind::kHot;
    spec.hot_keys = 4;
    PayloadMaker maker(spec, 3);
    std::set<std::string> keys;
    for (int64_t i = 0; i < 200; ++i) {
      const std::string p = maker.Make(i, 123'456'789'000 + i);
      CHECK(p.size() == 200);
      CHECK(ReadStamp(kind, p) == 123'456'789'000 + i);
      keys.insert(*maker.Key());
    }
    CHECK(keys.size() == 4);
    if (kind == PayloadKind::kEvent) {
      CHECK(ParseJson(maker.Make(1, 5)).ok());
    }
  }
}

TEST_CASE("output: the JSON document's schema, the summary's medians and ratios, and the SVG") {
  WorkloadSpec spec;
  spec.kind = WorkloadKind::kProduce;
  spec.count = 2'000;
  spec.warmup_s = 0;
  std::vector<RunResult> runs;
  for (int round = 0; round < 3; ++round) {
    for (const char* name : {"fast", "slow"}) {
      MemoryDriver d;
      d.name = name;
      if (std::string(name) == "slow") {
        d.stall_at = 10;
        d.stall_ms = 50;
      }
      auto r = RunWorkload(d, spec);
      REQUIRE(r.ok());
      runs.push_back(std::move(r).value());
    }
  }
  const auto summary = Summarize(runs);
  REQUIRE(summary.size() == 2);
  CHECK(summary[0].target == "fast");
  CHECK(summary[0].runs.size() == 3);
  CHECK(summary[0].min_messages_per_s <= summary[0].median_messages_per_s);
  CHECK(summary[0].median_messages_per_s <= summary[0].max_messages_per_s);
  CHECK(summary[1].median_latency.max >= 50);

  auto doc = ParseJson(ToJson(spec, runs, &summary));
  REQUIRE(doc.ok());
  CHECK(doc->Str("tool") == "runnel-bench");
  CHECK(doc->Int("version") == 1);
  const JsonValue* w = doc->Find("workload");
  REQUIRE(w);
  CHECK(w->Str("kind") == "produce");
  for (const char* k : {"message_bytes", "partitions", "producers", "consumers", "rate",
                        "duration_s", "count", "warmup_s", "nack_share", "linger_ms"}) {
    INFO(k);
    REQUIRE(w->Find(k));
    CHECK(w->Find(k)->type == JsonValue::Type::kNumber);
  }
  for (const char* k : {"payload", "keys", "acks"}) CHECK(w->Find(k)->type == JsonValue::Type::kString);
  const JsonValue* rs = doc->Find("runs");
  REQUIRE(rs);
  REQUIRE(rs->is_array());
  REQUIRE(rs->array.size() == 6);
  for (const auto& run : rs->array) {
    CHECK(run.Str("target").size() > 0);
    CHECK(run.Str("latency_kind") == "publish");
    for (const char* k : {"seconds", "messages", "messages_per_s", "mb_per_s", "errors", "sent",
                          "received", "acked", "nacked", "redelivered", "latency_samples"}) {
      INFO(k);
      REQUIRE(run.Find(k));
      CHECK(run.Find(k)->type == JsonValue::Type::kNumber);
    }
    CHECK(run.Int("messages") == 2'000);
    const JsonValue* l = run.Find("latency_ms");
    REQUIRE(l);
    double prev = -1;
    for (const char* k : {"min", "p50", "p95", "p99", "p999", "max"}) {
      INFO(k);
      const double v = l->Double(k, -1);
      CHECK(v >= prev);  // percentiles are ordered
      prev = v;
    }
  }
  const JsonValue* sm = doc->Find("summary");
  REQUIRE(sm);
  REQUIRE(sm->array.size() == 2);
  CHECK(sm->array[0].Double("throughput_ratio_first_to_this") == doctest::Approx(1.0));
  CHECK(sm->array[1].Double("throughput_ratio_first_to_this") ==
        doctest::Approx(summary[0].median_messages_per_s / summary[1].median_messages_per_s));
  CHECK(sm->array[1].Find("median_latency_ms")->Double("p99") >= 0);

  const std::string svg = RenderSvg(spec, summary);
  CHECK(svg.starts_with("<svg"));
  CHECK(svg.find("</svg>") != std::string::npos);
  // Well formed enough for a browser: every tag closes before the next one opens (long point
  // lists included), and every polyline has points for the percentiles up to 99.9%.
  for (size_t at = svg.find('<'); at != std::string::npos; at = svg.find('<', at + 1)) {
    const size_t close = svg.find('>', at), next = svg.find('<', at + 1);
    REQUIRE(close != std::string::npos);
    REQUIRE(close < next);
  }
  for (size_t at = svg.find("points=\""); at != std::string::npos;
       at = svg.find("points=\"", at + 1)) {
    const size_t end = svg.find('"', at + 8);
    const std::string points = svg.substr(at + 8, end - at - 8);
    CHECK(std::count(points.begin(), points.end(), ',') >= 60);  // 0.05-nine steps to 3 nines
  }
  CHECK(svg.find("fast") != std::string::npos);
  size_t curves = 0;
  for (size_t at = 0; (at = svg.find("<polyline", at)) != std::string::npos; ++at) ++curves;
  CHECK(curves == 2);
  size_t bars = 0;
  for (size_t at = 0; (at = svg.find("<rect x=", at)) != std::string::npos; ++at) ++bars;
  CHECK(bars == 2);
  const std::string table = FormatSummary(summary);
  CHECK(table.find("fast / slow: throughput") != std::string::npos);
}

}  // namespace runnel::bench
