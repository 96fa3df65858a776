// GroupManager: stream groups, queue groups with pending entries and dead-letter topics, lag and
// record status. See group_manager.h for the concurrency model.
#include <algorithm>
#include <charconv>
#include <limits>

#include "group_manager.h"
#include "log_store_impl.h"
#include "logging.h"
#include "rocks_status.h"
#include "runnel/common/coding.h"
#include "runnel/common/glob.h"

namespace runnel::storage {

namespace fmt = format;

namespace {

constexpr int64_t kNoFloor = std::numeric_limits<int64_t>::max();
// Dead letters are appended in batches of at most this many records.
constexpr size_t kMaxDeadLettersPerBatch = 256;

Status ParseI64(std::string_view key, std::string_view value, int64_t min, int64_t max,
                int64_t* out) {
  int64_t v = 0;
  auto [ptr, ec] = std::from_chars(value.data(), value.data() + value.size(), v);
  if (ec != std::errc() || ptr != value.data() + value.size() || value.empty() || v < min ||
      v > max) {
    return Status::InvalidArgument(std::string(key) + ": '" + std::string(value) +
                                   "' is not an integer in [" + std::to_string(min) + ", " +
                                   std::to_string(max) + "]");
  }
  *out = v;
  return Status::OK();
}

Status ParseBool(std::string_view key, std::string_view value, bool* out) {
  if (value == "true" || value == "1") {
    *out = true;
  } else if (value == "false" || value == "0") {
    *out = false;
  } else {
    return Status::InvalidArgument(std::string(key) + ": '" + std::string(value) +
                                   "' is not a boolean");
  }
  return Status::OK();
}

std::string RefName(int32_t p, int64_t offset) {
  return std::to_string(p) + ":" + std::to_string(offset);
}

LoadedRecord Copy(const Record& r) {
  LoadedRecord out;
  out.timestamp_ms = r.timestamp;
  if (r.key) out.key = std::string(*r.key);
  if (r.value) out.value = std::string(*r.value);
  for (const RecordHeader& h : r.Headers()) {
    out.headers.emplace_back(
        std::string(h.key),
        h.value ? std::optional<std::string>(std::string(*h.value)) : std::nullopt);
  }
  out.size = (r.key ? r.key->size() : 0) + (r.value ? r.value->size() : 0) + r.headers_data.size();
  return out;
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

}  // namespace

std::string_view GroupProtocolName(GroupProtocol p) {
  return p == GroupProtocol::kKafka ? "kafka" : "native";
}

std::string_view SettleDurabilityName(SettleDurability d) {
  return d == SettleDurability::kWritten ? "written" : "durable";
}

std::string_view RecordStateName(RecordState s) {
  switch (s) {
    case RecordState::kUndelivered:
      return "undelivered";
    case RecordState::kPending:
      return "pending";
    case RecordState::kAcked:
      return "acked";
    case RecordState::kDeadLettered:
      return "dead_lettered";
  }
  return "unknown";
}

Status GroupConfig::Set(std::string_view key, std::string_view value) {
  int64_t v = 0;
  if (key == "topic") {
    if (!value.empty()) RUNNEL_RETURN_IF_ERROR(ValidateTopicName(value));  // empty: stream group
    topic = std::string(value);
  } else if (key == "lock.timeout.ms") {
    RUNNEL_RETURN_IF_ERROR(ParseI64(key, value, 1, 7LL * 24 * 3600 * 1000, &v));
    lock_timeout_ms = v;
  } else if (key == "max.deliveries") {
    RUNNEL_RETURN_IF_ERROR(ParseI64(key, value, 1, 1'000'000, &v));
    max_deliveries = static_cast<int32_t>(v);
  } else if (key == "ordered.keys") {
    RUNNEL_RETURN_IF_ERROR(ParseBool(key, value, &ordered_keys));
  } else if (key == "message.ttl.ms") {
    RUNNEL_RETURN_IF_ERROR(ParseI64(key, value, 0, std::numeric_limits<int64_t>::max(), &v));
    message_ttl_ms = v;
  } else if (key == "dlq.topic") {
    if (!value.empty()) RUNNEL_RETURN_IF_ERROR(ValidateTopicName(value));
    dlq_topic = std::string(value);
  } else if (key == "retain.until.acked") {
    RUNNEL_RETURN_IF_ERROR(ParseBool(key, value, &retain_until_acked));
  } else if (key == "ack.durability") {
    if (value == "durable") {
      ack_durability = SettleDurability::kDurable;
    } else if (value == "written") {
      ack_durability = SettleDurability::kWritten;
    } else {
      return Status::InvalidArgument("ack.durability: '" + std::string(value) +
                                     "' is not 'durable' or 'written'");
    }
  } else {
    return Status::InvalidArgument("unknown group config '" + std::string(key) + "'");
  }
  return Status::OK();
}

std::vector<std::pair<std::string, std::string>> GroupConfig::ToList() const {
  return {
      {"ack.durability", std::string(SettleDurabilityName(ack_durability))},
      {"dlq.topic", dlq_topic},
      {"lock.timeout.ms", std::to_string(lock_timeout_ms)},
      {"max.deliveries", std::to_string(max_deliveries)},
      {"message.ttl.ms", std::to_string(message_ttl_ms)},
      {"ordered.keys", ordered_keys ? "true" : "false"},
      {"retain.until.acked", retain_until_acked ? "true" : "false"},
      {"topic", topic},
  };
}

GroupRecordReader::GroupRecordReader(const LogStoreImpl& store, std::string topic)
    : store_(store), topic_(std::move(topic)) {}

Result<LoadedRecord> GroupRecordReader::Get(int32_t p, int64_t offset) {
  RUNNEL_RETURN_IF_ERROR(Load(p, offset));
  const Cached& c = cache_[p];
  return Copy(c.batch->records()[static_cast<size_t>(offset - c.base)]);
}

Status GroupRecordReader::Scan(int32_t p, int64_t from,
                               const std::function<bool(const Record&)>& fn) {
  while (true) {
    Status s = Load(p, from);
    if (s.IsOutOfRange()) return Status::OK();  // reached the high watermark
    RUNNEL_RETURN_IF_ERROR(s);
    const Cached& c = cache_[p];
    for (const Record& r : c.batch->records()) {
      if (r.offset < from) continue;
      if (!fn(r)) return Status::OK();
    }
    from = c.last + 1;
  }
}

Status GroupRecordReader::Load(int32_t p, int64_t offset) {
  Cached& c = cache_[p];
  if (c.batch && offset >= c.base && offset <= c.last) return Status::OK();
  RUNNEL_ASSIGN_OR_RETURN(ReadResult r, store_.Read(topic_, Partition(p), Offset(offset), 1));
  if (r.batch_count == 0) {
    return Status::OutOfRange("offset " + std::to_string(offset) + " is at the end of the log");
  }
  BatchHeader h;
  RUNNEL_RETURN_IF_ERROR(PeekBatchHeader(r.records, &h));
  c.batch.reset();
  c.bytes = std::make_unique<std::string>(std::move(r.records));
  c.bytes->resize(h.total_size());
  auto decoded =
      DecodedBatch::Decode(*c.bytes, DecodeLimits{store_.options_.max_uncompressed_batch_bytes});
  if (!decoded.ok()) return decoded.status();
  c.batch.emplace(std::move(decoded).value());
  c.base = h.base_offset;
  c.last = h.last_offset();
  if (offset < c.base || offset > c.last) {
    return Status::OutOfRange("offset " + std::to_string(offset) + " is no longer stored");
  }
  return Status::OK();
}

GroupRecordReader& GroupManager::ReaderFor(GroupState& g) {
  if (!g.reader) g.reader = std::make_unique<GroupRecordReader>(store_, g.config.topic);
  return *g.reader;
}

void WriteOverlay::Put(std::string key, std::string value, bool fresh) {
  auto [it, inserted] = ops_.try_emplace(std::move(key));
  if (inserted) it->second.fresh = fresh;
  it->second.value = std::move(value);
}

void WriteOverlay::Delete(const std::string& key) {
  auto it = ops_.find(key);
  if (it != ops_.end() && it->second.fresh) {
    ops_.erase(it);  // created and finished between two flushes: nothing to write
  } else if (it != ops_.end()) {
    it->second.value.reset();
  } else {
    ops_.emplace(key, Op{std::nullopt, false});
  }
}

MetaWrites WriteOverlay::Take() {
  MetaWrites out;
  out.ops.reserve(ops_.size());
  for (auto& [key, op] : ops_) out.ops.emplace_back(key, std::move(op.value));
  ops_.clear();
  return out;
}

GroupManager::GroupManager(LogStoreImpl& store) : store_(store) {}

void GroupManager::FlushAsync(GroupState& g) {
  if (g.overlay.empty()) return;
  const std::string name = g.name;
  SubmitAsync(g.overlay.Take(), /*durable=*/false, [name](Status s) {
    if (!s.ok()) log::Error("group '" + name + "': writing state failed: " + s.ToString());
  });
}

void GroupManager::FlushAll() {
  std::vector<std::shared_ptr<GroupState>> groups;
  {
    std::shared_lock lk(mu_);
    for (const auto& [name, g] : groups_) groups.push_back(g);
  }
  for (const auto& g : groups) {
    std::lock_guard lk(g->mu);
    FlushAsync(*g);
  }
}

// The longest nack delay (a retry backoff).
constexpr int64_t kMaxDelayMs = 30LL * 24 * 3600 * 1000;

std::shared_ptr<GroupState> GroupManager::Find(std::string_view name) const {
  std::shared_lock lk(mu_);
  auto it = groups_.find(name);
  return it == groups_.end() ? nullptr : it->second;
}

Result<std::shared_ptr<GroupState>> GroupManager::FindQueue(std::string_view name) const {
  auto g = Find(name);
  if (!g) return Status::NotFound("unknown group '" + std::string(name) + "'");
  if (g->mode != GroupMode::kQueue) {
    return Status::InvalidArgument("group '" + std::string(name) +
                                   "' is a stream group, not a queue group");
  }
  return g;
}

Result<std::shared_ptr<GroupState>> GroupManager::FindStream(std::string_view name) const {
  auto g = Find(name);
  if (!g) return Status::NotFound("unknown group '" + std::string(name) + "'");
  if (g->mode != GroupMode::kStream) {
    return Status::InvalidArgument("group '" + std::string(name) +
                                   "' is a queue group, not a stream group");
  }
  return g;
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

void GroupManager::SubmitAsync(MetaWrites writes, bool durable, std::function<void(Status)> done) {
  if (writes.empty()) {
    done(Status::OK());
    return;
  }
  auto op = std::make_unique<PendingAppend>();
  op->acks = durable ? AckMode::kDurable : AckMode::kWritten;
  auto shared = std::make_shared<MetaWrites>(std::move(writes));
  rocksdb::ColumnFamilyHandle* meta = store_.meta_cf_;
  op->extra = [shared, meta](const AppendResult*, rocksdb::WriteBatch& round) {
    for (const auto& [begin, end] : shared->range_deletes) round.DeleteRange(meta, begin, end);
    for (const auto& [key, value] : shared->ops) {
      if (value) {
        round.Put(meta, key, *value);
      } else {
        round.Delete(meta, key);
      }
    }
  };
  op->done = [done = std::move(done)](Result<AppendResult> r) { done(r.status()); };
  store_.Enqueue(std::move(op));
}

std::future<Status> GroupManager::Submit(MetaWrites writes, bool durable) {
  auto promise = std::make_shared<std::promise<Status>>();
  std::future<Status> f = promise->get_future();
  SubmitAsync(std::move(writes), durable,
              [promise](Status s) { promise->set_value(std::move(s)); });
  return f;
}

void GroupManager::SubmitDeadLetters(GroupState& g, std::vector<DeadLetterMove> moves, int64_t now,
                                     const std::shared_ptr<CallWrites>& call, bool failures_count) {
  if (moves.empty()) return;
  g.counters.dead_lettered += static_cast<int64_t>(moves.size());
  auto fail = [&](Status s) {
    log::Error("group '" + g.name + "': cannot dead-letter " + std::to_string(moves.size()) +
               " records: " + s.ToString());
    CallWrites::Part(call, failures_count)(std::move(s));
  };
  auto dlq = store_.FindTopic(g.config.dlq_topic);
  if (!dlq)
    return fail(Status::NotFound("dead-letter topic '" + g.config.dlq_topic + "' does not exist"));
  size_t dlq_partitions;
  size_t max_batch_bytes;
  {
    std::shared_lock lk(store_.topics_mu_);
    dlq_partitions = dlq->partitions.size();
    max_batch_bytes = static_cast<size_t>(dlq->config.max_message_bytes) * 3 / 4;
  }
  std::map<int32_t, std::vector<DeadLetterMove*>> by_partition;
  for (DeadLetterMove& m : moves) {
    by_partition[static_cast<int32_t>(static_cast<size_t>(m.partition) % dlq_partitions)].push_back(
        &m);
  }
  for (auto& [dp, list] : by_partition) {
    for (size_t start = 0, end = 0; start < list.size(); start = end) {
      // Up to kMaxDeadLettersPerBatch records and about 3/4 of the DLQ's max.message.bytes.
      size_t bytes = 0;
      for (end = start; end < list.size() && end - start < kMaxDeadLettersPerBatch; ++end) {
        const size_t size = list[end]->record.size + 512;  // + the runnel.dlq.* headers
        if (end > start && bytes + size > max_batch_bytes) break;
        bytes += size;
      }
      RecordBatchBuilder builder;
      struct Retire {
        int32_t partition;
        int64_t offset;
        std::string reason;
      };
      auto retire = std::make_shared<std::vector<Retire>>();
      for (size_t i = start; i < end; ++i) {
        DeadLetterMove& m = *list[i];
        const std::string p = std::to_string(m.partition), o = std::to_string(m.offset);
        const std::string d = std::to_string(m.deliveries), ff = std::to_string(m.first_failure_ms);
        const std::string lf = std::to_string(now);
        std::vector<RecordHeader> headers;
        for (const auto& [k, v] : m.record.headers) {
          // A copy must not be swallowed by the DLQ topic's own dedup window.
          headers.push_back({k == fmt::kDedupKeyHeader ? std::string_view("runnel.dlq.dedup.key")
                                                       : std::string_view(k),
                             v ? std::optional<std::string_view>(*v) : std::nullopt});
        }
        headers.push_back({"runnel.dlq.topic", std::string_view(g.config.topic)});
        headers.push_back({"runnel.dlq.partition", std::string_view(p)});
        headers.push_back({"runnel.dlq.offset", std::string_view(o)});
        headers.push_back({"runnel.dlq.group", std::string_view(g.name)});
        headers.push_back({"runnel.dlq.deliveries", std::string_view(d)});
        headers.push_back({"runnel.dlq.reason", std::string_view(m.reason)});
        headers.push_back({"runnel.dlq.first_failure_ms", std::string_view(ff)});
        headers.push_back({"runnel.dlq.last_failure_ms", std::string_view(lf)});
        std::optional<std::string_view> key, value;
        if (m.record.key) key = *m.record.key;
        if (m.record.value) value = *m.record.value;
        builder.Add(m.record.timestamp_ms, key, value, headers);
        retire->push_back({m.partition, m.offset, m.reason});
      }
      AppendRequest req{g.config.dlq_topic, Partition(dp), builder.Build(), AckMode::kDurable};
      auto op = std::make_unique<PendingAppend>();
      if (Status s = store_.Prepare(req, op.get()); !s.ok()) {
        fail(s);
        continue;
      }
      rocksdb::ColumnFamilyHandle* meta = store_.meta_cf_;
      const uint32_t gid = g.id;
      // The copy, the pending entry's removal and the dead-letter index entry: one WriteBatch.
      // dp = dp: clang 14 cannot capture a structured binding by name.
      op->extra = [retire, meta, gid, dp = dp, now](const AppendResult* r,
                                                    rocksdb::WriteBatch& round) {
        for (size_t i = 0; i < retire->size(); ++i) {
          const Retire& x = (*retire)[i];
          round.Delete(meta, fmt::PendingKey(gid, x.partition, x.offset));
          round.Put(meta, fmt::DeadLetterKey(gid, x.partition, x.offset),
                    fmt::Encode(fmt::DeadLetterValue{
                        dp, r->OffsetOf(static_cast<int32_t>(i)).value(), now, x.reason}));
        }
      };
      op->done = [part = CallWrites::Part(call, failures_count), name = g.name,
                  n = end - start](Result<AppendResult> r) {
        if (!r.ok()) {
          log::Error("group '" + name + "': cannot dead-letter " + std::to_string(n) +
                     " records: " + r.status().ToString());
        }
        part(r.status());
      };
      store_.Enqueue(std::move(op));
    }
  }
}

namespace {

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
            LoadedRecord rec = Copy(r);
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

// ---- group lifecycle --------------------------------------------------------------------------

Status GroupManager::CreateQueueGroup(std::string_view name, const GroupConfig& config_in,
                                      StartPosition start) {
  RUNNEL_RETURN_IF_ERROR(ValidateTopicName(name).WithContext("group name"));
  GroupConfig config = config_in;
  auto topic = store_.FindTopic(config.topic);
  if (!topic) return Status::NotFound("unknown topic '" + config.topic + "'");
  if (config.dlq_topic.empty()) config.dlq_topic = config.topic + ".dlq." + std::string(name);
  RUNNEL_RETURN_IF_ERROR(ValidateTopicName(config.dlq_topic).WithContext("dead-letter topic"));
  if (config.dlq_topic == config.topic) {
    return Status::InvalidArgument("a group's dead-letter topic cannot be the topic it consumes");
  }
  if (Find(name)) return Status::AlreadyExists("group '" + std::string(name) + "' already exists");
  size_t partitions;
  {
    std::shared_lock lk(store_.topics_mu_);
    partitions = topic->partitions.size();
  }
  if (!store_.FindTopic(config.dlq_topic)) {
    TopicConfig dlq_config = store_.options_.default_topic_config;
    dlq_config.dedup_window_ms = 0;  // every dead letter is kept, even repeats
    // Dead letters wait for an operator: they are kept until purged or redriven, never expired
    // by the default retention (an operator may still set one on the topic).
    dlq_config.retention_ms = -1;
    dlq_config.retention_bytes = -1;
    {
      // Room for the largest source record plus its runnel.dlq.* headers.
      std::shared_lock lk(store_.topics_mu_);
      dlq_config.max_message_bytes =
          std::min<int32_t>(64 << 20, topic->config.max_message_bytes + (64 << 10));
    }
    Status s = store_.CreateTopic(config.dlq_topic, static_cast<int32_t>(partitions), dlq_config);
    if (!s.ok() && s.code() != StatusCode::kAlreadyExists) return s;
  }
  auto g = std::make_shared<GroupState>();
  g->name = std::string(name);
  g->mode = GroupMode::kQueue;
  g->config = config;
  g->topic_id = topic->id;
  g->created_ms = store_.clock_->NowMs();
  for (size_t p = 0; p < partitions; ++p) {
    const Partition part(static_cast<int32_t>(p));
    Result<Offset> pos = Offset(0);
    switch (start.kind) {
      case StartPosition::Kind::kEarliest:
        pos = store_.ListOffset(config.topic, part, OffsetQuery::Earliest());
        break;
      case StartPosition::Kind::kLatest:
        pos = store_.ListOffset(config.topic, part, OffsetQuery::Latest());
        break;
      case StartPosition::Kind::kTimestamp:
        pos = store_.ListOffset(config.topic, part, OffsetQuery::AtTime(start.value));
        break;
      case StartPosition::Kind::kOffset: {
        RUNNEL_ASSIGN_OR_RETURN(Offset lo,
                                store_.ListOffset(config.topic, part, OffsetQuery::Earliest()));
        RUNNEL_ASSIGN_OR_RETURN(Offset hi,
                                store_.ListOffset(config.topic, part, OffsetQuery::Latest()));
        if (start.value < lo.value() || start.value > hi.value()) {
          return Status::OutOfRange("start offset " + std::to_string(start.value) +
                                    " is outside [" + std::to_string(lo.value()) + ", " +
                                    std::to_string(hi.value()) + "] of partition " +
                                    std::to_string(p));
        }
        pos = Offset(start.value);
        break;
      }
    }
    if (!pos.ok()) return pos.status();
    g->parts.push_back({pos->value(), {}});
  }
  std::lock_guard admin(store_.admin_mu_);
  std::unique_lock lk(mu_);
  if (groups_.count(name))
    return Status::AlreadyExists("group '" + std::string(name) + "' already exists");
  RUNNEL_ASSIGN_OR_RETURN(fmt::CountersValue counters, store_.ReadCounters());
  g->id = counters.next_group_id++;
  rocksdb::WriteBatch wb;
  wb.Put(store_.meta_cf_, fmt::CountersKey(), fmt::Encode(counters));
  wb.Put(store_.meta_cf_, fmt::GroupKey(name),
         fmt::Encode(fmt::GroupValue{g->id, static_cast<uint8_t>(g->mode), 0, g->created_ms,
                                     config.ToList()}));
  for (size_t p = 0; p < g->parts.size(); ++p) {
    wb.Put(store_.meta_cf_, fmt::OffsetKey(g->id, g->topic_id, static_cast<int32_t>(p)),
           fmt::Encode(fmt::OffsetValue{g->parts[p].cursor, g->created_ms, {}}));
  }
  RUNNEL_RETURN_IF_ERROR(store_.WriteMeta(&wb, "creating group '" + g->name + "'"));
  groups_[g->name] = std::move(g);
  return Status::OK();
}

Status GroupManager::DeleteGroup(std::string_view name) {
  std::shared_ptr<GroupState> g;
  {
    std::unique_lock lk(mu_);
    auto it = groups_.find(name);
    if (it == groups_.end()) return Status::NotFound("unknown group '" + std::string(name) + "'");
    g = it->second;
    groups_.erase(it);
  }
  std::future<Status> done;
  {
    std::lock_guard glk(g->mu);
    g->deleted = true;
    (void)g->overlay.Take();  // nothing of this group is written any more
    MetaWrites w;
    w.Delete(fmt::GroupKey(name));
    for (auto type : {fmt::MetaKeyType::kOffset, fmt::MetaKeyType::kPending,
                      fmt::MetaKeyType::kDeadLetter, fmt::MetaKeyType::kRedrive}) {
      w.range_deletes.emplace_back(fmt::IdPrefixBegin(type, g->id), fmt::IdPrefixEnd(type, g->id));
    }
    // Through the committer, so writes of this group queued earlier land before the deletion.
    done = Submit(std::move(w), /*durable=*/true);
  }
  return done.get();
}

std::vector<std::string> GroupManager::ListGroups() const {
  std::shared_lock lk(mu_);
  std::vector<std::string> names;
  for (const auto& [name, g] : groups_) names.push_back(name);
  return names;
}

Status GroupManager::CheckLive(const GroupState& g) const {
  if (g.deleted) return Status::NotFound("group '" + g.name + "' was deleted");
  if (g.mode == GroupMode::kQueue) {
    auto t = store_.FindTopic(g.config.topic);
    if (!t || t->id != g.topic_id) {
      return Status::NotFound("topic '" + g.config.topic + "' of group '" + g.name +
                              "' was deleted; recreate the group");
    }
  }
  return Status::OK();
}

fmt::GroupValue GroupManager::GroupValueOf(const GroupState& g) {
  fmt::GroupValue v{g.id, static_cast<uint8_t>(g.mode), g.generation, g.created_ms, {}};
  if (g.mode == GroupMode::kQueue) v.config = g.config.ToList();
  if (g.protocol != GroupProtocol::kNative)
    v.config.emplace_back(std::string(kProtocolKey), std::string(GroupProtocolName(g.protocol)));
  return v;
}

void GroupManager::PersistGroupAsync(const GroupState& g) {
  MetaWrites w;
  w.Put(fmt::GroupKey(g.name), fmt::Encode(GroupValueOf(g)));
  const std::string name = g.name;
  SubmitAsync(std::move(w), /*durable=*/true, [name](Status s) {
    if (!s.ok())
      log::Error("group '" + name + "': persisting the generation failed: " + s.ToString());
  });
}

Status GroupManager::PersistGroup(const GroupState& g, bool durable) {
  MetaWrites w;
  w.Put(fmt::GroupKey(g.name), fmt::Encode(GroupValueOf(g)));
  return Submit(std::move(w), durable).get();
}

// ---- stream groups ----------------------------------------------------------------------------

void GroupManager::ExpireMembers(GroupState& g, int64_t now, bool* changed) {
  for (auto it = g.members.begin(); it != g.members.end();) {
    if (now - it->second.last_seen_ms > it->second.session_timeout_ms) {
      it = g.members.erase(it);
      *changed = true;
    } else {
      ++it;
    }
  }
}

void GroupManager::Rebalance(GroupState& g) {
  ++g.generation;
  // Every partition of every subscribed topic, and who may own it.
  std::map<TopicPartition, std::vector<std::string>> eligible;
  for (const auto& [id, m] : g.members) {
    for (const std::string& t : m.topics) {
      auto topic = store_.FindTopic(t);
      if (!topic) continue;
      std::shared_lock lk(store_.topics_mu_);
      for (size_t p = 0; p < topic->partitions.size(); ++p) {
        eligible[{t, Partition(static_cast<int32_t>(p))}].push_back(id);
      }
    }
  }
  const size_t members = g.members.size();
  if (members == 0) return;
  const size_t total = eligible.size();
  const size_t floor = total / members;
  size_t ceil_slots = total % members;  // members that may hold floor + 1
  std::map<std::string, std::vector<TopicPartition>> next;
  std::set<TopicPartition> taken;
  // Sticky pass: members keep what they had, up to their fair share.
  for (auto& [id, m] : g.members) {
    auto& mine = next[id];
    for (const TopicPartition& tp : m.assignment) {
      auto e = eligible.find(tp);
      if (e == eligible.end() ||
          std::find(e->second.begin(), e->second.end(), id) == e->second.end())
        continue;
      const size_t cap = floor + (ceil_slots > 0 ? 1 : 0);
      if (mine.size() >= cap) break;
      mine.push_back(tp);
      taken.insert(tp);
    }
    if (mine.size() > floor) --ceil_slots;
  }
  // The rest go to the least loaded eligible member below its share. Partitions with the fewest
  // eligible members go first, so constrained ones are placed while there is room.
  std::vector<std::pair<const TopicPartition*, const std::vector<std::string>*>> rest;
  for (const auto& [tp, ids] : eligible) {
    if (!taken.count(tp)) rest.emplace_back(&tp, &ids);
  }
  std::stable_sort(rest.begin(), rest.end(), [](const auto& a, const auto& b) {
    return a.second->size() < b.second->size();
  });
  for (const auto& [tp, ids] : rest) {
    const std::string* best = nullptr;
    for (const std::string& id : *ids) {
      const size_t have = next[id].size();
      const bool room = have < floor || (have == floor && ceil_slots > 0);
      if (room && (!best || have < next[*best].size())) best = &id;
    }
    if (!best) {  // uneven subscriptions leave no fair slot: take the least loaded subscriber
      for (const std::string& id : *ids) {
        if (!best || next[id].size() < next[*best].size()) best = &id;
      }
    }
    if (next[*best].size() == floor && ceil_slots > 0) --ceil_slots;
    next[*best].push_back(*tp);
  }
  for (auto& [id, m] : g.members) {
    m.assignment = std::move(next[id]);
    std::sort(m.assignment.begin(), m.assignment.end());
  }
}

Membership GroupManager::MembershipOf(const GroupState& g, const std::string& member) const {
  return Membership{member, g.generation, g.members.at(member).assignment};
}

Result<std::shared_ptr<GroupState>> GroupManager::FindOrCreateStream(std::string_view group,
                                                                     GroupProtocol protocol) {
  std::shared_ptr<GroupState> g = Find(group);
  if (!g) {
    RUNNEL_RETURN_IF_ERROR(ValidateTopicName(group).WithContext("group name"));
    std::lock_guard admin(store_.admin_mu_);
    std::unique_lock lk(mu_);
    if (auto it = groups_.find(group); it != groups_.end()) {
      g = it->second;
    } else {
      g = std::make_shared<GroupState>();
      g->name = std::string(group);
      g->mode = GroupMode::kStream;
      g->protocol = protocol;
      g->created_ms = store_.clock_->NowMs();
      RUNNEL_ASSIGN_OR_RETURN(fmt::CountersValue counters, store_.ReadCounters());
      g->id = counters.next_group_id++;
      rocksdb::WriteBatch wb;
      wb.Put(store_.meta_cf_, fmt::CountersKey(), fmt::Encode(counters));
      wb.Put(store_.meta_cf_, fmt::GroupKey(group), fmt::Encode(GroupValueOf(*g)));
      RUNNEL_RETURN_IF_ERROR(store_.WriteMeta(&wb, "creating group '" + g->name + "'"));
      groups_[g->name] = g;
    }
  }
  if (g->mode != GroupMode::kStream) {
    return Status::InvalidArgument("group '" + std::string(group) +
                                   "' is a queue group, not a stream group");
  }
  if (g->protocol != protocol) {
    auto display = [](GroupProtocol p) { return p == GroupProtocol::kKafka ? "Kafka" : "native"; };
    return Status::InvalidArgument(
        "group '" + std::string(group) + "' is a " + display(g->protocol) + " consumer group; a " +
        display(protocol) + " client cannot join it (use another group id)");
  }
  return g;
}

Status GroupManager::EnsureExternalGroup(std::string_view name, GroupProtocol protocol) {
  if (protocol == GroupProtocol::kNative)
    return Status::InvalidArgument("a native group's membership is kept by the store");
  return FindOrCreateStream(name, protocol).status();
}

void GroupManager::CommitExternalAsync(std::string_view group,
                                       const std::vector<OffsetCommit>& offsets,
                                       std::function<void(Status)> done) {
  if (offsets.empty()) return done(Status::InvalidArgument("no offsets to commit"));
  Status s = StageCommit(group, {}, -1, offsets, &done, /*external=*/true);
  if (done) done(std::move(s));  // not handed to the committer: validation failed
}

Status GroupManager::DeleteOffsets(std::string_view group,
                                   const std::vector<TopicPartition>& partitions) {
  RUNNEL_ASSIGN_OR_RETURN(auto g, FindStream(group));
  std::future<Status> done;
  {
    std::lock_guard lk(g->mu);
    RUNNEL_RETURN_IF_ERROR(CheckLive(*g));
    MetaWrites writes;
    for (const TopicPartition& tp : partitions) {
      if (!g->committed.erase(tp)) continue;
      if (auto topic = store_.FindTopic(tp.topic))
        writes.Delete(fmt::OffsetKey(g->id, topic->id, tp.partition.value()));
    }
    if (writes.empty()) return Status::OK();
    done = Submit(std::move(writes), /*durable=*/true);
  }
  return done.get();
}

Result<Membership> GroupManager::Join(std::string_view group, std::string_view member_id,
                                      const std::vector<std::string>& topics,
                                      int64_t session_timeout_ms) {
  RUNNEL_RETURN_IF_ERROR(ValidateTopicName(group).WithContext("group name"));
  if (topics.empty())
    return Status::InvalidArgument("a member must subscribe to at least one topic");
  for (const std::string& t : topics) {
    if (!store_.FindTopic(t)) return Status::NotFound("unknown topic '" + t + "'");
  }
  if (session_timeout_ms < 1 || session_timeout_ms > 3'600'000) {
    return Status::InvalidArgument("session timeout must be between 1 ms and 1 hour");
  }
  RUNNEL_ASSIGN_OR_RETURN(auto g, FindOrCreateStream(group, GroupProtocol::kNative));
  std::lock_guard lk(g->mu);
  RUNNEL_RETURN_IF_ERROR(CheckLive(*g));
  const int64_t now = store_.clock_->NowMs();
  bool changed = false;
  ExpireMembers(*g, now, &changed);
  std::string id(member_id);
  if (id.empty()) {
    id = g->name + "-" + std::to_string(g->generation + 1) + "-" + std::to_string(++g->member_seq) +
         "-" + std::to_string(now % 100000);
  } else if (!g->members.count(id)) {
    return Status::NotFound("unknown member '" + id + "' of group '" + g->name +
                            "'; rejoin with an empty id");
  }
  StreamMember& m = g->members[id];
  m.topics = topics;
  std::sort(m.topics.begin(), m.topics.end());
  m.session_timeout_ms = session_timeout_ms;
  m.last_seen_ms = now;
  Rebalance(*g);
  RUNNEL_RETURN_IF_ERROR(PersistGroup(*g, /*durable=*/true));
  return MembershipOf(*g, id);
}

Result<Membership> GroupManager::Heartbeat(std::string_view group, std::string_view member_id) {
  RUNNEL_ASSIGN_OR_RETURN(auto g, FindStream(group));
  std::lock_guard lk(g->mu);
  RUNNEL_RETURN_IF_ERROR(CheckLive(*g));
  const int64_t now = store_.clock_->NowMs();
  bool changed = false;
  ExpireMembers(*g, now, &changed);
  auto it = g->members.find(std::string(member_id));
  if (it == g->members.end()) {
    if (changed) {
      Rebalance(*g);
      RUNNEL_RETURN_IF_ERROR(PersistGroup(*g, true));
    }
    return Status::NotFound("unknown member '" + std::string(member_id) + "' of group '" + g->name +
                            "' (session expired?); rejoin");
  }
  it->second.last_seen_ms = now;
  if (changed) {
    Rebalance(*g);
    RUNNEL_RETURN_IF_ERROR(PersistGroup(*g, true));
  }
  return MembershipOf(*g, it->first);
}

Status GroupManager::Leave(std::string_view group, std::string_view member_id) {
  RUNNEL_ASSIGN_OR_RETURN(auto g, FindStream(group));
  std::lock_guard lk(g->mu);
  RUNNEL_RETURN_IF_ERROR(CheckLive(*g));
  if (g->members.erase(std::string(member_id)) == 0) {
    return Status::NotFound("unknown member '" + std::string(member_id) + "' of group '" + g->name +
                            "'");
  }
  Rebalance(*g);
  return PersistGroup(*g, true);
}

Status Groups::CommitOffsets(std::string_view group, std::string_view member_id, int32_t generation,
                             const std::vector<OffsetCommit>& offsets) {
  std::promise<Status> promise;
  auto f = promise.get_future();
  CommitOffsetsAsync(group, member_id, generation, offsets,
                     [&promise](Status s) { promise.set_value(std::move(s)); });
  return f.get();
}

void GroupManager::CommitOffsetsAsync(std::string_view group, std::string_view member_id,
                                      int32_t generation, const std::vector<OffsetCommit>& offsets,
                                      std::function<void(Status)> done) {
  if (offsets.empty()) {
    done(Status::InvalidArgument("no offsets to commit"));
    return;
  }
  if (member_id.empty() && generation == -1) {
    if (auto g = Find(group); g && g->mode == GroupMode::kQueue) {
      // An admin reset of a queue group moves its delivery cursors (XGROUP SETID).
      std::string topic;
      {
        std::lock_guard lk(g->mu);
        topic = g->config.topic;
      }
      std::vector<std::pair<Partition, Offset>> positions;
      for (const OffsetCommit& c : offsets) {
        if (c.tp.topic != topic) {
          done(Status::InvalidArgument("queue group '" + g->name + "' reads topic '" + topic +
                                       "', not '" + c.tp.topic + "'"));
          return;
        }
        positions.emplace_back(c.tp.partition, c.offset);
      }
      done(SetQueuePositions(group, positions));
      return;
    }
  }
  Status s = StageCommit(group, member_id, generation, offsets, &done, /*external=*/false);
  if (done) done(std::move(s));  // not handed to the committer: validation failed
}

Status GroupManager::StageCommit(std::string_view group, std::string_view member_id,
                                 int32_t generation, const std::vector<OffsetCommit>& offsets,
                                 std::function<void(Status)>* done, bool external) {
  RUNNEL_ASSIGN_OR_RETURN(auto g, FindStream(group));
  {
    std::lock_guard lk(g->mu);
    RUNNEL_RETURN_IF_ERROR(CheckLive(*g));
    if (external && g->protocol == GroupProtocol::kNative) {
      return Status::InvalidArgument("group '" + g->name +
                                     "' is a native consumer group; commit as its member");
    }
    const int64_t now = store_.clock_->NowMs();
    bool changed = false;
    ExpireMembers(*g, now, &changed);
    if (changed) {
      Rebalance(*g);
      PersistGroupAsync(*g);  // never block a commit on it; members rejoin after a restart anyway
    }
    const StreamMember* m = nullptr;
    if (member_id.empty() && generation == -1) {
      if (!g->members.empty()) {
        return Status::Fenced("group '" + g->name + "' has live members; commit as a member");
      }
    } else {
      auto it = g->members.find(std::string(member_id));
      if (it == g->members.end()) {
        return Status::Fenced("member '" + std::string(member_id) + "' is not in group '" +
                              g->name + "'");
      }
      if (generation != g->generation) {
        return Status::Fenced("stale generation " + std::to_string(generation) + " (current " +
                              std::to_string(g->generation) + ") in group '" + g->name + "'");
      }
      m = &it->second;
      it->second.last_seen_ms = now;
    }
    MetaWrites writes;
    std::vector<std::pair<TopicPartition, fmt::OffsetValue>> updates;
    for (const OffsetCommit& c : offsets) {
      if (m && !std::binary_search(m->assignment.begin(), m->assignment.end(), c.tp)) {
        return Status::Fenced(c.tp.topic + "/" + std::to_string(c.tp.partition.value()) +
                              " is not assigned to member '" + std::string(member_id) + "'");
      }
      auto topic = store_.FindTopic(c.tp.topic);
      if (!topic) return Status::NotFound("unknown topic '" + c.tp.topic + "'");
      RUNNEL_ASSIGN_OR_RETURN(
          Offset lo, store_.ListOffset(c.tp.topic, c.tp.partition, OffsetQuery::Earliest()));
      RUNNEL_ASSIGN_OR_RETURN(Offset hi,
                              store_.ListOffset(c.tp.topic, c.tp.partition, OffsetQuery::Latest()));
      if (external) {
        // A Kafka client may commit any position (one past a compacted or future offset).
        if (c.offset.value() < 0) {
          return Status::OutOfRange("negative offset " + std::to_string(c.offset.value()) +
                                    " for " + c.tp.topic + "/" +
                                    std::to_string(c.tp.partition.value()));
        }
      } else if (c.offset < lo || c.offset > hi) {
        return Status::OutOfRange("offset " + std::to_string(c.offset.value()) + " is outside [" +
                                  std::to_string(lo.value()) + ", " + std::to_string(hi.value()) +
                                  "] of " + c.tp.topic + "/" +
                                  std::to_string(c.tp.partition.value()));
      }
      fmt::OffsetValue v{c.offset.value(), now, c.metadata};
      writes.Put(fmt::OffsetKey(g->id, topic->id, c.tp.partition.value()), fmt::Encode(v));
      updates.emplace_back(c.tp, std::move(v));
    }
    for (auto& [tp, v] : updates) g->committed[tp] = std::move(v);
    SubmitAsync(std::move(writes), /*durable=*/true, std::move(*done));
    *done = nullptr;
  }
  return Status::OK();
}

Result<std::vector<CommittedOffset>> GroupManager::FetchOffsets(
    std::string_view group, const std::vector<TopicPartition>& partitions) const {
  RUNNEL_ASSIGN_OR_RETURN(auto g, FindStream(group));
  std::lock_guard lk(g->mu);
  std::vector<CommittedOffset> out;
  for (const TopicPartition& tp : partitions) {
    auto it = g->committed.find(tp);
    if (it == g->committed.end()) {
      out.push_back({});
    } else {
      out.push_back({Offset(it->second.offset), it->second.metadata, it->second.commit_ms});
    }
  }
  return out;
}

// ---- lag and status ---------------------------------------------------------------------------

Result<GroupDescription> GroupManager::DescribeGroup(std::string_view name) const {
  auto g = Find(name);
  if (!g) return Status::NotFound("unknown group '" + std::string(name) + "'");
  std::lock_guard lk(g->mu);
  const int64_t now = store_.clock_->NowMs();
  GroupDescription d{g->name, g->mode, g->protocol, g->config, g->generation, {}, {}, g->counters};
  auto log_end = [&](const std::string& topic, int32_t p) {
    auto r = store_.ListOffset(topic, Partition(p), OffsetQuery::Latest());
    return r.ok() ? r->value() : 0;
  };
  if (g->mode == GroupMode::kQueue) {
    for (size_t p = 0; p < g->parts.size(); ++p) {
      const QueuePartition& qp = g->parts[p];
      PartitionLag l;
      l.tp = {g->config.topic, Partition(static_cast<int32_t>(p))};
      l.position = Offset(qp.cursor);
      l.log_end = Offset(log_end(g->config.topic, static_cast<int32_t>(p)));
      l.lag = std::max<int64_t>(0, l.log_end.value() - qp.cursor);
      l.pending = static_cast<int64_t>(qp.pel.size());
      int64_t oldest = 0;
      for (const auto& [off, e] : qp.pel) {
        if (e.first_delivery_ms > 0 && (oldest == 0 || e.first_delivery_ms < oldest))
          oldest = e.first_delivery_ms;
      }
      l.oldest_pending_age_ms = oldest ? now - oldest : 0;
      d.partitions.push_back(std::move(l));
    }
    for (const ConsumerState& c : g->consumers)
      d.consumers.push_back({c.name, c.pending, now - c.last_seen_ms, {}});
  } else {
    std::set<TopicPartition> tps;
    for (const auto& [tp, v] : g->committed) tps.insert(tp);
    for (const auto& [id, m] : g->members) tps.insert(m.assignment.begin(), m.assignment.end());
    for (const TopicPartition& tp : tps) {
      PartitionLag l;
      l.tp = tp;
      auto it = g->committed.find(tp);
      l.log_end = Offset(log_end(tp.topic, tp.partition.value()));
      if (it != g->committed.end()) {
        l.position = Offset(it->second.offset);
      } else {
        auto start = store_.ListOffset(tp.topic, tp.partition, OffsetQuery::Earliest());
        l.position = Offset(-1);
        l.lag = l.log_end.value() - (start.ok() ? start->value() : 0);
      }
      if (it != g->committed.end())
        l.lag = std::max<int64_t>(0, l.log_end.value() - l.position.value());
      d.partitions.push_back(std::move(l));
    }
    for (const auto& [id, m] : g->members)
      d.consumers.push_back({id, 0, now - m.last_seen_ms, m.assignment});
  }
  return d;
}

RecordStatus GroupManager::QueueStatus(const GroupState& g, int32_t p, int64_t offset) const {
  RecordStatus s;
  s.group = g.name;
  if (static_cast<size_t>(p) < g.parts.size()) {
    const QueuePartition& qp = g.parts[static_cast<size_t>(p)];
    if (auto it = qp.pel.find(offset); it != qp.pel.end()) {
      const PelEntry& e = it->second;
      s.state =
          e.state == fmt::PendingState::kParked ? RecordState::kUndelivered : RecordState::kPending;
      if (e.state == fmt::PendingState::kLocked) s.consumer = g.consumers[e.consumer].name;
      s.deliveries = e.deliveries;
      s.lock_until_ms = e.due_ms;
      return s;
    }
    std::string v;
    rocksdb::Status gs = store_.db_->Get(rocksdb::ReadOptions(), store_.meta_cf_,
                                         fmt::DeadLetterKey(g.id, p, offset), &v);
    fmt::DeadLetterValue dl;
    if (gs.ok() && fmt::Decode(v, &dl).ok()) {
      s.state = RecordState::kDeadLettered;
      s.dlq_partition = Partition(dl.dlq_partition);
      s.dlq_offset = Offset(dl.dlq_offset);
      s.reason = dl.reason;
      return s;
    }
    s.state = offset < qp.cursor ? RecordState::kAcked : RecordState::kUndelivered;
  }
  return s;
}

Result<std::vector<RecordStatus>> GroupManager::StatusOf(std::string_view topic,
                                                         Partition partition, Offset offset) const {
  auto t = store_.FindTopic(topic);
  if (!t) return Status::NotFound("unknown topic '" + std::string(topic) + "'");
  RUNNEL_ASSIGN_OR_RETURN(Offset lo, store_.ListOffset(topic, partition, OffsetQuery::Earliest()));
  RUNNEL_ASSIGN_OR_RETURN(Offset hi, store_.ListOffset(topic, partition, OffsetQuery::Latest()));
  if (offset < lo || offset >= hi) {
    return Status::OutOfRange("offset " + std::to_string(offset.value()) + " is outside [" +
                              std::to_string(lo.value()) + ", " + std::to_string(hi.value()) +
                              ") of " + std::string(topic) + "/" +
                              std::to_string(partition.value()));
  }
  std::vector<std::shared_ptr<GroupState>> groups;
  {
    std::shared_lock lk(mu_);
    for (const auto& [name, g] : groups_) groups.push_back(g);
  }
  std::vector<RecordStatus> out;
  for (const auto& g : groups) {
    std::lock_guard lk(g->mu);
    if (g->mode == GroupMode::kQueue) {
      if (g->topic_id == t->id) out.push_back(QueueStatus(*g, partition.value(), offset.value()));
      continue;
    }
    auto it = g->committed.find(TopicPartition{std::string(topic), partition});
    bool subscribed = it != g->committed.end();
    for (const auto& [id, m] : g->members) {
      subscribed |= std::find(m.topics.begin(), m.topics.end(), topic) != m.topics.end();
    }
    if (!subscribed) continue;
    RecordStatus s;
    s.group = g->name;
    s.state = it != g->committed.end() && offset.value() < it->second.offset
                  ? RecordState::kAcked
                  : RecordState::kUndelivered;
    out.push_back(std::move(s));
  }
  return out;
}

Result<std::vector<RecordStatus>> GroupManager::StatusByDedupKey(std::string_view topic,
                                                                 std::string_view dedup_key) const {
  auto t = store_.FindTopic(topic);
  if (!t) return Status::NotFound("unknown topic '" + std::string(topic) + "'");
  std::optional<DedupEntry> found;
  {
    std::lock_guard commit(store_.commit_mu_);
    if (const DedupEntry* e = t->dedup.Find(dedup_key, store_.clock_->NowMs())) found = *e;
  }
  if (!found) {
    return Status::NotFound("no record with dedup key '" + std::string(dedup_key) +
                            "' within the dedup window of '" + std::string(topic) + "'");
  }
  return StatusOf(topic, Partition(found->partition), Offset(found->offset));
}

// ---- dead letters -----------------------------------------------------------------------------

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

Result<std::vector<DeadLetter>> GroupManager::ListDeadLetters(std::string_view group, size_t max,
                                                              Offset from_offset) const {
  RUNNEL_ASSIGN_OR_RETURN(auto g, FindQueue(group));
  std::string dlq_topic;
  {
    std::lock_guard lk(g->mu);
    dlq_topic = g->config.dlq_topic;
  }
  auto dlq = store_.FindTopic(dlq_topic);
  if (!dlq) return Status::NotFound("dead-letter topic '" + dlq_topic + "' does not exist");
  size_t partitions;
  {
    std::shared_lock lk(store_.topics_mu_);
    partitions = dlq->partitions.size();
  }
  std::vector<DeadLetter> out;
  GroupRecordReader reader(store_, dlq_topic);
  auto header = [](const Record& r, std::string_view name) {
    return std::string(r.FindHeader(name).value_or(""));
  };
  auto number = [&](const Record& r, std::string_view name) {
    const std::string v = header(r, name);
    int64_t n = 0;
    std::from_chars(v.data(), v.data() + v.size(), n);
    return n;
  };
  for (size_t p = 0; p < partitions && out.size() < max; ++p) {
    RUNNEL_ASSIGN_OR_RETURN(
        Offset start,
        store_.ListOffset(dlq_topic, Partition(static_cast<int32_t>(p)), OffsetQuery::Earliest()));
    // Letters below the redrive cursor were redriven; the truncation that follows a redrive may
    // not have happened yet (a crash in between).
    RUNNEL_ASSIGN_OR_RETURN(const int64_t redriven,
                            RedriveCursor(*g, dlq->id, static_cast<int32_t>(p)));
    const int64_t from = std::max({start.value(), from_offset.value(), redriven});
    RUNNEL_RETURN_IF_ERROR(reader.Scan(static_cast<int32_t>(p), from, [&](const Record& r) {
      if (header(r, "runnel.dlq.group") != g->name) return true;
      DeadLetter d;
      d.dlq_partition = Partition(static_cast<int32_t>(p));
      d.dlq_offset = Offset(r.offset);
      d.source_topic = header(r, "runnel.dlq.topic");
      d.source_partition = Partition(static_cast<int32_t>(number(r, "runnel.dlq.partition")));
      d.source_offset = Offset(number(r, "runnel.dlq.offset"));
      d.deliveries = static_cast<int32_t>(number(r, "runnel.dlq.deliveries"));
      d.reason = header(r, "runnel.dlq.reason");
      d.first_failure_ms = number(r, "runnel.dlq.first_failure_ms");
      d.last_failure_ms = number(r, "runnel.dlq.last_failure_ms");
      if (r.key) d.key = std::string(*r.key);
      if (r.value) d.value = std::string(*r.value);
      out.push_back(std::move(d));
      return out.size() < max;
    }));
  }
  return out;
}

Result<int64_t> GroupManager::RedriveCursor(const GroupState& g, uint32_t dlq_topic_id,
                                            int32_t dlq_partition) const {
  std::string v;
  rocksdb::Status s = store_.db_->Get(rocksdb::ReadOptions(), store_.meta_cf_,
                                      fmt::RedriveKey(g.id, dlq_topic_id, dlq_partition), &v);
  if (s.IsNotFound()) return int64_t{0};
  if (!s.ok()) return FromRocks(s, "reading a redrive cursor");
  fmt::OffsetValue ov;
  RUNNEL_RETURN_IF_ERROR(fmt::Decode(v, &ov));
  return ov.offset;
}

Result<int64_t> GroupManager::Redrive(std::string_view group, const RedriveSpec& spec) {
  std::lock_guard redrive_lk(redrive_mu_);
  RUNNEL_ASSIGN_OR_RETURN(auto g, FindQueue(group));
  std::string source, dlq_topic;
  {
    std::lock_guard lk(g->mu);
    source = g->config.topic;
    dlq_topic = g->config.dlq_topic;
  }
  const std::string target = spec.to_topic.empty() ? source : spec.to_topic;
  auto t = store_.FindTopic(target);
  if (!t) return Status::NotFound("unknown topic '" + target + "'");
  auto dlq = store_.FindTopic(dlq_topic);
  if (!dlq) return Status::NotFound("dead-letter topic '" + dlq_topic + "' does not exist");
  size_t target_partitions;
  {
    std::shared_lock lk(store_.topics_mu_);
    target_partitions = t->partitions.size();
  }
  // An unfiltered redrive empties a private DLQ: it moves the letters rather than copying them.
  // Each copy then advances the group's redrive cursor in the same WriteBatch, and the DLQ is
  // truncated to the cursor at the end; a crash anywhere in between neither loses a letter nor
  // redrives one twice. A filtered redrive copies and leaves the DLQ as it is.
  const bool move = !spec.reason && spec.from.value() == 0 &&
                    spec.to.value() == std::numeric_limits<int64_t>::max() &&
                    dlq_topic == source + ".dlq." + g->name;
  RUNNEL_ASSIGN_OR_RETURN(auto letters,
                          ListDeadLetters(group, std::numeric_limits<size_t>::max(), Offset(0)));
  std::map<int32_t, int64_t> listed_end;  // per DLQ partition: one past the last listed offset
  for (const DeadLetter& d : letters) {
    auto& e = listed_end[d.dlq_partition.value()];
    e = std::max(e, d.dlq_offset.value() + 1);
  }
  int64_t moved = 0;
  GroupRecordReader reader(store_, dlq_topic);
  rocksdb::ColumnFamilyHandle* meta = store_.meta_cf_;
  for (const DeadLetter& d : letters) {
    if (d.dlq_offset < spec.from || d.dlq_offset >= spec.to) continue;
    if (spec.reason && !GlobMatch(*spec.reason, d.reason)) continue;
    RUNNEL_ASSIGN_OR_RETURN(LoadedRecord rec,
                            reader.Get(d.dlq_partition.value(), d.dlq_offset.value()));
    RecordBatchBuilder b;
    std::vector<RecordHeader> headers;
    for (const auto& [k, v] : rec.headers) {
      if (std::string_view(k).starts_with("runnel.dlq.")) continue;
      headers.push_back({k, v ? std::optional<std::string_view>(*v) : std::nullopt});
    }
    std::optional<std::string_view> key, value;
    if (rec.key) key = *rec.key;
    if (rec.value) value = *rec.value;
    b.Add(rec.timestamp_ms, key, value, headers);
    const int32_t p =
        static_cast<int32_t>(static_cast<size_t>(d.source_partition.value()) % target_partitions);
    AppendRequest req{target, Partition(p), b.Build(), AckMode::kDurable};
    auto op = std::make_unique<PendingAppend>();
    RUNNEL_RETURN_IF_ERROR(store_.Prepare(req, op.get()));
    if (move) {
      op->extra = [meta, cursor = fmt::RedriveKey(g->id, dlq->id, d.dlq_partition.value()),
                   next = d.dlq_offset.value() + 1](const AppendResult*,
                                                    rocksdb::WriteBatch& round) {
        round.Put(meta, cursor, fmt::Encode(fmt::OffsetValue{next, 0, {}}));
      };
    }
    std::promise<Status> appended;
    std::future<Status> done = appended.get_future();
    op->done = [&appended](Result<AppendResult> r) { appended.set_value(r.status()); };
    store_.Enqueue(std::move(op));
    RUNNEL_RETURN_IF_ERROR(done.get());
    ++moved;
  }
  if (move) RUNNEL_RETURN_IF_ERROR(store_.TruncateTopic(dlq_topic, &listed_end));
  return moved;
}

Status GroupManager::PurgeDeadLetters(std::string_view group) {
  RUNNEL_ASSIGN_OR_RETURN(auto g, FindQueue(group));
  std::string dlq_topic, source;
  {
    std::lock_guard lk(g->mu);
    dlq_topic = g->config.dlq_topic;
    source = g->config.topic;
  }
  if (dlq_topic != source + ".dlq." + g->name) {
    return Status::InvalidArgument(
        "dead-letter topic '" + dlq_topic +
        "' may be shared with other groups; delete or truncate it as a topic");
  }
  return store_.TruncateTopic(dlq_topic, nullptr);
}

// ---- recovery and retention -------------------------------------------------------------------

Status GroupManager::Load() {
  std::unordered_map<uint32_t, std::shared_ptr<GroupState>> by_id;
  RUNNEL_RETURN_IF_ERROR(store_.ForEachMeta(
      fmt::TypeBegin(fmt::MetaKeyType::kGroup), fmt::TypeEnd(fmt::MetaKeyType::kGroup),
      [&](std::string_view k, std::string_view v) {
        fmt::GroupValue gv;
        RUNNEL_RETURN_IF_ERROR(fmt::Decode(v, &gv));
        auto g = std::make_shared<GroupState>();
        g->name = std::string(k.substr(1));
        g->id = gv.group_id;
        g->mode = gv.mode == static_cast<uint8_t>(GroupMode::kStream) ? GroupMode::kStream
                                                                      : GroupMode::kQueue;
        g->generation = gv.generation;
        g->created_ms = gv.created_ms;
        for (const auto& [ck, cv] : gv.config) {
          if (ck == kProtocolKey) {
            if (cv != GroupProtocolName(GroupProtocol::kKafka))
              return Status::Corruption("group '" + g->name + "' has unknown protocol '" + cv +
                                        "'");
            g->protocol = GroupProtocol::kKafka;
            continue;
          }
          RUNNEL_RETURN_IF_ERROR(g->config.Set(ck, cv));
        }
        if (g->mode == GroupMode::kQueue) {
          if (auto t = store_.FindTopic(g->config.topic)) {
            g->topic_id = t->id;
            g->parts.resize(t->partitions.size());
          }
        }
        by_id[g->id] = g;
        groups_[g->name] = std::move(g);
        return Status::OK();
      }));
  std::unordered_map<uint32_t, std::string> topic_names;
  for (const std::string& name : store_.ListTopics())
    topic_names[store_.FindTopic(name)->id] = name;

  RUNNEL_RETURN_IF_ERROR(store_.ForEachMeta(
      fmt::TypeBegin(fmt::MetaKeyType::kOffset), fmt::TypeEnd(fmt::MetaKeyType::kOffset),
      [&](std::string_view k, std::string_view v) {
        if (k.size() != 13) return Status::Corruption("malformed offset key in meta");
        auto g = by_id.find(DecodeFixed32BE(k.data() + 1));
        if (g == by_id.end()) return Status::OK();  // deleted group
        const uint32_t topic_id = DecodeFixed32BE(k.data() + 5);
        const int32_t p = static_cast<int32_t>(DecodeFixed32BE(k.data() + 9));
        fmt::OffsetValue ov;
        RUNNEL_RETURN_IF_ERROR(fmt::Decode(v, &ov));
        GroupState& gs = *g->second;
        if (gs.mode == GroupMode::kQueue) {
          if (topic_id != gs.topic_id) {
            // Its topic was deleted (perhaps recreated under the same name): stay bound to the
            // old one so every call reports the group stale instead of mixing two logs.
            gs.topic_id = topic_id;
          } else if (static_cast<size_t>(p) < gs.parts.size()) {
            gs.parts[static_cast<size_t>(p)].cursor = ov.offset;
          }
          return Status::OK();
        }
        auto topic = topic_names.find(topic_id);
        if (topic == topic_names.end()) return Status::OK();  // deleted topic
        gs.committed[{topic->second, Partition(p)}] = std::move(ov);
        return Status::OK();
      }));

  RUNNEL_RETURN_IF_ERROR(store_.ForEachMeta(
      fmt::TypeBegin(fmt::MetaKeyType::kPending), fmt::TypeEnd(fmt::MetaKeyType::kPending),
      [&](std::string_view k, std::string_view v) {
        if (k.size() != 17) return Status::Corruption("malformed pending key in meta");
        auto g = by_id.find(DecodeFixed32BE(k.data() + 1));
        if (g == by_id.end()) return Status::OK();
        GroupState& gs = *g->second;
        const int32_t p = static_cast<int32_t>(DecodeFixed32BE(k.data() + 5));
        const int64_t off = static_cast<int64_t>(DecodeFixed64BE(k.data() + 9));
        if (static_cast<size_t>(p) >= gs.parts.size()) return Status::OK();
        fmt::PendingValue pv;
        RUNNEL_RETURN_IF_ERROR(fmt::Decode(v, &pv));
        PelEntry e{pv.state,
                   0,
                   pv.deliveries,
                   pv.due_ms,
                   pv.first_delivery_ms,
                   pv.last_active_ms,
                   pv.first_failure_ms,
                   pv.last_failure_ms,
                   std::nullopt};
        if (e.state == fmt::PendingState::kLocked) {
          e.consumer = ConsumerId(gs, pv.consumer, pv.last_active_ms);
          ++gs.consumers[e.consumer].pending;
        }
        if (e.state != fmt::PendingState::kParked) gs.due.insert(DueKey{e.due_ms, p, off});
        gs.parts[static_cast<size_t>(p)].pel.emplace(off, std::move(e));
        return Status::OK();
      }));

  // ordered_keys: rebuild the per-key queues from the records' keys. A crash can leave a key
  // with its next record promoted before the head's dead-letter move was written, and parked
  // entries whose record retention removed: repair both.
  for (auto& [id, g] : by_id) {
    if (g->mode != GroupMode::kQueue || !g->config.ordered_keys) continue;
    GroupRecordReader& reader = ReaderFor(*g);
    const int64_t now = store_.clock_->NowMs();
    for (size_t p = 0; p < g->parts.size(); ++p) {
      auto& pel = g->parts[p].pel;
      for (auto it = pel.begin(); it != pel.end();) {
        auto rec = reader.Get(static_cast<int32_t>(p), it->first);
        if (!rec.ok()) {  // the record is gone: nothing left to deliver
          EraseDue(*g, static_cast<int32_t>(p), it->first, it->second);
          g->overlay.Delete(fmt::PendingKey(g->id, static_cast<int32_t>(p), it->first));
          it = pel.erase(it);
          continue;
        }
        if (rec->key) {
          it->second.key = rec->key;
          g->key_queues[{static_cast<int32_t>(p), *rec->key}].push_back(it->first);
        }
        ++it;
      }
    }
    for (auto& [pk, q] : g->key_queues) {
      auto& pel = g->parts[static_cast<size_t>(pk.first)].pel;
      for (size_t i = 0; i < q.size(); ++i) {
        PelEntry& e = pel.at(q[i]);
        if (i == 0 && e.state == fmt::PendingState::kParked) {
          e.state = fmt::PendingState::kRetry;  // heads are never parked
          e.due_ms = now;
          g->due.insert(DueKey{now, pk.first, q[i]});
          PutEntry(*g, pk.first, q[i], e);
        } else if (i > 0 && e.state != fmt::PendingState::kParked) {
          EraseDue(*g, pk.first, q[i], e);  // only the head may be in flight
          e.state = fmt::PendingState::kParked;
          PutEntry(*g, pk.first, q[i], e);
        }
      }
    }
  }
  return Status::OK();
}

int64_t GroupManager::RetentionFloor(uint32_t topic_id, int32_t partition) const {
  std::vector<std::shared_ptr<GroupState>> groups;
  {
    std::shared_lock lk(mu_);
    for (const auto& [name, g] : groups_) groups.push_back(g);
  }
  int64_t floor = kNoFloor;
  for (const auto& g : groups) {
    std::lock_guard lk(g->mu);
    if (g->mode != GroupMode::kQueue || !g->config.retain_until_acked || g->topic_id != topic_id)
      continue;
    if (static_cast<size_t>(partition) >= g->parts.size()) {
      floor = 0;  // a partition the group has not seen yet: keep everything
      continue;
    }
    const QueuePartition& qp = g->parts[static_cast<size_t>(partition)];
    floor =
        std::min(floor, qp.pel.empty() ? qp.cursor : std::min(qp.cursor, qp.pel.begin()->first));
  }
  return floor;
}

}  // namespace runnel::storage
