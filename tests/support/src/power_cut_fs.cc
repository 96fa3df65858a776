// PowerCutFs: unsynced writes and unsynced directory changes, tracked and dropped at a cut.
#include "runnel/testing/power_cut_fs.h"

#include <algorithm>
#include <filesystem>
#include <system_error>
#include <utility>

namespace runnel::testing {

namespace fs = std::filesystem;
using rocksdb::IOStatus;

namespace {

std::string ParentDir(const std::string& path) {
  const size_t slash = path.find_last_of('/');
  return slash == std::string::npos ? std::string(".") : path.substr(0, slash);
}

std::string NormalizeDir(std::string dir) {
  while (dir.size() > 1 && dir.back() == '/') dir.pop_back();
  return dir;
}

bool IsWal(const std::string& path) {
  return path.size() > 4 && path.compare(path.size() - 4, 4, ".log") == 0;
}

// A writable file whose appends and syncs PowerCutFs accounts for. Real syncs are skipped.
class TrackedFile final : public rocksdb::FSWritableFileOwnerWrapper {
 public:
  TrackedFile(std::unique_ptr<rocksdb::FSWritableFile> target, PowerCutFs* fs, std::string path,
              std::shared_ptr<PowerCutFs::Node> node)
      : FSWritableFileOwnerWrapper(std::move(target)),
        fs_(fs),
        path_(std::move(path)),
        node_(std::move(node)) {}

  IOStatus Append(const rocksdb::Slice& data, const rocksdb::IOOptions& o,
                  rocksdb::IODebugContext* dbg) override {
    IOStatus s = fs_->OnAppend(path_, *node_, data.size());
    return s.ok() ? target()->Append(data, o, dbg) : s;
  }
  IOStatus Append(const rocksdb::Slice& data, const rocksdb::IOOptions& o,
                  const rocksdb::DataVerificationInfo&, rocksdb::IODebugContext* dbg) override {
    return Append(data, o, dbg);
  }
  IOStatus PositionedAppend(const rocksdb::Slice& data, uint64_t offset,
                            const rocksdb::IOOptions& o, rocksdb::IODebugContext* dbg) override {
    // Only with direct I/O, which the store does not use; account it as an append at the end.
    IOStatus s = fs_->OnAppend(path_, *node_, data.size());
    return s.ok() ? target()->PositionedAppend(data, offset, o, dbg) : s;
  }
  IOStatus PositionedAppend(const rocksdb::Slice& data, uint64_t offset,
                            const rocksdb::IOOptions& o, const rocksdb::DataVerificationInfo&,
                            rocksdb::IODebugContext* dbg) override {
    return PositionedAppend(data, offset, o, dbg);
  }
  IOStatus Truncate(uint64_t size, const rocksdb::IOOptions& o,
                    rocksdb::IODebugContext* dbg) override {
    IOStatus s = target()->Truncate(size, o, dbg);
    if (s.ok()) fs_->OnTruncate(*node_, size);
    return s;
  }
  IOStatus Sync(const rocksdb::IOOptions&, rocksdb::IODebugContext*) override {
    return fs_->OnSync(path_, *node_);
  }
  IOStatus Fsync(const rocksdb::IOOptions&, rocksdb::IODebugContext*) override {
    return fs_->OnSync(path_, *node_);
  }
  IOStatus RangeSync(uint64_t, uint64_t, const rocksdb::IOOptions&,
                     rocksdb::IODebugContext*) override {
    return IOStatus::OK();  // sync_file_range makes nothing durable (no metadata, no barrier)
  }
  bool IsSyncThreadSafe() const override { return true; }

 private:
  PowerCutFs* const fs_;
  const std::string path_;
  const std::shared_ptr<PowerCutFs::Node> node_;
};

// A directory whose fsync makes its pending entry changes durable. Real fsyncs are skipped.
class TrackedDir final : public rocksdb::FSDirectoryWrapper {
 public:
  TrackedDir(std::unique_ptr<rocksdb::FSDirectory> target, PowerCutFs* fs, std::string dir)
      : FSDirectoryWrapper(std::move(target)), fs_(fs), dir_(std::move(dir)) {}

  IOStatus Fsync(const rocksdb::IOOptions&, rocksdb::IODebugContext*) override {
    fs_->OnDirFsync(dir_);
    return IOStatus::OK();
  }
  IOStatus FsyncWithDirOptions(const rocksdb::IOOptions&, rocksdb::IODebugContext*,
                               const rocksdb::DirFsyncOptions&) override {
    fs_->OnDirFsync(dir_);
    return IOStatus::OK();
  }

