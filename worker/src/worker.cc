// The worker runtime: a fetch loop, a handler pool, a settle thread that batches acks, nacks and
// rejects, and a lock-renewal thread (queue groups); or a serial loop over a stream group whose
// handler keeps its own offsets (PartitionHandler).
#include "runnel/worker/worker.h"

#include <pthread.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <random>
#include <set>
#include <thread>
#include <type_traits>
#include <variant>

#include "runnel/common/clock.h"
#include "runnel/common/thread_pool.h"

namespace runnel::worker {

Status WorkerOptions::Validate() const {
  if (topic.empty()) return Status::InvalidArgument("the worker needs a topic");
  if (group.empty()) return Status::InvalidArgument("the worker needs a group");
  if (concurrency < 1) return Status::InvalidArgument("concurrency must be >= 1");
  if (batch_max_records < 1) return Status::InvalidArgument("batch max records must be >= 1");
  if (batch_max_wait_ms < 0) return Status::InvalidArgument("batch max wait must be >= 0");
  if (lock_timeout_ms < 100) return Status::InvalidArgument("lock timeout must be >= 100 ms");
  if (rate_limit_per_s < 0) return Status::InvalidArgument("rate limit must be >= 0");
  if (poll_timeout_ms < 1) return Status::InvalidArgument("poll timeout must be >= 1 ms");
  RUNNEL_RETURN_IF_ERROR(retry.Validate());
  return breaker.Validate();
}

namespace {

using SteadyClock = std::chrono::steady_clock;
using client::ConsumerRecord;
using TP = proto::TopicPartitionRef;

double ElapsedMs(SteadyClock::time_point since) {
  return std::chrono::duration<double, std::milli>(SteadyClock::now() - since).count();
}

// A record reduced to what settling needs.
struct Ref {
  int32_t partition = 0;
  int64_t offset = 0;
  int64_t timestamp_ms = 0;
};

struct Settle {
  Ref ref;
  Action action;
};

bool LockLost(const Status& s) {
  return s.IsNotFound() || s.code() == StatusCode::kInvalidArgument;
}

std::string ReasonClass(const std::string& reason) {
  const size_t colon = reason.find(':');
  std::string c = reason.substr(0, colon);
  // "retries_exhausted after 5 deliveries" -> "retries_exhausted"
  const size_t space = c.find(' ');
  return space == std::string::npos ? c : c.substr(0, space);
}

class WorkerImpl final : public Worker {
 public:
  using Handler = std::variant<RecordHandler, BatchHandler, PartitionHandler>;

  WorkerImpl(std::shared_ptr<client::Connection> conn, WorkerOptions options, Handler handler)
      : conn_(std::move(conn)),
        options_(std::move(options)),
        handler_(std::move(handler)),
        breaker_(options_.breaker),
        rate_(options_.rate_limit_per_s,
              options_.rate_burst > 0 ? options_.rate_burst : options_.rate_limit_per_s),
        handler_ms_(LatencyBucketsMs()),
        batch_records_({1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 5000}),
        end_to_end_ms_(LatencyBucketsMs()),
        rng_(std::random_device{}()) {
    extend_before_ms_ = options_.extend_before_ms >= 0 ? options_.extend_before_ms
                                                        : options_.lock_timeout_ms / 3;
  }

  ~WorkerImpl() override {
    Stop();
    StopBackground();
    pool_.reset();  // waits for handlers still running after a forced drain
  }

  Status Init() {
    RUNNEL_RETURN_IF_ERROR(options_.Validate());
    client::ConsumerOptions co;
    co.group = options_.group;
    co.topics = {options_.topic};
    co.consumer_name = options_.consumer_name;
    co.request_timeout_ms = options_.request_timeout_ms;
    co.max_poll_records = std::max(options_.batch_max_records, options_.concurrency);
    if (std::holds_alternative<PartitionHandler>(handler_)) {
      const auto& h = std::get<PartitionHandler>(handler_);
      if (!h.load_offset || !h.process)
        return Status::InvalidArgument("a partition handler needs load_offset and process");
      co.mode = client::ConsumerMode::kStream;
      co.auto_commit = false;
      co.session_timeout_ms = options_.session_timeout_ms;
      co.heartbeat_interval_ms = std::max<int64_t>(100, options_.session_timeout_ms / 5);
    } else {
      co.mode = client::ConsumerMode::kQueue;
      co.queue_config = {{"lock.timeout.ms", std::to_string(options_.lock_timeout_ms)},
                         {"max.deliveries", std::to_string(options_.retry.max_deliveries)},
                         {"ordered.keys", options_.ordered_keys ? "true" : "false"},
                         {"message.ttl.ms", std::to_string(options_.message_ttl_ms)}};
    }
    auto c = client::Consumer::Create(conn_, co);
    if (!c.ok()) return c.status();
    consumer_ = std::move(c).value();
    return Status::OK();
  }

