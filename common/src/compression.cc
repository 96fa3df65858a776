// Kafka's block codecs (none, gzip, snappy, LZ4 frame, zstd) with bounded decoding.
#include "runnel/common/compression.h"

#define ZLIB_CONST  // next_in is a pointer to const
#include <lz4frame.h>
#include <snappy.h>
#include <zlib.h>
#include <zstd.h>
#include <zstd_errors.h>

#include <algorithm>
#include <bit>
#include <limits>
#include <memory>
#include <new>

#include "runnel/common/coding.h"

namespace runnel {
namespace {

// Largest piece handed to zlib at once: its byte counts are 32-bit.
constexpr size_t kZlibChunk = size_t{1} << 30;

// xerial snappy framing, as snappy-java's SnappyOutputStream writes it. DO NOT CHANGE.
constexpr std::string_view kXerialMagic("\x82SNAPPY\0", 8);
constexpr size_t kXerialHeaderSize = 16;  // magic, version:int32be, compatible version:int32be
constexpr uint32_t kXerialVersion = 1;
constexpr uint32_t kXerialCompatibleVersion = 1;
constexpr size_t kXerialBlockSize = 32 * 1024;  // snappy-java's default block size

// zstd windows up to 2^kZstdMinWindowLog bytes are always accepted (every level up to 19 of
// Kafka's Java client), larger ones only up to twice the output bound, and never past zstd's own
// default limit.
constexpr int kZstdMinWindowLog = 23;
constexpr int kZstdMaxWindowLog = 27;  // ZSTD_WINDOWLOG_LIMIT_DEFAULT

std::string Fmt(std::string_view a, uint64_t n, std::string_view b = {}) {
  std::string s(a);
  s += std::to_string(n);
  s += b;
  return s;
}

std::string Prefixed(Compression codec, std::string_view message) {
  std::string s(CompressionName(codec));
  s += ": ";
  s += message;
  return s;
}

Status OverLimit(Compression codec, size_t max_output) {
  return Status::TooLarge(
      Prefixed(codec, Fmt("the decompressed data exceeds the limit of ", max_output, " bytes")));
}

// Resizes *out to `size`. When it must grow it allocates exactly `size` bytes (plus the small
// string's slack) rather than std::string's doubling: the decoders' bound is a memory bound.
void ResizeExact(std::string* out, size_t size) {
  if (size > out->capacity()) {
    std::string bigger;
    bigger.reserve(size);
    bigger.append(*out);
    out->swap(bigger);
  }
  out->resize(size);
}

// The bytes one Decompress call appends: out[base, base + produced). A streaming decoder writes
// into the room after them, which grows by doubling but never beyond `max_output + 1` bytes
// after `base`: one byte past the bound tells "exactly at the limit" from "over it".
class Sink {
 public:
  Sink(std::string* out, size_t max_output)
      : out_(out),
        base_(out->size()),
        max_(max_output),
        cap_(max_output == std::numeric_limits<size_t>::max() ? max_output : max_output + 1) {}

  // Makes room for at least one more byte: `first` bytes at first, then twice as many each time.
  // False when the cap is reached.
  bool Grow(size_t first) {
    const size_t have = out_->size() - base_;
    if (have >= cap_) return false;
    size_t want = have == 0 ? first : (have > cap_ / 2 ? cap_ : have * 2);
    want = std::clamp(want, have + 1, cap_);
    ResizeExact(out_, base_ + want);
    return true;
  }
  // Makes room for `n` more bytes (a size the input declared and the caller checked against
  // left()), doubling so that many small blocks do not copy the output again and again.
  void Reserve(size_t n) {
    if (room() >= n) return;
    const size_t have = out_->size() - base_;
    const size_t need = produced_ + n;
    ResizeExact(out_, base_ + std::max(need, have > cap_ / 2 ? cap_ : have * 2));
  }
  char* next() { return out_->data() + base_ + produced_; }
  size_t room() const { return out_->size() - base_ - produced_; }
  void Advance(size_t n) { produced_ += n; }
  size_t produced() const { return produced_; }
  size_t max_output() const { return max_; }
  size_t left() const { return max_ - std::min(max_, produced_); }  // before the bound
  bool over() const { return produced_ > max_; }

  void Commit() { out_->resize(base_ + produced_); }
  void Abort() { out_->resize(base_); }

