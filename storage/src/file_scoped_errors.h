// FileScopedErrors: a FileSystem wrapper that marks I/O errors of file writes as file-scoped,
// so that RocksDB can recover from them in process.
//
// RocksDB 7.8 classes a plain IOError from a WAL append or sync, or from a flush, as a fatal
// background error: DB::Resume() refuses it and only closing and reopening the database clears
// it. Marked file-scoped (RocksDB's own category for "this file failed; a new file may not"),
// the same error is a hard error: writes stop until DB::Resume() succeeds, which flushes every
// memtable into new table files and the WAL is replaced. That is exactly the recovery the
// committer runs after a full disk (LogStoreImpl::TryRecover), and it fails for as long as the
// disk keeps failing. Data that only reached a failed file is never trusted: memtables are
// flushed from memory, not read back from the WAL.
//
// Full disks (NoSpace) and data-loss errors are left as they are; reads are not wrapped.
#pragma once

#include <rocksdb/env.h>
#include <rocksdb/file_system.h>

#include <memory>

namespace runnel::storage {

// An Env whose file system is `base`'s, with file-scoped write errors. `base` must outlive it.
std::unique_ptr<rocksdb::Env> NewFileScopedErrorsEnv(rocksdb::Env* base);

}  // namespace runnel::storage
