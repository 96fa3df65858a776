// LogStoreImpl: opening and recovery, topic administration, reads and offset lookups.
#include <rocksdb/cache.h>
#include <rocksdb/env.h>
#include <rocksdb/filter_policy.h>
#include <rocksdb/listener.h>
#include <rocksdb/slice_transform.h>
#include <rocksdb/table.h>
#include <rocksdb/write_buffer_manager.h>

#include <algorithm>
#include <cstdarg>
#include <cstdio>
#include <filesystem>
#include <future>
#include <optional>

#include "file_scoped_errors.h"
#include "log_store_impl.h"
#include "logging.h"
#include "rocks_status.h"
#include "runnel/common/coding.h"
#include "wal_check.h"

namespace runnel::storage {

namespace fmt = format;

namespace {

// RocksDB's own log goes to Runnel's log (warnings and worse), not to LOG files in the data
// directory: those fail with the disk, and RocksDB 7.8 aborts when it writes to its log file
// again after such a failure (its error-recovery thread does).
class RocksLogger final : public rocksdb::Logger {
 public:
  RocksLogger() : rocksdb::Logger(rocksdb::InfoLogLevel::WARN_LEVEL) {}
  void Logv(const char* format, va_list ap) override {
    Logv(rocksdb::InfoLogLevel::INFO_LEVEL, format, ap);
  }
  void Logv(const rocksdb::InfoLogLevel level, const char* format, va_list ap) override {
    if (level < GetInfoLogLevel()) return;
    char buf[1024];
    std::vsnprintf(buf, sizeof buf, format, ap);
    std::string line = std::string("rocksdb: ") + buf;
    {
      std::lock_guard lk(mu_);
      if (holding_) {
        held_.emplace_back(level, std::move(line));
        return;
      }
    }
    Emit(level, line);
  }

  // While DB::Open runs: RocksDB's lines about a damaged WAL ("dropping 3904 bytes; Corruption:
  // checksum mismatch", "DB::Open() failed") would only come before the one line that explains
  // it. Release(false) drops them, Release(true) logs them.
  void Hold() {
    std::lock_guard lk(mu_);
    holding_ = true;
  }
  void Release(bool emit) {
    std::vector<std::pair<rocksdb::InfoLogLevel, std::string>> held;
    {
      std::lock_guard lk(mu_);
      holding_ = false;
      held.swap(held_);
    }
    if (!emit) return;
    for (const auto& [level, line] : held) Emit(level, line);
  }

 private:
  static void Emit(rocksdb::InfoLogLevel level, const std::string& line) {
    if (level >= rocksdb::InfoLogLevel::ERROR_LEVEL) {
      log::Error(line);
    } else {
      log::Warn(line);
    }
  }

  std::mutex mu_;
  bool holding_ = false;
  std::vector<std::pair<rocksdb::InfoLogLevel, std::string>> held_;
};

// The committer recovers from a full disk itself (LogStoreImpl::TryRecover, on the next write
// once space is back); RocksDB's own recovery thread would hold Resume() busy meanwhile and waits
// for free space the size of a memtable. A background error (a failed flush or compaction, or a
// failed write) also makes the store unhealthy at once: without writes the committer would not
// notice it.
class StoreEvents final : public rocksdb::EventListener {
 public:
  explicit StoreEvents(std::function<void(const Status&)> on_error)
      : on_error_(std::move(on_error)) {}
  void OnBackgroundError(rocksdb::BackgroundErrorReason, rocksdb::Status* bg_error) override {
    if (bg_error && !bg_error->ok()) on_error_(FromRocks(*bg_error, "rocksdb background error"));
  }
  void OnErrorRecoveryBegin(rocksdb::BackgroundErrorReason, rocksdb::Status bg_error,
                            bool* auto_recovery) override {
    bg_error.PermitUncheckedError();
    *auto_recovery = false;
  }

