#include "runnel/kafka/codec.h"

#include <doctest/doctest.h>

#include <concepts>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "runnel/kafka/messages.h"
#include "runnel/testing/temp_dir.h"

namespace runnel::kafka {
namespace {

// Builds expected wire bytes by hand, field by field, as the protocol guide describes them.
class Bytes {
 public:
  Bytes& I8(int v) { return Put(static_cast<uint64_t>(v), 1); }
  Bytes& I16(int v) { return Put(static_cast<uint64_t>(v), 2); }
  Bytes& I32(int64_t v) { return Put(static_cast<uint64_t>(v), 4); }
  Bytes& I64(int64_t v) { return Put(static_cast<uint64_t>(v), 8); }
  Bytes& UVarint(uint32_t v) {
    while (v >= 0x80) {
      s_.push_back(static_cast<char>((v & 0x7f) | 0x80));
      v >>= 7;
    }
    s_.push_back(static_cast<char>(v));
    return *this;
  }
  Bytes& Raw(std::string_view v) {
    s_ += v;
    return *this;
  }
  Bytes& Str(std::string_view v) { return I16(static_cast<int>(v.size())).Raw(v); }  // int16 len
  Bytes& CStr(std::string_view v) {  // compact: uvarint len+1
    return UVarint(static_cast<uint32_t>(v.size() + 1)).Raw(v);
  }
  Bytes& Blob(std::string_view v) { return I32(static_cast<int64_t>(v.size())).Raw(v); }
  const std::string& str() const { return s_; }

 private:
  Bytes& Put(uint64_t v, int n) {
    for (int i = n - 1; i >= 0; --i) s_.push_back(static_cast<char>(v >> (8 * i)));
    return *this;
  }
  std::string s_;
};

template <class M>
std::string Encode(M m, int16_t version) {
  Writer w;
  m.Encode(w, version);
  return JoinChunks(w.Finish());
}

template <class M>
M DecodeAll(std::string_view bytes, int16_t version) {
  Reader r(bytes);
  M m;
  const Status s = m.Decode(r, version);
  REQUIRE_MESSAGE(s.ok(), s.ToString());
  CHECK(r.remaining() == 0);
  return m;
}

template <class M>
Status DecodeStatus(std::string_view bytes, int16_t version) {
  Reader r(bytes);
  M m;
  return m.Decode(r, version);
}

// Fills every field of a message with seeded values, whatever the version: fields the version
// lacks are simply not encoded.
class Filler {
 public:
  explicit Filler(uint64_t seed) : rng_(seed) {}

  template <class T>
  void operator()(std::string_view, T& field) {
    Fill(field);
  }

  void Fill(bool& v) { v = (rng_() & 1) != 0; }
  template <std::integral T>
  void Fill(T& v) {
    v = static_cast<T>(rng_());
  }
  void Fill(double& v) { v = static_cast<double>(rng_() % 100000) / 8; }
  void Fill(Uuid& v) {
    for (auto& b : v) b = static_cast<uint8_t>(rng_());
  }
  void Fill(std::string& v) {
    // Now and then a value above kZeroCopyBytes, which Writer moves into its own chunk.
    const size_t n = rng_() % 40 == 0 ? kZeroCopyBytes + rng_() % 100 : rng_() % 7;
    v.assign(n, static_cast<char>('a' + rng_() % 26));
  }
  template <class T>
  void Fill(std::optional<T>& v) {
    if (rng_() % 4 == 0) {
      v.reset();
    } else {
      Fill(v.emplace());
    }
  }
  template <class T>
  void Fill(std::vector<T>& v) {
    v.resize(rng_() % 3);
    for (auto& e : v) Fill(e);
  }
  template <class T>
  requires std::is_class_v<T>
  void Fill(T& v) { ForEachField(v, *this); }

