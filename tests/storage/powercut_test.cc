// Power-cut tests: the store runs on PowerCutFs under a mixed load (idempotent durable produce,
// stream-group commits, queue-group deliver/ack/nack/extend/reject with a DLQ and redrive,
// retention, topic create/delete, producer-id reservations). At a random moment the power goes
// out: everything not fsynced (data and directory entries) is dropped, the store is reopened and
// everything it confirmed as durable must be there. Also: EIO on WAL writes and syncs.
//   RUNNEL_POWERCUT_ROUNDS (default 200): cuts in the loop; RUNNEL_POWERCUT_SEED: the seed.
// No check depends on timing: the cut lands wherever it lands, and only what the store confirmed
// before the power went out is required to survive.
#include <doctest/doctest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "runnel/storage/log_store.h"
#include "runnel/testing/power_cut_fs.h"
#include "runnel/testing/temp_dir.h"
#include "store_test_util.h"

namespace runnel::storage {
namespace {

using testing::PowerCutFs;
using TopicPart = std::pair<std::string, int32_t>;
using Key = std::pair<int32_t, int64_t>;  // (partition, offset) of the queue topic

constexpr int32_t kPartitions = 2;
const std::vector<std::string> kProduceTopics = {"t0", "t1", "t2"};  // t2 has byte retention
constexpr const char* kJobs = "jobs";                                // the queue group's topic
constexpr const char* kDyn = "dyn";                                  // created and deleted
constexpr const char* kQueue = "q";
constexpr const char* kStream = "s";  // stream group on t0

uint64_t Seed() {
  const char* env = std::getenv("RUNNEL_POWERCUT_SEED");
  const uint64_t seed = env ? std::strtoull(env, nullptr, 10) : std::random_device{}();
  std::printf("power-cut seed: %llu (RUNNEL_POWERCUT_SEED to repeat)\n",
              static_cast<unsigned long long>(seed));
  return seed;
}

// RUNNEL_POWERCUT_ROUNDS, else the crash suites' RUNNEL_CRASH_ROUNDS (tools/sanitize.sh sets 25
// under ASan), else 200.
int Rounds() {
  const char* env = std::getenv("RUNNEL_POWERCUT_ROUNDS");
  if (!env) env = std::getenv("RUNNEL_CRASH_ROUNDS");
  return env ? std::max(1, std::atoi(env)) : 200;
}

// The simulated disk and a store opened on it.
struct PowerCutStore {
  testing::TempDir dir;
  std::shared_ptr<PowerCutFs> fs = std::make_shared<PowerCutFs>(dir.Sub("trash"));
  std::unique_ptr<rocksdb::Env> env = PowerCutFs::NewEnv(fs);
  std::unique_ptr<LogStore> store;

