#include "runnel/bench/runner.h"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace runnel::bench {
namespace {

using std::chrono::nanoseconds;

int64_t Ns(Clock::duration d) { return std::chrono::duration_cast<nanoseconds>(d).count(); }

enum class LatencyKind { kPublish, kEndToEnd, kSettle, kNone };
const char* Name(LatencyKind k) {
  switch (k) {
    case LatencyKind::kPublish: return "publish";
    case LatencyKind::kEndToEnd: return "end_to_end";
    case LatencyKind::kSettle: return "settle";
    case LatencyKind::kNone: return "none";
  }
  return "?";
}

// One thread's counted messages: how many, the window they span (ns since the epoch) and their
// latency. Kept per thread and added up once at the end, so the hot paths share nothing.
struct Tally {
  int64_t measured = 0;
  int64_t first_ns = INT64_MAX;
  int64_t last_ns = 0;
  LatencyHistogram latency;

  void Count(int64_t start_ns, int64_t end_ns) {
    ++measured;
    first_ns = std::min(first_ns, start_ns);
    last_ns = std::max(last_ns, end_ns);
  }
  void Add(const Tally& t) {
    measured += t.measured;
    first_ns = std::min(first_ns, t.first_ns);
    last_ns = std::max(last_ns, t.last_ns);
    latency.Merge(t.latency);
  }
};

// Shared between the threads of one run.
struct Shared {
  const WorkloadSpec& spec;
  Clock::time_point epoch;  // payload stamps are nanoseconds since this
  // Messages intended before this (ns since epoch) are not measured. Set before any message of
  // the window is sent; atomic because consumers already run when the e2e warm-up is set.
  std::atomic<int64_t> warm_ns{INT64_MAX};
  std::mutex mu;
  Tally total;  // every thread's, added when it ends
  std::string first_error;
  std::atomic<int64_t> errors{0};
  std::atomic<int64_t> sent{0};
  std::atomic<int64_t> received{0};
  std::atomic<int64_t> acked{0};
  std::atomic<int64_t> nacked{0};
  std::atomic<int64_t> redelivered{0};
  std::atomic<bool> producers_done{false};
  std::atomic<bool> abort{false};

  explicit Shared(const WorkloadSpec& s) : spec(s) {}

  Clock::time_point WarmEnd() const {
    const int64_t ns = warm_ns.load();
    return ns == INT64_MAX ? Clock::time_point::max() : epoch + nanoseconds(ns);
  }
  void SetWarmEnd(Clock::time_point t) { warm_ns = Ns(t - epoch); }

  void Error(const Status& s) {
    if (errors.fetch_add(1) == 0) {
      std::lock_guard lock(mu);
      first_error = s.ToString();
    }
  }
  void Add(const Tally& t) {
    std::lock_guard lock(mu);
    total.Add(t);
  }
};

// What one producer's acknowledgements add up to. A token is the intended send time (ns since
// the epoch) with the top bit set when the message counts in the window.
class ProducerTally final : public SendListener {
 public:
  static constexpr uint64_t kCounted = uint64_t{1} << 63;
  ProducerTally(Shared& sh, bool record_latency) : sh_(sh), record_latency_(record_latency) {}

  void Done(uint64_t token, const Status& s) override {
    if (!s.ok()) return sh_.Error(s);
    if (!(token & kCounted)) return;
    const auto intended = static_cast<int64_t>(token & ~kCounted);
    const int64_t now = Ns(Clock::now() - sh_.epoch);
    std::lock_guard lock(mu_);  // the driver may call from more than one thread
    tally_.Count(intended, now);
    if (record_latency_) tally_.latency.Record(now - intended);
  }
  // After the producer is gone (no more Done calls).
  void AddTo(Shared& sh) { sh.Add(tally_); }