 private:
  std::function<void(const Status&)> on_error_;
};

// What a damaged WAL puts at stake, for the refusal and for the truncating recovery's log.
std::string AtStake(const WalDamage& d) {
  std::string s = std::to_string(d.bytes_after) + " bytes: the damaged write batch and at least " +
                  std::to_string(d.batches_after) + " intact ones after it";
  if (d.later_files > 0) s += ", in " + std::to_string(d.later_files + 1) + " WAL files";
  return s;
}

}  // namespace

Offset AppendResult::OffsetOf(int32_t index) const {
  int32_t dropped_before = 0;
  for (const DuplicateRecord& d : duplicates) {
    if (d.index == index) return d.offset;
    if (d.index < index) ++dropped_before;
  }
  if (base_offset == kNoOffset) return kNoOffset;
  return base_offset + (index - dropped_before);
}

Result<AppendResult> LogStore::Append(AppendRequest request) {
  std::promise<Result<AppendResult>> promise;
  auto future = promise.get_future();
  AppendAsync(std::move(request),
              [&promise](Result<AppendResult> r) { promise.set_value(std::move(r)); });
  return future.get();
}

Result<std::unique_ptr<LogStore>> LogStore::Open(const LogStoreOptions& options) {
  if (options.data_dir.empty()) return Status::InvalidArgument("data_dir is empty");
  RUNNEL_RETURN_IF_ERROR(options.default_topic_config.Validate());
  auto store = std::make_unique<LogStoreImpl>(options);
  RUNNEL_RETURN_IF_ERROR(store->Init());
  return std::unique_ptr<LogStore>(std::move(store));
}

LogStoreImpl::LogStoreImpl(const LogStoreOptions& options)
    : options_(options), clock_(options.clock ? options.clock : Clock::System()) {}

LogStoreImpl::~LogStoreImpl() {
  // Consumer-group writes still held back go to the committer before it drains and stops.
  if (groups_) groups_->FlushAll();
  {
    std::lock_guard lk(retention_mu_);
    retention_stop_ = true;
  }
  retention_cv_.notify_all();
  if (retention_.joinable()) retention_.join();
  {
    std::lock_guard lk(queue_mu_);
    stopping_ = true;
  }
  queue_cv_.notify_all();
  space_cv_.notify_all();
  if (committer_.joinable()) committer_.join();  // drains the queue first
  if (!db_) return;
  if (!degraded_.load()) (void)db_->FlushWAL(/*sync=*/true);
  // Column family handles must go before the DB.
  unsynced_.clear();
  dedup_topics_.clear();
  topics_.clear();
  if (meta_cf_) db_->DestroyColumnFamilyHandle(meta_cf_);
  (void)db_->Close();
}

rocksdb::ColumnFamilyOptions LogStoreImpl::LogColumnFamilyOptions() const {
  rocksdb::ColumnFamilyOptions cf;
  // Values are record batches, already compressed by producers when worthwhile.
  cf.compression = rocksdb::kNoCompression;
  cf.write_buffer_size = options_.partition_write_buffer_bytes;
  cf.max_write_buffer_number = 4;
  cf.target_file_size_base = 64u << 20;
  cf.max_bytes_for_level_base = 512u << 20;
  // Keys only ever grow within a partition, so flushed files never overlap and compactions are
  // trivial moves; keep the triggers loose so L0 does not stall writers.
  cf.level0_file_num_compaction_trigger = 8;
  cf.level0_slowdown_writes_trigger = 40;
  cf.level0_stop_writes_trigger = 64;
  // Keys arrive in order within a partition: insert hints make each memtable insert O(1). The
  // prefix is 5 bytes so that range deletions, which start at the 4-byte LogRangeBegin key, stay
  // outside it: RocksDB 7.8 shares hints between point and range-tombstone skiplists.
  cf.memtable_insert_with_hint_prefix_extractor.reset(rocksdb::NewFixedPrefixTransform(5));
  rocksdb::BlockBasedTableOptions table;
  table.block_cache = block_cache_;
  table.block_size = 64u << 10;
  // No bloom filter: lookups are seeks, never point gets.
  cf.table_factory.reset(rocksdb::NewBlockBasedTableFactory(table));
  return cf;
}

rocksdb::ColumnFamilyOptions LogStoreImpl::MetaColumnFamilyOptions() const {
  rocksdb::ColumnFamilyOptions cf;
  cf.compression = rocksdb::kLZ4Compression;
  cf.write_buffer_size = 32u << 20;
  // Pending entries, offsets and index entries of one (group or partition, partition) are
  // mostly written in key order; hints per 9-byte prefix skip the skiplist search. Every meta
  // range deletion starts at a 5-byte IdPrefixBegin key, outside the hint domain (see format.h).
  cf.memtable_insert_with_hint_prefix_extractor.reset(rocksdb::NewFixedPrefixTransform(9));
  cf.level_compaction_dynamic_level_bytes = true;
  rocksdb::BlockBasedTableOptions table;
  table.block_cache = block_cache_;
  table.filter_policy.reset(rocksdb::NewBloomFilterPolicy(10));
  cf.table_factory.reset(rocksdb::NewBlockBasedTableFactory(table));
  return cf;
}

Status LogStoreImpl::Init() {
  std::error_code ec;
  std::filesystem::create_directories(options_.data_dir, ec);
  if (ec) {
    return Status::IOError("cannot create data directory '" + options_.data_dir +
                           "': " + ec.message());
  }
  db_path_ = options_.data_dir + "/store";
  block_cache_ = rocksdb::NewLRUCache(options_.block_cache_bytes);
  write_buffer_manager_ =
      std::make_shared<rocksdb::WriteBufferManager>(options_.total_write_buffer_bytes);

  rocksdb::DBOptions db_options;
  db_options.create_if_missing = true;
  db_options.create_missing_column_families = true;
  db_options.max_background_jobs = 2;
  db_options.bytes_per_sync = 1u << 20;
  db_options.max_total_wal_size = 1u << 30;
  db_options.write_buffer_manager = write_buffer_manager_;
  auto rocks_log = std::make_shared<RocksLogger>();
  db_options.info_log = rocks_log;
  db_options.listeners.push_back(
      std::make_shared<StoreEvents>([this](const Status& s) { SetUnhealthy(s); }));
  db_options.info_log_level = rocksdb::InfoLogLevel::WARN_LEVEL;
  // Only a torn final record (a crash in the middle of a write, never acknowledged) may be
  // dropped. Point-in-time recovery would also stop silently at damage in the middle of the WAL
  // and serve a store without the acknowledged records behind it; the operator decides that
  // (recover_truncate). The MANIFEST records each WAL and its synced size, so a missing or
  // shortened WAL is refused too.
  db_options.wal_recovery_mode = options_.recover_truncate
                                     ? rocksdb::WALRecoveryMode::kPointInTimeRecovery
                                     : rocksdb::WALRecoveryMode::kTolerateCorruptedTailRecords;
  db_options.track_and_verify_wals_in_manifest = true;
  // One committer thread writes; concurrent memtable writes would only disable insert hints.
  db_options.allow_concurrent_memtable_write = false;
  // Failed file writes are recoverable in process (TryRecover), not fatal; the committer does
  // the recovering, not a RocksDB thread.
  env_ = NewFileScopedErrorsEnv(options_.env != nullptr ? options_.env : rocksdb::Env::Default());
  db_options.env = env_.get();
  db_options.max_bgerror_resume_count = 0;

  // RocksDB lists the store directory before it creates it, and asking it for the column
  // families of a store without a CURRENT file fails: both log errors for a first start, which
  // is no error at all.
  rocksdb::Env* env = db_options.env;
  RUNNEL_RETURN_IF_ERROR(FromRocks(env->CreateDirIfMissing(db_path_), "creating the store"));
  const bool exists = env->FileExists(db_path_ + "/CURRENT").ok();
  std::vector<std::string> names = {rocksdb::kDefaultColumnFamilyName};
  if (exists) {
    RUNNEL_RETURN_IF_ERROR(
        FromRocks(rocksdb::DB::ListColumnFamilies(db_options, db_path_, &names),
                  "listing the column families of the store in '" + options_.data_dir + "'"));
  }
  std::optional<WalDamage> dropped;
  if (exists && options_.recover_truncate) {
    dropped = FindWalDamage(db_path_);
    if (dropped) {
      log::Error("recover-truncate: " + DescribeWalDamage(*dropped) +
                 "; dropping everything after that point (" + AtStake(*dropped) +
                 "): records acknowledged in it are lost");
    } else {
      log::Warn("recover-truncate: no damaged WAL found; opening with point-in-time recovery");
    }
  }
  if (std::find(names.begin(), names.end(), fmt::kMetaColumnFamily) == names.end()) {
    names.emplace_back(fmt::kMetaColumnFamily);
  }
  std::vector<rocksdb::ColumnFamilyDescriptor> descriptors;
  for (const std::string& name : names) {
    if (name == fmt::kMetaColumnFamily) {
      descriptors.emplace_back(name, MetaColumnFamilyOptions());
    } else if (fmt::ParseLogColumnFamilyName(name)) {
      descriptors.emplace_back(name, LogColumnFamilyOptions());
    } else {
      descriptors.emplace_back(name, rocksdb::ColumnFamilyOptions());
    }
  }
  std::vector<rocksdb::ColumnFamilyHandle*> handles;
  rocksdb::DB* raw = nullptr;
  rocks_log->Hold();
  rocksdb::Status s = rocksdb::DB::Open(db_options, db_path_, descriptors, &handles, &raw);
  if (!s.ok()) {
    if (s.ToString().find("lock") != std::string::npos) {
      return Status::IOError("data directory '" + options_.data_dir +
                             "' is locked by another process (" + s.ToString() + ")");
    }
    if (s.IsCorruption() && !options_.recover_truncate) {
      if (std::optional<WalDamage> d = FindWalDamage(db_path_)) {
        rocks_log->Release(/*emit=*/false);
        return Status::Corruption(
            DescribeWalDamage(*d) + ": records acknowledged after that point would be lost (" +
            AtStake(*d) +
            "); run `runneld --recover-truncate` to start anyway, dropping them (back up the "
            "data directory first)");
      }
    }
    rocks_log->Release(/*emit=*/true);
    return FromRocks(s, "opening store in '" + options_.data_dir + "'");
  }
  rocks_log->Release(/*emit=*/true);
  db_.reset(raw);
  if (dropped) {
    log::Warn("recover-truncate: opened without the dropped part of " + dropped->file +
              "; partitions end at what precedes it");
  }

  std::map<uint32_t, rocksdb::ColumnFamilyHandle*> log_cfs;
  for (rocksdb::ColumnFamilyHandle* h : handles) {
    if (h->GetName() == fmt::kMetaColumnFamily) {
      meta_cf_ = h;
    } else if (auto uid = fmt::ParseLogColumnFamilyName(h->GetName())) {
      log_cfs[*uid] = h;
    } else {
      db_->DestroyColumnFamilyHandle(h);  // "default": unused
    }
  }
  Status st = LoadState(log_cfs);
  for (auto& [uid, h] : log_cfs) db_->DestroyColumnFamilyHandle(h);  // unclaimed leftovers
  RUNNEL_RETURN_IF_ERROR(st);
  groups_ = std::make_unique<GroupManager>(*this);
  RUNNEL_RETURN_IF_ERROR(groups_->Load());
  // Data recovered from the WAL after a crash may only be in the page cache: make it durable
  // before it becomes readable below the high watermark.
  RUNNEL_RETURN_IF_ERROR(FromRocks(db_->FlushWAL(/*sync=*/true), "syncing recovered WAL"));
  RUNNEL_RETURN_IF_ERROR(PutRecoveryMarker());

  committer_ = std::thread([this] { CommitterLoop(); });
  RUNNEL_RETURN_IF_ERROR(groups_->UpgradeDeadLetterTopics());
  if (options_.retention_check_interval_ms > 0) {
    retention_ = std::thread([this] { RetentionLoop(); });
  }
  return Status::OK();
}

Status LogStoreImpl::ForEachMeta(
    std::string_view begin, std::string_view end,
    const std::function<Status(std::string_view, std::string_view)>& fn) const {
  rocksdb::ReadOptions ro;
  rocksdb::Slice lower(begin.data(), begin.size()), upper(end.data(), end.size());
  ro.iterate_lower_bound = &lower;
  ro.iterate_upper_bound = &upper;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(ro, meta_cf_));
  Status st;
  for (it->Seek(lower); st.ok() && it->Valid(); it->Next()) {
    st = fn(it->key().ToStringView(), it->value().ToStringView());
  }
  RUNNEL_RETURN_IF_ERROR(st);
  return FromRocks(it->status(), "scanning meta");
}