  Status Run() override {
    if (std::holds_alternative<PartitionHandler>(handler_)) return RunStream();
    return RunQueue();
  }

  void Stop() override {
    {
      std::lock_guard lk(mu_);
      stop_ = true;
    }
    cv_.notify_all();
  }
  bool stopping() const override {
    std::lock_guard lk(mu_);
    return stop_;
  }
  const WorkerOptions& options() const override { return options_; }

  WorkerStats Stats() const override {
    WorkerStats s;
    s.received = received_.load();
    s.acked = acked_.load();
    s.retried = retried_.load();
    s.dead_lettered = dead_lettered_.load();
    s.failures = failures_.load();
    s.handler_calls = handler_calls_.load();
    s.in_flight = in_flight_.load();
    s.lock_extensions = lock_extensions_.load();
    s.locks_lost = locks_lost_.load();
    s.settle_errors = settle_errors_.load();
    s.breaker_opens = breaker_.opens();
    s.rate_limited_ms = rate_limited_ms_.load();
    s.breaker_state = std::string(BreakerStateName(breaker_.state(WallClockMs())));
    {
      std::lock_guard lk(stats_mu_);
      s.failures_by_kind = failures_by_kind_;
      s.dead_letters_by_reason = dead_letters_by_reason_;
    }
    s.handler_ms = handler_ms_.Snap();
    s.batch_records = batch_records_.Snap();
    s.end_to_end_ms = end_to_end_ms_.Snap();
    return s;
  }

  void WritePrometheus(PrometheusWriter& p) const override {
    const WorkerStats s = Stats();
    const std::string l = "group=\"" + PromLabel(options_.group) + "\"";
    auto counter = [&](const char* name, const char* help, int64_t v) {
      p.Type(name, "counter", help);
      p.Sample(name, l, static_cast<double>(v));
    };
    counter("runnel_worker_received_total", "Records fetched, redeliveries included.", s.received);
    counter("runnel_worker_acked_total", "Records acknowledged or applied.", s.acked);
    counter("runnel_worker_retried_total", "Records nacked for a later retry.", s.retried);
    counter("runnel_worker_dead_lettered_total", "Records rejected to the dead-letter topic.",
            s.dead_lettered);
    counter("runnel_worker_failures_total", "Handler outcomes that failed.", s.failures);
    counter("runnel_worker_handler_calls_total", "Handler calls (records or batches).",
            s.handler_calls);
    counter("runnel_worker_lock_extensions_total", "Locks renewed for long handlers.",
            s.lock_extensions);
    counter("runnel_worker_locks_lost_total", "Settles that found the lock taken over.",
            s.locks_lost);
    counter("runnel_worker_settle_errors_total", "Acks, nacks or rejects the broker refused.",
            s.settle_errors);
    counter("runnel_worker_breaker_opens_total", "Times the circuit breaker opened.",
            s.breaker_opens);
    counter("runnel_worker_rate_limited_ms_total", "Milliseconds the fetch loop waited for tokens.",
            s.rate_limited_ms);
    p.Type("runnel_worker_in_flight", "gauge", "Records fetched and not yet settled.");
    p.Sample("runnel_worker_in_flight", l, static_cast<double>(s.in_flight));
    p.Type("runnel_worker_breaker_state", "gauge", "0 closed, 1 open, 2 half-open.");
    p.Sample("runnel_worker_breaker_state", l,
             static_cast<double>(static_cast<int>(breaker_.state(WallClockMs()))));
    p.Type("runnel_worker_failures_by_kind_total", "counter", "Failed outcomes per error kind.");
    for (const auto& [kind, n] : s.failures_by_kind)
      p.Sample("runnel_worker_failures_by_kind_total", l + ",kind=\"" + PromLabel(kind) + "\"",
               static_cast<double>(n));
    p.Type("runnel_worker_handler_seconds", "histogram", "Handler call latency.");
    p.Hist("runnel_worker_handler_seconds", l, s.handler_ms, 1e-3);
    p.Type("runnel_worker_batch_records", "histogram", "Records per handler call.");
    p.Hist("runnel_worker_batch_records", l, s.batch_records, 1);
    p.Type("runnel_worker_end_to_end_seconds", "histogram",
           "From the record's timestamp to its acknowledgement.");
    p.Hist("runnel_worker_end_to_end_seconds", l, s.end_to_end_ms, 1e-3);
  }

