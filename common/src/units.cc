#include "runnel/common/units.h"

#include <cctype>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>

namespace runnel {
namespace {

// Splits "<number><unit>" (spaces allowed between them); false when there is no number.
bool Split(std::string_view text, double* number, std::string* unit) {
  while (!text.empty() && std::isspace(static_cast<unsigned char>(text.front()))) text.remove_prefix(1);
  while (!text.empty() && std::isspace(static_cast<unsigned char>(text.back()))) text.remove_suffix(1);
  size_t i = 0;
  while (i < text.size() && (std::isdigit(static_cast<unsigned char>(text[i])) || text[i] == '.' ||
                             (i == 0 && text[i] == '-'))) {
    ++i;
  }
  const std::string num(text.substr(0, i));
  if (num.empty() || num == "-" || num == "." || num.find('.') != num.rfind('.')) return false;
  char* end = nullptr;
  *number = std::strtod(num.c_str(), &end);
  if (end != num.c_str() + num.size()) return false;
  std::string_view rest = text.substr(i);
  while (!rest.empty() && std::isspace(static_cast<unsigned char>(rest.front()))) rest.remove_prefix(1);
  unit->clear();
  for (char c : rest) unit->push_back(static_cast<char>(std::tolower(static_cast<unsigned char>(c))));
  return true;
}

Result<int64_t> Scale(std::string_view text, double number, double factor, const char* what) {
  if (number == -1 && factor >= 1) return int64_t{-1};
  if (number < 0) return Status::InvalidArgument(std::string(what) + " '" + std::string(text) + "' is negative");
  const double v = number * factor;
  if (v > 9.2e18) return Status::InvalidArgument(std::string(what) + " '" + std::string(text) + "' is too large");
  return static_cast<int64_t>(std::llround(v));
}

}  // namespace

Result<int64_t> ParseDurationMs(std::string_view text) {
  double n = 0;
  std::string unit;
  if (!Split(text, &n, &unit)) {
    return Status::InvalidArgument("invalid duration '" + std::string(text) +
                                   "' (expected e.g. 250ms, 30s, 5m, 2h, 7d)");
  }
  double f = 0;
  if (unit.empty() || unit == "ms") f = 1;
  else if (unit == "s" || unit == "sec") f = 1e3;
  else if (unit == "m" || unit == "min") f = 60e3;
  else if (unit == "h") f = 3600e3;
  else if (unit == "d") f = 86400e3;
  else if (unit == "w") f = 7 * 86400e3;
  else
    return Status::InvalidArgument("invalid duration unit in '" + std::string(text) +
                                   "' (use ms, s, m, h, d or w)");
  return Scale(text, n, f, "duration");
}

Result<int64_t> ParseBytes(std::string_view text) {
  double n = 0;
  std::string unit;
  if (!Split(text, &n, &unit)) {
    return Status::InvalidArgument("invalid size '" + std::string(text) +
                                   "' (expected e.g. 512, 64KiB, 10GiB, 1.5MB)");
  }
  double f = 0;
  if (unit.empty() || unit == "b") f = 1;
  else if (unit == "kb" || unit == "k") f = 1e3;
  else if (unit == "mb") f = 1e6;
  else if (unit == "gb") f = 1e9;
  else if (unit == "tb") f = 1e12;
  else if (unit == "kib") f = 1024.0;
  else if (unit == "mib") f = 1024.0 * 1024;
  else if (unit == "gib") f = 1024.0 * 1024 * 1024;
  else if (unit == "tib") f = 1024.0 * 1024 * 1024 * 1024;
  else
    return Status::InvalidArgument("invalid size unit in '" + std::string(text) +
                                   "' (use B, KB, MB, GB, KiB, MiB, GiB, TiB)");
  return Scale(text, n, f, "size");
}

std::string FormatDurationMs(int64_t ms) {
  if (ms < 0) return "-" + FormatDurationMs(-ms);
  if (ms < 1000) return std::to_string(ms) + "ms";
  const int64_t s = ms / 1000;
  if (s < 60) {
    char buf[32];
    std::snprintf(buf, sizeof buf, ms % 1000 ? "%.1fs" : "%.0fs", static_cast<double>(ms) / 1e3);
    return buf;
  }
  const int64_t d = s / 86400, h = s % 86400 / 3600, m = s % 3600 / 60, sec = s % 60;
  std::string out;
  auto part = [&](int64_t v, const char* u) {
    if (v == 0) return;
    if (!out.empty()) out += ' ';
    out += std::to_string(v) + u;
  };
  if (d > 0) {
    part(d, "d");
    part(h, "h");
  } else if (h > 0) {
    part(h, "h");
    part(m, "m");
  } else {
    part(m, "m");
    part(sec, "s");
  }
  return out;
}

std::string FormatBytes(int64_t bytes) {
  if (bytes < 0) return "-" + FormatBytes(-bytes);
  if (bytes < 1024) return std::to_string(bytes) + " B";
  const char* units[] = {"KiB", "MiB", "GiB", "TiB", "PiB"};
  double v = static_cast<double>(bytes) / 1024;
  size_t u = 0;
  while (v >= 1024 && u + 1 < std::size(units)) {
    v /= 1024;
    ++u;
  }
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f %s", v, units[u]);
  return buf;
}

}  // namespace runnel