Status LogStoreImpl::WriteMeta(rocksdb::WriteBatch* batch, std::string_view context) {
  rocksdb::WriteOptions wo;
  wo.sync = true;
  return FromRocks(db_->Write(wo, batch), context);
}

Status LogStoreImpl::LoadState(std::map<uint32_t, rocksdb::ColumnFamilyHandle*>& log_cfs) {
  std::string version;
  rocksdb::Status gs =
      db_->Get(rocksdb::ReadOptions(), meta_cf_, fmt::FormatVersionKey(), &version);
  if (gs.IsNotFound()) {
    rocksdb::WriteBatch wb;
    std::string v;
    PutFixed32BE(&v, fmt::kFormatVersion);
    wb.Put(meta_cf_, fmt::FormatVersionKey(), v);
    RUNNEL_RETURN_IF_ERROR(WriteMeta(&wb, "writing format version"));
  } else if (!gs.ok()) {
    return FromRocks(gs, "reading format version");
  } else if (version.size() != 4 || DecodeFixed32BE(version.data()) != fmt::kFormatVersion) {
    return Status::Corruption("unsupported store format version in '" + options_.data_dir + "'");
  }

  // Topics and partitions.
  using fmt::MetaKeyType;
  RUNNEL_RETURN_IF_ERROR(ForEachMeta(fmt::TypeBegin(MetaKeyType::kTopic),
                                     fmt::TypeEnd(MetaKeyType::kTopic),
                                     [&](std::string_view k, std::string_view v) {
                                       fmt::TopicValue tv;
                                       RUNNEL_RETURN_IF_ERROR(fmt::Decode(v, &tv));
                                       return LoadTopic(std::string(k.substr(1)), tv, log_cfs);
                                     }));
  std::unordered_map<uint32_t, PartitionState*> by_uid;
  for (auto& [name, topic] : topics_) {
    for (auto& p : topic->partitions) by_uid[p->uid] = p.get();
  }

  // Sparse index.
  RUNNEL_RETURN_IF_ERROR(
      ForEachMeta(fmt::TypeBegin(MetaKeyType::kIndex), fmt::TypeEnd(MetaKeyType::kIndex),
                  [&](std::string_view k, std::string_view v) {
                    if (k.size() != 13) return Status::Corruption("malformed index key in meta");
                    const uint32_t uid = DecodeFixed32BE(k.data() + 1);
                    auto it = by_uid.find(uid);
                    if (it == by_uid.end()) return Status::OK();  // belongs to a deleted topic
                    fmt::IndexValue iv;
                    RUNNEL_RETURN_IF_ERROR(fmt::Decode(v, &iv));
                    IndexEntry e{static_cast<int64_t>(DecodeFixed64BE(k.data() + 5)),
                                 iv.bytes_before, iv.max_ts_before, iv.created_ms};
                    if (e.offset >= it->second->log_start.load()) it->second->index.push_back(e);
                    return Status::OK();
                  }));

  // Idempotent producer state.
  RUNNEL_RETURN_IF_ERROR(ForEachMeta(
      fmt::TypeBegin(MetaKeyType::kProducer), fmt::TypeEnd(MetaKeyType::kProducer),
      [&](std::string_view k, std::string_view v) {
        if (k.size() != 13) return Status::Corruption("malformed producer key in meta");
        auto it = by_uid.find(DecodeFixed32BE(k.data() + 1));
        if (it == by_uid.end()) return Status::OK();
        fmt::ProducerValue pv;
        RUNNEL_RETURN_IF_ERROR(fmt::Decode(v, &pv));
        it->second->producers[static_cast<int64_t>(DecodeFixed64BE(k.data() + 5))] = std::move(pv);
        return Status::OK();
      }));

  // Dedup windows: keep live keys (in expiry order), delete expired ones.
  const int64_t now = clock_->NowMs();
  std::unordered_map<uint32_t, TopicState*> by_topic_id;
  for (auto& [name, topic] : topics_) by_topic_id[topic->id] = topic.get();
  struct Loaded {
    TopicState* topic;
    std::string key;
    DedupEntry entry;
  };
  std::vector<Loaded> live;
  rocksdb::WriteBatch expired;
  RUNNEL_RETURN_IF_ERROR(ForEachMeta(
      fmt::TypeBegin(MetaKeyType::kDedup), fmt::TypeEnd(MetaKeyType::kDedup),
      [&](std::string_view k, std::string_view v) {
        if (k.size() < 5) return Status::Corruption("malformed dedup key in meta");
        auto it = by_topic_id.find(DecodeFixed32BE(k.data() + 1));
        fmt::DedupValue dv;
        RUNNEL_RETURN_IF_ERROR(fmt::Decode(v, &dv));
        const int64_t expire =
            it == by_topic_id.end() ? now : dv.timestamp_ms + it->second->config.dedup_window_ms;
        if (expire <= now) {
          expired.Delete(meta_cf_, rocksdb::Slice(k.data(), k.size()));
        } else {
          live.push_back({it->second, std::string(k.substr(5)),
                          DedupEntry{dv.partition, dv.offset, dv.timestamp_ms, expire}});
        }
        return Status::OK();
      }));
  std::sort(live.begin(), live.end(),
            [](const Loaded& a, const Loaded& b) { return a.entry.expire_ms < b.entry.expire_ms; });
  for (const Loaded& l : live) {
    l.topic->dedup.Insert(l.key, l.entry);
    dedup_topics_[l.topic->id] = topics_.find(l.topic->name)->second;
  }
  if (expired.Count() > 0) RUNNEL_RETURN_IF_ERROR(WriteMeta(&expired, "expiring dedup keys"));

  // Log column families no topic owns: left by a crash during create or delete.
  for (auto it = log_cfs.begin(); it != log_cfs.end();) {
    log::Info("dropping orphan partition data " + it->second->GetName() +
              " left by an interrupted topic create or delete");
    RUNNEL_RETURN_IF_ERROR(
        FromRocks(db_->DropColumnFamily(it->second), "dropping orphan partition"));
    db_->DestroyColumnFamilyHandle(it->second);
    it = log_cfs.erase(it);
  }
  return Status::OK();
}