 private:
  Shared& sh_;
  const bool record_latency_;
  std::mutex mu_;
  Tally tally_;
};

// Sends from spec.producers threads. Messages intended after the warm-up count: `count` > 0 sends
// exactly that many of them, else producers run until warm-up + duration. With `measure`, the
// counted messages' acknowledgements make the window and (publish latency) the histogram.
void Produce(Driver& driver, const std::string& topic, Shared& sh, Clock::time_point start,
             int64_t count, bool measure, double rate) {
  const WorkloadSpec& spec = sh.spec;
  const int n = spec.producers;
  const auto warm_end = sh.WarmEnd();
  const auto stop_at = warm_end + nanoseconds(static_cast<int64_t>(spec.duration_s * 1e9));
  std::vector<std::thread> threads;
  for (int j = 0; j < n; ++j) {
    threads.emplace_back([&, j] {
      ProducerTally tally(sh, measure);
      auto producer = driver.NewProducer(spec, topic, &tally);
      if (!producer.ok()) {
        sh.Error(producer.status());
        return;
      }
      // Each producer has rate/n, offset so that together they are evenly spaced.
      const auto my_start =
          rate > 0 ? start + nanoseconds(static_cast<int64_t>(j * 1e9 / rate)) : start;
      Pacer pacer(my_start, rate / n);
      PayloadMaker maker(spec, spec.seed * 7919 + static_cast<uint64_t>(j));
      const int64_t my_count = count > 0 ? count / n + (j < count % n ? 1 : 0) : 0;
      int64_t counted_sent = 0, sent = 0;
      std::this_thread::sleep_until(my_start);
      for (int64_t i = 0; !sh.abort; ++i) {
        if (count > 0 && counted_sent >= my_count) break;
        const auto intended = pacer.Next(i);
        if (count == 0 && intended >= stop_at) break;
        const bool counted = intended >= warm_end;
        counted_sent += counted;
        const int64_t stamp = Ns(intended - sh.epoch);
        OutMessage m{maker.Key(), maker.Make(i, stamp)};
        ++sent;
        (*producer)->Send(std::move(m), static_cast<uint64_t>(stamp) |
                                            (measure && counted ? ProducerTally::kCounted : 0));
      }
      if (Status s = (*producer)->Flush(300'000); !s.ok()) sh.Error(s);
      producer->reset();  // no Done call after this
      sh.sent += sent;
      tally.AddTo(sh);
    });
  }
  for (auto& t : threads) t.join();
}

// Polls until `done()` or the deadline; handles each delivery as the workload says.
void ConsumeLoop(ConsumerDriver& c, Shared& sh, bool queue, LatencyKind kind,
                 const std::function<bool()>& done, Clock::time_point deadline) {
  const WorkloadSpec& spec = sh.spec;
  Tally tally;
  std::vector<InMessage> batch;
  std::vector<const InMessage*> acks, nacks;
  std::vector<Clock::time_point> intended;
  std::vector<bool> acked;
  while (!done() && !sh.abort && Clock::now() < deadline) {
    batch.clear();
    if (Status s = c.Poll(100, spec.poll_max, &batch); !s.ok()) {
      sh.Error(s);
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
      continue;
    }
    if (batch.empty()) continue;
    const auto received_at = Clock::now();
    const auto warm_end = sh.WarmEnd();
    sh.received.fetch_add(static_cast<int64_t>(batch.size()));
    intended.clear();
    for (const auto& m : batch) {
      const auto stamp = ReadStamp(spec.payload, m.value);
      intended.push_back(stamp ? sh.epoch + nanoseconds(*stamp) : received_at);
    }
    const int64_t received_ns = Ns(received_at - sh.epoch);
    if (!queue) {
      for (size_t i = 0; i < batch.size(); ++i) {
        if (intended[i] < warm_end) continue;
        if (kind == LatencyKind::kEndToEnd) {
          tally.latency.Record(Ns(received_at - intended[i]));
          tally.Count(Ns(warm_end - sh.epoch), received_ns);
        } else {
          tally.Count(received_ns, received_ns);
        }
      }
      continue;
    }
    acks.clear();
    nacks.clear();
    acked.assign(batch.size(), false);
    int64_t redelivered = 0;
    for (size_t i = 0; i < batch.size(); ++i) {
      const InMessage& m = batch[i];
      if (m.deliveries > 1) ++redelivered;
      // The same messages are nacked on every target: a hash of the payload picks them.
      const bool nack = m.deliveries == 1 && spec.nack_share > 0 &&
                        static_cast<double>(std::hash<std::string>{}(m.value) % 1'000'000) <
                            spec.nack_share * 1e6;
      (nack ? nacks : acks).push_back(&m);
      acked[i] = !nack;
    }
    sh.redelivered.fetch_add(redelivered);
    if (!nacks.empty()) {
      if (Status s = c.Nack(nacks, spec.retry_delay_ms); !s.ok()) {
        sh.Error(s);
      } else {
        sh.nacked.fetch_add(static_cast<int64_t>(nacks.size()));
      }
    }
    if (Status s = acks.empty() ? Status::OK() : c.Ack(acks); !s.ok()) {
      sh.Error(s);
      continue;
    }
    const auto acked_at = Clock::now();
    sh.acked.fetch_add(static_cast<int64_t>(acks.size()));
    const int64_t acked_ns = Ns(acked_at - sh.epoch);
    for (size_t i = 0; i < batch.size(); ++i) {
      if (!acked[i] || intended[i] < warm_end) continue;
      if (kind == LatencyKind::kSettle) {
        tally.latency.Record(Ns(acked_at - received_at));
        tally.Count(received_ns, acked_ns);
      } else {
        tally.latency.Record(Ns(acked_at - intended[i]));
        tally.Count(Ns(warm_end - sh.epoch), acked_ns);
      }
    }
  }
  sh.Add(tally);
}

std::atomic<int> g_runs{0};

}  // namespace

Result<RunResult> RunWorkload(Driver& driver, const WorkloadSpec& requested) {
  WorkloadSpec spec = requested;
  ResolveDefaults(&spec);
  if (Status s = Validate(spec); !s.ok()) return s;
  // Unique per process and run, so runs against one long-lived broker (--broker, --redis,
  // --kafka) never collide with an earlier run's topic or group.
  const std::string run = std::to_string(::getpid()) + "-" + std::to_string(g_runs++);
  const std::string topic = "bench-" + std::string(Name(spec.kind)) + "-" + run;
  const std::string group = "bench-group-" + run;
  if (Status s = driver.Prepare(spec, topic, group); !s.ok()) {
    driver.Finish();
    return s;
  }
  RunResult out;
  out.target = driver.Name();
  out.settings = driver.Settings(spec);
  out.spec = spec;
  Shared sh(spec);
  const bool backlog = spec.kind == WorkloadKind::kConsume ||
                       (spec.kind == WorkloadKind::kQueue && spec.rate <= 0);
  const int64_t backlog_count = spec.count > 0 ? spec.count : 1'000'000;
  const LatencyKind kind = spec.kind == WorkloadKind::kProduce   ? LatencyKind::kPublish
                           : spec.kind == WorkloadKind::kConsume ? LatencyKind::kNone
                           : backlog                             ? LatencyKind::kSettle
                                                                 : LatencyKind::kEndToEnd;
  out.latency_kind = Name(kind);

  if (spec.kind == WorkloadKind::kProduce) {
    sh.epoch = Clock::now();
    const auto start = sh.epoch + std::chrono::milliseconds(20);  // producers connect meanwhile
    sh.SetWarmEnd(start + nanoseconds(static_cast<int64_t>(spec.warmup_s * 1e9)));
    Produce(driver, topic, sh, start, spec.count, true, spec.rate);
  } else {
    sh.epoch = Clock::now();
    if (backlog) {
      // Written first and not timed; the window opens at the first delivery.
      sh.SetWarmEnd(sh.epoch);
      Produce(driver, topic, sh, Clock::now(), backlog_count, false, 0);
      sh.producers_done = true;
    }  // else the warm-up starts once the consumers are ready
    std::vector<std::unique_ptr<ConsumerDriver>> consumers;
    const ConsumerMode mode = spec.kind == WorkloadKind::kQueue ? ConsumerMode::kQueue
                                                                : ConsumerMode::kStream;
    for (int i = 0; i < spec.consumers; ++i) {
      auto c = driver.NewConsumer(spec, topic, group, mode, i);
      if (!c.ok()) {
        driver.Finish();
        return c.status();
      }
      consumers.push_back(std::move(c).value());
    }
    const bool queue = spec.kind == WorkloadKind::kQueue;
    auto done = [&] {
      if (!sh.producers_done) return false;
      const int64_t target = sh.sent.load();
      return (queue ? sh.acked.load() : sh.received.load()) >= target;
    };
    const auto deadline = Clock::now() + std::chrono::hours(1);  // the give-up below aborts first
    std::atomic<int> assigned{0};
    std::vector<std::thread> threads;
    for (auto& c : consumers) {
      threads.emplace_back([&, cd = c.get()] {
        // Join the group first (Poll drives it); a fresh topic has nothing to deliver yet.
        if (!backlog) {
          std::vector<InMessage> none;
          const auto join_deadline = Clock::now() + std::chrono::seconds(30);
          while (!cd->Assigned() && Clock::now() < join_deadline && !sh.abort) {
            if (Status s = cd->Poll(50, spec.poll_max, &none); !s.ok()) sh.Error(s);
          }
          assigned.fetch_add(1);
        }
        ConsumeLoop(*cd, sh, queue, kind, done, deadline);
      });
    }
    if (!backlog) {
      while (assigned.load() < spec.consumers) std::this_thread::sleep_for(std::chrono::milliseconds(5));
      const auto start = Clock::now() + std::chrono::milliseconds(20);
      sh.SetWarmEnd(start + nanoseconds(static_cast<int64_t>(spec.warmup_s * 1e9)));
      Produce(driver, topic, sh, start, spec.count, false, spec.rate);
      sh.producers_done = true;
    }
    // Everything sent must arrive within a bound; what does not is counted as lost.
    const auto give_up = Clock::now() + nanoseconds(static_cast<int64_t>(spec.drain_timeout_s * 1e9));
    while (!done() && Clock::now() < give_up) std::this_thread::sleep_for(std::chrono::milliseconds(5));
    if (!done()) sh.abort = true;
    for (auto& t : threads) t.join();
    const int64_t got = queue ? sh.acked.load() : sh.received.load();
    if (const int64_t missing = sh.sent.load() - got; missing > 0) {
      sh.Error(Status::Timeout(std::to_string(missing) + " of " + std::to_string(sh.sent.load()) +
                               " messages not " + (queue ? "acked" : "received") +
                               " within --drain-timeout " +
                               std::to_string(static_cast<int64_t>(spec.drain_timeout_s)) + " s"));
      sh.errors += missing - 1;  // one error per missing message; Error() counted one
    }
    consumers.clear();
  }
  driver.Finish();

  out.latency = std::move(sh.total.latency);
  out.messages = sh.total.measured;
  const int64_t first = sh.total.first_ns, last = sh.total.last_ns;
  out.seconds = last > first ? static_cast<double>(last - first) / 1e9 : 0;
  out.messages_per_s = out.seconds > 0 ? static_cast<double>(out.messages) / out.seconds : 0;
  out.mb_per_s = out.messages_per_s * static_cast<double>(spec.message_bytes) / 1e6;
  out.errors = sh.errors.load();
  out.first_error = sh.first_error;
  out.sent = sh.sent.load();
  out.received = sh.received.load();
  out.acked = sh.acked.load();
  out.nacked = sh.nacked.load();
  out.redelivered = sh.redelivered.load();
  return out;
}

}  // namespace runnel::bench