  void WriteJson(JsonWriter& w) const override {
    const WorkerStats s = Stats();
    w.BeginObject();
    w.Field("group", options_.group).Field("topic", options_.topic);
    w.Field("consumer", consumer_ ? consumer_->ConsumerName() : std::string());
    w.Field("received", s.received).Field("acked", s.acked).Field("retried", s.retried);
    w.Field("dead_lettered", s.dead_lettered).Field("failures", s.failures);
    w.Field("handler_calls", s.handler_calls).Field("in_flight", s.in_flight);
    w.Field("lock_extensions", s.lock_extensions).Field("locks_lost", s.locks_lost);
    w.Field("settle_errors", s.settle_errors).Field("rate_limited_ms", s.rate_limited_ms);
    w.Key("breaker").BeginObject();
    w.Field("state", s.breaker_state).Field("opens", s.breaker_opens);
    w.EndObject();
    w.Key("failures_by_kind").BeginObject();
    for (const auto& [k, n] : s.failures_by_kind) w.Field(k, n);
    w.EndObject();
    w.Key("dead_letters_by_reason").BeginObject();
    for (const auto& [k, n] : s.dead_letters_by_reason) w.Field(k, n);
    w.EndObject();
    auto hist = [&](const char* name, const Histogram::Snapshot& h) {
      w.Key(name).BeginObject();
      w.Field("count", h.count);
      w.Field("avg", h.count ? h.sum / static_cast<double>(h.count) : 0.0);
      w.Field("p50", h.Quantile(0.5)).Field("p99", h.Quantile(0.99));
      w.EndObject();
    };
    hist("handler_ms", s.handler_ms);
    hist("batch_records", s.batch_records);
    hist("end_to_end_ms", s.end_to_end_ms);
    w.EndObject();
  }

 private:
  // ---- queue groups ----------------------------------------------------------------------------

  Status RunQueue() {
    pool_ = std::make_unique<ThreadPool>(options_.concurrency, "runnel-handler");
    settler_ = std::thread([this] {
      pthread_setname_np(pthread_self(), "runnel-settle");
      SettleLoop();
    });
    extender_ = std::thread([this] {
      pthread_setname_np(pthread_self(), "runnel-extend");
      ExtendLoop();
    });
    const bool batched = std::holds_alternative<BatchHandler>(handler_);
    std::vector<ConsumerRecord> open_batch;
    SteadyClock::time_point batch_started;
    Status result;
    for (;;) {
      int64_t room = 0;
      {
        std::unique_lock lk(mu_);
        cv_.wait(lk, [&] { return stop_ || active_ < options_.concurrency; });
        if (stop_) break;
        room = batched ? options_.batch_max_records - static_cast<int64_t>(open_batch.size())
                       : options_.concurrency - active_;
      }
      if (!Admit(&room)) continue;
      int64_t timeout = options_.poll_timeout_ms;
      if (batched && !open_batch.empty()) {
        timeout = std::max<int64_t>(
            0, options_.batch_max_wait_ms - static_cast<int64_t>(ElapsedMs(batch_started)));
      }
      auto polled = consumer_->Poll(timeout, static_cast<int32_t>(room));
      if (!polled.ok()) {
        result = polled.status();
        break;
      }
      Admitted(room, static_cast<int64_t>(polled->size()));
      Track(*polled);
      if (!batched) {
        for (ConsumerRecord& r : *polled) Dispatch({std::move(r)});
        continue;
      }
      if (open_batch.empty() && !polled->empty()) batch_started = SteadyClock::now();
      for (ConsumerRecord& r : *polled) open_batch.push_back(std::move(r));
      if (!open_batch.empty() &&
          (static_cast<int32_t>(open_batch.size()) >= options_.batch_max_records ||
           ElapsedMs(batch_started) >= static_cast<double>(options_.batch_max_wait_ms))) {
        Dispatch(std::move(open_batch));
        open_batch.clear();
      }
    }
    if (!open_batch.empty()) Dispatch(std::move(open_batch));
    Status drained = Drain();
    if (result.ok()) result = drained;
    return result;
  }

