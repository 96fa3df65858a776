// Group crash test: SIGKILL a storm of deliver / ack / nack / reject at random moments, reopen,
// and check that every record is in exactly one state, acknowledged acks and rejects stuck, no
// record was acked twice, and the DLQ holds exactly the records moved there, each once.
#include <doctest/doctest.h>

#include <chrono>
#include <cstring>
#include <map>
#include <random>
#include <set>
#include <thread>

#include "runnel/storage/log_store.h"
#include "runnel/testing/kill_child.h"
#include "runnel/testing/temp_dir.h"

namespace runnel::storage {
namespace {

using Key = std::pair<int32_t, int64_t>;

int Rounds() {
  const char* env = std::getenv("RUNNEL_CRASH_ROUNDS");
  return env ? std::max(1, std::atoi(env)) : 15;
}

std::unique_ptr<LogStore> OpenStore(const std::string& dir) {
  LogStoreOptions o;
  o.data_dir = dir;
  o.retention_check_interval_ms = 0;
  auto r = LogStore::Open(o);
  REQUIRE_MESSAGE(r.ok(), r.status().ToString());
  return std::move(r).value();
}

// Checks the invariants; returns the dead-lettered set.
void Verify(LogStore& store, const std::set<Key>& acked, const std::set<Key>& rejected) {
  Groups& g = store.groups();
  std::map<Key, RecordState> states;
  for (int p = 0; p < 4; ++p) {
    const int64_t end = store.ListOffset("jobs", Partition(p), OffsetQuery::Latest())->value();
    for (int64_t off = 0; off < end; ++off) {
      auto s = g.StatusOf("jobs", Partition(p), Offset(off));
      REQUIRE(s.ok());
      REQUIRE(s->size() == 1);  // one group, one state
      states[{p, off}] = (*s)[0].state;
    }
  }
  size_t ack_lost = 0, reject_lost = 0;
  for (const Key& k : acked) ack_lost += states[k] != RecordState::kAcked;
  for (const Key& k : rejected) reject_lost += states[k] != RecordState::kDeadLettered;
  CHECK_MESSAGE(ack_lost == 0, "acknowledged acks lost");
  CHECK_MESSAGE(reject_lost == 0, "acknowledged rejects lost");
  auto dls = g.ListDeadLetters("g", SIZE_MAX);
  REQUIRE(dls.ok());
  std::map<Key, int> in_dlq;
  for (const DeadLetter& d : *dls) ++in_dlq[{d.source_partition.value(), d.source_offset.value()}];
  size_t dup = 0, stray = 0, missing = 0;
  for (const auto& [k, n] : in_dlq) {
    dup += n != 1;
    stray += states[k] != RecordState::kDeadLettered;
  }
  for (const auto& [k, st] : states)
    missing += st == RecordState::kDeadLettered && !in_dlq.count(k);
  CHECK_MESSAGE(dup == 0, "records copied to the DLQ more than once");
  CHECK_MESSAGE(stray == 0, "DLQ records whose source is not dead-lettered");
  CHECK_MESSAGE(missing == 0, "dead-lettered records missing from the DLQ");
}

TEST_CASE(
    "Groups crash: SIGKILL during deliver/ack/nack/reject loses no state and duplicates nothing") {
  testing::TempDir dir;
  const std::string data = dir.Sub("data");
  {
    auto store = OpenStore(data);
    REQUIRE(store->CreateTopic("jobs", 4, {}).ok());
    GroupConfig c;
    c.topic = "jobs";
    c.lock_timeout_ms = 200;
    c.max_deliveries = 3;
    REQUIRE(store->groups().CreateQueueGroup("g", c, StartPosition::Earliest()).ok());
  }
  std::mt19937 rng(
      static_cast<unsigned>(std::chrono::steady_clock::now().time_since_epoch().count()));
  std::set<Key> acked, rejected;
  size_t twice = 0;
  for (int round = 0; round < Rounds(); ++round) {
    CAPTURE(round);
    // Odd rounds kill at a random moment from the start (opening, loading, or working); even
    // rounds only once the child has reported 64 finished records, so that acks and rejects
    // are covered however slowly a loaded (or sanitized) machine starts the child.
    const size_t after_bytes = round % 2 == 0 ? 64 * 16 : 0;
    const auto child = testing::RunAndKill(RUNNEL_GROUPS_CRASH_CHILD, {data, std::to_string(round)},
                                           std::uniform_int_distribution<int>(50, 600)(rng),
                                           after_bytes);
    CHECK_MESSAGE(child.killed_by_sigkill, "child died on its own: " << child.wait_status);
    const std::string& buf = child.output;
    for (size_t i = 0; i + 16 <= buf.size(); i += 16) {
      int32_t kind, p;
      int64_t off;
      std::memcpy(&kind, buf.data() + i, 4);
      std::memcpy(&p, buf.data() + i + 4, 4);
      std::memcpy(&off, buf.data() + i + 8, 8);
      const Key k{p, off};
      twice += acked.count(k) + rejected.count(k);  // finished twice: acked or rejected again
      (kind == 1 ? acked : rejected).insert(k);
    }
    auto store = OpenStore(data);
    Verify(*store, acked, rejected);
  }
  CHECK_MESSAGE(twice == 0, "records finished (acked or rejected) more than once");

  // Drain what is left: every record ends acked or dead-lettered, none lost.
  auto store = OpenStore(data);
  Groups& g = store->groups();
  std::this_thread::sleep_for(std::chrono::milliseconds(250));  // let dead consumers' locks expire
  for (int idle = 0; idle < 3;) {
    auto d = g.Deliver("g", "drain", 500, 1 << 24);
    REQUIRE(d.ok());
    if (d->empty()) {
      ++idle;
      std::this_thread::sleep_for(std::chrono::milliseconds(250));
      continue;
    }
    idle = 0;
    std::vector<RecordRef> refs;
    for (const auto& r : *d) refs.push_back({r.partition, r.offset});
    REQUIRE(g.Ack("g", "drain", refs).ok());
  }
  size_t total = 0, finished = 0;
  for (int p = 0; p < 4; ++p) {
    const int64_t end = store->ListOffset("jobs", Partition(p), OffsetQuery::Latest())->value();
    for (int64_t off = 0; off < end; ++off) {
      auto s = g.StatusOf("jobs", Partition(p), Offset(off));
      ++total;
      finished +=
          (*s)[0].state == RecordState::kAcked || (*s)[0].state == RecordState::kDeadLettered;
    }
  }
  MESSAGE("rounds: " << Rounds() << ", records: " << total << ", acks reported: " << acked.size()
                     << ", rejects reported: " << rejected.size());
  CHECK(total > 0);
  CHECK(finished == total);
  CHECK(acked.size() > 0);
  CHECK(rejected.size() > 0);
  Verify(*store, acked, rejected);
}

}  // namespace
}  // namespace runnel::storage
