#include "runnel/storage/inspect.h"

#include <doctest/doctest.h>
#include <rocksdb/db.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include "runnel/storage/groups.h"
#include "runnel/storage/log_store.h"
#include "runnel/testing/raw_store.h"
#include "store_test_util.h"

namespace runnel::storage {
namespace {

using testutil::MakeBatch;
using testutil::Req;

TEST_CASE("DataDirInspector: reads topics, batches and groups of a closed store read-only") {
  testutil::StoreFixture f;
  REQUIRE(f.store->CreateTopic("t", 2, {}).ok());
  REQUIRE(f.store->Append(Req("t", 0, MakeBatch(3, "a"))).ok());
  REQUIRE(f.store->Append(Req("t", 0, MakeBatch(2, "b"))).ok());
  REQUIRE(f.store->Append(Req("t", 1, MakeBatch(1, "c"))).ok());
  GroupConfig c;
  c.topic = "t";
  REQUIRE(f.store->groups().CreateQueueGroup("q", c, StartPosition::Earliest()).ok());
  REQUIRE(f.store->groups().Deliver("q", "w", 2, 1 << 20).ok());

  f.store.reset();

  // While another process has the store open, the inspector refuses and names it.
  {
    int ready[2];
    REQUIRE(::pipe(ready) == 0);
    const pid_t child = ::fork();
    if (child == 0) {
      auto s = LogStore::Open(f.Options());
      const char ok = s.ok() ? '1' : '0';
      (void)!::write(ready[1], &ok, 1);
      ::pause();
      std::_Exit(0);
    }
    char got = 0;
    REQUIRE(::read(ready[0], &got, 1) == 1);
    REQUIRE(got == '1');
    auto busy = DataDirInspector::Open(f.Options().data_dir);
    ::kill(child, SIGKILL);
    ::waitpid(child, nullptr, 0);
    ::close(ready[0]);
    ::close(ready[1]);
    REQUIRE_FALSE(busy.ok());
    CHECK(busy.status().message().find("process " + std::to_string(child)) != std::string::npos);
  }
  auto in = DataDirInspector::Open(f.Options().data_dir);
  REQUIRE_MESSAGE(in.ok(), in.status().ToString());
  const auto& topics = (*in)->Topics();
  REQUIRE(topics.size() == 2);  // t and the group's DLQ topic
  const InspectedTopic* t = nullptr;
  for (const auto& x : topics)
    if (x.name == "t") t = &x;
  REQUIRE(t != nullptr);
  REQUIRE(t->partitions.size() == 2);
  CHECK(t->partitions[0].state.next_offset == 5);
  std::vector<InspectedBatch> batches;
  REQUIRE((*in)
              ->ForEachBatch(t->partitions[0].uid,
                             [&](const InspectedBatch& b) {
                               batches.push_back(b);
                               return true;
                             })
              .ok());
  REQUIRE(batches.size() == 2);
  CHECK(batches[0].base_offset == 0);
  CHECK(batches[0].last_offset == 2);
  CHECK(batches[1].base_offset == 3);
  CHECK(batches[1].records == 2);
  CHECK(batches[0].check.ok());
  CHECK(batches[1].check.ok());
  auto groups = (*in)->Groups();
  REQUIRE(groups.ok());
  REQUIRE(groups->size() == 1);
  CHECK((*groups)[0].name == "q");
  CHECK((*groups)[0].pending == 2);
  const uint32_t uid = t->partitions[0].uid;
  in->reset();

  // A batch damaged on disk is reported, not trusted: flip a byte through RocksDB directly.
  {
    testing::RawStore raw(f.Options().data_dir);
    rocksdb::ColumnFamilyHandle* log = raw.Family(format::LogColumnFamilyName(uid));
    std::string v;
    REQUIRE(raw.db().Get(rocksdb::ReadOptions(), log, format::LogKey(uid, 3), &v).ok());
    v[v.size() - 1] ^= 0x5a;
    REQUIRE(raw.db().Put(rocksdb::WriteOptions(), log, format::LogKey(uid, 3), v).ok());
  }
  auto again = DataDirInspector::Open(f.Options().data_dir);
  REQUIRE(again.ok());
  std::vector<Status> checks;
  REQUIRE((*again)
              ->ForEachBatch(uid,
                             [&](const InspectedBatch& b) {
                               checks.push_back(b.check);
                               return true;
                             })
              .ok());
  REQUIRE(checks.size() == 2);
  CHECK(checks[0].ok());
  CHECK(checks[1].IsCorruption());

  CHECK(DataDirInspector::Open(f.dir.Sub("empty")).status().IsNotFound());
}

}  // namespace
}  // namespace runnel::storage
