// Human units for flags, config files and output: durations ("250ms", "30s", "7d") and sizes
// ("64KiB", "10GiB", "1.5MB").
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "runnel/common/result.h"

namespace runnel {

// "<number><unit>" with unit ms, s, m, h, d or w (a bare number is milliseconds); "-1" stays -1
// (meaning "forever" where a setting allows it). Fractions are allowed ("1.5h").
// InvalidArgument naming the input otherwise.
Result<int64_t> ParseDurationMs(std::string_view text);
// "<number><unit>" with unit B, KB, MB, GB, TB (powers of 1000) or KiB, MiB, GiB, TiB (powers of
// 1024), case-insensitive; a bare number is bytes; "-1" stays -1.
Result<int64_t> ParseBytes(std::string_view text);

// The shortest exact-ish form: "250ms", "30s", "5m", "2h 3m", "7d".
std::string FormatDurationMs(int64_t ms);
// "512 B", "1.5 KiB", "10.0 GiB".
std::string FormatBytes(int64_t bytes);

}  // namespace runnel
