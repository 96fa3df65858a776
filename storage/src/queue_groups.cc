// Queue groups: deliver, ack, nack, reject, extend and claim, the pending-entry bookkeeping
// behind them, the pending list and cursor moves.
#include <algorithm>

#include "group_manager.h"
#include "log_store_impl.h"
#include "logging.h"

namespace runnel::storage {

namespace fmt = format;

namespace {

std::string RefName(int32_t p, int64_t offset) {
  return std::to_string(p) + ":" + std::to_string(offset);
}

DeliveredRecord ToDelivered(int32_t p, int64_t offset, LoadedRecord rec, const PelEntry& e) {
  DeliveredRecord d;
  d.partition = Partition(p);
  d.offset = Offset(offset);
  d.timestamp_ms = rec.timestamp_ms;
  d.key = std::move(rec.key);
  d.value = std::move(rec.value);
  d.headers = std::move(rec.headers);
  d.deliveries = e.deliveries;
  d.lock_until_ms = e.due_ms;
  return d;
}

// The longest nack delay (a retry backoff).
constexpr int64_t kMaxDelayMs = 30LL * 24 * 3600 * 1000;

// Consumer names are kept with every record locked to them: bounded, so a client cannot make
// each pending entry carry megabytes.
constexpr size_t kMaxConsumerNameBytes = 255;

Status ValidateConsumerName(std::string_view consumer) {
  if (consumer.empty()) return Status::InvalidArgument("consumer name is empty");
  if (consumer.size() > kMaxConsumerNameBytes) {
    return Status::InvalidArgument("consumer name of " + std::to_string(consumer.size()) +
                                   " bytes is longer than the limit of " +
                                   std::to_string(kMaxConsumerNameBytes));
  }
  return Status::OK();
}

}  // namespace

GroupRecordReader& GroupManager::ReaderFor(GroupState& g) {
  if (!g.reader) g.reader = std::make_unique<GroupRecordReader>(store_, g.config.topic);
  return *g.reader;
}

uint32_t GroupManager::ConsumerId(GroupState& g, std::string_view consumer, int64_t now) {
  auto [it, fresh] =
      g.consumer_ids.try_emplace(std::string(consumer), static_cast<uint32_t>(g.consumers.size()));
  if (fresh) g.consumers.push_back({std::string(consumer), 0, now});
  g.consumers[it->second].last_seen_ms = now;
  return it->second;
}

Result<std::vector<std::pair<int32_t, int64_t>>> GroupManager::BeginRefOp(
    GroupState& g, std::string_view consumer, std::span<const RecordRef> refs, int64_t now) {
  RUNNEL_RETURN_IF_ERROR(CheckLive(g));
  RUNNEL_ASSIGN_OR_RETURN(auto entries, CheckRefs(g, consumer, refs));
  ConsumerId(g, consumer, now);
  return entries;
}

Result<std::vector<std::pair<int32_t, int64_t>>> GroupManager::CheckRefs(
    GroupState& g, std::string_view consumer, std::span<const RecordRef> refs) const {
  if (refs.empty()) return Status::InvalidArgument("no records given");
  auto cid = g.consumer_ids.find(std::string(consumer));
  std::vector<std::pair<int32_t, int64_t>> out;
  for (const RecordRef& ref : refs) {
    const int32_t p = ref.partition.value();
    const int64_t off = ref.offset.value();
    if (p < 0 || static_cast<size_t>(p) >= g.parts.size()) {
      return Status::NotFound("partition " + std::to_string(p) + " does not exist in group '" +
                              g.name + "'");
    }
    auto it = g.parts[static_cast<size_t>(p)].pel.find(off);
    if (it == g.parts[static_cast<size_t>(p)].pel.end() ||
        it->second.state != fmt::PendingState::kLocked) {
      return Status::NotFound("record " + RefName(p, off) + " is not pending in group '" + g.name +
                              "'");
    }
    if (cid == g.consumer_ids.end() || it->second.consumer != cid->second) {
      return Status::InvalidArgument("record " + RefName(p, off) + " is locked by consumer '" +
                                     g.consumers[it->second.consumer].name + "', not '" +
                                     std::string(consumer) + "'");
    }
    out.emplace_back(p, off);
  }
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

void GroupManager::EraseDue(GroupState& g, int32_t p, int64_t offset, const PelEntry& e) {
  if (e.state == fmt::PendingState::kLocked || e.state == fmt::PendingState::kRetry) {
    g.due.erase(DueKey{e.due_ms, p, offset});
  }
  if (e.state == fmt::PendingState::kLocked) --g.consumers[e.consumer].pending;
}

void GroupManager::Lock(GroupState& g, int32_t p, int64_t offset, PelEntry& e, uint32_t consumer,
                        int64_t now) {
  EraseDue(g, p, offset, e);
  e.state = fmt::PendingState::kLocked;
  e.consumer = consumer;
  ++e.deliveries;
  e.due_ms = now + g.config.lock_timeout_ms;
  if (e.first_delivery_ms == 0) e.first_delivery_ms = now;
  e.last_active_ms = now;
  g.due.insert(DueKey{e.due_ms, p, offset});
  ++g.consumers[consumer].pending;
  ++g.counters.deliveries;
  if (e.deliveries > 1) ++g.counters.redeliveries;
}

void GroupManager::Finish(GroupState& g, int32_t p, int64_t offset, int64_t now) {
  auto& pel = g.parts[static_cast<size_t>(p)].pel;
  auto it = pel.find(offset);
  if (it == pel.end()) return;
  EraseDue(g, p, offset, it->second);
  if (it->second.key) {
    auto kq = g.key_queues.find({p, *it->second.key});
    if (kq != g.key_queues.end()) {
      auto& q = kq->second;
      q.erase(std::find(q.begin(), q.end(), offset));
      if (q.empty()) {
        g.key_queues.erase(kq);
      } else if (auto next = pel.find(q.front());
                 next != pel.end() && next->second.state == fmt::PendingState::kParked) {
        // The key is free again: its next record becomes deliverable now.
        next->second.state = fmt::PendingState::kRetry;
        next->second.due_ms = now;
        g.due.insert(DueKey{now, p, next->first});
        PutEntry(g, p, next->first, next->second);
      }
    }
  }
  pel.erase(it);
}

void GroupManager::RetireToDeadLetters(GroupState& g, int32_t p, int64_t offset, std::string reason,
                                       int64_t now, std::vector<DeadLetterMove>* dead) {
  PelEntry& e = g.parts[static_cast<size_t>(p)].pel.at(offset);
  if (e.first_failure_ms == 0) e.first_failure_ms = now;
  auto rec = ReaderFor(g).Get(p, offset);
  if (rec.ok()) {
    dead->push_back(
        {p, offset, std::move(rec).value(), e.deliveries, e.first_failure_ms, std::move(reason)});
  } else {
    g.overlay.Delete(fmt::PendingKey(g.id, p, offset));  // the record is gone: nothing to copy
  }
  Finish(g, p, offset, now);
}

Result<std::optional<LoadedRecord>> GroupManager::LoadPending(GroupState& g, int32_t p,
                                                              int64_t offset, int64_t now) {
  auto rec = ReaderFor(g).Get(p, offset);
  if (rec.ok()) return std::optional<LoadedRecord>(std::move(rec).value());
  if (!rec.status().IsOutOfRange()) return rec.status();
  // Retention removed the record: nothing left to deliver, the entry is done.
  Finish(g, p, offset, now);
  g.overlay.Delete(fmt::PendingKey(g.id, p, offset));
  return std::optional<LoadedRecord>();
}

void GroupManager::PutEntry(GroupState& g, int32_t p, int64_t offset, const PelEntry& e,
                            bool fresh) {
  fmt::PendingValue v{
      e.state,
      e.deliveries,
      e.due_ms,
      e.first_delivery_ms,
      e.last_active_ms,
      e.first_failure_ms,
      e.last_failure_ms,
      e.state == fmt::PendingState::kLocked ? g.consumers[e.consumer].name : std::string()};
  g.overlay.Put(fmt::PendingKey(g.id, p, offset), fmt::Encode(v), fresh);
}

void GroupManager::PutCursor(GroupState& g, int32_t p) {
  g.overlay.Put(fmt::OffsetKey(g.id, g.topic_id, p),
                fmt::Encode(fmt::OffsetValue{g.parts[static_cast<size_t>(p)].cursor, 0, {}}));
}

void GroupManager::GrowPartitions(GroupState& g) {
  auto topic = store_.FindTopic(g.config.topic);
  if (!topic || topic->id != g.topic_id) return;
  std::shared_lock lk(store_.topics_mu_);
  while (g.parts.size() < topic->partitions.size()) {
    // A partition added after the group was created is read from its start.
    QueuePartition qp;
    qp.cursor = topic->partitions[g.parts.size()]->log_start.load();
    g.parts.push_back(std::move(qp));
  }
}

// ---- queue operations -------------------------------------------------------------------------
//
// Each operation changes the group's state under g.mu, queues the writes that record the change
// (its overlay flush first, then any dead-letter moves) and answers through a CallWrites once the
// last of them has completed: after their fsync unless the group's ack.durability is "written".

namespace {

// Runs a Groups *Async operation and waits for its answer.
template <typename T, typename Start>
T Await(Start&& start) {
  std::promise<T> promise;
  std::future<T> f = promise.get_future();
  start([&promise](T r) { promise.set_value(std::move(r)); });
  return f.get();
}

}  // namespace

Result<std::vector<DeliveredRecord>> Groups::Deliver(std::string_view group,
                                                     std::string_view consumer, int32_t max_records,
                                                     size_t max_bytes) {
  return Await<Result<std::vector<DeliveredRecord>>>(
      [&](RecordsFn done) { DeliverAsync(group, consumer, max_records, max_bytes, done); });
}

Status Groups::Ack(std::string_view group, std::string_view consumer,
                   std::span<const RecordRef> refs) {
  return Await<Status>([&](DoneFn done) { AckAsync(group, consumer, refs, done); });
}

Status Groups::Nack(std::string_view group, std::string_view consumer,
                    std::span<const RecordRef> refs, int64_t delay_ms) {
  return Await<Status>([&](DoneFn done) { NackAsync(group, consumer, refs, delay_ms, done); });
}

Status Groups::Reject(std::string_view group, std::string_view consumer,
                      std::span<const RecordRef> refs, std::string_view reason) {
  return Await<Status>([&](DoneFn done) { RejectAsync(group, consumer, refs, reason, done); });
}

Result<int64_t> Groups::Extend(std::string_view group, std::string_view consumer,
                               std::span<const RecordRef> refs) {
  return Await<Result<int64_t>>(
      [&](std::function<void(Result<int64_t>)> done) { ExtendAsync(group, consumer, refs, done); });
}

Result<std::vector<DeliveredRecord>> Groups::Claim(std::string_view group,
                                                   std::string_view consumer, int64_t min_idle_ms,
                                                   int32_t max_records) {
  return Await<Result<std::vector<DeliveredRecord>>>(
      [&](RecordsFn done) { ClaimAsync(group, consumer, min_idle_ms, max_records, done); });
}

std::function<void(Status)> CallWrites::Part(const std::shared_ptr<CallWrites>& self, bool counts) {
  return [self, counts](Status s) {
    if (!counts || s.ok()) return;
    std::lock_guard lk(self->mu_);
    if (self->first_.ok()) self->first_ = std::move(s);
  };
}

void GroupManager::Flush(GroupState& g, const std::shared_ptr<CallWrites>& call) {
  SubmitAsync(g.overlay.Take(), g.config.ack_durability == SettleDurability::kDurable,
              CallWrites::Part(call));
}

namespace {

// What a queue operation answers once its writes complete: its own error (set under g.mu before
// any write was queued, or a read error after some were), else the writes' first failure, else
// its value.
template <typename T>
struct Outcome {
  Status error;
  T value{};
};

template <typename T, typename Done>
std::shared_ptr<CallWrites> AnswerWith(const std::shared_ptr<Outcome<T>>& outcome, Done done) {
  return std::make_shared<CallWrites>([outcome, done = std::move(done)](Status s) mutable {
    if (!outcome->error.ok()) return done(std::move(outcome->error));
    if (!s.ok()) return done(std::move(s));
    done(std::move(outcome->value));
  });
}

}  // namespace

template <typename T, typename Done, typename Body>
void GroupManager::QueueOp(std::string_view group, Done done, Body body) {
  auto found = FindQueue(group);
  if (!found.ok()) return done(found.status());
  const std::shared_ptr<GroupState> g = std::move(found).value();
  auto outcome = std::make_shared<Outcome<T>>();
  // Dropped after the group mutex is released: `done` never runs under it.
  std::shared_ptr<CallWrites> call = AnswerWith(outcome, std::move(done));
  std::lock_guard lk(g->mu);
  outcome->error = body(g, call, outcome->value);
}

void GroupManager::DeliverAsync(std::string_view group, std::string_view consumer,
                                int32_t max_records, size_t max_bytes, RecordsFn done) {
  if (Status s = ValidateConsumerName(consumer); !s.ok()) return done(std::move(s));
  if (max_records <= 0) return done(Status::InvalidArgument("max_records must be positive"));
  QueueOp<std::vector<DeliveredRecord>>(
      group, std::move(done),
      [&](const std::shared_ptr<GroupState>& g, const std::shared_ptr<CallWrites>& call,
          std::vector<DeliveredRecord>& out) -> Status {
        RUNNEL_RETURN_IF_ERROR(CheckLive(*g));
        const int64_t now = store_.clock_->NowMs();
        const uint32_t c = ConsumerId(*g, consumer, now);
        GrowPartitions(*g);
        if (g->parts.empty())
          return Status::NotFound("topic '" + g->config.topic + "' of group '" + g->name +
                                  "' is gone");
        GroupRecordReader& reader = ReaderFor(*g);
        std::vector<DeadLetterMove> dead;
        size_t bytes = 0;
        auto full = [&] {
          return out.size() >= static_cast<size_t>(max_records) || bytes >= max_bytes;
        };
        auto expired = [&](const LoadedRecord& r) {
          return g->config.message_ttl_ms > 0 && r.timestamp_ms < now - g->config.message_ttl_ms;
        };

        // Records dead-lettered, parked or skipped count against a bound too, so one call never
        // walks an unbounded backlog under the group mutex.
        const size_t max_examined = std::max<size_t>(4096, 16 * static_cast<size_t>(max_records));
        size_t examined = 0;

        // 1. Due retries and expired locks, oldest due first: a range scan over what is due.
        for (auto it = g->due.begin();
             it != g->due.end() && it->due_ms <= now && !full() && ++examined <= max_examined;) {
          const DueKey dk = *it++;
          PelEntry& e = g->parts[static_cast<size_t>(dk.partition)].pel[dk.offset];
          RUNNEL_ASSIGN_OR_RETURN(auto rec, LoadPending(*g, dk.partition, dk.offset, now));
          if (!rec) continue;
          if (e.state == fmt::PendingState::kLocked) {  // the lock expired: a failed attempt
            if (e.first_failure_ms == 0) e.first_failure_ms = now;
            e.last_failure_ms = now;
          }
          std::string reason = expired(*rec)                              ? "expired"
                               : e.deliveries >= g->config.max_deliveries ? "max_deliveries"
                                                                          : "";
          if (!reason.empty()) {
            dead.push_back({dk.partition, dk.offset, std::move(rec).value(), e.deliveries,
                            e.first_failure_ms ? e.first_failure_ms : now, std::move(reason)});
            Finish(*g, dk.partition, dk.offset, now);
            continue;
          }
          Lock(*g, dk.partition, dk.offset, e, c, now);
          PutEntry(*g, dk.partition, dk.offset, e);
          bytes += rec->size;
          out.push_back(ToDelivered(dk.partition, dk.offset, std::move(rec).value(), e));
        }

        // 2. Records never looked at, round-robin over partitions.
        const size_t n = g->parts.size();
        Status scan_error;
        for (size_t k = 0; k < n && !full(); ++k) {
          const int32_t p = static_cast<int32_t>((g->next_partition + k) % n);
          QueuePartition& qp = g->parts[static_cast<size_t>(p)];
          auto start = store_.ListOffset(g->config.topic, Partition(p), OffsetQuery::Earliest());
          if (start.ok() && qp.cursor < start->value())
            qp.cursor = start->value();  // retention passed it
          const int64_t before = qp.cursor;
          Status scan = reader.Scan(p, qp.cursor, [&](const Record& r) {
            if (full() || ++examined > max_examined) return false;
            qp.cursor = r.offset + 1;
            if (qp.pel.count(r.offset)) return true;  // already pending (cursor was behind)
            PelEntry e;
            LoadedRecord rec = CopyRecord(r);
            if (g->config.ordered_keys && rec.key) {
              e.key = rec.key;
              auto& q = g->key_queues[{p, *rec.key}];
              q.push_back(r.offset);
              if (q.size() > 1) {  // its key is in flight: park it behind the earlier one
                e.state = fmt::PendingState::kParked;
                PutEntry(*g, p, r.offset, e, /*fresh=*/true);
                qp.pel.emplace(r.offset, std::move(e));
                return true;
              }
            }
            if (expired(rec)) {
              // Persist it as pending first, so a crash before the dead-letter write loses nothing.
              e.state = fmt::PendingState::kRetry;
              e.due_ms = now;
              PutEntry(*g, p, r.offset, e, /*fresh=*/true);
              qp.pel.emplace(r.offset, std::move(e));
              g->due.insert(DueKey{now, p, r.offset});
              dead.push_back({p, r.offset, std::move(rec), 0, now, "expired"});
              Finish(*g, p, r.offset, now);
              return true;
            }
            auto& stored = qp.pel.emplace(r.offset, std::move(e)).first->second;
            Lock(*g, p, r.offset, stored, c, now);
            PutEntry(*g, p, r.offset, stored, /*fresh=*/true);
            bytes += rec.size;
            out.push_back(ToDelivered(p, r.offset, std::move(rec), stored));
            return true;
          });
          if (qp.cursor != before) PutCursor(*g, p);
          if (!scan.ok()) {
            scan_error = std::move(scan);
            break;
          }
        }
        ++g->next_partition;
        // The deliveries (locks, counts, cursors) first, then the dead-letter moves, whose failures
        // are only logged: their records stay pending on disk and come back after a restart.
        Flush(*g, call);
        SubmitDeadLetters(*g, std::move(dead), now, call, /*failures_count=*/false);
        // A read error after some deliveries still returns them (their state is recorded above).
        if (!scan_error.ok() && out.empty()) return scan_error;
        return Status::OK();
      });
}

void GroupManager::AckAsync(std::string_view group, std::string_view consumer,
                            std::span<const RecordRef> refs, DoneFn done) {
  QueueOp<Status>(group, std::move(done),
                  [&](const std::shared_ptr<GroupState>& g, const std::shared_ptr<CallWrites>& call,
                      Status& /*unused*/) -> Status {
                    const int64_t now = store_.clock_->NowMs();
                    RUNNEL_ASSIGN_OR_RETURN(auto entries, BeginRefOp(*g, consumer, refs, now));
                    for (const auto& [p, off] : entries) {
                      const PelEntry& e = g->parts[static_cast<size_t>(p)].pel.at(off);
                      ++g->counters.acks;
                      g->counters.ack_latency_ms_total +=
                          std::max<int64_t>(0, now - e.first_delivery_ms);
                      Finish(*g, p, off, now);
                      g->overlay.Delete(fmt::PendingKey(g->id, p, off));
                    }
                    Flush(*g, call);
                    return Status::OK();
                  });
}

void GroupManager::NackAsync(std::string_view group, std::string_view consumer,
                             std::span<const RecordRef> refs, int64_t delay_ms, DoneFn done) {
  if (delay_ms < 0 || delay_ms > kMaxDelayMs) {
    return done(Status::InvalidArgument("nack delay must be between 0 and 30 days, not " +
                                        std::to_string(delay_ms) + " ms"));
  }
  QueueOp<Status>(group, std::move(done),
                  [&](const std::shared_ptr<GroupState>& g, const std::shared_ptr<CallWrites>& call,
                      Status& /*unused*/) -> Status {
                    const int64_t now = store_.clock_->NowMs();
                    RUNNEL_ASSIGN_OR_RETURN(auto entries, BeginRefOp(*g, consumer, refs, now));
                    std::vector<DeadLetterMove> dead;
                    g->counters.nacks += static_cast<int64_t>(entries.size());
                    for (const auto& [p, off] : entries) {
                      PelEntry& e = g->parts[static_cast<size_t>(p)].pel[off];
                      if (e.first_failure_ms == 0) e.first_failure_ms = now;
                      e.last_failure_ms = now;
                      if (e.deliveries >= g->config.max_deliveries) {
                        RetireToDeadLetters(*g, p, off, "max_deliveries", now, &dead);
                        continue;
                      }
                      EraseDue(*g, p, off, e);
                      e.state = fmt::PendingState::kRetry;
                      e.due_ms = now + delay_ms;
                      g->due.insert(DueKey{e.due_ms, p, off});
                      PutEntry(*g, p, off, e);
                    }
                    Flush(*g, call);
                    SubmitDeadLetters(*g, std::move(dead), now, call, /*failures_count=*/true);
                    return Status::OK();
                  });
}

void GroupManager::RejectAsync(std::string_view group, std::string_view consumer,
                               std::span<const RecordRef> refs, std::string_view reason,
                               DoneFn done) {
  QueueOp<Status>(group, std::move(done),
                  [&](const std::shared_ptr<GroupState>& g, const std::shared_ptr<CallWrites>& call,
                      Status& /*unused*/) -> Status {
                    const int64_t now = store_.clock_->NowMs();
                    RUNNEL_ASSIGN_OR_RETURN(auto entries, BeginRefOp(*g, consumer, refs, now));
                    std::vector<DeadLetterMove> dead;
                    const std::string why =
                        reason.empty() ? std::string("rejected") : std::string(reason);
                    g->counters.rejects += static_cast<int64_t>(entries.size());
                    for (const auto& [p, off] : entries)
                      RetireToDeadLetters(*g, p, off, why, now, &dead);
                    Flush(*g, call);
                    SubmitDeadLetters(*g, std::move(dead), now, call, /*failures_count=*/true);
                    return Status::OK();
                  });
}

void GroupManager::ExtendAsync(std::string_view group, std::string_view consumer,
                               std::span<const RecordRef> refs,
                               std::function<void(Result<int64_t>)> done) {
  QueueOp<int64_t>(group, std::move(done),
                   [&](const std::shared_ptr<GroupState>& g,
                       const std::shared_ptr<CallWrites>& call, int64_t& value) -> Status {
                     const int64_t now = store_.clock_->NowMs();
                     RUNNEL_ASSIGN_OR_RETURN(auto entries, BeginRefOp(*g, consumer, refs, now));
                     const int64_t until = now + g->config.lock_timeout_ms;
                     for (const auto& [p, off] : entries) {
                       PelEntry& e = g->parts[static_cast<size_t>(p)].pel[off];
                       g->due.erase(DueKey{e.due_ms, p, off});
                       e.due_ms = until;
                       e.last_active_ms = now;
                       g->due.insert(DueKey{until, p, off});
                       PutEntry(*g, p, off, e);
                     }
                     value = until;
                     Flush(*g, call);
                     return Status::OK();
                   });
}

void GroupManager::ClaimAsync(std::string_view group, std::string_view consumer,
                              int64_t min_idle_ms, int32_t max_records, RecordsFn done) {
  if (Status s = ValidateConsumerName(consumer); !s.ok()) return done(std::move(s));
  if (min_idle_ms < 0) return done(Status::InvalidArgument("min_idle must not be negative"));
  if (max_records <= 0) return done(Status::InvalidArgument("max_records must be positive"));
  QueueOp<std::vector<DeliveredRecord>>(
      group, std::move(done),
      [&](const std::shared_ptr<GroupState>& g, const std::shared_ptr<CallWrites>& call,
          std::vector<DeliveredRecord>& out) -> Status {
        RUNNEL_RETURN_IF_ERROR(CheckLive(*g));
        const int64_t now = store_.clock_->NowMs();
        const uint32_t c = ConsumerId(*g, consumer, now);
        std::vector<DeadLetterMove> dead;
        // A locked entry is idle for now - last_active, and due at last_active + lock timeout, so
        // "idle >= min_idle" is "due <= now - min_idle + lock timeout": a range scan of the due
        // index.
        const int64_t bound = now - min_idle_ms + g->config.lock_timeout_ms;
        // Pick the candidates first: claiming re-inserts entries into the due index at now + lock
        // timeout, which may still be within `bound` and must not be visited twice.
        std::vector<DueKey> candidates;
        for (auto it = g->due.begin(); it != g->due.end() && it->due_ms <= bound &&
                                       candidates.size() < static_cast<size_t>(max_records);
             ++it) {
          if (g->parts[static_cast<size_t>(it->partition)].pel.at(it->offset).state ==
              fmt::PendingState::kLocked) {
            candidates.push_back(*it);
          }
        }
        for (const DueKey& dk : candidates) {
          PelEntry& e = g->parts[static_cast<size_t>(dk.partition)].pel[dk.offset];
          RUNNEL_ASSIGN_OR_RETURN(auto rec, LoadPending(*g, dk.partition, dk.offset, now));
          if (!rec) continue;
          if (e.deliveries >= g->config.max_deliveries) {
            if (e.first_failure_ms == 0) e.first_failure_ms = now;
            dead.push_back({dk.partition, dk.offset, std::move(rec).value(), e.deliveries,
                            e.first_failure_ms, "max_deliveries"});
            Finish(*g, dk.partition, dk.offset, now);
            continue;
          }
          Lock(*g, dk.partition, dk.offset, e, c, now);
          PutEntry(*g, dk.partition, dk.offset, e);
          out.push_back(ToDelivered(dk.partition, dk.offset, std::move(rec).value(), e));
        }
        Flush(*g, call);
        SubmitDeadLetters(*g, std::move(dead), now, call, /*failures_count=*/false);
        return Status::OK();
      });
}

Result<std::vector<PendingEntry>> GroupManager::ListPending(std::string_view group,
                                                            const PendingQuery& q) const {
  if (q.min_idle_ms < 0) return Status::InvalidArgument("min_idle must not be negative");
  RUNNEL_ASSIGN_OR_RETURN(auto g, FindQueue(group));
  std::lock_guard lk(g->mu);
  RUNNEL_RETURN_IF_ERROR(CheckLive(*g));
  if (q.partition && (*q.partition < 0 || static_cast<size_t>(*q.partition) >= g->parts.size())) {
    return Status::InvalidArgument("partition " + std::to_string(*q.partition) + " of group '" +
                                   g->name + "' does not exist");
  }
  const int64_t now = store_.clock_->NowMs();
  std::vector<PendingEntry> out;
  for (size_t p = 0; p < g->parts.size() && out.size() < q.max; ++p) {
    if (q.partition && static_cast<size_t>(*q.partition) != p) continue;
    for (const auto& [offset, e] : g->parts[p].pel) {
      if (out.size() >= q.max) break;
      PendingEntry pe;
      pe.partition = Partition(static_cast<int32_t>(p));
      pe.offset = Offset(offset);
      pe.deliveries = e.deliveries;
      pe.first_delivery_ms = e.first_delivery_ms;
      switch (e.state) {
        case fmt::PendingState::kLocked:
          pe.kind = PendingKind::kLocked;
          pe.consumer = g->consumers[e.consumer].name;
          pe.due_ms = e.due_ms;
          break;
        case fmt::PendingState::kRetry:
          pe.kind = PendingKind::kRetry;
          pe.due_ms = e.due_ms;
          break;
        case fmt::PendingState::kParked:
          pe.kind = PendingKind::kParked;
          break;
      }
      if (pe.kind != PendingKind::kParked)
        pe.idle_ms = std::max<int64_t>(0, now - e.last_active_ms);
      if (!q.consumer.empty() && pe.consumer != q.consumer) continue;
      if (pe.idle_ms < q.min_idle_ms) continue;
      out.push_back(std::move(pe));
    }
  }
  return out;
}

Status GroupManager::SetQueuePositions(std::string_view group,
                                       const std::vector<std::pair<Partition, Offset>>& positions) {
  if (positions.empty()) return Status::InvalidArgument("no positions given");
  RUNNEL_ASSIGN_OR_RETURN(auto g, FindQueue(group));
  std::future<Status> written;
  {
    std::lock_guard lk(g->mu);
    RUNNEL_RETURN_IF_ERROR(CheckLive(*g));
    GrowPartitions(*g);
    // Check every position before changing any.
    for (const auto& [p, o] : positions) {
      if (p.value() < 0 || static_cast<size_t>(p.value()) >= g->parts.size()) {
        return Status::InvalidArgument("partition " + std::to_string(p.value()) + " of topic '" +
                                       g->config.topic + "' does not exist");
      }
      RUNNEL_ASSIGN_OR_RETURN(Offset start,
                              store_.ListOffset(g->config.topic, p, OffsetQuery::Earliest()));
      RUNNEL_ASSIGN_OR_RETURN(Offset end,
                              store_.ListOffset(g->config.topic, p, OffsetQuery::Latest()));
      if (o < start || o > end) {
        return Status::OutOfRange("offset " + std::to_string(o.value()) + " is outside " +
                                  g->config.topic + "/" + std::to_string(p.value()) + " [" +
                                  std::to_string(start.value()) + ", " +
                                  std::to_string(end.value()) + "]");
      }
    }
    for (const auto& [p, o] : positions) {
      g->parts[static_cast<size_t>(p.value())].cursor = o.value();
      PutCursor(*g, p.value());
    }
    // The whole overlay goes with it, durable like a commit.
    written = Submit(g->overlay.Take(), /*durable=*/true);
  }
  return written.get();
}

}  // namespace runnel::storage