  void Open() {
    LogStoreOptions o;
    o.data_dir = dir.Sub("data");
    o.env = env.get();
    o.retention_check_interval_ms = 0;  // the load runs retention itself
    // Small memtables: flushes, WAL switches and obsolete-file deletes happen between cuts.
    o.partition_write_buffer_bytes = 128 << 10;
    o.total_write_buffer_bytes = 8 << 20;
    o.block_cache_bytes = 4 << 20;
    auto r = LogStore::Open(o);
    REQUIRE_MESSAGE(r.ok(), r.status().ToString());
    store = std::move(r).value();
  }
  // The power cut: nothing written from now on survives; the store shuts down on a frozen disk
  // and everything not durable is dropped.
  testing::CutStats Cut(std::vector<std::thread>* load, std::atomic<bool>* stop) {
    fs->Freeze();
    stop->store(true);
    for (auto& t : *load) t.join();
    load->clear();
    store.reset();
    return fs->Cut();
  }
};

// What the store confirmed, across all cuts. Guarded by mu.
struct Ledger {
  std::mutex mu;
  std::map<TopicPart, std::map<int64_t, std::string>> records;  // offset -> value
  std::map<int32_t, int64_t> commits;                           // t0 partition -> committed
  std::map<Key, std::string> rejects;                           // jobs record -> value
  std::map<TopicPart, int64_t> log_start;                       // after confirmed retention
  std::set<int64_t> producer_ids;                               // confirmed reservations
  enum class Dyn { kAbsent, kPresent, kUnknown } dyn = Dyn::kAbsent;
  // The last settle confirmed for each queue record this round, and the delivery count of every
  // confirmed delivery.
  enum class Op { kAck, kNack, kExtend };
  struct LastOp {
    Op op;
    int32_t deliveries = 0;  // the record's delivery count when it was settled
    int64_t until = 0;       // kExtend: the lock expiry it returned
  };
  std::map<Key, LastOp> queue_ops;
  std::map<Key, int32_t> delivered;
};

struct Figures {
  uint64_t cuts = 0, records_checked = 0, commits_checked = 0, rejects_checked = 0;
  uint64_t settles_checked = 0, deliveries_checked = 0;
  uint64_t bytes_dropped = 0, files_removed = 0, files_restored = 0;
  uint64_t redrives = 0, retention_moves = 0, dyn_changes = 0;
};

// Timestamps are now: time-based retention (7 days by default) must not trim what is checked.
std::string MakeValues(RecordBatchBuilder& b, const std::string& prefix, int n,
                       std::vector<std::string>* values) {
  const int64_t now = Clock::System()->NowMs();
  for (int i = 0; i < n; ++i) {
    values->push_back(prefix + "." + std::to_string(i) +
                      std::string(static_cast<size_t>(i % 3) * 40, 'x'));
    b.Add(now, std::nullopt, values->back());
  }
  return b.Build();
}

// Idempotent durable producer: appends to the produce topics and the queue topic until `stop`,
// retrying a failed batch with the same sequence (its retry is answered as a duplicate when the
// failed round's records made it after all). Returns false on an unexpected error.
void Produce(LogStore& store, Ledger& ledger, PowerCutFs& fs, std::atomic<bool>& stop,
             std::atomic<uint64_t>& confirmed, std::atomic<uint64_t>& failures,
             const std::string& name, uint64_t seed, bool tolerate_io_errors, int pace_us) {
  std::mt19937_64 rng(seed);
  auto pid = store.ReserveProducerIds(1);
  if (!pid.ok()) {
    if (!fs.frozen()) FAIL_CHECK("ReserveProducerIds: " << pid.status().ToString());
    return;
  }
  {
    std::lock_guard lk(ledger.mu);
    if (!fs.frozen()) {
      CHECK_MESSAGE(ledger.producer_ids.insert(*pid).second,
                    "producer id " << *pid << " handed out twice");
    }
  }
  std::map<TopicPart, int32_t> sequence;
  std::vector<std::string> targets = kProduceTopics;
  targets.push_back(kJobs);
  for (uint64_t n = 0; !stop.load(); ++n) {
    const TopicPart tp{targets[rng() % targets.size()], static_cast<int32_t>(rng() % kPartitions)};
    int32_t& seq = sequence[tp];
    const int count = 1 + static_cast<int>(rng() % 6);
    RecordBatchBuilder b({Compression::kNone, *pid, 0, seq});
    std::vector<std::string> values;
    const std::string batch = MakeValues(b, name + "." + std::to_string(n), count, &values);
    while (!stop.load()) {
      auto r =
          store.Append(AppendRequest{tp.first, Partition(tp.second), batch, AckMode::kDurable});
      if (r.ok()) {
        std::lock_guard lk(ledger.mu);
        if (fs.frozen()) return;  // confirmed after the cut began: not counted
        auto& part = ledger.records[tp];
        for (int i = 0; i < count; ++i)
          part[r->OffsetOf(i).value()] = values[static_cast<size_t>(i)];
        confirmed.fetch_add(1);
        break;
      }
      if (fs.frozen()) return;
      failures.fetch_add(1);
      if (!tolerate_io_errors || r.status().code() != StatusCode::kIOError) {
        FAIL_CHECK("append to " << tp.first << "/" << tp.second << ": " << r.status().ToString());
        return;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    seq += count;
    // Paced, so that the data checked after every cut grows slowly.
    std::this_thread::sleep_for(std::chrono::microseconds(pace_us));
  }
}

// Commits t0's high watermark for the partitions it owns, as a stream-group member.
void CommitLoop(LogStore& store, Ledger& ledger, PowerCutFs& fs, std::atomic<bool>& stop,
                bool tolerate_io_errors = false) {
  Groups& g = store.groups();
  Result<Membership> m = Status::NotFound("not joined");
  std::map<int32_t, int64_t> last;
  while (!stop.load()) {
    if (!m.ok()) {
      m = g.Join(kStream, "", {"t0"}, 60'000);
      if (!m.ok() && tolerate_io_errors && m.status().code() == StatusCode::kIOError) {
        std::this_thread::sleep_for(std::chrono::milliseconds(1));  // degraded; try again
        continue;
      }
      if (!m.ok()) {
        if (!fs.frozen()) FAIL_CHECK("join: " << m.status().ToString());
        return;
      }
    }
    for (const TopicPartition& tp : m->assignment) {
      const int64_t hwm = store.ListOffset("t0", tp.partition, OffsetQuery::Latest())->value();
      if (hwm <= last[tp.partition.value()]) continue;
      Status s = g.CommitOffsets(kStream, m->member_id, m->generation, {{tp, Offset(hwm), "pc"}});
      if (s.ok()) {
        std::lock_guard lk(ledger.mu);
        if (fs.frozen()) return;
        last[tp.partition.value()] = hwm;
        int64_t& c = ledger.commits[tp.partition.value()];
        c = std::max(c, hwm);
      } else if (s.code() == StatusCode::kFenced || s.code() == StatusCode::kNotFound) {
        m = Status::NotFound("rejoin");
        break;
      } else if (tolerate_io_errors && s.code() == StatusCode::kIOError) {
        break;  // degraded; try again
      } else {
        if (!fs.frozen()) FAIL_CHECK("commit: " << s.ToString());
        return;
      }
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
}

// One queue consumer: deliver, then ack / nack / extend / reject / leave locked; now and then an
// unfiltered redrive of the DLQ.
void QueueLoop(LogStore& store, Ledger& ledger, PowerCutFs& fs, std::atomic<bool>& stop,
               const std::string& consumer, uint64_t seed, Figures& figures) {
  Groups& g = store.groups();
  std::mt19937_64 rng(seed);
  auto fail = [&](const char* what, const Status& s) {
    if (!fs.frozen()) FAIL_CHECK(what << ": " << s.ToString());
  };
  for (uint64_t n = 0; !stop.load(); ++n) {
    if (n % 40 == 39) {
      auto r = g.Redrive(kQueue, RedriveSpec{});
      if (!r.ok()) return fail("redrive", r.status());
      std::lock_guard lk(ledger.mu);
      if (fs.frozen()) return;
      ++figures.redrives;
    }
    auto d = g.Deliver(kQueue, consumer, 1 + static_cast<int32_t>(rng() % 16), 1 << 20);
    if (!d.ok()) return fail("deliver", d.status());
    if (d->empty()) {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
      continue;
    }
    std::vector<RecordRef> ack, nack, extend, reject;
    std::map<Key, std::string> values;
    std::map<Key, int32_t> counts;
    {
      std::lock_guard lk(ledger.mu);
      for (const DeliveredRecord& r : *d) {
        const Key k{r.partition.value(), r.offset.value()};
        ledger.queue_ops.erase(k);  // delivered again: whatever was confirmed before is moot
        if (!fs.frozen()) ledger.delivered[k] = r.deliveries;
        values[k] = r.value.value_or("");
        counts[k] = r.deliveries;
        const unsigned roll = static_cast<unsigned>(rng() % 20);
        auto& to = roll < 11   ? ack
                   : roll < 14 ? nack
                   : roll < 16 ? extend
                   : roll < 18 ? reject
                               : ack;
        if (roll == 19) continue;  // left locked: its lock expires, it is delivered again
        to.push_back({r.partition, r.offset});
      }
    }
    if (!extend.empty()) {
      auto until = g.Extend(kQueue, consumer, extend);
      if (!until.ok()) return fail("extend", until.status());
      std::lock_guard lk(ledger.mu);
      if (fs.frozen()) return;
      for (const RecordRef& r : extend) {
        const Key k{r.partition.value(), r.offset.value()};
        ledger.queue_ops[k] = {Ledger::Op::kExtend, counts[k], *until};
      }
    }
    if (!ack.empty()) {
      Status s = g.Ack(kQueue, consumer, ack);
      if (!s.ok()) return fail("ack", s);
      std::lock_guard lk(ledger.mu);
      if (fs.frozen()) return;
      for (const RecordRef& r : ack) {
        const Key k{r.partition.value(), r.offset.value()};
        ledger.queue_ops[k] = {Ledger::Op::kAck, counts[k], 0};
      }
    }
    if (!nack.empty()) {
      Status s = g.Nack(kQueue, consumer, nack, static_cast<int64_t>(rng() % 30));
      if (!s.ok()) return fail("nack", s);
      std::lock_guard lk(ledger.mu);
      if (fs.frozen()) return;
      for (const RecordRef& r : nack) {
        const Key k{r.partition.value(), r.offset.value()};
        ledger.queue_ops[k] = {Ledger::Op::kNack, counts[k], 0};
      }
    }
    if (!reject.empty()) {
      Status s = g.Reject(kQueue, consumer, reject, "power-cut");
      if (!s.ok()) return fail("reject", s);
      std::lock_guard lk(ledger.mu);
      if (fs.frozen()) return;
      for (const RecordRef& r : reject) {
        const Key k{r.partition.value(), r.offset.value()};
        ledger.rejects[k] = values[k];
        ledger.queue_ops.erase(k);
      }
    }
  }
}

// Retention on t2, and a topic created, written and deleted again.
void AdminLoop(LogStore& store, Ledger& ledger, PowerCutFs& fs, std::atomic<bool>& stop,
               Figures& figures) {
  for (uint64_t n = 0; !stop.load(); ++n) {
    Status s = store.EnforceRetention();
    if (!s.ok()) {
      if (!fs.frozen()) FAIL_CHECK("retention: " << s.ToString());
      return;
    }
    {
      std::lock_guard lk(ledger.mu);
      if (fs.frozen()) return;
      for (int32_t p = 0; p < kPartitions; ++p) {
        const int64_t start =
            store.ListOffset("t2", Partition(p), OffsetQuery::Earliest())->value();
        int64_t& floor = ledger.log_start[{"t2", p}];
        if (start > floor) ++figures.retention_moves;
        floor = std::max(floor, start);
      }
    }
    if (n % 8 == 3) {
      bool present;
      {
        std::lock_guard lk(ledger.mu);
        present = !store.DescribeTopic(kDyn).status().IsNotFound();
      }
      if (!present) {
        {
          std::lock_guard lk(ledger.mu);
          ledger.dyn = Ledger::Dyn::kUnknown;  // until confirmed: a cut may keep it or not
        }
        Status c = store.CreateTopic(kDyn, 1, {});
        std::lock_guard lk(ledger.mu);
        if (fs.frozen()) return;
        if (!c.ok()) {
          FAIL_CHECK("create topic: " << c.ToString());
          return;
        }
        ledger.dyn = Ledger::Dyn::kPresent;
        ++figures.dyn_changes;
      } else {
        {
          std::lock_guard lk(ledger.mu);
          ledger.dyn = Ledger::Dyn::kUnknown;
        }
        Status d = store.DeleteTopic(kDyn);
        std::lock_guard lk(ledger.mu);
        if (fs.frozen()) return;
        if (!d.ok()) {
          FAIL_CHECK("delete topic: " << d.ToString());
          return;
        }
        ledger.dyn = Ledger::Dyn::kAbsent;
        ledger.records.erase({kDyn, 0});
        ++figures.dyn_changes;
      }
    } else if (n % 8 == 5) {
      RecordBatchBuilder b;
      std::vector<std::string> values;
      const std::string batch = MakeValues(b, "dyn." + std::to_string(n), 2, &values);
      auto r = store.Append(AppendRequest{kDyn, Partition(0), batch, AckMode::kDurable});
      std::lock_guard lk(ledger.mu);
      if (fs.frozen()) return;
      if (r.ok()) {
        for (int i = 0; i < 2; ++i)
          ledger.records[{kDyn, 0}][r->OffsetOf(i).value()] = values[static_cast<size_t>(i)];
      } else {
        CHECK_MESSAGE(r.status().IsNotFound(), r.status().ToString());  // deleted meanwhile
      }
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(3));
  }
}

// Reads every partition back and checks it against the ledger (after a cut and a reopen).
void Verify(LogStore& store, Ledger& ledger, Figures& figures, bool queue_checks) {
  std::lock_guard lk(ledger.mu);
  // The dynamic topic: a confirmed create or delete stuck.
  const bool dyn_present = !store.DescribeTopic(kDyn).status().IsNotFound();
  if (ledger.dyn == Ledger::Dyn::kPresent)
    CHECK_MESSAGE(dyn_present, "a confirmed topic create was lost");
  if (ledger.dyn == Ledger::Dyn::kAbsent)
    CHECK_MESSAGE(!dyn_present, "a confirmed topic delete was lost");
  ledger.dyn = dyn_present ? Ledger::Dyn::kPresent : Ledger::Dyn::kAbsent;
  if (!dyn_present) ledger.records.erase({kDyn, 0});

  for (const auto& entry : ledger.records) {
    const TopicPart& tp = entry.first;
    CAPTURE(tp.first);
    CAPTURE(tp.second);
    const int64_t start =
        store.ListOffset(tp.first, Partition(tp.second), OffsetQuery::Earliest())->value();
    const int64_t end =
        store.ListOffset(tp.first, Partition(tp.second), OffsetQuery::Latest())->value();
    const auto all = testutil::ReadAll(store, tp.first, tp.second);  // validates every batch
    std::map<int64_t, const std::string*> stored;
    std::set<std::string_view> seen;
    size_t gaps = 0, twice = 0, lost = 0, changed = 0;
    for (size_t i = 0; i < all.size(); ++i) {
      gaps += all[i].first != start + static_cast<int64_t>(i);
      stored[all[i].first] = &all[i].second;
      // Redrive re-appends dead letters to the queue topic: copies there are expected.
      if (tp.first != kJobs) twice += !seen.insert(all[i].second).second;
    }
    CHECK_MESSAGE(end == start + static_cast<int64_t>(all.size()),
                  "high watermark " << end << " but " << all.size() << " records from " << start);
    auto floor = ledger.log_start.find(tp);
    if (floor != ledger.log_start.end()) {
      CHECK_MESSAGE(start >= floor->second,
                    "log start went back from " << floor->second << " to " << start);
      floor->second = std::max(floor->second, start);
    }
    for (const auto& rec : entry.second) {
      if (rec.first < start) {
        lost += tp.first != "t2";  // only t2 has retention
        continue;
      }
      auto it = stored.find(rec.first);
      if (it == stored.end()) {
        ++lost;
      } else {
        changed += *it->second != rec.second;
        ++figures.records_checked;
      }
    }
    CHECK_MESSAGE(gaps == 0, "offsets are not contiguous");
    CHECK_MESSAGE(twice == 0, "records stored twice");
    CHECK_MESSAGE(lost == 0, lost << " acknowledged records lost (log " << start << ".." << end
                                  << ", ledger " << entry.second.begin()->first << ".."
                                  << entry.second.rbegin()->first << ")");
    CHECK_MESSAGE(changed == 0, changed << " acknowledged records changed or moved");
  }

  // Stream commits: every confirmed one stuck, never past the log, never backwards.
  std::vector<TopicPartition> tps;
  for (int32_t p = 0; p < kPartitions; ++p) tps.push_back({"t0", Partition(p)});
  if (store.groups().DescribeGroup(kStream).ok()) {
    auto committed = store.groups().FetchOffsets(kStream, tps);
    REQUIRE_MESSAGE(committed.ok(), committed.status().ToString());
    for (int32_t p = 0; p < kPartitions; ++p) {
      const int64_t c = (*committed)[static_cast<size_t>(p)].offset.value();
      const int64_t end = store.ListOffset("t0", Partition(p), OffsetQuery::Latest())->value();
      auto known = ledger.commits.find(p);
      const int64_t confirmed = known == ledger.commits.end() ? -1 : known->second;
      CHECK_MESSAGE(c >= confirmed, "t0/" << p << ": committed offset " << c
                                          << " below the confirmed " << confirmed);
      CHECK_MESSAGE(c <= end,
                    "t0/" << p << ": committed offset " << c << " past the log end " << end);
      if (c >= 0) ledger.commits[p] = std::max(confirmed, c);  // never backwards from here on
      ++figures.commits_checked;
    }
  } else {
    CHECK_MESSAGE(ledger.commits.empty(), "a stream group with confirmed commits is gone");
  }

  if (!queue_checks) return;
  // Rejects: dead-lettered, and their copy in the DLQ once, or redriven back to the topic.
  Groups& g = store.groups();
  auto dls = g.ListDeadLetters(kQueue, SIZE_MAX);
  REQUIRE_MESSAGE(dls.ok(), dls.status().ToString());
  std::map<Key, int> in_dlq;
  for (const DeadLetter& d : *dls) ++in_dlq[{d.source_partition.value(), d.source_offset.value()}];
  size_t dlq_twice = 0, stray = 0;
  for (const auto& e : in_dlq) {
    dlq_twice += e.second != 1;
    auto st = g.StatusOf(kJobs, Partition(e.first.first), Offset(e.first.second));
    stray += !st.ok() || st->empty() || (*st)[0].state != RecordState::kDeadLettered;
  }
  CHECK_MESSAGE(dlq_twice == 0, "records in the DLQ more than once");
  CHECK_MESSAGE(stray == 0, "DLQ records whose source is not dead-lettered");
  std::map<int32_t, std::vector<std::pair<int64_t, std::string>>> jobs;
  size_t reject_lost = 0;
  for (const auto& r : ledger.rejects) {
    const Key& k = r.first;
    auto st = g.StatusOf(kJobs, Partition(k.first), Offset(k.second));
    REQUIRE_MESSAGE(st.ok(), st.status().ToString());
    REQUIRE(st->size() == 1);
    const bool dead = (*st)[0].state == RecordState::kDeadLettered;
    bool placed = in_dlq.count(k) > 0;
    if (!placed) {  // redriven: a copy after it in its partition
      if (!jobs.count(k.first)) jobs[k.first] = testutil::ReadAll(store, kJobs, k.first);
      for (const auto& rec : jobs[k.first])
        placed |= rec.first > k.second && rec.second == r.second;
    }
    reject_lost += !dead || !placed;
    ++figures.rejects_checked;
  }
  CHECK_MESSAGE(reject_lost == 0, reject_lost << " confirmed rejects lost");

  // Deliveries and settles are answered after their fsync: none may be taken back. A later
  // delivery (its write fsynced, its answer cut off) may have moved a record on since.
  size_t reverted_deliveries = 0, reverted_settles = 0;
  for (const auto& entry : ledger.delivered) {
    const Key& k = entry.first;
    const int32_t count = entry.second;
    auto st = g.StatusOf(kJobs, Partition(k.first), Offset(k.second));
    REQUIRE(st.ok());
    const RecordStatus& s = (*st)[0];
    ++figures.deliveries_checked;
    if (s.state == RecordState::kUndelivered ||
        (s.state == RecordState::kPending && s.deliveries < count)) {
      ++reverted_deliveries;
      MESSAGE("delivery reverted: jobs/" << k.first << "@" << k.second << " confirmed with "
                                         << count << " deliveries, now " << RecordStateName(s.state)
                                         << " with " << s.deliveries);
    }
  }
  for (const auto& entry : ledger.queue_ops) {
    const Key& k = entry.first;
    const Ledger::LastOp& op = entry.second;
    auto st = g.StatusOf(kJobs, Partition(k.first), Offset(k.second));
    REQUIRE(st.ok());
    const RecordStatus& s = (*st)[0];
    ++figures.settles_checked;
    const bool redelivered = s.state == RecordState::kPending && s.deliveries > op.deliveries;
    bool kept = false;
    switch (op.op) {
      case Ledger::Op::kAck:
        kept = s.state == RecordState::kAcked;
        break;
      case Ledger::Op::kNack:  // retry-waiting (no owner), dead-lettered or delivered again
        kept = s.state == RecordState::kDeadLettered || redelivered ||
               (s.state == RecordState::kPending && s.consumer.empty());
        break;
      case Ledger::Op::kExtend:  // locked until at least then, dead-lettered or delivered again
        kept = s.state == RecordState::kDeadLettered || redelivered ||
               (s.state == RecordState::kPending && s.lock_until_ms >= op.until);
        break;
    }
    if (!kept) {
      ++reverted_settles;
      MESSAGE("settle reverted: jobs/"
              << k.first << "@" << k.second << " op " << static_cast<int>(op.op) << ", now "
              << RecordStateName(s.state) << " with " << s.deliveries << " deliveries");
    }
  }
  CHECK_MESSAGE(reverted_deliveries == 0, reverted_deliveries << " confirmed deliveries reverted");
  CHECK_MESSAGE(reverted_settles == 0, reverted_settles << " confirmed settles reverted");
  ledger.queue_ops.clear();
}

void CreateTopology(LogStore& store) {
  for (const std::string& t : kProduceTopics) {
    TopicConfig c;
    c.dedup_window_ms = 0;
    if (t == "t2") {
      c.retention_bytes = 16 << 10;
      c.index_interval_bytes = 2 << 10;
    }
    REQUIRE(store.CreateTopic(t, kPartitions, c).ok());
  }
  TopicConfig jobs;
  jobs.dedup_window_ms = 0;
  REQUIRE(store.CreateTopic(kJobs, kPartitions, jobs).ok());
  GroupConfig gc;
  gc.topic = kJobs;
  gc.lock_timeout_ms = 40;
  gc.max_deliveries = 3;
  REQUIRE(store.groups().CreateQueueGroup(kQueue, gc, StartPosition::Earliest()).ok());
}

TEST_CASE("Power cut: every confirmed record, commit, reject and topic change survives") {
  const uint64_t seed = Seed();
  std::mt19937_64 rng(seed);
  PowerCutStore s;
  s.Open();
  CreateTopology(*s.store);
  Ledger ledger;
  Figures figures;
  const int rounds = Rounds();
  const auto t0 = std::chrono::steady_clock::now();
  for (int round = 0; round < rounds; ++round) {
    CAPTURE(round);
    std::atomic<bool> stop{false};
    std::atomic<uint64_t> confirmed{0}, failures{0};
    std::vector<std::thread> load;
    LogStore& store = *s.store;
    PowerCutFs& fs = *s.fs;
    for (int p = 0; p < 2; ++p) {
      const std::string name = "r" + std::to_string(round) + "p" + std::to_string(p);
      const uint64_t pseed = rng();
      load.emplace_back([&, name, pseed] {
        Produce(store, ledger, fs, stop, confirmed, failures, name, pseed, false, 1000);
      });
    }
    load.emplace_back([&] { CommitLoop(store, ledger, fs, stop); });
    const uint64_t qseed = rng();
    const std::string consumer = "c" + std::to_string(round % 4);
    load.emplace_back(
        [&, qseed, consumer] { QueueLoop(store, ledger, fs, stop, consumer, qseed, figures); });
    load.emplace_back([&] { AdminLoop(store, ledger, fs, stop, figures); });

    // The cut lands a random while after this round's first confirmed append.
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    while (confirmed.load() == 0 && std::chrono::steady_clock::now() < deadline)
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    CHECK_MESSAGE(confirmed.load() > 0, "nothing was confirmed in 30 s");
    std::this_thread::sleep_for(std::chrono::microseconds(rng() % 60'000));
    const testing::CutStats cut = s.Cut(&load, &stop);
    ++figures.cuts;
    figures.bytes_dropped += cut.bytes_dropped;
    figures.files_removed += cut.files_removed;
    figures.files_restored += cut.files_restored;
    s.Open();
    Verify(*s.store, ledger, figures, true);
  }
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  uint64_t records = 0;
  for (const auto& e : ledger.records) records += e.second.size();
  MESSAGE("power cuts: " << figures.cuts << " in " << secs << " s; confirmed records: " << records
                         << " (record checks: " << figures.records_checked
                         << "), commit checks: " << figures.commits_checked << ", reject checks: "
                         << figures.rejects_checked << ", redrives: " << figures.redrives
                         << ", retention moves: " << figures.retention_moves
                         << ", topic creates/deletes: " << figures.dyn_changes
                         << "; dropped at cuts: " << figures.bytes_dropped << " unsynced bytes, "
                         << figures.files_removed << " undurable files removed, "
                         << figures.files_restored
                         << " unsynced deletes/renames undone; confirmed deliveries checked: "
                         << figures.deliveries_checked
                         << ", settles (ack, nack, extend) checked: " << figures.settles_checked);
  CHECK(records > 0);
  CHECK(figures.commits_checked > 0);
  CHECK(figures.settles_checked > 0);
}

// Waits (bounded by a generous deadline, never asserted on) until `done` holds.
template <typename F>
bool WaitFor(F done) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (!done()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  return true;
}

TEST_CASE(
    "Power cut: EIO on a WAL write or sync degrades the store, which recovers once the disk "
    "works") {
  const uint64_t seed = Seed();
  std::mt19937_64 rng(seed);
  PowerCutStore s;
  s.Open();
  CreateTopology(*s.store);
  Ledger ledger;
  Figures figures;
  // A failed WAL write or sync degrades the store: appends fail with the I/O error and Health()
  // says so. Once the disk works again the store recovers by itself, without a reopen (the
  // committer's TryRecover: Resume, a flush of every memtable into new files, a new WAL), and
  // keeps confirming. Each pass ends with a power cut and a reopen, after which everything
  // confirmed (before, during and after the fault) must be there. The last pass injects nothing.
  for (int pass = 0; pass < 3; ++pass) {
    const PowerCutFs::FaultOp op =
        pass == 0 ? PowerCutFs::FaultOp::kWrite : PowerCutFs::FaultOp::kSync;
    const std::string what = pass == 2                           ? "none"
                             : op == PowerCutFs::FaultOp::kWrite ? "write"
                                                                 : "sync";
    CAPTURE(what);
    std::atomic<bool> stop{false};
    std::atomic<uint64_t> confirmed{0}, failures{0};
    std::vector<std::thread> load;
    LogStore& store = *s.store;
    PowerCutFs& fs = *s.fs;
    REQUIRE_MESSAGE(store.Health().ok(), store.Health().ToString());
    for (int p = 0; p < 2; ++p) {
      const std::string name = what + std::to_string(pass) + "p" + std::to_string(p);
      const uint64_t pseed = rng();
      load.emplace_back([&, name, pseed] {
        Produce(store, ledger, fs, stop, confirmed, failures, name, pseed, true, 200);
      });
    }
    load.emplace_back([&] { CommitLoop(store, ledger, fs, stop, true); });
    // Writes work (after the reopen, for the later passes).
    REQUIRE(WaitFor([&] { return confirmed.load() >= 20; }));
    const uint64_t faults_before = fs.faults_injected();
    if (pass < 2) {
      // Every WAL write (or sync) fails until the window closes.
      fs.InjectFault(op, -1);
      REQUIRE_MESSAGE(
          WaitFor([&] { return fs.faults_injected() > faults_before && failures.load() >= 3; }),
          "no append failed while every WAL " << what << " failed");
      // Degraded: the store says so.
      CHECK(WaitFor([&] { return store.Health().code() == StatusCode::kIOError; }));
      // It tries to recover (about once a second) and fails while the disk still fails.
      REQUIRE(WaitFor([&] { return fs.faults_injected() >= faults_before + 2; }));
      // An append fails too, whatever the timing.
      RecordBatchBuilder b;
      b.Add(Clock::System()->NowMs(), std::nullopt, "during-the-fault");
      auto r = store.Append(AppendRequest{"t1", Partition(0), b.Build(), AckMode::kDurable});
      CHECK_MESSAGE(!r.ok(), "an append succeeded while every WAL " << what << " failed");
      if (!r.ok()) CHECK(r.status().code() == StatusCode::kIOError);
      fs.StopFaults();
      // Recovers in process: a new append is confirmed and the store is healthy again.
      uint64_t attempts = 0;
      const bool recovered = WaitFor([&] {
        RecordBatchBuilder rb;
        rb.Add(Clock::System()->NowMs(), std::nullopt, "after-the-" + what + "-fault");
        ++attempts;
        auto ar = store.Append(AppendRequest{"t1", Partition(1), rb.Build(), AckMode::kDurable});
        if (!ar.ok()) return false;
        std::lock_guard lk(ledger.mu);
        ledger.records[{"t1", 1}][ar->base_offset.value()] = "after-the-" + what + "-fault";
        return true;
      });
      CHECK_MESSAGE(recovered, "the store did not recover after the fault stopped: "
                                   << store.Health().ToString());
      CHECK_MESSAGE(store.Health().ok(), store.Health().ToString());
      MESSAGE("recovered in process after " << attempts << " append attempts");
      const uint64_t confirmed_at_recovery = confirmed.load();
      // And the load confirms again too.
      CHECK(WaitFor([&] { return confirmed.load() >= confirmed_at_recovery + 20; }));
    }
    MESSAGE("EIO on WAL " << what << ": " << failures.load() << " failed appends (retried), "
                          << fs.faults_injected() - faults_before << " injected errors, "
                          << confirmed.load() << " confirmed batches; health at the cut: "
                          << store.Health().ToString());
    // Everything confirmed before, during and after survives a power cut.
    s.Cut(&load, &stop);
    ++figures.cuts;
    s.Open();
    Verify(*s.store, ledger, figures, false);
  }
  uint64_t records = 0;
  for (const auto& e : ledger.records) records += e.second.size();
  MESSAGE("EIO test: " << figures.cuts << " cuts, " << figures.records_checked
                       << " record checks of " << records << " confirmed records");
}

}  // namespace
}  // namespace runnel::storage
