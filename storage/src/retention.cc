// LogStoreImpl retention: trims each partition's log start by time and size, at sparse-index
// granularity, with DeleteRange + DeleteFilesInRange; forgets idle idempotent producers.
#include <rocksdb/convenience.h>

#include <algorithm>

#include "log_store_impl.h"
#include "logging.h"
#include "rocks_status.h"

namespace runnel::storage {

namespace fmt = format;

void LogStoreImpl::RetentionLoop() {
  std::unique_lock lk(retention_mu_);
  while (!retention_stop_) {
    retention_cv_.wait_for(lk, std::chrono::milliseconds(options_.retention_check_interval_ms),
                           [&] { return retention_stop_; });
    if (retention_stop_) break;
    lk.unlock();
    if (Status s = EnforceRetention(); !s.ok()) {
      log::Warn("retention pass failed (retried next pass): " + s.ToString());
    }
    lk.lock();
  }
}

Status LogStoreImpl::EnforceRetention() {
  std::vector<std::pair<std::shared_ptr<TopicState>, TopicConfig>> topics;
  {
    std::shared_lock lk(topics_mu_);
    for (const auto& [name, t] : topics_) topics.emplace_back(t, t->config);
  }
  const int64_t now = clock_->NowMs();
  Status result;
  for (const auto& [topic, config] : topics) {
    std::vector<std::shared_ptr<PartitionState>> parts;
    {
      std::shared_lock lk(topics_mu_);
      parts = topic->partitions;
    }
    for (const auto& part : parts) {
      Status s = TrimPartition(part, config, now);
      if (result.ok()) result = s;
      s = ExpireProducers(*part, now);
      if (result.ok()) result = s;
    }
  }
  return result;
}

Status LogStoreImpl::ExpireProducers(PartitionState& part, int64_t now_ms) {
  std::lock_guard commit(commit_mu_);
  if (part.deleted.load()) return Status::OK();
  rocksdb::WriteBatch wb;
  std::vector<int64_t> expired;
  for (const auto& [id, state] : part.producers) {
    if (state.last_update_ms < now_ms - options_.producer_state_ttl_ms) {
      expired.push_back(id);
      wb.Delete(meta_cf_, fmt::ProducerKey(part.uid, id));
    }
  }
  if (expired.empty()) return Status::OK();
  RUNNEL_RETURN_IF_ERROR(WriteMeta(&wb, "expiring producer state of " + part.topic_name));
  for (int64_t id : expired) part.producers.erase(id);
  return Status::OK();
}

Status LogStoreImpl::TrimPartition(const std::shared_ptr<PartitionState>& part,
                                   const TopicConfig& config, int64_t now_ms) {
  // Only whole index intervals below the durable high watermark are deleted, and never the last
  // one (like Kafka's active segment).
  const int64_t hwm = part->high_watermark.load(std::memory_order_acquire);
  // Queue groups with retain.until.acked pin everything from their ack floor on.
  const int64_t floor = groups_->RetentionFloor(part->topic_id, part->partition.value());
  int64_t new_start = part->log_start.load();
  uint64_t new_start_bytes = 0;
  {
    std::lock_guard lk(part->mu);
    new_start_bytes = part->start_bytes;
    const uint64_t end_bytes = part->end_bytes.load();
    for (size_t i = 1; i < part->index.size(); ++i) {
      const IndexEntry& e = part->index[i];
      if (e.offset > hwm || e.offset > floor) break;
      const bool expired = config.retention_ms >= 0 && e.max_ts_before >= 0 &&
                           e.max_ts_before < now_ms - config.retention_ms;
      const bool too_big =
          config.retention_bytes >= 0 &&
          end_bytes - new_start_bytes > static_cast<uint64_t>(config.retention_bytes);
      if (!expired && !too_big) break;
      new_start = e.offset;
      new_start_bytes = e.bytes_before;
    }
  }
  const int64_t old_start = part->log_start.load();
  if (new_start <= old_start) return DeleteFilesBelow(*part, old_start);

  {
    std::lock_guard commit(commit_mu_);
    // Another pass may have moved the start meanwhile; never move it backwards.
    if (part->deleted.load() || new_start <= part->log_start.load()) return Status::OK();
    RUNNEL_RETURN_IF_ERROR(MoveLogStart(*part, new_start, new_start, new_start_bytes,
                                        "applying retention to " + part->topic_name));
  }
  return DeleteFilesBelow(*part, new_start);
}

Status LogStoreImpl::MoveLogStart(PartitionState& part, int64_t new_start, int64_t cut,
                                  uint64_t start_bytes, std::string_view context) {
  rocksdb::WriteBatch wb;
  wb.DeleteRange(part.cf, fmt::LogRangeBegin(part.uid), fmt::LogKey(part.uid, cut));
  wb.DeleteRange(meta_cf_, fmt::IdPrefixBegin(fmt::MetaKeyType::kIndex, part.uid),
                 fmt::IndexKey(part.uid, cut));
  fmt::PartitionValue pv = PartitionRecord(part, nullptr);
  pv.log_start = new_start;
  pv.start_bytes = start_bytes;
  wb.Put(meta_cf_, fmt::PartitionKey(part.uid), fmt::Encode(pv));
  // Publish the new start before the range tombstone becomes visible, so a concurrent reader
  // sees OutOfRange rather than a hole.
  const int64_t old = part.log_start.exchange(new_start, std::memory_order_acq_rel);
  Status ws = WriteMeta(&wb, context);
  if (!ws.ok()) {
    part.log_start.store(old, std::memory_order_release);
    return ws;
  }
  std::lock_guard lk(part.mu);
  while (!part.index.empty() && part.index.front().offset < cut) part.index.pop_front();
  part.start_bytes = start_bytes;
  return Status::OK();
}

Result<int64_t> LogStoreImpl::BatchBaseAt(const PartitionState& part, int64_t offset) const {
  const std::string lower = fmt::LogKey(part.uid, 0);
  const std::string upper = fmt::LogKey(part.uid, offset + 1);
  rocksdb::Slice lo(lower), hi(upper);
  rocksdb::ReadOptions ro;
  ro.iterate_lower_bound = &lo;
  ro.iterate_upper_bound = &hi;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(ro, part.cf));
  it->SeekForPrev(fmt::LogKey(part.uid, offset));
  uint32_t uid;
  int64_t base = offset;
  if (it->Valid() && !fmt::ParseLogKey(it->key().ToStringView(), &uid, &base)) {
    return Status::Corruption("malformed log key in " + part.topic_name);
  }
  RUNNEL_RETURN_IF_ERROR(FromRocks(it->status(), "finding the batch of an offset"));
  return base;
}

