// Block codecs of Kafka record batches: none, gzip, snappy, LZ4 and zstd, bounded on decode.
//
// What each codec reads and writes (the records section of one RecordBatch v2):
//   gzip    one or more gzip members (RFC 1952, CRC-32 and length checked). Written: one member.
//   snappy  either xerial framing, as Kafka's Java client writes it (magic "\x82SNAPPY\0",
//           version:int32be, compatible version:int32be = 1, then [length:int32be][raw block]...),
//           or one raw snappy block, as librdkafka writes it. Written: xerial, 32 KiB chunks.
//   lz4     exactly one LZ4 frame (independent 64 KiB blocks when written; the written frame
//           declares its content size).
//   zstd    one or more zstd frames, with or without a declared content size (skippable frames
//           are allowed). Written: one frame that declares its content size.
// Every function here is thread-safe (no shared state).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "runnel/common/result.h"
#include "runnel/common/status.h"

namespace runnel {

// Compression codec in attribute bits 0-2. DO NOT CHANGE: Kafka's on-wire and on-disk values.
enum class Compression : uint8_t { kNone = 0, kGzip = 1, kSnappy = 2, kLz4 = 3, kZstd = 4 };

// "none", "gzip", "snappy", "lz4" or "zstd"; "unknown" for a value outside the enum.
std::string_view CompressionName(Compression c);
// Parses "none" / "gzip" / "snappy" / "lz4" / "zstd" (every codec Runnel reads and writes).
// InvalidArgument otherwise.
Result<Compression> ParseCompression(std::string_view name);

// Appends the decompressed form of `input` to `*out`.
//
// At most `max_output` bytes are appended. A stream that would produce more is refused with
// TooLarge (the message names the codec and the limit): refused before decoding when the input
// declares its size (LZ4 content size, zstd frame content size, snappy block length), otherwise
// as soon as the limit is passed. The output buffer grows in steps and its capacity never exceeds
// the original contents plus `max_output` plus a few bytes; zstd's window is bounded by
// max(8 MiB, 2 * max_output) (a frame that needs more is TooLarge).
// Corruption (naming the codec) on malformed or truncated input, on trailing bytes after the
// last member / frame / block, and on a failed checksum where the format has one.
// InvalidArgument for a codec value outside the enum. On error `*out` is restored to its
// original size. kNone appends `input` itself (TooLarge if it is longer than `max_output`).
Status Decompress(Compression codec, std::string_view input, size_t max_output, std::string* out);

// Appends the compressed form of `input` to `*out`, as Kafka's Java client writes it (see the
// table above). A codec value outside the enum appends `input` unchanged, like kNone.
// Throws std::bad_alloc only if a codec cannot allocate its state (as std::string would).
void Compress(Compression codec, std::string_view input, std::string* out);

// LZ4 frame helpers, kept for callers that deal in LZ4 only (tests, tools).
// Returns the LZ4 frame of `input` (the same bytes Compress(kLz4, ...) appends).
std::string Lz4FrameCompress(std::string_view input);
// Appends the LZ4 frame of `input` to `out`.
void AppendLz4Frame(std::string_view input, std::string* out);
// Replaces `*out` with the contents of one complete LZ4 frame; Corruption on malformed input or
// trailing bytes, TooLarge if the output would exceed `max_output`.
Status Lz4FrameDecompress(std::string_view input, size_t max_output, std::string* out);

}  // namespace runnel