  // Applies the breaker and the rate limit to a fetch of up to *room records. False (after
  // waiting) when nothing may be fetched now.
  bool Admit(int64_t* room) {
    const int64_t now = WallClockMs();
    const int64_t permits = breaker_.Permits(now);
    if (permits == 0) {
      const int64_t until = breaker_.OpenUntilMs();
      WaitMs(until > now ? std::min<int64_t>(until - now, 1000) : 50);
      return false;
    }
    if (permits > 0) *room = std::min(*room, permits);
    const int64_t granted = rate_.TryTake(*room, now);
    if (granted == 0) {
      const int64_t wait = std::max<int64_t>(1, rate_.WaitMs(now));
      rate_limited_ms_ += wait;
      WaitMs(wait);
      return false;
    }
    *room = granted;
    return true;
  }

  void Admitted(int64_t granted, int64_t used) {
    rate_.Give(granted - used);
    breaker_.Took(used);
    received_ += used;
  }

  // A uniform draw from [0, 1) for backoff jitter.
  double Random() {
    std::lock_guard lk(rng_mu_);
    return std::uniform_real_distribution<double>(0.0, 1.0)(rng_);
  }

  void WaitMs(int64_t ms) {
    std::unique_lock lk(mu_);
    cv_.wait_for(lk, std::chrono::milliseconds(ms), [&] { return stop_; });
  }

  void Track(const std::vector<ConsumerRecord>& records) {
    if (records.empty()) return;
    in_flight_ += static_cast<int64_t>(records.size());
    std::lock_guard lk(track_mu_);
    for (const ConsumerRecord& r : records) locks_[{r.partition, r.offset}] = r.lock_until_ms;
  }

  void Dispatch(std::vector<ConsumerRecord> records) {
    {
      std::lock_guard lk(mu_);
      ++active_;
    }
    pool_->Post([this, recs = std::move(records)] {
      Handle(recs);
      {
        std::lock_guard lk(mu_);
        --active_;
      }
      cv_.notify_all();
    });
  }

  void Handle(const std::vector<ConsumerRecord>& recs) {
    const auto started = SteadyClock::now();
    std::vector<Outcome> outcomes;
    try {
      if (const auto* h = std::get_if<RecordHandler>(&handler_)) {
        outcomes.push_back((*h)(recs.front()));
      } else {
        outcomes = std::get<BatchHandler>(handler_)(recs);
      }
    } catch (const std::exception& e) {
      outcomes = {Outcome::Fail("exception", e.what())};
    } catch (...) {
      outcomes = {Outcome::Fail("exception", "unknown exception")};
    }
    handler_ms_.Observe(ElapsedMs(started));
    batch_records_.Observe(static_cast<double>(recs.size()));
    ++handler_calls_;
    if (outcomes.size() != 1 && outcomes.size() != recs.size()) {
      outcomes = {Outcome::Fail("handler_error", "the handler returned " +
                                                     std::to_string(outcomes.size()) +
                                                     " outcomes for " +
                                                     std::to_string(recs.size()) + " records")};
    }
    const int64_t now = WallClockMs();
    std::vector<Settle> settles;
    settles.reserve(recs.size());
    for (size_t i = 0; i < recs.size(); ++i) {
      const Outcome& o = outcomes.size() == 1 ? outcomes[0] : outcomes[i];
      const ConsumerRecord& r = recs[i];
      if (o.kind == Outcome::Kind::kFail) {
        ++failures_;
        std::lock_guard lk(stats_mu_);
        ++failures_by_kind_[o.error];
      }
      breaker_.Record(!(o.kind == Outcome::Kind::kFail && options_.retry.Retryable(o.error)), now);
      settles.push_back({{r.partition, r.offset, r.timestamp_ms},
                         Decide(options_.retry, o, r.deliveries, Random())});
    }
    {
      std::lock_guard lk(track_mu_);
      for (const ConsumerRecord& r : recs) locks_.erase({r.partition, r.offset});
    }
    {
      std::lock_guard lk(settle_mu_);
      for (Settle& s : settles) settle_queue_.push_back(std::move(s));
    }
    settle_cv_.notify_one();
  }