 private:
  PowerCutFs* const fs_;
  const std::string dir_;
};

}  // namespace

PowerCutFs::PowerCutFs(std::string trash_dir)
    : FileSystemWrapper(rocksdb::FileSystem::Default()), trash_dir_(NormalizeDir(trash_dir)) {
  std::error_code ec;
  fs::create_directories(trash_dir_, ec);
}

PowerCutFs::~PowerCutFs() = default;

std::unique_ptr<rocksdb::Env> PowerCutFs::NewEnv(const std::shared_ptr<PowerCutFs>& fs) {
  return rocksdb::NewCompositeEnv(fs);
}

void PowerCutFs::Freeze() {
  std::lock_guard lk(mu_);  // orders the freeze against every sync in flight
  frozen_.store(true);
}

void PowerCutFs::InjectFault(FaultOp op, int count, bool wal_only) {
  std::lock_guard lk(mu_);
  fault_count_[static_cast<int>(op)] = count;
  fault_wal_only_[static_cast<int>(op)] = wal_only;
}

void PowerCutFs::StopFaults() {
  std::lock_guard lk(mu_);
  fault_count_[0] = fault_count_[1] = 0;
}

bool PowerCutFs::Faulty(FaultOp op, const std::string& path) {
  int& count = fault_count_[static_cast<int>(op)];
  if (count == 0) return false;
  if (fault_wal_only_[static_cast<int>(op)] && !IsWal(path)) return false;
  if (count > 0) --count;
  faults_injected_.fetch_add(1);
  return true;
}

IOStatus PowerCutFs::OnAppend(const std::string& path, Node& node, uint64_t bytes) {
  std::lock_guard lk(mu_);
  if (Faulty(FaultOp::kWrite, path)) return IOStatus::IOError("injected EIO writing " + path);
  node.size += bytes;
  return IOStatus::OK();
}

IOStatus PowerCutFs::OnSync(const std::string& path, Node& node) {
  std::lock_guard lk(mu_);
  if (Faulty(FaultOp::kSync, path)) {
    // The kernel may have dropped the dirty pages and will not say so again.
    node.lost_from = std::min(node.lost_from, node.synced);
    return IOStatus::IOError("injected EIO syncing " + path);
  }
  if (!frozen_.load()) node.synced = node.size;
  return IOStatus::OK();
}

void PowerCutFs::OnTruncate(Node& node, uint64_t size) {
  std::lock_guard lk(mu_);
  node.size = size;
  // Shrinking is not durable before a sync either; a cut keeps the synced prefix at most.
  node.synced = std::min(node.synced, size);
}

void PowerCutFs::OnDirFsync(const std::string& dir) {
  std::lock_guard lk(mu_);
  if (frozen_.load()) return;
  std::vector<Change> kept;
  for (Change& c : journal_) {
    if (c.dir != dir) {
      kept.push_back(std::move(c));
      continue;
    }
    if (c.kind == Change::kDelete) {
      std::error_code ec;
      fs::remove(c.trash, ec);  // the delete is durable now
    }
  }
  journal_ = std::move(kept);
}

std::shared_ptr<PowerCutFs::Node> PowerCutFs::TrackNew(const std::string& path, bool existed) {
  auto node = std::make_shared<Node>();
  files_[path] = node;
  if (!existed) journal_.push_back({Change::kCreate, ParentDir(path), path, "", "", nullptr});
  return node;
}

IOStatus PowerCutFs::MoveToTrash(const std::string& path) {
  const std::string trash = trash_dir_ + "/" + std::to_string(++trash_seq_);
  std::error_code ec;
  fs::rename(path, trash, ec);
  if (ec) return IOStatus::IOError("moving " + path + " aside: " + ec.message());
  std::shared_ptr<Node> node;
  if (auto it = files_.find(path); it != files_.end()) {
    node = it->second;
    files_.erase(it);
  }
  journal_.push_back({Change::kDelete, ParentDir(path), path, "", trash, node});
  return IOStatus::OK();
}

IOStatus PowerCutFs::NewWritableFile(const std::string& f, const rocksdb::FileOptions& o,
                                     std::unique_ptr<rocksdb::FSWritableFile>* r,
                                     rocksdb::IODebugContext* dbg) {
  std::lock_guard lk(mu_);
  std::error_code ec;
  const bool existed = fs::exists(f, ec);
  // An existing file is truncated: keep its durable content aside, as a delete then a create.
  if (existed) {
    if (IOStatus s = MoveToTrash(f); !s.ok()) return s;
  }
  std::unique_ptr<rocksdb::FSWritableFile> file;
  IOStatus s = target()->NewWritableFile(f, o, &file, dbg);
  if (!s.ok()) return s;
  *r = std::make_unique<TrackedFile>(std::move(file), this, f, TrackNew(f, false));
  return s;
}

IOStatus PowerCutFs::ReopenWritableFile(const std::string& f, const rocksdb::FileOptions& o,
                                        std::unique_ptr<rocksdb::FSWritableFile>* r,
                                        rocksdb::IODebugContext* dbg) {
  std::lock_guard lk(mu_);
  std::error_code ec;
  const bool existed = fs::exists(f, ec);
  std::unique_ptr<rocksdb::FSWritableFile> file;
  IOStatus s = target()->ReopenWritableFile(f, o, &file, dbg);
  if (!s.ok()) return s;
  std::shared_ptr<Node> node;
  if (auto it = files_.find(f); it != files_.end()) {
    node = it->second;
  } else {
    node = TrackNew(f, existed);
    if (existed) node->size = node->synced = fs::file_size(f, ec);
  }
  *r = std::make_unique<TrackedFile>(std::move(file), this, f, node);
  return s;
}

IOStatus PowerCutFs::ReuseWritableFile(const std::string&, const std::string&,
                                       const rocksdb::FileOptions&,
                                       std::unique_ptr<rocksdb::FSWritableFile>*,
                                       rocksdb::IODebugContext*) {
  return IOStatus::NotSupported("PowerCutFs does not recycle WAL files");
}

IOStatus PowerCutFs::NewRandomRWFile(const std::string&, const rocksdb::FileOptions&,
                                     std::unique_ptr<rocksdb::FSRandomRWFile>*,
                                     rocksdb::IODebugContext*) {
  return IOStatus::NotSupported("PowerCutFs does not track random-access writes");
}

IOStatus PowerCutFs::NewDirectory(const std::string& name, const rocksdb::IOOptions& io,
                                  std::unique_ptr<rocksdb::FSDirectory>* r,
                                  rocksdb::IODebugContext* dbg) {
  std::unique_ptr<rocksdb::FSDirectory> dir;
  IOStatus s = target()->NewDirectory(name, io, &dir, dbg);
  if (!s.ok()) return s;
  *r = std::make_unique<TrackedDir>(std::move(dir), this, NormalizeDir(name));
  return s;
}

IOStatus PowerCutFs::DeleteFile(const std::string& f, const rocksdb::IOOptions& io,
                                rocksdb::IODebugContext* dbg) {
  std::lock_guard lk(mu_);
  std::error_code ec;
  if (!fs::exists(f, ec)) return target()->DeleteFile(f, io, dbg);  // its own NotFound
  return MoveToTrash(f);
}

IOStatus PowerCutFs::RenameFile(const std::string& s, const std::string& t,
                                const rocksdb::IOOptions& io, rocksdb::IODebugContext* dbg) {
  std::lock_guard lk(mu_);
  std::error_code ec;
  if (fs::exists(t, ec)) {
    if (IOStatus ts = MoveToTrash(t); !ts.ok()) return ts;
  }
  IOStatus st = target()->RenameFile(s, t, io, dbg);
  if (!st.ok()) return st;
  if (auto it = files_.find(s); it != files_.end()) {
    files_[t] = it->second;
    files_.erase(s);
  }
  if (ParentDir(s) != ParentDir(t)) {
    // Not modelled: RocksDB renames within one directory. Count it durable.
    return st;
  }
  journal_.push_back({Change::kRename, ParentDir(t), t, s, "", nullptr});
  return st;
}

IOStatus PowerCutFs::LinkFile(const std::string& s, const std::string& t,
                              const rocksdb::IOOptions& io, rocksdb::IODebugContext* dbg) {
  std::lock_guard lk(mu_);
  IOStatus st = target()->LinkFile(s, t, io, dbg);
  if (!st.ok()) return st;
  if (auto it = files_.find(s); it != files_.end()) files_[t] = it->second;
  journal_.push_back({Change::kCreate, ParentDir(t), t, "", "", nullptr});
  return st;
}

IOStatus PowerCutFs::Truncate(const std::string& f, size_t size, const rocksdb::IOOptions& io,
                              rocksdb::IODebugContext* dbg) {
  std::lock_guard lk(mu_);
  IOStatus st = target()->Truncate(f, size, io, dbg);
  if (!st.ok()) return st;
  if (auto it = files_.find(f); it != files_.end()) {
    it->second->size = size;
    it->second->synced = std::min<uint64_t>(it->second->synced, size);
  }
  return st;
}

CutStats PowerCutFs::Cut() {
  std::lock_guard lk(mu_);
  CutStats stats;
  std::error_code ec;
  for (auto it = journal_.rbegin(); it != journal_.rend(); ++it) {
    Change& c = *it;
    switch (c.kind) {
      case Change::kCreate:
        if (fs::remove(c.path, ec)) ++stats.files_removed;
        files_.erase(c.path);
        break;
      case Change::kDelete:
        fs::rename(c.trash, c.path, ec);
        if (!ec) ++stats.files_restored;
        if (c.node) {
          files_[c.path] = c.node;
        } else {
          files_.erase(c.path);
        }
        break;
      case Change::kRename:
        fs::rename(c.path, c.from, ec);
        if (!ec) ++stats.files_restored;
        if (auto f = files_.find(c.path); f != files_.end()) {
          files_[c.from] = f->second;
          files_.erase(c.path);
        }
        break;
    }
  }
  journal_.clear();
  for (const auto& [path, node] : files_) {
    const uint64_t keep = std::min(node->synced, node->lost_from);
    const uint64_t size = fs::file_size(path, ec);
    if (ec || size <= keep) continue;
    fs::resize_file(path, keep, ec);
    ++stats.files_truncated;
    stats.bytes_dropped += size - keep;
  }
  files_.clear();
  for (const auto& entry : fs::directory_iterator(trash_dir_, ec)) {
    std::error_code rec;
    fs::remove_all(entry.path(), rec);  // leftovers of deletes made durable in between
  }
  frozen_.store(false);
  return stats;
}

}  // namespace runnel::testing
