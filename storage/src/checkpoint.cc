// LogStore::Checkpoint: an online backup. RocksDB's checkpoint stops file deletions, takes the
// live SST files (hard-linked when `dir` is on the same file system, copied otherwise), the
// manifest and the live WAL files (copied up to their current size), so opening the copy replays
// the WAL to the same point-in-time state the store had: every topic, partition state, offset and
// pending entry consistent with the log batches, as after a crash at that moment.
#include <rocksdb/utilities/checkpoint.h>

#include <filesystem>

#include "log_store_impl.h"
#include "rocks_status.h"

namespace runnel::storage {

Status LogStoreImpl::Checkpoint(const std::string& dir) {
  namespace fs = std::filesystem;
  if (dir.empty()) return Status::InvalidArgument("backup directory is empty");
  std::error_code ec;
  if (fs::exists(dir, ec) && !fs::is_empty(dir, ec)) {
    return Status::InvalidArgument("backup directory '" + dir + "' exists and is not empty");
  }
  fs::create_directories(dir, ec);
  if (ec) return Status::IOError("cannot create backup directory '" + dir + "': " + ec.message());
  fs::permissions(dir, fs::perms::owner_all, fs::perm_options::replace, ec);  // records inside

  rocksdb::Checkpoint* raw = nullptr;
  RUNNEL_RETURN_IF_ERROR(FromRocks(rocksdb::Checkpoint::Create(db_.get(), &raw), "backup"));
  std::unique_ptr<rocksdb::Checkpoint> cp(raw);
  // Acknowledged appends are in the synced WAL; a flush first keeps the copied WAL short. The
  // committer may append meanwhile: what it wrote after the flush is in the copied WAL tail or
  // not at all, each batch whole (RocksDB recovers the copy to a consistent point).
  const std::string target = dir + "/store";
  Status st = FromRocks(cp->CreateCheckpoint(target, /*log_size_for_flush=*/0),
                        "writing backup to '" + target + "'");
  if (!st.ok()) fs::remove_all(target, ec);  // never leave a half copy that looks like a store
  return st;
}

}  // namespace runnel::storage
