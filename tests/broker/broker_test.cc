// Integration tests: the client library against runneld over real sockets, and (with
// RUNNEL_BROKER_MODE=embedded) against the broker core in-process.
#include <doctest/doctest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/socket.h>

#include <atomic>
#include <condition_variable>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <thread>

#include "runnel/client/admin.h"
#include "runnel/client/consumer.h"
#include "runnel/client/producer.h"
#include "runnel/common/coding.h"
#include "runnel/common/record_batch.h"
#include "raw_net.h"
#include "test_broker.h"

namespace runnel {
namespace {

using client::Admin;
using client::Consumer;
using client::ConsumerMode;
using client::ConsumerOptions;
using client::ConsumerRecord;
using client::Producer;
using client::ProducerRecord;
using testing::ClosedWithin;
using testing::HttpGet;
using testing::MetricValue;
using testing::RawConnect;
using testing::ReadAll;
using testing::TestBroker;

std::unique_ptr<Producer> MakeProducer(TestBroker& b, client::ProducerOptions o = {}) {
  auto p = Producer::Create(b.Connect(), o);
  REQUIRE(p.ok());
  return std::move(p).value();
}

std::unique_ptr<Consumer> MakeConsumer(std::shared_ptr<client::Connection> c, ConsumerOptions o) {
  auto r = Consumer::Create(std::move(c), o);
  REQUIRE(r.ok());
  return std::move(r).value();
}

// Polls until `n` records arrived or `timeout_ms` passed.
std::vector<ConsumerRecord> PollN(Consumer& c, size_t n, int64_t timeout_ms = 20'000) {
  std::vector<ConsumerRecord> out;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  while (out.size() < n && std::chrono::steady_clock::now() < deadline) {
    auto r = c.Poll(200);
    REQUIRE(r.ok());
    for (auto& rec : *r) out.push_back(std::move(rec));
  }
  return out;
}

TEST_CASE("murmur2 partitions keys exactly like Kafka's Java client") {
  // Values from Kafka's own Utils.murmur2 tests.
  CHECK(client::Murmur2("21") == -973932308);
  CHECK(client::Murmur2("foobar") == -790332482);
  CHECK(client::Murmur2("a-little-bit-long-string") == -985981536);
  CHECK(client::Murmur2("a-little-bit-longer-string") == -1486304829);
  CHECK(client::Murmur2("lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8") == -58897971);
  CHECK(client::Murmur2("abc") == 479470107);
  CHECK(client::PartitionForKey("foobar", 8) == ((-790332482 & 0x7fffffff) % 8));
}

TEST_CASE("produce and consume in stream mode: keyed partitioning, offsets, commits") {
  TestBroker b;
  Admin admin(b.Connect());
  REQUIRE(admin.CreateTopic("orders", 4).ok());
  auto producer = MakeProducer(b);
  constexpr int kN = 5000;
  std::vector<std::future<Result<client::RecordMetadata>>> acks;
  for (int i = 0; i < kN; ++i) {
    acks.push_back(producer->Send(ProducerRecord{"orders", "user-" + std::to_string(i % 97),
                                                 "order-" + std::to_string(i), {}, {}, 0}));
  }
  REQUIRE(producer->Flush(30'000).ok());
  std::map<std::pair<int32_t, int64_t>, int> where;  // (partition, offset) -> i
  for (int i = 0; i < kN; ++i) {
    auto md = acks[static_cast<size_t>(i)].get();
    REQUIRE(md.ok());
    CHECK(md->partition == client::PartitionForKey("user-" + std::to_string(i % 97), 4));
    CHECK(md->offset >= 0);
    CHECK(where.emplace(std::make_pair(md->partition, md->offset), i).second);
  }

  ConsumerOptions co;
  co.group = "billing";
  co.topics = {"orders"};
  auto consumer = MakeConsumer(b.Connect(), co);
  auto records = PollN(*consumer, kN);
  REQUIRE(records.size() == kN);
  std::set<int> seen;
  for (const auto& r : records) {
    auto it = where.find({r.partition, r.offset});
    REQUIRE(it != where.end());
    CHECK(*r.value == "order-" + std::to_string(it->second));
    CHECK(*r.key == "user-" + std::to_string(it->second % 97));
    seen.insert(it->second);
  }
  CHECK(seen.size() == kN);
  REQUIRE(consumer->Commit().ok());
  consumer->Close();

  // The group resumes after its commit: nothing old is read again.
  auto again = MakeConsumer(b.Connect(), co);
  REQUIRE(producer->Send(ProducerRecord{"orders", "k", "late", {}, {}, 0}).get().ok());
  auto rest = PollN(*again, 1, 10'000);
  REQUIRE(rest.size() == 1);
  CHECK(*rest[0].value == "late");
  CHECK(again->Poll(300)->empty());
}

TEST_CASE("the dedup window: each record's metadata names its own offset or its original's") {
  TestBroker b;
  Admin admin(b.Connect());
  REQUIRE(admin.CreateTopic("scans", 1, {{"dedup.window.ms", "60000"}}).ok());
  client::ProducerOptions po;
  po.linger_ms = 200;  // the records of one round share a batch
  auto producer = MakeProducer(b, po);
  auto scan = [&](const std::string& dedup_key) {
    ProducerRecord r{"scans", std::nullopt, "scan of " + dedup_key, {}, {}, 0};
    r.headers.emplace_back("runnel.dedup.key", dedup_key);
    return producer->Send(std::move(r));
  };
  std::vector<std::future<Result<client::RecordMetadata>>> first;
  for (const char* k : {"a", "b", "c"}) first.push_back(scan(k));
  REQUIRE(producer->Flush(10'000).ok());
  std::vector<int64_t> original;
  for (auto& f : first) {
    auto md = f.get();
    REQUIRE(md.ok());
    CHECK_FALSE(md->duplicate);
    original.push_back(md->offset);
  }
  CHECK(original == std::vector<int64_t>{0, 1, 2});

  // One batch: c again, d new, a again, d again (within the batch), e new.
  std::vector<std::future<Result<client::RecordMetadata>>> second;
  for (const char* k : {"c", "d", "a", "d", "e"}) second.push_back(scan(k));
  REQUIRE(producer->Flush(10'000).ok());
  std::vector<std::pair<int64_t, bool>> got;
  for (auto& f : second) {
    auto md = f.get();
    REQUIRE(md.ok());
    CHECK(md->partition == 0);
    got.emplace_back(md->offset, md->duplicate);
  }
  const std::vector<std::pair<int64_t, bool>> want{
      {2, true}, {3, false}, {0, true}, {3, true}, {4, false}};
  CHECK(got == want);
  CHECK(producer->GetStats().batches_sent == 2);
}

// Holds produce requests while closed (the broker has not answered them yet) and passes
// everything else through; opening it forwards the held requests in order.
class GatedConnection final : public client::Connection {
 public:
  explicit GatedConnection(std::shared_ptr<client::Connection> inner) : inner_(std::move(inner)) {}
  void Send(wire::Api api, std::vector<std::string> body, int64_t timeout_ms,
            Callback done) override {
    {
      std::lock_guard lk(mu_);
      if (closed_ && api == wire::Api::kProduce) {
        held_.push_back({std::move(body), timeout_ms, std::move(done)});
        cv_.notify_all();
        return;
      }
    }
    inner_->Send(api, std::move(body), timeout_ms, std::move(done));
  }
  std::string Describe() const override { return "gated " + inner_->Describe(); }
  void Close() {
    std::lock_guard lk(mu_);
    closed_ = true;
  }
  bool WaitHeld(size_t n) {
    std::unique_lock lk(mu_);
    return cv_.wait_for(lk, std::chrono::seconds(60), [&] { return held_.size() >= n; });
  }
  size_t held() {
    std::lock_guard lk(mu_);
    return held_.size();
  }
  void Open() {
    std::vector<Held> held;
    {
      std::lock_guard lk(mu_);
      closed_ = false;
      held.swap(held_);
    }
    for (Held& h : held)
      inner_->Send(wire::Api::kProduce, std::move(h.body), h.timeout_ms, std::move(h.done));
  }

 private:
  struct Held {
    std::vector<std::string> body;
    int64_t timeout_ms;
    Callback done;
  };
  std::shared_ptr<client::Connection> inner_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool closed_ = false;
  std::vector<Held> held_;
};

TEST_CASE("producer: records sent while the in-flight window is full gather into one batch") {
  TestBroker b;
  auto gate = std::make_shared<GatedConnection>(b.Connect());
  client::ProducerOptions po;
  po.linger_ms = 0;  // every record would be its own batch if it could be sent at once
  po.max_in_flight_per_partition = 1;
  auto made = Producer::Create(gate, po);
  REQUIRE(made.ok());
  Producer& producer = **made;
  REQUIRE(Admin(b.Connect()).CreateTopic("e2e", 1, {}).ok());
  gate->Close();
  std::vector<std::future<Result<client::RecordMetadata>>> acks;
  acks.push_back(producer.Send({"e2e", std::nullopt, "r0", {}, 0, 0}));
  REQUIRE(gate->WaitHeld(1));  // r0 is in flight, unanswered: the window is full
  for (int i = 1; i < 100; ++i)
    acks.push_back(producer.Send({"e2e", std::nullopt, "r" + std::to_string(i), {}, 0, 0}));
  CHECK(gate->held() == 1);  // nothing else could be sent meanwhile
  gate->Open();
  REQUIRE(producer.Flush(30'000).ok());
  for (int i = 0; i < 100; ++i) {
    auto md = acks[static_cast<size_t>(i)].get();
    REQUIRE(md.ok());
    CHECK(md->offset == i);
  }
  // r0 alone, then r1..r99 together: not 99 single-record batches queued behind r0.
  CHECK(producer.GetStats().batches_sent == 2);
}

TEST_CASE("queue mode: deliver, ack, nack with delay, reject to the dead-letter topic") {
  TestBroker b;
  Admin admin(b.Connect());
  REQUIRE(admin.CreateTopic("jobs", 2).ok());
  auto producer = MakeProducer(b);
  for (int i = 0; i < 200; ++i)
    producer->Send(ProducerRecord{"jobs", std::nullopt, "job-" + std::to_string(i), {}, {}, 0});
  REQUIRE(producer->Flush(10'000).ok());

  ConsumerOptions co;
  co.mode = ConsumerMode::kQueue;
  co.group = "workers";
  co.topics = {"jobs"};
  co.queue_config = {{"max.deliveries", "3"}};
  auto consumer = MakeConsumer(b.Connect(), co);
  auto got = PollN(*consumer, 200);
  REQUIRE(got.size() == 200);
  std::vector<ConsumerRecord> ack(got.begin(), got.begin() + 198);
  REQUIRE(consumer->Ack(ack).ok());
  REQUIRE(consumer->Reject(got[198], "malformed").ok());
  const auto t0 = std::chrono::steady_clock::now();  // before the broker saw the nack
  REQUIRE(consumer->Nack(got[199], 300).ok());
  // Acking twice is an error naming the record.
  CHECK(consumer->Ack(got[0]).IsNotFound());

  // The nacked one comes back after its delay (a causal bound: not before the nack plus 300 ms,
  // less the broker clock's millisecond truncation),
  // with its delivery count.
  auto retry = PollN(*consumer, 1, 5'000);
  REQUIRE(retry.size() == 1);
  CHECK(std::chrono::steady_clock::now() - t0 >= std::chrono::milliseconds(298));  // ms clocks
  CHECK(retry[0].offset == got[199].offset);
  CHECK(retry[0].deliveries == 2);
  REQUIRE(consumer->Ack(retry[0]).ok());

  auto dead = admin.ListDeadLetters("workers");
  REQUIRE(dead.ok());
  REQUIRE(dead->size() == 1);
  CHECK((*dead)[0].reason == "malformed");
  CHECK(*(*dead)[0].value == *got[198].value);

  auto d = admin.DescribeGroup("workers");
  REQUIRE(d.ok());
  CHECK(d->counters.acks == 199);
  CHECK(d->counters.rejects == 1);
  CHECK(d->counters.nacks == 1);
  CHECK(d->counters.dead_lettered == 1);
  int64_t pending = 0;
  for (const auto& p : d->partitions) pending += p.pending;
  CHECK(pending == 0);

  auto status = admin.StatusOf("jobs", got[198].partition, got[198].offset);
  REQUIRE(status.ok());
  REQUIRE(status->size() == 1);
  CHECK((*status)[0].state == proto::RecordStateWire::kDeadLettered);
}

TEST_CASE("a consumer that dies mid-work has its records redelivered after the lock expires") {
  TestBroker b;
  Admin admin(b.Connect());
  REQUIRE(admin.CreateTopic("tasks", 1).ok());
  REQUIRE(admin.CreateQueueGroup("g", "tasks", {{"lock.timeout.ms", "500"}}).ok());
  auto producer = MakeProducer(b);
  for (int i = 0; i < 10; ++i)
    producer->Send(ProducerRecord{"tasks", std::nullopt, std::to_string(i), {}, {}, 0});
  REQUIRE(producer->Flush(10'000).ok());

  ConsumerOptions co;
  co.mode = ConsumerMode::kQueue;
  co.group = "g";
  co.topics = {"tasks"};
  std::vector<ConsumerRecord> taken;
  {
    co.consumer_name = "doomed";
    auto doomed = MakeConsumer(b.Connect(), co);  // its own connection, dropped below
    taken = PollN(*doomed, 10);
    REQUIRE(taken.size() == 10);
  }
  co.consumer_name = "survivor";
  auto survivor = MakeConsumer(b.Connect(), co);
  CHECK(survivor->Poll(100)->empty());  // still locked
  auto again = PollN(*survivor, 10, 5'000);
  REQUIRE(again.size() == 10);
  for (const auto& r : again) CHECK(r.deliveries == 2);
  REQUIRE(survivor->Ack(again).ok());
}

TEST_CASE("rebalance while 3 consumers join and leave: nothing skipped, no partition owned twice") {
  TestBroker b;
  Admin admin(b.Connect());
  REQUIRE(admin.CreateTopic("events", 6).ok());
  auto producer = MakeProducer(b);
  std::atomic<int> produced{0};
  auto produce = [&](int n) {
    for (int i = 0; i < n; ++i) {
      producer->Send(ProducerRecord{"events", std::to_string(produced.load()), "v", {}, {}, 0});
      ++produced;
    }
    REQUIRE(producer->Flush(10'000).ok());
  };

  std::mutex mu;
  std::set<std::pair<int32_t, int64_t>> consumed;
  struct Member {
    std::unique_ptr<Consumer> consumer;
    std::thread thread;
    std::atomic<bool> stop{false};
  };
  auto start = [&](Member& m) {
    ConsumerOptions co;
    co.group = "analytics";
    co.topics = {"events"};
    co.session_timeout_ms = 6'000;
    co.heartbeat_interval_ms = 200;
    co.auto_commit_interval_ms = 200;
    m.consumer = MakeConsumer(b.Connect(), co);
    m.thread = std::thread([&m, &mu, &consumed] {
      while (!m.stop.load()) {
        auto r = m.consumer->Poll(100);
        if (!r.ok()) continue;
        std::lock_guard lk(mu);
        for (const auto& rec : *r) consumed.insert({rec.partition, rec.offset});
      }
      m.consumer->Close();
    });
  };
  auto stop = [](Member& m) {
    m.stop = true;
    m.thread.join();
  };
  auto check_assignment = [&](size_t members) {
    // Wait until the group settled with `members` members, then check ownership is disjoint.
    for (int attempt = 0; attempt < 100; ++attempt) {
      auto d = admin.DescribeGroup("analytics");
      REQUIRE(d.ok());
      if (d->consumers.size() == members) {
        std::set<std::pair<std::string, int32_t>> owned;
        size_t total = 0;
        for (const auto& c : d->consumers) {
          for (const auto& tp : c.assignment) {
            CHECK(owned.insert({tp.topic, tp.partition}).second);  // owned once
            ++total;
          }
        }
        CHECK(total == 6);  // and every partition owned
        return;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    FAIL("group did not settle");
  };

  Member a, bm, c;
  start(a);
  produce(600);
  start(bm);
  check_assignment(2);
  produce(600);
  start(c);
  check_assignment(3);
  produce(600);
  stop(a);
  check_assignment(2);
  produce(600);
  stop(bm);
  check_assignment(1);
  produce(600);
  // Wait for the last member to drain.
  for (int i = 0; i < 200; ++i) {
    {
      std::lock_guard lk(mu);
      if (consumed.size() >= 3000) break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  stop(c);
  std::lock_guard lk(mu);
  auto topics = admin.DescribeTopics({"events"});
  REQUIRE(topics.ok());
  int64_t total = 0;
  for (const auto& p : (*topics)[0].partitions) {
    total += p.high_watermark;
    for (int64_t o = 0; o < p.high_watermark; ++o) {
      INFO("partition " << p.partition << " offset " << o);
      CHECK(consumed.count({p.partition, o}) == 1);  // nothing skipped
    }
  }
  CHECK(total == 3000);
}

// The waits below are an hour long: an answer within the call's 2-minute guard means the fetch
// was woken by the data, not by its deadline.
TEST_CASE("long-poll fetch wakes as soon as the high watermark moves, or min_bytes is there") {
  TestBroker b({"--max-wait", "1h"});
  Admin admin(b.Connect());
  REQUIRE(admin.CreateTopic("feed", 1).ok());
  auto conn = b.Connect();
  proto::FetchRequest req;
  req.max_wait_ms = b.embedded() ? 1'000 : 3'600'000;  // embedded: the default 30 s bound
  req.partitions.push_back({"feed", 0, 0, 1 << 20});
  auto fut = std::async(std::launch::async, [&] {
    return client::Call<proto::FetchResponse>(*conn, req, 120'000);
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  auto producer = MakeProducer(b);
  REQUIRE(producer->Send(ProducerRecord{"feed", std::nullopt, "hello", {}, {}, 0}).get().ok());
  auto r = fut.get();
  REQUIRE(r.ok());
  REQUIRE(r->partitions.size() == 1);
  CHECK_FALSE(r->partitions[0].records.bytes.empty());
  CHECK(r->partitions[0].high_watermark == 1);

  // min_bytes: parked through many small appends (re-read on the workers, not the committer),
  // answered once 8 KiB are there, with all of them.
  req.min_bytes = 8 << 10;
  req.partitions[0].offset = 1;
  auto big = std::async(std::launch::async, [&] {
    return client::Call<proto::FetchResponse>(*conn, req, 120'000);
  });
  int sent = 0;
  std::mt19937 rng(7);
  while (big.wait_for(std::chrono::milliseconds(0)) != std::future_status::ready && sent < 64) {
    std::string value(1000, '\0');  // incompressible: the producer compresses with LZ4
    for (char& ch : value) ch = static_cast<char>(rng());
    REQUIRE(producer->Send(ProducerRecord{"feed", std::nullopt, value, {}, {}, 0}).get().ok());
    ++sent;
  }
  auto answer = big.get();
  REQUIRE_MESSAGE(answer.ok(), answer.status().ToString());
  CHECK(answer->partitions[0].records.bytes.size() >= (8u << 10));
  CHECK(sent >= 8);

  // With nothing to read the deadline ends the wait with an empty answer.
  req.min_bytes = 1;
  req.max_wait_ms = 100;
  auto end = admin.ListOffset("feed", 0, proto::OffsetSpec::kLatest);
  REQUIRE(end.ok());
  req.partitions[0].offset = *end;
  auto empty = client::Call<proto::FetchResponse>(*conn, req, 30'000);
  REQUIRE(empty.ok());
  CHECK(empty->partitions[0].records.bytes.empty());
}

TEST_CASE("clear errors: unknown topic, oversized batch, bad partition, malformed body") {
  TestBroker b({"--auto-create-topics=false"});
  Admin admin(b.Connect());
  auto conn = b.Connect();
  CHECK(admin.ListOffset("nope", 0, proto::OffsetSpec::kLatest).status().IsNotFound());
  auto p = Producer::Create(b.Connect());
  REQUIRE(p.ok());
  auto r = (*p)->Send(ProducerRecord{"nope", std::nullopt, "x", {}, {}, 0}).get();
  CHECK(r.status().IsNotFound());

  // Topics get created explicitly; a batch above max.message.bytes is refused as TooLarge.
  REQUIRE(admin.CreateTopic("small", 1, {{"max.message.bytes", "1024"}}).ok());
  client::ProducerOptions po;
  po.compression = Compression::kNone;
  auto big = MakeProducer(b, po);
  auto tl = big->Send(ProducerRecord{"small", std::nullopt, std::string(5000, 'x'), {}, {}, 0}).get();
  CHECK(tl.status().code() == StatusCode::kTooLarge);
  auto bad_part = big->Send(ProducerRecord{"small", std::nullopt, "x", {}, 7, 0}).get();
  CHECK(bad_part.status().IsNotFound());
  // Nothing of that reached the log; a normal record still goes through.
  auto ok = big->Send(ProducerRecord{"small", std::nullopt, "fine", {}, {}, 0}).get();
  REQUIRE(ok.ok());
  CHECK(ok->offset == 0);

  // A body that does not parse gets malformed_request, and the connection stays usable.
  CHECK(admin.CreateTopic("../x", 1).IsInvalidArgument());  // path-like names are refused
  std::promise<Result<std::string>> raw;
  conn->Send(wire::Api::kFetch, {std::string("\x01\x02", 2)}, 5000,
             [&](Result<std::string> body) { raw.set_value(std::move(body)); });
  auto body = raw.get_future().get();
  REQUIRE(body.ok());
  auto decoded = proto::DecodeResponse<proto::FetchResponse>(*body);
  CHECK(decoded.status().IsInvalidArgument());
  CHECK(decoded.status().message().find("malformed_request") != std::string::npos);
  CHECK(admin.CreateTopic("small", 1).code() == StatusCode::kAlreadyExists);
}

// ---- TCP only ---------------------------------------------------------------------------------

TEST_CASE("hostile bytes get an error or a closed connection while other clients keep working") {
  if (testing::EmbeddedMode()) return;
  TestBroker b;
  auto producer = MakeProducer(b);
  REQUIRE(producer->Send(ProducerRecord{"t", std::nullopt, "before", {}, {}, 0}).get().ok());

  SUBCASE("oversized length prefix: too_large, then closed") {
    const int fd = RawConnect(b.port());
    std::string frame;
    PutFixed32BE(&frame, 0x7fffffff);
    frame += "junk";
    ::send(fd, frame.data(), frame.size(), MSG_NOSIGNAL);
    const std::string reply = ReadAll(fd);
    ::close(fd);
    REQUIRE(reply.size() >= wire::kFrameHeaderBytes + 2);
    auto s = proto::DecodeResponse<proto::EmptyResponse>(reply.substr(wire::kFrameHeaderBytes));
    CHECK(s.status().code() == StatusCode::kTooLarge);
  }
  SUBCASE("unknown api id: unknown_api, connection stays open") {
    const int fd = RawConnect(b.port());
    std::string frame = wire::EncodeFrame(999, 0, 77, "");
    frame += wire::EncodeFrame(static_cast<uint16_t>(wire::Api::kApiVersions), 0, 78, "");
    ::send(fd, frame.data(), frame.size(), MSG_NOSIGNAL);
    wire::FrameDecoder dec;
    char buf[4096];
    std::vector<wire::Frame> frames;
    while (frames.size() < 2) {
      const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
      REQUIRE(n > 0);
      dec.Append(std::string_view(buf, static_cast<size_t>(n)));
      for (;;) {
        auto f = dec.Next();
        REQUIRE(f.ok());
        if (!f->has_value()) break;
        frames.push_back(std::move(**f));
      }
    }
    ::close(fd);
    CHECK(frames[0].header.correlation_id == 77);
    CHECK(DecodeFixed16BE(frames[0].body.data()) ==
          static_cast<uint16_t>(wire::ErrorCode::kUnknownApi));
    CHECK(frames[1].header.correlation_id == 78);
    CHECK(proto::DecodeResponse<proto::ApiVersionsResponse>(frames[1].body).ok());
  }
  SUBCASE("random bytes and truncated frames") {
    std::mt19937 rng(42);
    for (int i = 0; i < 50; ++i) {
      const int fd = RawConnect(b.port());
      std::string junk(rng() % 300, '\0');
      for (auto& ch : junk) ch = static_cast<char>(rng());
      if (i % 2 == 0) junk = wire::EncodeFrame(1, 0, 1, std::string(100, 'x')).substr(0, 40);
      ::send(fd, junk.data(), junk.size(), MSG_NOSIGNAL);
      ::shutdown(fd, SHUT_WR);
      ReadAll(fd);  // an error frame or nothing, then EOF: never a hang
      ::close(fd);
    }
  }
  // The well-behaved client is unaffected.
  auto after = producer->Send(ProducerRecord{"t", std::nullopt, "after", {}, {}, 0}).get();
  REQUIRE(after.ok());
  CHECK(after->offset >= 1);
}

TEST_CASE("HTTP serves health, Prometheus metrics and JSON stats") {
  if (testing::EmbeddedMode()) return;
  TestBroker b;
  Admin admin(b.Connect());
  REQUIRE(admin.CreateTopic("metered", 2).ok());
  auto producer = MakeProducer(b);
  for (int i = 0; i < 10; ++i)
    producer->Send(ProducerRecord{"metered", std::nullopt, "x", {}, 0, 0});
  REQUIRE(producer->Flush(10'000).ok());
  REQUIRE(admin.CreateQueueGroup("mg", "metered").ok());

  const std::string health = HttpGet(b.http_port(), "/health");
  CHECK(health.find("200 OK") != std::string::npos);
  const std::string metrics = HttpGet(b.http_port(), "/metrics");
  CHECK(metrics.find("runnel_partition_log_end_offset{topic=\"metered\",partition=\"0\"} 10") !=
        std::string::npos);
  CHECK(metrics.find("runnel_group_lag{group=\"mg\"} 10") != std::string::npos);
  CHECK(metrics.find("runnel_request_latency_seconds_bucket{protocol=\"native\",api=\"Produce\",le=\"+Inf\"}") !=
        std::string::npos);
  CHECK(metrics.find("runnel_fsync_latency_seconds_count") != std::string::npos);
  const std::string stats = HttpGet(b.http_port(), "/api/v1/stats");
  CHECK(stats.find("\"name\":\"mg\"") != std::string::npos);
  CHECK(stats.find("\"success_rate\"") != std::string::npos);
  CHECK(HttpGet(b.http_port(), "/nope").find("404") != std::string::npos);
  auto json = admin.Stats();
  REQUIRE(json.ok());
  CHECK(json->find("\"metered\"") != std::string::npos);
}

TEST_CASE("runneld: clean restart keeps data; port taken and locked data dir fail clearly") {
  if (testing::EmbeddedMode()) return;
  TestBroker b;
  auto producer = MakeProducer(b);
  REQUIRE(producer->Send(ProducerRecord{"keep", std::nullopt, "v", {}, {}, 0}).get().ok());
  producer.reset();
  const int status = b.Stop();
  CHECK(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
  b.Start();
  Admin admin(b.Connect());
  CHECK(*admin.ListOffset("keep", 0, proto::OffsetSpec::kLatest) == 1);

  testing::TempDir other;
  auto [code, out] = TestBroker::RunToExit(
      {"--data-dir", other.Sub("d"), "--port", std::to_string(b.port()), "--no-http"});
  CHECK(code == 1);
  CHECK(out.find("cannot listen on 127.0.0.1:" + std::to_string(b.port())) != std::string::npos);
  auto [code2, out2] = TestBroker::RunToExit(
      {"--data-dir", b.data_dir(), "--port", "0", "--no-http"});
  CHECK(code2 == 1);
  CHECK(out2.find("is locked by another runneld (pid " + std::to_string(b.pid()) + ")") !=
        std::string::npos);
}

TEST_CASE("runneld SIGKILLed mid-stream: every acknowledged record present exactly once") {
  if (testing::EmbeddedMode()) return;
  TestBroker b;
  Admin admin(b.Connect());
  REQUIRE(admin.CreateTopic("ledger", 4).ok());
  client::ProducerOptions po;
  po.request_timeout_ms = 2'000;
  po.retry_backoff_ms = 20;
  po.linger_ms = 1;
  po.batch_bytes = 4096;
  auto producer = MakeProducer(b, po);
  constexpr int kN = 30'000;
  std::mutex mu;
  std::set<int> acked;
  std::atomic<int> failed{0};
  std::thread killer([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    b.Kill();
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    b.Start();  // same port: the producer's connection reconnects
  });
  for (int i = 0; i < kN; ++i) {
    producer->Send(ProducerRecord{"ledger", std::to_string(i % 64), std::to_string(i), {}, {}, 0},
                   [&, i](Result<client::RecordMetadata> r) {
                     std::lock_guard lk(mu);
                     if (r.ok()) {
                       acked.insert(i);
                     } else {
                       ++failed;
                     }
                   });
    if (i % 1000 == 0) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  killer.join();
  REQUIRE(producer->Flush(60'000).ok());
  CHECK(failed.load() == 0);  // retries outlived the restart
  CHECK(producer->GetStats().retries > 0);  // the kill really hit the stream

  ConsumerOptions co;
  co.topics = {"ledger"};
  auto consumer = MakeConsumer(b.Connect(), co);
  std::map<int, int> copies;
  auto records = PollN(*consumer, acked.size(), 30'000);
  for (const auto& r : records) ++copies[std::stoi(*r.value)];
  CHECK(consumer->Poll(300)->empty());
  std::lock_guard lk(mu);
  CHECK(acked.size() == kN);
  for (int i : acked) {
    INFO("record " << i);
    CHECK(copies[i] == 1);
  }
  for (const auto& [i, n] : copies) CHECK(n == 1);  // idempotence: no duplicates at all
}

}  // namespace
}  // namespace runnel

namespace runnel {
namespace {

TEST_CASE("producer buffer memory: fail fast when configured, block otherwise") {
  TestBroker b;
  client::ProducerOptions po;
  po.buffer_memory = 4096;
  po.block_on_buffer_full = false;
  po.linger_ms = 5'000;  // nothing leaves the buffer on its own
  auto p = MakeProducer(b, po);
  std::vector<std::future<Result<client::RecordMetadata>>> sent;
  for (int i = 0; i < 40; ++i)
    sent.push_back(p->Send(ProducerRecord{"buf", std::nullopt, std::string(200, 'x'), {}, {}, 0}));
  int busy = 0;
  for (auto& f : sent) {
    if (f.wait_for(std::chrono::seconds(0)) == std::future_status::ready) {
      auto r = f.get();
      if (r.status().code() == StatusCode::kBusy) ++busy;
    }
  }
  CHECK(busy > 0);  // refused at once instead of growing past 4 KiB
  REQUIRE(p->Flush(10'000).ok());

  po.block_on_buffer_full = true;
  po.linger_ms = 1;
  auto blocking = MakeProducer(b, po);
  std::atomic<int> ok{0};
  std::mutex err_mu;
  std::string first_error;
  for (int i = 0; i < 200; ++i) {
    blocking->Send(ProducerRecord{"buf", std::nullopt, std::string(200, 'y'), {}, {}, 0},
                   [&](Result<client::RecordMetadata> r) {
                     ok += r.ok();
                     std::lock_guard lk(err_mu);
                     if (!r.ok() && first_error.empty()) first_error = r.status().ToString();
                   });
  }
  REQUIRE(blocking->Flush(10'000).ok());
  INFO(first_error);
  CHECK(ok.load() == 200);  // every send waited for room and went through
}

TEST_CASE("consumers reconnect after a broker restart and carry on") {
  if (testing::EmbeddedMode()) return;
  TestBroker b;
  Admin admin(b.Connect());
  REQUIRE(admin.CreateTopic("resilient", 2).ok());
  auto producer = MakeProducer(b);
  for (int i = 0; i < 100; ++i)
    producer->Send(ProducerRecord{"resilient", std::to_string(i), std::to_string(i), {}, {}, 0});
  REQUIRE(producer->Flush(10'000).ok());

  ConsumerOptions so;
  so.group = "s";
  so.topics = {"resilient"};
  auto stream = MakeConsumer(b.Connect(), so);
  ConsumerOptions qo;
  qo.mode = ConsumerMode::kQueue;
  qo.group = "q";
  qo.topics = {"resilient"};
  auto queue = MakeConsumer(b.Connect(), qo);
  REQUIRE(PollN(*stream, 100).size() == 100);
  auto first = PollN(*queue, 100);
  REQUIRE(first.size() == 100);
  REQUIRE(queue->Ack(first).ok());
  REQUIRE(stream->Commit().ok());

  b.Restart();  // same port; every client connection breaks
  for (int i = 100; i < 150; ++i)
    producer->Send(ProducerRecord{"resilient", std::to_string(i), std::to_string(i), {}, {}, 0});
  REQUIRE(producer->Flush(20'000).ok());
  auto more = PollN(*stream, 50, 20'000);
  CHECK(more.size() == 50);
  for (const auto& r : more) CHECK(std::stoi(*r.value) >= 100);  // resumed, nothing re-read
  auto qmore = PollN(*queue, 50, 20'000);
  CHECK(qmore.size() == 50);
  CHECK(queue->Ack(qmore).ok());
}

TEST_CASE("runneld reads a TOML config file; flags and file agree on names") {
  if (testing::EmbeddedMode()) return;
  testing::TempDir dir;
  {
    std::ofstream cfg(dir.Sub("runneld.toml"));
    cfg << "auto-create-topics = false\ndefault-partitions = 3\nretention = \"2h\"\n";
  }
  TestBroker b({"--config", dir.Sub("runneld.toml")});
  Admin admin(b.Connect());
  auto p = Producer::Create(b.Connect());
  REQUIRE(p.ok());
  // auto-create is off: an unknown topic is an error, not a new topic.
  CHECK((*p)->Send(ProducerRecord{"ghost", std::nullopt, "x", {}, {}, 0}).get().status().IsNotFound());
  REQUIRE(admin.CreateTopic("configured", 1).ok());
  auto md = admin.DescribeTopics({"configured"});
  REQUIRE(md.ok());
  bool found = false;
  for (const auto& [k, v] : (*md)[0].config) {
    if (k == "retention.ms") {
      CHECK(v == "7200000");  // the file's default topic retention
      found = true;
    }
  }
  CHECK(found);

  auto [code, out] = TestBroker::RunToExit({"--port", "not-a-number"});
  CHECK(code != 0);
  auto [code2, out2] = TestBroker::RunToExit(
      {"--data-dir", dir.Sub("d2"), "--retention", "7 fortnights", "--no-http", "--port", "0"});
  CHECK(code2 == 1);
  CHECK(out2.find("--retention: invalid duration unit") != std::string::npos);
  // Sizes are range-checked before they are narrowed (5 GiB used to wrap into an int32).
  for (const auto& [flag, value] : std::vector<std::pair<std::string, std::string>>{
           {"--max-message-bytes", "5GiB"}, {"--max-frame-bytes", "0"}, {"--max-wait", "100d"},
           {"--retention-check-interval", "-1"}}) {
    const auto run = TestBroker::RunToExit(
        {"--data-dir", dir.Sub("d3"), flag, value, "--no-http", "--port", "0"});
    CHECK(run.first == 1);
    INFO(run.second);
    CHECK(run.second.find(flag + ": " + value + " is out of range") != std::string::npos);
  }
}

TEST_CASE("a client that never reads its responses is cut off at its own budget") {
  if (testing::EmbeddedMode()) return;
  TestBroker b({"--max-inflight-bytes-per-connection", "1MiB"});
  auto producer = MakeProducer(b);
  REQUIRE(producer->Send(ProducerRecord{"big", std::nullopt, std::string(100'000, 'z'), {}, 0, 0}).get().ok());
  // Ask for the same 100 KB again and again without ever reading the answers.
  const int fd = RawConnect(b.port());
  proto::FetchRequest req;
  req.partitions.push_back({"big", 0, 0, 1 << 20});
  const std::string frame = wire::EncodeFrame(static_cast<uint16_t>(wire::Api::kFetch), 0, 1,
                                              proto::EncodeBody(req));
  timeval tv{0, 200'000};
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  size_t sent = 0;
  constexpr int kRequests = 400'000;  // ~20 MB of requests, ~40 GB of answers if all were read
  for (int i = 0; i < kRequests; ++i) {
    const ssize_t n = ::send(fd, frame.data(), frame.size(), MSG_NOSIGNAL);
    if (n <= 0) break;  // the broker stopped reading us: the kernel buffers filled up
    sent += static_cast<size_t>(n);
  }
  CHECK(sent < kRequests * frame.size());  // we were throttled
  // Meanwhile everyone else is served normally.
  for (int i = 0; i < 20; ++i) {
    auto r = producer->Send(ProducerRecord{"other", std::nullopt, "ok", {}, {}, 0}).get();
    REQUIRE(r.ok());
  }
  // The broker's memory for this connection stayed bounded (responses are ~100 KB each).
  const std::string metrics = HttpGet(b.http_port(), "/metrics");
  const size_t at = metrics.find("\nrunnel_inflight_bytes ");
  REQUIRE(at != std::string::npos);
  const double inflight = std::stod(metrics.substr(at + 23));
  CHECK(inflight < 8.0 * 1024 * 1024);
  ::close(fd);
}

// ---- hostile clients --------------------------------------------------------------------------

// A well-behaved producer on its own thread, sending one record at a time, for as long as the
// hostile clients are at work: their attacks must not take its service away.
class SteadyProducer {
 public:
  explicit SteadyProducer(TestBroker& b) : producer_(MakeProducer(b)) {
    thread_ = std::thread([this] {
      while (!stop_.load()) {
        const auto t0 = std::chrono::steady_clock::now();
        auto r = producer_->Send(ProducerRecord{"steady", std::nullopt, "v", {}, {}, 0}).get();
        const double ms = std::chrono::duration<double, std::milli>(
                              std::chrono::steady_clock::now() - t0).count();
        std::lock_guard lk(mu_);
        (r.ok() ? ok_ : failed_)++;
        max_ms_ = std::max(max_ms_, ms);
      }
    });
  }
  ~SteadyProducer() { Stop(); }
  void Stop() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
  }
  int64_t ok() const {
    std::lock_guard lk(mu_);
    return ok_;
  }
  int64_t failed() const {
    std::lock_guard lk(mu_);
    return failed_;
  }
  double max_ms() const {
    std::lock_guard lk(mu_);
    return max_ms_;
  }

 private:
  std::unique_ptr<Producer> producer_;
  std::atomic<bool> stop_{false};
  mutable std::mutex mu_;
  int64_t ok_ = 0, failed_ = 0;
  double max_ms_ = 0;
  std::thread thread_;
};

// One raw produce request with `batch`; returns the partition's error.
proto::ItemError RawProduce(client::Connection& conn, const std::string& topic, std::string batch) {
  proto::ProduceRequest req;
  req.partitions.push_back({topic, 0, proto::Payload{std::move(batch)}});
  auto r = client::Call<proto::ProduceResponse>(conn, std::move(req), 30'000);
  REQUIRE_MESSAGE(r.ok(), r.status().ToString());
  REQUIRE(r->partitions.size() == 1);
  return r->partitions[0].error;
}

TEST_CASE("hostile clients get bounded memory and a clear outcome; others keep being served") {
  if (testing::EmbeddedMode()) return;
  TestBroker b({"--frame-timeout", "1s", "--idle-timeout", "3s",
                "--max-uncompressed-batch-bytes", "8MiB"});
  SteadyProducer steady(b);
  auto conn = b.Connect();
  Admin admin(conn);

  SUBCASE("thousands of idle connections cost little memory, then time out") {
    constexpr int kIdle = 2'000;
    rlimit rl{};
    ::getrlimit(RLIMIT_NOFILE, &rl);
    rl.rlim_cur = rl.rlim_max;
    ::setrlimit(RLIMIT_NOFILE, &rl);
    REQUIRE_MESSAGE(rl.rlim_cur > kIdle + 100, "open files limit " << rl.rlim_cur);
    const int64_t rss_before = broker::ProcessRssKiB(b.pid());
    std::vector<int> fds;
    for (int i = 0; i < kIdle; ++i) fds.push_back(RawConnect(b.port()));
    // Each must really be served: one request on the last connection gets its answer.
    const std::string ping = wire::EncodeFrame(static_cast<uint16_t>(wire::Api::kApiVersions), 0, 9, "");
    REQUIRE(::send(fds.back(), ping.data(), ping.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(ping.size()));
    char buf[4096];
    CHECK(::recv(fds.back(), buf, sizeof buf, 0) > 0);
    CHECK(MetricValue(b.http_port(), "runnel_connections") >= kIdle);
    const int64_t grown_kib = broker::ProcessRssKiB(b.pid()) - rss_before;
    MESSAGE(kIdle << " idle connections: runneld RSS grew by " << grown_kib << " KiB ("
                  << grown_kib * 1024 / kIdle << " bytes each)");
#if defined(__SANITIZE_THREAD__)
    constexpr int64_t kMaxKiBEach = 48;  // TSan's shadow memory multiplies every allocation
#else
    constexpr int64_t kMaxKiBEach = 16;
#endif
    CHECK(grown_kib < kIdle * kMaxKiBEach);  // a read buffer each (64 KiB) would be 125 MiB
    // The idle timeout closes them all; the steady producer's connection is busy, not idle.
    size_t closed = 0;
    for (int fd : fds) closed += ClosedWithin(fd, 10'000);
    CHECK(closed == fds.size());
    for (int fd : fds) ::close(fd);
  }

  SUBCASE("slowloris: a frame trickling in is cut off at the frame timeout") {
    std::vector<int> fds;
    for (int i = 0; i < 20; ++i) {
      fds.push_back(RawConnect(b.port()));
      std::string start;
      PutFixed32BE(&start, 1000);  // a 1,000-byte frame, of which only the start ever comes
      ::send(fds.back(), start.data(), start.size(), MSG_NOSIGNAL);
    }
    const double timed_out_before = MetricValue(b.http_port(), "runnel_connections_timed_out_total");
    const auto t0 = std::chrono::steady_clock::now();
    std::vector<bool> closed(fds.size(), false);
    size_t n_closed = 0;
    while (n_closed < fds.size() &&
           std::chrono::steady_clock::now() - t0 < std::chrono::seconds(15)) {
      for (size_t i = 0; i < fds.size(); ++i) {
        if (closed[i]) continue;
        // One byte every 100 ms keeps the connection busy, but never completes the frame.
        if (::send(fds[i], "x", 1, MSG_NOSIGNAL) != 1 || ClosedWithin(fds[i], 5)) {
          closed[i] = true;
          ++n_closed;
        }
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    CHECK(n_closed == fds.size());
    const double want = timed_out_before + static_cast<double>(fds.size());
    CHECK(testing::MetricReaching(b.http_port(), "runnel_connections_timed_out_total", want) >=
          want);
    for (int fd : fds) ::close(fd);
  }

  SUBCASE("an LZ4 bomb is refused before it is inflated") {
    REQUIRE(admin.CreateTopic("bomb", 1).ok());
    RecordBatchBuilder builder(BatchBuilderOptions{Compression::kLz4});
    builder.Add(0, std::nullopt, std::string(512u << 20, '\0'), {});  // 512 MiB of zeros
    std::string batch = builder.Build();
    MESSAGE("LZ4 bomb: " << batch.size() << " bytes inflating to 512 MiB");
    REQUIRE(batch.size() < (4u << 20));
    REQUIRE(admin.AlterTopic("bomb", 0, {{"max.message.bytes", std::to_string(4u << 20)}}).ok());
    const int64_t rss_before = broker::ProcessRssKiB(b.pid());
    const proto::ItemError e = RawProduce(*conn, "bomb", std::move(batch));
    CHECK(e.error == wire::ErrorCode::kTooLarge);
    CHECK(e.message.find("8388608") != std::string::npos);  // names the limit
    CHECK(broker::ProcessRssKiB(b.pid()) - rss_before < 64 * 1024);
    CHECK(admin.ListOffset("bomb", 0, proto::OffsetSpec::kLatest).value() == 0);
  }

  SUBCASE("a batch with a bad CRC is refused and nothing of it is stored") {
    REQUIRE(admin.CreateTopic("crc", 1).ok());
    RecordBatchBuilder builder;
    for (int i = 0; i < 3; ++i) builder.Add(0, std::nullopt, "record " + std::to_string(i), {});
    const std::string good = builder.Build();
    std::string bad = good;
    bad[bad.size() - 2] ^= 0x01;  // one bit of the last record's value
    const proto::ItemError e = RawProduce(*conn, "crc", bad);
    CHECK(e.error == wire::ErrorCode::kCorruption);
    CHECK(e.message.find("CRC") != std::string::npos);
    CHECK(admin.ListOffset("crc", 0, proto::OffsetSpec::kLatest).value() == 0);
    CHECK(RawProduce(*conn, "crc", good).ok());  // same connection, still usable
    CHECK(admin.ListOffset("crc", 0, proto::OffsetSpec::kLatest).value() == 3);
  }

  SUBCASE("invalid UTF-8 and path-like topic names are refused, on create and on produce") {
    RecordBatchBuilder builder;
    builder.Add(0, std::nullopt, "x", {});
    const std::string batch = builder.Build();
    for (const std::string& name : {std::string("\xff\xfe"), std::string("caf\xc3"),
                                   std::string("../x"), std::string("a/b"), std::string(".."),
                                   std::string("x\0y", 3), std::string(), std::string(250, 'a')}) {
      INFO("topic name of " << name.size() << " bytes");
      CHECK(admin.CreateTopic(name, 1).IsInvalidArgument());
      CHECK(RawProduce(*conn, name, batch).error == wire::ErrorCode::kInvalidArgument);
    }
    auto topics = admin.DescribeTopics();
    REQUIRE(topics.ok());
    for (const auto& t : *topics) CHECK(t.name.find_first_of("/\xff\xfe\xc3") == std::string::npos);
    // Nothing of them reached the data directory either.
    CHECK(!std::filesystem::exists(b.data_dir() + "/../x"));
  }

  steady.Stop();
  MESSAGE("steady producer: " << steady.ok() << " records acknowledged meanwhile, slowest "
                              << steady.max_ms() << " ms");
  CHECK(steady.failed() == 0);
  CHECK(steady.ok() > 0);
}

TEST_CASE("connections beyond --max-connections are refused; room frees as others leave") {
  if (testing::EmbeddedMode()) return;
  TestBroker b({"--max-connections", "20"});
  std::vector<int> fds;
  for (int i = 0; i < 30; ++i) fds.push_back(RawConnect(b.port()));
  int refused = 0;
  for (int fd : fds) refused += ClosedWithin(fd, 300);
  CHECK(refused == 10);
  CHECK(testing::MetricReaching(b.http_port(), "runnel_connections_rejected_total", 10) == 10);
  for (int fd : fds) ::close(fd);
  // Once they are gone, new clients get in and are served.
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  Admin admin(b.Connect());
  CHECK(admin.CreateTopic("after", 1).ok());
}

// ---- a full disk ------------------------------------------------------------------------------

// A size-limited tmpfs at `path` for the life of the object (root only).
class SmallFilesystem {
 public:
  SmallFilesystem(std::string path, const std::string& size) : path_(std::move(path)) {
    std::filesystem::create_directories(path_);
    mounted_ = ::mount("tmpfs", path_.c_str(), "tmpfs", 0, ("size=" + size).c_str()) == 0;
  }
  ~SmallFilesystem() {
    if (mounted_) ::umount2(path_.c_str(), MNT_DETACH);
  }
  bool mounted() const { return mounted_; }

 private:
  std::string path_;
  bool mounted_ = false;
};

// Incompressible bytes, so LZ4 cannot shrink what fills the disk.
std::string RandomBytes(std::mt19937_64& rng, size_t n) {
  std::string s(n, '\0');
  for (size_t i = 0; i + 8 <= n; i += 8) {
    const uint64_t v = rng();
    std::memcpy(&s[i], &v, 8);
  }
  return s;
}

TEST_CASE("disk full: produce fails clearly, reads go on, nothing acked is lost, writes resume") {
  if (testing::EmbeddedMode()) return;
  if (::geteuid() != 0) {
    MESSAGE("skipped: mounting a small tmpfs needs root");
    return;
  }
  testing::TempDir dir;
  SmallFilesystem fs(dir.Sub("disk"), "160m");
  REQUIRE_MESSAGE(fs.mounted(), "mount tmpfs: " << std::strerror(errno));
  // Ballast: most of the disk, freed later to give the broker room again.
  const std::string ballast = dir.Sub("disk/ballast");
  {
    std::ofstream out(ballast, std::ios::binary);
    const std::string chunk(1 << 20, 'b');
    for (int i = 0; i < 90; ++i) out << chunk;
  }
  broker::RunneldProcess runneld({RUNNEL_RUNNELD, dir.Sub("disk/broker"), 0, /*http=*/false, "info"});
  REQUIRE_MESSAGE(runneld.Start().ok(), runneld.Log());
  client::TcpOptions tcp;
  tcp.port = runneld.port();
  auto conn = client::ConnectTcp(tcp);
  Admin admin(conn);
  REQUIRE(admin.CreateTopic("fill", 1).ok());

  client::ProducerOptions po;
  po.linger_ms = 0;
  auto producer = Producer::Create(client::ConnectTcp(tcp), po);
  REQUIRE(producer.ok());
  std::mt19937_64 rng(7);
  std::map<int64_t, std::string> acked;  // offset -> value
  Status full;
  for (int i = 0; i < 2'000 && full.ok(); ++i) {
    std::string value = std::to_string(i) + ":" + RandomBytes(rng, 64 * 1024);
    auto r = (*producer)->Send(ProducerRecord{"fill", std::nullopt, value, {}, {}, 0}).get();
    if (r.ok()) {
      CHECK(acked.emplace(r->offset, std::move(value)).second);
    } else {
      full = r.status();
    }
  }
  INFO(full.ToString());
  REQUIRE(full.code() == StatusCode::kNoSpace);  // a clear error, not a hang or a crash
  CHECK(full.message().find("No space left on device") != std::string::npos);
  REQUIRE(acked.size() > 100);
  MESSAGE("disk full after " << acked.size() << " records of 64 KiB: " << full.ToString());

  // Reads go on while the disk is full, and every acknowledged record is there.
  auto read_all = [&](std::shared_ptr<client::Connection> c, size_t n) {
    ConsumerOptions co;
    co.topics = {"fill"};
    auto consumer = MakeConsumer(std::move(c), co);
    std::map<int64_t, std::string> got;
    for (auto& r : PollN(*consumer, n, 30'000)) got[r.offset] = r.value.value_or("");
    return got;
  };
  CHECK(read_all(client::ConnectTcp(tcp), acked.size()) == acked);
  // Still full: refused again, clearly, and the broker is still up.
  auto again = (*producer)->Send(ProducerRecord{"fill", std::nullopt, "x", {}, {}, 0}).get();
  CHECK(again.status().code() == StatusCode::kNoSpace);

  // Space comes back: the broker resumes writes by itself (no restart).
  std::filesystem::remove(ballast);
  Result<client::RecordMetadata> resumed = Status::NoSpace("not tried");
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (!resumed.ok() && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    resumed = (*producer)->Send(ProducerRecord{"fill", std::nullopt, "after", {}, {}, 0}).get();
  }
  REQUIRE_MESSAGE(resumed.ok(), resumed.status().ToString());
  acked[resumed->offset] = "after";
  CHECK(runneld.running());
  CHECK(runneld.Log().find("writes resume") != std::string::npos);

  // Everything acknowledged survives a crash after the recovery, once each.
  runneld.Stop(SIGKILL);
  REQUIRE(runneld.Start().ok());
  auto after = read_all(client::ConnectTcp(tcp), acked.size());
  CHECK(after == acked);
}

}  // namespace
}  // namespace runnel
