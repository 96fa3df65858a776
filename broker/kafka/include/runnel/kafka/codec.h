// Kafka wire-protocol primitives: a bounds-checked Reader, a chunked Writer and the request and
// response header helpers that the generated message codecs (runnel/kafka/messages.h) build on.
#pragma once

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "runnel/common/status.h"

namespace runnel::kafka {

// `first_flexible` of an API that has no flexible version: larger than any version, so
// `version >= first_flexible` is always false.
inline constexpr int16_t kNeverFlexible = 0x7fff;

// `bytes` and `records` values of at least this many bytes are moved into a chunk of their own
// by Writer (no copy); smaller ones are copied into the current chunk.
inline constexpr size_t kZeroCopyBytes = 16 * 1024;

// Kafka's limit on a string's length (the classic form's int16 length); longer strings are
// refused on decode and truncated on encode.
inline constexpr size_t kMaxStringBytes = 0x7fff;

// Kafka's uuid type: 16 raw bytes.
using Uuid = std::array<uint8_t, 16>;

// Reader decodes Kafka's primitive types from a borrowed buffer (which must outlive it). Every
// Read* returns false, reads nothing further and records what went wrong when the input is
// truncated or invalid; it never reads out of bounds. A failed Reader stays failed. The caller
// turns the failure into a Status with Fail(), which names the message, version and field.
// Thread-safety: none (a value type used by one thread).
class Reader {
 public:
  explicit Reader(std::string_view data) : data_(data) {}

  size_t remaining() const { return data_.size() - pos_; }
  size_t position() const { return pos_; }
  bool failed() const { return !problem_.empty(); }
  // The bytes not yet read.
  std::string_view rest() const { return data_.substr(pos_); }

  bool ReadInt8(int8_t* out);
  bool ReadInt16(int16_t* out);
  bool ReadInt32(int32_t* out);
  bool ReadInt64(int64_t* out);
  bool ReadUint16(uint16_t* out);
  // Any non-zero byte is true, as in Kafka's own reader.
  bool ReadBool(bool* out);
  bool ReadFloat64(double* out);
  bool ReadUuid(Uuid* out);

  // LEB128 unsigned varints (at most 5 and 10 bytes) and their zigzag signed forms.
  bool ReadUnsignedVarint(uint32_t* out);
  bool ReadUnsignedVarlong(uint64_t* out);
  bool ReadVarint(int32_t* out);
  bool ReadVarlong(int64_t* out);

  // Exactly `n` raw bytes, borrowed from the input.
  bool ReadRaw(size_t n, std::string_view* out);

  // Strings: classic = int16 length (-1 null); compact = unsigned varint length + 1 (0 null).
  // A null fails unless `nullable`. Lengths above kMaxStringBytes fail.
  bool ReadString(bool compact, std::string* out);
  bool ReadNullableString(bool compact, bool nullable, std::optional<std::string>* out);
  // Bytes (and records): classic = int32 length (-1 null); compact as for strings.
  bool ReadBytes(bool compact, std::string* out);
  bool ReadNullableBytes(bool compact, bool nullable, std::optional<std::string>* out);

  // An array's element count: classic = int32 (-1 null); compact = unsigned varint count + 1
  // (0 null). Sets *count to -1 for null, which fails unless `nullable`. Fails when
  // count * min_element_bytes exceeds the remaining bytes (the generated codecs pass the fewest
  // bytes one element takes in this version); reserve with ReserveBounded, not `count`.
  bool ReadArrayLength(bool compact, bool nullable, size_t min_element_bytes, int32_t* count);

  // A tagged-field section (flexible versions): a count, then (tag, size, bytes) each. Every
  // field is skipped; the generated codecs declare no tagged fields yet.
  bool SkipTaggedFields();

  // Corruption("kafka <message> v<version>: <field>: <problem>") for the recorded failure.
  Status Fail(std::string_view message, int16_t version, std::string_view field) const;

 private:
  bool Need(size_t n, const char* what);
  template <class T, class Decode> bool ReadFixed(T* out, size_t n, const char* what, Decode decode);
  bool Problem(std::string problem);
  bool ReadLength(bool compact, bool is_string, bool nullable, int64_t* len);

