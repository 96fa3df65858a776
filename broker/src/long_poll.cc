// The core's long-polls: Fetch (partition reads that wait for min_bytes) and Deliver (queue-group
// deliveries that wait for records or retries coming due).
#include <algorithm>

#include "broker_impl.h"
#include "runnel/broker/metrics.h"
#include "runnel/common/record_batch.h"

namespace runnel::broker {
namespace {

uint64_t CountRecords(std::string_view batches) {
  uint64_t n = 0;
  while (batches.size() >= kBatchHeaderSize) {
    BatchHeader h;
    if (!PeekBatchHeader(batches, &h).ok()) break;
    n += static_cast<uint64_t>(std::max(0, h.record_count));
    batches.remove_prefix(std::min(batches.size(), h.total_size()));
  }
  return n;
}

}  // namespace

struct Broker::Impl::FetchState {
  FetchSpec spec;
  FetchCallback done;
  SteadyClock::time_point deadline;
};

struct Broker::Impl::DeliverState {
  DeliverSpec spec;
  DeliverCallback done;
  SteadyClock::time_point deadline;
};

void Broker::Fetch(FetchSpec spec, FetchCallback done) {
  auto st = std::make_shared<Impl::FetchState>();
  const int32_t wait = std::clamp(spec.max_wait_ms, 0, options_.max_wait_ms);
  st->deadline = Impl::SteadyClock::now() + std::chrono::milliseconds(wait);
  st->spec = std::move(spec);
  st->done = std::move(done);
  impl_->FetchRound(st, false);
}

void Broker::Impl::FetchRound(const std::shared_ptr<FetchState>& st, bool final_attempt) {
  storage::LogStore& store = broker.store();
  const FetchSpec& spec = st->spec;
  std::vector<FetchPartitionResult> out;
  out.reserve(spec.partitions.size());
  int64_t total = 0;
  bool any_error = false;
  std::vector<int64_t> seen_end(spec.partitions.size(), -1);  // high watermarks read up to
  for (size_t i = 0; i < spec.partitions.size(); ++i) {
    const FetchPartitionSpec& p = spec.partitions[i];
    FetchPartitionResult r;
    const int64_t room = std::min<int64_t>(p.max_bytes, spec.max_bytes - total);
    if (room <= 0 && total > 0) {
      // The response is full: report positions only.
      auto hwm = store.ListOffset(p.topic, Partition(p.partition), storage::OffsetQuery::Latest());
      if (hwm.ok()) r.high_watermark = hwm->value();
      auto start =
          store.ListOffset(p.topic, Partition(p.partition), storage::OffsetQuery::Earliest());
      if (start.ok()) r.log_start = start->value();
      out.push_back(std::move(r));
      continue;
    }
    auto read = store.Read(p.topic, Partition(p.partition), Offset(p.offset),
                           static_cast<size_t>(std::max<int64_t>(room, 1)));
    if (read.ok()) {
      r.high_watermark = read->high_watermark.value();
      r.log_start = read->log_start.value();
      total += static_cast<int64_t>(read->records.size());
      if (!read->records.empty()) {
        broker.metrics().OnFetched(p.topic, p.partition, CountRecords(read->records),
                                   read->records.size());
      }
      r.records = std::move(read->records);
    } else {
      any_error = true;
      r.status = read.status();
      auto start =
          store.ListOffset(p.topic, Partition(p.partition), storage::OffsetQuery::Earliest());
      auto end = store.ListOffset(p.topic, Partition(p.partition), storage::OffsetQuery::Latest());
      if (start.ok()) r.log_start = start->value();
      if (end.ok()) r.high_watermark = end->value();
    }
    seen_end[i] = r.high_watermark;
    out.push_back(std::move(r));
  }
  const bool satisfied = total >= std::max(1, spec.min_bytes) || any_error;
  if (satisfied || final_attempt || spec.max_wait_ms <= 0 || shutting_down.load() ||
      SteadyClock::now() >= st->deadline) {
    return st->done(std::move(out));
  }
  std::vector<std::string> keys;
  keys.reserve(spec.partitions.size());
  for (const auto& p : spec.partitions) keys.push_back(PartitionKey(p.topic, p.partition));
  // Something new since this round read: not merely data past the fetch offset, or a fetch
  // waiting for min_bytes would fire, re-read and park again in a loop until more arrived.
  auto ready = [this, st, seen_end = std::move(seen_end)] {
    for (size_t i = 0; i < st->spec.partitions.size(); ++i) {
      const FetchPartitionSpec& p = st->spec.partitions[i];
      auto hwm = broker.store().ListOffset(p.topic, Partition(p.partition),
                                           storage::OffsetQuery::Latest());
      if (hwm.ok() && hwm->value() > std::max(p.offset, seen_end[i])) return true;
    }
    return false;
  };
  // A woken fetch that any new record satisfies reads the tail from memory once and answers:
  // it runs right away on the notifying (committer) thread. One waiting for min_bytes may read
  // and park again many times before it is satisfied; it goes to the workers, so the committer
  // never spends its rounds re-reading logs for it.
  const bool run_inline = spec.min_bytes <= 1;
  waiters.Wait(
      std::move(keys), st->deadline, [this, st](bool timed_out) { FetchRound(st, timed_out); },
      ready, run_inline);
}

void Broker::Deliver(DeliverSpec spec, DeliverCallback done) {
  auto st = std::make_shared<Impl::DeliverState>();
  const int32_t wait = std::clamp(spec.max_wait_ms, 0, options_.max_wait_ms);
  st->deadline = Impl::SteadyClock::now() + std::chrono::milliseconds(wait);
  st->spec = std::move(spec);
  st->done = std::move(done);
  impl_->workers.Post([impl = impl_.get(), st] { impl->DeliverRound(st); });
}

void Broker::Impl::DeliverRound(const std::shared_ptr<DeliverState>& st) {
  const DeliverSpec& spec = st->spec;
  auto topic = broker.GroupTopic(spec.group);
  std::string name = topic.ok() ? *topic : std::string();
  // Answered once the locks and delivery counts are confirmed: on the committer thread, or on
  // this one when nothing was written.
  broker.groups().DeliverAsync(
      spec.group, spec.consumer, spec.max_records, static_cast<size_t>(std::max(1, spec.max_bytes)),
      [this, st, name = std::move(name)](Result<std::vector<storage::DeliveredRecord>> records) {
        const auto now = SteadyClock::now();
        if (records.ok() && records->empty() && !name.empty() && now < st->deadline &&
            !shutting_down.load()) {
          // Nothing deliverable: wait for new records on the topic; look again at least every
          // 100 ms for retries and expired locks coming due. Parking only registers the waiter;
          // its callback runs on the workers, so a deliver never runs on the committer thread.
          const auto wake = std::min(st->deadline, now + std::chrono::milliseconds(100));
          waiters.Wait(
              {name}, wake, [this, st](bool) { DeliverRound(st); }, nullptr);
          return;
        }
        st->done(name, std::move(records));
      });
}

}  // namespace runnel::broker