Status LogStoreImpl::LoadTopic(const std::string& name, const fmt::TopicValue& value,
                               std::map<uint32_t, rocksdb::ColumnFamilyHandle*>& log_cfs) {
  auto topic = std::make_shared<TopicState>();
  topic->name = name;
  topic->id = value.topic_id;
  topic->created_ms = value.created_ms;
  topic->config = options_.default_topic_config;
  for (const auto& [k, v] : value.config) {
    RUNNEL_RETURN_IF_ERROR(topic->config.Set(k, v).WithContext("topic '" + name + "' config"));
  }
  for (size_t i = 0; i < value.partition_uids.size(); ++i) {
    const uint32_t uid = value.partition_uids[i];
    auto cf = log_cfs.find(uid);
    if (cf == log_cfs.end()) {
      return Status::Corruption("partition " + std::to_string(i) + " of topic '" + name +
                                "' has no log column family");
    }
    auto part = std::make_shared<PartitionState>(db_.get(), cf->second);
    log_cfs.erase(cf);
    std::string pv_bytes;
    RUNNEL_RETURN_IF_ERROR(
        FromRocks(db_->Get(rocksdb::ReadOptions(), meta_cf_, fmt::PartitionKey(uid), &pv_bytes),
                  "reading partition state of '" + name + "'"));
    fmt::PartitionValue pv;
    RUNNEL_RETURN_IF_ERROR(fmt::Decode(pv_bytes, &pv));
    part->uid = uid;
    part->topic_id = topic->id;
    part->partition = Partition(static_cast<int32_t>(i));
    part->topic_name = name;
    part->next_offset = pv.next_offset;
    part->max_timestamp = pv.max_timestamp;
    part->start_bytes = pv.start_bytes;
    part->end_bytes.store(pv.end_bytes);
    part->log_start.store(pv.log_start);
    part->high_watermark.store(pv.next_offset);  // everything recovered is made durable in Init
    topic->partitions.push_back(std::move(part));
  }
  topics_[name] = std::move(topic);
  return Status::OK();
}

