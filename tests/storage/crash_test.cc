// Crash test: a child process appends with durable acks and reports every acknowledged record;
// the parent SIGKILLs it at random moments, reopens the store and checks that every acknowledged
// record is present exactly once and intact, offsets are contiguous and no torn batch is visible.
#include <doctest/doctest.h>

#include <chrono>
#include <cstring>
#include <map>
#include <random>
#include <set>

#include "runnel/common/crc32c.h"
#include "runnel/storage/log_store.h"
#include "runnel/testing/kill_child.h"
#include "runnel/testing/temp_dir.h"
#include "store_test_util.h"

namespace runnel::storage {
namespace {

int Rounds() {
  const char* env = std::getenv("RUNNEL_CRASH_ROUNDS");
  return env ? std::max(1, std::atoi(env)) : 25;
}

TEST_CASE("Crash: SIGKILL at random moments never loses or duplicates an acknowledged record") {
  testing::TempDir dir;
  const std::string data = dir.Sub("data");
  {
    LogStoreOptions o;
    o.data_dir = data;
    auto store = std::move(LogStore::Open(o)).value();
    REQUIRE(store->CreateTopic("crash", 4, {}).ok());
  }
  std::mt19937 rng(
      static_cast<unsigned>(std::chrono::steady_clock::now().time_since_epoch().count()));
  std::map<std::pair<int32_t, int64_t>, uint32_t> acked;  // across all rounds
  const int rounds = Rounds();
  size_t rounds_with_acks = 0;
  for (int round = 0; round < rounds; ++round) {
    CAPTURE(round);
    // Killed at a random moment after its first acknowledgement of this round (16 bytes), so
    // every round cuts a writer in the middle of its appends, whatever the machine's load.
    const auto child = testing::RunAndKill(RUNNEL_CRASH_CHILD, {data, std::to_string(round)},
                                           std::uniform_int_distribution<int>(0, 680)(rng), 16);
    CHECK_MESSAGE(child.killed_by_sigkill, "child exited on its own (status "
                                               << child.wait_status << ") instead of being killed");
    const std::string& buf = child.output;
    const size_t complete = buf.size() / 16 * 16;  // a report cut by the kill was never acked
    size_t new_acks = 0;
    for (size_t i = 0; i < complete; i += 16) {
      int32_t p;
      int64_t off;
      uint32_t crc;
      std::memcpy(&p, buf.data() + i, 4);
      std::memcpy(&off, buf.data() + i + 4, 8);
      std::memcpy(&crc, buf.data() + i + 12, 4);
      auto [it, fresh] = acked.emplace(std::make_pair(p, off), crc);
      CHECK_MESSAGE(fresh, "offset " << off << " of partition " << p << " acknowledged twice");
      new_acks += fresh ? 1 : 0;
    }
    CHECK_MESSAGE(new_acks > 0, "the child acknowledged nothing new before it was killed");
    if (new_acks > 0) ++rounds_with_acks;

    // Reopen and verify everything acknowledged so far.
    LogStoreOptions o;
    o.data_dir = data;
    o.retention_check_interval_ms = 0;
    auto opened = LogStore::Open(o);
    REQUIRE_MESSAGE(opened.ok(), opened.status().ToString());
    auto store = std::move(opened).value();
    std::set<std::string> values;
    size_t stored = 0, gaps = 0, duplicates = 0, changed = 0, missing = 0;
    for (int p = 0; p < 4; ++p) {
      const auto all = testutil::ReadAll(*store, "crash", p);  // validates every batch's CRC
      for (size_t i = 0; i < all.size(); ++i) {
        gaps += all[i].first != static_cast<int64_t>(i);
        duplicates += !values.insert(all[i].second).second;
        auto it = acked.find({p, all[i].first});
        changed += it != acked.end() && it->second != crc32c::Value(all[i].second);
      }
      stored += all.size();
      CHECK(store->ListOffset("crash", Partition(p), OffsetQuery::Latest())->value() ==
            static_cast<int64_t>(all.size()));
    }
    for (const auto& [key, crc] : acked) {
      missing += key.second >=
                 store->ListOffset("crash", Partition(key.first), OffsetQuery::Latest())->value();
    }
    CHECK_MESSAGE(gaps == 0, "offsets are not contiguous");
    CHECK_MESSAGE(duplicates == 0, "records stored twice");
    CHECK_MESSAGE(changed == 0, "acknowledged records whose content changed");
    CHECK_MESSAGE(missing == 0, "acknowledged records missing");
    CHECK(stored >= acked.size());
  }
  MESSAGE("crash rounds: " << rounds << ", rounds with new acks: " << rounds_with_acks
                           << ", acknowledged records verified: " << acked.size());
}

}  // namespace
}  // namespace runnel::storage
