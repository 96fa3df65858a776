// Producer internals. One sender thread seals batches (assigning idempotent sequence numbers),
// packs them into Produce requests and handles the answers on the connection's thread.
//
// Idempotence: per partition, batches carry (producer id, epoch, base sequence). A batch that
// failed with a retriable error goes back to the front of its partition's queue with the same
// sequence numbers once every earlier response is in, so the broker either stores it or
// recognizes it as a duplicate. If the broker reports a sequence gap for the oldest unacknowledged
// batch (it lost or expired our state, or an earlier batch failed for good), the partition's
// epoch is bumped and the remaining batches are renumbered from 0.
#include "runnel/client/producer.h"

#include <pthread.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include "runnel/common/clock.h"

namespace runnel::client {

int32_t Murmur2(std::string_view data) {
  const auto* p = reinterpret_cast<const uint8_t*>(data.data());
  const uint32_t len = static_cast<uint32_t>(data.size());
  const uint32_t m = 0x5bd1e995;
  uint32_t h = 0x9747b28c ^ len;
  const uint32_t len4 = len / 4;
  for (uint32_t i = 0; i < len4; ++i) {
    const uint32_t i4 = i * 4;
    uint32_t k = uint32_t{p[i4]} | (uint32_t{p[i4 + 1]} << 8) | (uint32_t{p[i4 + 2]} << 16) |
                 (uint32_t{p[i4 + 3]} << 24);
    k *= m;
    k ^= k >> 24;
    k *= m;
    h *= m;
    h ^= k;
  }
  const uint32_t tail = len & ~3u;
  switch (len % 4) {
    case 3:
      h ^= uint32_t{p[tail + 2]} << 16;
      [[fallthrough]];
    case 2:
      h ^= uint32_t{p[tail + 1]} << 8;
      [[fallthrough]];
    case 1:
      h ^= uint32_t{p[tail]};
      h *= m;
  }
  h ^= h >> 13;
  h *= m;
  h ^= h >> 15;
  return static_cast<int32_t>(h);
}

int32_t PartitionForKey(std::string_view key, int32_t partitions) {
  return (Murmur2(key) & 0x7fffffff) % partitions;
}

std::future<Result<RecordMetadata>> Producer::Send(ProducerRecord record) {
  auto promise = std::make_shared<std::promise<Result<RecordMetadata>>>();
  auto future = promise->get_future();
  Send(std::move(record),
       [promise](Result<RecordMetadata> r) { promise->set_value(std::move(r)); });
  return future;
}

namespace {

using SteadyClock = std::chrono::steady_clock;

struct Part;

struct Batch {
  std::string topic;
  int32_t partition = 0;
  Part* part = nullptr;
  RecordBatchBuilder builder;
  std::string bytes;  // set when sealed
  int32_t count = 0;
  int32_t base_seq = -1;
  std::vector<SendCallback> callbacks;
  size_t memory = 0;
  SteadyClock::time_point created;
  SteadyClock::time_point deadline;  // delivery timeout
  SteadyClock::time_point retry_at;
  bool failed = false;  // retriable failure, waiting to go back to the queue
};

struct Part {
  std::unique_ptr<Batch> open;
  std::deque<std::unique_ptr<Batch>> ready;      // sealed, in sequence order
  std::deque<std::unique_ptr<Batch>> in_flight;  // sent, in sequence order
  int32_t next_seq = 0;
  int16_t epoch = 0;
  bool resend = false;  // a retriable failure: requeue once in_flight settles
  bool bump = false;    // a sequence gap at the head: new epoch, renumber
  int awaiting = 0;     // responses outstanding
  size_t last_bytes = 0;  // the previous batch's size and count: reserved for the next
  size_t last_count = 0;
};

// What Send needs of a topic, found with one lookup.
struct TopicState {
  int32_t sticky = 0;         // the partition unkeyed records go to
  std::vector<Part*> parts;   // by partition; nodes of parts_, which never move
};

// A batch whose records are done: its callbacks run outside the lock, each with its record's
// metadata made there.
struct Completion {
  std::unique_ptr<Batch> batch;
  Status status;
  int64_t base_offset = -1;
  std::vector<proto::DuplicateWire> duplicates;
};

class ProducerImpl final : public Producer {
 public:
  ProducerImpl(std::shared_ptr<Connection> c, const ProducerOptions& o, int64_t pid)
      : conn_(std::move(c)), options_(o), producer_id_(pid) {
    stats_.producer_id = pid;
    sender_ = std::thread([this] {
      pthread_setname_np(pthread_self(), "runnel-produce");
      SenderLoop();
    });
  }

