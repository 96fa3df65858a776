// The workloads' building blocks without a broker: the HTTP client and server, the notify
// handler against the flaky webhook, the barcode sink on a real SQLite file (including a locked
// database), and the coupon service's decisions and offset fencing.
#include <doctest/doctest.h>

#include <chrono>
#include <set>
#include <thread>

#include "runnel/common/json.h"
#include "runnel/testing/temp_dir.h"
#include "runnel/worker/barcode.h"
#include "runnel/worker/coupon.h"
#include "runnel/worker/http.h"
#include "runnel/worker/load.h"
#include "runnel/worker/notify.h"

namespace runnel::worker {
namespace {

client::ConsumerRecord Rec(const std::string& topic, int32_t partition, int64_t offset,
                           std::optional<std::string> value, int32_t deliveries = 1) {
  client::ConsumerRecord r;
  r.topic = topic;
  r.partition = partition;
  r.offset = offset;
  r.value = std::move(value);
  r.deliveries = deliveries;
  return r;
}

TEST_CASE("ParseHttpUrl: host, port and path; anything but http is refused") {
  auto u = ParseHttpUrl("http://127.0.0.1:8089/hooks/notify");
  REQUIRE(u.ok());
  CHECK(u->host == "127.0.0.1");
  CHECK(u->port == 8089);
  CHECK(u->target == "/hooks/notify");
  u = ParseHttpUrl("http://example");
  REQUIRE(u.ok());
  CHECK(u->port == 80);
  CHECK(u->target == "/");
  CHECK(!ParseHttpUrl("https://example/").ok());
  CHECK(!ParseHttpUrl("http://host:99999/").ok());
  CHECK(!ParseHttpUrl("http://:80/").ok());
}

TEST_CASE("HttpClient: answers, keep-alive, a deadline on a hung server, a refused connection") {
  std::atomic<int> calls{0};
  auto server = HttpServer::Start("127.0.0.1", 0, [&](const HttpRequest& req) {
    ++calls;
    HttpResponse res;
    if (req.Path() == "/hang") {
      res.hang = true;
      res.delay_ms = 2'000;
    } else {
      res.body = req.method + " " + req.target + " " + req.body + " " + req.Header("x-test");
    }
    return res;
  }, 2);
  REQUIRE(server.ok());
  const uint16_t port = (*server)->port();
  HttpClient client;
  HttpUrl url{"127.0.0.1", port, "/echo?a=1"};
  auto r = client.Send(url, "POST", "hello", {{"X-Test", "yes"}}, 2'000);
  REQUIRE(r.ok());
  CHECK(r->status == 200);
  CHECK(r->body == "POST /echo?a=1 hello yes");
  r = client.Send(url, "POST", "again", {}, 2'000);  // same connection
  REQUIRE(r.ok());
  CHECK(r->body == "POST /echo?a=1 again ");

  // A server that never answers: the request's own timeout ends it (the handler hangs for good).
  r = client.Send({"127.0.0.1", port, "/hang"}, "POST", "x", {}, 200);
  CHECK(r.status().code() == StatusCode::kTimeout);
  r = client.Send(url, "POST", "after", {}, 2'000);  // a fresh connection after the timeout
  REQUIRE(r.ok());
  CHECK(r->status == 200);

  (*server)->Stop();
  r = client.Send(url, "POST", "gone", {}, 1'000);
  CHECK(!r.ok());
  CHECK(r.status().code() != StatusCode::kTimeout);
}

TEST_CASE("NotifyHandler: 2xx acks, 5xx and hangs retry, 4xx and bad JSON dead-letter") {
  FlakyWebhookOptions fo;
  fo.fail_rate = 0;
  fo.hang_rate = 0;
  auto hook = std::make_shared<FlakyWebhook>(fo);
  auto server = HttpServer::Start("127.0.0.1", 0, [hook](const HttpRequest& r) { return hook->Handle(r); });
  REQUIRE(server.ok());
  auto h = NotifyHandler::Create({"http://127.0.0.1:" + std::to_string((*server)->port()) + "/n", 300});
  REQUIRE(h.ok());
  NotifyLoadShape shape;
  shape.malformed_every = 10;
  shape.blocked_every = 10;

  auto rec = [&](int64_t i) {
    client::ProducerRecord p = MakeNotification(shape, i);
    return Rec("notifications", 0, i, p.value);
  };
  CHECK((*h)->Handle(rec(0)).kind == Outcome::Kind::kAck);  // i % 10 == 0: a good one
  Outcome bad = (*h)->Handle(rec(1));                          // malformed
  CHECK(bad.kind == Outcome::Kind::kReject);
  CHECK(bad.error == "malformed");
  Outcome refused = (*h)->Handle(rec(2));  // a blocked user: 422
  CHECK(refused.kind == Outcome::Kind::kFail);
  CHECK(refused.error == "http_4xx");
  CHECK(refused.detail == "HTTP 422");
  Outcome missing = (*h)->Handle(Rec("notifications", 0, 9, std::string("{\"id\":\"x\"}")));
  CHECK(missing.kind == Outcome::Kind::kReject);
  CHECK(missing.error == "invalid");

  FlakyWebhookOptions all_fail;
  all_fail.fail_rate = 1.0;
  all_fail.hang_rate = 0;
  auto failing = std::make_shared<FlakyWebhook>(all_fail);
  auto s2 = HttpServer::Start("127.0.0.1", 0, [failing](const HttpRequest& r) { return failing->Handle(r); });
  REQUIRE(s2.ok());
  auto h2 = NotifyHandler::Create({"http://127.0.0.1:" + std::to_string((*s2)->port()) + "/n", 300});
  REQUIRE(h2.ok());
  Outcome f = (*h2)->Handle(rec(3));
  CHECK(f.kind == Outcome::Kind::kFail);
  CHECK(f.error == "http_5xx");

  FlakyWebhookOptions all_hang;
  all_hang.fail_rate = 0;
  all_hang.hang_rate = 1.0;
  all_hang.hang_ms = 2'000;
  auto hanging = std::make_shared<FlakyWebhook>(all_hang);
  auto s3 = HttpServer::Start("127.0.0.1", 0, [hanging](const HttpRequest& r) { return hanging->Handle(r); });
  REQUIRE(s3.ok());
  auto h3 = NotifyHandler::Create({"http://127.0.0.1:" + std::to_string((*s3)->port()) + "/n", 200});
  REQUIRE(h3.ok());
  Outcome t = (*h3)->Handle(rec(4));
  CHECK(t.kind == Outcome::Kind::kFail);
  CHECK(t.error == "timeout");

  // The webhook saw each call with the delivery number and the idempotency key.
  auto calls = hook->Calls();
  REQUIRE(calls.count("n-0"));
  CHECK(calls["n-0"].size() == 1);
  CHECK(calls["n-0"][0].delivery == 1);
  CHECK(calls["n-0"][0].answer == FlakyWebhook::Answer::kOk);
  CHECK((*h)->sent() == 1);
  CHECK((*h)->malformed() == 2);
}

TEST_CASE("RepeatRunItem: every item once in order, plus the repeats of recent items") {
  const int64_t distinct = 1'000;
  const int64_t total = RepeatRunTotal(distinct, 0.1);
  CHECK(total == 1'100);
  std::vector<int64_t> count(distinct, 0);
  int64_t next_original = 0;
  for (int64_t p = 0; p < total; ++p) {
    const int64_t item = RepeatRunItem(distinct, 0.1, p);
    REQUIRE(item >= 0);
    REQUIRE(item < distinct);
    if (item == next_original) ++next_original;
    else CHECK(item < next_original);  // a repeat is of something already sent
    ++count[static_cast<size_t>(item)];
  }
  CHECK(next_original == distinct);
  int64_t repeats = 0;
  for (int64_t c : count) repeats += c - 1;
  CHECK(repeats == 100);
}

TEST_CASE("BarcodeSink: one transaction per batch, duplicates ignored, bad scans dead-lettered") {
  testing::TempDir dir;
  auto sink = BarcodeSink::Open(dir.Sub("scans.db"));
  REQUIRE(sink.ok());
  BarcodeLoadShape shape;
  shape.malformed_every = 100;
  std::vector<client::ConsumerRecord> batch;
  for (int64_t n = 0; n < 10; ++n) batch.push_back(Rec("barcode.scans", 0, n, MakeScan(shape, n).value));
  batch.push_back(Rec("barcode.scans", 0, 10, MakeScan(shape, 4).value));  // a re-sent scan
  auto out = (*sink)->Handle(batch);
  REQUIRE(out.size() == 11);
  for (size_t i = 0; i < out.size(); ++i) {
    if (i == 3) {
      CHECK(out[i].kind == Outcome::Kind::kReject);
      CHECK(out[i].error == "malformed");
    } else {
      CHECK(out[i].kind == Outcome::Kind::kAck);
    }
  }
  // A redelivered batch (a worker died before acking) inserts nothing new.
  batch.erase(batch.begin() + 3);
  out = (*sink)->Handle(batch);
  for (const auto& o : out) CHECK(o.kind == Outcome::Kind::kAck);

  auto s = (*sink)->DbStats();
  REQUIRE(s.ok());
  CHECK(s->rows == 9);
  CHECK(s->transactions == 2);
  CHECK(s->rows_inserted == 9);
  CHECK(s->duplicates_ignored == 1 + 10);
  CHECK(s->scans_seen == 20);
}

TEST_CASE("BarcodeSink: a locked database fails the batch as \"db\"; the retry stores it") {
  testing::TempDir dir;
  auto sink = BarcodeSink::Open(dir.Sub("scans.db"), 100);
  REQUIRE(sink.ok());
  auto other = SqliteDb::Open(dir.Sub("scans.db"));
  REQUIRE(other.ok());
  REQUIRE((*other)->Exec("BEGIN EXCLUSIVE").ok());  // the database is "down" for writers
  BarcodeLoadShape shape;
  std::vector<client::ConsumerRecord> batch = {Rec("barcode.scans", 0, 0, MakeScan(shape, 0).value),
                                               Rec("barcode.scans", 0, 1, MakeScan(shape, 1).value)};
  auto out = (*sink)->Handle(batch);
  for (const auto& o : out) {
    CHECK(o.kind == Outcome::Kind::kFail);
    CHECK(o.error == "db");
  }
  REQUIRE((*other)->Exec("COMMIT").ok());
  out = (*sink)->Handle(batch);
  for (const auto& o : out) CHECK(o.kind == Outcome::Kind::kAck);
  auto s = (*sink)->DbStats();
  REQUIRE(s.ok());
  CHECK(s->rows == 2);
  CHECK(s->transactions == 1);
}

TEST_CASE("CouponService: decides each request once and fences replays by the stored offset") {
  testing::TempDir dir;
  auto svc = CouponService::Open(dir.Sub("coupons.db"), nullptr);
  REQUIRE(svc.ok());
  REQUIRE((*svc)->AddCoupon("c0", 2).ok());
  PartitionHandler h = (*svc)->Handler();
  const proto::TopicPartitionRef tp{"coupon.requests", 1};
  auto req = [&](int64_t offset, const std::string& id, const std::string& user,
                 const std::string& coupon = "c0") {
    std::string v = "{\"requestId\":\"" + id + "\",\"couponId\":\"" + coupon + "\"";
    if (!user.empty()) v += ",\"userId\":\"" + user + "\"";
    return Rec("coupon.requests", 1, offset, v + "}");
  };
  auto first = h.load_offset(tp);
  REQUIRE(first.ok());
  CHECK(!first->has_value());

  std::vector<client::ConsumerRecord> batch = {
      req(0, "r0", "alice"), req(1, "r1", "bob"),     req(2, "r2", "alice"),  // alice again
      req(3, "r3", "carol"), req(4, "r4", ""),        req(5, "r5", "dave", "nope"),
      Rec("coupon.requests", 1, 6, std::string("{broken")), req(7, "r0", "alice")};  // r0 re-sent
  auto next = h.process(tp, batch);
  REQUIRE(next.ok());
  CHECK(*next == 8);
  auto outcome = [&](const std::string& id) {
    auto o = (*svc)->Lookup(id);
    REQUIRE(o.ok());
    return o->has_value() ? (*o)->outcome : std::string("NONE");
  };
  CHECK(outcome("r0") == "SUCCESS");
  CHECK(outcome("r1") == "SUCCESS");
  CHECK(outcome("r2") == "DUPLICATE_REQUEST");
  CHECK(outcome("r3") == "OUT_OF_STOCK");
  CHECK(outcome("r4") == "VALIDATION_FAILED");
  CHECK(outcome("r5") == "VALIDATION_FAILED");
  CHECK(outcome("coupon.requests-1-6") == "VALIDATION_FAILED");
  CHECK(outcome("unknown") == "NONE");

  auto stored = h.load_offset(tp);
  REQUIRE(stored.ok());
  CHECK(**stored == 8);

  // A worker that lost the partition replays the same records: nothing changes.
  next = h.process(tp, batch);
  REQUIRE(next.ok());
  CHECK(*next == 8);
  // Records after a gap are not applied; the answer points back at the stored offset.
  next = h.process(tp, {req(10, "r10", "erin")});
  REQUIRE(next.ok());
  CHECK(*next == 8);
  CHECK(outcome("r10") == "NONE");
  // A batch overlapping what was applied applies only the new part.
  next = h.process(tp, {req(7, "r0", "alice"), req(8, "r8", "frank")});
  REQUIRE(next.ok());
  CHECK(*next == 9);
  CHECK(outcome("r8") == "OUT_OF_STOCK");

  auto s = (*svc)->DbStats();
  REQUIRE(s.ok());
  CHECK(s->stock == 0);
  CHECK(s->issued == 2);
  CHECK(s->requests == 8);  // r0..r5, the broken one, r8
}

}  // namespace
}  // namespace runnel::worker
