#include "runnel/common/crc32c.h"

#include <doctest/doctest.h>

#include <random>
#include <string>

namespace runnel {
namespace {

// Published vectors: RFC 3720 (iSCSI) appendix B.4 and the common "123456789" check value.
TEST_CASE("CRC-32C: published test vectors") {
  CHECK(crc32c::Value(std::string("123456789")) == 0xE3069283u);
  CHECK(crc32c::Value(std::string(32, '\0')) == 0x8A9136AAu);
  CHECK(crc32c::Value(std::string(32, '\xff')) == 0x62A8AB43u);
  std::string ascending, descending;
  for (int i = 0; i < 32; ++i) {
    ascending.push_back(static_cast<char>(i));
    descending.push_back(static_cast<char>(31 - i));
  }
  CHECK(crc32c::Value(ascending) == 0x46DD794Eu);
  CHECK(crc32c::Value(descending) == 0x113FDB5Cu);
  CHECK(crc32c::Value(std::string()) == 0u);
}

TEST_CASE("CRC-32C: portable and hardware paths agree, and Extend composes") {
  std::mt19937 rng(42);
  for (size_t len : {0, 1, 7, 8, 9, 63, 64, 65, 1000, 4099}) {
    std::string data(len, '\0');
    for (char& c : data) c = static_cast<char>(rng());
    const uint32_t portable = crc32c::internal::ExtendPortable(0, data.data(), data.size());
    CHECK(crc32c::Value(data) == portable);
    if (crc32c::HardwareAccelerated()) {
      CHECK(crc32c::internal::ExtendHardware(0, data.data(), data.size()) == portable);
    }
    const size_t cut = len / 3;
    const uint32_t first = crc32c::Extend(0, data.data(), cut);
    CHECK(crc32c::Extend(first, data.data() + cut, len - cut) == portable);
  }
}

}  // namespace
}  // namespace runnel
