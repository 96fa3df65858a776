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

}  // namespace
}  // namespace runnel
