#include "runnel/common/units.h"

#include <doctest/doctest.h>

#include "runnel/common/json.h"

namespace runnel {
namespace {

TEST_CASE("durations parse with units and reject junk") {
  CHECK(*ParseDurationMs("250ms") == 250);
  CHECK(*ParseDurationMs("30s") == 30'000);
  CHECK(*ParseDurationMs("5m") == 300'000);
  CHECK(*ParseDurationMs("1.5h") == 5'400'000);
  CHECK(*ParseDurationMs("7d") == 604'800'000);
  CHECK(*ParseDurationMs("1000") == 1000);
  CHECK(*ParseDurationMs("-1") == -1);
  for (const char* bad : {"", "s", "10x", "1..2s", "-5s", "abc", "1e3s"}) {
    INFO(bad);
    CHECK(ParseDurationMs(bad).status().IsInvalidArgument());
  }
}

TEST_CASE("sizes parse in SI and IEC units") {
  CHECK(*ParseBytes("512") == 512);
  CHECK(*ParseBytes("64KiB") == 65'536);
  CHECK(*ParseBytes("10GiB") == 10'737'418'240);
  CHECK(*ParseBytes("1.5MB") == 1'500'000);
  CHECK(*ParseBytes("2 mib") == 2'097'152);
  CHECK(ParseBytes("12 parsecs").status().IsInvalidArgument());
  CHECK(ParseBytes("99999999TiB").status().IsInvalidArgument());
}

TEST_CASE("human formats") {
  CHECK(FormatDurationMs(250) == "250ms");
  CHECK(FormatDurationMs(1500) == "1.5s");
  CHECK(FormatDurationMs(125'000) == "2m 5s");
  CHECK(FormatDurationMs(7 * 86'400'000LL) == "7d");
  CHECK(FormatBytes(512) == "512 B");
  CHECK(FormatBytes(1536) == "1.5 KiB");
  CHECK(FormatBytes(10'737'418'240) == "10.0 GiB");
}

TEST_CASE("the JSON writer produces valid, escaped JSON") {
  JsonWriter w;
  w.BeginObject().Field("a", int64_t{1}).Key("b").BeginArray().String("x\"\n\x01\xff").Null()
      .EndArray().Field("c", true).Field("d", 0.5).EndObject();
  CHECK(w.str() == "{\"a\":1,\"b\":[\"x\\\"\\n\\u0001\\u00ff\",null],\"c\":true,\"d\":0.5}");
}

TEST_CASE("the JSON writer passes valid UTF-8 through and escapes invalid bytes") {
  std::string out;
  AppendJsonString(&out, "caf\xc3\xa9 \xe2\x82\xac \xc3 \xed\xa0\x80");
  CHECK(out == "\"caf\xc3\xa9 \xe2\x82\xac \\u00c3 \\u00ed\\u00a0\\u0080\"");
}

TEST_CASE("the JSON parser reads what the writer writes") {
  JsonWriter w;
  w.BeginObject()
      .Field("n", int64_t{9'007'199'254'740'993})
      .Field("neg", int64_t{-5})
      .Field("d", 2.5)
      .Field("s", "tab\t quote\" caf\xc3\xa9")
      .Key("a").BeginArray().Bool(true).Bool(false).Null().BeginObject().EndObject().EndArray()
      .EndObject();
  auto v = ParseJson(w.str());
  REQUIRE(v.ok());
  CHECK(v->Int("n") == 9'007'199'254'740'993);  // exact, beyond a double's 53 bits
  CHECK(v->Int("neg") == -5);
  CHECK(v->Double("d") == 2.5);
  CHECK(v->Str("s") == "tab\t quote\" caf\xc3\xa9");
  const JsonValue* a = v->Find("a");
  REQUIRE(a != nullptr);
  REQUIRE(a->array.size() == 4);
  CHECK(a->array[0].boolean);
  CHECK(a->array[2].is_null());
  CHECK(a->array[3].is_object());
  CHECK(v->Int("missing", 7) == 7);
  CHECK(ParseJson("\"\\u00e9\\ud83d\\ude00\"")->string == "\xc3\xa9\xf0\x9f\x98\x80");
  CHECK(ParseJson("1e400")->integer == INT64_MAX);  // saturates, no undefined cast
}

TEST_CASE("the JSON parser rejects malformed documents with a position") {
  for (const char* bad : {"", "{", "[1,]", "{\"a\" 1}", "\"\\x\"", "tru", "01x", "[1] 2",
                          "\"unterminated", "{\"a\":}", "-", "1.", "\"\x01\""}) {
    auto v = ParseJson(bad);
    CHECK_FALSE(v.ok());
    if (!v.ok()) CHECK(v.status().message().find("invalid JSON at byte") != std::string::npos);
  }
  CHECK_FALSE(ParseJson(std::string(200, '[') + std::string(200, ']')).ok());  // too deep
}

}  // namespace
}  // namespace runnel
