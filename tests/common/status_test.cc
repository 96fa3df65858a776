#include "runnel/common/status.h"

#include <doctest/doctest.h>

#include "runnel/common/ids.h"
#include "runnel/common/result.h"

namespace runnel {
namespace {

Result<int> Half(int v) {
  if (v % 2 != 0) return Status::InvalidArgument("odd");
  return v / 2;
}

Result<int> Quarter(int v) {
  RUNNEL_ASSIGN_OR_RETURN(int h, Half(v));
  return Half(h);
}

TEST_CASE("Status: OK carries no message and prints as ok") {
  Status s = Status::OK();
  CHECK(s.ok());
  CHECK(s.ToString() == "ok");
}

TEST_CASE("Status: errors carry code, message and context") {
  Status s = Status::NotFound("topic 'a'");
  CHECK_FALSE(s.ok());
  CHECK(s.IsNotFound());
  CHECK(s.ToString() == "not_found: topic 'a'");
  Status c = s.WithContext("describe");
  CHECK(c.code() == StatusCode::kNotFound);
  CHECK(c.message() == "describe: topic 'a'");
}

TEST_CASE("Result: values and errors propagate through RUNNEL_ASSIGN_OR_RETURN") {
  CHECK(Quarter(8).value() == 2);
  Result<int> r = Quarter(6);  // 6/2 = 3 is odd
  REQUIRE_FALSE(r.ok());
  CHECK(r.status().IsInvalidArgument());
}

TEST_CASE("StrongId: arithmetic keeps the type and ordering works") {
  Offset a(10);
  Offset b = a + 5;
  CHECK(b.value() == 15);
  CHECK(b - a == 5);
  CHECK(a < b);
  CHECK(std::hash<Offset>{}(a) == std::hash<int64_t>{}(10));
}

}  // namespace
}  // namespace runnel
