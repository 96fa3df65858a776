#include "runnel/common/record_batch.h"

#include <doctest/doctest.h>
#include <lz4frame.h>

#include <random>
#include <string>
#include <vector>

#include "runnel/common/coding.h"
#include "runnel/common/compression.h"
#include "runnel/common/crc32c.h"

namespace runnel {
namespace {

namespace L = batch_layout;

std::string FromHex(std::string_view hex) {
  std::string out;
  for (size_t i = 0; i + 1 < hex.size(); i += 2) {
    out.push_back(static_cast<char>(std::stoi(std::string(hex.substr(i, 2)), nullptr, 16)));
  }
  return out;
}

// Recomputes the CRC after a test tampered with covered bytes, so a later check is reached.
void FixCrc(std::string& b) {
  EncodeFixed32BE(b.data() + L::kCrc,
                  crc32c::Value(b.data() + L::kAttributes, b.size() - L::kAttributes));
}

std::string SampleBatch(Compression c, int n = 50) {
  RecordBatchBuilder builder(
      {.compression = c, .producer_id = 7, .producer_epoch = 2, .base_sequence = 100});
  for (int i = 0; i < n; ++i) {
    const std::string key = "key-" + std::to_string(i);
    const std::string value = "{\"event\":\"scan\",\"id\":" + std::to_string(i * 7919) + "}";
    RecordHeader headers[] = {{"trace", std::string_view("abc")}, {"nullable", std::nullopt}};
    builder.Add(1'700'000'000'000 + i, key, value, headers);
  }
  return builder.Build();
}

TEST_CASE("RecordBatch: golden bytes of a one-record batch match Kafka's v2 layout") {
  // Computed independently (bitwise CRC-32C in Python) from the layout in the Kafka docs.
  const std::string golden = FromHex(
      "00000000000000000000003affffffff02e99b8dd80000000000000000018bcfe568000000018bcfe56800"
      "ffffffffffffffffffffffffffff0000000110000000026b027600");
  RecordBatchBuilder builder;
  builder.Add(1'700'000'000'000, std::string_view("k"), std::string_view("v"));
  CHECK(builder.Build() == golden);

  auto decoded = DecodedBatch::Decode(golden);
  REQUIRE(decoded.ok());
  CHECK(decoded->header().record_count == 1);
  CHECK(decoded->records()[0].key == std::optional<std::string_view>("k"));
  CHECK(decoded->records()[0].value == std::optional<std::string_view>("v"));
}

TEST_CASE("RecordBatch: round trip without compression and with LZ4") {
  for (Compression c : {Compression::kNone, Compression::kLz4}) {
    CAPTURE(CompressionName(c));
    std::string bytes = SampleBatch(c);
    SetBatchBaseOffset(bytes, 1000);
    auto decoded = DecodedBatch::Decode(bytes);
    REQUIRE_MESSAGE(decoded.ok(), decoded.status().ToString());
    const BatchHeader& h = decoded->header();
    CHECK(h.base_offset == 1000);
    CHECK(h.record_count == 50);
    CHECK(h.last_offset() == 1049);
    CHECK(h.compression() == c);
    CHECK(h.producer_id == 7);
    CHECK(h.producer_epoch == 2);
    CHECK(h.base_sequence == 100);
    CHECK(h.last_sequence() == 149);
    CHECK(h.base_timestamp == 1'700'000'000'000);
    CHECK(h.max_timestamp == 1'700'000'000'049);
    const auto& recs = decoded->records();
    REQUIRE(recs.size() == 50);
    for (int i = 0; i < 50; ++i) {
      CHECK(recs[i].offset == 1000 + i);
      CHECK(recs[i].timestamp == 1'700'000'000'000 + i);
      CHECK(*recs[i].key == "key-" + std::to_string(i));
      CHECK(*recs[i].value == "{\"event\":\"scan\",\"id\":" + std::to_string(i * 7919) + "}");
      auto hs = recs[i].Headers();
      REQUIRE(hs.size() == 2);
      CHECK(hs[0].key == "trace");
      CHECK(*hs[0].value == "abc");
      CHECK_FALSE(hs[1].value.has_value());
      CHECK(recs[i].FindHeader("trace") == std::optional<std::string_view>("abc"));
      CHECK_FALSE(recs[i].FindHeader("missing").has_value());
    }
  }
}

TEST_CASE("RecordBatch: LZ4 shrinks repetitive JSON and the frame is standard") {
  const std::string plain = SampleBatch(Compression::kNone, 500);
  const std::string lz4 = SampleBatch(Compression::kLz4, 500);
  CHECK(lz4.size() * 2 < plain.size());
  std::string out;
  const std::string_view frame = std::string_view(lz4).substr(kBatchHeaderSize);
  CHECK(DecodeFixed32BE(frame.data()) == 0x04224D18u);  // LZ4 frame magic, little-endian on disk
  REQUIRE(Lz4FrameDecompress(frame, 1 << 20, &out).ok());
  CHECK(out == std::string_view(plain).substr(kBatchHeaderSize));
}

TEST_CASE("RecordBatch: null keys and values, empty values and negative timestamp deltas") {
  RecordBatchBuilder b;
  b.Add(5000, std::nullopt, std::nullopt);
  b.Add(4000, std::string_view(""), std::string_view(""));
  b.Add(6000, std::string_view("k"), std::nullopt);
  auto d = DecodedBatch::Decode(b.Build());
  REQUIRE(d.ok());
  const auto& r = d->records();
  CHECK_FALSE(r[0].key.has_value());
  CHECK_FALSE(r[0].value.has_value());
  CHECK(r[1].key == std::optional<std::string_view>(""));
  CHECK(r[1].value == std::optional<std::string_view>(""));
  CHECK(r[1].timestamp == 4000);
  CHECK(d->header().max_timestamp == 6000);
}

TEST_CASE("RecordBatch: AddCopy reproduces records exactly") {
  const std::string original = SampleBatch(Compression::kNone, 5);
  auto d = DecodedBatch::Decode(original);
  REQUIRE(d.ok());
  RecordBatchBuilder b({.producer_id = 7, .producer_epoch = 2, .base_sequence = 100});
  for (const Record& r : d->records()) b.AddCopy(r);
  CHECK(b.Build() == original);
}

TEST_CASE("RecordBatch: a flipped byte anywhere under the CRC is detected") {
  const std::string good = SampleBatch(Compression::kLz4, 10);
  for (size_t i = L::kAttributes; i < good.size(); ++i) {
    std::string bad = good;
    bad[i] = static_cast<char>(bad[i] ^ 0x40);
    auto d = DecodedBatch::Decode(bad);
    REQUIRE_FALSE(d.ok());
    CHECK(d.status().IsCorruption());
  }
}

TEST_CASE("RecordBatch: every truncation is rejected with a clear error") {
  const std::string good = SampleBatch(Compression::kNone, 10);
  for (size_t len = 0; len < good.size(); ++len) {
    auto d = DecodedBatch::Decode(std::string_view(good).substr(0, len));
    REQUIRE_FALSE(d.ok());
    CHECK(d.status().IsCorruption());
    CHECK(d.status().message().find("truncated") != std::string::npos);
  }
}

TEST_CASE("RecordBatch: header inconsistencies are rejected") {
  std::string b = SampleBatch(Compression::kNone, 10);
  SUBCASE("wrong magic") {
    b[L::kMagic] = 1;
    auto d = DecodedBatch::Decode(b);
    CHECK(d.status().message().find("magic") != std::string::npos);
  }
  SUBCASE("record count larger than the records") {
    EncodeFixed32BE(b.data() + L::kRecordCount, 11);
    EncodeFixed32BE(b.data() + L::kLastOffsetDelta, 10);
    FixCrc(b);
    auto d = DecodedBatch::Decode(b);
    REQUIRE(d.status().IsCorruption());
    CHECK(d.status().message().find("declares 11 records") != std::string::npos);
  }
  SUBCASE("record count smaller than the records") {
    EncodeFixed32BE(b.data() + L::kRecordCount, 9);
    EncodeFixed32BE(b.data() + L::kLastOffsetDelta, 8);
    FixCrc(b);
    auto d = DecodedBatch::Decode(b);
    REQUIRE(d.status().IsCorruption());
    CHECK(d.status().message().find("trailing bytes") != std::string::npos);
  }
  SUBCASE("last offset delta disagrees with the count") {
    EncodeFixed32BE(b.data() + L::kLastOffsetDelta, 3);
    FixCrc(b);
    CHECK(DecodedBatch::Decode(b).status().message().find("last offset delta") !=
          std::string::npos);
  }
  SUBCASE("zero and negative record counts") {
    EncodeFixed32BE(b.data() + L::kRecordCount, static_cast<uint32_t>(-1));
    FixCrc(b);
    CHECK(DecodedBatch::Decode(b).status().IsCorruption());
  }
  SUBCASE("batch length longer than the bytes") {
    EncodeFixed32BE(b.data() + L::kBatchLength, static_cast<uint32_t>(b.size()));
    CHECK(DecodedBatch::Decode(b).status().message().find("truncated") != std::string::npos);
  }
  SUBCASE("batch length shorter than the bytes") {
    EncodeFixed32BE(b.data() + L::kBatchLength, static_cast<uint32_t>(b.size() - 20));
    CHECK(DecodedBatch::Decode(b).status().IsCorruption());
  }
  SUBCASE("max timestamp that lies about the records") {
    EncodeFixed64BE(b.data() + L::kMaxTimestamp, 1);
    FixCrc(b);
    CHECK(DecodedBatch::Decode(b).status().message().find("max timestamp") != std::string::npos);
  }
  SUBCASE("a codec that does not match the records") {
    EncodeFixed16BE(b.data() + L::kAttributes, static_cast<uint16_t>(Compression::kZstd));
    FixCrc(b);
    auto d = DecodedBatch::Decode(b);
    CHECK(d.status().IsCorruption());
    CHECK(d.status().message().find("zstd") != std::string::npos);
  }
  SUBCASE("an invalid codec value") {
    EncodeFixed16BE(b.data() + L::kAttributes, 5);
    FixCrc(b);
    auto d = DecodedBatch::Decode(b);
    CHECK(d.status().IsCorruption());
    CHECK(d.status().message().find("invalid compression attribute") != std::string::npos);
  }
}

TEST_CASE("RecordBatch: a record whose length runs past the batch is rejected") {
  RecordBatchBuilder builder;
  builder.Add(1, std::string_view("k"), std::string_view("value"));
  std::string b = builder.Build();
  b[kBatchHeaderSize] = 0x7e;  // record length 63, far more than present
  FixCrc(b);
  auto d = DecodedBatch::Decode(b);
  REQUIRE(d.status().IsCorruption());
  CHECK(d.status().message().find("record 0") != std::string::npos);
}

TEST_CASE("RecordBatch: LZ4 garbage, truncation and trailing bytes are corruption") {
  std::string b = SampleBatch(Compression::kLz4, 20);
  SUBCASE("garbage frame") {
    for (size_t i = kBatchHeaderSize + 4; i < b.size(); ++i) b[i] = static_cast<char>(i * 31);
    FixCrc(b);
    CHECK(DecodedBatch::Decode(b).status().IsCorruption());
  }
  SUBCASE("truncated frame") {
    std::string out;
    auto frame = std::string_view(b).substr(kBatchHeaderSize);
    CHECK(Lz4FrameDecompress(frame.substr(0, frame.size() - 9), 1 << 20, &out).IsCorruption());
  }
  SUBCASE("trailing bytes") {
    std::string out;
    std::string frame(std::string_view(b).substr(kBatchHeaderSize));
    frame += "xx";
    CHECK(Lz4FrameDecompress(frame, 1 << 20, &out).IsCorruption());
  }
}

TEST_CASE("RecordBatch: a decompression bomb stops at the limit") {
  RecordBatchBuilder builder({.compression = Compression::kLz4});
  const std::string zeros(1 << 20, '\0');
  for (int i = 0; i < 8; ++i) builder.Add(1, std::nullopt, zeros);
  const std::string b = builder.Build();
  CHECK(b.size() < 64 * 1024);  // 8 MiB of zeros compress to a few KiB
  auto d = DecodedBatch::Decode(b, DecodeLimits{.max_uncompressed_bytes = 1 << 20});
  REQUIRE_FALSE(d.ok());
  CHECK(d.status().code() == StatusCode::kTooLarge);
  CHECK(DecodedBatch::Decode(b, DecodeLimits{.max_uncompressed_bytes = 16 << 20}).ok());
}

// A frame as `lz4` writes it, with or without the optional content size in its header.
std::string RawLz4Frame(std::string_view input, unsigned long long declared_size) {
  LZ4F_preferences_t prefs{};
  prefs.frameInfo.blockMode = LZ4F_blockIndependent;
  prefs.frameInfo.contentSize = declared_size;
  std::string out(LZ4F_compressFrameBound(input.size(), &prefs), '\0');
  const size_t n = LZ4F_compressFrame(out.data(), out.size(), input.data(), input.size(), &prefs);
  REQUIRE_FALSE(LZ4F_isError(n));
  out.resize(n);
  return out;
}

TEST_CASE("RecordBatch: LZ4 frames with and without a declared content size") {
  std::string input;
  for (int i = 0; i < 20000; ++i) input += "record " + std::to_string(i * 7919 % 100003) + ";";
  std::string out;
  SUBCASE("ours declare it, and the limit is checked before anything is decoded") {
    const std::string frame = Lz4FrameCompress(input);
    LZ4F_frameInfo_t info{};
    LZ4F_dctx* d = nullptr;
    REQUIRE_FALSE(LZ4F_isError(LZ4F_createDecompressionContext(&d, LZ4F_VERSION)));
    size_t n = frame.size();
    REQUIRE_FALSE(LZ4F_isError(LZ4F_getFrameInfo(d, &info, frame.data(), &n)));
    LZ4F_freeDecompressionContext(d);
    CHECK(info.contentSize == input.size());
    REQUIRE(Lz4FrameDecompress(frame, input.size(), &out).ok());
    CHECK(out == input);
    const Status s = Lz4FrameDecompress(frame, input.size() - 1, &out);
    CHECK(s.code() == StatusCode::kTooLarge);
    CHECK(s.message().find("declares") != std::string::npos);
  }
  SUBCASE("without it (as Kafka's Java client writes) the output grows to fit") {
    const std::string frame = RawLz4Frame(input, 0);
    const Status s = Lz4FrameDecompress(frame, 1 << 20, &out);
    INFO(s.ToString());
    REQUIRE(s.ok());
    CHECK(out == input);
    CHECK(Lz4FrameDecompress(frame, input.size() - 1, &out).code() == StatusCode::kTooLarge);
  }
  SUBCASE("both kinds in turn on one thread (LZ4 contexts keep a stale declared size)") {
    const std::string with = Lz4FrameCompress(input);
    const std::string without = RawLz4Frame(input, 0);
    for (int i = 0; i < 4; ++i) {
      const Status st = Lz4FrameDecompress(i % 2 ? without : with, 1 << 20, &out);
      INFO(i << ": " << st.ToString());
      REQUIRE(st.ok());
      CHECK(out == input);
    }
  }
}

TEST_CASE("RecordBatch: a hostile base offset wraps instead of overflowing") {
  std::string b = SampleBatch(Compression::kNone, 3);
  SetBatchBaseOffset(b, INT64_MAX);  // not covered by the CRC: anyone can send it
  auto d = DecodedBatch::Decode(b);
  REQUIRE(d.ok());
  CHECK(d->records()[0].offset == INT64_MAX);
  CHECK(d->records()[1].offset == INT64_MIN);
  CHECK(d->header().next_offset() == INT64_MIN + 2);
}

TEST_CASE("RecordBatch: random mutations never crash or over-read") {
  std::mt19937 rng(7);
  const std::string plain = SampleBatch(Compression::kNone, 8);
  const std::string lz4 = SampleBatch(Compression::kLz4, 8);
  int accepted = 0;
  for (int iter = 0; iter < 4000; ++iter) {
    std::string b = (iter % 2) ? plain : lz4;
    const int edits = 1 + static_cast<int>(rng() % 4);
    for (int e = 0; e < edits; ++e) {
      b[kBatchHeaderSize + rng() % (b.size() - kBatchHeaderSize)] = static_cast<char>(rng());
    }
    FixCrc(b);  // get past the CRC so the record parser sees the damage
    auto d = DecodedBatch::Decode(b, DecodeLimits{.max_uncompressed_bytes = 1 << 20});
    if (d.ok()) {
      ++accepted;
      for (const Record& r : d->records()) (void)r.Headers();
    }
  }
  CHECK(accepted < 4000);  // most damage must be caught; the rest must simply not crash
}

}  // namespace
}  // namespace runnel
