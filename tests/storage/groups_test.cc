#include "runnel/storage/groups.h"

#include <doctest/doctest.h>

#include <atomic>
#include <future>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include "runnel/storage/format.h"
#include "runnel/storage/log_store.h"
#include "runnel/testing/raw_store.h"
#include "runnel/testing/temp_dir.h"
#include "store_test_util.h"

namespace runnel::storage {
namespace {

using testutil::MakeBatch;
using testutil::ReadAll;
using testutil::Req;
using testutil::TestRecord;

using testutil::kT0;

struct GroupFixture : testutil::StoreFixture {
  Groups& g() { return store->groups(); }
  void Topic(const std::string& name, int partitions = 1, TopicConfig c = {}) {
    REQUIRE(store->CreateTopic(name, partitions, c).ok());
  }
  void Produce(const std::string& topic, int partition, const std::vector<TestRecord>& records) {
    auto r = store->Append(Req(topic, partition, MakeBatch(records)));
    REQUIRE_MESSAGE(r.ok(), r.status().ToString());
  }
  void Produce(const std::string& topic, int partition, int n, const std::string& prefix) {
    std::vector<TestRecord> rs;
    for (int i = 0; i < n; ++i) rs.push_back({prefix + std::to_string(i), "", clock.NowMs()});
    Produce(topic, partition, rs);
  }
  void Queue(const std::string& name, const std::string& topic, GroupConfig c = {},
             StartPosition start = StartPosition::Earliest()) {
    c.topic = topic;
    Status s = g().CreateQueueGroup(name, c, start);
    REQUIRE_MESSAGE(s.ok(), s.ToString());
  }
  std::vector<DeliveredRecord> Deliver(const std::string& group, const std::string& consumer,
                                       int n = 100) {
    auto r = g().Deliver(group, consumer, n, 1 << 20);
    REQUIRE_MESSAGE(r.ok(), r.status().ToString());
    return std::move(r).value();
  }
  RecordState StateOf(const std::string& topic, int p, int64_t off, const std::string& group) {
    auto r = g().StatusOf(topic, Partition(p), Offset(off));
    REQUIRE_MESSAGE(r.ok(), r.status().ToString());
    for (const RecordStatus& s : *r) {
      if (s.group == group) return s.state;
    }
    FAIL("group not in status");
    return RecordState::kUndelivered;
  }
};

std::vector<RecordRef> Refs(const std::vector<DeliveredRecord>& ds) {
  std::vector<RecordRef> out;
  for (const auto& d : ds) out.push_back({d.partition, d.offset});
  return out;
}

std::optional<std::string> Header(const DeliveredRecord& d, const std::string& name) {
  for (const auto& [k, v] : d.headers) {
    if (k == name) return v;
  }
  return std::nullopt;
}

TEST_CASE("Queue group: deliver locks records to one consumer; ack finishes them") {
  GroupFixture f;
  f.Topic("jobs", 2);
  f.Produce("jobs", 0, 3, "a");
  f.Produce("jobs", 1, 2, "b");
  f.Queue("workers", "jobs");
  auto first = f.Deliver("workers", "c1", 4);
  REQUIRE(first.size() == 4);
  for (const auto& d : first) {
    CHECK(d.deliveries == 1);
    CHECK(d.lock_until_ms == kT0 + 30'000);
  }
  auto second = f.Deliver("workers", "c2");
  REQUIRE(second.size() == 1);  // the one record left; the others are locked to c1
  CHECK(f.Deliver("workers", "c3").empty());
  CHECK(f.StateOf("jobs", first[0].partition.value(), first[0].offset.value(), "workers") ==
        RecordState::kPending);

  auto refs = Refs(first);
  REQUIRE(f.g().Ack("workers", "c1", refs).ok());
  CHECK(f.StateOf("jobs", first[0].partition.value(), first[0].offset.value(), "workers") ==
        RecordState::kAcked);
  // Acking again: no longer pending, and nothing changes.
  CHECK(f.g().Ack("workers", "c1", refs).IsNotFound());
  auto d = f.g().DescribeGroup("workers");
  REQUIRE(d.ok());
  int64_t pending = 0;
  for (const auto& p : d->partitions) pending += p.pending;
  CHECK(pending == 1);
  f.clock.Advance(31'000);
  CHECK(f.Deliver("workers", "c3").size() == 1);  // c2's lock expired
}

TEST_CASE("Queue group: an expired lock hands the record to another consumer with a higher count") {
  GroupFixture f;
  f.Topic("t");
  f.Produce("t", 0, 1, "x");
  GroupConfig c;
  c.lock_timeout_ms = 1000;
  f.Queue("g", "t", c);
  auto a = f.Deliver("g", "alice");
  REQUIRE(a.size() == 1);
  f.clock.Advance(999);
  CHECK(f.Deliver("g", "bob").empty());
  f.clock.Advance(2);
  auto b = f.Deliver("g", "bob");
  REQUIRE(b.size() == 1);
  CHECK(b[0].offset == a[0].offset);
  CHECK(b[0].deliveries == 2);
  // Alice's late ack is refused and changes nothing.
  Status late = f.g().Ack("g", "alice", Refs(a));
  CHECK(late.IsInvalidArgument());
  CHECK(late.message().find("locked by consumer 'bob'") != std::string::npos);
  CHECK(f.StateOf("t", 0, 0, "g") == RecordState::kPending);
  REQUIRE(f.g().Ack("g", "bob", Refs(b)).ok());
}

TEST_CASE("Queue group: nack redelivers after the delay (retry with backoff)") {
  GroupFixture f;
  f.Topic("t");
  f.Produce("t", 0, 1, "x");
  f.Queue("g", "t");
  auto a = f.Deliver("g", "c");
  REQUIRE(f.g().Nack("g", "c", Refs(a), 5000).ok());
  CHECK(f.Deliver("g", "c").empty());
  f.clock.Advance(4999);
  CHECK(f.Deliver("g", "c").empty());
  f.clock.Advance(1);
  auto again = f.Deliver("g", "c");
  REQUIRE(again.size() == 1);
  CHECK(again[0].deliveries == 2);
  CHECK(f.g().Nack("g", "c", Refs(again), -1).IsInvalidArgument());
}

TEST_CASE("Queue group: max deliveries dead-letters the record with full headers") {
  GroupFixture f;
  f.Topic("orders");
  f.Produce("orders", 0, {{"payload", "", kT0}});
  GroupConfig c;
  c.max_deliveries = 3;
  f.Queue("billing", "orders", c);
  for (int attempt = 1; attempt <= 3; ++attempt) {
    auto d = f.Deliver("billing", "c");
    REQUIRE(d.size() == 1);
    CHECK(d[0].deliveries == attempt);
    f.clock.Advance(10);
    REQUIRE(f.g().Nack("billing", "c", Refs(d), 0).ok());
  }
  CHECK(f.Deliver("billing", "c").empty());
  CHECK(f.StateOf("orders", 0, 0, "billing") == RecordState::kDeadLettered);
  auto dls = f.g().ListDeadLetters("billing", 10);
  REQUIRE(dls.ok());
  REQUIRE(dls->size() == 1);
  const DeadLetter& dl = (*dls)[0];
  CHECK(dl.source_topic == "orders");
  CHECK(dl.source_offset == Offset(0));
  CHECK(dl.deliveries == 3);
  CHECK(dl.reason == "max_deliveries");
  CHECK(dl.first_failure_ms == kT0 + 10);
  CHECK(dl.last_failure_ms == kT0 + 30);
  CHECK(dl.value == std::optional<std::string>("payload"));
  // The DLQ is an ordinary topic holding the copy with every documented header.
  auto raw = ReadAll(*f.store, "orders.dlq.billing", 0);
  REQUIRE(raw.size() == 1);
  auto status = f.g().StatusOf("orders", Partition(0), Offset(0));
  REQUIRE(status.ok());
  CHECK((*status)[0].reason == "max_deliveries");
  CHECK((*status)[0].dlq_offset == Offset(0));
}

TEST_CASE("Queue group: reject dead-letters at once; DLQ copies carry the runnel.dlq headers") {
  GroupFixture f;
  f.Topic("t", 2);
  f.Produce("t", 1, {{"bad json", "scan-9", kT0}});
  f.Queue("g", "t");
  auto d = f.Deliver("g", "c");
  REQUIRE(d.size() == 1);
  REQUIRE(f.g().Reject("g", "c", Refs(d), "malformed JSON").ok());
  // Read the DLQ copy back through a consumer group of its own.
  f.Queue("dlq-reader", "t.dlq.g");
  auto copies = f.Deliver("dlq-reader", "ops");
  REQUIRE(copies.size() == 1);
  const DeliveredRecord& copy = copies[0];
  CHECK(copy.value == std::optional<std::string>("bad json"));
  CHECK(Header(copy, "runnel.dlq.topic") == std::optional<std::string>("t"));
  CHECK(Header(copy, "runnel.dlq.partition") == std::optional<std::string>("1"));
  CHECK(Header(copy, "runnel.dlq.offset") == std::optional<std::string>("0"));
  CHECK(Header(copy, "runnel.dlq.group") == std::optional<std::string>("g"));
  CHECK(Header(copy, "runnel.dlq.deliveries") == std::optional<std::string>("1"));
  CHECK(Header(copy, "runnel.dlq.reason") == std::optional<std::string>("malformed JSON"));
  CHECK(Header(copy, "runnel.dlq.first_failure_ms") ==
        std::optional<std::string>(std::to_string(kT0)));
  CHECK(Header(copy, "runnel.dlq.last_failure_ms") ==
        std::optional<std::string>(std::to_string(kT0)));
  CHECK(Header(copy, "runnel.dlq.dedup.key") == std::optional<std::string>("scan-9"));
  CHECK_FALSE(Header(copy, "runnel.dedup.key").has_value());
  CHECK(copy.partition == Partition(1));
}

TEST_CASE("Queue group: extend keeps a lock; claim takes over idle entries only") {
  GroupFixture f;
  f.Topic("t");
  f.Produce("t", 0, 4, "x");
  GroupConfig c;
  c.lock_timeout_ms = 10'000;
  f.Queue("g", "t", c);
  auto a = f.Deliver("g", "slow", 2);
  f.clock.Advance(5000);
  auto b = f.Deliver("g", "busy", 2);
  f.clock.Advance(4000);
  auto until = f.g().Extend("g", "slow", std::vector<RecordRef>{Refs(a)[0]});
  REQUIRE(until.ok());
  CHECK(*until == f.clock.NowMs() + 10'000);
  // Idle >= 8 s: only slow's second record (9 s idle). The extended one was active just now;
  // busy's have been idle 4 s.
  auto claimed = f.g().Claim("g", "rescuer", 8000, 100);
  REQUIRE(claimed.ok());
  REQUIRE(claimed->size() == 1);
  CHECK((*claimed)[0].offset == a[1].offset);
  CHECK((*claimed)[0].deliveries == 2);
  CHECK(f.g().Ack("g", "slow", std::vector<RecordRef>{Refs(a)[1]}).IsInvalidArgument());
  REQUIRE(f.g().Ack("g", "rescuer", Refs(*claimed)).ok());
  CHECK(f.g().Claim("g", "x", -1, 10).status().IsInvalidArgument());
}

TEST_CASE("Queue group: ordered keys keep one record per key in flight, in order") {
  GroupFixture f;
  f.Topic("coupons");
  RecordBatchBuilder b;
  for (int i = 0; i < 6; ++i) {
    const std::string key = (i % 2 == 0) ? "coupon-A" : "coupon-B";
    b.Add(kT0, std::string_view(key), std::string_view("req" + std::to_string(i)));
  }
  REQUIRE(f.store->Append(Req("coupons", 0, b.Build())).ok());
  GroupConfig c;
  c.ordered_keys = true;
  f.Queue("issuer", "coupons", c);
  auto first = f.Deliver("issuer", "w1", 10);
  REQUIRE(first.size() == 2);  // the head of each key only
  CHECK(*first[0].value == "req0");
  CHECK(*first[1].value == "req1");
  CHECK(f.Deliver("issuer", "w2", 10).empty());
  // Finishing key A's head frees its next record, in order; key B stays blocked.
  REQUIRE(f.g().Ack("issuer", "w1", std::vector<RecordRef>{Refs(first)[0]}).ok());
  auto next = f.Deliver("issuer", "w2", 10);
  REQUIRE(next.size() == 1);
  CHECK(*next[0].value == "req2");
  // A nacked head keeps its key blocked until it is redelivered and finished.
  REQUIRE(f.g().Nack("issuer", "w1", std::vector<RecordRef>{Refs(first)[1]}, 1000).ok());
  CHECK(f.Deliver("issuer", "w3", 10).empty());
  f.clock.Advance(1000);
  auto retried = f.Deliver("issuer", "w3", 10);
  REQUIRE(retried.size() == 1);
  CHECK(*retried[0].value == "req1");
  CHECK(f.StateOf("coupons", 0, 3, "issuer") == RecordState::kUndelivered);  // parked behind req1
  // Order survives a restart.
  f.Reopen();
  REQUIRE(f.g().Ack("issuer", "w3", Refs(retried)).ok());
  auto after = f.Deliver("issuer", "w4", 10);
  REQUIRE(after.size() == 1);
  CHECK(*after[0].value == "req3");
}

TEST_CASE("Queue group: records older than the TTL are dead-lettered as expired") {
  GroupFixture f;
  f.Topic("t");
  f.Produce("t", 0, {{"old", "", kT0 - 120'000}, {"fresh", "", kT0}});
  GroupConfig c;
  c.message_ttl_ms = 60'000;
  f.Queue("g", "t", c);
  auto d = f.Deliver("g", "c");
  REQUIRE(d.size() == 1);
  CHECK(*d[0].value == "fresh");
  CHECK(f.StateOf("t", 0, 0, "g") == RecordState::kDeadLettered);
  auto dls = f.g().ListDeadLetters("g", 10);
  REQUIRE(dls->size() == 1);
  CHECK((*dls)[0].reason == "expired");
  CHECK((*dls)[0].deliveries == 0);
}

TEST_CASE("Queue group: start positions earliest, latest, offset and timestamp") {
  GroupFixture f;
  f.Topic("t");
  f.Produce("t", 0, {{"a", "", 1000}, {"b", "", 2000}, {"c", "", 3000}});
  f.Queue("e", "t", {}, StartPosition::Earliest());
  f.Queue("l", "t", {}, StartPosition::Latest());
  f.Queue("o", "t", {}, StartPosition::AtOffset(1));
  f.Queue("ts", "t", {}, StartPosition::AtTime(2500));
  CHECK(f.Deliver("e", "c").size() == 3);
  CHECK(f.Deliver("l", "c").empty());
  CHECK(*f.Deliver("o", "c")[0].value == "b");
  auto ts = f.Deliver("ts", "c");
  REQUIRE(ts.size() == 1);
  CHECK(*ts[0].value == "c");
  GroupConfig bad;
  bad.topic = "t";
  CHECK(f.g().CreateQueueGroup("x", bad, StartPosition::AtOffset(9)).IsOutOfRange());
  f.Produce("t", 0, 1, "new");
  CHECK(f.Deliver("l", "c").size() == 1);
}

TEST_CASE("Queue group: pending entries, cursors, consumers and DLQ state survive reopen") {
  GroupFixture f;
  f.Topic("t");
  f.Produce("t", 0, 5, "x");
  f.Queue("g", "t");
  auto d = f.Deliver("g", "c1", 3);
  REQUIRE(f.g().Ack("g", "c1", std::vector<RecordRef>{Refs(d)[0]}).ok());
  REQUIRE(f.g().Nack("g", "c1", std::vector<RecordRef>{Refs(d)[1]}, 60'000).ok());
  REQUIRE(f.g().Reject("g", "c1", std::vector<RecordRef>{Refs(d)[2]}, "nope").ok());
  f.Reopen();
  CHECK(f.StateOf("t", 0, 0, "g") == RecordState::kAcked);
  CHECK(f.StateOf("t", 0, 1, "g") == RecordState::kPending);
  CHECK(f.StateOf("t", 0, 2, "g") == RecordState::kDeadLettered);
  CHECK(f.StateOf("t", 0, 3, "g") == RecordState::kUndelivered);
  auto next = f.Deliver("g", "c2");
  REQUIRE(next.size() == 2);  // 3 and 4; 1 waits for its retry time
  CHECK(next[0].offset == Offset(3));
  REQUIRE(f.g().Ack("g", "c2", Refs(next)).ok());
  f.clock.Advance(60'000);
  auto retry = f.Deliver("g", "c2");
  REQUIRE(retry.size() == 1);
  CHECK(retry[0].offset == Offset(1));
  CHECK(retry[0].deliveries == 2);
}

TEST_CASE("Queue group: ack.durability is durable unless a group opts into written") {
  GroupFixture f;
  f.Topic("t");
  f.Produce("t", 0, 4, "x");
  GroupConfig written;
  REQUIRE(written.Set("ack.durability", "written").ok());
  CHECK(written.ack_durability == SettleDurability::kWritten);
  CHECK(written.Set("ack.durability", "fsync").IsInvalidArgument());
  CHECK(written.ack_durability == SettleDurability::kWritten);  // unchanged by the bad value
  f.Queue("fast", "t", written);
  f.Queue("safe", "t");
  auto config_of = [&](const std::string& group) {
    auto d = f.g().DescribeGroup(group);
    REQUIRE(d.ok());
    for (const auto& [k, v] : d->config.ToList())
      if (k == "ack.durability") return v;
    return std::string("(missing)");
  };
  CHECK(config_of("safe") == "durable");
  CHECK(config_of("fast") == "written");
  // Both work the same; the setting survives a reopen.
  for (const std::string group : {"fast", "safe"}) {
    auto d = f.Deliver(group, "c", 2);
    REQUIRE(d.size() == 2);
    REQUIRE(f.g().Ack(group, "c", std::vector<RecordRef>{Refs(d)[0]}).ok());
    REQUIRE(f.g().Nack(group, "c", std::vector<RecordRef>{Refs(d)[1]}, 0).ok());
  }
  f.Reopen();
  CHECK(config_of("safe") == "durable");
  CHECK(config_of("fast") == "written");
  for (const std::string group : {"fast", "safe"}) {
    CHECK(f.StateOf("t", 0, 0, group) == RecordState::kAcked);
    auto again = f.Deliver(group, "c", 10);
    REQUIRE(again.size() == 3);  // the nacked record, then the two never delivered
    CHECK(again[0].offset == Offset(1));
    CHECK(again[0].deliveries == 2);
  }
}

TEST_CASE("Queue group: the async forms answer once, with errors through the callback too") {
  GroupFixture f;
  f.Topic("t");
  f.Produce("t", 0, 3, "x");
  f.Queue("g", "t");
  std::promise<Result<std::vector<DeliveredRecord>>> delivered;
  f.g().DeliverAsync("g", "c", 3, 1 << 20, [&](Result<std::vector<DeliveredRecord>> r) {
    delivered.set_value(std::move(r));  // a second call would throw future_error
  });
  auto d = delivered.get_future().get();
  REQUIRE(d.ok());
  REQUIRE(d->size() == 3);
  std::promise<Result<int64_t>> extended;
  f.g().ExtendAsync("g", "c", Refs(*d), [&](Result<int64_t> r) { extended.set_value(r); });
  auto until = extended.get_future().get();
  REQUIRE(until.ok());
  CHECK(*until == kT0 + 30'000);
  std::promise<Status> acked, unknown, stranger;
  f.g().AckAsync("g", "c", Refs(*d), [&](Status s) { acked.set_value(s); });
  f.g().AckAsync("nope", "c", Refs(*d), [&](Status s) { unknown.set_value(s); });
  f.g().AckAsync("g", "other", Refs(*d), [&](Status s) { stranger.set_value(s); });
  CHECK(acked.get_future().get().ok());
  CHECK(unknown.get_future().get().IsNotFound());
  CHECK(stranger.get_future().get().IsNotFound());  // acked already: no longer pending
  std::promise<Result<std::vector<DeliveredRecord>>> claimed;
  f.g().ClaimAsync("g", "c", -1, 1, [&](Result<std::vector<DeliveredRecord>> r) {
    claimed.set_value(std::move(r));
  });
  CHECK(claimed.get_future().get().status().IsInvalidArgument());
  CHECK(f.StateOf("t", 0, 2, "g") == RecordState::kAcked);
}

TEST_CASE("Queue group: bad input gets a clear error and changes nothing") {
  GroupFixture f;
  f.Topic("t");
  f.Produce("t", 0, 2, "x");
  f.Queue("g", "t");
  auto d = f.Deliver("g", "c1", 1);
  const std::vector<RecordRef> mixed = {Refs(d)[0], {Partition(0), Offset(1)}};  // 1 not delivered
  CHECK(f.g().Ack("g", "c1", mixed).IsNotFound());
  CHECK(f.StateOf("t", 0, 0, "g") == RecordState::kPending);  // all-or-nothing
  CHECK(f.g().Ack("nope", "c1", Refs(d)).IsNotFound());
  CHECK(f.g().Ack("g", "stranger", Refs(d)).IsInvalidArgument());
  CHECK(f.g().Ack("g", "c1", std::vector<RecordRef>{{Partition(7), Offset(0)}}).IsNotFound());
  CHECK(f.g().Ack("g", "c1", std::vector<RecordRef>{}).IsInvalidArgument());
  CHECK(f.g().Deliver("g", "", 1, 100).status().IsInvalidArgument());
  CHECK(f.g().Deliver("nope", "c", 1, 100).status().IsNotFound());
  CHECK(f.g().StatusOf("t", Partition(0), Offset(99)).status().IsOutOfRange());
  CHECK(f.g().StatusOf("nope", Partition(0), Offset(0)).status().IsNotFound());
  GroupConfig c;
  c.topic = "missing";
  CHECK(f.g().CreateQueueGroup("g2", c, StartPosition::Earliest()).IsNotFound());
  c.topic = "t";
  CHECK(f.g().CreateQueueGroup("g", c, StartPosition::Earliest()).code() ==
        StatusCode::kAlreadyExists);
  CHECK(f.g().CreateQueueGroup("../x", c, StartPosition::Earliest()).IsInvalidArgument());
  CHECK(c.Set("max.deliveries", "0").IsInvalidArgument());
  CHECK(c.Set("lock.timeout.ms", "-5").IsInvalidArgument());
  CHECK(c.Set("whatever", "1").IsInvalidArgument());
  REQUIRE(f.g().Ack("g", "c1", Refs(d)).ok());
}

TEST_CASE("Queue group: 4 threads deliver and ack; each record goes to one consumer at a time") {
  GroupFixture f;
  f.Topic("load", 4);
  constexpr int kPerPartition = 500;
  for (int p = 0; p < 4; ++p) {
    for (int b = 0; b < 5; ++b)
      f.Produce("load", p, kPerPartition / 5,
                "p" + std::to_string(p) + "b" + std::to_string(b) + "-");
  }
  f.Queue("g", "load");
  std::mutex mu;
  std::map<std::pair<int32_t, int64_t>, int> acked;
  std::atomic<int> errors{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      const std::string me = "w" + std::to_string(t);
      int empty_rounds = 0;
      while (empty_rounds < 3) {
        auto d = f.g().Deliver("g", me, 37, 1 << 20);
        if (!d.ok()) {
          errors.fetch_add(1);
          return;
        }
        if (d->empty()) {
          ++empty_rounds;
          continue;
        }
        empty_rounds = 0;
        // Every third batch is nacked once with no delay, to mix in redeliveries.
        if (d->front().deliveries == 1 && d->front().offset.value() % 3 == 0) {
          if (!f.g().Nack("g", me, Refs(*d), 0).ok()) errors.fetch_add(1);
          continue;
        }
        if (!f.g().Ack("g", me, Refs(*d)).ok()) errors.fetch_add(1);
        std::lock_guard lk(mu);
        for (const auto& r : *d) ++acked[{r.partition.value(), r.offset.value()}];
      }
    });
  }
  for (auto& th : threads) th.join();
  CHECK(errors.load() == 0);
  CHECK(acked.size() == 4 * kPerPartition);
  int twice = 0;
  for (const auto& [k, n] : acked) twice += n != 1;
  CHECK(twice == 0);
}

TEST_CASE("Queue group: retain.until.acked pins retention below the ack floor") {
  GroupFixture f;
  TopicConfig tc;
  REQUIRE(tc.Set("retention.ms", "1000").ok());
  REQUIRE(tc.Set("index.interval.bytes", "1").ok());
  f.Topic("t", 1, tc);
  for (int i = 0; i < 4; ++i) f.Produce("t", 0, {{"v", "", kT0}});
  GroupConfig c;
  c.retain_until_acked = true;
  f.Queue("keeper", "t", c);
  f.clock.Advance(10'000);
  REQUIRE(f.store->EnforceRetention().ok());
  CHECK(f.store->ListOffset("t", Partition(0), OffsetQuery::Earliest())->value() == 0);
  auto d = f.Deliver("keeper", "c", 2);
  REQUIRE(f.g().Ack("keeper", "c", Refs(d)).ok());
  REQUIRE(f.store->EnforceRetention().ok());
  CHECK(f.store->ListOffset("t", Partition(0), OffsetQuery::Earliest())->value() == 2);
  // Deleting the group releases the pin (never the last interval).
  REQUIRE(f.g().DeleteGroup("keeper").ok());
  REQUIRE(f.store->EnforceRetention().ok());
  CHECK(f.store->ListOffset("t", Partition(0), OffsetQuery::Earliest())->value() == 3);
}

TEST_CASE("Queue group: redrive moves dead letters back to the source and purges the DLQ") {
  GroupFixture f;
  f.Topic("t");
  f.Produce("t", 0, 3, "x");
  f.Queue("g", "t");
  auto d = f.Deliver("g", "c");
  REQUIRE(f.g().Reject("g", "c", std::vector<RecordRef>{Refs(d)[0]}, "timeout").ok());
  REQUIRE(f.g().Reject("g", "c", std::vector<RecordRef>{Refs(d)[1]}, "bad").ok());
  REQUIRE(f.g().Ack("g", "c", std::vector<RecordRef>{Refs(d)[2]}).ok());
  RedriveSpec only_timeouts;
  only_timeouts.reason = "timeout";
  auto moved = f.g().Redrive("g", only_timeouts);
  REQUIRE(moved.ok());
  CHECK(*moved == 1);
  // A filtered redrive leaves the DLQ as it is but marks what it copied: listings and later
  // redrives skip it, so a full redrive does not send it again.
  auto left = f.g().ListDeadLetters("g", 10);
  REQUIRE(left->size() == 1);
  CHECK((*left)[0].reason == "bad");
  CHECK(*f.g().Redrive("g", only_timeouts) == 0);
  auto again = f.Deliver("g", "c");
  REQUIRE(again.size() == 1);
  CHECK(*again[0].value == "x0");
  CHECK_FALSE(Header(again[0], "runnel.dlq.reason").has_value());
  f.Reopen();  // marks are durable
  CHECK(f.g().ListDeadLetters("g", 10)->size() == 1);
  auto all = f.g().Redrive("g", RedriveSpec{});
  REQUIRE(all.ok());
  CHECK(*all == 1);
  CHECK(f.g().ListDeadLetters("g", 10)->empty());
  // The full redrive moved "bad" and truncated the DLQ past both letters.
  auto dlq = f.store->DescribeTopic("t.dlq.g");
  REQUIRE(dlq.ok());
  CHECK(dlq->partitions[0].log_start == dlq->partitions[0].high_watermark);
  auto back = f.Deliver("g", "c");
  REQUIRE(back.size() == 1);
  CHECK(*back[0].value == "x1");
  // Letters dead-lettered after all that are listed and redriven as usual.
  REQUIRE(f.g().Reject("g", "c", std::vector<RecordRef>{Refs(back)[0]}, "timeout").ok());
  CHECK(f.g().ListDeadLetters("g", 10)->size() == 1);
  CHECK(*f.g().Redrive("g", only_timeouts) == 1);
  CHECK(f.g().ListDeadLetters("g", 10)->empty());
  CHECK(f.g().Redrive("g", RedriveSpec{"nope"}).status().IsNotFound());
}

TEST_CASE(
    "Queue group: redrive and listing match reasons as globs; the DLQ never expires letters") {
  GroupFixture f;
  f.Topic("t");
  f.Produce("t", 0, 4, "x");
  f.Queue("g", "t");
  // The DLQ keeps letters until purged or redriven, whatever the default retention.
  auto dlq = f.store->DescribeTopic("t.dlq.g");
  REQUIRE(dlq.ok());
  CHECK(dlq->config.retention_ms == -1);
  CHECK(dlq->config.retention_bytes == -1);
  auto d = f.Deliver("g", "c");
  REQUIRE(d.size() == 4);
  const char* reasons[] = {"http_500", "http_503", "http_404", "timeout"};
  for (size_t i = 0; i < 4; ++i)
    REQUIRE(f.g().Reject("g", "c", std::vector<RecordRef>{Refs(d)[i]}, reasons[i]).ok());
  RedriveSpec server_errors;
  server_errors.reason = "http_5*";
  auto moved = f.g().Redrive("g", server_errors);
  REQUIRE(moved.ok());
  CHECK(*moved == 2);
  auto again = f.Deliver("g", "c");
  REQUIRE(again.size() == 2);
  CHECK(*again[0].value == "x0");
  CHECK(*again[1].value == "x1");
  // No wildcard: the exact reason only ("http" matches nothing).
  server_errors.reason = "http";
  CHECK(*f.g().Redrive("g", server_errors) == 0);
  server_errors.reason = "tim?out";
  CHECK(*f.g().Redrive("g", server_errors) == 1);
}

// Rewrites group `name`'s stored config without `key`, as a store written before it existed.
void DropStoredGroupKey(const std::string& data_dir, const std::string& name,
                        const std::string& key) {
  testing::RawStore raw(data_dir);
  rocksdb::ColumnFamilyHandle* meta = raw.Family(format::kMetaColumnFamily);
  std::string v;
  REQUIRE(raw.db().Get(rocksdb::ReadOptions(), meta, format::GroupKey(name), &v).ok());
  format::GroupValue gv;
  REQUIRE(format::Decode(v, &gv).ok());
  std::erase_if(gv.config, [&](const auto& kv) { return kv.first == key; });
  REQUIRE(
      raw.db().Put(rocksdb::WriteOptions(), meta, format::GroupKey(name), format::Encode(gv)).ok());
}

TEST_CASE("Queue group: a DLQ created with the default retention is upgraded to keep letters") {
  GroupFixture f;
  f.Topic("t");
  f.Topic("u");
  f.Queue("old", "t");
  f.Queue("chosen", "u");
  // As an older store left them: both DLQs with a retention, neither group with
  // dlq.retention.ms. "old" still has the default; someone chose one for "chosen".
  const TopicConfig defaults;
  REQUIRE(f.store
              ->AlterTopic("t.dlq.old",
                           {{"retention.ms", std::to_string(defaults.retention_ms)},
                            {"retention.bytes", std::to_string(defaults.retention_bytes)}},
                           0)
              .ok());
  REQUIRE(f.store->AlterTopic("u.dlq.chosen", {{"retention.ms", "3600000"}}, 0).ok());
  f.store.reset();
  DropStoredGroupKey(f.dir.Sub("data"), "old", "dlq.retention.ms");
  DropStoredGroupKey(f.dir.Sub("data"), "chosen", "dlq.retention.ms");
  auto dlq_retention = [&](const std::string& group) {
    auto d = f.g().DescribeGroup(group);
    REQUIRE(d.ok());
    return d->config.dlq_retention_ms;
  };
  for (int open = 0; open < 2; ++open) {  // the upgrade happens once and is then stored
    f.Open();
    CHECK(f.store->DescribeTopic("t.dlq.old")->config.retention_ms == -1);
    CHECK(f.store->DescribeTopic("t.dlq.old")->config.retention_bytes == -1);
    CHECK(dlq_retention("old") == std::optional<int64_t>(-1));
    CHECK(f.store->DescribeTopic("u.dlq.chosen")->config.retention_ms == 3'600'000);
    CHECK(dlq_retention("chosen") == std::optional<int64_t>(3'600'000));
    f.store.reset();
  }
  f.Open();
  // Once stored, a retention set on the DLQ later is the operator's and stays.
  REQUIRE(f.store->AlterTopic("t.dlq.old", {{"retention.ms", "60000"}}, 0).ok());
  f.Reopen();
  CHECK(f.store->DescribeTopic("t.dlq.old")->config.retention_ms == 60'000);
  // New groups store the key: their DLQ keeps letters unless dlq.retention.ms says otherwise.
  GroupConfig c;
  REQUIRE(c.Set("dlq.retention.ms", "86400000").ok());
  CHECK(c.Set("dlq.retention.ms", "-2").IsInvalidArgument());
  f.Queue("daily", "u", c);
  CHECK(f.store->DescribeTopic("u.dlq.daily")->config.retention_ms == 86'400'000);
  CHECK(dlq_retention("daily") == std::optional<int64_t>(86'400'000));
}

TEST_CASE("Stream group: members get even, sticky assignments and stale generations are fenced") {
  GroupFixture f;
  f.Topic("a", 4);
  f.Topic("b", 2);
  auto m1 = f.g().Join("sg", "", {"a", "b"}, 10'000);
  REQUIRE(m1.ok());
  CHECK(m1->assignment.size() == 6);
  auto m2 = f.g().Join("sg", "", {"a", "b"}, 10'000);
  REQUIRE(m2.ok());
  CHECK(m2->generation == m1->generation + 1);
  auto h1 = f.g().Heartbeat("sg", m1->member_id);
  REQUIRE(h1.ok());
  CHECK(h1->assignment.size() == 3);
  CHECK(m2->assignment.size() == 3);
  // A third member: each keeps what it can.
  auto m3 = f.g().Join("sg", "", {"a", "b"}, 10'000);
  auto h1b = f.g().Heartbeat("sg", m1->member_id);
  auto h2b = f.g().Heartbeat("sg", m2->member_id);
  CHECK(h1b->assignment.size() == 2);
  CHECK(h2b->assignment.size() == 2);
  CHECK(m3->assignment.size() == 2);
  for (const auto& tp : h1b->assignment) {
    CHECK(std::find(h1->assignment.begin(), h1->assignment.end(), tp) != h1->assignment.end());
  }
  // Commits: current generation and own partitions only.
  f.Produce("a", 0, 10, "r");
  const TopicPartition owned = h1b->assignment[0];
  f.Produce(owned.topic, owned.partition.value(), 5, "o");
  Status stale =
      f.g().CommitOffsets("sg", m1->member_id, m1->generation, {{owned, Offset(1), "m"}});
  CHECK(stale.code() == StatusCode::kFenced);
  CHECK(stale.message().find("stale generation") != std::string::npos);
  const TopicPartition theirs = h2b->assignment[0];
  CHECK(
      f.g().CommitOffsets("sg", m1->member_id, h1b->generation, {{theirs, Offset(0), ""}}).code() ==
      StatusCode::kFenced);
  REQUIRE(
      f.g().CommitOffsets("sg", m1->member_id, h1b->generation, {{owned, Offset(3), "meta"}}).ok());
  CHECK(f.g()
            .CommitOffsets("sg", m1->member_id, h1b->generation, {{owned, Offset(999), ""}})
            .IsOutOfRange());
  auto fetched = f.g().FetchOffsets("sg", {owned, theirs});
  REQUIRE(fetched.ok());
  CHECK((*fetched)[0].offset == Offset(3));
  CHECK((*fetched)[0].metadata == "meta");
  CHECK((*fetched)[1].offset == Offset(-1));
  CHECK(f.StateOf(owned.topic, owned.partition.value(), 2, "sg") == RecordState::kAcked);
  CHECK(f.StateOf(owned.topic, owned.partition.value(), 3, "sg") == RecordState::kUndelivered);

  // Session timeout: m3 goes silent and its partitions move.
  f.clock.Advance(6000);
  REQUIRE(f.g().Heartbeat("sg", m1->member_id).ok());
  REQUIRE(f.g().Heartbeat("sg", m2->member_id).ok());
  f.clock.Advance(6000);
  auto after = f.g().Heartbeat("sg", m1->member_id);
  REQUIRE(after.ok());
  CHECK(after->assignment.size() == 3);
  CHECK(f.g().Heartbeat("sg", m3->member_id).status().IsNotFound());
  REQUIRE(f.g().Leave("sg", m2->member_id).ok());
  CHECK(f.g().Heartbeat("sg", m1->member_id)->assignment.size() == 6);

  // Committed offsets and the generation survive a restart; nobody is a member any more.
  const int32_t gen = f.g().Heartbeat("sg", m1->member_id)->generation;
  f.Reopen();
  CHECK(f.g().FetchOffsets("sg", {owned})->at(0).offset == Offset(3));
  auto fresh = f.g().Join("sg", "", {"a"}, 10'000);
  REQUIRE(fresh.ok());
  CHECK(fresh->generation > gen);
  CHECK(f.g().CommitOffsets("sg", "", -1, {{owned, Offset(4), ""}}).code() == StatusCode::kFenced);
  REQUIRE(f.g().Leave("sg", fresh->member_id).ok());
  REQUIRE(f.g().CommitOffsets("sg", "", -1, {{owned, Offset(4), ""}}).ok());  // admin reset
  auto desc = f.g().DescribeGroup("sg");
  REQUIRE(desc.ok());
  CHECK(desc->mode == GroupMode::kStream);
  bool found = false;
  for (const auto& p : desc->partitions) {
    if (p.tp == owned) {
      found = true;
      CHECK(p.position == Offset(4));
      CHECK(p.lag == p.log_end.value() - 4);
    }
  }
  CHECK(found);
}

TEST_CASE("Groups: lag, status by dedup key and group listing") {
  GroupFixture f;
  f.Topic("scans", 2);
  f.Produce("scans", 1, {{"s1", "IB-1", kT0}, {"s2", "IB-2", kT0}});
  f.Queue("persist", "scans");
  auto d = f.Deliver("persist", "w", 1);
  REQUIRE(d.size() == 1);
  auto by_key = f.g().StatusByDedupKey("scans", "IB-1");
  REQUIRE(by_key.ok());
  REQUIRE(by_key->size() == 1);
  CHECK((*by_key)[0].state == RecordState::kPending);
  CHECK((*by_key)[0].consumer == "w");
  CHECK((*by_key)[0].deliveries == 1);
  CHECK(f.g().StatusByDedupKey("scans", "IB-404").status().IsNotFound());
  f.clock.Advance(2500);
  auto desc = f.g().DescribeGroup("persist");
  REQUIRE(desc.ok());
  const PartitionLag& p1 = desc->partitions[1];
  CHECK(p1.log_end == Offset(2));
  CHECK(p1.position == Offset(1));
  CHECK(p1.lag == 1);
  CHECK(p1.pending == 1);
  CHECK(p1.oldest_pending_age_ms == 2500);
  REQUIRE(desc->consumers.size() == 1);
  CHECK(desc->consumers[0].pending == 1);
  CHECK(desc->consumers[0].idle_ms == 2500);
  CHECK(f.g().ListGroups() == std::vector<std::string>{"persist"});
  REQUIRE(f.g().DeleteGroup("persist").ok());
  CHECK(f.g().ListGroups().empty());
  f.Reopen();
  CHECK(f.g().ListGroups().empty());
}

TEST_CASE("Queue group: a claim with min_idle 0 takes each entry once") {
  GroupFixture f;
  f.Topic("t");
  f.Produce("t", 0, 5, "x");
  f.Queue("g", "t");
  REQUIRE(f.Deliver("g", "a", 5).size() == 5);
  auto claimed = f.g().Claim("g", "b", 0, 100);
  REQUIRE(claimed.ok());
  REQUIRE(claimed->size() == 5);
  std::set<int64_t> offsets;
  for (const auto& d : *claimed) {
    offsets.insert(d.offset.value());
    CHECK(d.deliveries == 2);
  }
  CHECK(offsets.size() == 5);
  REQUIRE(f.g().Ack("g", "b", Refs(*claimed)).ok());
  CHECK(f.g().Nack("g", "b", Refs(*claimed), 31LL * 24 * 3600 * 1000).IsInvalidArgument());
}

TEST_CASE("Queue group: one call never walks an unbounded backlog of parked records") {
  GroupFixture f;
  f.Topic("t");
  for (int b = 0; b < 10; ++b) {
    RecordBatchBuilder builder;
    for (int i = 0; i < 1000; ++i)
      builder.Add(kT0, std::string_view("same-key"), std::string_view("v"));
    REQUIRE(f.store->Append(Req("t", 0, builder.Build())).ok());
  }
  GroupConfig c;
  c.ordered_keys = true;
  f.Queue("g", "t", c);
  auto d = f.Deliver("g", "w", 10);
  REQUIRE(d.size() == 1);  // the head; everything else waits behind it
  auto desc = f.g().DescribeGroup("g");
  REQUIRE(desc.ok());
  CHECK(desc->partitions[0].position.value() <= 4097);  // the scan stopped at its bound
  CHECK(desc->partitions[0].pending <= 4097);
}

TEST_CASE("Groups: a deleted group stays deleted; a group on a deleted topic reports it") {
  GroupFixture f;
  f.Topic("t");
  f.Produce("t", 0, 2, "x");
  f.Queue("g", "t");
  auto d = f.Deliver("g", "c", 1);
  REQUIRE(f.g().DeleteGroup("g").ok());
  CHECK(f.g().Ack("g", "c", Refs(d)).IsNotFound());
  CHECK(f.g().DeleteGroup("g").IsNotFound());
  f.Reopen();
  CHECK(f.g().ListGroups().empty());

  f.Queue("g2", "t");
  REQUIRE(f.store->DeleteTopic("t").ok());
  auto gone = f.g().Deliver("g2", "c", 1, 100);
  CHECK(gone.status().IsNotFound());
  CHECK(gone.status().message().find("was deleted") != std::string::npos);
  f.Topic("t");  // same name, new topic
  f.Produce("t", 0, 1, "new");
  CHECK(f.g().Deliver("g2", "c", 1, 100).status().IsNotFound());
  f.Reopen();
  CHECK(f.g().Deliver("g2", "c", 1, 100).status().IsNotFound());
}

TEST_CASE("Stream group: uneven subscriptions still split partitions evenly") {
  GroupFixture f;
  f.Topic("t1", 2);
  f.Topic("t2", 2);
  auto a = f.g().Join("sg", "a-placeholder", {"t1"}, 10'000);
  CHECK(a.status().IsNotFound());  // unknown member ids are refused
  auto first = f.g().Join("sg", "", {"t1"}, 10'000);
  auto second = f.g().Join("sg", "", {"t1", "t2"}, 10'000);
  REQUIRE(first.ok());
  REQUIRE(second.ok());
  auto h1 = f.g().Heartbeat("sg", first->member_id);
  REQUIRE(h1.ok());
  CHECK(h1->assignment.size() == 2);
  CHECK(second->assignment.size() == 2);
  for (const auto& tp : h1->assignment) CHECK(tp.topic == "t1");
  CHECK(f.g().CommitOffsets("sg", first->member_id, h1->generation, {}).IsInvalidArgument());
}

}  // namespace
}  // namespace runnel::storage

namespace runnel::storage {
namespace {

TEST_CASE("Queue group: ListPending filters by consumer, idle time and partition") {
  GroupFixture f;
  f.Topic("t", 2);
  f.Produce("t", 0, 3, "a");
  f.Produce("t", 1, 2, "b");
  f.Queue("g", "t");
  auto c1 = f.Deliver("g", "c1", 2);
  f.clock.Advance(10'000);
  auto c2 = f.Deliver("g", "c2", 2);
  REQUIRE(f.g().Nack("g", "c2", std::vector<RecordRef>{Refs(c2)[0]}, 60'000).ok());

  auto all = f.g().ListPending("g", {});
  REQUIRE(all.ok());
  REQUIRE(all->size() == 4);
  for (size_t i = 1; i < all->size(); ++i) {  // (partition, offset) order
    const auto& a = (*all)[i - 1];
    const auto& b = (*all)[i];
    CHECK(std::make_pair(a.partition.value(), a.offset.value()) <
          std::make_pair(b.partition.value(), b.offset.value()));
  }
  PendingQuery by_c1;
  by_c1.consumer = "c1";
  auto mine = f.g().ListPending("g", by_c1);
  REQUIRE(mine->size() == 2);
  for (const auto& e : *mine) {
    CHECK(e.kind == PendingKind::kLocked);
    CHECK(e.idle_ms == 10'000);
    CHECK(e.due_ms > kT0);
  }
  PendingQuery idle;
  idle.min_idle_ms = 5'000;
  CHECK(f.g().ListPending("g", idle)->size() == 2);  // c2's entries are fresh
  PendingQuery retry;
  retry.consumer = "";
  auto entries = *f.g().ListPending("g", retry);
  const auto it = std::find_if(entries.begin(), entries.end(),
                               [](const PendingEntry& e) { return e.kind == PendingKind::kRetry; });
  REQUIRE(it != entries.end());
  CHECK(it->consumer.empty());
  CHECK(it->deliveries == 1);
  PendingQuery p1;
  p1.partition = 1;
  const auto only_p1 = f.g().ListPending("g", p1);
  REQUIRE(only_p1.ok());
  CHECK(only_p1->size() == 2);
  for (const auto& e : *only_p1) CHECK(e.partition == Partition(1));
  PendingQuery one;
  one.max = 1;
  CHECK(f.g().ListPending("g", one)->size() == 1);
  PendingQuery bad;
  bad.partition = 7;
  CHECK(f.g().ListPending("g", bad).status().IsInvalidArgument());
  bad = {};
  bad.min_idle_ms = -1;
  CHECK(f.g().ListPending("g", bad).status().IsInvalidArgument());
  CHECK(f.g().ListPending("nope", {}).status().IsNotFound());
}

TEST_CASE("Queue group: SetQueuePositions rewinds and skips, durably, and checks its input") {
  GroupFixture f;
  f.Topic("t");
  f.Produce("t", 0, 5, "x");
  f.Queue("g", "t");
  auto d = f.Deliver("g", "c", 3);
  REQUIRE(f.g().Ack("g", "c", Refs(d)).ok());
  // Rewind to 1: 1 and 2 are delivered again; the cursor survives a reopen.
  REQUIRE(f.g().SetQueuePositions("g", {{Partition(0), Offset(1)}}).ok());
  CHECK(f.StateOf("t", 0, 1, "g") == RecordState::kUndelivered);
  f.Reopen();
  auto again = f.Deliver("g", "c", 2);
  REQUIRE(again.size() == 2);
  CHECK(again[0].offset == Offset(1));
  CHECK(again[1].offset == Offset(2));
  // Rewinding over pending entries does not deliver them twice.
  REQUIRE(f.g().SetQueuePositions("g", {{Partition(0), Offset(0)}}).ok());
  auto next = f.Deliver("g", "c2");
  std::set<int64_t> offsets;
  for (const auto& r : next) offsets.insert(r.offset.value());
  CHECK(offsets == std::set<int64_t>{0, 3, 4});
  // Skip to the end.
  REQUIRE(f.g().SetQueuePositions("g", {{Partition(0), Offset(5)}}).ok());
  CHECK(f.g().DescribeGroup("g")->partitions[0].lag == 0);
  // Errors change nothing.
  CHECK(f.g().SetQueuePositions("g", {{Partition(0), Offset(6)}}).IsOutOfRange());
  CHECK(f.g()
            .SetQueuePositions("g", {{Partition(0), Offset(1)}, {Partition(3), Offset(0)}})
            .IsInvalidArgument());
  CHECK(f.g().DescribeGroup("g")->partitions[0].position == Offset(5));
  CHECK(f.g().SetQueuePositions("g", {}).IsInvalidArgument());
  CHECK(f.g().SetQueuePositions("nope", {{Partition(0), Offset(0)}}).IsNotFound());
  // An admin CommitOffsets (no member, generation -1) on a queue group is the same move.
  REQUIRE(f.g().CommitOffsets("g", "", -1, {{{"t", Partition(0)}, Offset(2), ""}}).ok());
  CHECK(f.g().DescribeGroup("g")->partitions[0].position == Offset(2));
  CHECK(f.g()
            .CommitOffsets("g", "", -1, {{{"other", Partition(0)}, Offset(0), ""}})
            .IsInvalidArgument());
}

TEST_CASE("Queue group: dead letters are listed from a DLQ offset") {
  GroupFixture f;
  f.Topic("t");
  f.Produce("t", 0, 4, "x");
  f.Queue("g", "t");
  auto d = f.Deliver("g", "c", 4);
  REQUIRE(f.g().Reject("g", "c", Refs(d), "bad").ok());
  auto all = f.g().ListDeadLetters("g", 10);
  REQUIRE(all->size() == 4);
  const int64_t second = (*all)[1].dlq_offset.value();
  auto tail = f.g().ListDeadLetters("g", 10, Offset(second));
  REQUIRE(tail->size() == 3);
  CHECK((*tail)[0].dlq_offset == Offset(second));
  CHECK((*tail)[0].source_offset == Offset(1));
  CHECK(f.g().ListDeadLetters("g", 10, Offset(1'000))->empty());
}

TEST_CASE("Stream group: a Kafka group keeps its protocol, external commits and offset deletes") {
  GroupFixture f;
  f.Topic("t", 2);
  f.Produce("t", 0, 5, "x");
  REQUIRE(f.g().EnsureExternalGroup("kg", GroupProtocol::kKafka).ok());
  REQUIRE(f.g().EnsureExternalGroup("kg", GroupProtocol::kKafka).ok());  // idempotent
  auto d = f.g().DescribeGroup("kg");
  REQUIRE(d.ok());
  CHECK(d->mode == GroupMode::kStream);
  CHECK(d->protocol == GroupProtocol::kKafka);

  auto commit = [&](std::vector<OffsetCommit> offsets) {
    std::promise<Status> p;
    f.g().CommitExternalAsync("kg", offsets, [&p](Status s) { p.set_value(std::move(s)); });
    return p.get_future().get();
  };
  // Any offset >= 0 of an existing partition is kept as given (past the log end too).
  REQUIRE(
      commit({{{"t", Partition(0)}, Offset(3), "m"}, {{"t", Partition(1)}, Offset(9), ""}}).ok());
  CHECK(commit({{{"t", Partition(0)}, Offset(-1), ""}}).code() == StatusCode::kOutOfRange);
  CHECK(commit({{{"t", Partition(5)}, Offset(0), ""}}).code() == StatusCode::kNotFound);
  CHECK(commit({{{"nope", Partition(0)}, Offset(0), ""}}).code() == StatusCode::kNotFound);

  // One group id, one protocol: a native join is refused, naming what the group is.
  auto join = f.g().Join("kg", "", {"t"}, 10'000);
  REQUIRE(!join.ok());
  CHECK(join.status().code() == StatusCode::kInvalidArgument);
  CHECK(join.status().message().find("Kafka consumer group") != std::string::npos);
  // ... and a native group or a queue group refuses Kafka.
  REQUIRE(f.g().Join("ng", "", {"t"}, 10'000).ok());
  CHECK(f.g().EnsureExternalGroup("ng", GroupProtocol::kKafka).code() ==
        StatusCode::kInvalidArgument);
  f.Queue("qg", "t");
  CHECK(f.g().EnsureExternalGroup("qg", GroupProtocol::kKafka).code() ==
        StatusCode::kInvalidArgument);
  {
    std::promise<Status> p;
    f.g().CommitExternalAsync("ng", {{{"t", Partition(0)}, Offset(1), ""}},
                              [&p](Status s) { p.set_value(std::move(s)); });
    CHECK(p.get_future().get().code() == StatusCode::kInvalidArgument);
  }

  // The protocol and the offsets survive a reopen; DeleteOffsets forgets them durably.
  f.Reopen();
  d = f.g().DescribeGroup("kg");
  REQUIRE(d.ok());
  CHECK(d->protocol == GroupProtocol::kKafka);
  auto got = f.g().FetchOffsets("kg", {{"t", Partition(0)}, {"t", Partition(1)}});
  REQUIRE(got.ok());
  CHECK((*got)[0].offset == Offset(3));
  CHECK((*got)[0].metadata == "m");
  CHECK((*got)[1].offset == Offset(9));
  CHECK(!f.g().Join("kg", "", {"t"}, 10'000).ok());
  REQUIRE(f.g().DeleteOffsets("kg", {{"t", Partition(1)}, {"t", Partition(7)}}).ok());
  f.Reopen();
  got = f.g().FetchOffsets("kg", {{"t", Partition(0)}, {"t", Partition(1)}});
  REQUIRE(got.ok());
  CHECK((*got)[0].offset == Offset(3));
  CHECK((*got)[1].offset == Offset(-1));
  CHECK(f.g().DeleteOffsets("qg", {{"t", Partition(0)}}).code() == StatusCode::kInvalidArgument);
  CHECK(f.g().DeleteOffsets("none", {{"t", Partition(0)}}).code() == StatusCode::kNotFound);
}

}  // namespace
}  // namespace runnel::storage
