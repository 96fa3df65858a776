// Protocol bodies: round trips, the error envelope, and hostile bodies that must fail cleanly.
#include "runnel/common/protocol.h"

#include <doctest/doctest.h>

#include <random>

namespace runnel::proto {
namespace {

TEST_CASE("a produce request survives a round trip, payloads kept whole") {
  ProduceRequest req;
  req.acks = 1;
  req.partitions.push_back({"orders", 3, Payload{std::string(10000, 'x')}});
  req.partitions.push_back({"orders", 4, Payload{"small"}});
  Writer w;
  w.Put(req);
  CHECK(w.TakeParts().size() == 3);  // the big payload travels as its own buffer

  ProduceRequest again;
  again.acks = 1;
  again.partitions.push_back({"orders", 3, Payload{std::string(10000, 'x')}});
  again.partitions.push_back({"orders", 4, Payload{"small"}});
  auto decoded = DecodeBody<ProduceRequest>(EncodeBody(again));
  REQUIRE(decoded.ok());
  CHECK(decoded->acks == 1);
  REQUIRE(decoded->partitions.size() == 2);
  CHECK(decoded->partitions[0].topic == "orders");
  CHECK(decoded->partitions[0].partition == 3);
  CHECK(decoded->partitions[0].batch.bytes == std::string(10000, 'x'));
  CHECK(decoded->partitions[1].batch.bytes == "small");
}

TEST_CASE("nullable strings, nested vectors and enums keep their values") {
  // (Constructed, not assigned from a literal: GCC 12 under ASan warns falsely, -Wrestrict.)
  DeliverResponse resp{std::string(1, 't'), {}};
  DeliveredRecordWire r;
  r.partition = 2;
  r.offset = 1LL << 40;
  r.key = std::nullopt;
  r.value = std::string("v\0w", 3);
  r.headers.push_back({"h", std::nullopt});
  r.headers.push_back({"g", std::string()});
  r.deliveries = 3;
  resp.records.push_back(r);
  auto out = DecodeBody<DeliverResponse>(EncodeBody(resp));
  REQUIRE(out.ok());
  REQUIRE(out->records.size() == 1);
  const auto& d = out->records[0];
  CHECK(d.offset == (1LL << 40));
  CHECK_FALSE(d.key.has_value());
  CHECK(*d.value == std::string("v\0w", 3));
  CHECK_FALSE(d.headers[0].value.has_value());
  CHECK(d.headers[1].value == std::string());
  CHECK(d.deliveries == 3);
}

std::string Join(const std::vector<std::string>& parts) {
  std::string s;
  for (const auto& p : parts) s += p;
  return s;
}

TEST_CASE("the response envelope carries errors and omits fields on failure") {
  ExtendResponse ok{.lock_until_ms = 42};
  auto good = DecodeResponse<ExtendResponse>(Join(EncodeResponse(Status::OK(), &ok)));
  REQUIRE(good.ok());
  CHECK(good->lock_until_ms == 42);

  auto body = Join(EncodeResponse<ExtendResponse>(Status::NotFound("no such group 'g'"), &ok));
  CHECK(body.size() == 2 + 4 + std::string("no such group 'g'").size());
  auto bad = DecodeResponse<ExtendResponse>(body);
  REQUIRE_FALSE(bad.ok());
  CHECK(bad.status().code() == StatusCode::kNotFound);
  CHECK(bad.status().message() == "no such group 'g'");
}

TEST_CASE("every status code maps to a wire code and back") {
  for (int c = 0; c <= static_cast<int>(StatusCode::kPermissionDenied); ++c) {
    const auto code = static_cast<StatusCode>(c);
    const auto wire_code = ToErrorCode(code);
    if (code != StatusCode::kOk) CHECK(wire_code != wire::ErrorCode::kNone);
    CHECK(ToStatus(wire_code, "m").code() == code);
  }
  CHECK(ToStatus(wire::ErrorCode::kMalformedRequest, "x").IsInvalidArgument());
}

TEST_CASE("hostile bodies are rejected without huge allocations") {
  std::string body;
  PutFixed32BE(&body, 0x7fffffff);  // a vector count far beyond the bytes present
  CHECK_FALSE(DecodeBody<ListGroupsResponse>(body).ok());
  body.clear();
  PutFixed32BE(&body, 1);
  PutFixed32BE(&body, 0x7ffffff0);  // a string longer than the body
  CHECK_FALSE(DecodeBody<ListGroupsResponse>(body).ok());
  body.clear();
  PutFixed32BE(&body, static_cast<uint32_t>(-5));  // negative length
  CHECK_FALSE(DecodeBody<DeleteTopicRequest>(body).ok());
  CHECK_FALSE(DecodeBody<DeleteTopicRequest>(EncodeBody(DeleteTopicRequest{"t"}) + "x").ok());
  // A bool must be 0 or 1.
  std::string b = EncodeBody(MetadataRequest{});
  b.back() = 7;
  CHECK_FALSE(DecodeBody<MetadataRequest>(b).ok());

  // Random bytes never crash the decoder (ASan run checks for over-reads).
  std::mt19937 rng(7);
  for (int i = 0; i < 2000; ++i) {
    std::string junk(rng() % 64, '\0');
    for (auto& ch : junk) ch = static_cast<char>(rng());
    (void)DecodeBody<FetchRequest>(junk);
    (void)DecodeBody<DescribeGroupResponse>(junk);
    (void)DecodeResponse<MetadataResponse>(junk);
  }
}

TEST_CASE("an array count is bounded by an element's fewest wire bytes, and so is its reservation") {
  // ProducePartition takes at least 12 bytes (topic length, partition, batch length) and many
  // more as a C++ object.
  CHECK(MinWireBytes<ProducePartition>() == 12);
  CHECK(MinWireBytes<TopicMetadata>() == 4 + 6 + 4 + 4 + 4);
  CHECK(MinWireBytes<EmptyResponse>() == 0);
  constexpr size_t kPresent = 1200;
  auto body = [&](uint32_t count) {
    std::string b;
    PutFixed32BE(&b, count);
    b.append(kPresent, '\xff');  // the first element's topic is a null string: decoding fails
    return b;
  };
  // One more element than 1,200 bytes can hold at 12 bytes each: refused before allocating.
  {
    const std::string b = body(kPresent / 12 + 1);
    Reader r(b);
    std::vector<ProducePartition> v;
    r.Get(v);
    CHECK(r.error() == "array count out of range");
    CHECK(v.capacity() == 0);
  }
  // A count the bytes could hold reserves no more than the bytes present justify (100 elements
  // of 72 bytes would be 7,200 bytes for 1,200 present), then fails on the first element.
  {
    const std::string b = body(kPresent / 12);
    Reader r(b);
    std::vector<ProducePartition> v;
    r.Get(v);
    CHECK_FALSE(r.ok());
    CHECK(v.capacity() * sizeof(ProducePartition) <= kPresent + sizeof(ProducePartition));
  }
}

TEST_CASE("every served api has a name") {
  CHECK(ApiName(1) == "Produce");
  CHECK(ServedVersion(44) == 0);
  CHECK(ApiName(9) == "Authenticate");
  CHECK(ServedVersion(15) == -1);
  CHECK(ApiName(999).empty());
}

}  // namespace
}  // namespace runnel::proto