  ~ProducerImpl() override { Close(); }

  void Send(ProducerRecord rec, SendCallback done) override;
  Status Flush(int64_t timeout_ms) override;
  void Close() override;
  Stats GetStats() const override {
    std::lock_guard lk(mu_);
    return stats_;
  }

 private:
  // Finds or sets up the topic (a metadata call the first time). Called and returns with `lk`
  // held; may release it while asking the broker.
  Result<TopicState*> Topic(const std::string& topic, std::unique_lock<std::mutex>& lk);
  void Seal(Part& p);
  void SenderLoop();
  void OnResponse(std::vector<Batch*> batches, Result<proto::ProduceResponse> r);
  void Settle(Part& p);
  void Complete(std::unique_ptr<Batch> b, const Status& s, const proto::ProducePartitionResult* r,
                std::vector<Completion>* done);
  // Runs callbacks outside the lock; a record counts as complete (for Flush and Close) only once
  // its callback returned.
  void Run(std::vector<Completion>& done) {
    if (done.empty()) return;
    uint64_t n = 0;
    for (Completion& c : done) {
      RunCallbacks(c);
      n += c.batch->callbacks.size();
    }
    done.clear();
    // Notify under the lock: once Flush sees the last completion, its caller may destroy the
    // producer, so this thread must not touch the condition variables after unlocking.
    std::lock_guard lk(mu_);
    incomplete_ -= std::min<uint64_t>(incomplete_, n);
    idle_.notify_all();
    wake_.notify_all();
  }

  static void RunCallbacks(Completion& c);

  std::shared_ptr<Connection> conn_;
  const ProducerOptions options_;
  const int64_t producer_id_;