  std::string_view data_;
  size_t pos_ = 0;
  std::string problem_;
};

// Reserves room for `count` decoded elements, but never more than the bytes left in `r` would
// hold as elements of `v`'s size: a count ReadArrayLength admitted (count * the fewest wire bytes
// of one element <= remaining) can still be many times the bytes present once each element is a
// C++ object, so the vector grows past this only as elements really decode.
template <class V> void ReserveBounded(V& v, int32_t count, const Reader& r) {
  const size_t by_bytes = r.remaining() / sizeof(typename V::value_type) + 1;
  v.reserve(std::min(static_cast<size_t>(count), by_bytes));
}

// Writer encodes Kafka's primitive types into a list of chunks, to be sent with one gathered
// write. Small values are appended to the current chunk; Take*Bytes moves a value of at least
// kZeroCopyBytes into a chunk of its own, so record batches are never copied. Framing (the
// int32 size prefix) is the caller's. Thread-safety: none.
class Writer {
 public:
  Writer();

  // Total bytes written so far.
  size_t size() const { return size_; }

  void WriteInt8(int8_t v);
  void WriteInt16(int16_t v);
  void WriteInt32(int32_t v);
  void WriteInt64(int64_t v);
  void WriteUint16(uint16_t v);
  void WriteBool(bool v);
  void WriteFloat64(double v);
  void WriteUuid(const Uuid& v);

  void WriteUnsignedVarint(uint32_t v);
  void WriteUnsignedVarlong(uint64_t v);
  void WriteVarint(int32_t v);
  void WriteVarlong(int64_t v);

  void WriteRaw(std::string_view bytes);

  // Strings longer than kMaxStringBytes are truncated to it (a caller bug; Kafka refuses them).
  void WriteString(bool compact, std::string_view v);
  // A null where !nullable is written as the empty string (a caller bug; the safe value).
  void WriteNullableString(bool compact, bool nullable, const std::optional<std::string>& v);

  void WriteBytes(bool compact, std::string_view v);
  // May move `v` out (when it is at least kZeroCopyBytes); `v` is then left empty.
  void TakeBytes(bool compact, std::string&& v);
  // As TakeBytes; a null where !nullable is written as empty bytes.
  void TakeNullableBytes(bool compact, bool nullable, std::optional<std::string>&& v);

  // count -1 writes null (a caller must pass -1 only where the array is nullable).
  void WriteArrayLength(bool compact, int32_t count);
  // An empty tagged-field section.
  void WriteEmptyTaggedFields() { WriteUnsignedVarint(0); }

  // The chunks written (none empty), leaving the Writer empty and reusable.
  std::vector<std::string> Finish();

 private:
  void Append(const void* p, size_t n);
  void WriteLength(bool compact, bool is_string, int64_t len);

  std::vector<std::string> chunks_;  // back() is the current chunk
  size_t size_ = 0;
};

// The chunks concatenated (for tests and small messages).
std::string JoinChunks(const std::vector<std::string>& chunks);

// Request header: api_key int16, api_version int16, correlation_id int32, client_id
// (nullable, always the classic int16-length string), and in header v2 (flexible requests) a
// tagged-field section. The server's frame decoder reads the first three; this reads the rest.
// Returns Corruption when it is truncated or malformed.
Status DecodeRequestHeaderRest(Reader& r, bool flexible_header,
                               std::optional<std::string>* client_id);

// Whether a request uses header v2 (flexible) rather than v1. Unknown APIs: false.
bool RequestHeaderIsFlexible(int16_t api_key, int16_t version);
// Whether a response uses header v1 (correlation_id + tagged fields) rather than v0. Always
// false for ApiVersions (KIP-511: its response header stays v0 so any client can read it).
bool ResponseHeaderIsFlexible(int16_t api_key, int16_t version);
// Writes correlation_id and, for header v1, an empty tagged-field section.
void WriteResponseHeader(Writer& w, int16_t api_key, int16_t version, int32_t correlation_id);

}  // namespace runnel::kafka
