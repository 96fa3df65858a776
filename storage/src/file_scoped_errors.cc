#include "file_scoped_errors.h"

#include <string>
#include <utility>

namespace runnel::storage {
namespace {

using rocksdb::IODebugContext;
using rocksdb::IOOptions;
using rocksdb::IOStatus;
using rocksdb::Slice;

// An IOError that is neither NoSpace nor data loss becomes file-scoped; anything else is
// returned unchanged.
IOStatus FileScoped(IOStatus s) {
  if (!s.IsIOError() || s.IsNoSpace() || s.GetDataLoss()) return s;
  s.SetScope(IOStatus::IOErrorScope::kIOErrorScopeFile);
  return s;
}

class ScopedWritableFile final : public rocksdb::FSWritableFileOwnerWrapper {
 public:
  explicit ScopedWritableFile(std::unique_ptr<rocksdb::FSWritableFile> f)
      : FSWritableFileOwnerWrapper(std::move(f)) {}

  IOStatus Append(const Slice& data, const IOOptions& o, IODebugContext* dbg) override {
    return FileScoped(target()->Append(data, o, dbg));
  }
  IOStatus Append(const Slice& data, const IOOptions& o,
                  const rocksdb::DataVerificationInfo& info, IODebugContext* dbg) override {
    return FileScoped(target()->Append(data, o, info, dbg));
  }
  IOStatus PositionedAppend(const Slice& data, uint64_t offset, const IOOptions& o,
                            IODebugContext* dbg) override {
    return FileScoped(target()->PositionedAppend(data, offset, o, dbg));
  }
  IOStatus PositionedAppend(const Slice& data, uint64_t offset, const IOOptions& o,
                            const rocksdb::DataVerificationInfo& info,
                            IODebugContext* dbg) override {
    return FileScoped(target()->PositionedAppend(data, offset, o, info, dbg));
  }
  IOStatus Truncate(uint64_t size, const IOOptions& o, IODebugContext* dbg) override {
    return FileScoped(target()->Truncate(size, o, dbg));
  }
  IOStatus Close(const IOOptions& o, IODebugContext* dbg) override {
    return FileScoped(target()->Close(o, dbg));
  }
  IOStatus Flush(const IOOptions& o, IODebugContext* dbg) override {
    return FileScoped(target()->Flush(o, dbg));
  }
  IOStatus Sync(const IOOptions& o, IODebugContext* dbg) override {
    return FileScoped(target()->Sync(o, dbg));
  }
  IOStatus Fsync(const IOOptions& o, IODebugContext* dbg) override {
    return FileScoped(target()->Fsync(o, dbg));
  }
  IOStatus RangeSync(uint64_t offset, uint64_t nbytes, const IOOptions& o,
                     IODebugContext* dbg) override {
    return FileScoped(target()->RangeSync(offset, nbytes, o, dbg));
  }
};

class FileScopedErrorsFs final : public rocksdb::FileSystemWrapper {
 public:
  explicit FileScopedErrorsFs(const std::shared_ptr<rocksdb::FileSystem>& base)
      : FileSystemWrapper(base) {}
  static const char* kClassName() { return "RunnelFileScopedErrors"; }
  const char* Name() const override { return kClassName(); }

  IOStatus NewWritableFile(const std::string& f, const rocksdb::FileOptions& o,
                           std::unique_ptr<rocksdb::FSWritableFile>* r,
                           IODebugContext* dbg) override {
    return Wrap(target()->NewWritableFile(f, o, r, dbg), r);
  }
  IOStatus ReopenWritableFile(const std::string& f, const rocksdb::FileOptions& o,
                              std::unique_ptr<rocksdb::FSWritableFile>* r,
                              IODebugContext* dbg) override {
    return Wrap(target()->ReopenWritableFile(f, o, r, dbg), r);
  }
  IOStatus ReuseWritableFile(const std::string& f, const std::string& old,
                             const rocksdb::FileOptions& o,
                             std::unique_ptr<rocksdb::FSWritableFile>* r,
                             IODebugContext* dbg) override {
    return Wrap(target()->ReuseWritableFile(f, old, o, r, dbg), r);
  }

 private:
  static IOStatus Wrap(IOStatus s, std::unique_ptr<rocksdb::FSWritableFile>* r) {
    if (s.ok()) *r = std::make_unique<ScopedWritableFile>(std::move(*r));
    return FileScoped(std::move(s));
  }
};

}  // namespace

std::unique_ptr<rocksdb::Env> NewFileScopedErrorsEnv(rocksdb::Env* base) {
  return rocksdb::NewCompositeEnv(std::make_shared<FileScopedErrorsFs>(base->GetFileSystem()));
}

}  // namespace runnel::storage
