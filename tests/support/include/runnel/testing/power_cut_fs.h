// PowerCutFs: a RocksDB file system that simulates losing power (unsynced data and directory
// changes vanish) and injects EIO, for the storage power-cut tests.
#pragma once

#include <rocksdb/env.h>
#include <rocksdb/file_system.h>

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace runnel::testing {

// What a Cut() threw away.
struct CutStats {
  uint64_t files_truncated = 0;  // files cut back to their last synced size
  uint64_t bytes_dropped = 0;    // unsynced bytes removed from them
  uint64_t files_removed = 0;    // created (or renamed into place) but never made durable
  uint64_t files_restored = 0;   // deleted or renamed away, but the directory was never fsynced
};

// A rocksdb::FileSystem over the default (POSIX) one. Reads and writes go to the real files at
// once, so everything reads back as a page cache would show it; what a power cut would keep is
// modelled on the side:
// - per file, the size at its last successful Sync/Fsync (RangeSync makes nothing durable);
// - per directory, the entries created, deleted or renamed since its last FSDirectory::Fsync
//   (a deleted or overwritten file is moved to `trash_dir`, so a cut can bring it back).
// Cut() applies the loss: undoes the directory changes that were never fsynced, newest first,
// then truncates every written file to its last synced size. Directories themselves (and files
// RocksDB never wrote through this file system, like LOCK) count as durable.
//
// Real fsyncs are skipped (durability is simulated), which makes a synced write cheap.
//
// Thread-safe. The caller owns it through a shared_ptr; every store and Env using it must be gone
// before it is destroyed. `trash_dir` must be on the same file system as the data (files are
// renamed into it); it is created if missing.
class PowerCutFs final : public rocksdb::FileSystemWrapper {
 public:
  explicit PowerCutFs(std::string trash_dir);
  ~PowerCutFs() override;

  static const char* kClassName() { return "RunnelPowerCutFs"; }
  const char* Name() const override { return kClassName(); }

  // An Env that uses `fs` for files (and the default Env for threads and time). Pass it as
  // LogStoreOptions::env; it must outlive the store and must not outlive `fs`.
  static std::unique_ptr<rocksdb::Env> NewEnv(const std::shared_ptr<PowerCutFs>& fs);

  // The power goes out: from now on nothing becomes durable. Writes, syncs and directory changes
  // still succeed (so a store shutting down takes its normal path), but are all lost at Cut().
  void Freeze();
  bool frozen() const { return frozen_.load(); }
  // Drops everything not durable at Freeze() (or now, without a Freeze). Call with no file of
  // this file system open (the store closed). Afterwards the disk as it is counts as durable and
  // the file system is no longer frozen.
  CutStats Cut();

  // Fault injection. The next `count` operations of kind `op` fail with EIO (count < 0: every one
  // until StopFaults()). wal_only: only on RocksDB WAL files (*.log). A failed Sync counts as
  // having lost the file's unsynced bytes for good ("fsyncgate"): even a later good sync cannot
  // bring them back, so a cut truncates the file at its synced size before the failure.
  enum class FaultOp { kWrite, kSync };
  void InjectFault(FaultOp op, int count, bool wal_only = true);
  void StopFaults();
  uint64_t faults_injected() const { return faults_injected_.load(); }

  // For the file wrappers (public so that the .cc's helper classes can reach them).
  struct Node {
    uint64_t size = 0;                // bytes written so far
    uint64_t synced = 0;              // durable prefix
    uint64_t lost_from = UINT64_MAX;  // a failed sync lost the bytes from here on
  };
  rocksdb::IOStatus OnAppend(const std::string& path, Node& node, uint64_t bytes);
  rocksdb::IOStatus OnSync(const std::string& path, Node& node);
  void OnTruncate(Node& node, uint64_t size);
  void OnDirFsync(const std::string& dir);

  rocksdb::IOStatus NewWritableFile(const std::string& f, const rocksdb::FileOptions& o,
                                    std::unique_ptr<rocksdb::FSWritableFile>* r,
                                    rocksdb::IODebugContext* dbg) override;
  rocksdb::IOStatus ReopenWritableFile(const std::string& f, const rocksdb::FileOptions& o,
                                       std::unique_ptr<rocksdb::FSWritableFile>* r,
                                       rocksdb::IODebugContext* dbg) override;
  rocksdb::IOStatus ReuseWritableFile(const std::string& f, const std::string& old,
                                      const rocksdb::FileOptions& o,
                                      std::unique_ptr<rocksdb::FSWritableFile>* r,
                                      rocksdb::IODebugContext* dbg) override;
  rocksdb::IOStatus NewRandomRWFile(const std::string& f, const rocksdb::FileOptions& o,
                                    std::unique_ptr<rocksdb::FSRandomRWFile>* r,
                                    rocksdb::IODebugContext* dbg) override;
  rocksdb::IOStatus NewDirectory(const std::string& name, const rocksdb::IOOptions& io,
                                 std::unique_ptr<rocksdb::FSDirectory>* r,
                                 rocksdb::IODebugContext* dbg) override;
  rocksdb::IOStatus DeleteFile(const std::string& f, const rocksdb::IOOptions& io,
                               rocksdb::IODebugContext* dbg) override;
  rocksdb::IOStatus RenameFile(const std::string& s, const std::string& t,
                               const rocksdb::IOOptions& io, rocksdb::IODebugContext* dbg) override;
  rocksdb::IOStatus LinkFile(const std::string& s, const std::string& t,
                             const rocksdb::IOOptions& io, rocksdb::IODebugContext* dbg) override;
  rocksdb::IOStatus Truncate(const std::string& f, size_t size, const rocksdb::IOOptions& io,
                             rocksdb::IODebugContext* dbg) override;

 private:
  // A directory change not yet covered by an fsync of `dir`.
  struct Change {
    enum Kind { kCreate, kDelete, kRename } kind;
    std::string dir;
    std::string path;   // kCreate: the new file; kDelete: where it was; kRename: the target
    std::string from;   // kRename: the source
    std::string trash;  // kDelete: where it waits
    std::shared_ptr<Node> node;  // kDelete: the file's state (null: it was durable in full)
  };

  std::shared_ptr<Node> TrackNew(const std::string& path, bool existed);  // mu_ held
  // Moves an existing file aside into the trash, journalled as a delete; mu_ held.
  rocksdb::IOStatus MoveToTrash(const std::string& path);
  bool Faulty(FaultOp op, const std::string& path);  // mu_ held

  const std::string trash_dir_;
  std::atomic<bool> frozen_{false};
  std::atomic<uint64_t> faults_injected_{0};

  std::mutex mu_;
  std::map<std::string, std::shared_ptr<Node>> files_;  // written since the last cut
  std::vector<Change> journal_;
  uint64_t trash_seq_ = 0;
  int fault_count_[2] = {0, 0};  // by FaultOp; < 0: until StopFaults
  bool fault_wal_only_[2] = {true, true};
};

}  // namespace runnel::testing