  // Sends queued acks, nacks and rejects, as few requests as possible.
  void SettleLoop() {
    for (;;) {
      std::vector<Settle> batch;
      {
        std::unique_lock lk(settle_mu_);
        settle_cv_.wait(lk, [&] { return settle_stop_ || !settle_queue_.empty(); });
        if (settle_queue_.empty()) return;
        batch.swap(settle_queue_);
      }
      std::vector<Ref> acks;
      std::map<int64_t, std::vector<Ref>> nacks;
      std::map<std::string, std::vector<Ref>> rejects;
      for (Settle& s : batch) {
        switch (s.action.kind) {
          case Action::Kind::kAck: acks.push_back(s.ref); break;
          case Action::Kind::kNack: nacks[s.action.delay_ms].push_back(s.ref); break;
          case Action::Kind::kReject: rejects[s.action.reason].push_back(s.ref); break;
        }
      }
      if (!acks.empty()) {
        const int64_t n = SettleRefs(acks, [&](const auto& recs) { return consumer_->Ack(recs); });
        acked_ += n;
        const int64_t now = WallClockMs();
        for (const Ref& r : acks) end_to_end_ms_.Observe(static_cast<double>(now - r.timestamp_ms));
      }
      for (auto& [delay, refs] : nacks) {
        retried_ += SettleRefs(refs, [&, d = delay](const auto& recs) {
          return consumer_->Nack(recs, d);
        });
      }
      for (auto& [reason, refs] : rejects) {
        const int64_t n = SettleRefs(refs, [&, why = reason](const auto& recs) {
          return consumer_->Reject(recs, why);
        });
        dead_lettered_ += n;
        std::lock_guard lk(stats_mu_);
        dead_letters_by_reason_[ReasonClass(reason)] += n;
      }
      in_flight_ -= static_cast<int64_t>(batch.size());
    }
  }

  static std::vector<ConsumerRecord> AsRecords(const std::vector<Ref>& refs) {
    std::vector<ConsumerRecord> out(refs.size());
    for (size_t i = 0; i < refs.size(); ++i) {
      out[i].partition = refs[i].partition;
      out[i].offset = refs[i].offset;
    }
    return out;
  }

  // Sends `op` for all refs, retrying connection errors; if the broker refuses the group (one
  // lock was taken over, which fails the whole request), sends them one by one. Returns how
  // many were settled.
  template <class Op> int64_t SettleRefs(const std::vector<Ref>& refs, Op op) {
    Status s = Retrying([&] { return op(AsRecords(refs)); });
    if (s.ok()) return static_cast<int64_t>(refs.size());
    if (refs.size() == 1) {
      CountSettleError(s);
      return 0;
    }
    int64_t n = 0;
    for (const Ref& r : refs) {
      Status one = Retrying([&] { return op(AsRecords({r})); });
      if (one.ok()) {
        ++n;
      } else {
        CountSettleError(one);
      }
    }
    return n;
  }

  void CountSettleError(const Status& s) {
    if (LockLost(s)) {
      ++locks_lost_;
    } else {
      ++settle_errors_;
    }
  }

