#include "runnel/storage/inspect.h"

#include <fcntl.h>
#include <unistd.h>

#include <filesystem>
#include <map>
#include <optional>

#include <rocksdb/db.h>
#include <rocksdb/env.h>

#include "rocks_status.h"
#include "wal_check.h"
#include "runnel/common/coding.h"
#include "runnel/common/record_batch.h"

namespace runnel::storage {
namespace fmt = format;
namespace {

// RocksDB holds a POSIX write lock on store/LOCK while the store is open; F_GETLK reports the
// process holding it.
Status CheckNotOpen(const std::string& lock_file) {
  const int fd = ::open(lock_file.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Status::OK();  // no lock file: nobody opened it read-write
  struct flock fl {};
  fl.l_type = F_WRLCK;
  fl.l_whence = SEEK_SET;
  const int rc = ::fcntl(fd, F_GETLK, &fl);
  ::close(fd);
  if (rc == 0 && fl.l_type != F_UNLCK) {
    return Status::IOError("the store is open in process " + std::to_string(fl.l_pid) +
                           " (a live broker); stop it first");
  }
  return Status::OK();
}

// Read-only means read-only: without a logger of its own RocksDB would create (and rotate) the
// LOG file in the store directory.
class NullLogger final : public rocksdb::Logger {
 public:
  using rocksdb::Logger::Logv;
  void Logv(const char*, va_list) override {}
};

class InspectorImpl final : public DataDirInspector {
 public:
  ~InspectorImpl() override {
    for (auto& [uid, h] : log_cfs_) db_->DestroyColumnFamilyHandle(h);
    if (meta_cf_) db_->DestroyColumnFamilyHandle(meta_cf_);
    if (default_cf_) db_->DestroyColumnFamilyHandle(default_cf_);
  }

  Status Init(const std::string& data_dir) {
    const std::string path = data_dir + "/store";
    if (!std::filesystem::exists(path + "/CURRENT")) {
      return Status::NotFound("'" + data_dir + "' holds no Runnel store");
    }
    RUNNEL_RETURN_IF_ERROR(CheckNotOpen(path + "/LOCK"));
    rocksdb::DBOptions options;
    options.info_log = std::make_shared<NullLogger>();
    // As LogStore opens it: WAL damage before the end is an answer, not something to replay
    // around silently (point-in-time recovery would show the store without what follows it).
    options.wal_recovery_mode = rocksdb::WALRecoveryMode::kTolerateCorruptedTailRecords;
    options.track_and_verify_wals_in_manifest = true;
    std::vector<std::string> names;
    RUNNEL_RETURN_IF_ERROR(FromRocks(rocksdb::DB::ListColumnFamilies(options, path, &names),
                                     "listing column families"));
    std::vector<rocksdb::ColumnFamilyDescriptor> descriptors;
    for (const auto& n : names) descriptors.emplace_back(n, rocksdb::ColumnFamilyOptions());
    std::vector<rocksdb::ColumnFamilyHandle*> handles;
    rocksdb::DB* raw = nullptr;
    rocksdb::Status s = rocksdb::DB::OpenForReadOnly(options, path, descriptors, &handles, &raw);
    if (s.IsCorruption()) {
      if (std::optional<WalDamage> d = FindWalDamage(path)) {
        return Status::Corruption(DescribeWalDamage(*d) +
                                  ": records acknowledged after that point would be lost; "
                                  "`runneld --recover-truncate` starts anyway, dropping them "
                                  "(back up the data directory first)");
      }
    }
    RUNNEL_RETURN_IF_ERROR(FromRocks(s, "opening '" + path + "' read-only"));
    db_.reset(raw);
    for (auto* h : handles) {
      if (h->GetName() == fmt::kMetaColumnFamily) {
        meta_cf_ = h;
      } else if (auto uid = fmt::ParseLogColumnFamilyName(h->GetName())) {
        log_cfs_[*uid] = h;
      } else {
        default_cf_ = h;
      }
    }
    if (!meta_cf_) return Status::Corruption("'" + path + "' has no meta column family");
    return LoadTopics();
  }

  const std::vector<InspectedTopic>& Topics() const override { return topics_; }

  Result<std::vector<InspectedGroup>> Groups() const override {
    std::vector<InspectedGroup> out;
    std::map<uint32_t, size_t> by_id;
    RUNNEL_RETURN_IF_ERROR(Scan(fmt::MetaKeyType::kGroup, [&](std::string_view k, std::string_view v) {
      InspectedGroup g;
      g.name = std::string(k.substr(1));
      RUNNEL_RETURN_IF_ERROR(fmt::Decode(v, &g.value));
      by_id[g.value.group_id] = out.size();
      out.push_back(std::move(g));
      return Status::OK();
    }));
    auto group_of = [&](std::string_view k) -> InspectedGroup* {
      if (k.size() < 5) return nullptr;
      auto it = by_id.find(DecodeFixed32BE(k.data() + 1));
      return it == by_id.end() ? nullptr : &out[it->second];
    };
    std::map<uint32_t, std::string> topic_names;
    for (const auto& t : topics_) topic_names[t.topic_id] = t.name;
    RUNNEL_RETURN_IF_ERROR(Scan(fmt::MetaKeyType::kOffset, [&](std::string_view k, std::string_view v) {
      InspectedGroup* g = group_of(k);
      if (!g || k.size() != 13) return Status::OK();
      InspectedOffset o;
      auto t = topic_names.find(DecodeFixed32BE(k.data() + 5));
      if (t != topic_names.end()) o.topic = t->second;
      o.partition = static_cast<int32_t>(DecodeFixed32BE(k.data() + 9));
      RUNNEL_RETURN_IF_ERROR(fmt::Decode(v, &o.value));
      g->offsets.push_back(std::move(o));
      return Status::OK();
    }));
    RUNNEL_RETURN_IF_ERROR(Scan(fmt::MetaKeyType::kPending, [&](std::string_view k, std::string_view) {
      if (InspectedGroup* g = group_of(k)) ++g->pending;
      return Status::OK();
    }));
    RUNNEL_RETURN_IF_ERROR(Scan(fmt::MetaKeyType::kDeadLetter, [&](std::string_view k, std::string_view) {
      if (InspectedGroup* g = group_of(k)) ++g->dead_letters;
      return Status::OK();
    }));
    return out;
  }

  Status ForEachBatch(uint32_t uid,
                      const std::function<bool(const InspectedBatch&)>& fn) const override {
    auto cf = log_cfs_.find(uid);
    if (cf == log_cfs_.end()) return Status::OK();  // never written
    std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions(), cf->second));
    for (it->Seek(fmt::LogRangeBegin(uid)); it->Valid(); it->Next()) {
      uint32_t key_uid = 0;
      InspectedBatch b;
      if (!fmt::ParseLogKey(it->key().ToStringView(), &key_uid, &b.base_offset) || key_uid != uid)
        break;
      const std::string_view bytes = it->value().ToStringView();
      b.bytes = bytes.size();
      BatchHeader h;
      b.check = ParseBatchHeader(bytes, &h);
      if (b.check.ok()) {
        b.last_offset = h.last_offset();
        b.records = h.record_count;
        b.max_timestamp = h.max_timestamp;
        b.producer_id = h.producer_id;
        b.producer_epoch = h.producer_epoch;
        b.base_sequence = h.base_sequence;
        b.compression = std::string(CompressionName(h.compression()));
        if (h.base_offset != b.base_offset) {
          b.check = Status::Corruption("batch says base offset " + std::to_string(h.base_offset) +
                                       ", its key " + std::to_string(b.base_offset));
        } else if (auto decoded = DecodedBatch::Decode(bytes); !decoded.ok()) {
          b.check = decoded.status();
        } else if (static_cast<int32_t>(decoded->records().size()) != h.record_count) {
          b.check = Status::Corruption("header counts " + std::to_string(h.record_count) +
                                       " records, the batch holds " +
                                       std::to_string(decoded->records().size()));
        }
      }
      if (!fn(b)) return Status::OK();
    }
    return FromRocks(it->status(), "scanning a log");
  }

