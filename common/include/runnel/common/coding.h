// Byte encodings shared by the record format, the storage format and the wire protocol:
// big-endian fixed-width integers, unsigned LEB128 varints and Kafka's zigzag varints.
#pragma once

#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

namespace runnel {

inline constexpr int kMaxVarint32Bytes = 5;
inline constexpr int kMaxVarint64Bytes = 10;

// ---- fixed width, big-endian -------------------------------------------------------------

inline void EncodeFixed16BE(char* dst, uint16_t v) {
  dst[0] = static_cast<char>(v >> 8);
  dst[1] = static_cast<char>(v);
}
inline void EncodeFixed32BE(char* dst, uint32_t v) {
  for (int i = 3; i >= 0; --i, v >>= 8) dst[i] = static_cast<char>(v);
}
inline void EncodeFixed64BE(char* dst, uint64_t v) {
  for (int i = 7; i >= 0; --i, v >>= 8) dst[i] = static_cast<char>(v);
}
inline uint16_t DecodeFixed16BE(const char* p) {
  const auto* u = reinterpret_cast<const unsigned char*>(p);
  return static_cast<uint16_t>((u[0] << 8) | u[1]);
}
inline uint32_t DecodeFixed32BE(const char* p) {
  const auto* u = reinterpret_cast<const unsigned char*>(p);
  return (uint32_t{u[0]} << 24) | (uint32_t{u[1]} << 16) | (uint32_t{u[2]} << 8) | u[3];
}
inline uint64_t DecodeFixed64BE(const char* p) {
  return (uint64_t{DecodeFixed32BE(p)} << 32) | DecodeFixed32BE(p + 4);
}

inline void PutFixed8(std::string* dst, uint8_t v) { dst->push_back(static_cast<char>(v)); }
inline void PutFixed16BE(std::string* dst, uint16_t v) {
  char b[2];
  EncodeFixed16BE(b, v);
  dst->append(b, 2);
}
inline void PutFixed32BE(std::string* dst, uint32_t v) {
  char b[4];
  EncodeFixed32BE(b, v);
  dst->append(b, 4);
}
inline void PutFixed64BE(std::string* dst, uint64_t v) {
  char b[8];
  EncodeFixed64BE(b, v);
  dst->append(b, 8);
}

// ---- varints -------------------------------------------------------------------------------

inline constexpr uint32_t ZigZagEncode32(int32_t v) {
  return (static_cast<uint32_t>(v) << 1) ^ static_cast<uint32_t>(v >> 31);
}
inline constexpr uint64_t ZigZagEncode64(int64_t v) {
  return (static_cast<uint64_t>(v) << 1) ^ static_cast<uint64_t>(v >> 63);
}
inline constexpr int32_t ZigZagDecode32(uint32_t v) {
  return static_cast<int32_t>((v >> 1) ^ (~(v & 1) + 1));
}
inline constexpr int64_t ZigZagDecode64(uint64_t v) {
  return static_cast<int64_t>((v >> 1) ^ (~(v & 1) + 1));
}

// Number of bytes the unsigned varint encoding of `v` takes (1..10).
inline int VarintLength(uint64_t v) {
  int len = 1;
  while (v >= 0x80) {
    v >>= 7;
    ++len;
  }
  return len;
}
inline int SignedVarintLength(int64_t v) { return VarintLength(ZigZagEncode64(v)); }

// Writes the unsigned varint of `v` at `dst`; returns one past the last byte written.
inline char* EncodeVarint64(char* dst, uint64_t v) {
  auto* p = reinterpret_cast<unsigned char*>(dst);
  while (v >= 0x80) {
    *p++ = static_cast<unsigned char>(v | 0x80);
    v >>= 7;
  }
  *p++ = static_cast<unsigned char>(v);
  return reinterpret_cast<char*>(p);
}
inline char* EncodeSignedVarint64(char* dst, int64_t v) {
  return EncodeVarint64(dst, ZigZagEncode64(v));
}

inline void PutVarint64(std::string* dst, uint64_t v) {
  char b[kMaxVarint64Bytes];
  dst->append(b, static_cast<size_t>(EncodeVarint64(b, v) - b));
}
inline void PutSignedVarint64(std::string* dst, int64_t v) { PutVarint64(dst, ZigZagEncode64(v)); }

// Length-prefixed (unsigned varint) byte string.
inline void PutLengthPrefixed(std::string* dst, std::string_view s) {
  PutVarint64(dst, s.size());
  dst->append(s);
}

// ---- bounds-checked reader -----------------------------------------------------------------

// A cursor over a byte range that never reads out of bounds: every Read* returns false (and
// leaves the output unspecified) when the input is too short or a varint is malformed.
// Borrows the bytes; they must outlive the reader. Not thread-safe.
class ByteReader {
 public:
  explicit ByteReader(std::string_view data) : p_(data.data()), end_(data.data() + data.size()) {}

  size_t remaining() const { return static_cast<size_t>(end_ - p_); }
  bool empty() const { return p_ == end_; }
  const char* position() const { return p_; }

  bool ReadU8(uint8_t* v) {
    if (p_ == end_) return false;
    *v = static_cast<uint8_t>(*p_++);
    return true;
  }
  bool ReadFixed16BE(uint16_t* v) { return ReadFixed(v, 2, DecodeFixed16BE); }
  bool ReadFixed32BE(uint32_t* v) { return ReadFixed(v, 4, DecodeFixed32BE); }
  bool ReadFixed64BE(uint64_t* v) { return ReadFixed(v, 8, DecodeFixed64BE); }

  // Unsigned LEB128; rejects encodings longer than the type allows or that overflow it.
  bool ReadVarint64(uint64_t* v) {
    uint64_t result = 0;
    for (int shift = 0; shift < 64 && p_ < end_; shift += 7) {
      const auto byte = static_cast<uint8_t>(*p_++);
      if (shift == 63 && byte > 1) return false;  // would overflow 64 bits
      result |= uint64_t{byte & 0x7fu} << shift;
      if ((byte & 0x80) == 0) {
        *v = result;
        return true;
      }
    }
    return false;
  }
  bool ReadVarint32(uint32_t* v) {
    uint64_t r;
    const char* start = p_;
    if (!ReadVarint64(&r) || r > UINT32_MAX || p_ - start > kMaxVarint32Bytes) return false;
    *v = static_cast<uint32_t>(r);
    return true;
  }
  // Kafka "varint" / "varlong": zigzag-encoded signed values.
  bool ReadSignedVarint32(int32_t* v) {
    uint32_t r;
    if (!ReadVarint32(&r)) return false;
    *v = ZigZagDecode32(r);
    return true;
  }
  bool ReadSignedVarint64(int64_t* v) {
    uint64_t r;
    if (!ReadVarint64(&r)) return false;
    *v = ZigZagDecode64(r);
    return true;
  }

  bool ReadBytes(size_t n, std::string_view* out) {
    if (remaining() < n) return false;
    *out = std::string_view(p_, n);
    p_ += n;
    return true;
  }
  bool ReadLengthPrefixed(std::string_view* out) {
    uint64_t n;
    return ReadVarint64(&n) && n <= remaining() && ReadBytes(static_cast<size_t>(n), out);
  }
  bool Skip(size_t n) {
    if (remaining() < n) return false;
    p_ += n;
    return true;
  }

 private:
  template <typename T, typename F>
  bool ReadFixed(T* v, size_t n, F decode) {
    if (remaining() < n) return false;
    *v = decode(p_);
    p_ += n;
    return true;
  }

  const char* p_;
  const char* end_;
};

}  // namespace runnel
