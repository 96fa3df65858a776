// Redis Streams through hiredis. A partition is one stream, "<topic>:<p>". Producers pipeline
// XADD (up to kWindow commands in flight per connection); consumers read with XREADGROUP (NOACK
// for stream workloads), ack with XACK, and take nacked entries back with XAUTOCLAIM once they
// have been idle for the retry delay, which is how Redis Streams express a retry. The driver
// starts its own redis-server in a temp dir with the AOF fsync policy of the target, or uses
// --redis redis://host:port.
#include <hiredis/hiredis.h>
#include <unistd.h>

#include <atomic>
#include <charconv>
#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <thread>

#include "runnel/bench/driver.h"
#include "runnel/broker/launch.h"
#include "runnel/client/producer.h"
#include "scratch_server.h"

namespace runnel::bench {
namespace {

constexpr size_t kWindow = 1000;  // pipelined commands in flight per producer connection

struct ReplyDeleter {
  void operator()(redisReply* r) const { freeReplyObject(r); }
};
using Reply = std::unique_ptr<redisReply, ReplyDeleter>;

struct ContextDeleter {
  void operator()(redisContext* c) const { redisFree(c); }
};
using Context = std::unique_ptr<redisContext, ContextDeleter>;

Result<Context> Connect(const std::string& host, int port) {
  const timeval connect_timeout{5, 0};
  Context c(redisConnectWithTimeout(host.c_str(), port, connect_timeout));
  if (!c) return Status::IOError("redis: out of memory");
  if (c->err)
    return Status::IOError("redis " + host + ":" + std::to_string(port) + ": " + c->errstr);
  const timeval io_timeout{60, 0};
  redisSetTimeout(c.get(), io_timeout);
  return c;
}

Status ContextError(redisContext* c) { return Status::IOError(std::string("redis: ") + c->errstr); }

Result<Reply> Command(redisContext* c, const std::vector<std::string>& args) {
  std::vector<const char*> argv;
  std::vector<size_t> lens;
  for (const auto& a : args) {
    argv.push_back(a.data());
    lens.push_back(a.size());
  }
  Reply r(static_cast<redisReply*>(
      redisCommandArgv(c, static_cast<int>(args.size()), argv.data(), lens.data())));
  if (!r) return ContextError(c);
  if (r->type == REDIS_REPLY_ERROR) return Status::IOError(std::string("redis: ") + r->str);
  return r;
}

std::string StreamName(const std::string& topic, int p) { return topic + ":" + std::to_string(p); }

// Appends the entries of one stream's reply ([[id, [field, value, ...]], ...]).
void TakeEntries(const redisReply* entries, const std::string& stream, int32_t partition,
                 int32_t deliveries, std::vector<InMessage>* out) {
  if (!entries || entries->type != REDIS_REPLY_ARRAY) return;
  for (size_t i = 0; i < entries->elements; ++i) {
    const redisReply* e = entries->element[i];
    if (e->type != REDIS_REPLY_ARRAY || e->elements < 2) continue;
    InMessage m;
    m.stream = stream;
    m.partition = partition;
    m.id.assign(e->element[0]->str, e->element[0]->len);
    m.deliveries = deliveries;
    const redisReply* fields = e->element[1];
    if (fields->type == REDIS_REPLY_ARRAY) {
      for (size_t f = 0; f + 1 < fields->elements; f += 2) {
        if (std::string_view(fields->element[f]->str, fields->element[f]->len) == "v")
          m.value.assign(fields->element[f + 1]->str, fields->element[f + 1]->len);
      }
    }
    out->push_back(std::move(m));
  }
}

class RedisProducer final : public ProducerDriver {
 public:
  RedisProducer(Context c, std::string topic, int partitions, SendListener* listener)
      : ctx_(std::move(c)), listener_(listener) {
    for (int p = 0; p < partitions; ++p) streams_.push_back(StreamName(topic, p));
    io_ = std::thread([this] { Run(); });
  }
  ~RedisProducer() override {
    {
      std::lock_guard lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    io_.join();
  }

  void Send(OutMessage m, uint64_t token) override {
    std::unique_lock lock(mu_);
    space_cv_.wait(lock, [&] { return queue_.size() < 2 * kWindow || failed_; });
    if (failed_) {
      lock.unlock();
      return listener_->Done(token, error_);
    }
    queue_.push_back({std::move(m), token});
    ++outstanding_;
    cv_.notify_one();
  }

  Status Flush(int64_t timeout_ms) override {
    std::unique_lock lock(mu_);
    const bool ok = idle_cv_.wait_for(lock, std::chrono::milliseconds(timeout_ms),
                                      [&] { return outstanding_ == 0; });
    if (!ok) return Status::Timeout("redis: flush timed out");
    return failed_ ? error_ : Status::OK();
  }

 private:
  struct Item {
    OutMessage m;
    uint64_t token;
  };

  void Run() {
    std::deque<uint64_t> in_flight;
    std::vector<Item> batch;
    for (;;) {
      {
        std::unique_lock lock(mu_);
        cv_.wait(lock, [&] { return stop_ || !queue_.empty() || !in_flight.empty(); });
        if (stop_ && queue_.empty() && in_flight.empty()) return;
        while (!queue_.empty() && in_flight.size() + batch.size() < kWindow) {
          batch.push_back(std::move(queue_.front()));
          queue_.pop_front();
        }
      }
      space_cv_.notify_all();
      for (auto& item : batch) Append(item.m);
      for (auto& item : batch) in_flight.push_back(item.token);
      batch.clear();
      int done = 0;
      while (!done) {
        if (redisBufferWrite(ctx_.get(), &done) != REDIS_OK) return Fail(&in_flight);
      }
      // Wait for one reply, then take every other one already read.
      void* raw = nullptr;
      if (redisGetReply(ctx_.get(), &raw) != REDIS_OK) return Fail(&in_flight);
      size_t settled = 0;
      while (raw) {
        Reply r(static_cast<redisReply*>(raw));
        listener_->Done(in_flight.front(), r->type == REDIS_REPLY_ERROR
                                               ? Status::IOError(std::string("redis: ") + r->str)
                                               : Status::OK());
        in_flight.pop_front();
        ++settled;
        raw = nullptr;
        if (in_flight.empty() || redisReaderGetReply(ctx_.get()->reader, &raw) != REDIS_OK) break;
      }
      std::lock_guard lock(mu_);
      outstanding_ -= settled;
      if (outstanding_ == 0) idle_cv_.notify_all();
    }
  }

  void Append(const OutMessage& m) {
    const std::string& stream = streams_[NextPartition(m.key)];
    const char* argv[7] = {"XADD", stream.data(), "*", "v", m.value.data(), "k", nullptr};
    size_t lens[7] = {4, stream.size(), 1, 1, m.value.size(), 1, 0};
    int argc = 5;
    if (m.key) {
      argv[6] = m.key->data();
      lens[6] = m.key->size();
      argc = 7;
    }
    redisAppendCommandArgv(ctx_.get(), argc, argv, lens);
  }

  // Keys go where Runnel's producer puts them; keyless messages round-robin.
  size_t NextPartition(const std::optional<std::string>& key) {
    const auto n = static_cast<int32_t>(streams_.size());
    if (key) return static_cast<size_t>(client::PartitionForKey(*key, n));
    return static_cast<size_t>(next_++ % streams_.size());
  }

  // The connection broke: every queued and in-flight message fails.
  void Fail(std::deque<uint64_t>* in_flight) {
    const Status error = ContextError(ctx_.get());
    std::deque<Item> queued;
    {
      std::lock_guard lock(mu_);
      failed_ = true;
      error_ = error;
      queued.swap(queue_);
    }
    space_cv_.notify_all();
    for (uint64_t t : *in_flight) listener_->Done(t, error);
    for (auto& q : queued) listener_->Done(q.token, error);
    std::lock_guard lock(mu_);
    outstanding_ = 0;
    idle_cv_.notify_all();
  }

  Context ctx_;
  std::vector<std::string> streams_;  // one per partition
  SendListener* const listener_;
  uint64_t next_ = 0;
  std::mutex mu_;
  std::condition_variable cv_, space_cv_, idle_cv_;
  std::deque<Item> queue_;
  size_t outstanding_ = 0;
  bool stop_ = false;
  bool failed_ = false;
  Status error_;
  std::thread io_;
};

class RedisConsumer final : public ConsumerDriver {
 public:
  RedisConsumer(Context c, std::string topic, int partitions, std::string group, std::string name,
                ConsumerMode mode)
      : ctx_(std::move(c)), group_(std::move(group)), name_(std::move(name)), mode_(mode) {
    for (int p = 0; p < partitions; ++p) streams_.push_back(StreamName(topic, p));
  }