 private:
  std::string* out_;
  size_t base_;
  size_t max_;
  size_t cap_;
  size_t produced_ = 0;
};

// First room for a decoder whose output size is unknown: a guess from the input size.
size_t FirstGuess(size_t input_size) {
  return std::max<size_t>(
      input_size > std::numeric_limits<size_t>::max() / 4 ? input_size : input_size * 4, 4096);
}

// ---- LZ4 (frame format) ----

struct Lz4DctxDeleter {
  void operator()(LZ4F_dctx* d) const { LZ4F_freeDecompressionContext(d); }
};

Status Lz4Decode(std::string_view input, Sink& sink) {
  // A fresh context per frame: a reused one keeps the previous frame's declared content size
  // when the next frame declares none (LZ4 1.9.4 does not clear it), and fails that frame.
  std::unique_ptr<LZ4F_dctx, Lz4DctxDeleter> dctx = [] {
    LZ4F_dctx* d = nullptr;
    if (LZ4F_isError(LZ4F_createDecompressionContext(&d, LZ4F_VERSION))) d = nullptr;
    return std::unique_ptr<LZ4F_dctx, Lz4DctxDeleter>(d);
  }();
  if (!dctx) return Status::IOError("lz4: cannot allocate a decompression context");

  // With the content size in the frame header the output is sized once; without it, a guess
  // that grows.
  LZ4F_frameInfo_t info{};
  size_t in_pos = input.size();
  if (const size_t r = LZ4F_getFrameInfo(dctx.get(), &info, input.data(), &in_pos);
      LZ4F_isError(r)) {
    return Status::Corruption(std::string("lz4: ") + LZ4F_getErrorName(r));
  }
  if (info.contentSize > sink.max_output()) {
    return Status::TooLarge(
        Fmt("lz4: the frame declares ", info.contentSize, " bytes, over the limit of ") +
        std::to_string(sink.max_output()));
  }
  const size_t first = info.contentSize > 0
                           ? static_cast<size_t>(info.contentSize) + 1  // the end is seen
                           : FirstGuess(input.size());
  while (true) {
    if (sink.room() == 0 && !sink.Grow(first)) {
      return OverLimit(Compression::kLz4, sink.max_output());
    }
    size_t dst = sink.room();
    size_t src = input.size() - in_pos;
    const size_t hint =
        LZ4F_decompress(dctx.get(), sink.next(), &dst, input.data() + in_pos, &src, nullptr);
    if (LZ4F_isError(hint)) {
      return Status::Corruption(std::string("lz4: ") + LZ4F_getErrorName(hint));
    }
    in_pos += src;
    sink.Advance(dst);
    if (hint == 0) break;  // frame complete
    if (sink.room() > 0 && in_pos == input.size()) {
      return Status::Corruption("lz4: truncated frame");
    }
  }
  if (in_pos != input.size()) {
    return Status::Corruption(
        Fmt("lz4: ", input.size() - in_pos, " trailing bytes after the frame"));
  }
  return Status::OK();
}

// ---- gzip (zlib's inflate with the gzip wrapper) ----

Status GzipDecode(std::string_view input, Sink& sink) {
  if (input.empty()) return Status::Corruption("gzip: empty input");
  z_stream z{};
  if (inflateInit2(&z, 15 + 16) != Z_OK) {  // 15: the largest window; +16: gzip members only
    return Status::IOError("gzip: cannot allocate a decompression stream");
  }
  struct End {
    z_stream* z;
    ~End() { inflateEnd(z); }
  } end{&z};

  size_t fed = 0;  // input bytes handed to zlib so far
  const size_t first = FirstGuess(input.size());
  while (true) {
    if (z.avail_in == 0 && fed < input.size()) {
      const size_t n = std::min(input.size() - fed, kZlibChunk);
      z.next_in = reinterpret_cast<const Bytef*>(input.data() + fed);
      z.avail_in = static_cast<uInt>(n);
      fed += n;
    }
    if (sink.room() == 0 && !sink.Grow(first)) {
      return OverLimit(Compression::kGzip, sink.max_output());
    }
    z.next_out = reinterpret_cast<Bytef*>(sink.next());
    z.avail_out = static_cast<uInt>(std::min(sink.room(), kZlibChunk));
    const uInt out_before = z.avail_out;
    const int r = inflate(&z, Z_NO_FLUSH);
    sink.Advance(out_before - z.avail_out);
    switch (r) {
      case Z_OK:
        break;
      case Z_STREAM_END: {
        const size_t unconsumed = z.avail_in + (input.size() - fed);
        if (unconsumed == 0) return Status::OK();
        // Kafka's readers accept concatenated members; anything else after a member is refused.
        const std::string_view rest = input.substr(input.size() - unconsumed);
        if (rest.size() < 2 || rest[0] != '\x1f' || rest[1] != '\x8b') {
          return Status::Corruption(
              Fmt("gzip: ", rest.size(), " trailing bytes after the last member"));
        }
        if (inflateReset(&z) != Z_OK) return Status::Corruption("gzip: cannot reset the stream");
        break;
      }
      case Z_BUF_ERROR:  // no progress: the output is full (grow) or the input ran out
        if (z.avail_out > 0 && z.avail_in == 0 && fed == input.size()) {
          return Status::Corruption("gzip: truncated stream");
        }
        break;
      case Z_MEM_ERROR:
        return Status::IOError("gzip: out of memory");
      default:  // Z_DATA_ERROR (bad data, CRC or length), Z_NEED_DICT, Z_STREAM_ERROR
        return Status::Corruption(std::string("gzip: ") + (z.msg ? z.msg : "invalid stream"));
    }
  }
}

void GzipCompress(std::string_view input, std::string* out) {
  z_stream z{};
  // What java.util.zip.GZIPOutputStream writes: default level, 32 KiB window, gzip wrapper.
  if (deflateInit2(&z, Z_DEFAULT_COMPRESSION, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK) {
    throw std::bad_alloc();
  }
  struct End {
    z_stream* z;
    ~End() { deflateEnd(z); }
  } end{&z};
  const size_t at = out->size();
  out->resize(at + static_cast<size_t>(deflateBound(&z, input.size())));
  size_t fed = 0;
  size_t out_pos = at;
  while (true) {
    if (z.avail_in == 0 && fed < input.size()) {
      const size_t n = std::min(input.size() - fed, kZlibChunk);
      z.next_in = reinterpret_cast<const Bytef*>(input.data() + fed);
      z.avail_in = static_cast<uInt>(n);
      fed += n;
    }
    if (out_pos == out->size()) out->resize(out->size() + 4096);  // past deflateBound: no-op
    z.next_out = reinterpret_cast<Bytef*>(out->data() + out_pos);
    z.avail_out = static_cast<uInt>(std::min(out->size() - out_pos, kZlibChunk));
    const uInt out_before = z.avail_out;
    const int r = deflate(&z, fed == input.size() ? Z_FINISH : Z_NO_FLUSH);
    out_pos += out_before - z.avail_out;
    if (r == Z_STREAM_END) break;
    if (r != Z_OK && r != Z_BUF_ERROR) {  // a library bug; keep the output well-formed
      out->resize(at);
      return;
    }
  }
  out->resize(out_pos);
}

// ---- snappy (xerial framing or one raw block) ----

// Decodes one raw snappy block, appending at most the bytes left under the bound.
Status SnappyBlock(std::string_view block, Sink& sink) {
  size_t n = 0;
  if (!snappy::GetUncompressedLength(block.data(), block.size(), &n)) {
    return Status::Corruption("snappy: malformed block length");
  }
  if (n > sink.left()) {
    return Status::TooLarge(Fmt("snappy: a block declares ", n, " bytes, over the limit of ") +
                            std::to_string(sink.max_output()));
  }
  if (!snappy::IsValidCompressedBuffer(block.data(), block.size())) {
    return Status::Corruption("snappy: malformed block");
  }
  sink.Reserve(n);
  if (!snappy::RawUncompress(block.data(), block.size(), sink.next())) {
    return Status::Corruption("snappy: malformed block");
  }
  sink.Advance(n);
  return Status::OK();
}

Status SnappyDecode(std::string_view input, Sink& sink) {
  if (!input.starts_with(kXerialMagic)) return SnappyBlock(input, sink);  // librdkafka: raw
  if (input.size() < kXerialHeaderSize) return Status::Corruption("snappy: truncated header");
  const uint32_t compatible = DecodeFixed32BE(input.data() + 12);
  if (compatible != kXerialCompatibleVersion) {
    return Status::Corruption(
        Fmt("snappy: unsupported xerial compatible version ", compatible, " (expected 1)"));
  }
  size_t pos = kXerialHeaderSize;
  while (pos < input.size()) {
    if (input.size() - pos < 4) return Status::Corruption("snappy: truncated chunk length");
    const size_t len = DecodeFixed32BE(input.data() + pos);
    pos += 4;
    if (len > input.size() - pos) {
      return Status::Corruption(Fmt("snappy: truncated chunk: declares ", len, " bytes, ") +
                                std::to_string(input.size() - pos) + " present");
    }
    RUNNEL_RETURN_IF_ERROR(SnappyBlock(input.substr(pos, len), sink));
    pos += len;
  }
  return Status::OK();
}

void SnappyCompress(std::string_view input, std::string* out) {
  out->append(kXerialMagic);
  PutFixed32BE(out, kXerialVersion);
  PutFixed32BE(out, kXerialCompatibleVersion);
  for (size_t pos = 0; pos < input.size(); pos += kXerialBlockSize) {
    const size_t n = std::min(kXerialBlockSize, input.size() - pos);
    const size_t at = out->size();
    out->resize(at + 4 + snappy::MaxCompressedLength(n));
    size_t len = 0;
    snappy::RawCompress(input.data() + pos, n, out->data() + at + 4, &len);
    EncodeFixed32BE(out->data() + at, static_cast<uint32_t>(len));
    out->resize(at + 4 + len);
  }
}

// ---- zstd (streaming decoder; frames may not declare their size) ----

struct ZstdDctxDeleter {
  void operator()(ZSTD_DCtx* d) const { ZSTD_freeDCtx(d); }
};

struct ZstdDeclared {
  uint64_t total = 0;      // sum of the content sizes the frames declare (saturating)
  bool all_known = false;  // every frame is well delimited and declares its size
};

// Walks the frames' headers (not their contents). Stops at the first frame that cannot be
// delimited: the decoder reports that one precisely.
ZstdDeclared ZstdDeclaredSize(std::string_view input) {
  ZstdDeclared d;
  d.all_known = !input.empty();
  while (!input.empty()) {
    const size_t frame = ZSTD_findFrameCompressedSize(input.data(), input.size());
    const unsigned long long size = ZSTD_getFrameContentSize(input.data(), input.size());
    if (ZSTD_isError(frame) || size == ZSTD_CONTENTSIZE_ERROR) {
      d.all_known = false;
      break;
    }
    if (size == ZSTD_CONTENTSIZE_UNKNOWN) {
      d.all_known = false;
    } else {
      d.total = size > std::numeric_limits<uint64_t>::max() - d.total
                    ? std::numeric_limits<uint64_t>::max()
                    : d.total + size;
    }
    input.remove_prefix(frame);
  }
  return d;
}

int ZstdWindowLogMax(size_t max_output) {
  const size_t twice = max_output > std::numeric_limits<size_t>::max() / 2
                           ? std::numeric_limits<size_t>::max()
                           : 2 * max_output;
  const int log = static_cast<int>(std::bit_width(twice)) - 1;  // floor(log2(2 * max_output))
  return std::clamp(log, kZstdMinWindowLog, kZstdMaxWindowLog);
}

Status ZstdDecode(std::string_view input, Sink& sink) {
  // The sizes the frames declare are checked up front; when every frame declares one, the
  // output is sized once.
  const ZstdDeclared declared = ZstdDeclaredSize(input);
  if (declared.total > sink.max_output()) {
    return Status::TooLarge(
        Fmt("zstd: the frames declare ", declared.total, " bytes, over the limit of ") +
        std::to_string(sink.max_output()));
  }
  const size_t first = declared.all_known ? static_cast<size_t>(declared.total) + 1  // end seen
                                          : FirstGuess(input.size());
  std::unique_ptr<ZSTD_DCtx, ZstdDctxDeleter> dctx(ZSTD_createDCtx());
  if (!dctx) return Status::IOError("zstd: cannot allocate a decompression context");
  const int window_log_max = ZstdWindowLogMax(sink.max_output());
  if (ZSTD_isError(ZSTD_DCtx_setParameter(dctx.get(), ZSTD_d_windowLogMax, window_log_max))) {
    return Status::IOError("zstd: cannot bound the window size");
  }
  if (input.empty()) return Status::Corruption("zstd: empty input");
  ZSTD_inBuffer in{input.data(), input.size(), 0};
  while (true) {
    if (sink.room() == 0 && !sink.Grow(first)) {
      return OverLimit(Compression::kZstd, sink.max_output());
    }
    ZSTD_outBuffer o{sink.next(), sink.room(), 0};
    const size_t r = ZSTD_decompressStream(dctx.get(), &o, &in);
    sink.Advance(o.pos);
    if (ZSTD_isError(r)) {
      if (ZSTD_getErrorCode(r) == ZSTD_error_frameParameter_windowTooLarge) {
        return Status::TooLarge(Fmt("zstd: the frame's window exceeds the ",
                                    uint64_t{1} << window_log_max,
                                    " bytes allowed under a limit of ") +
                                std::to_string(sink.max_output()));
      }
      if (ZSTD_getErrorCode(r) == ZSTD_error_memory_allocation) {
        return Status::IOError("zstd: out of memory");
      }
      return Status::Corruption(std::string("zstd: ") + ZSTD_getErrorName(r));
    }
    if (r == 0 && in.pos == in.size) return Status::OK();  // the last frame is complete
    // r == 0 with input left: another frame follows (the context is ready for it). Otherwise the
    // decoder stopped because the output is full, or it needs input that is not there.
    if (r != 0 && in.pos == in.size && o.pos < o.size) {
      return Status::Corruption("zstd: truncated frame");
    }
  }
}

void ZstdCompress(std::string_view input, std::string* out) {
  const size_t at = out->size();
  out->resize(at + ZSTD_compressBound(input.size()));
  const size_t n = ZSTD_compress(out->data() + at, out->size() - at, input.data(), input.size(),
                                 ZSTD_CLEVEL_DEFAULT);  // level 3, as Kafka's default
  // The bound makes failure impossible short of a library bug; keep the output well-formed anyway.
  out->resize(at + (ZSTD_isError(n) ? 0 : n));
}

}  // namespace

std::string_view CompressionName(Compression c) {
  switch (c) {
    case Compression::kNone:
      return "none";
    case Compression::kGzip:
      return "gzip";
    case Compression::kSnappy:
      return "snappy";
    case Compression::kLz4:
      return "lz4";
    case Compression::kZstd:
      return "zstd";
  }
  return "unknown";
}

Result<Compression> ParseCompression(std::string_view name) {
  for (Compression c : {Compression::kNone, Compression::kGzip, Compression::kSnappy,
                        Compression::kLz4, Compression::kZstd}) {
    if (name == CompressionName(c)) return c;
  }
  return Status::InvalidArgument(std::string("unsupported compression '") + std::string(name) +
                                 "' (supported: none, gzip, snappy, lz4, zstd)");
}

Status Decompress(Compression codec, std::string_view input, size_t max_output, std::string* out) {
  Sink sink(out, max_output);
  Status s;
  switch (codec) {
    case Compression::kNone:
      if (input.size() > max_output) return OverLimit(codec, max_output);
      out->append(input);
      return Status::OK();
    case Compression::kGzip:
      s = GzipDecode(input, sink);
      break;
    case Compression::kSnappy:
      s = SnappyDecode(input, sink);
      break;
    case Compression::kLz4:
      s = Lz4Decode(input, sink);
      break;
    case Compression::kZstd:
      s = ZstdDecode(input, sink);
      break;
    default:
      return Status::InvalidArgument(
          Fmt("unknown compression codec ", static_cast<uint64_t>(codec)));
  }
  if (s.ok() && sink.over()) s = OverLimit(codec, max_output);
  if (s.ok()) {
    sink.Commit();
  } else {
    sink.Abort();
  }
  return s;
}

void Compress(Compression codec, std::string_view input, std::string* out) {
  switch (codec) {
    case Compression::kGzip:
      GzipCompress(input, out);
      return;
    case Compression::kSnappy:
      SnappyCompress(input, out);
      return;
    case Compression::kLz4:
      AppendLz4Frame(input, out);
      return;
    case Compression::kZstd:
      ZstdCompress(input, out);
      return;
    case Compression::kNone:
    default:
      out->append(input);
      return;
  }
}

void AppendLz4Frame(std::string_view input, std::string* out) {
  LZ4F_preferences_t prefs{};
  prefs.frameInfo.blockSizeID = LZ4F_max64KB;
  prefs.frameInfo.blockMode = LZ4F_blockIndependent;  // what Kafka's Java client writes
  prefs.compressionLevel = 0;                         // fast
  // The frame states its content size, so a reader allocates the output once (optional in the
  // LZ4 frame format; readers that ignore it still decode the frame).
  prefs.frameInfo.contentSize = input.size();
  const size_t at = out->size();
  out->resize(at + LZ4F_compressFrameBound(input.size(), &prefs));
  const size_t n =
      LZ4F_compressFrame(out->data() + at, out->size() - at, input.data(), input.size(), &prefs);
  // The bound makes failure impossible short of a library bug; keep the output well-formed anyway.
  out->resize(at + (LZ4F_isError(n) ? 0 : n));
}

std::string Lz4FrameCompress(std::string_view input) {
  std::string out;
  AppendLz4Frame(input, &out);
  return out;
}

Status Lz4FrameDecompress(std::string_view input, size_t max_output, std::string* out) {
  out->clear();
  return Decompress(Compression::kLz4, input, max_output, out);
}

}  // namespace runnel