 private:
  Status Scan(fmt::MetaKeyType type,
              const std::function<Status(std::string_view, std::string_view)>& fn) const {
    const std::string begin = fmt::TypeBegin(type), end = fmt::TypeEnd(type);
    rocksdb::ReadOptions ro;
    rocksdb::Slice upper(end);
    ro.iterate_upper_bound = &upper;
    std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(ro, meta_cf_));
    for (it->Seek(begin); it->Valid(); it->Next()) {
      RUNNEL_RETURN_IF_ERROR(fn(it->key().ToStringView(), it->value().ToStringView()));
    }
    return FromRocks(it->status(), "scanning meta");
  }

  Status LoadTopics() {
    return Scan(fmt::MetaKeyType::kTopic, [&](std::string_view k, std::string_view v) {
      fmt::TopicValue tv;
      RUNNEL_RETURN_IF_ERROR(fmt::Decode(v, &tv));
      InspectedTopic t;
      t.name = std::string(k.substr(1));
      t.topic_id = tv.topic_id;
      t.created_ms = tv.created_ms;
      t.config = tv.config;
      for (size_t p = 0; p < tv.partition_uids.size(); ++p) {
        InspectedPartition ip;
        ip.partition = static_cast<int32_t>(p);
        ip.uid = tv.partition_uids[p];
        std::string pv;
        rocksdb::Status gs =
            db_->Get(rocksdb::ReadOptions(), meta_cf_, fmt::PartitionKey(ip.uid), &pv);
        if (!gs.ok()) return FromRocks(gs, "reading partition " + t.name + "/" + std::to_string(p));
        RUNNEL_RETURN_IF_ERROR(fmt::Decode(pv, &ip.state));
        t.partitions.push_back(ip);
      }
      topics_.push_back(std::move(t));
      return Status::OK();
    });
  }

  std::unique_ptr<rocksdb::DB> db_;
  rocksdb::ColumnFamilyHandle* meta_cf_ = nullptr;
  rocksdb::ColumnFamilyHandle* default_cf_ = nullptr;
  std::map<uint32_t, rocksdb::ColumnFamilyHandle*> log_cfs_;
  std::vector<InspectedTopic> topics_;
};

}  // namespace

Result<std::unique_ptr<DataDirInspector>> DataDirInspector::Open(const std::string& data_dir) {
  auto impl = std::make_unique<InspectorImpl>();
  RUNNEL_RETURN_IF_ERROR(impl->Init(data_dir));
  return std::unique_ptr<DataDirInspector>(std::move(impl));
}

}  // namespace runnel::storage