Result<std::vector<std::shared_ptr<PartitionState>>> LogStoreImpl::CreatePartitions(
    uint32_t topic_id, const std::string& topic_name, int32_t first, int32_t count,
    fmt::CountersValue* counters, rocksdb::WriteBatch* batch) {
  std::vector<std::string> names;
  std::vector<uint32_t> uids;
  for (int32_t i = 0; i < count; ++i) {
    uids.push_back(counters->next_partition_uid++);
    names.push_back(fmt::LogColumnFamilyName(uids.back()));
  }
  std::vector<rocksdb::ColumnFamilyHandle*> handles;
  RUNNEL_RETURN_IF_ERROR(
      FromRocks(db_->CreateColumnFamilies(LogColumnFamilyOptions(), names, &handles),
                "creating partitions of '" + topic_name + "'"));
  std::vector<std::shared_ptr<PartitionState>> parts;
  for (int32_t i = 0; i < count; ++i) {
    auto part = std::make_shared<PartitionState>(db_.get(), handles[static_cast<size_t>(i)]);
    part->uid = uids[static_cast<size_t>(i)];
    part->topic_id = topic_id;
    part->partition = Partition(first + i);
    part->topic_name = topic_name;
    batch->Put(meta_cf_, fmt::PartitionKey(part->uid),
               fmt::Encode(PartitionRecord(*part, nullptr)));
    parts.push_back(std::move(part));
  }
  return parts;
}

void LogStoreImpl::DropPartitions(const std::vector<std::shared_ptr<PartitionState>>& parts) {
  // Undo CreatePartitions after a failed metadata write, so the uids can be allocated again. If
  // this fails too, the next Open drops the orphans.
  for (const auto& p : parts) (void)db_->DropColumnFamily(p->cf);
}

Result<fmt::CountersValue> LogStoreImpl::ReadCounters() const {
  fmt::CountersValue counters;
  std::string bytes;
  rocksdb::Status gs = db_->Get(rocksdb::ReadOptions(), meta_cf_, fmt::CountersKey(), &bytes);
  if (gs.IsNotFound()) return counters;
  RUNNEL_RETURN_IF_ERROR(FromRocks(gs, "reading counters"));
  RUNNEL_RETURN_IF_ERROR(fmt::Decode(bytes, &counters));
  return counters;
}

