// runnelctl internals: the context every command shares (broker connection, output mode), the
// table printer and the error type that ends a command with an exit code.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "runnel/client/admin.h"
#include "runnel/client/connection.h"
#include "runnel/common/json.h"
#include "runnel/common/result.h"

namespace CLI {
class App;
}

namespace runnel::ctl {

// Exit codes. Documented in tools/README.md; scripts depend on them.
inline constexpr int kExitOk = 0;
inline constexpr int kExitError = 1;        // the operation failed (unknown topic, bad range...)
inline constexpr int kExitUsage = 2;        // bad flags or values
inline constexpr int kExitUnreachable = 3;  // the broker could not be reached or timed out
inline constexpr int kExitDenied = 4;       // no token, a bad token, or the token may not do it

// Thrown by commands; main prints "runnelctl: <message>" on stderr and exits with `code`.
struct CommandError : std::runtime_error {
  CommandError(int c, const std::string& message) : std::runtime_error(message), code(c) {}
  int code;
};
[[noreturn]] void Fail(const Status& s, const std::string& context = {});
[[noreturn]] void UsageError(const std::string& message);
// The value, or Fail(status) with `context`.
template <class T> T Check(Result<T> r, const std::string& context = {}) {
  if (!r.ok()) Fail(r.status(), context);
  return std::move(r).value();
}
inline void Check(const Status& s, const std::string& context = {}) {
  if (!s.ok()) Fail(s, context);
}

// Parsers for flag values; UsageError naming the flag on bad input.
int64_t DurationFlag(const std::string& flag, const std::string& text);
int64_t BytesFlag(const std::string& flag, const std::string& text);
// "earliest", "latest", an offset, or a time: ISO-8601 UTC ("2026-11-22T10:00:00Z"), "@<epoch
// ms>", or "-<duration>" (that long ago).
struct Position {
  enum class Kind { kEarliest, kLatest, kOffset, kTime } kind = Kind::kEarliest;
  int64_t value = 0;
};
Position PositionFlag(const std::string& flag, const std::string& text);
std::string FormatTimeMs(int64_t epoch_ms);  // "2026-11-22T10:00:00.123Z"; "-" for <= 0

enum class ColorMode { kAuto, kAlways, kNever };

struct Context {
  std::string broker = "127.0.0.1:7070";
  bool json = false;
  std::string timeout = "30s";
  ColorMode color = ColorMode::kAuto;
  std::string token;   // --token (else RUNNEL_TOKEN)
  std::string tls_ca;  // --tls-ca (else RUNNEL_TLS_CA); turns TLS on

  // --timeout in ms; parsed once (a usage error) before any command runs.
  int64_t timeout_ms() const { return timeout_ms_; }
  void ParseTimeout();
  bool colors() const;  // on a terminal (or forced), and NO_COLOR unset
  std::shared_ptr<client::Connection> Connection();
  client::Admin& Admin();

 private:
  int64_t timeout_ms_ = 30'000;
  std::shared_ptr<client::Connection> conn_;
  std::unique_ptr<client::Admin> admin_;
};

// Aligned columns for human output. Numbers are right-aligned.
class Table {
 public:
  explicit Table(std::vector<std::string> headers) : headers_(std::move(headers)) {}
  // A cell with an optional ANSI colour code ("31" red, "33" yellow, "32" green, "2" dim).
  struct Cell {
    std::string text;
    std::string color;
    Cell(std::string t) : text(std::move(t)) {}  // NOLINT: implicit on purpose
    Cell(const char* t) : text(t) {}              // NOLINT
    Cell(int64_t v) : text(std::to_string(v)) {}  // NOLINT
    Cell(int32_t v) : text(std::to_string(v)) {}  // NOLINT
    Cell(std::string t, std::string c) : text(std::move(t)), color(std::move(c)) {}
  };
  void Row(std::vector<Cell> cells) { rows_.push_back(std::move(cells)); }
  bool empty() const { return rows_.empty(); }
  void Print(const Context& ctx) const;

 private:
  std::vector<std::string> headers_;
  std::vector<std::vector<Cell>> rows_;
};

// Lag coloured when large: yellow from 1,000, red from 100,000.
Table::Cell LagCell(int64_t lag);
// "key: value" lines for one object, aligned on the colon.
void PrintFields(const std::vector<std::pair<std::string, std::string>>& fields);
// Prints a --json document (and a newline) on stdout.
void PrintJson(const JsonWriter& w);
// A value that may be binary, for a table cell or --format: printable text as is, else escaped.
std::string Printable(const std::optional<std::string>& v, size_t max = 0);

// One topic's metadata; Fail (NotFound...) when the broker reports it missing.
proto::TopicMetadata DescribeTopic(Context& ctx, const std::string& name);
// Records (log end - log start) and stored bytes over a topic's partitions.
struct TopicTotals {
  int64_t records = 0;
  int64_t bytes = 0;
};
TopicTotals Totals(const proto::TopicMetadata& t);

// Command groups, each adding its subcommands to the app.
void AddTopicCommands(CLI::App& app, Context& ctx);
void AddDataCommands(CLI::App& app, Context& ctx);     // produce, consume
void AddGroupCommands(CLI::App& app, Context& ctx);    // group, pending, claim, dlq, status
void AddBrokerCommands(CLI::App& app, Context& ctx);   // stats, dump
void AddBackupCommands(CLI::App& app, Context& ctx);   // backup
void AddVerifyCommands(CLI::App& app, Context& ctx);   // verify (offline)
// `completion bash`: prints a bash completion script built from the app's command tree.
void AddCompletionCommand(CLI::App& app);

}  // namespace runnel::ctl
