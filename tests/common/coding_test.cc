#include "runnel/common/coding.h"

#include <doctest/doctest.h>

#include <cstdint>
#include <limits>
#include <vector>

namespace runnel {
namespace {

TEST_CASE("Coding: fixed big-endian integers round-trip and are big-endian") {
  std::string s;
  PutFixed16BE(&s, 0x0102);
  PutFixed32BE(&s, 0x03040506);
  PutFixed64BE(&s, 0x0708090a0b0c0d0eULL);
  CHECK(s == std::string("\x01\x02\x03\x04\x05\x06\x07\x08\x09\x0a\x0b\x0c\x0d\x0e", 14));
  ByteReader r(s);
  uint16_t a;
  uint32_t b;
  uint64_t c;
  REQUIRE(r.ReadFixed16BE(&a));
  REQUIRE(r.ReadFixed32BE(&b));
  REQUIRE(r.ReadFixed64BE(&c));
  CHECK(a == 0x0102);
  CHECK(b == 0x03040506);
  CHECK(c == 0x0708090a0b0c0d0eULL);
  CHECK(r.empty());
  CHECK_FALSE(r.ReadFixed16BE(&a));
}

TEST_CASE("Coding: zigzag matches Kafka's mapping") {
  CHECK(ZigZagEncode64(0) == 0);
  CHECK(ZigZagEncode64(-1) == 1);
  CHECK(ZigZagEncode64(1) == 2);
  CHECK(ZigZagEncode64(-2) == 3);
  CHECK(ZigZagEncode32(std::numeric_limits<int32_t>::max()) == 0xfffffffeu);
  CHECK(ZigZagEncode32(std::numeric_limits<int32_t>::min()) == 0xffffffffu);
  CHECK(ZigZagDecode32(0xffffffffu) == std::numeric_limits<int32_t>::min());
  CHECK(ZigZagDecode64(ZigZagEncode64(std::numeric_limits<int64_t>::min())) ==
        std::numeric_limits<int64_t>::min());
}

TEST_CASE("Coding: signed varints round-trip at the edges") {
  const std::vector<int64_t> values = {0,
                                       1,
                                       -1,
                                       63,
                                       -64,
                                       64,
                                       300,
                                       -300,
                                       std::numeric_limits<int32_t>::max(),
                                       std::numeric_limits<int32_t>::min(),
                                       std::numeric_limits<int64_t>::max(),
                                       std::numeric_limits<int64_t>::min()};
  std::string s;
  for (int64_t v : values) PutSignedVarint64(&s, v);
  ByteReader r(s);
  for (int64_t v : values) {
    int64_t got;
    REQUIRE(r.ReadSignedVarint64(&got));
    CHECK(got == v);
  }
  CHECK(r.empty());
  CHECK(VarintLength(0) == 1);
  CHECK(VarintLength(127) == 1);
  CHECK(VarintLength(128) == 2);
  CHECK(VarintLength(UINT64_MAX) == 10);
}

TEST_CASE("Coding: malformed varints are rejected, never over-read") {
  uint64_t v64;
  uint32_t v32;
  SUBCASE("truncated") {
    std::string s("\x80\x80", 2);
    ByteReader r(s);
    CHECK_FALSE(r.ReadVarint64(&v64));
  }
  SUBCASE("too long for 64 bits") {
    std::string s(10, '\xff');
    s.push_back('\x01');
    ByteReader r(s);
    CHECK_FALSE(r.ReadVarint64(&v64));
  }
  SUBCASE("overflows 64 bits in the tenth byte") {
    std::string s(9, '\xff');
    s.push_back('\x02');
    ByteReader r(s);
    CHECK_FALSE(r.ReadVarint64(&v64));
  }
  SUBCASE("exceeds 32 bits") {
    std::string s;
    PutVarint64(&s, uint64_t{1} << 32);
    ByteReader r(s);
    CHECK_FALSE(r.ReadVarint32(&v32));
  }
  SUBCASE("length prefix longer than the input") {
    std::string s;
    PutVarint64(&s, 5);
    s += "abc";
    ByteReader r(s);
    std::string_view out;
    CHECK_FALSE(r.ReadLengthPrefixed(&out));
  }
}

}  // namespace
}  // namespace runnel
