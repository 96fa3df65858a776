// Kafka primitive types: Reader, Writer and the header helpers.
#include "runnel/kafka/codec.h"

#include <bit>
#include <cstring>
#include <utility>

#include "runnel/common/coding.h"
#include "runnel/kafka/messages.h"

namespace runnel::kafka {

namespace {

constexpr int16_t kApiVersionsKey = 18;

}  // namespace

// ---- Reader ----

bool Reader::Problem(std::string problem) {
  if (problem_.empty()) problem_ = std::move(problem);
  return false;
}

bool Reader::Need(size_t n, const char* what) {
  if (failed()) return false;
  if (n <= remaining()) return true;
  return Problem(std::string("truncated ") + what + " (need " + std::to_string(n) + " bytes, " +
                 std::to_string(remaining()) + " left)");
}

template <class T, class Decode>
bool Reader::ReadFixed(T* out, size_t n, const char* what, Decode decode) {
  if (!Need(n, what)) return false;
  *out = static_cast<T>(decode(data_.data() + pos_));
  pos_ += n;
  return true;
}

bool Reader::ReadInt8(int8_t* out) {
  return ReadFixed(out, 1, "int8", [](const char* p) { return static_cast<uint8_t>(*p); });
}
bool Reader::ReadInt16(int16_t* out) { return ReadFixed(out, 2, "int16", DecodeFixed16BE); }
bool Reader::ReadInt32(int32_t* out) { return ReadFixed(out, 4, "int32", DecodeFixed32BE); }
bool Reader::ReadInt64(int64_t* out) { return ReadFixed(out, 8, "int64", DecodeFixed64BE); }
bool Reader::ReadUint16(uint16_t* out) { return ReadFixed(out, 2, "uint16", DecodeFixed16BE); }
bool Reader::ReadBool(bool* out) {
  // Any non-zero byte is true, as in Kafka's own reader.
  return ReadFixed(out, 1, "bool", [](const char* p) { return *p != 0; });
}
bool Reader::ReadFloat64(double* out) {
  return ReadFixed(out, 8, "float64",
                   [](const char* p) { return std::bit_cast<double>(DecodeFixed64BE(p)); });
}

bool Reader::ReadUuid(Uuid* out) {
  if (!Need(16, "uuid")) return false;
  std::memcpy(out->data(), data_.data() + pos_, 16);
  pos_ += 16;
  return true;
}

// Varints are decoded by common's ByteReader; this adds the position and the messages.
bool Reader::ReadUnsignedVarlong(uint64_t* out) {
  if (failed()) return false;
  ByteReader in(rest());
  if (!in.ReadVarint64(out))
    return Problem(in.empty() ? "truncated varint" : "varint overflows 64 bits");
  pos_ += remaining() - in.remaining();
  return true;
}

bool Reader::ReadUnsignedVarint(uint32_t* out) {
  if (failed()) return false;
  ByteReader in(rest());
  uint64_t v = 0;
  if (!in.ReadVarint64(&v))
    return Problem(in.empty() ? "truncated varint" : "varint overflows 32 bits");
  const size_t used = remaining() - in.remaining();
  if (v > UINT32_MAX || used > static_cast<size_t>(kMaxVarint32Bytes))
    return Problem("varint overflows 32 bits");
  *out = static_cast<uint32_t>(v);
  pos_ += used;
  return true;
}

bool Reader::ReadVarint(int32_t* out) {
  uint32_t u = 0;
  if (!ReadUnsignedVarint(&u)) return false;
  *out = ZigZagDecode32(u);
  return true;
}

bool Reader::ReadVarlong(int64_t* out) {
  uint64_t u = 0;
  if (!ReadUnsignedVarlong(&u)) return false;
  *out = ZigZagDecode64(u);
  return true;
}

bool Reader::ReadRaw(size_t n, std::string_view* out) {
  if (!Need(n, "bytes")) return false;
  *out = data_.substr(pos_, n);
  pos_ += n;
  return true;
}

// Reads a string or bytes length; *len is -1 for null.
bool Reader::ReadLength(bool compact, bool is_string, bool nullable, int64_t* len) {
  const char* what = is_string ? "string" : "bytes";
  if (compact) {
    uint32_t u = 0;
    if (!ReadUnsignedVarint(&u)) return false;
    *len = static_cast<int64_t>(u) - 1;
  } else if (is_string) {
    int16_t n = 0;
    if (!ReadInt16(&n)) return false;
    *len = n;
  } else {
    int32_t n = 0;
    if (!ReadInt32(&n)) return false;
    *len = n;
  }
  if (*len == -1) {
    if (!nullable) return Problem(std::string("null ") + what + " in a non-nullable field");
    return true;
  }
  if (*len < 0) return Problem(std::string("negative ") + what + " length " + std::to_string(*len));
  if (is_string && static_cast<uint64_t>(*len) > kMaxStringBytes) {
    return Problem("string length " + std::to_string(*len) + " exceeds 32767");
  }
  if (static_cast<uint64_t>(*len) > remaining()) {
    return Problem(std::string(what) + " length " + std::to_string(*len) + " exceeds the " +
                   std::to_string(remaining()) + " bytes left");
  }
  return true;
}

bool Reader::ReadString(bool compact, std::string* out) {
  int64_t len = 0;
  if (!ReadLength(compact, true, false, &len)) return false;
  out->assign(data_.data() + pos_, static_cast<size_t>(len));
  pos_ += static_cast<size_t>(len);
  return true;
}

bool Reader::ReadNullableString(bool compact, bool nullable, std::optional<std::string>* out) {
  int64_t len = 0;
  if (!ReadLength(compact, true, nullable, &len)) return false;
  if (len < 0) {
    out->reset();
    return true;
  }
  out->emplace(data_.data() + pos_, static_cast<size_t>(len));
  pos_ += static_cast<size_t>(len);
  return true;
}

bool Reader::ReadBytes(bool compact, std::string* out) {
  int64_t len = 0;
  if (!ReadLength(compact, false, false, &len)) return false;
  out->assign(data_.data() + pos_, static_cast<size_t>(len));
  pos_ += static_cast<size_t>(len);
  return true;
}

bool Reader::ReadNullableBytes(bool compact, bool nullable, std::optional<std::string>* out) {
  int64_t len = 0;
  if (!ReadLength(compact, false, nullable, &len)) return false;
  if (len < 0) {
    out->reset();
    return true;
  }
  out->emplace(data_.data() + pos_, static_cast<size_t>(len));
  pos_ += static_cast<size_t>(len);
  return true;
}

bool Reader::ReadArrayLength(bool compact, bool nullable, size_t min_element_bytes,
                             int32_t* count) {
  int64_t n = 0;
  if (compact) {
    uint32_t u = 0;
    if (!ReadUnsignedVarint(&u)) return false;
    n = static_cast<int64_t>(u) - 1;
  } else {
    int32_t c = 0;
    if (!ReadInt32(&c)) return false;
    n = c;
  }
  if (n == -1) {
    if (!nullable) return Problem("null array in a non-nullable field");
    *count = -1;
    return true;
  }
  if (n < 0) return Problem("negative array length " + std::to_string(n));
  // Every element takes at least min_element_bytes (at least 1), so a count beyond what the
  // remaining bytes can hold is refused before anything is allocated for it.
  const uint64_t need = static_cast<uint64_t>(n) * (min_element_bytes == 0 ? 1 : min_element_bytes);
  if (need > remaining()) {
    return Problem("array length " + std::to_string(n) + " exceeds what the " +
                   std::to_string(remaining()) + " bytes left can hold");
  }
  *count = static_cast<int32_t>(n);
  return true;
}

bool Reader::SkipTaggedFields() {
  uint32_t count = 0;
  if (!ReadUnsignedVarint(&count)) return false;
  // Each field takes at least 2 bytes (tag and size), so the loop ends on truncation early.
  for (uint32_t i = 0; i < count; ++i) {
    uint32_t tag = 0;
    uint32_t size = 0;
    if (!ReadUnsignedVarint(&tag) || !ReadUnsignedVarint(&size)) return false;
    if (size > remaining()) {
      return Problem("tagged field " + std::to_string(tag) + " of " + std::to_string(size) +
                     " bytes exceeds the " + std::to_string(remaining()) + " bytes left");
    }
    pos_ += size;
  }
  return true;
}

Status Reader::Fail(std::string_view message, int16_t version, std::string_view field) const {
  std::string msg = "kafka ";
  msg += message;
  msg += " v";
  msg += std::to_string(version);
  msg += ": ";
  msg += field;
  msg += ": ";
  msg += problem_.empty() ? std::string_view("malformed") : std::string_view(problem_);
  return Status::Corruption(msg);
}

// ---- Writer ----

Writer::Writer() { chunks_.emplace_back(); }

void Writer::Append(const void* p, size_t n) {
  chunks_.back().append(static_cast<const char*>(p), n);
  size_ += n;
}

void Writer::WriteInt8(int8_t v) {
  const char b = static_cast<char>(v);
  Append(&b, 1);
}

void Writer::WriteInt16(int16_t v) {
  char b[2];
  EncodeFixed16BE(b, static_cast<uint16_t>(v));
  Append(b, 2);
}

void Writer::WriteInt32(int32_t v) {
  char b[4];
  EncodeFixed32BE(b, static_cast<uint32_t>(v));
  Append(b, 4);
}

void Writer::WriteInt64(int64_t v) {
  char b[8];
  EncodeFixed64BE(b, static_cast<uint64_t>(v));
  Append(b, 8);
}

void Writer::WriteUint16(uint16_t v) { WriteInt16(static_cast<int16_t>(v)); }

void Writer::WriteBool(bool v) { WriteInt8(v ? 1 : 0); }

void Writer::WriteFloat64(double v) { WriteInt64(std::bit_cast<int64_t>(v)); }

void Writer::WriteUuid(const Uuid& v) { Append(v.data(), v.size()); }

void Writer::WriteUnsignedVarlong(uint64_t v) {
  char b[kMaxVarint64Bytes];
  Append(b, static_cast<size_t>(EncodeVarint64(b, v) - b));
}

void Writer::WriteUnsignedVarint(uint32_t v) { WriteUnsignedVarlong(v); }

void Writer::WriteVarint(int32_t v) { WriteUnsignedVarint(ZigZagEncode32(v)); }

void Writer::WriteVarlong(int64_t v) { WriteUnsignedVarlong(ZigZagEncode64(v)); }

void Writer::WriteRaw(std::string_view bytes) { Append(bytes.data(), bytes.size()); }

void Writer::WriteLength(bool compact, bool is_string, int64_t len) {
  if (compact) {
    WriteUnsignedVarint(static_cast<uint32_t>(len + 1));  // null (-1) is 0
  } else if (is_string) {
    WriteInt16(static_cast<int16_t>(len));
  } else {
    WriteInt32(static_cast<int32_t>(len));
  }
}

void Writer::WriteString(bool compact, std::string_view v) {
  if (v.size() > kMaxStringBytes) v = v.substr(0, kMaxStringBytes);
  WriteLength(compact, true, static_cast<int64_t>(v.size()));
  WriteRaw(v);
}

void Writer::WriteNullableString(bool compact, bool nullable, const std::optional<std::string>& v) {
  if (v.has_value()) {
    WriteString(compact, *v);
  } else if (nullable) {
    WriteLength(compact, true, -1);
  } else {
    WriteString(compact, {});
  }
}

void Writer::WriteBytes(bool compact, std::string_view v) {
  WriteLength(compact, false, static_cast<int64_t>(v.size()));
  WriteRaw(v);
}

void Writer::TakeBytes(bool compact, std::string&& v) {
  if (v.size() < kZeroCopyBytes) {
    WriteBytes(compact, v);
    return;
  }
  WriteLength(compact, false, static_cast<int64_t>(v.size()));
  size_ += v.size();
  if (chunks_.back().empty()) {
    chunks_.back() = std::move(v);
  } else {
    chunks_.push_back(std::move(v));
  }
  v.clear();
  chunks_.emplace_back();
}

void Writer::TakeNullableBytes(bool compact, bool nullable, std::optional<std::string>&& v) {
  if (v.has_value()) {
    TakeBytes(compact, std::move(*v));
  } else if (nullable) {
    WriteLength(compact, false, -1);
  } else {
    WriteBytes(compact, {});
  }
}

void Writer::WriteArrayLength(bool compact, int32_t count) {
  if (compact) {
    WriteUnsignedVarint(static_cast<uint32_t>(static_cast<int64_t>(count) + 1));
  } else {
    WriteInt32(count);
  }
}

std::vector<std::string> Writer::Finish() {
  std::vector<std::string> out;
  out.reserve(chunks_.size());
  for (auto& c : chunks_) {
    if (!c.empty()) out.push_back(std::move(c));
  }
  chunks_.clear();
  chunks_.emplace_back();
  size_ = 0;
  return out;
}

std::string JoinChunks(const std::vector<std::string>& chunks) {
  size_t n = 0;
  for (const auto& c : chunks) n += c.size();
  std::string out;
  out.reserve(n);
  for (const auto& c : chunks) out += c;
  return out;
}

// ---- Headers ----

Status DecodeRequestHeaderRest(Reader& r, bool flexible_header,
                               std::optional<std::string>* client_id) {
  // client_id stays a classic nullable string in header v2 (flexibleVersions "none").
  if (!r.ReadNullableString(/*compact=*/false, /*nullable=*/true, client_id)) {
    return r.Fail("RequestHeader", flexible_header ? 2 : 1, "client_id");
  }
  if (flexible_header && !r.SkipTaggedFields()) {
    return r.Fail("RequestHeader", 2, "tagged fields");
  }
  return Status::OK();
}

bool RequestHeaderIsFlexible(int16_t api_key, int16_t version) {
  const ApiInfo* api = FindApi(api_key);
  return api != nullptr && version >= api->first_flexible;
}

bool ResponseHeaderIsFlexible(int16_t api_key, int16_t version) {
  if (api_key == kApiVersionsKey) return false;
  return RequestHeaderIsFlexible(api_key, version);
}

void WriteResponseHeader(Writer& w, int16_t api_key, int16_t version, int32_t correlation_id) {
  w.WriteInt32(correlation_id);
  if (ResponseHeaderIsFlexible(api_key, version)) w.WriteEmptyTaggedFields();
}

}  // namespace runnel::kafka
