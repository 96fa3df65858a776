#include "ctl.h"

#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <iostream>

#include "runnel/common/clock.h"
#include "runnel/common/units.h"

namespace runnel::ctl {

void Fail(const Status& s, const std::string& context) {
  const std::string msg = context.empty() ? s.message() : context + ": " + s.message();
  const bool denied = s.code() == StatusCode::kUnauthenticated ||
                      s.code() == StatusCode::kPermissionDenied;
  throw CommandError(denied ? kExitDenied : kExitError, msg.empty() ? s.ToString() : msg);
}

void UsageError(const std::string& message) { throw CommandError(kExitUsage, message); }

int64_t DurationFlag(const std::string& flag, const std::string& text) {
  auto r = ParseDurationMs(text);
  if (!r.ok()) UsageError(flag + ": " + r.status().message());
  return *r;
}

int64_t BytesFlag(const std::string& flag, const std::string& text) {
  auto r = ParseBytes(text);
  if (!r.ok()) UsageError(flag + ": " + r.status().message());
  return *r;
}

namespace {

bool ParseInt(std::string_view s, int64_t* out) {
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), *out);
  return ec == std::errc() && p == s.data() + s.size() && !s.empty();
}

// "YYYY-MM-DDTHH:MM:SS[.mmm]Z" (UTC) -> epoch ms.
bool ParseIsoTime(const std::string& s, int64_t* out) {
  int y, mo, d, h, mi, sec, n = 0;
  if (std::sscanf(s.c_str(), "%4d-%2d-%2dT%2d:%2d:%2d%n", &y, &mo, &d, &h, &mi, &sec, &n) != 6)
    return false;
  std::string_view rest(s.c_str() + n);
  int64_t millis = 0;
  if (rest.starts_with(".")) {
    rest.remove_prefix(1);
    size_t digits = 0;
    while (digits < rest.size() && rest[digits] >= '0' && rest[digits] <= '9') ++digits;
    if (digits == 0) return false;
    std::string frac(rest.substr(0, digits));
    frac.resize(3, '0');
    millis = std::stoll(frac.substr(0, 3));
    rest.remove_prefix(digits);
  }
  if (rest != "Z") return false;
  if (mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || sec > 60) return false;
  std::tm tm{};
  tm.tm_year = y - 1900;
  tm.tm_mon = mo - 1;
  tm.tm_mday = d;
  tm.tm_hour = h;
  tm.tm_min = mi;
  tm.tm_sec = sec;
  *out = static_cast<int64_t>(::timegm(&tm)) * 1000 + millis;
  return true;
}

}  // namespace

Position PositionFlag(const std::string& flag, const std::string& text) {
  int64_t v = 0;
  if (text == "earliest" || text == "beginning") return {Position::Kind::kEarliest, 0};
  if (text == "latest" || text == "end") return {Position::Kind::kLatest, 0};
  if (ParseInt(text, &v) && v >= 0) return {Position::Kind::kOffset, v};
  if (text.size() > 1 && text[0] == '@' && ParseInt(std::string_view(text).substr(1), &v))
    return {Position::Kind::kTime, v};
  if (text.size() > 1 && text[0] == '-') {
    auto ago = ParseDurationMs(std::string_view(text).substr(1));
    if (ago.ok()) return {Position::Kind::kTime, WallClockMs() - *ago};
  }
  if (ParseIsoTime(text, &v)) return {Position::Kind::kTime, v};
  UsageError(flag + ": '" + text +
             "' is not earliest, latest, an offset, an ISO-8601 UTC time, @<epoch ms> or "
             "-<duration>");
}

std::string FormatTimeMs(int64_t epoch_ms) {
  if (epoch_ms <= 0) return "-";
  const std::time_t secs = static_cast<std::time_t>(epoch_ms / 1000);
  std::tm tm{};
  ::gmtime_r(&secs, &tm);
  char buf[96];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                static_cast<int>(epoch_ms % 1000));
  return buf;
}

void Context::ParseTimeout() { timeout_ms_ = DurationFlag("--timeout", timeout); }

proto::TopicMetadata DescribeTopic(Context& ctx, const std::string& name) {
  auto topics = Check(ctx.Admin().DescribeTopics({name}));
  if (topics.size() != 1) {
    Fail(Status::Corruption("the broker answered for " + std::to_string(topics.size()) +
                            " topics"));
  }
  if (!topics[0].error.ok()) Fail(topics[0].error.ToStatus());
  return std::move(topics[0]);
}

TopicTotals Totals(const proto::TopicMetadata& t) {
  TopicTotals out;
  for (const auto& p : t.partitions) {
    out.records += p.high_watermark - p.log_start;
    out.bytes += p.size_bytes;
  }
  return out;
}

