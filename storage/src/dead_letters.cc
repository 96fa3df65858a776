// Dead letters: moving records into a queue group's DLQ topic, listing, redriving and purging
// them.
#include <algorithm>
#include <charconv>
#include <limits>
#include <set>

#include "group_manager.h"
#include "log_store_impl.h"
#include "logging.h"
#include "rocks_status.h"
#include "runnel/common/glob.h"

namespace runnel::storage {

namespace fmt = format;

namespace {

// Dead letters are appended in batches of at most this many records.
constexpr size_t kMaxDeadLettersPerBatch = 256;

}  // namespace

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
    RUNNEL_ASSIGN_OR_RETURN(const std::set<int64_t> marked,
                            RedrivenLetters(*g, dlq->id, static_cast<int32_t>(p), from));
    RUNNEL_RETURN_IF_ERROR(reader.Scan(static_cast<int32_t>(p), from, [&](const Record& r) {
      if (header(r, "runnel.dlq.group") != g->name || marked.count(r.offset)) return true;
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

Result<std::set<int64_t>> GroupManager::RedrivenLetters(const GroupState& g, uint32_t dlq_topic_id,
                                                        int32_t dlq_partition, int64_t from) const {
  std::set<int64_t> out;
  RUNNEL_RETURN_IF_ERROR(store_.ForEachMeta(
      fmt::RedrivenKey(g.id, dlq_topic_id, dlq_partition, from),
      fmt::RedrivenKey(g.id, dlq_topic_id, dlq_partition, std::numeric_limits<int64_t>::max()),
      [&](std::string_view key, std::string_view) {
        uint32_t gid = 0, tid = 0;
        int32_t p = 0;
        int64_t offset = 0;
        if (fmt::ParseRedrivenKey(key, &gid, &tid, &p, &offset)) out.insert(offset);
        return Status::OK();
      }));
  return out;
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
  // truncated at the end; a crash anywhere in between neither loses a letter nor redrives one
  // twice. A filtered redrive (or one from a shared DLQ) leaves the DLQ as it is, but marks each
  // letter it copies (a "Y" key in the copy's WriteBatch): listings and later redrives skip it.
  const bool move = !spec.reason && spec.from.value() == 0 &&
                    spec.to.value() == std::numeric_limits<int64_t>::max() &&
                    dlq_topic == source + ".dlq." + g->name;
  // A move truncates each DLQ partition past every letter it copies and every letter earlier
  // filtered redrives marked; letters after those stay.
  std::map<int32_t, int64_t> truncate_to;
  if (move) {
    size_t dlq_partitions;
    {
      std::shared_lock lk(store_.topics_mu_);
      dlq_partitions = dlq->partitions.size();
    }
    for (size_t p = 0; p < dlq_partitions; ++p) {
      RUNNEL_ASSIGN_OR_RETURN(auto marked,
                              RedrivenLetters(*g, dlq->id, static_cast<int32_t>(p), 0));
      if (!marked.empty()) truncate_to[static_cast<int32_t>(p)] = *marked.rbegin() + 1;
    }
  }
  RUNNEL_ASSIGN_OR_RETURN(auto letters,
                          ListDeadLetters(group, std::numeric_limits<size_t>::max(), Offset(0)));
  for (const DeadLetter& d : letters) {
    auto& e = truncate_to[d.dlq_partition.value()];
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
    } else {
      op->extra = [meta, target,
                   mark = fmt::RedrivenKey(g->id, dlq->id, d.dlq_partition.value(),
                                           d.dlq_offset.value()),
                   now = store_.clock_->NowMs()](const AppendResult* r,
                                                 rocksdb::WriteBatch& round) {
        round.Put(meta, mark, fmt::Encode(fmt::OffsetValue{r->OffsetOf(0).value(), now, target}));
      };
    }
    std::promise<Status> appended;
    std::future<Status> done = appended.get_future();
    op->done = [&appended](Result<AppendResult> r) { appended.set_value(r.status()); };
    store_.Enqueue(std::move(op));
    RUNNEL_RETURN_IF_ERROR(done.get());
    ++moved;
  }
  if (move) {
    RUNNEL_RETURN_IF_ERROR(store_.TruncateTopic(dlq_topic, &truncate_to));
    // Every mark is now below the log start: drop them (a crash before this leaves marks of
    // letters that are gone, which nothing reads).
    MetaWrites w;
    w.range_deletes.emplace_back(fmt::IdPrefixBegin(fmt::MetaKeyType::kRedriven, g->id),
                                 fmt::IdPrefixEnd(fmt::MetaKeyType::kRedriven, g->id));
    RUNNEL_RETURN_IF_ERROR(Submit(std::move(w), /*durable=*/true).get());
  }
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

}  // namespace runnel::storage