Result<int64_t> LogStoreImpl::ReserveProducerIds(int64_t count) {
  if (count < 1) return Status::InvalidArgument("producer id reservation must be positive");
  std::lock_guard admin(admin_mu_);  // counters are read-modify-written under it
  RUNNEL_ASSIGN_OR_RETURN(fmt::CountersValue counters, ReadCounters());
  // Stores from before ids were persisted took them from the wall clock (milliseconds << 12):
  // start above what that scheme can have handed out up to now.
  const int64_t first =
      counters.next_producer_id > 0 ? counters.next_producer_id : (clock_->NowMs() + 1) << 12;
  if (first > INT64_MAX - count) return Status::IOError("producer ids exhausted");
  counters.next_producer_id = first + count;
  rocksdb::WriteBatch wb;
  wb.Put(meta_cf_, fmt::CountersKey(), fmt::Encode(counters));
  RUNNEL_RETURN_IF_ERROR(WriteMeta(&wb, "reserving producer ids"));
  return first;
}

Status LogStoreImpl::CreateTopic(std::string_view name, int32_t partitions,
                                 const TopicConfig& config) {
  RUNNEL_RETURN_IF_ERROR(ValidateTopicName(name));
  if (partitions < 1 || partitions > kMaxPartitionsPerTopic) {
    return Status::InvalidArgument("partition count must be between 1 and " +
                                   std::to_string(kMaxPartitionsPerTopic));
  }
  RUNNEL_RETURN_IF_ERROR(config.Validate());
  std::lock_guard admin(admin_mu_);
  if (FindTopic(name))
    return Status::AlreadyExists("topic '" + std::string(name) + "' already exists");

  RUNNEL_ASSIGN_OR_RETURN(fmt::CountersValue counters, ReadCounters());
  auto topic = std::make_shared<TopicState>();
  topic->name = std::string(name);
  topic->id = counters.next_topic_id++;
  topic->created_ms = clock_->NowMs();
  topic->config = config;
  rocksdb::WriteBatch wb;
  RUNNEL_ASSIGN_OR_RETURN(topic->partitions,
                          CreatePartitions(topic->id, topic->name, 0, partitions, &counters, &wb));
  fmt::TopicValue tv{topic->id, topic->created_ms, {}, config.ToList()};
  for (auto& p : topic->partitions) tv.partition_uids.push_back(p->uid);
  wb.Put(meta_cf_, fmt::CountersKey(), fmt::Encode(counters));
  wb.Put(meta_cf_, fmt::TopicKey(name), fmt::Encode(tv));
  if (Status ws = WriteMeta(&wb, "creating topic '" + topic->name + "'"); !ws.ok()) {
    DropPartitions(topic->partitions);
    return ws;
  }
  std::unique_lock lk(topics_mu_);
  topics_[topic->name] = std::move(topic);
  return Status::OK();
}

Status LogStoreImpl::DeleteTopic(std::string_view name) {
  std::lock_guard admin(admin_mu_);
  std::shared_ptr<TopicState> topic = FindTopic(name);
  if (!topic) return Status::NotFound("unknown topic '" + std::string(name) + "'");
  {
    std::lock_guard commit(commit_mu_);
    rocksdb::WriteBatch wb;
    wb.Delete(meta_cf_, fmt::TopicKey(name));
    for (auto& p : topic->partitions) {
      wb.Delete(meta_cf_, fmt::PartitionKey(p->uid));
      wb.DeleteRange(meta_cf_, fmt::IdPrefixBegin(fmt::MetaKeyType::kIndex, p->uid),
                     fmt::IdPrefixEnd(fmt::MetaKeyType::kIndex, p->uid));
      wb.DeleteRange(meta_cf_, fmt::IdPrefixBegin(fmt::MetaKeyType::kProducer, p->uid),
                     fmt::IdPrefixEnd(fmt::MetaKeyType::kProducer, p->uid));
    }
    wb.DeleteRange(meta_cf_, fmt::IdPrefixBegin(fmt::MetaKeyType::kDedup, topic->id),
                   fmt::IdPrefixEnd(fmt::MetaKeyType::kDedup, topic->id));
    RUNNEL_RETURN_IF_ERROR(WriteMeta(&wb, "deleting topic '" + topic->name + "'"));
    for (auto& p : topic->partitions) p->deleted.store(true);
    dedup_topics_.erase(topic->id);
  }
  {
    std::unique_lock lk(topics_mu_);
    topics_.erase(topic->name);
  }
  // The data goes with the column families. A crash before this point leaves orphans that the
  // next Open drops.
  Status result;
  for (auto& p : topic->partitions) {
    Status s = FromRocks(db_->DropColumnFamily(p->cf), "dropping partition data");
    if (result.ok()) result = s;
  }
  return result;
}