bool Context::colors() const {
  if (json || color == ColorMode::kNever) return false;
  if (color == ColorMode::kAlways) return true;
  const char* no_color = std::getenv("NO_COLOR");
  return ::isatty(STDOUT_FILENO) == 1 && (no_color == nullptr || *no_color == '\0');
}

std::shared_ptr<client::Connection> Context::Connection() {
  if (conn_) return conn_;
  auto opts = client::ParseBrokerAddress(broker);
  if (!opts.ok()) UsageError("--broker: " + opts.status().message());
  opts->connect_timeout_ms = timeout_ms();
  if (!token.empty()) opts->token = token;
  if (!tls_ca.empty()) {
    opts->tls = true;
    opts->tls_ca_file = tls_ca;
  }
  conn_ = client::ConnectTcp(*opts);
  // One cheap round trip first, so an unreachable broker is told apart from a failed operation.
  auto probe = client::Call<proto::ApiVersionsResponse>(*conn_, proto::ApiVersionsRequest{},
                                                        timeout_ms());
  if (probe.status().code() == StatusCode::kUnauthenticated) {
    throw CommandError(kExitDenied, "the broker at " + broker + " refused the connection: " +
                                        probe.status().message() +
                                        (opts->token.empty() ? " (pass --token or set RUNNEL_TOKEN)" : ""));
  }
  if (!probe.ok()) {
    throw CommandError(kExitUnreachable,
                       "cannot reach the broker at " + broker + ": " + probe.status().message());
  }
  return conn_;
}

client::Admin& Context::Admin() {
  if (!admin_) admin_ = std::make_unique<client::Admin>(Connection(), timeout_ms());
  return *admin_;
}

namespace {
bool LooksNumeric(const std::string& s) {
  if (s.empty() || s == "-") return false;
  const char c = s[0];
  return (c >= '0' && c <= '9') || (c == '-' && s.size() > 1 && s[1] >= '0' && s[1] <= '9');
}
}  // namespace

void Table::Print(const Context& ctx) const {
  std::vector<size_t> width(headers_.size());
  std::vector<bool> numeric(headers_.size(), true);
  for (size_t i = 0; i < headers_.size(); ++i) width[i] = headers_[i].size();
  for (const auto& r : rows_) {
    for (size_t i = 0; i < r.size() && i < width.size(); ++i) {
      width[i] = std::max(width[i], r[i].text.size());
      if (!LooksNumeric(r[i].text) && r[i].text != "-") numeric[i] = false;
    }
  }
  const bool color = ctx.colors();
  std::string out;
  auto cell = [&](size_t i, const std::string& text, const std::string& code) {
    const size_t pad = width[i] - std::min(width[i], text.size());
    const bool last = i + 1 == headers_.size();
    if (numeric[i]) out.append(pad, ' ');
    if (color && !code.empty()) {
      out += "\x1b[" + code + "m" + text + "\x1b[0m";
    } else {
      out += text;
    }
    if (!numeric[i] && !last) out.append(pad, ' ');
    if (!last) out += "  ";
  };
  for (size_t i = 0; i < headers_.size(); ++i) cell(i, headers_[i], color ? "1" : "");
  out += '\n';
  for (const auto& r : rows_) {
    for (size_t i = 0; i < headers_.size(); ++i) {
      if (i < r.size()) {
        cell(i, r[i].text, r[i].color);
      } else {
        cell(i, "", "");
      }
    }
    out += '\n';
  }
  std::fwrite(out.data(), 1, out.size(), stdout);
}

Table::Cell LagCell(int64_t lag) {
  if (lag >= 100'000) return {std::to_string(lag), "31"};
  if (lag >= 1'000) return {std::to_string(lag), "33"};
  return {std::to_string(lag)};
}

void PrintFields(const std::vector<std::pair<std::string, std::string>>& fields) {
  size_t w = 0;
  for (const auto& [k, v] : fields) w = std::max(w, k.size());
  for (const auto& [k, v] : fields)
    std::printf("%-*s  %s\n", static_cast<int>(w + 1), (k + ":").c_str(), v.c_str());
}

void PrintJson(const JsonWriter& w) {
  std::fwrite(w.str().data(), 1, w.str().size(), stdout);
  std::fputc('\n', stdout);
}

std::string Printable(const std::optional<std::string>& v, size_t max) {
  if (!v) return "null";
  std::string out;
  for (unsigned char c : *v) {
    if (c == '\n') {
      out += "\\n";
    } else if (c == '\t') {
      out += "\\t";
    } else if (c < 0x20 || c == 0x7f) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", c);
      out += buf;
    } else {
      out.push_back(static_cast<char>(c));
    }
  }
  if (max > 3 && out.size() > max) out = out.substr(0, max - 3) + "...";
  return out;
}

}  // namespace runnel::ctl