Status LogStoreImpl::DeleteFilesBelow(PartitionState& part, int64_t log_start) {
  if (log_start <= 0 || part.deleted.load()) return Status::OK();
  // Reclaims whole files below the batch holding the log start (after a truncation the start can
  // be inside a batch that must stay). RocksDB skips files still in L0, so every pass retries;
  // the range tombstone hides the rest until compaction drops it.
  RUNNEL_ASSIGN_OR_RETURN(const int64_t bound, BatchBaseAt(part, log_start));
  const std::string begin = fmt::LogKey(part.uid, 0);
  const std::string end = fmt::LogKey(part.uid, bound);
  rocksdb::Slice b(begin), e(end);
  return FromRocks(rocksdb::DeleteFilesInRange(db_.get(), part.cf, &b, &e, /*include_end=*/false),
                   "deleting expired files");
}

Status LogStoreImpl::TruncateTopic(std::string_view topic, const std::map<int32_t, int64_t>* ends) {
  std::vector<std::shared_ptr<PartitionState>> parts;
  {
    std::shared_lock lk(topics_mu_);
    auto it = topics_.find(topic);
    if (it == topics_.end()) return Status::NotFound("unknown topic '" + std::string(topic) + "'");
    parts = it->second->partitions;
  }
  for (const auto& part : parts) {
    int64_t target = part->high_watermark.load(std::memory_order_acquire);
    if (ends) {
      auto e = ends->find(part->partition.value());
      if (e == ends->end()) continue;
      target = std::min(target, e->second);
    }
    {
      std::lock_guard commit(commit_mu_);
      if (part->deleted.load() || target <= part->log_start.load()) continue;
      // Only batches wholly below the target go: find where the batch holding it starts.
      int64_t cut = target;
      if (target < part->high_watermark.load(std::memory_order_acquire)) {
        RUNNEL_ASSIGN_OR_RETURN(cut, BatchBaseAt(*part, target));
      }
      uint64_t start_bytes = part->end_bytes.load();
      {
        std::lock_guard lk(part->mu);
        for (const IndexEntry& e : part->index) {
          if (e.offset >= cut) {
            start_bytes = e.bytes_before;
            break;
          }
        }
      }
      RUNNEL_RETURN_IF_ERROR(
          MoveLogStart(*part, target, cut, start_bytes, "truncating " + part->topic_name));
    }
    RUNNEL_RETURN_IF_ERROR(DeleteFilesBelow(*part, part->log_start.load()));
  }
  return Status::OK();
}

}  // namespace runnel::storage