Status LogStoreImpl::AlterTopic(
    std::string_view name, const std::vector<std::pair<std::string, std::string>>& config_changes,
    int32_t new_partition_count) {
  std::lock_guard admin(admin_mu_);
  std::shared_ptr<TopicState> topic = FindTopic(name);
  if (!topic) return Status::NotFound("unknown topic '" + std::string(name) + "'");
  TopicConfig config;
  size_t current_partitions;
  {
    std::shared_lock lk(topics_mu_);
    config = topic->config;
    current_partitions = topic->partitions.size();
  }
  for (const auto& [k, v] : config_changes) RUNNEL_RETURN_IF_ERROR(config.Set(k, v));
  if (new_partition_count != 0 && (new_partition_count < static_cast<int32_t>(current_partitions) ||
                                   new_partition_count > kMaxPartitionsPerTopic)) {
    return Status::InvalidArgument("partitions can only grow, up to " +
                                   std::to_string(kMaxPartitionsPerTopic) + " (topic has " +
                                   std::to_string(current_partitions) + ")");
  }
  const int32_t add =
      new_partition_count == 0 ? 0 : new_partition_count - static_cast<int32_t>(current_partitions);
  rocksdb::WriteBatch wb;
  std::vector<std::shared_ptr<PartitionState>> added;
  if (add > 0) {
    RUNNEL_ASSIGN_OR_RETURN(fmt::CountersValue counters, ReadCounters());
    RUNNEL_ASSIGN_OR_RETURN(
        added, CreatePartitions(topic->id, topic->name, static_cast<int32_t>(current_partitions),
                                add, &counters, &wb));
    wb.Put(meta_cf_, fmt::CountersKey(), fmt::Encode(counters));
  }
  fmt::TopicValue tv{topic->id, topic->created_ms, {}, config.ToList()};
  {
    std::shared_lock lk(topics_mu_);
    for (auto& p : topic->partitions) tv.partition_uids.push_back(p->uid);
  }
  for (auto& p : added) tv.partition_uids.push_back(p->uid);
  wb.Put(meta_cf_, fmt::TopicKey(name), fmt::Encode(tv));
  if (Status ws = WriteMeta(&wb, "altering topic '" + topic->name + "'"); !ws.ok()) {
    DropPartitions(added);
    return ws;
  }
  std::unique_lock lk(topics_mu_);
  topic->config = config;
  for (auto& p : added) topic->partitions.push_back(std::move(p));
  return Status::OK();
}

std::vector<std::string> LogStoreImpl::ListTopics() const {
  std::shared_lock lk(topics_mu_);
  std::vector<std::string> names;
  for (const auto& [name, topic] : topics_) names.push_back(name);
  return names;
}

Result<TopicInfo> LogStoreImpl::DescribeTopic(std::string_view name) const {
  std::shared_lock lk(topics_mu_);
  auto it = topics_.find(name);
  if (it == topics_.end()) return Status::NotFound("unknown topic '" + std::string(name) + "'");
  const TopicState& t = *it->second;
  TopicInfo info{t.name, TopicId(t.id), t.config, {}};
  for (const auto& p : t.partitions) {
    std::lock_guard plk(p->mu);
    info.partitions.push_back({p->partition, Offset(p->log_start.load()),
                               Offset(p->high_watermark.load()),
                               p->end_bytes.load() - p->start_bytes});
  }
  return info;
}

std::shared_ptr<TopicState> LogStoreImpl::FindTopic(std::string_view name) const {
  std::shared_lock lk(topics_mu_);
  auto it = topics_.find(name);
  return it == topics_.end() ? nullptr : it->second;
}

Result<std::shared_ptr<PartitionState>> LogStoreImpl::FindPartition(std::string_view topic,
                                                                    Partition p) const {
  std::shared_lock lk(topics_mu_);
  auto it = topics_.find(topic);
  if (it == topics_.end()) return Status::NotFound("unknown topic '" + std::string(topic) + "'");
  const auto& parts = it->second->partitions;
  if (p.value() < 0 || static_cast<size_t>(p.value()) >= parts.size()) {
    return Status::NotFound("topic '" + std::string(topic) + "' has " +
                            std::to_string(parts.size()) + " partitions; partition " +
                            std::to_string(p.value()) + " does not exist");
  }
  return parts[static_cast<size_t>(p.value())];
}