  Status Poll(int64_t timeout_ms, int max, std::vector<InMessage>* out) override {
    if (pending_nacks_ > 0 && std::chrono::steady_clock::now() >= next_claim_) {
      if (Status s = ClaimIdle(max, out); !s.ok() || !out->empty()) return s;
    }
    std::vector<std::string> args = {"XREADGROUP", "GROUP", group_, name_, "COUNT",
                                     std::to_string(max)};
    if (timeout_ms > 0) {
      // Wake up for the next claim when nacked entries are waiting.
      int64_t block = timeout_ms;
      if (pending_nacks_ > 0) block = std::min<int64_t>(block, std::max<int64_t>(1, delay_ms_ / 2));
      args.insert(args.end(), {"BLOCK", std::to_string(block)});
    }
    if (mode_ == ConsumerMode::kStream) args.push_back("NOACK");
    args.push_back("STREAMS");
    for (const auto& s : streams_) args.push_back(s);
    for (size_t i = 0; i < streams_.size(); ++i) args.push_back(">");
    auto r = Command(ctx_.get(), args);
    if (!r.ok()) return r.status();
    const redisReply* reply = r->get();
    if (reply->type != REDIS_REPLY_ARRAY) return Status::OK();  // nil: nothing arrived in time
    for (size_t i = 0; i < reply->elements; ++i) {
      const redisReply* s = reply->element[i];
      if (s->type != REDIS_REPLY_ARRAY || s->elements < 2) continue;
      const std::string stream(s->element[0]->str, s->element[0]->len);
      TakeEntries(s->element[1], stream, PartitionOf(stream), 1, out);
    }
    return Status::OK();
  }

