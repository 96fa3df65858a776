// Fuzzes the duration and size parsers used by flags, config files and runnelctl. A parse is
// either InvalidArgument or a value >= -1, and formatting a parsed value never fails.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "runnel/common/units.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  for (auto parse : {&runnel::ParseDurationMs, &runnel::ParseBytes}) {
    auto r = parse(text);
    if (!r.ok()) {
      if (!r.status().IsInvalidArgument()) __builtin_trap();
      continue;
    }
    if (*r < -1) __builtin_trap();
    if (runnel::FormatDurationMs(*r).empty() || runnel::FormatBytes(*r).empty()) __builtin_trap();
  }
  return 0;
}