Result<ReadResult> LogStoreImpl::Read(std::string_view topic, Partition partition, Offset offset,
                                      size_t max_bytes) const {
  RUNNEL_ASSIGN_OR_RETURN(std::shared_ptr<PartitionState> part, FindPartition(topic, partition));
  ReadResult out;
  const int64_t hwm = part->high_watermark.load(std::memory_order_acquire);
  const int64_t start = part->log_start.load(std::memory_order_acquire);
  out.high_watermark = Offset(hwm);
  out.log_start = Offset(start);
  auto out_of_range = [&](int64_t log_start) {
    return Status::OutOfRange("offset " + std::to_string(offset.value()) + " is outside [" +
                              std::to_string(log_start) + ", " + std::to_string(hwm) + "] of " +
                              std::string(topic) + "/" + std::to_string(partition.value()));
  };
  if (offset.value() < start || offset.value() > hwm) return out_of_range(start);
  if (offset.value() == hwm) return out;

  const std::string lower_key = fmt::LogKey(part->uid, 0);
  const std::string upper_key = fmt::LogKey(part->uid, hwm);  // batches starting below the HWM
  rocksdb::Slice lower(lower_key), upper(upper_key);
  rocksdb::ReadOptions ro;
  ro.iterate_lower_bound = &lower;
  ro.iterate_upper_bound = &upper;
  // Values stay valid while the iterator lives, so the batches are gathered first and copied
  // once into a buffer of their exact size (appending grew the buffer by doubling: a copy more
  // per byte, and fresh pages to fault in for every large read).
  ro.pin_data = true;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(ro, part->cf));
  std::vector<rocksdb::Slice> batches;
  size_t total = 0;
  it->SeekForPrev(fmt::LogKey(part->uid, offset.value()));
  if (!it->Valid()) it->Seek(fmt::LogKey(part->uid, offset.value()));
  for (; it->Valid(); it->Next()) {
    const rocksdb::Slice v = it->value();
    BatchHeader h;
    Status hs = PeekBatchHeader(v.ToStringView(), &h);
    if (!hs.ok())
      return hs.WithContext("stored batch in " + std::string(topic) + "/" +
                            std::to_string(partition.value()));
    if (out.batch_count == 0 &&
        (h.base_offset > offset.value() || h.last_offset() < offset.value())) {
      // Retention removed the batch holding `offset` after we looked at the log start.
      const int64_t new_start = part->log_start.load(std::memory_order_acquire);
      if (offset.value() < new_start) return out_of_range(new_start);
      if (h.last_offset() < offset.value()) continue;
      return Status::Corruption("no stored batch holds offset " + std::to_string(offset.value()) +
                                " of " + std::string(topic) + "/" +
                                std::to_string(partition.value()));
    }
    batches.push_back(v);
    total += v.size();
    ++out.batch_count;
    if (total >= max_bytes) break;
  }
  RUNNEL_RETURN_IF_ERROR(FromRocks(it->status(), "reading " + std::string(topic)));
  out.records.reserve(total);
  for (const rocksdb::Slice& b : batches) out.records.append(b.data(), b.size());
  if (out.batch_count == 0) {
    const int64_t new_start = part->log_start.load(std::memory_order_acquire);
    if (offset.value() < new_start) return out_of_range(new_start);
    return Status::Corruption("no stored batch holds offset " + std::to_string(offset.value()) +
                              " of " + std::string(topic) + "/" +
                              std::to_string(partition.value()));
  }
  return out;
}

Result<Offset> LogStoreImpl::ListOffset(std::string_view topic, Partition partition,
                                        OffsetQuery query) const {
  RUNNEL_ASSIGN_OR_RETURN(std::shared_ptr<PartitionState> part, FindPartition(topic, partition));
  const int64_t hwm = part->high_watermark.load(std::memory_order_acquire);
  switch (query.kind) {
    case OffsetQuery::Kind::kEarliest:
      return Offset(part->log_start.load(std::memory_order_acquire));
    case OffsetQuery::Kind::kLatest:
      return Offset(hwm);
    case OffsetQuery::Kind::kTimestamp:
      break;
  }
  // Start at the last index entry before which every timestamp is < the target.
  int64_t scan_from = part->log_start.load(std::memory_order_acquire);
  {
    std::lock_guard lk(part->mu);
    auto it = std::partition_point(
        part->index.begin(), part->index.end(),
        [&](const IndexEntry& e) { return e.max_ts_before < query.timestamp_ms; });
    if (it != part->index.begin()) scan_from = std::max(scan_from, std::prev(it)->offset);
  }
  const std::string lower_key = fmt::LogKey(part->uid, scan_from);
  const std::string upper_key = fmt::LogKey(part->uid, hwm);
  rocksdb::Slice lower(lower_key), upper(upper_key);
  rocksdb::ReadOptions ro;
  ro.iterate_lower_bound = &lower;
  ro.iterate_upper_bound = &upper;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(ro, part->cf));
  for (it->Seek(lower); it->Valid(); it->Next()) {
    const std::string_view v = it->value().ToStringView();
    BatchHeader h;
    RUNNEL_RETURN_IF_ERROR(PeekBatchHeader(v, &h));
    if (h.max_timestamp < query.timestamp_ms) continue;
    RUNNEL_ASSIGN_OR_RETURN(
        DecodedBatch batch,
        DecodedBatch::Decode(v, DecodeLimits{options_.max_uncompressed_batch_bytes}));
    for (const Record& r : batch.records()) {
      if (r.timestamp >= query.timestamp_ms) return Offset(r.offset);
    }
  }
  RUNNEL_RETURN_IF_ERROR(FromRocks(it->status(), "searching " + std::string(topic) + " by time"));
  return Offset(hwm);
}

void LogStoreImpl::SetUnhealthy(const Status& cause) {
  std::lock_guard lk(health_mu_);
  if (health_.ok()) health_ = cause;  // the first failure is the one worth reporting
}

Status LogStoreImpl::Health() const {
  std::lock_guard lk(health_mu_);
  return health_;
}

StoreStats LogStoreImpl::GetStats() const {
  StoreStats s;
  s.commits = stat_commits_.load();
  s.fsyncs = stat_fsyncs_.load();
  s.records_appended = stat_records_.load();
  s.batches_appended = stat_batches_.load();
  s.bytes_appended = stat_bytes_.load();
  s.fsync_micros_total = stat_fsync_micros_.load();
  {
    std::lock_guard lk(queue_mu_);
    s.queued_bytes = queued_bytes_;
  }
  std::error_code ec;
  for (auto it = std::filesystem::recursive_directory_iterator(db_path_, ec);
       !ec && it != std::filesystem::recursive_directory_iterator(); it.increment(ec)) {
    std::error_code fec;
    if (it->is_regular_file(fec)) s.disk_bytes += it->file_size(fec);
  }
  if (auto space = std::filesystem::space(db_path_, ec); !ec) s.disk_free_bytes = space.available;
  return s;
}

}  // namespace runnel::storage