 private:
  std::mt19937_64 rng_;
};

template <class... T, class F>
void ForEachType(TypeList<T...>, F&& f) {
  (f.template operator()<T>(), ...);
}

// ---- Golden bytes ----

TEST_CASE("Kafka codec: ApiVersions v0 request is an empty body after a v1 header") {
  // Header after api_key, api_version, correlation_id: client_id "rdkafka".
  const std::string wire = Bytes().Str("rdkafka").str();
  Reader r(wire);
  std::optional<std::string> client_id;
  REQUIRE(DecodeRequestHeaderRest(r, RequestHeaderIsFlexible(18, 0), &client_id).ok());
  CHECK(client_id == "rdkafka");
  ApiVersionsRequest req;
  REQUIRE(req.Decode(r, 0).ok());
  CHECK(r.remaining() == 0);
  CHECK(Encode(req, 0).empty());

  // A null client_id (int16 -1) is allowed.
  const std::string null_id = Bytes().I16(-1).str();
  Reader r2(null_id);
  REQUIRE(DecodeRequestHeaderRest(r2, false, &client_id).ok());
  CHECK_FALSE(client_id.has_value());
}

TEST_CASE("Kafka codec: ApiVersions v0 response has the documented layout") {
  ApiVersionsResponse resp;
  resp.api_keys = {{0, 0, 7}, {18, 0, 3}};
  resp.throttle_time_ms = 99;  // not in v0
  Writer w;
  WriteResponseHeader(w, 18, 0, 0x01020304);
  resp.Encode(w, 0);
  const std::string expected = Bytes()
                                   .I32(0x01020304)  // header v0: correlation_id
                                   .I16(0)           // error_code
                                   .I32(2)           // api_keys
                                   .I16(0)
                                   .I16(0)
                                   .I16(7)
                                   .I16(18)
                                   .I16(0)
                                   .I16(3)
                                   .str();
  CHECK(JoinChunks(w.Finish()) == expected);
  auto back = DecodeAll<ApiVersionsResponse>(std::string_view(expected).substr(4), 0);
  CHECK(back.api_keys == resp.api_keys);
  CHECK(back.throttle_time_ms == 0);
}

TEST_CASE("Kafka codec: ApiVersions v3 request uses header v2, compact strings, tagged fields") {
  CHECK(RequestHeaderIsFlexible(18, 3));
  CHECK_FALSE(RequestHeaderIsFlexible(18, 2));
  const std::string wire = Bytes()
                               .Str("kcat")  // client_id stays an int16-length string
                               .UVarint(0)   // header tagged fields
                               .CStr("librdkafka")
                               .CStr("2.0.2")
                               .UVarint(0)  // body tagged fields
                               .str();
  Reader r(wire);
  std::optional<std::string> client_id;
  REQUIRE(DecodeRequestHeaderRest(r, true, &client_id).ok());
  CHECK(client_id == "kcat");
  ApiVersionsRequest req;
  REQUIRE(req.Decode(r, 3).ok());
  CHECK(r.remaining() == 0);
  CHECK(req.client_software_name == "librdkafka");
  CHECK(req.client_software_version == "2.0.2");
  CHECK(Encode(req, 3) == std::string_view(wire).substr(7));
}

TEST_CASE("Kafka codec: ApiVersions v3 response keeps header v0 (KIP-511)") {
  CHECK_FALSE(ResponseHeaderIsFlexible(18, 3));
  CHECK(ResponseHeaderIsFlexible(3, 9));  // Metadata v9: header v1
  ApiVersionsResponse resp;
  resp.api_keys = {{0, 0, 7}, {18, 0, 3}};
  resp.throttle_time_ms = 5;
  Writer w;
  WriteResponseHeader(w, 18, 3, 7);
  resp.Encode(w, 3);
  const std::string expected = Bytes()
                                   .I32(7)  // correlation_id, no tagged-field byte
                                   .I16(0)
                                   .UVarint(3)  // compact array: 2 + 1
                                   .I16(0)
                                   .I16(0)
                                   .I16(7)
                                   .UVarint(0)
                                   .I16(18)
                                   .I16(0)
                                   .I16(3)
                                   .UVarint(0)
                                   .I32(5)
                                   .UVarint(0)
                                   .str();
  CHECK(JoinChunks(w.Finish()) == expected);

  Writer w9;
  WriteResponseHeader(w9, 3, 9, 7);
  CHECK(JoinChunks(w9.Finish()) == Bytes().I32(7).UVarint(0).str());
}

TEST_CASE("Kafka codec: Metadata v1 request with null topics asks for every topic") {
  const std::string wire = Bytes().I32(-1).str();
  auto req = DecodeAll<MetadataRequest>(wire, 1);
  CHECK_FALSE(req.topics.has_value());
  CHECK(req.allow_auto_topic_creation);  // the default, absent before v4
  CHECK(Encode(req, 1) == wire);
  // In v0 topics are not nullable.
  const Status s = DecodeStatus<MetadataRequest>(wire, 0);
  CHECK(s.IsCorruption());
  CHECK(s.message().find("MetadataRequest v0: topics: null array") != std::string::npos);
  // Encoding null where v0 cannot carry it writes the safe value: an empty array.
  CHECK(Encode(MetadataRequest{}, 0) == Bytes().I32(0).str());

  MetadataRequest two;
  two.topics.emplace();
  two.topics->push_back({{}, "scans"});
  two.allow_auto_topic_creation = false;
  CHECK(Encode(two, 4) == Bytes().I32(1).Str("scans").I8(0).str());
}

TEST_CASE("Kafka codec: Produce v3 request carries a records blob") {
  const std::string batch(61, '\x2a');
  const std::string wire = Bytes()
                               .I16(-1)    // transactional_id: null
                               .I16(-1)    // acks: all
                               .I32(1500)  // timeout_ms
                               .I32(1)     // topic_data
                               .Str("scans")
                               .I32(1)  // partition_data
                               .I32(2)  // index
                               .Blob(batch)
                               .str();
  auto req = DecodeAll<ProduceRequest>(wire, 3);
  CHECK_FALSE(req.transactional_id.has_value());
  CHECK(req.acks == -1);
  CHECK(req.timeout_ms == 1500);
  REQUIRE(req.topic_data.size() == 1);
  CHECK(req.topic_data[0].name == "scans");
  REQUIRE(req.topic_data[0].partition_data.size() == 1);
  CHECK(req.topic_data[0].partition_data[0].index == 2);
  CHECK(req.topic_data[0].partition_data[0].records == batch);
  CHECK(Encode(req, 3) == wire);
  // v2 has no transactional_id.
  CHECK(Encode(req, 2) == std::string_view(wire).substr(2));
}

TEST_CASE("Kafka codec: a large records value is moved into its own chunk, not copied") {
  ProduceRequest req;
  req.acks = 1;
  req.topic_data.push_back({"t", {{0, std::string(kZeroCopyBytes + 5, 'r')}}});
  const char* data = req.topic_data[0].partition_data[0].records->data();
  Writer w;
  req.Encode(w, 7);
  const size_t size = w.size();
  auto chunks = w.Finish();
  REQUIRE(chunks.size() == 2);
  CHECK(chunks[1].size() == kZeroCopyBytes + 5);
  CHECK(chunks[1].data() == data);  // the same buffer
  CHECK(size == chunks[0].size() + chunks[1].size());
  CHECK(w.size() == 0);

  // A small value stays in the current chunk.
  ProduceRequest small;
  small.topic_data.push_back({"t", {{0, std::string(100, 's')}}});
  Writer w2;
  small.Encode(w2, 7);
  CHECK(w2.Finish().size() == 1);
}

TEST_CASE("Kafka codec: Fetch v11 response with two partitions has the documented layout") {
  FetchResponse resp;
  resp.throttle_time_ms = 0;
  resp.session_id = 0;
  auto& topic = resp.responses.emplace_back();
  topic.topic = "scans";
  auto& p0 = topic.partitions.emplace_back();
  p0.partition_index = 0;
  p0.high_watermark = 42;
  p0.last_stable_offset = 42;
  p0.log_start_offset = 0;
  p0.records = "batch";  // aborted_transactions stays null
  auto& p1 = topic.partitions.emplace_back();
  p1.partition_index = 1;
  p1.error_code = 1;  // OFFSET_OUT_OF_RANGE
  p1.high_watermark = 7;
  p1.last_stable_offset = 7;
  p1.log_start_offset = 3;
  p1.aborted_transactions.emplace().push_back({9, 5});
  p1.preferred_read_replica = 2;
  // p1.records stays null

  const std::string expected = Bytes()
                                   .I32(0)  // throttle_time_ms
                                   .I16(0)  // error_code
                                   .I32(0)  // session_id
                                   .I32(1)  // responses
                                   .Str("scans")
                                   .I32(2)  // partitions
                                   .I32(0)
                                   .I16(0)
                                   .I64(42)
                                   .I64(42)
                                   .I64(0)
                                   .I32(-1)  // aborted_transactions: null
                                   .I32(-1)  // preferred_read_replica
                                   .Blob("batch")
                                   .I32(1)
                                   .I16(1)
                                   .I64(7)
                                   .I64(7)
                                   .I64(3)
                                   .I32(1)
                                   .I64(9)
                                   .I64(5)
                                   .I32(2)
                                   .I32(-1)  // records: null
                                   .str();
  const FetchResponse copy = resp;
  CHECK(Encode(resp, 11) == expected);
  CHECK(DecodeAll<FetchResponse>(expected, 11) == copy);
}

TEST_CASE("Kafka codec: Fetch response batches of any size become separate chunks in order") {
  FetchResponse resp;
  auto& topic = resp.responses.emplace_back();
  topic.topic = "t";
  for (int i = 0; i < 2; ++i) {
    auto& p = topic.partitions.emplace_back();
    p.partition_index = i;
    p.records = std::string(kZeroCopyBytes * (i + 1), static_cast<char>('a' + i));
  }
  Writer w;
  resp.Encode(w, 12);
  auto chunks = w.Finish();
  // The head, batch 0, partition 0's tags and partition 1's fields, batch 1, the closing tags.
  REQUIRE(chunks.size() == 5);
  CHECK(chunks[1] == std::string(kZeroCopyBytes, 'a'));
  CHECK(chunks[3] == std::string(2 * kZeroCopyBytes, 'b'));
  CHECK(chunks[4] == std::string(3, '\0'));
  auto back = DecodeAll<FetchResponse>(JoinChunks(chunks), 12);
  CHECK(back.responses[0].partitions[1].records->size() == 2 * kZeroCopyBytes);
}

// ---- Every API, every version ----

TEST_CASE("Kafka codec: every message round-trips at every version") {
  int cases = 0;
  auto round_trip = [&]<class M>() {
    for (int16_t v = M::kMinVersion; v <= M::kMaxVersion; ++v) {
      for (uint64_t seed = 0; seed < 25; ++seed) {
        CAPTURE(M::kName);
        CAPTURE(v);
        CAPTURE(seed);
        M m;
        Filler(seed * 1000 + static_cast<uint64_t>(v)).Fill(m);
        const std::string once = Encode(std::move(m), v);
        M back;
        Reader r(once);
        const Status s = back.Decode(r, v);
        REQUIRE_MESSAGE(s.ok(), s.ToString());
        CHECK(r.remaining() == 0);
        CHECK(Encode(std::move(back), v) == once);
        ++cases;
      }
    }
  };
  ForEachType(AllRequestTypes{}, round_trip);
  ForEachType(AllResponseTypes{}, round_trip);
  CHECK(cases > 1000);
}

TEST_CASE("Kafka codec: every strict prefix of a valid message fails to decode") {
  auto prefixes = [&]<class M>() {
    for (int16_t v = M::kMinVersion; v <= M::kMaxVersion; ++v) {
      CAPTURE(M::kName);
      CAPTURE(v);
      M m;
      Filler filler(77 + static_cast<uint64_t>(v));
      filler.Fill(m);
      const std::string wire = Encode(std::move(m), v);
      if (wire.size() > 4096) continue;  // a rare large value; the rest cover the layout
      for (size_t n = 0; n < wire.size(); ++n) {
        const Status s = DecodeStatus<M>(std::string_view(wire).substr(0, n), v);
        CAPTURE(n);
        CHECK(s.IsCorruption());
      }
    }
  };
  ForEachType(AllRequestTypes{}, prefixes);
  ForEachType(AllResponseTypes{}, prefixes);
}

TEST_CASE("Kafka codec: the API table lists every message type by key") {
  auto apis = AllApis();
  CHECK(apis.size() == 25);
  for (size_t i = 1; i < apis.size(); ++i) CHECK(apis[i - 1].key < apis[i].key);
  const ApiInfo* produce = FindApi(0);
  REQUIRE(produce != nullptr);
  CHECK(produce->name == "Produce");
  CHECK(produce->min_version == 0);
  CHECK(produce->max_version == 7);
  CHECK(produce->first_flexible == 9);
  CHECK(FindApi(17)->first_flexible == kNeverFlexible);
  CHECK(FindApi(99) == nullptr);
  CHECK(FindApi(-1) == nullptr);
  CHECK_FALSE(RequestHeaderIsFlexible(99, 5));
  CHECK(RequestHeaderIsFlexible(0, 9));  // Produce v9: flexible, beyond the codec's range
  CHECK_FALSE(RequestHeaderIsFlexible(17, 1));
  auto check = [&]<class M>() {
    const ApiInfo* api = FindApi(M::kApiKey);
    REQUIRE(api != nullptr);
    CHECK(api->min_version == M::kMinVersion);
    CHECK(api->max_version == M::kMaxVersion);
    CHECK(api->first_flexible == M::kFirstFlexible);
  };
  ForEachType(AllRequestTypes{}, check);
  ForEachType(AllResponseTypes{}, check);
}

// ---- Hostile input ----

TEST_CASE("Kafka codec: an array count of 2^31-1 in a 10-byte body fails fast") {
  // Produce v0: acks, timeout_ms, then topic_data's count.
  const std::string wire = Bytes().I16(1).I32(1000).I32(0x7fffffff).str();
  REQUIRE(wire.size() == 10);
  const Status s = DecodeStatus<ProduceRequest>(wire, 0);
  CHECK(s.IsCorruption());
  CHECK(s.message().find("ProduceRequest v0: topic_data: array length 2147483647") !=
        std::string::npos);
  // The same through a compact count (ApiVersions v3 response) and a primitive array.
  const std::string compact = Bytes().I16(0).UVarint(0xfffffff0u).Raw("abcd").str();
  CHECK(DecodeStatus<ApiVersionsResponse>(compact, 3).IsCorruption());
  const std::string ints = Bytes().I32(1).Str("t").I32(0x7fffffff).str();
  CHECK(DecodeStatus<OffsetFetchRequest>(Bytes().Str("g").Raw(ints).str(), 1).IsCorruption());
  // A negative count other than -1 is refused too.
  CHECK(DecodeStatus<ProduceRequest>(Bytes().I16(1).I32(1).I32(-2).str(), 0).IsCorruption());
}

TEST_CASE("Kafka codec: an array of structs is bounded by the struct's fewest bytes, not by 1") {
  // Produce v0: each topic_data element takes at least 6 bytes (name int16 + partition count
  // int32); 600 bytes can hold 100 of them, not 500.
  constexpr size_t kPresent = 600;
  auto wire = [&](int32_t count) {
    return Bytes().I16(1).I32(1000).I32(count).Raw(std::string(kPresent, '\xff')).str();
  };
  const Status refused = DecodeStatus<ProduceRequest>(wire(500), 0);
  CHECK(refused.IsCorruption());
  CHECK(refused.message().find("topic_data: array length 500") != std::string::npos);
  // 100 passes the count check; the reservation stays within the bytes present (100 elements
  // of a 56-byte struct would be 5,600 bytes), and the first element's null name fails.
  const std::string ok_count = wire(100);
  Reader r(ok_count);
  ProduceRequest req;
  CHECK_FALSE(req.Decode(r, 0).ok());
  CHECK(req.topic_data.capacity() * sizeof(ProduceRequest::TopicProduceData) <=
        kPresent + sizeof(ProduceRequest::TopicProduceData));
}

TEST_CASE("Kafka codec: unknown tagged fields are skipped") {
  const std::string tags =
      Bytes().UVarint(2).UVarint(0).UVarint(3).Raw("abc").UVarint(300).UVarint(1).Raw("x").str();
  // In the body.
  const std::string req = Bytes().CStr("kcat").CStr("1.7.1").Raw(tags).str();
  auto decoded = DecodeAll<ApiVersionsRequest>(req, 3);
  CHECK(decoded.client_software_name == "kcat");
  // In a nested struct and after the body.
  const std::string resp =
      Bytes().I16(0).UVarint(2).I16(0).I16(3).I16(7).Raw(tags).I32(0).Raw(tags).str();
  auto r = DecodeAll<ApiVersionsResponse>(resp, 3);
  REQUIRE(r.api_keys.size() == 1);
  CHECK(r.api_keys[0].max_version == 7);
  // In the request header v2.
  const std::string header = Bytes().Str("c").Raw(tags).str();
  Reader hr(header);
  std::optional<std::string> client_id;
  REQUIRE(DecodeRequestHeaderRest(hr, true, &client_id).ok());
  CHECK(hr.remaining() == 0);
  // A tagged field whose size runs past the end is corruption.
  const std::string bad = Bytes().CStr("a").CStr("b").UVarint(1).UVarint(0).UVarint(9).str();
  const Status s = DecodeStatus<ApiVersionsRequest>(bad + "abc", 3);
  CHECK(s.IsCorruption());
  CHECK(s.message().find("tagged field 0 of 9 bytes") != std::string::npos);
}

TEST_CASE("Kafka codec: a negative or null length in a non-nullable string fails") {
  Status s = DecodeStatus<SaslHandshakeRequest>(Bytes().I16(-2).str(), 0);
  CHECK(s.IsCorruption());
  CHECK(s.message() == "kafka SaslHandshakeRequest v0: mechanism: negative string length -2");
  s = DecodeStatus<SaslHandshakeRequest>(Bytes().I16(-1).str(), 1);
  CHECK(s.IsCorruption());
  CHECK(s.message().find("null string in a non-nullable field") != std::string::npos);
  // A compact null (0) in a non-nullable compact string.
  CHECK(DecodeStatus<ApiVersionsRequest>(Bytes().UVarint(0).CStr("v").UVarint(0).str(), 3)
            .IsCorruption());
  // A length beyond the remaining bytes, and beyond Kafka's 32767 limit.
  s = DecodeStatus<SaslHandshakeRequest>(Bytes().I16(10).Raw("PLAIN").str(), 0);
  CHECK(s.message().find("string length 10 exceeds the 5 bytes left") != std::string::npos);
  s = DecodeStatus<ApiVersionsRequest>(Bytes().UVarint(40000).Raw(std::string(40000, 'x')).str(),
                                       3);
  CHECK(s.message().find("exceeds 32767") != std::string::npos);
  // Negative bytes length.
  CHECK(DecodeStatus<SaslAuthenticateRequest>(Bytes().I32(-5).str(), 0).IsCorruption());
}

TEST_CASE("Kafka codec: a version outside the codec's range is refused") {
  const Status s = DecodeStatus<ProduceRequest>("", 8);
  CHECK(s.IsInvalidArgument());
  CHECK(s.message() == "kafka ProduceRequest: version 8 is outside 0-7");
  CHECK(DecodeStatus<FetchRequest>("", 3).IsInvalidArgument());
}

TEST_CASE("Kafka codec: varints round-trip at their limits and refuse overlong forms") {
  Writer w;
  const uint32_t u32[] = {0, 1, 127, 128, 16383, 16384, 0xffffffffu};
  const int32_t s32[] = {0, -1, 1, -64, 64, INT32_MIN, INT32_MAX};
  const int64_t s64[] = {0, -1, 1, INT64_MIN, INT64_MAX};
  for (uint32_t v : u32) w.WriteUnsignedVarint(v);
  for (int32_t v : s32) w.WriteVarint(v);
  for (int64_t v : s64) w.WriteVarlong(v);
  w.WriteUnsignedVarlong(~uint64_t{0});
  const std::string wire = JoinChunks(w.Finish());
  Reader r(wire);
  for (uint32_t v : u32) {
    uint32_t got = 0;
    REQUIRE(r.ReadUnsignedVarint(&got));
    CHECK(got == v);
  }
  for (int32_t v : s32) {
    int32_t got = 0;
    REQUIRE(r.ReadVarint(&got));
    CHECK(got == v);
  }
  for (int64_t v : s64) {
    int64_t got = 0;
    REQUIRE(r.ReadVarlong(&got));
    CHECK(got == v);
  }
  uint64_t max = 0;
  REQUIRE(r.ReadUnsignedVarlong(&max));
  CHECK(max == ~uint64_t{0});
  CHECK(r.remaining() == 0);

  uint32_t u = 0;
  Reader six("\xff\xff\xff\xff\xff\x01");  // 6 bytes
  CHECK_FALSE(six.ReadUnsignedVarint(&u));
  Reader overflow("\xff\xff\xff\xff\x1f");  // 35 bits
  CHECK_FALSE(overflow.ReadUnsignedVarint(&u));
  Reader truncated("\x80");
  CHECK_FALSE(truncated.ReadUnsignedVarint(&u));
  CHECK(truncated.Fail("X", 0, "f").message() == "kafka X v0: f: truncated varint");
}

TEST_CASE("Kafka codec: a failed Reader stays failed and reads nothing more") {
  Reader r(std::string_view("\x00\x01", 2));
  int32_t i = 0;
  CHECK_FALSE(r.ReadInt32(&i));
  int16_t s = 0;
  CHECK_FALSE(r.ReadInt16(&s));  // enough bytes, but the reader has failed
  CHECK(r.failed());
  CHECK(r.position() == 0);
}

// ---- The generator ----

#if defined(RUNNEL_KAFKA_CODEGEN) && defined(RUNNEL_PYTHON)
// Runs codegen.py on schema files written to `dir`; returns its exit status and output.
std::pair<int, std::string> RunCodegen(
    const testing::TempDir& dir, const std::vector<std::pair<std::string, std::string>>& files) {
  std::string cmd = std::string("'") + RUNNEL_PYTHON + "' '" + RUNNEL_KAFKA_CODEGEN +
                    "' --out-dir '" + dir.Sub("out") + "'";
  for (const auto& [name, text] : files) {
    std::filesystem::create_directories(std::filesystem::path(dir.Sub(name)).parent_path());
    std::ofstream(dir.Sub(name)) << text;
    cmd += " '" + dir.Sub(name) + "'";
  }
  FILE* p = popen((cmd + " 2>&1").c_str(), "r");
  REQUIRE(p != nullptr);
  std::string output;
  char buf[512];
  while (size_t n = fread(buf, 1, sizeof buf, p)) output.append(buf, n);
  const int status = pclose(p);
  return {status, output};
}

TEST_CASE("Kafka codegen: malformed schema files are refused with file:line: what") {
  testing::TempDir dir;
  const std::string head = "# Test.\napi 0 Produce versions 0-3 flexible none\nrequest\n";
  struct Case {
    std::string body;
    std::string error;
  };
  const Case cases[] = {
      {"  acks  int17\nresponse\n  e int16\n", ":4: unknown type 'int17'"},
      {"  acks  int16 5-3\nresponse\n  e int16\n", ":4: empty version range '5-3'"},
      {"  acks  int16 = x\nresponse\n  e int16\n", ":4: default 'x' is not an integer"},
      {"  acks  int8 = 300\nresponse\n  e int16\n", ":4: default 300 does not fit in int8"},
      {"  acks  int16\n    x int16\nresponse\n  e int16\n", ":5: only a [Struct] field"},
      {"  t  [T]\n      a int16\n    b int16\nresponse\n  e int16\n", ":6: indentation 4"},
      {"  t  [T]\nresponse\n  e int16\n", ":4: [T] needs fields"},
      {"  a  int32?\nresponse\n  e int16\n", ":4: int32 cannot be nullable"},
      {"  a  int32\n  a  int16\nresponse\n  e int16\n", ":5: duplicate field 'a'"},
      {"  a  int32  9+\nresponse\n  e int16\n", ":4: field 'a' is in no version of 0-3"},
      {"  a  string?5+\nresponse\n  e int16\n", ":4: nullable versions 5+ lie outside"},
      {"  t  [T]\n    a int16 2+\nresponse\n  e int16\n", ":4: T has no field in version 0"},
      {"\ta  int32\nresponse\n", ":4: tab character"},
      {"  a  int32\n", ":4: no 'response' section"},
      {"  Acks  int16\nresponse\n  e int16\n", ":4: bad field name 'Acks'"},
      {"  a  int16 tag 0\nresponse\n  e int16\n", ":4: tagged fields are not supported"},
  };
  // One run: the generator reports the first error of every file.
  std::vector<std::pair<std::string, std::string>> files;
  for (size_t i = 0; i < std::size(cases); ++i) {
    files.emplace_back("c" + std::to_string(i) + "/produce.ks", head + cases[i].body);
  }
  const auto run = RunCodegen(dir, files);
  const std::string output = run.second;  // a plain variable: clang 14 cannot capture bindings
  CAPTURE(output);
  CHECK(run.first != 0);
  for (size_t i = 0; i < std::size(cases); ++i) {
    CAPTURE(cases[i].body);
    CHECK(output.find(files[i].first + cases[i].error) != std::string::npos);
  }
  // The file name must follow the api name; two files may not share an api key.
  const std::string good = head + "  a int16\nresponse\n  e int16\n";
  auto [name_status, name_output] = RunCodegen(dir, {{"prod.ks", good}});
  CHECK(name_status != 0);
  CHECK(name_output.find("prod.ks:2: the file for api Produce must be named produce.ks") !=
        std::string::npos);
  const std::string fetch = "api 0 Fetch versions 0 flexible none\nrequest\nresponse\n";
  auto [dup_status, dup_output] =
      RunCodegen(dir, {{"good/produce.ks", good}, {"good/fetch.ks", fetch}});
  CHECK(dup_status != 0);
  CHECK(dup_output.find("fetch.ks:1: api key 0 is also used by") != std::string::npos);
  // And a good file passes silently.
  auto [ok_status, ok_output] = RunCodegen(dir, {{"good/produce.ks", good}});
  CHECK(ok_status == 0);
  CHECK(ok_output.empty());
  CHECK(std::filesystem::exists(dir.Sub("out/messages.h")));
}
#endif

}  // namespace
}  // namespace runnel::kafka
