// WAL damage at open (refused, or dropped on request), torn WAL tails, and Health() after a
// failed write.
#include <doctest/doctest.h>

#include <rocksdb/env.h>
#include <rocksdb/file_system.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <thread>

#include "runnel/storage/log_store.h"
#include "store_test_util.h"

namespace runnel::storage {
namespace {

using testutil::MakeBatch;
using testutil::Req;

constexpr int kBatches = 200;
constexpr int kRecordsPerBatch = 5;

// A child process writes kBatches durable batches to topic "t" of the fixture's store and is
// SIGKILLed once all are acknowledged: the records are in the synced WAL only, no SST holds them.
void WriteAndKill(testutil::StoreFixture& f) {
  f.store.reset();
  int ready[2];
  REQUIRE(::pipe(ready) == 0);
  const pid_t child = ::fork();
  if (child == 0) {
    auto s = LogStore::Open(f.Options());
    bool ok = s.ok() && (*s)->CreateTopic("t", 1, {}).ok();
    for (int i = 0; ok && i < kBatches; ++i) {
      ok = (*s)->Append(Req("t", 0, MakeBatch(kRecordsPerBatch, "b" + std::to_string(i) + "-")))
               .ok();
    }
    const char c = ok ? '1' : '0';
    (void)!::write(ready[1], &c, 1);
    ::pause();
    std::_Exit(0);
  }
  char got = 0;
  const bool read = ::read(ready[0], &got, 1) == 1;
  ::kill(child, SIGKILL);
  int status = 0;
  ::waitpid(child, &status, 0);
  ::close(ready[0]);
  ::close(ready[1]);
  REQUIRE(read);
  REQUIRE(got == '1');
  REQUIRE(WIFSIGNALED(status));
}

// The newest WAL file of the store (the one the killed child wrote).
std::string NewestWal(const std::string& data_dir) {
  std::vector<std::string> wals;
  for (const auto& e : std::filesystem::directory_iterator(data_dir + "/store")) {
    if (e.path().extension() == ".log") wals.push_back(e.path().string());
  }
  REQUIRE(!wals.empty());
  std::sort(wals.begin(), wals.end());
  return wals.back();
}

void FlipByte(const std::string& path, uint64_t at) {
  std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
  REQUIRE(f.good());
  f.seekg(static_cast<std::streamoff>(at));
  char c = 0;
  f.read(&c, 1);
  c = static_cast<char>(c ^ 0x40);
  f.seekp(static_cast<std::streamoff>(at));
  f.write(&c, 1);
  REQUIRE(f.good());
}

// Every value of t/0 is "b<batch>-<i>" in order from offset 0, without gaps.
void CheckPrefix(const std::vector<std::pair<int64_t, std::string>>& records) {
  for (size_t n = 0; n < records.size(); ++n) {
    REQUIRE(records[n].first == static_cast<int64_t>(n));
    CHECK(records[n].second == "b" + std::to_string(n / kRecordsPerBatch) + "-" +
                                   std::to_string(n % kRecordsPerBatch));
  }
}

TEST_CASE("LogStore: a WAL damaged in its middle refuses to open, naming the file and byte") {
  testutil::StoreFixture f;
  WriteAndKill(f);
  const std::string wal = NewestWal(f.Options().data_dir);
  const uint64_t size = std::filesystem::file_size(wal);
  REQUIRE(size > 20'000);  // 200 batches, all in this WAL
  FlipByte(wal, size / 2);

  auto refused = LogStore::Open(f.Options());
  REQUIRE_FALSE(refused.ok());
  INFO(refused.status().ToString());
  CHECK(refused.status().IsCorruption());
  const std::string& m = refused.status().message();
  const std::string name = std::filesystem::path(wal).filename().string();
  CHECK(m.find("store WAL " + name + " is corrupt at byte ") != std::string::npos);
  CHECK(m.find("checksum mismatch") != std::string::npos);
  CHECK(m.find("records acknowledged after that point would be lost") != std::string::npos);
  CHECK(m.find("runneld --recover-truncate") != std::string::npos);
  // Refusing changed nothing: the same answer again.
  CHECK(LogStore::Open(f.Options()).status().message() == m);

  SUBCASE("recover_truncate opens with the records before the damage and nothing after it") {
    LogStoreOptions o = f.Options();
    o.recover_truncate = true;
    auto opened = LogStore::Open(o);
    REQUIRE_MESSAGE(opened.ok(), opened.status().ToString());
    const auto records = testutil::ReadAll(**opened, "t", 0);
    MESSAGE("kept " << records.size() << " of " << kBatches * kRecordsPerBatch << " records");
    CHECK(records.size() > 0);
    CHECK(records.size() < static_cast<size_t>(kBatches * kRecordsPerBatch));
    CHECK(records.size() % kRecordsPerBatch == 0);  // whole batches only
    CheckPrefix(records);
    // The store is consistent again: it appends after what it kept and reopens normally.
    REQUIRE((*opened)->Append(Req("t", 0, MakeBatch(1, "after"))).ok());
    opened->reset();
    auto reopened = LogStore::Open(f.Options());
    REQUIRE_MESSAGE(reopened.ok(), reopened.status().ToString());
    const auto again = testutil::ReadAll(**reopened, "t", 0);
    REQUIRE(again.size() == records.size() + 1);
    CHECK(again.back().second == "after0");
  }
}

TEST_CASE("LogStore: a torn WAL tail (a crash in the middle of a write) opens with all before it") {
  testutil::StoreFixture f;
  WriteAndKill(f);
  const std::string wal = NewestWal(f.Options().data_dir);
  std::filesystem::resize_file(wal, std::filesystem::file_size(wal) - 3);

  auto opened = LogStore::Open(f.Options());
  REQUIRE_MESSAGE(opened.ok(), opened.status().ToString());
  const auto records = testutil::ReadAll(**opened, "t", 0);
  // Only the last write, the one cut short, is gone.
  CHECK(records.size() == static_cast<size_t>((kBatches - 1) * kRecordsPerBatch));
  CheckPrefix(records);
}

TEST_CASE("LogStore: a new store opens without a damaged-WAL check or an error") {
  testutil::StoreFixture f;  // opened on an empty directory
  CHECK(f.store->Health().ok());
  f.Reopen();
  CHECK(f.store->Health().ok());
}

// A file system whose WAL writes and syncs fail with `error` while it is set: a full disk, or a
// disk answering EIO.
class FailingWalFs final : public rocksdb::FileSystemWrapper {
 public:
  enum Error { kNone, kNoSpace, kEio };
  explicit FailingWalFs(std::shared_ptr<rocksdb::FileSystem> base)
      : rocksdb::FileSystemWrapper(std::move(base)) {}
  const char* Name() const override { return "FailingWalFs"; }
  std::atomic<Error> error{kNone};

  rocksdb::IOStatus NewWritableFile(const std::string& name, const rocksdb::FileOptions& options,
                                    std::unique_ptr<rocksdb::FSWritableFile>* result,
                                    rocksdb::IODebugContext* dbg) override {
    rocksdb::IOStatus s = target()->NewWritableFile(name, options, result, dbg);
    if (s.ok() && IsWal(name)) *result = std::make_unique<File>(std::move(*result), &error);
    return s;
  }
  rocksdb::IOStatus ReopenWritableFile(const std::string& name, const rocksdb::FileOptions& options,
                                       std::unique_ptr<rocksdb::FSWritableFile>* result,
                                       rocksdb::IODebugContext* dbg) override {
    rocksdb::IOStatus s = target()->ReopenWritableFile(name, options, result, dbg);
    if (s.ok() && IsWal(name)) *result = std::make_unique<File>(std::move(*result), &error);
    return s;
  }

 private:
  static bool IsWal(const std::string& name) {
    return name.size() > 4 && name.compare(name.size() - 4, 4, ".log") == 0;
  }
  class File final : public rocksdb::FSWritableFileOwnerWrapper {
   public:
    File(std::unique_ptr<rocksdb::FSWritableFile> f, const std::atomic<Error>* error)
        : rocksdb::FSWritableFileOwnerWrapper(std::move(f)), error_(error) {}
    rocksdb::IOStatus Append(const rocksdb::Slice& data, const rocksdb::IOOptions& o,
                             rocksdb::IODebugContext* dbg) override {
      if (auto s = Injected(); !s.ok()) return s;
      return FSWritableFileOwnerWrapper::Append(data, o, dbg);
    }
    rocksdb::IOStatus Append(const rocksdb::Slice& data, const rocksdb::IOOptions& o,
                             const rocksdb::DataVerificationInfo& v,
                             rocksdb::IODebugContext* dbg) override {
      if (auto s = Injected(); !s.ok()) return s;
      return FSWritableFileOwnerWrapper::Append(data, o, v, dbg);
    }
    rocksdb::IOStatus Sync(const rocksdb::IOOptions& o, rocksdb::IODebugContext* dbg) override {
      if (auto s = Injected(); !s.ok()) return s;
      return FSWritableFileOwnerWrapper::Sync(o, dbg);
    }
    rocksdb::IOStatus Fsync(const rocksdb::IOOptions& o, rocksdb::IODebugContext* dbg) override {
      if (auto s = Injected(); !s.ok()) return s;
      return FSWritableFileOwnerWrapper::Fsync(o, dbg);
    }

   private:
    rocksdb::IOStatus Injected() const {
      switch (error_->load()) {
        case kNoSpace: return rocksdb::IOStatus::NoSpace("injected ENOSPC");
        case kEio: return rocksdb::IOStatus::IOError("injected EIO");
        case kNone: break;
      }
      return rocksdb::IOStatus::OK();
    }
    const std::atomic<Error>* error_;
  };
};

TEST_CASE("LogStore: a failed write (full disk, EIO) degrades the store until it recovers by itself") {
  auto fs = std::make_shared<FailingWalFs>(rocksdb::FileSystem::Default());
  std::unique_ptr<rocksdb::Env> env = rocksdb::NewCompositeEnv(fs);
  testutil::StoreFixture f;
  f.store.reset();
  LogStoreOptions o = f.Options();
  o.env = env.get();
  auto opened = LogStore::Open(o);
  REQUIRE_MESSAGE(opened.ok(), opened.status().ToString());
  LogStore& store = **opened;
  REQUIRE(store.CreateTopic("t", 1, {}).ok());
  REQUIRE(store.Append(Req("t", 0, MakeBatch(2, "ok"))).ok());
  CHECK(store.Health().ok());

  // A full disk, then EIO: each degrades the store until the disk works again; then the
  // committer recovers on a later write (at most once a second) and the store is healthy again.
  struct Fault {
    FailingWalFs::Error error;
    StatusCode code;
    const char* text;
  };
  for (const Fault& fault : {Fault{FailingWalFs::kNoSpace, StatusCode::kNoSpace, "injected ENOSPC"},
                             Fault{FailingWalFs::kEio, StatusCode::kIOError, "injected EIO"}}) {
    CAPTURE(fault.text);
    fs->error = fault.error;
    REQUIRE_FALSE(store.Append(Req("t", 0, MakeBatch(2, "failed"))).ok());
    Status health = store.Health();
    CHECK(health.code() == fault.code);
    CHECK(health.message().find(fault.text) != std::string::npos);
    fs->error = FailingWalFs::kNone;
    bool resumed = false;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    while (!resumed && std::chrono::steady_clock::now() < deadline) {
      resumed = store.Append(Req("t", 0, MakeBatch(1, "again"))).ok();
      if (!resumed) std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    REQUIRE(resumed);
    CHECK(store.Health().ok());
  }
  opened->reset();
}

}  // namespace
}  // namespace runnel::storage