  template <class F> Status Retrying(F f) {
    Status s;
    int64_t backoff = 50;
    for (int attempt = 0; attempt < 8; ++attempt) {
      s = f();
      if (s.ok() || !client::IsRetriable(s)) return s;
      std::this_thread::sleep_for(std::chrono::milliseconds(backoff));
      backoff = std::min<int64_t>(backoff * 2, 2'000);
    }
    return s;
  }

  // Renews locks that expire within extend_before_ms.
  void ExtendLoop() {
    const int64_t tick = std::clamp<int64_t>(extend_before_ms_ / 4, 20, 1'000);
    for (;;) {
      {
        std::unique_lock lk(settle_mu_);
        extend_cv_.wait_for(lk, std::chrono::milliseconds(tick), [&] { return extend_stop_; });
        if (extend_stop_) return;
      }
      const int64_t now = WallClockMs();
      std::vector<Ref> due;
      {
        std::lock_guard lk(track_mu_);
        for (const auto& [key, until] : locks_)
          if (until - now <= extend_before_ms_) due.push_back({key.first, key.second, 0});
      }
      if (due.empty()) continue;
      auto r = consumer_->Extend(AsRecords(due));
      if (r.ok()) {
        lock_extensions_ += static_cast<int64_t>(due.size());
        std::lock_guard lk(track_mu_);
        for (const Ref& d : due) {
          auto it = locks_.find({d.partition, d.offset});
          if (it != locks_.end()) it->second = *r;
        }
        continue;
      }
      for (const Ref& d : due) {
        auto one = consumer_->Extend(AsRecords({d}));
        std::lock_guard lk(track_mu_);
        auto it = locks_.find({d.partition, d.offset});
        if (one.ok()) {
          ++lock_extensions_;
          if (it != locks_.end()) it->second = *one;
        } else if (LockLost(one.status())) {
          ++locks_lost_;
          if (it != locks_.end()) locks_.erase(it);  // the handler's settle will fail too
        }
      }
    }
  }

  // Waits for running handlers, then stops the background threads. Records whose handler is
  // still running at the deadline are released for redelivery.
  Status Drain() {
    Status result;
    {
      std::unique_lock lk(mu_);
      const bool done = cv_.wait_for(lk, std::chrono::milliseconds(options_.drain_timeout_ms),
                                     [&] { return active_ == 0; });
      if (!done) result = Status::Timeout("handlers still running after the drain timeout");
    }
    if (!result.ok()) {
      std::vector<Ref> left;
      {
        std::lock_guard lk(track_mu_);
        for (const auto& [key, until] : locks_) left.push_back({key.first, key.second, 0});
        locks_.clear();
      }
      if (!left.empty()) {
        (void)SettleRefs(left, [&](const auto& recs) { return consumer_->Nack(recs, 0); });
      }
    }
    StopBackground();
    return result;
  }

  void StopBackground() {
    {
      std::lock_guard lk(settle_mu_);
      settle_stop_ = true;
      extend_stop_ = true;
    }
    settle_cv_.notify_all();
    extend_cv_.notify_all();
    if (settler_.joinable()) settler_.join();
    if (extender_.joinable()) extender_.join();
  }

  // ---- stream groups with handler-kept offsets ---------------------------------------------------

  Status RunStream() {
    const PartitionHandler& h = std::get<PartitionHandler>(handler_);
    std::set<TP> assigned;
    // Assigned, but load_offset failed (retried each round) -> the first offset of the records
    // dropped meanwhile (-1: none), to read them again if the store has no offset after all.
    std::map<TP, int64_t> unloaded;
    int32_t failures_in_a_row = 0;
    Status result;
    while (!stopping()) {
      int64_t room = options_.batch_max_records;
      if (!Admit(&room)) continue;
      auto polled = consumer_->Poll(options_.poll_timeout_ms, static_cast<int32_t>(room));
      if (!polled.ok()) {
        result = polled.status();
        break;
      }
      Admitted(room, static_cast<int64_t>(polled->size()));

      // Partitions new to this worker start where the handler's store says.
      std::set<TP> now_assigned;
      for (const TP& tp : consumer_->Assignment()) now_assigned.insert(tp);
      for (const TP& tp : now_assigned)
        if (!assigned.count(tp)) unloaded.emplace(tp, -1);
      std::set<TP> repositioned;
      for (auto it = unloaded.begin(); it != unloaded.end();) {
        const TP& tp = it->first;
        if (!now_assigned.count(tp)) {
          it = unloaded.erase(it);
          continue;
        }
        auto off = h.load_offset(tp);
        if (!off.ok()) {
          ++it;
          continue;
        }
        const int64_t target = *off ? **off : it->second;
        if (target >= 0) {
          (void)consumer_->Seek(tp, target);
          repositioned.insert(tp);
        }
        it = unloaded.erase(it);
      }
      assigned = now_assigned;

      // Records of partitions repositioned in this round came from the old position: dropped.
      std::map<TP, std::vector<ConsumerRecord>> by_partition;
      for (ConsumerRecord& r : *polled) {
        TP tp{r.topic, r.partition};
        if (auto u = unloaded.find(tp); u != unloaded.end()) {
          if (u->second < 0 || r.offset < u->second) u->second = r.offset;
          continue;
        }
        if (!assigned.count(tp) || repositioned.count(tp)) continue;
        by_partition[tp].push_back(std::move(r));
      }
      bool failed = false;
      for (auto& [tp, recs] : by_partition) {
        if (failed || stopping()) {
          (void)consumer_->Seek(tp, recs.front().offset);  // not handled: read again later
          continue;
        }
        const auto started = SteadyClock::now();
        Result<int64_t> next = Status::OK();
        try {
          next = h.process(tp, recs);
        } catch (const std::exception& e) {
          next = Status::InvalidArgument(std::string("exception: ") + e.what());
        }
        handler_ms_.Observe(ElapsedMs(started));
        batch_records_.Observe(static_cast<double>(recs.size()));
        ++handler_calls_;
        const int64_t now = WallClockMs();
        if (!next.ok()) {
          ++failures_;
          {
            std::lock_guard lk(stats_mu_);
            ++failures_by_kind_[std::string(StatusCodeName(next.status().code()))];
          }
          breaker_.Record(false, now);
          (void)consumer_->Seek(tp, recs.front().offset);
          failed = true;
          continue;
        }
        breaker_.Record(true, now);
        int64_t applied = 0;
        for (const ConsumerRecord& r : recs) {
          if (r.offset < *next) {
            ++applied;
            end_to_end_ms_.Observe(static_cast<double>(now - r.timestamp_ms));
          }
        }
        acked_ += applied;
        if (*next != recs.back().offset + 1) (void)consumer_->Seek(tp, *next);
        (void)consumer_->Commit({{tp, *next}});  // for lag; the handler's store is the truth
      }
      if (failed) {
        ++failures_in_a_row;
        WaitMs(options_.retry.BackoffMs(failures_in_a_row, Random()));
      } else if (!by_partition.empty()) {
        failures_in_a_row = 0;
      }
    }
    consumer_->Close();
    return result;
  }

  const std::shared_ptr<client::Connection> conn_;
  const WorkerOptions options_;
  const Handler handler_;
  std::unique_ptr<client::Consumer> consumer_;
  mutable CircuitBreaker breaker_;
  RateLimiter rate_;
  int64_t extend_before_ms_ = 0;

  mutable std::mutex mu_;  // stop_, active_
  std::condition_variable cv_;
  bool stop_ = false;
  int64_t active_ = 0;  // handler calls posted and not finished

  std::mutex track_mu_;
  std::map<std::pair<int32_t, int64_t>, int64_t> locks_;  // running records -> lock expiry

  std::mutex settle_mu_;
  std::condition_variable settle_cv_;  // the settle thread waits here
  std::condition_variable extend_cv_;  // the extend thread waits here
  std::vector<Settle> settle_queue_;
  bool settle_stop_ = false;
  bool extend_stop_ = false;

  std::unique_ptr<ThreadPool> pool_;
  std::thread settler_;
  std::thread extender_;

  std::atomic<int64_t> received_{0}, acked_{0}, retried_{0}, dead_lettered_{0}, failures_{0},
      handler_calls_{0}, in_flight_{0}, lock_extensions_{0}, locks_lost_{0}, settle_errors_{0},
      rate_limited_ms_{0};
  mutable std::mutex stats_mu_;
  std::map<std::string, int64_t> failures_by_kind_;
  std::map<std::string, int64_t> dead_letters_by_reason_;
  Histogram handler_ms_;
  Histogram batch_records_;
  Histogram end_to_end_ms_;
  std::mutex rng_mu_;
  std::mt19937_64 rng_;
};

template <class H>
Result<std::unique_ptr<Worker>> Make(std::shared_ptr<client::Connection> c, WorkerOptions o, H h) {
  if constexpr (!std::is_same_v<H, PartitionHandler>) {
    if (!h) return Status::InvalidArgument("the worker needs a handler");
  }
  auto w = std::make_unique<WorkerImpl>(std::move(c), std::move(o), std::move(h));
  RUNNEL_RETURN_IF_ERROR(w->Init());
  return std::unique_ptr<Worker>(std::move(w));
}

}  // namespace

Result<std::unique_ptr<Worker>> Worker::Create(std::shared_ptr<client::Connection> c,
                                               WorkerOptions o, RecordHandler h) {
  return Make(std::move(c), std::move(o), std::move(h));
}
Result<std::unique_ptr<Worker>> Worker::Create(std::shared_ptr<client::Connection> c,
                                               WorkerOptions o, BatchHandler h) {
  return Make(std::move(c), std::move(o), std::move(h));
}
Result<std::unique_ptr<Worker>> Worker::Create(std::shared_ptr<client::Connection> c,
                                               WorkerOptions o, PartitionHandler h) {
  return Make(std::move(c), std::move(o), std::move(h));
}

}  // namespace runnel::worker