  Status Ack(const std::vector<const InMessage*>& messages) override {
    std::map<std::string, std::vector<std::string>> by_stream;
    for (const InMessage* m : messages) by_stream[m->stream].push_back(m->id);
    for (auto& [stream, ids] : by_stream) {
      std::vector<std::string> args = {"XACK", stream, group_};
      args.insert(args.end(), ids.begin(), ids.end());
      if (auto r = Command(ctx_.get(), args); !r.ok()) return r.status();
    }
    return Status::OK();
  }

  // Redis has no nack: the entry stays pending and is claimed again once idle for the delay.
  Status Nack(const std::vector<const InMessage*>& messages, int64_t delay_ms) override {
    if (messages.empty()) return Status::OK();
    if (pending_nacks_ == 0)
      next_claim_ = std::chrono::steady_clock::now() + std::chrono::milliseconds(delay_ms);
    pending_nacks_ += messages.size();
    delay_ms_ = delay_ms;
    return Status::OK();
  }

 private:
  Status ClaimIdle(int max, std::vector<InMessage>* out) {
    for (const auto& stream : streams_) {
      auto r = Command(ctx_.get(), {"XAUTOCLAIM", stream, group_, name_, std::to_string(delay_ms_),
                                    "0-0", "COUNT", std::to_string(max)});
      if (!r.ok()) return r.status();
      const redisReply* reply = r->get();
      if (reply->type == REDIS_REPLY_ARRAY && reply->elements >= 2)
        TakeEntries(reply->element[1], stream, PartitionOf(stream), 2, out);
    }
    pending_nacks_ -= std::min(pending_nacks_, out->size());
    next_claim_ = std::chrono::steady_clock::now() + std::chrono::milliseconds(delay_ms_ / 2 + 1);
    return Status::OK();
  }

  int32_t PartitionOf(const std::string& stream) const {
    int32_t p = 0;
    const auto colon = stream.rfind(':');
    std::from_chars(stream.data() + colon + 1, stream.data() + stream.size(), p);
    return p;
  }

  Context ctx_;
  std::vector<std::string> streams_;
  const std::string group_;
  const std::string name_;
  const ConsumerMode mode_;
  size_t pending_nacks_ = 0;
  int64_t delay_ms_ = 0;
  std::chrono::steady_clock::time_point next_claim_;
};

class RedisDriver final : public Driver {
 public:
  RedisDriver(TargetOptions options, std::string policy)
      : options_(std::move(options)), policy_(std::move(policy)) {}
  ~RedisDriver() override { Finish(); }

  std::string Name() const override { return policy_.empty() ? "redis" : "redis:" + policy_; }

  std::string Settings(const WorkloadSpec& spec) const override {
    std::string s = options_.redis_url.empty() ? "redis-server " : "redis at " + options_.redis_url + " ";
    const std::string p = Policy(spec);
    s += p == "no" ? "appendonly no" : "appendonly yes, appendfsync " + p;
    s += "; pipelined XADD (" + std::to_string(kWindow) + " in flight per producer)";
    s += spec.kind == WorkloadKind::kQueue ? ", XREADGROUP + XACK, XAUTOCLAIM for retries"
                                           : ", XREADGROUP NOACK";
    return s;
  }

