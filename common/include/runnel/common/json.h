// A minimal streaming JSON writer (objects, arrays, strings, numbers, bools) for stats documents
// and --json output, and a small DOM parser for reading such documents back (runnelctl stats,
// tests). Not thread-safe.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "runnel/common/result.h"

namespace runnel {

class JsonWriter {
 public:
  JsonWriter& BeginObject();
  JsonWriter& EndObject();
  JsonWriter& BeginArray();
  JsonWriter& EndArray();
  // Inside an object: the next value's key.
  JsonWriter& Key(std::string_view key);
  JsonWriter& String(std::string_view s);
  JsonWriter& Int(int64_t v);
  JsonWriter& Uint(uint64_t v);
  JsonWriter& Double(double v);  // NaN and infinities are written as null
  JsonWriter& Bool(bool v);
  JsonWriter& Null();

  // key + value shorthands.
  JsonWriter& Field(std::string_view key, std::string_view v) { return Key(key).String(v); }
  JsonWriter& Field(std::string_view key, const char* v) { return Key(key).String(v); }
  JsonWriter& Field(std::string_view key, int64_t v) { return Key(key).Int(v); }
  JsonWriter& Field(std::string_view key, int32_t v) { return Key(key).Int(v); }
  JsonWriter& Field(std::string_view key, uint64_t v) { return Key(key).Uint(v); }
  JsonWriter& Field(std::string_view key, double v) { return Key(key).Double(v); }
  JsonWriter& Field(std::string_view key, bool v) { return Key(key).Bool(v); }

  const std::string& str() const { return out_; }
  std::string Take() { return std::move(out_); }

 private:
  void BeforeValue();

  std::string out_;
  std::vector<bool> first_;  // per open container: no element written yet
  bool after_key_ = false;
};

// Appends `s` as a quoted JSON string (valid UTF-8 passed through; control bytes and bytes that
// are not valid UTF-8 escaped as \u00XX so the output is always valid JSON).
void AppendJsonString(std::string* out, std::string_view s);

struct JsonMember;

// A parsed JSON value. Objects keep their members in document order.
struct JsonValue {
  enum class Type { kNull, kBool, kNumber, kString, kArray, kObject };
  Type type = Type::kNull;
  bool boolean = false;
  double number = 0;
  int64_t integer = 0;  // exact when the number was written as an integer that fits
  std::string string;
  std::vector<JsonValue> array;
  std::vector<JsonMember> object;  // (a struct, not a std::pair: JsonValue is incomplete here)

  bool is_null() const { return type == Type::kNull; }
  bool is_object() const { return type == Type::kObject; }
  bool is_array() const { return type == Type::kArray; }
  // The member named `key` of an object; nullptr when absent or not an object.
  const JsonValue* Find(std::string_view key) const;
  // Shorthands that tolerate a missing member: the fallback when absent or of another type.
  int64_t Int(std::string_view key, int64_t fallback = 0) const;
  double Double(std::string_view key, double fallback = 0) const;
  std::string Str(std::string_view key, std::string fallback = {}) const;
};

struct JsonMember {
  std::string key;
  JsonValue value;
};

// Parses one JSON document (RFC 8259; nesting limited to 128 levels). InvalidArgument with the
// byte position on malformed input or trailing garbage.
Result<JsonValue> ParseJson(std::string_view text);

}  // namespace runnel
