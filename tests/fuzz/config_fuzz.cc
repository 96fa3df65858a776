// Fuzzes runneld's configuration path: the input is a TOML config file read by CLI11 with every
// runneld flag registered, then ToDaemonConfig. Bad input must end in CLI::Error or an
// InvalidArgument, never in another exception or a crash. The same bytes also go to the
// --auth-tokens file parser and the glob matcher.
#include <CLI/CLI.hpp>

#include <cstddef>
#include <cstdint>
#include <sstream>
#include <string>

#include "runnel/broker/auth.h"
#include "runnel/broker/config.h"

namespace {

void FuzzTokenFile(std::string_view text) {
  auto tokens = runnel::broker::TokenSet::Parse(text, "fuzz");
  if (!tokens.ok()) {
    if (!tokens.status().IsInvalidArgument()) __builtin_trap();
  } else {
    (void)(*tokens)->Authenticate(text);
  }
  // A glob matches itself when it holds no wildcard, and `*` matches everything.
  const size_t cut = text.find('\n');
  const std::string_view pattern = text.substr(0, cut);
  const std::string_view subject = cut == std::string_view::npos ? "" : text.substr(cut + 1);
  (void)runnel::broker::GlobMatch(pattern, subject);
  if (pattern.find_first_of("*?") == std::string_view::npos &&
      !runnel::broker::GlobMatch(pattern, pattern)) {
    __builtin_trap();
  }
  if (!runnel::broker::GlobMatch("*", subject)) __builtin_trap();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  FuzzTokenFile(std::string_view(reinterpret_cast<const char*>(data), size));
  CLI::App app{"runneld"};
  runnel::broker::DaemonFlags flags;
  runnel::broker::AddDaemonFlags(app, &flags);
  std::istringstream in(std::string(reinterpret_cast<const char*>(data), size));
  try {
    app.parse_from_stream(in);
  } catch (const CLI::Error&) {
    return 0;
  }
  auto config = runnel::broker::ToDaemonConfig(flags);
  if (!config.ok()) {
    // IOError: an --auth-tokens path that cannot be read.
    if (!config.status().IsInvalidArgument() && config.status().code() != runnel::StatusCode::kIOError)
      __builtin_trap();
    return 0;
  }
  if (config->server.max_frame_bytes == 0 || config->broker.store.max_queued_bytes == 0 ||
      config->broker.store.default_topic_config.max_message_bytes <= 0) {
    __builtin_trap();
  }
  return 0;
}
