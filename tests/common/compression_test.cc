#include "runnel/common/compression.h"

#include <doctest/doctest.h>
#define ZLIB_CONST  // next_in is a pointer to const
#include <lz4frame.h>
#include <snappy.h>
#include <zlib.h>
#include <zstd.h>

#include <random>
#include <string>
#include <vector>

#include "runnel/common/coding.h"
#include "runnel/common/crc32c.h"
#include "runnel/common/record_batch.h"

namespace runnel {
namespace {

namespace L = batch_layout;

constexpr Compression kAllCodecs[] = {Compression::kNone, Compression::kGzip, Compression::kSnappy,
                                      Compression::kLz4, Compression::kZstd};
constexpr Compression kCompressingCodecs[] = {Compression::kGzip, Compression::kSnappy,
                                              Compression::kLz4, Compression::kZstd};

// Text that compresses, but not to nothing: numbered JSON-ish events.
std::string SampleText(size_t size) {
  std::string s;
  for (int i = 0; s.size() < size; ++i) {
    s += "{\"event\":\"scan\",\"id\":" + std::to_string(i * 7919 % 100003) + ",\"ok\":true}\n";
  }
  s.resize(size);
  return s;
}

std::string Compressed(Compression c, std::string_view input) {
  std::string out;
  Compress(c, input, &out);
  return out;
}

// ---- Streams written by the reference libraries directly, as other clients write them ----

// A gzip member from zlib, optionally with the header fields Python's and GNU gzip write (file
// name, modification time) and a header CRC.
std::string ReferenceGzip(std::string_view input, bool header_fields = false) {
  z_stream z{};
  REQUIRE(deflateInit2(&z, 9, Z_DEFLATED, 15 + 16, 9, Z_DEFAULT_STRATEGY) == Z_OK);
  static char name[] = "records.bin";
  gz_header header{};
  header.name = reinterpret_cast<Bytef*>(name);
  header.time = 1700000000;
  header.os = 3;
  header.hcrc = 1;
  if (header_fields) REQUIRE(deflateSetHeader(&z, &header) == Z_OK);
  std::string out(deflateBound(&z, input.size()), '\0');
  z.next_in = reinterpret_cast<const Bytef*>(input.data());
  z.avail_in = static_cast<uInt>(input.size());
  z.next_out = reinterpret_cast<Bytef*>(out.data());
  z.avail_out = static_cast<uInt>(out.size());
  REQUIRE(deflate(&z, Z_FINISH) == Z_STREAM_END);
  out.resize(z.total_out);
  deflateEnd(&z);
  return out;
}

// One raw snappy block, as librdkafka writes it.
std::string ReferenceRawSnappy(std::string_view input) {
  std::string out;
  snappy::Compress(input.data(), input.size(), &out);
  return out;
}

// xerial framing as snappy-java writes it, with chunks of `chunk` input bytes.
std::string ReferenceXerialSnappy(std::string_view input, size_t chunk) {
  std::string out("\x82SNAPPY\0", 8);
  PutFixed32BE(&out, 1);
  PutFixed32BE(&out, 1);
  for (size_t pos = 0; pos < input.size(); pos += chunk) {
    std::string block;
    snappy::Compress(input.data() + pos, std::min(chunk, input.size() - pos), &block);
    PutFixed32BE(&out, static_cast<uint32_t>(block.size()));
    out += block;
  }
  return out;
}

// An LZ4 frame without a declared content size, as Kafka's Java client writes it.
std::string ReferenceLz4(std::string_view input) {
  LZ4F_preferences_t prefs{};
  prefs.frameInfo.blockMode = LZ4F_blockIndependent;
  prefs.frameInfo.blockSizeID = LZ4F_max64KB;
  std::string out(LZ4F_compressFrameBound(input.size(), &prefs), '\0');
  const size_t n = LZ4F_compressFrame(out.data(), out.size(), input.data(), input.size(), &prefs);
  REQUIRE_FALSE(LZ4F_isError(n));
  out.resize(n);
  return out;
}

// A zstd frame written by the streaming compressor without a declared content size (as
// zstd-jni's ZstdOutputStream in Kafka's Java client writes it).
std::string ReferenceZstdStream(std::string_view input, int level = 3, int window_log = 0,
                                bool checksum = false) {
  ZSTD_CCtx* cctx = ZSTD_createCCtx();
  REQUIRE(cctx != nullptr);
  REQUIRE_FALSE(ZSTD_isError(ZSTD_CCtx_setParameter(cctx, ZSTD_c_compressionLevel, level)));
  REQUIRE_FALSE(ZSTD_isError(ZSTD_CCtx_setParameter(cctx, ZSTD_c_contentSizeFlag, 0)));
  REQUIRE_FALSE(ZSTD_isError(ZSTD_CCtx_setParameter(cctx, ZSTD_c_checksumFlag, checksum)));
  if (window_log > 0) {
    REQUIRE_FALSE(ZSTD_isError(ZSTD_CCtx_setParameter(cctx, ZSTD_c_windowLog, window_log)));
  }
  std::string out(ZSTD_compressBound(input.size()) + 64, '\0');
  ZSTD_outBuffer o{out.data(), out.size(), 0};
  ZSTD_inBuffer in{input.data(), input.size(), 0};
  // Continue first, end later: the compressor never learns the size up front.
  while (in.pos < in.size) {
    REQUIRE_FALSE(ZSTD_isError(ZSTD_compressStream2(cctx, &o, &in, ZSTD_e_continue)));
  }
  size_t left = 0;
  do {
    left = ZSTD_compressStream2(cctx, &o, &in, ZSTD_e_end);
    REQUIRE_FALSE(ZSTD_isError(left));
  } while (left != 0);
  out.resize(o.pos);
  ZSTD_freeCCtx(cctx);
  return out;
}

std::string ReferenceZstd(std::string_view input) {
  std::string out(ZSTD_compressBound(input.size()), '\0');
  const size_t n = ZSTD_compress(out.data(), out.size(), input.data(), input.size(), 1);
  REQUIRE_FALSE(ZSTD_isError(n));
  out.resize(n);
  return out;
}

// A zstd skippable frame (magic 0x184D2A50..5F, little-endian length, payload).
std::string ZstdSkippableFrame(std::string_view payload) {
  std::string out("\x50\x2a\x4d\x18", 4);
  const auto n = static_cast<uint32_t>(payload.size());
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<char>((n >> (8 * i)) & 0xff));
  out += payload;
  return out;
}

// ---- Batches ----

void FixCrc(std::string& b) {
  EncodeFixed32BE(b.data() + L::kCrc,
                  crc32c::Value(b.data() + L::kAttributes, b.size() - L::kAttributes));
}

std::string SampleBatch(Compression c, int n = 200) {
  RecordBatchBuilder builder(
      {.compression = c, .producer_id = 7, .producer_epoch = 2, .base_sequence = 100});
  for (int i = 0; i < n; ++i) {
    const std::string key = "key-" + std::to_string(i % 17);
    const std::string value = "{\"event\":\"scan\",\"id\":" + std::to_string(i * 7919) + "}";
    RecordHeader headers[] = {{"trace", std::string_view("abc")}, {"nullable", std::nullopt}};
    builder.Add(1'700'000'000'000 + i,
                i % 5 == 0 ? std::nullopt : std::optional<std::string_view>(key), value, headers);
  }
  return builder.Build();
}

// `plain` (an uncompressed batch) with its records section replaced by `blob`, compressed with
// `c` by someone else.
std::string Recompressed(std::string plain, Compression c, std::string_view blob) {
  plain.resize(kBatchHeaderSize);
  plain += blob;
  EncodeFixed32BE(plain.data() + L::kBatchLength,
                  static_cast<uint32_t>(plain.size() - L::kLogOverhead));
  const uint16_t attributes = DecodeFixed16BE(plain.data() + L::kAttributes);
  EncodeFixed16BE(
      plain.data() + L::kAttributes,
      static_cast<uint16_t>((attributes & ~kAttrCompressionMask) | static_cast<uint16_t>(c)));
  FixCrc(plain);
  return plain;
}

void CheckSameRecords(const DecodedBatch& a, const DecodedBatch& b) {
  REQUIRE(a.records().size() == b.records().size());
  for (size_t i = 0; i < a.records().size(); ++i) {
    const Record& x = a.records()[i];
    const Record& y = b.records()[i];
    CHECK(x.offset == y.offset);
    CHECK(x.timestamp == y.timestamp);
    CHECK(x.key == y.key);
    CHECK(x.value == y.value);
    CHECK(x.headers_data == y.headers_data);
    CHECK(x.header_count == y.header_count);
  }
}

TEST_CASE("Compression: names parse back to the five codecs and anything else is refused") {
  for (Compression c : kAllCodecs) {
    auto parsed = ParseCompression(CompressionName(c));
    REQUIRE(parsed.ok());
    CHECK(*parsed == c);
  }
  for (std::string_view bad : {"", "LZ4", "brotli", "gzip ", "unknown"}) {
    auto parsed = ParseCompression(bad);
    REQUIRE_FALSE(parsed.ok());
    CHECK(parsed.status().IsInvalidArgument());
    CHECK(parsed.status().message().find("none, gzip, snappy, lz4, zstd") != std::string::npos);
  }
  CHECK(CompressionName(static_cast<Compression>(5)) == "unknown");
}

TEST_CASE("Compression: every codec round-trips empty, one-byte and 100 KiB inputs") {
  for (Compression c : kAllCodecs) {
    for (const std::string& input : {std::string(), std::string("x"), SampleText(100 << 10)}) {
      CAPTURE(CompressionName(c));
      CAPTURE(input.size());
      const std::string compressed = Compressed(c, input);
      if (c != Compression::kNone && input.size() > 1000) CHECK(compressed.size() < input.size());
      std::string out;
      const Status s = Decompress(c, compressed, input.size(), &out);
      REQUIRE_MESSAGE(s.ok(), s.ToString());
      CHECK(out == input);
      // One byte under the size is over the limit: the bound is exact.
      if (!input.empty()) {
        std::string under;
        CHECK(Decompress(c, compressed, input.size() - 1, &under).code() == StatusCode::kTooLarge);
        CHECK(under.empty());
      }
    }
  }
}

TEST_CASE(
    "Compression: Compress and Decompress append, and a failure leaves the output as it was") {
  const std::string input = SampleText(5000);
  for (Compression c : kAllCodecs) {
    CAPTURE(CompressionName(c));
    std::string compressed = "head";
    Compress(c, input, &compressed);
    CHECK(compressed.starts_with("head"));
    std::string out = "prefix:";
    REQUIRE(Decompress(c, std::string_view(compressed).substr(4), 1 << 20, &out).ok());
    CHECK(out == "prefix:" + input);
    // The bound counts the appended bytes only.
    out = "prefix:";
    CHECK(Decompress(c, std::string_view(compressed).substr(4), input.size(), &out).ok());
    out = "prefix:";
    CHECK_FALSE(Decompress(c, std::string_view(compressed).substr(4), 100, &out).ok());
    CHECK(out == "prefix:");
  }
  std::string out = "kept";
  CHECK(Decompress(static_cast<Compression>(6), "abc", 100, &out).IsInvalidArgument());
  CHECK(out == "kept");
}

TEST_CASE("Compression: the written streams are what Kafka's Java client writes") {
  const std::string input = SampleText(100 << 10);
  SUBCASE("gzip: one gzip member that zlib reads back") {
    const std::string gz = Compressed(Compression::kGzip, input);
    CHECK(gz.starts_with("\x1f\x8b\x08"));
    std::string out(input.size(), '\0');
    z_stream z{};
    REQUIRE(inflateInit2(&z, 15 + 16) == Z_OK);
    z.next_in = reinterpret_cast<const Bytef*>(gz.data());
    z.avail_in = static_cast<uInt>(gz.size());
    z.next_out = reinterpret_cast<Bytef*>(out.data());
    z.avail_out = static_cast<uInt>(out.size());
    CHECK(inflate(&z, Z_FINISH) == Z_STREAM_END);
    CHECK(z.avail_in == 0);
    inflateEnd(&z);
    CHECK(out == input);
  }
  SUBCASE("snappy: xerial header, then 32 KiB chunks of raw snappy") {
    const std::string sn = Compressed(Compression::kSnappy, input);
    REQUIRE(sn.size() > 16);
    CHECK(sn.substr(0, 8) == std::string("\x82SNAPPY\0", 8));
    CHECK(DecodeFixed32BE(sn.data() + 8) == 1);
    CHECK(DecodeFixed32BE(sn.data() + 12) == 1);
    std::string joined;
    size_t pos = 16;
    int chunks = 0;
    while (pos < sn.size()) {
      const size_t len = DecodeFixed32BE(sn.data() + pos);
      std::string block;
      REQUIRE(snappy::Uncompress(sn.data() + pos + 4, len, &block));
      CHECK(block.size() <= 32 * 1024);
      joined += block;
      pos += 4 + len;
      ++chunks;
    }
    CHECK(pos == sn.size());
    CHECK(chunks == 4);  // 100 KiB in 32 KiB chunks
    CHECK(joined == input);
    CHECK(Compressed(Compression::kSnappy, "") == sn.substr(0, 16));  // empty: the header only
  }
  SUBCASE("zstd: one frame that declares its size") {
    const std::string zs = Compressed(Compression::kZstd, input);
    CHECK(ZSTD_getFrameContentSize(zs.data(), zs.size()) == input.size());
    CHECK(ZSTD_findFrameCompressedSize(zs.data(), zs.size()) == zs.size());
    std::string out(input.size(), '\0');
    CHECK(ZSTD_decompress(out.data(), out.size(), zs.data(), zs.size()) == input.size());
    CHECK(out == input);
  }
  SUBCASE("lz4: one frame that declares its size") {
    const std::string lz = Compressed(Compression::kLz4, input);
    CHECK(lz == Lz4FrameCompress(input));
    CHECK(DecodeFixed32BE(lz.data()) == 0x04224D18u);  // the frame magic, little-endian
  }
}

TEST_CASE("Compression: streams written by the reference libraries decode") {
  const std::string input = SampleText(100 << 10);
  struct Case {
    const char* what;
    Compression codec;
    std::string bytes;
  };
  const Case cases[] = {
      {"zlib gzip member", Compression::kGzip, ReferenceGzip(input)},
      {"zlib gzip member with name, mtime and header CRC", Compression::kGzip,
       ReferenceGzip(input, true)},
      {"raw snappy block (librdkafka)", Compression::kSnappy, ReferenceRawSnappy(input)},
      {"xerial snappy, 32 KiB chunks (Java client)", Compression::kSnappy,
       ReferenceXerialSnappy(input, 32 * 1024)},
      {"xerial snappy, uneven 1000-byte chunks", Compression::kSnappy,
       ReferenceXerialSnappy(input, 1000)},
      {"LZ4 frame without a content size (Java client)", Compression::kLz4, ReferenceLz4(input)},
      {"zstd frame with a content size (ZSTD_compress)", Compression::kZstd, ReferenceZstd(input)},
      {"zstd stream without a content size (zstd-jni)", Compression::kZstd,
       ReferenceZstdStream(input)},
      {"zstd stream with a checksum, level 19", Compression::kZstd,
       ReferenceZstdStream(input, 19, 0, true)},
  };
  for (const Case& c : cases) {
    CAPTURE(c.what);
    std::string out;
    const Status s = Decompress(c.codec, c.bytes, input.size(), &out);
    REQUIRE_MESSAGE(s.ok(), s.ToString());
    CHECK(out == input);
  }
}

TEST_CASE("Compression: raw snappy and xerial snappy both decode, empty ones included") {
  std::string out;
  REQUIRE(Decompress(Compression::kSnappy, ReferenceRawSnappy(""), 0, &out).ok());
  CHECK(out.empty());
  REQUIRE(Decompress(Compression::kSnappy, ReferenceXerialSnappy("", 1), 0, &out).ok());
  CHECK(out.empty());
  REQUIRE(Decompress(Compression::kSnappy, ReferenceRawSnappy("x"), 1, &out).ok());
  CHECK(out == "x");
  out.clear();
  // A raw block whose first bytes happen to look like the xerial magic cannot exist: a raw block
  // starts with its length varint, and 0x82 0x53 declares 10,626 bytes, which "NAPPY" cannot hold.
  std::string xerial = ReferenceXerialSnappy("hello", 2);
  REQUIRE(Decompress(Compression::kSnappy, xerial, 5, &out).ok());
  CHECK(out == "hello");
  SUBCASE("an unknown compatible version is refused") {
    EncodeFixed32BE(xerial.data() + 12, 2);
    out.clear();
    const Status s = Decompress(Compression::kSnappy, xerial, 100, &out);
    CHECK(s.IsCorruption());
    CHECK(s.message().find("snappy") != std::string::npos);
  }
  SUBCASE("a header cut short is refused") {
    out.clear();
    CHECK(Decompress(Compression::kSnappy, xerial.substr(0, 12), 100, &out).IsCorruption());
  }
}

TEST_CASE("Compression: concatenated gzip members and zstd frames decode to the concatenation") {
  const std::string a = SampleText(3000);
  const std::string b = "second part";
  std::string out;
  SUBCASE("gzip") {
    const std::string gz = ReferenceGzip(a) + ReferenceGzip(b, true) + ReferenceGzip("");
    REQUIRE(Decompress(Compression::kGzip, gz, 1 << 20, &out).ok());
    CHECK(out == a + b);
    out.clear();
    CHECK(Decompress(Compression::kGzip, gz, a.size() + b.size() - 1, &out).code() ==
          StatusCode::kTooLarge);
  }
  SUBCASE("zstd, with and without sizes and with a skippable frame") {
    const std::string zs = ReferenceZstd(a) + ZstdSkippableFrame("metadata") +
                           ReferenceZstdStream(b) + Compressed(Compression::kZstd, "");
    const Status s = Decompress(Compression::kZstd, zs, 1 << 20, &out);
    REQUIRE_MESSAGE(s.ok(), s.ToString());
    CHECK(out == a + b);
    out.clear();
    CHECK(Decompress(Compression::kZstd, zs, a.size() + b.size() - 1, &out).code() ==
          StatusCode::kTooLarge);
  }
  SUBCASE("zstd frames that all declare their sizes are checked against the bound up front") {
    const std::string zs = ReferenceZstd(a) + ReferenceZstd(b);
    const Status s = Decompress(Compression::kZstd, zs, a.size() + b.size() - 1, &out);
    CHECK(s.code() == StatusCode::kTooLarge);
    CHECK(s.message().find("declare") != std::string::npos);
  }
  SUBCASE("LZ4 takes exactly one frame, as Kafka's readers do") {
    const std::string lz = Lz4FrameCompress(a) + Lz4FrameCompress(b);
    CHECK(Decompress(Compression::kLz4, lz, 1 << 20, &out).IsCorruption());
  }
}

TEST_CASE("Compression: a 100 MiB bomb is refused under a 1 MiB bound by every codec") {
  const std::string zeros(100u << 20, '\0');
  const size_t limit = 1u << 20;
  struct Case {
    const char* what;
    Compression codec;
    std::string bytes;
  };
  std::vector<Case> cases;
  for (Compression c : kCompressingCodecs) {
    cases.push_back({"ours", c, Compressed(c, zeros)});
  }
  cases.push_back({"raw snappy", Compression::kSnappy, ReferenceRawSnappy(zeros)});
  cases.push_back({"LZ4 without a content size", Compression::kLz4, ReferenceLz4(zeros)});
  cases.push_back({"zstd without a content size", Compression::kZstd, ReferenceZstdStream(zeros)});
  cases.push_back({"gzip, many members", Compression::kGzip, [&] {
                     std::string s;
                     for (int i = 0; i < 100; ++i) s += ReferenceGzip(zeros.substr(0, 1u << 20));
                     return s;
                   }()});
  for (const Case& c : cases) {
    CAPTURE(CompressionName(c.codec));
    CAPTURE(c.what);
    CHECK(c.bytes.size() < (8u << 20));  // small input, huge output
    std::string out;
    const Status s = Decompress(c.codec, c.bytes, limit, &out);
    REQUIRE(s.code() == StatusCode::kTooLarge);
    CHECK(s.message().find(CompressionName(c.codec)) != std::string::npos);
    CHECK(s.message().find(std::to_string(limit)) != std::string::npos);  // names the limit
    CHECK(out.empty());
    // The output buffer never grew past the bound (plus the probe byte).
    CHECK(out.capacity() <= limit + 64);
  }
}

TEST_CASE("Compression: a zstd frame whose window exceeds the bound is refused") {
  const std::string input = SampleText(1000);
  const std::string wide = ReferenceZstdStream(input, 3, 27);  // 128 MiB window, size unknown
  std::string out;
  const Status s = Decompress(Compression::kZstd, wide, 1 << 20, &out);
  CHECK(s.code() == StatusCode::kTooLarge);
  CHECK(s.message().find("window") != std::string::npos);
  // Windows up to 8 MiB are always accepted, and larger ones under a larger bound.
  REQUIRE(Decompress(Compression::kZstd, ReferenceZstdStream(input, 3, 23), 1 << 20, &out).ok());
  CHECK(out == input);
  out.clear();
  REQUIRE(Decompress(Compression::kZstd, wide, 64u << 20, &out).ok());
  CHECK(out == input);
}

TEST_CASE("Compression: every truncation of a compressed stream is refused") {
  const std::string input = SampleText(600);
  struct Case {
    const char* what;
    Compression codec;
    std::string bytes;
  };
  const Case cases[] = {
      {"gzip", Compression::kGzip, Compressed(Compression::kGzip, input)},
      {"gzip with header fields", Compression::kGzip, ReferenceGzip(input, true)},
      {"raw snappy", Compression::kSnappy, ReferenceRawSnappy(input)},
      {"xerial snappy", Compression::kSnappy, Compressed(Compression::kSnappy, input)},
      {"lz4", Compression::kLz4, Compressed(Compression::kLz4, input)},
      {"lz4 without a content size", Compression::kLz4, ReferenceLz4(input)},
      {"zstd", Compression::kZstd, Compressed(Compression::kZstd, input)},
      {"zstd without a content size", Compression::kZstd, ReferenceZstdStream(input)},
  };
  for (const Case& c : cases) {
    CAPTURE(c.what);
    for (size_t len = 0; len < c.bytes.size(); ++len) {
      CAPTURE(len);
      std::string out;
      const Status s = Decompress(c.codec, std::string_view(c.bytes).substr(0, len), 1 << 20, &out);
      if (c.codec == Compression::kSnappy && s.ok()) {
        // xerial snappy: the header alone is a complete (empty) stream, like an empty file.
        CHECK(len == 16);
        CHECK(out.empty());
        continue;
      }
      REQUIRE_FALSE(s.ok());
      CHECK(s.IsCorruption());
      CHECK(s.message().find(CompressionName(c.codec)) != std::string::npos);
      CHECK(out.empty());
    }
  }
  SUBCASE("xerial snappy cut at a chunk boundary decodes only whole chunks") {
    const std::string x = ReferenceXerialSnappy(input, 200);
    const size_t first_chunk = 16 + 4 + DecodeFixed32BE(x.data() + 16);
    std::string out;
    REQUIRE(
        Decompress(Compression::kSnappy, std::string_view(x).substr(0, first_chunk), 1 << 20, &out)
            .ok());
    CHECK(out == input.substr(0, 200));
  }
}

TEST_CASE("Compression: trailing bytes after a complete stream are refused") {
  const std::string input = SampleText(600);
  struct Case {
    const char* what;
    Compression codec;
    std::string bytes;
  };
  const Case cases[] = {
      {"gzip", Compression::kGzip, Compressed(Compression::kGzip, input)},
      {"raw snappy", Compression::kSnappy, ReferenceRawSnappy(input)},
      {"xerial snappy", Compression::kSnappy, Compressed(Compression::kSnappy, input)},
      {"lz4", Compression::kLz4, Compressed(Compression::kLz4, input)},
      {"zstd", Compression::kZstd, Compressed(Compression::kZstd, input)},
      {"zstd without a content size", Compression::kZstd, ReferenceZstdStream(input)},
  };
  for (const Case& c : cases) {
    CAPTURE(c.what);
    for (const std::string& tail :
         {std::string("x"), std::string("xx"), std::string(8, '\0'), std::string("\x1f\x8b"),
          std::string("\x28\xb5\x2f\xfd"), std::string("garbage after the stream")}) {
      CAPTURE(tail.size());
      std::string out;
      const Status s = Decompress(c.codec, c.bytes + tail, 1 << 20, &out);
      CHECK(s.IsCorruption());
      CHECK(s.message().find(CompressionName(c.codec)) != std::string::npos);
      CHECK(out.empty());
    }
  }
}

TEST_CASE("Compression: damaged checksums are detected where the format has them") {
  const std::string input = SampleText(2000);
  std::string out;
  SUBCASE("gzip CRC-32 and length trailer") {
    const std::string gz = Compressed(Compression::kGzip, input);
    for (size_t i = gz.size() - 8; i < gz.size(); ++i) {
      std::string bad = gz;
      bad[i] = static_cast<char>(bad[i] ^ 0x01);
      const Status s = Decompress(Compression::kGzip, bad, 1 << 20, &out);
      CHECK(s.IsCorruption());
      CHECK(s.message().find("gzip") != std::string::npos);
    }
  }
  SUBCASE("gzip header CRC") {
    std::string gz = ReferenceGzip(input, true);
    const size_t hcrc = 10 + sizeof("records.bin");  // fixed header, then the name and its NUL
    gz[hcrc] = static_cast<char>(gz[hcrc] ^ 0x01);
    CHECK(Decompress(Compression::kGzip, gz, 1 << 20, &out).IsCorruption());
  }
  SUBCASE("zstd content checksum") {
    std::string zs = ReferenceZstdStream(input, 3, 0, true);
    zs.back() = static_cast<char>(zs.back() ^ 0x01);
    const Status s = Decompress(Compression::kZstd, zs, 1 << 20, &out);
    CHECK(s.IsCorruption());
    CHECK(s.message().find("zstd") != std::string::npos);
  }
  SUBCASE("lz4 header checksum") {
    std::string lz = Compressed(Compression::kLz4, input);
    lz[14] = static_cast<char>(lz[14] ^ 0x01);  // magic, FLG, BD, content size, then HC
    CHECK(Decompress(Compression::kLz4, lz, 1 << 20, &out).IsCorruption());
  }
  CHECK(out.empty());
}

TEST_CASE("Compression: random damage never crashes or exceeds the bound") {
  std::mt19937 rng(11);
  const std::string input = SampleText(4000);
  for (Compression c : kCompressingCodecs) {
    CAPTURE(CompressionName(c));
    const std::string good = Compressed(c, input);
    for (int iter = 0; iter < 1500; ++iter) {
      std::string bad = good;
      const int edits = 1 + static_cast<int>(rng() % 4);
      for (int e = 0; e < edits; ++e) bad[rng() % bad.size()] = static_cast<char>(rng());
      std::string out;
      const Status s = Decompress(c, bad, 8192, &out);
      if (s.ok()) {
        CHECK(out.size() <= 8192);
      } else {
        CHECK(out.empty());
      }
    }
  }
}

TEST_CASE("RecordBatch: a batch built with each codec decodes to the same records") {
  const std::string plain = SampleBatch(Compression::kNone);
  auto expected = DecodedBatch::Decode(plain);
  REQUIRE(expected.ok());
  for (Compression c : kAllCodecs) {
    CAPTURE(CompressionName(c));
    const std::string bytes = SampleBatch(c);
    auto decoded = DecodedBatch::Decode(bytes);
    REQUIRE_MESSAGE(decoded.ok(), decoded.status().ToString());
    CHECK(decoded->header().compression() == c);
    CHECK(decoded->header().record_count == 200);
    if (c != Compression::kNone) CHECK(bytes.size() * 2 < plain.size());
    CheckSameRecords(*decoded, *expected);
    // ForEachRecord sees the same.
    size_t n = 0;
    BatchHeader h;
    REQUIRE(ForEachRecord(bytes, {}, &h, [&](const Record&) { ++n; }).ok());
    CHECK(n == 200);
  }
}

TEST_CASE("RecordBatch: batches compressed by the reference libraries decode") {
  const std::string plain = SampleBatch(Compression::kNone);
  auto expected = DecodedBatch::Decode(plain);
  REQUIRE(expected.ok());
  const std::string records = plain.substr(kBatchHeaderSize);
  struct Case {
    const char* what;
    Compression codec;
    std::string blob;
  };
  const Case cases[] = {
      {"gzip (zlib, as java.util.zip)", Compression::kGzip, ReferenceGzip(records)},
      {"snappy raw (librdkafka)", Compression::kSnappy, ReferenceRawSnappy(records)},
      {"snappy xerial (snappy-java)", Compression::kSnappy,
       ReferenceXerialSnappy(records, 32 * 1024)},
      {"lz4 without a content size (Java client)", Compression::kLz4, ReferenceLz4(records)},
      {"zstd stream (zstd-jni)", Compression::kZstd, ReferenceZstdStream(records)},
      {"zstd frame with its size (librdkafka)", Compression::kZstd, ReferenceZstd(records)},
  };
  for (const Case& c : cases) {
    CAPTURE(c.what);
    const std::string batch = Recompressed(plain, c.codec, c.blob);
    auto decoded = DecodedBatch::Decode(batch);
    REQUIRE_MESSAGE(decoded.ok(), decoded.status().ToString());
    CHECK(decoded->header().compression() == c.codec);
    CheckSameRecords(*decoded, *expected);
  }
}

TEST_CASE("RecordBatch: a bomb in any codec stops at the batch limit") {
  for (Compression c : kCompressingCodecs) {
    CAPTURE(CompressionName(c));
    RecordBatchBuilder builder({.compression = c});
    const std::string zeros(1 << 20, '\0');
    for (int i = 0; i < 8; ++i) builder.Add(1, std::nullopt, zeros);
    const std::string b = builder.Build();
    CHECK(b.size() < 512 * 1024);  // 8 MiB of zeros compress to little
    auto d = DecodedBatch::Decode(b, DecodeLimits{.max_uncompressed_bytes = 1 << 20});
    REQUIRE_FALSE(d.ok());
    CHECK(d.status().code() == StatusCode::kTooLarge);
    CHECK(DecodedBatch::Decode(b, DecodeLimits{.max_uncompressed_bytes = 16 << 20}).ok());
  }
}

TEST_CASE("RecordBatch: damaged compressed records are corruption, and codecs 5-7 are invalid") {
  for (Compression c : kCompressingCodecs) {
    CAPTURE(CompressionName(c));
    std::string b = SampleBatch(c, 20);
    for (size_t i = kBatchHeaderSize + 20; i < b.size(); ++i) b[i] = static_cast<char>(i * 31);
    FixCrc(b);
    auto d = DecodedBatch::Decode(b);
    REQUIRE_FALSE(d.ok());
    CHECK(d.status().IsCorruption());
  }
  for (uint16_t codec = 5; codec <= 7; ++codec) {
    std::string b = SampleBatch(Compression::kNone, 3);
    EncodeFixed16BE(b.data() + L::kAttributes, codec);
    FixCrc(b);
    auto d = DecodedBatch::Decode(b);
    CHECK(d.status().IsCorruption());
    CHECK(d.status().message().find("invalid compression attribute") != std::string::npos);
  }
}

}  // namespace
}  // namespace runnel
