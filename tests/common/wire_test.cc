#include "runnel/common/wire.h"

#include <doctest/doctest.h>

#include <random>

#include "runnel/common/coding.h"

namespace runnel::wire {
namespace {

TEST_CASE("Wire: a frame's header has the documented layout") {
  const std::string f = EncodeFrame(static_cast<uint16_t>(Api::kProduce), 3, 0x01020304, "body");
  // length 12 = 8 header bytes + 4 body bytes; api 1; version 3; correlation id 0x01020304.
  CHECK(f == std::string("\x00\x00\x00\x0c\x00\x01\x00\x03\x01\x02\x03\x04"
                         "body",
                         16));
}

TEST_CASE("Wire: frames split across arbitrary reads are reassembled in order") {
  std::string stream;
  for (uint32_t i = 0; i < 50; ++i) {
    stream += EncodeFrame(static_cast<uint16_t>(Api::kFetch), 1, i, std::string(i * 37, 'x'));
  }
  std::mt19937 rng(5);
  FrameDecoder d(1 << 20);
  uint32_t next = 0;
  for (size_t pos = 0; pos < stream.size();) {
    const size_t n = std::min<size_t>(stream.size() - pos, 1 + rng() % 200);
    d.Append(std::string_view(stream).substr(pos, n));
    pos += n;
    while (true) {
      auto r = d.Next();
      REQUIRE(r.ok());
      if (!r->has_value()) break;
      CHECK((*r)->header.correlation_id == next);
      CHECK((*r)->body.size() == next * 37);
      ++next;
    }
  }
  CHECK(next == 50);
  CHECK(d.buffered() == 0);
}

TEST_CASE("Wire: a huge declared length is refused before any body arrives") {
  FrameDecoder d(1 << 20);
  std::string header;
  PutFixed32BE(&header, 0xFFFFFFF0u);
  d.Append(header);
  auto r = d.Next();
  REQUIRE_FALSE(r.ok());
  CHECK(r.status().code() == StatusCode::kTooLarge);
  CHECK(d.buffered() == 4);    // nothing was allocated for the declared size
  CHECK_FALSE(d.Next().ok());  // the error is sticky: the connection must close
}

TEST_CASE("Wire: a length shorter than the header is corruption; partial data waits") {
  FrameDecoder d;
  d.Append(std::string("\x00\x00", 2));
  auto partial = d.Next();
  REQUIRE(partial.ok());
  CHECK_FALSE(partial->has_value());
  d.Append(std::string("\x00\x03", 2));
  CHECK(d.Next().status().IsCorruption());
}

TEST_CASE("Wire: error code names are stable") {
  CHECK(ErrorCodeName(ErrorCode::kNone) == "none");
  CHECK(ErrorCodeName(ErrorCode::kFenced) == "fenced");
  CHECK(static_cast<uint16_t>(ErrorCode::kMalformedRequest) == 17);
  CHECK(static_cast<uint16_t>(ErrorCode::kUnauthenticated) == 18);
  CHECK(static_cast<uint16_t>(ErrorCode::kPermissionDenied) == 19);
  CHECK(ErrorCodeName(ErrorCode::kPermissionDenied) == "permission_denied");
  CHECK(static_cast<uint16_t>(Api::kAuthenticate) == 9);
  CHECK(static_cast<uint16_t>(Api::kStats) == 44);
  CHECK(static_cast<uint16_t>(Api::kBackup) == 45);
}

}  // namespace
}  // namespace runnel::wire
