// LogStoreImpl's append path: validation on the caller's thread, then group commit on the
// committer thread (offsets, idempotent producers, dedup window, one WriteBatch, one WAL sync).
#include <rocksdb/perf_level.h>

#include <algorithm>
#include <chrono>
#include <filesystem>

#include "log_store_impl.h"
#include "logging.h"
#include "rocks_status.h"

namespace runnel::storage {

namespace fmt = format;

Status LogStoreImpl::Prepare(AppendRequest& request, PendingAppend* out) {
  {
    std::shared_lock lk(topics_mu_);
    auto it = topics_.find(request.topic);
    if (it == topics_.end()) return Status::NotFound("unknown topic '" + request.topic + "'");
    const auto& parts = it->second->partitions;
    const int32_t p = request.partition.value();
    if (p < 0 || static_cast<size_t>(p) >= parts.size()) {
      return Status::NotFound("topic '" + request.topic + "' has " + std::to_string(parts.size()) +
                              " partitions; partition " + std::to_string(p) + " does not exist");
    }
    out->topic = it->second;
    out->part = parts[static_cast<size_t>(p)];
    const TopicConfig& c = it->second->config;
    if (request.batch.size() > static_cast<size_t>(c.max_message_bytes)) {
      return Status::TooLarge(
          "batch of " + std::to_string(request.batch.size()) + " bytes exceeds max.message.bytes " +
          std::to_string(c.max_message_bytes) + " of topic '" + request.topic + "'");
    }
    out->dedup_window_ms = c.dedup_window_ms;
    out->index_interval_bytes = c.index_interval_bytes;
    out->index_interval_ms = c.index_interval_ms;
  }
  const bool dedup = out->dedup_window_ms > 0;
  int32_t index = 0;
  Status s =
      ForEachRecord(request.batch, DecodeLimits{options_.max_uncompressed_batch_bytes},
                    &out->header, [&](const Record& r) {
                      if (dedup && r.header_count > 0) {
                        if (auto key = r.FindHeader(fmt::kDedupKeyHeader); key && !key->empty()) {
                          out->dedup_keys.emplace_back(index, std::string(*key));
                        }
                      }
                      ++index;
                    });
  if (!s.ok()) {
    return s.WithContext("invalid batch for " + request.topic + "/" +
                         std::to_string(request.partition.value()));
  }
  if (out->header.attributes & (kAttrTransactional | kAttrControl)) {
    return Status::InvalidArgument("transactional and control batches are not supported");
  }
  if (out->header.log_append_time()) {
    // The index and retention trust maxTimestamp, which the codec only checks for CreateTime.
    return Status::InvalidArgument("LogAppendTime batches are not accepted from producers");
  }
  out->batch = std::move(request.batch);
  out->acks = request.acks;
  return Status::OK();
}

void LogStoreImpl::AppendAsync(AppendRequest request, AppendCallback done) {
  auto req = std::make_unique<PendingAppend>();
  Status s = Prepare(request, req.get());
  if (!s.ok()) {
    done(std::move(s));
    return;
  }
  if (req->acks == AckMode::kNone) {
    done(AppendResult{});
  } else {
    req->done = std::move(done);
  }
  Enqueue(std::move(req));
}

void LogStoreImpl::Enqueue(std::unique_ptr<PendingAppend> req) {
  const size_t bytes = req->batch.size();
  {
    std::unique_lock lk(queue_mu_);
    space_cv_.wait(lk, [&] {
      return stopping_ || queue_.empty() || queued_bytes_ + bytes <= options_.max_queued_bytes;
    });
    if (!stopping_) {
      queued_bytes_ += bytes;
      queue_.push_back(std::move(req));
    }
  }
  if (req) {  // not queued: the store is closing
    if (req->done) req->done(Status::Shutdown("log store is closing"));
    return;
  }
  queue_cv_.notify_one();
}

// Meta-only writes (consumer-group acks, deliveries, lock renewals) are fsynced at the latest
// this long after they were written, by a sync-only round when nothing else forces one.
constexpr auto kMetaSyncInterval = std::chrono::milliseconds(50);

void LogStoreImpl::CommitterLoop() {
  // This thread does every memtable insert. RocksDB's default perf level counts into a
  // thread-local context on each key, a measurable share of the group path; nothing reads it.
  rocksdb::SetPerfLevel(rocksdb::PerfLevel::kDisable);
  std::vector<std::unique_ptr<PendingAppend>> round;
  while (true) {
    {
      std::unique_lock lk(queue_mu_);
      auto ready = [&] { return stopping_ || !queue_.empty(); };
      if (unsynced_meta_) {
        if (!queue_cv_.wait_until(lk, unsynced_meta_since_ + kMetaSyncInterval, ready)) {
          lk.unlock();
          CommitRound(round);  // sync-only round
          continue;
        }
      } else {
        queue_cv_.wait(lk, ready);
      }
      if (queue_.empty()) {  // stopping and drained
        lk.unlock();
        if (unsynced_meta_) CommitRound(round);
        return;
      }
      size_t bytes = 0;
      while (!queue_.empty() &&
             (round.empty() || bytes + queue_.front()->batch.size() <= options_.max_commit_bytes)) {
        bytes += queue_.front()->batch.size();
        round.push_back(std::move(queue_.front()));
        queue_.pop_front();
      }
      queued_bytes_ -= bytes;
    }
    space_cv_.notify_all();
    CommitRound(round);
    round.clear();
  }
}

LogStoreImpl::PartitionDelta& LogStoreImpl::DeltaFor(Round& round, PartitionState& part) {
  auto [it, inserted] = round.parts.try_emplace(&part);
  PartitionDelta& d = it->second;
  if (inserted) {
    d.next_offset = part.next_offset;
    d.end_bytes = part.end_bytes.load(std::memory_order_relaxed);
    d.max_timestamp = part.max_timestamp;
    std::lock_guard lk(part.mu);
    if (!part.index.empty()) {
      d.has_index = true;
      d.last_index_bytes = part.index.back().bytes_before;
      d.last_index_ms = part.index.back().created_ms;
    }
  }
  return d;
}

fmt::PartitionValue LogStoreImpl::PartitionRecord(const PartitionState& part,
                                                  const PartitionDelta* delta) const {
  fmt::PartitionValue v;
  v.topic_id = part.topic_id;
  v.partition = part.partition.value();
  v.next_offset = delta ? delta->next_offset : part.next_offset;
  v.log_start = part.log_start.load();
  {
    std::lock_guard lk(part.mu);
    v.start_bytes = part.start_bytes;
  }
  v.end_bytes = delta ? delta->end_bytes : part.end_bytes.load();
  v.max_timestamp = delta ? delta->max_timestamp : part.max_timestamp;
  return v;
}

void LogStoreImpl::ExpireDedup(int64_t now_ms, rocksdb::WriteBatch* batch) {
  for (auto it = dedup_topics_.begin(); it != dedup_topics_.end();) {
    TopicState& t = *it->second;
    t.dedup.Expire(
        now_ms, [&](const std::string& key) { batch->Delete(meta_cf_, fmt::DedupKey(t.id, key)); });
    it = t.dedup.size() == 0 ? dedup_topics_.erase(it) : std::next(it);
  }
}

const DedupEntry* LogStoreImpl::FindDedup(PendingAppend& req, Round& round, const std::string& key,
                                          int64_t now_ms) {
  auto& round_keys = round.dedup[req.topic.get()];
  if (auto it = round_keys.find(key); it != round_keys.end()) return &it->second;
  return req.topic->dedup.Find(key, now_ms);
}

void LogStoreImpl::RecoverDroppedRecords(PendingAppend& req, Round& round,
                                         const fmt::ProducerBatchValue& original, int64_t now_ms,
                                         AppendResult* result) {
  // The retry's records that the original append dropped as duplicates are those whose dedup key
  // points outside the original's stored range. Exact while the keys are within the window.
  for (const auto& [index, key] : req.dedup_keys) {
    const DedupEntry* e = FindDedup(req, round, key, now_ms);
    if (!e) continue;
    const bool stored_here = e->partition == req.part->partition.value() &&
                             e->offset >= original.base_offset && e->offset <= original.last_offset;
    if (!stored_here) {
      result->duplicates.push_back({index, Partition(e->partition), Offset(e->offset)});
    }
  }
}

Status LogStoreImpl::Stage(PendingAppend& req, Round& round, int64_t now_ms) {
  if (!req.part) {  // meta-only op
    req.result = AppendResult{};
    if (req.extra) req.extra(nullptr, round.batch);
    return Status::OK();
  }
  RUNNEL_RETURN_IF_ERROR(StageAppend(req, round, now_ms));
  if (req.extra) req.extra(&req.result.value(), round.batch);
  return Status::OK();
}

Status LogStoreImpl::StageAppend(PendingAppend& req, Round& round, int64_t now_ms) {
  PartitionState& part = *req.part;
  if (part.deleted.load()) {
    return Status::NotFound("topic '" + part.topic_name + "' was deleted");
  }
  PartitionDelta& d = DeltaFor(round, part);
  const BatchHeader& h = req.header;
  AppendResult result;

  // Idempotent producer: fence stale epochs, answer retries, refuse gaps.
  fmt::ProducerValue producer;
  const bool idempotent = h.producer_id >= 0;
  if (idempotent) {
    const fmt::ProducerValue* current = nullptr;
    if (auto it = d.producers.find(h.producer_id); it != d.producers.end()) {
      current = &it->second;
    } else if (auto live = part.producers.find(h.producer_id); live != part.producers.end()) {
      current = &live->second;
    }
    if (current) {
      if (h.producer_epoch < current->epoch) {
        return Status::Fenced("producer " + std::to_string(h.producer_id) + " epoch " +
                              std::to_string(h.producer_epoch) + " is older than current epoch " +
                              std::to_string(current->epoch));
      }
      if (h.producer_epoch == current->epoch) {
        for (const fmt::ProducerBatchValue& b : current->recent) {
          if (b.first_sequence == h.base_sequence && b.last_sequence == h.last_sequence()) {
            result.duplicate_batch = true;
            result.base_offset = Offset(b.base_offset);
            result.last_offset = Offset(b.last_offset);
            result.records_written =
                b.base_offset < 0 ? 0 : static_cast<int32_t>(b.last_offset - b.base_offset + 1);
            RecoverDroppedRecords(req, round, b, now_ms, &result);
            req.result = std::move(result);
            return Status::OK();
          }
        }
        const int32_t expected =
            current->last_sequence == INT32_MAX ? 0 : current->last_sequence + 1;
        if (h.base_sequence != expected) {
          return Status::OutOfOrderSequence("producer " + std::to_string(h.producer_id) +
                                            " sent sequence " + std::to_string(h.base_sequence) +
                                            ", expected " + std::to_string(expected));
        }
        producer = *current;
      } else if (h.base_sequence != 0) {
        return Status::OutOfOrderSequence("producer " + std::to_string(h.producer_id) + " epoch " +
                                          std::to_string(h.producer_epoch) +
                                          " must start at sequence 0, not " +
                                          std::to_string(h.base_sequence));
      }
    }
    producer.epoch = h.producer_epoch;
  }

  // Dedup window: drop records whose key was seen, remember the rest.
  std::string rebuilt;
  std::string* batch = &req.batch;
  int32_t kept = h.record_count;
  std::vector<std::pair<int32_t, const std::string*>> new_keys;  // (index among kept, key)
  if (!req.dedup_keys.empty()) {
    std::unordered_map<std::string_view, int32_t> in_batch;  // key -> record index
    std::vector<bool> drop(static_cast<size_t>(h.record_count), false);
    for (const auto& [index, key] : req.dedup_keys) {
      const DedupEntry* seen = FindDedup(req, round, key, now_ms);
      if (seen) {
        result.duplicates.push_back({index, Partition(seen->partition), Offset(seen->offset)});
        drop[static_cast<size_t>(index)] = true;
      } else if (auto [it, fresh] = in_batch.emplace(key, index); !fresh) {
        // Same key twice in one batch: the later one is a duplicate of the earlier one, whose
        // offset is known once offsets are assigned below.
        result.duplicates.push_back({index, part.partition, Offset(-2 - it->second)});
        drop[static_cast<size_t>(index)] = true;
      }
    }
    if (!result.duplicates.empty()) {
      kept = h.record_count - static_cast<int32_t>(result.duplicates.size());
      if (kept > 0) {
        auto decoded =
            DecodedBatch::Decode(req.batch, DecodeLimits{options_.max_uncompressed_batch_bytes});
        if (!decoded.ok()) return decoded.status();
        RecordBatchBuilder builder(
            {h.compression(), h.producer_id, h.producer_epoch, h.base_sequence});
        for (const Record& r : decoded->records()) {
          if (!drop[static_cast<size_t>(r.offset - h.base_offset)]) builder.AddCopy(r);
        }
        rebuilt = builder.Build();
        batch = &rebuilt;
      }
    }
    int32_t position = 0;
    auto key_it = req.dedup_keys.begin();
    for (int32_t i = 0; i < h.record_count; ++i) {
      if (drop[static_cast<size_t>(i)]) continue;
      while (key_it != req.dedup_keys.end() && key_it->first < i) ++key_it;
      if (key_it != req.dedup_keys.end() && key_it->first == i)
        new_keys.emplace_back(position, &key_it->second);
      ++position;
    }
  }

  if (kept > 0) {
    const int64_t base = d.next_offset;
    SetBatchBaseOffset(*batch, base);
    round.batch.Put(part.cf, fmt::LogKey(part.uid, base), *batch);
    const bool roll =
        !d.has_index ||
        d.end_bytes - d.last_index_bytes >= static_cast<uint64_t>(req.index_interval_bytes) ||
        now_ms - d.last_index_ms >= req.index_interval_ms;
    if (roll) {
      IndexEntry e{base, d.end_bytes, d.max_timestamp, now_ms};
      round.batch.Put(meta_cf_, fmt::IndexKey(part.uid, base),
                      fmt::Encode(fmt::IndexValue{e.bytes_before, e.max_ts_before, e.created_ms}));
      d.new_index.push_back(e);
      d.has_index = true;
      d.last_index_bytes = d.end_bytes;
      d.last_index_ms = now_ms;
    }
    d.end_bytes += batch->size();
    d.max_timestamp = std::max(d.max_timestamp, h.max_timestamp);
    d.next_offset = base + kept;
    d.wrote = true;
    result.base_offset = Offset(base);
    result.last_offset = Offset(base + kept - 1);
    result.records_written = kept;
    auto& round_keys = round.dedup[req.topic.get()];
    for (const auto& [position, key] : new_keys) {
      const DedupEntry e{part.partition.value(), base + position, now_ms,
                         now_ms + req.dedup_window_ms};
      round_keys[*key] = e;
      round.batch.Put(meta_cf_, fmt::DedupKey(req.topic->id, *key),
                      fmt::Encode(fmt::DedupValue{e.partition, e.offset, e.timestamp_ms}));
    }
    // Resolve in-batch duplicates to the offset their first occurrence received.
    for (DuplicateRecord& dup : result.duplicates) {
      if (dup.offset.value() <= -2)
        dup.offset = result.OffsetOf(static_cast<int32_t>(-2 - dup.offset.value()));
    }
  }
  if (idempotent) {
    producer.last_sequence = h.last_sequence();
    producer.last_update_ms = now_ms;
    producer.recent.push_back({h.base_sequence, h.last_sequence(), result.base_offset.value(),
                               result.last_offset.value()});
    if (producer.recent.size() > fmt::kMaxRecentBatches)
      producer.recent.erase(producer.recent.begin());
    d.producers[h.producer_id] = std::move(producer);
  }
  req.result = std::move(result);
  return Status::OK();
}

void LogStoreImpl::ApplyRound(Round& round) {
  for (auto& [part, d] : round.parts) {
    part->next_offset = d.next_offset;
    part->max_timestamp = d.max_timestamp;
    part->end_bytes.store(d.end_bytes, std::memory_order_relaxed);
    for (auto& [id, p] : d.producers) part->producers[id] = std::move(p);
    if (!d.new_index.empty()) {
      std::lock_guard lk(part->mu);
      part->index.insert(part->index.end(), d.new_index.begin(), d.new_index.end());
    }
  }
  for (auto& [topic, keys] : round.dedup) {
    for (auto& [key, entry] : keys) topic->dedup.Insert(key, entry);
    if (!keys.empty()) {
      std::shared_lock lk(topics_mu_);
      if (auto it = topics_.find(topic->name); it != topics_.end() && it->second.get() == topic) {
        dedup_topics_[topic->id] = it->second;
      }
    }
  }
}

void LogStoreImpl::EnterDegraded(const Status& cause) {
  degraded_status_ = cause;
  last_recovery_ = std::chrono::steady_clock::now();
  degraded_.store(true, std::memory_order_release);
  SetUnhealthy(cause);
}

std::vector<std::pair<std::shared_ptr<PartitionState>, int64_t>> LogStoreImpl::PublishSynced() {
  std::vector<std::pair<std::shared_ptr<PartitionState>, int64_t>> advanced;
  for (auto& part : unsynced_) {
    const int64_t hwm = part->next_offset;  // committer-owned; we are the committer
    part->high_watermark.store(hwm, std::memory_order_release);
    advanced.emplace_back(part, hwm);
  }
  unsynced_.clear();
  unsynced_meta_ = false;
  return advanced;
}

void LogStoreImpl::NotifyAdvanced(
    const std::vector<std::pair<std::shared_ptr<PartitionState>, int64_t>>& advanced) {
  if (!options_.on_high_watermark) return;
  for (const auto& [part, hwm] : advanced)
    options_.on_high_watermark(part->topic_name, part->partition, Offset(hwm));
}

Status LogStoreImpl::PutRecoveryMarker() {
  rocksdb::WriteOptions no_wal;
  no_wal.disableWAL = true;
  return FromRocks(db_->Put(no_wal, db_->DefaultColumnFamily(), "runnel.recovery-marker",
                            std::to_string(clock_->NowMs())),
                   "writing the recovery marker");
}

Status LogStoreImpl::TryRecover() {
  const auto now = std::chrono::steady_clock::now();
  if (now - last_recovery_ < std::chrono::seconds(1)) return degraded_status_;
  last_recovery_ = now;
  std::error_code ec;
  const auto space = std::filesystem::space(db_path_, ec);
  if (!ec && space.available < options_.max_commit_bytes + (4u << 20)) return degraded_status_;
  if (rocksdb::Status rs = db_->Resume(); !rs.ok()) {
    log::Warn("cannot resume writes yet: " + rs.ToString());
    return degraded_status_;
  }
  // The WAL writer that failed stays failed; Resume() replaced it by switching memtables, which
  // the recovery marker guarantees even when every other memtable was empty. Before anything
  // else can fail again, a new marker makes the next Resume() switch too.
  Status s = PutRecoveryMarker();
  std::vector<rocksdb::ColumnFamilyHandle*> cfs = {meta_cf_};
  {
    std::shared_lock lk(topics_mu_);
    for (const auto& [name, t] : topics_)
      for (const auto& part : t->partitions) cfs.push_back(part->cf);
  }
  rocksdb::FlushOptions fo;
  fo.wait = true;
  fo.allow_write_stall = true;
  if (s.ok()) s = FromRocks(db_->Flush(fo, cfs), "flushing after recovery");
  if (s.ok()) s = FromRocks(db_->SyncWAL(), "syncing the WAL after recovery");
  if (!s.ok()) {
    log::Warn("recovery from '" + degraded_status_.ToString() + "' failed: " + s.ToString());
    return degraded_status_;
  }
  // Everything written before the failure is in flushed, synced files now.
  NotifyAdvanced(PublishSynced());
  degraded_.store(false, std::memory_order_release);
  {
    std::lock_guard lk(health_mu_);
    health_ = Status::OK();  // Resume() cleared RocksDB's background error too
  }
  log::Info("writes resume: recovered from '" + degraded_status_.ToString() + "'");
  degraded_status_ = Status::OK();
  return Status::OK();
}

void LogStoreImpl::CommitRound(std::vector<std::unique_ptr<PendingAppend>>& reqs) {
  if (degraded_.load(std::memory_order_acquire)) {
    if (Status s = TryRecover(); !s.ok()) {
      for (auto& req : reqs) {
        if (req->done) req->done(s);
      }
      return;
    }
  }
  std::vector<PendingAppend*> staged;
  uint64_t records = 0, batches = 0, bytes = 0;
  {
    std::lock_guard commit(commit_mu_);
    const int64_t now = clock_->NowMs();
    Round round;
    for (auto& req : reqs) {
      Status s = Stage(*req, round, now);
      if (s.ok()) {
        staged.push_back(req.get());
      } else {
        req->result = std::move(s);
      }
    }
    for (auto& [part, d] : round.parts) {
      if (!d.wrote && d.producers.empty()) continue;
      round.batch.Put(meta_cf_, fmt::PartitionKey(part->uid),
                      fmt::Encode(PartitionRecord(*part, &d)));
      for (const auto& [id, p] : d.producers) {
        round.batch.Put(meta_cf_, fmt::ProducerKey(part->uid, id), fmt::Encode(p));
      }
    }
    if (round.batch.Count() > 0) {
      Status ws = FromRocks(db_->Write(rocksdb::WriteOptions(), &round.batch), "appending");
      if (ws.ok()) {
        ApplyRound(round);
        for (PendingAppend* r : staged) {
          if (!r->part && !unsynced_meta_) {
            unsynced_meta_ = true;
            unsynced_meta_since_ = std::chrono::steady_clock::now();
          }
        }
        // Expire after the round is safely written, so a failed write loses no state. The
        // deletes ride on the fsync below; if they are lost, open expires the keys again.
        rocksdb::WriteBatch expired;
        ExpireDedup(now, &expired);
        if (expired.Count() > 0) {
          if (Status es =
                  FromRocks(db_->Write(rocksdb::WriteOptions(), &expired), "expiring dedup keys");
              !es.ok()) {
            log::Warn(es.ToString() + " (the keys are expired again at the next open)");
          }
        }
        for (PendingAppend* r : staged) {
          if (r->result.ok() && r->result->records_written > 0 && !r->result->duplicate_batch) {
            records += static_cast<uint64_t>(r->result->records_written);
            ++batches;
            bytes += r->batch.size();
          }
        }
        for (auto& req : reqs) {
          if (req->part && req->result.ok() && req->result->records_written > 0 &&
              !req->result->duplicate_batch) {
            if (std::find(unsynced_.begin(), unsynced_.end(), req->part) == unsynced_.end()) {
              unsynced_.push_back(req->part);
            }
          }
        }
        stat_commits_.fetch_add(1, std::memory_order_relaxed);
        stat_records_.fetch_add(records, std::memory_order_relaxed);
        stat_batches_.fetch_add(batches, std::memory_order_relaxed);
        stat_bytes_.fetch_add(bytes, std::memory_order_relaxed);
      } else {
        log::Error("group commit failed, " + std::to_string(staged.size()) +
                   " appends rejected; writes are refused until it recovers: " + ws.ToString());
        for (PendingAppend* r : staged) r->result = ws;
        staged.clear();
        // RocksDB is read-only now, and its WAL writer must not be synced again.
        EnterDegraded(ws);
      }
    }
  }

  // acks=written: the WAL holds the data; answer before the fsync.
  for (auto& req : reqs) {
    if (req->acks == AckMode::kWritten && req->done) {
      req->done(std::move(req->result));
      req->done = nullptr;
    }
  }

  // One fsync covers everything written so far, including earlier rounds whose sync failed. It
  // is needed for new log data (high watermarks), for durable waiters, and for meta-only writes
  // once they have waited kMetaSyncInterval.
  bool durable_waiters = false;
  for (auto& req : reqs) durable_waiters |= req->done && req->acks == AckMode::kDurable;
  const bool meta_due = unsynced_meta_ && std::chrono::steady_clock::now() - unsynced_meta_since_ >=
                                              kMetaSyncInterval;
  Status sync_status;
  int64_t fsync_micros = -1;
  std::vector<std::pair<std::shared_ptr<PartitionState>, int64_t>> advanced;
  if (!degraded_.load(std::memory_order_acquire) &&
      (!unsynced_.empty() || durable_waiters || meta_due)) {
    const auto t0 = std::chrono::steady_clock::now();
    sync_status = FromRocks(db_->SyncWAL(), "syncing the WAL");
    fsync_micros = std::chrono::duration_cast<std::chrono::microseconds>(
                       std::chrono::steady_clock::now() - t0)
                       .count();
    stat_fsync_micros_.fetch_add(static_cast<uint64_t>(fsync_micros));
    stat_fsyncs_.fetch_add(1, std::memory_order_relaxed);
    if (!sync_status.ok()) {
      // A failed fsync may have dropped dirty pages that a later fsync would not report
      // ("fsyncgate"): nothing written since the last good sync is trusted until TryRecover has
      // flushed it to new files. High watermarks stay; writes are refused until then.
      EnterDegraded(sync_status);
      log::Error("WAL sync failed; writes are refused until it recovers: " + sync_status.ToString());
    } else {
      advanced = PublishSynced();
    }
  }
  if (options_.on_commit && (batches > 0 || fsync_micros >= 0))
    options_.on_commit(CommitRoundInfo{records, batches, bytes, fsync_micros});
  for (auto& req : reqs) {
    if (!req->done) continue;
    if (!sync_status.ok() && req->result.ok()) {
      req->done(sync_status);
    } else {
      req->done(std::move(req->result));
    }
  }
  // Listeners last: the acks above are not delayed by whatever wakes up on new data.
  NotifyAdvanced(advanced);
}

}  // namespace runnel::storage