  mutable std::mutex mu_;
  std::condition_variable wake_;   // the sender
  std::condition_variable space_;  // buffer memory freed
  std::condition_variable idle_;   // a record completed
  std::map<std::pair<std::string, int32_t>, Part> parts_;
  std::map<std::string, TopicState, std::less<>> topics_;
  size_t used_ = 0;
  uint64_t incomplete_ = 0;
  int flushers_ = 0;
  bool closing_ = false;
  bool stopped_ = false;
  Stats stats_;
  std::mutex metadata_mu_;
  std::thread sender_;
};

Result<TopicState*> ProducerImpl::Topic(const std::string& topic,
                                         std::unique_lock<std::mutex>& lk) {
  if (auto it = topics_.find(topic); it != topics_.end()) return &it->second;
  lk.unlock();
  Result<int32_t> count = [&]() -> Result<int32_t> {
    std::lock_guard one(metadata_mu_);
    {
      std::lock_guard again(mu_);  // another Send may have asked meanwhile
      if (auto it = topics_.find(topic); it != topics_.end()) {
        return static_cast<int32_t>(it->second.parts.size());
      }
    }
    proto::MetadataRequest req;
    req.topics = {topic};
    req.allow_auto_create = true;
    const auto deadline = SteadyClock::now() + std::chrono::milliseconds(options_.max_block_ms);
    for (;;) {
      auto r = Call<proto::MetadataResponse>(*conn_, req, options_.request_timeout_ms);
      Status s = r.status();
      if (r.ok()) {
        if (r->topics.size() != 1) return Status::Corruption("metadata answer without the topic");
        if (!r->topics[0].error.ok()) return r->topics[0].error.ToStatus();
        const int32_t n = static_cast<int32_t>(r->topics[0].partitions.size());
        if (n <= 0) return Status::Corruption("topic '" + topic + "' has no partitions");
        return n;
      }
      if (!IsRetriable(s) || SteadyClock::now() >= deadline) return s;
      std::this_thread::sleep_for(std::chrono::milliseconds(options_.retry_backoff_ms));
    }
  }();
  lk.lock();
  if (!count.ok()) return count.status();
  auto [it, fresh] = topics_.try_emplace(topic);
  if (fresh) {
    for (int32_t i = 0; i < *count; ++i) it->second.parts.push_back(&parts_[{topic, i}]);
  }
  return &it->second;
}

void ProducerImpl::Send(ProducerRecord rec, SendCallback done) {
  if (rec.topic.empty()) return done(Status::InvalidArgument("record has no topic"));
  size_t size = 64 + (rec.key ? rec.key->size() : 0) + (rec.value ? rec.value->size() : 0);
  for (const auto& [k, v] : rec.headers) size += k.size() + (v ? v->size() : 0) + 8;

  std::unique_lock lk(mu_);
  auto topic = Topic(rec.topic, lk);
  if (!topic.ok()) {
    lk.unlock();
    return done(topic.status());
  }
  TopicState& t = **topic;
  const auto count = static_cast<int32_t>(t.parts.size());
  int32_t partition;
  if (rec.partition) {
    if (*rec.partition < 0 || *rec.partition >= count) {
      lk.unlock();
      return done(Status::NotFound("partition " + std::to_string(*rec.partition) + " of '" +
                                   rec.topic + "' does not exist (" + std::to_string(count) +
                                   " partitions)"));
    }
    partition = *rec.partition;
  } else if (rec.key) {
    partition = PartitionForKey(*rec.key, count);
  } else {
    partition = t.sticky % count;
  }
  if (closing_) {
    lk.unlock();
    return done(Status::Shutdown("producer is closed"));
  }
  if (used_ + size > options_.buffer_memory && used_ > 0) {
    if (!options_.block_on_buffer_full) {
      lk.unlock();
      return done(Status::Busy("producer buffer memory is full"));
    }
    if (!space_.wait_for(lk, std::chrono::milliseconds(options_.max_block_ms), [&] {
          return used_ + size <= options_.buffer_memory || used_ == 0 || closing_;
        })) {
      lk.unlock();
      return done(Status::Timeout("producer buffer memory stayed full for " +
                                  std::to_string(options_.max_block_ms) + " ms"));
    }
    if (closing_) {
      lk.unlock();
      return done(Status::Shutdown("producer is closed"));
    }
  }
  Part& p = *t.parts[static_cast<size_t>(partition)];
  if (!p.open) {
    p.open = std::make_unique<Batch>();
    p.open->topic = rec.topic;
    p.open->partition = partition;
    p.open->part = &p;
    p.open->builder.options().compression = options_.compression;
    p.open->builder.Reserve(std::min(p.last_bytes + p.last_bytes / 8, options_.batch_bytes + 4096));
    p.open->callbacks.reserve(p.last_count);
    p.open->created = SteadyClock::now();
    p.open->deadline = p.open->created + std::chrono::milliseconds(options_.delivery_timeout_ms);
  }
  std::vector<RecordHeader> headers;
  headers.reserve(rec.headers.size());
  for (const auto& [k, v] : rec.headers) {
    headers.push_back({k, v ? std::optional<std::string_view>(*v) : std::nullopt});
  }
  auto view = [](const std::optional<std::string>& s) {
    return s ? std::optional<std::string_view>(*s) : std::nullopt;
  };
  p.open->builder.Add(rec.timestamp_ms ? rec.timestamp_ms : WallClockMs(), view(rec.key),
                      view(rec.value), headers);
  p.open->callbacks.push_back(std::move(done));
  p.open->memory += size;
  used_ += size;
  ++incomplete_;
  if (p.open->builder.uncompressed_bytes() >= options_.batch_bytes) {
    Seal(p);
    if (!rec.partition && !rec.key) ++t.sticky;  // sticky: move on with a new batch
    wake_.notify_one();
  } else if (p.open->callbacks.size() == 1) {
    wake_.notify_one();  // a new linger timer
  }
}

void ProducerImpl::Seal(Part& p) {
  std::unique_ptr<Batch> b = std::move(p.open);
  b->count = b->builder.record_count();
  p.last_bytes = b->builder.uncompressed_bytes();
  p.last_count = b->callbacks.size();
  if (producer_id_ >= 0) {
    b->base_seq = p.next_seq;
    p.next_seq = static_cast<int32_t>((static_cast<int64_t>(p.next_seq) + b->count) & 0x7fffffff);
    auto& o = b->builder.options();
    o.producer_id = producer_id_;
    o.producer_epoch = p.epoch;
    o.base_sequence = b->base_seq;
  }
  // Built here, on the thread that filled it: building on the sender thread instead let Send run
  // ahead into a full buffer and was slower (measured), besides complicating renumbering.
  b->bytes = b->builder.Build();
  b->retry_at = SteadyClock::now();
  p.ready.push_back(std::move(b));
}

void ProducerImpl::SenderLoop() {
  std::unique_lock lk(mu_);
  for (;;) {
    const auto now = SteadyClock::now();
    auto next_wake = now + std::chrono::milliseconds(100);
    std::vector<Completion> completions;
    // Seal batches whose linger passed (or everything, when flushing or closing). A partition
    // that cannot send now (its in-flight window is full, or batches wait ahead of it) keeps
    // gathering records in its open batch up to batch_bytes, as Kafka's producer does: sealing
    // each lingered record alone would queue one tiny batch per record behind the window, and
    // at linger 0 a producer pushed near its round-trip rate would fall further behind with
    // every record. A response frees the window and wakes this loop.
    for (auto& [key, p] : parts_) {
      if (!p.open) continue;
      const auto due = p.open->created + std::chrono::milliseconds(options_.linger_ms);
      const bool can_send = !p.resend && !p.bump && p.ready.empty() &&
                            static_cast<int>(p.in_flight.size()) < options_.max_in_flight_per_partition;
      if (flushers_ > 0 || closing_ || (due <= now && can_send)) {
        Seal(p);
      } else if (due > now) {
        next_wake = std::min(next_wake, due);
      }
    }
    // Pack ready batches into one request, respecting per-partition in-flight limits and order.
    std::vector<Batch*> sending;
    proto::ProduceRequest req;
    req.acks = static_cast<uint8_t>(options_.acks);
    size_t bytes = 0;
    for (auto& [key, p] : parts_) {
      if (p.resend || p.bump) continue;
      while (!p.ready.empty() && bytes < options_.max_request_bytes &&
             static_cast<int>(p.in_flight.size()) < options_.max_in_flight_per_partition) {
        Batch* b = p.ready.front().get();
        if (b->deadline <= now) {  // delivery timeout while waiting
          std::unique_ptr<Batch> dead = std::move(p.ready.front());
          p.ready.pop_front();
          Complete(std::move(dead),
                   Status::Timeout("record not acknowledged within delivery timeout"), nullptr,
                   &completions);
          continue;
        }
        if (b->retry_at > now) {
          next_wake = std::min(next_wake, b->retry_at);
          break;
        }
        bytes += b->bytes.size();
        req.partitions.push_back({b->topic, b->partition, proto::Payload{b->bytes}});
        sending.push_back(b);
        p.in_flight.push_back(std::move(p.ready.front()));
        p.ready.pop_front();
        ++p.awaiting;
      }
    }
    if (!sending.empty()) {
      stats_.batches_sent += sending.size();
      lk.unlock();
      Run(completions);
      CallAsync<proto::ProduceResponse>(
          *conn_, std::move(req), options_.request_timeout_ms,
          [this, sending](Result<proto::ProduceResponse> r) { OnResponse(sending, std::move(r)); });
      lk.lock();
      continue;
    }
    if (!completions.empty()) {
      lk.unlock();
      Run(completions);
      lk.lock();
      continue;
    }
    if (closing_ && incomplete_ == 0) break;
    wake_.wait_until(lk, next_wake);
  }
  stopped_ = true;
}

void ProducerImpl::Complete(std::unique_ptr<Batch> b, const Status& s,
                            const proto::ProducePartitionResult* r, std::vector<Completion>* done) {
  if (s.ok()) {
    stats_.records_sent += static_cast<uint64_t>(b->count);
  } else {
    ++stats_.errors;
  }
  used_ -= std::min(used_, b->memory);
  space_.notify_all();
  Completion& c = done->emplace_back();
  c.batch = std::move(b);
  c.status = s;
  if (s.ok()) {
    c.base_offset = r->base_offset;
    c.duplicates = r->duplicates;
  }
}

void ProducerImpl::RunCallbacks(Completion& c) {
  Batch& b = *c.batch;
  if (!c.status.ok()) {
    for (auto& cb : b.callbacks) cb(c.status);
    return;
  }
  // Record i's offset: its original's when the dedup window dropped it, else the next offset
  // after the records kept before it.
  std::sort(c.duplicates.begin(), c.duplicates.end(),
            [](const auto& x, const auto& y) { return x.index < y.index; });
  auto dup = c.duplicates.begin();
  int64_t next = c.base_offset;
  for (size_t i = 0; i < b.callbacks.size(); ++i) {
    RecordMetadata md{b.topic, b.partition, -1, false};
    while (dup != c.duplicates.end() && dup->index < static_cast<int32_t>(i)) ++dup;
    if (dup != c.duplicates.end() && dup->index == static_cast<int32_t>(i)) {
      md.partition = dup->partition;
      md.offset = dup->offset;
      md.duplicate = true;
    } else if (next >= 0) {
      md.offset = next++;
    }
    b.callbacks[i](std::move(md));
  }
}

void ProducerImpl::OnResponse(std::vector<Batch*> batches, Result<proto::ProduceResponse> r) {
  std::vector<Completion> completions;
  {
    std::lock_guard lk(mu_);
    std::set<Part*> touched;
    for (size_t i = 0; i < batches.size(); ++i) {
      Batch* b = batches[i];
      Part& p = *b->part;
      touched.insert(&p);
      --p.awaiting;
      Status s = r.status();
      const proto::ProducePartitionResult* pr = nullptr;
      if (r.ok()) {
        if (i < r->partitions.size()) {
          pr = &r->partitions[i];
          s = pr->error.ToStatus();
        } else {
          s = Status::Corruption("produce response is missing a partition");
        }
      }
      auto it = std::find_if(p.in_flight.begin(), p.in_flight.end(),
                             [b](const auto& x) { return x.get() == b; });
      if (it == p.in_flight.end()) continue;
      const bool head = it == p.in_flight.begin();
      if (s.ok()) {
        std::unique_ptr<Batch> done = std::move(*it);
        p.in_flight.erase(it);
        Complete(std::move(done), s, pr, &completions);
      } else if (s.code() == StatusCode::kOutOfOrderSequence && producer_id_ >= 0) {
        // At the head: the broker does not know our last sequence; renumber under a new epoch.
        // Behind a failed batch: resend in order.
        (*it)->failed = true;
        if (head) p.bump = true;
        p.resend = true;
      } else if (IsRetriable(s) && SteadyClock::now() < b->deadline) {
        (*it)->failed = true;
        p.resend = true;
      } else {
        std::unique_ptr<Batch> dead = std::move(*it);
        p.in_flight.erase(it);
        Complete(std::move(dead), s, nullptr, &completions);
        if (producer_id_ >= 0) p.resend = true;  // successors will see a gap: settle, then bump
      }
    }
    for (Part* p : touched) Settle(*p);
    wake_.notify_one();
  }
  Run(completions);
}

// Once every response of a partition is in, put failed batches back in front of the queue, in
// order; a sequence gap at the head starts a new epoch and renumbers what is left.
void ProducerImpl::Settle(Part& p) {
  if (p.awaiting > 0 || !p.resend) return;
  const auto retry_at = SteadyClock::now() + std::chrono::milliseconds(options_.retry_backoff_ms);
  while (!p.in_flight.empty()) {
    std::unique_ptr<Batch> b = std::move(p.in_flight.back());
    p.in_flight.pop_back();
    b->failed = false;
    b->retry_at = retry_at;
    p.ready.push_front(std::move(b));
    ++stats_.retries;
  }
  if (p.bump && producer_id_ >= 0) {
    p.epoch = static_cast<int16_t>(p.epoch == INT16_MAX ? 0 : p.epoch + 1);
    int32_t seq = 0;
    for (auto& b : p.ready) {
      b->base_seq = seq;
      SetBatchProducer(b->bytes, producer_id_, p.epoch, seq);
      seq += b->count;
    }
    p.next_seq = seq;
  }
  p.resend = false;
  p.bump = false;
}

Status ProducerImpl::Flush(int64_t timeout_ms) {
  std::unique_lock lk(mu_);
  ++flushers_;
  wake_.notify_one();
  auto pred = [&] { return incomplete_ == 0; };
  bool ok = true;
  if (timeout_ms < 0) {
    idle_.wait(lk, pred);
  } else {
    ok = idle_.wait_for(lk, std::chrono::milliseconds(timeout_ms), pred);
  }
  --flushers_;
  return ok ? Status::OK() : Status::Timeout("flush did not complete in time");
}

void ProducerImpl::Close() {
  {
    std::lock_guard lk(mu_);
    if (closing_ && !sender_.joinable()) return;
    closing_ = true;
  }
  wake_.notify_all();
  space_.notify_all();
  if (sender_.joinable()) sender_.join();
}

}  // namespace

Result<std::unique_ptr<Producer>> Producer::Create(std::shared_ptr<Connection> connection,
                                                   const ProducerOptions& options) {
  if (options.batch_bytes == 0 || options.max_in_flight_per_partition <= 0) {
    return Status::InvalidArgument("batch_bytes and max_in_flight_per_partition must be positive");
  }
  if (options.compression != Compression::kNone && options.compression != Compression::kLz4) {
    return Status::InvalidArgument("the producer writes none or lz4");
  }
  int64_t pid = -1;
  if (options.idempotence) {
    auto r = Call<proto::InitProducerIdResponse>(*connection, proto::InitProducerIdRequest{},
                                                 options.request_timeout_ms);
    if (!r.ok()) return r.status();
    pid = r->producer_id;
  }
  return std::unique_ptr<Producer>(new ProducerImpl(std::move(connection), options, pid));
}

}  // namespace runnel::client