  Status Prepare(const WorkloadSpec& spec, const std::string& topic,
                 const std::string& group) override {
    if (Status s = Start(spec); !s.ok()) return s;
    auto c = Connect(host_, port_);
    if (!c.ok()) return c.status();
    for (int p = 0; p < spec.partitions; ++p) {
      auto r = Command(c->get(), {"XGROUP", "CREATE", StreamName(topic, p), group, "0", "MKSTREAM"});
      if (!r.ok() && r.status().ToString().find("BUSYGROUP") == std::string::npos) return r.status();
    }
    return Status::OK();
  }

  Result<std::unique_ptr<ProducerDriver>> NewProducer(const WorkloadSpec& spec,
                                                      const std::string& topic,
                                                      SendListener* listener) override {
    auto c = Connect(host_, port_);
    if (!c.ok()) return c.status();
    return std::unique_ptr<ProducerDriver>(
        new RedisProducer(std::move(c).value(), topic, spec.partitions, listener));
  }

  Result<std::unique_ptr<ConsumerDriver>> NewConsumer(const WorkloadSpec& spec,
                                                      const std::string& topic,
                                                      const std::string& group, ConsumerMode mode,
                                                      int index) override {
    auto c = Connect(host_, port_);
    if (!c.ok()) return c.status();
    return std::unique_ptr<ConsumerDriver>(new RedisConsumer(
        std::move(c).value(), topic, spec.partitions, group, "bench-" + std::to_string(index), mode));
  }

  void Finish() override { server_.Stop(); }

 private:
  std::string Policy(const WorkloadSpec& spec) const {
    if (!policy_.empty()) return policy_;
    switch (spec.acks) {
      case AckMode::kDurable: return "always";
      case AckMode::kWritten: return "everysec";
      case AckMode::kNone: return "no";
    }
    return "always";
  }

  Status Start(const WorkloadSpec& spec) {
    Finish();
    if (!options_.redis_url.empty()) {
      std::string_view url = options_.redis_url;
      if (url.starts_with("redis://")) url.remove_prefix(8);
      const auto colon = url.rfind(':');
      host_ = std::string(url.substr(0, colon));
      port_ = 6379;
      if (colon != std::string_view::npos) {
        auto [p, ec] = std::from_chars(url.data() + colon + 1, url.data() + url.size(), port_);
        if (ec != std::errc() || p != url.data() + url.size())
          return Status::InvalidArgument("--redis must be redis://host:port, not " + options_.redis_url);
      }
      auto c = Connect(host_, port_);
      if (!c.ok()) return c.status();
      // A fresh keyspace for every run, as a started server would have.
      auto r = Command(c->get(), {"FLUSHALL"});
      return r.ok() ? Status::OK() : r.status();
    }
    if (Status s = server_.MakeDir(options_.scratch_dir, "redis"); !s.ok()) return s;
    auto port = FreeLoopbackPort();
    if (!port.ok()) return port.status();
    host_ = "127.0.0.1";
    port_ = *port;
    const std::string policy = Policy(spec);
    std::vector<std::string> args = {options_.redis_server, "--port", std::to_string(port_),
                                     "--bind", "127.0.0.1", "--dir", server_.dir(), "--save", "",
                                     "--daemonize", "no", "--appendonly",
                                     policy == "no" ? "no" : "yes"};
    if (policy != "no") args.insert(args.end(), {"--appendfsync", policy});
    server_.Spawn(args, "redis.log");
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (std::chrono::steady_clock::now() < deadline) {
      if (auto c = Connect(host_, port_); c.ok()) {
        if (auto r = Command(c->get(), {"PING"}); r.ok()) return Status::OK();
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    const std::string log = broker::ReadTextFile(server_.Path("redis.log"));
    Finish();
    return Status::IOError("redis-server (" + options_.redis_server +
                           ") did not answer PING within 10 s: " + log);
  }

  TargetOptions options_;
  std::string policy_;  // always / everysec / no; empty: from the ack mode
  ScratchServer server_;
  std::string host_ = "127.0.0.1";
  int port_ = 0;
};

}  // namespace

std::unique_ptr<Driver> MakeRedisDriver(const TargetOptions& options, std::string fsync_policy) {
  return std::make_unique<RedisDriver>(options, std::move(fsync_policy));
}

}  // namespace runnel::bench
