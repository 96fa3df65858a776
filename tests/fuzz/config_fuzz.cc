// Fuzzes runneld's configuration path: the input is a TOML config file read by CLI11 with every
// runneld flag registered, then ToDaemonConfig. Bad input must end in CLI::Error or an
// InvalidArgument, never in another exception or a crash.
#include <CLI/CLI.hpp>

#include <cstddef>
#include <cstdint>
#include <sstream>
#include <string>

#include "runnel/broker/config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
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
    if (!config.status().IsInvalidArgument()) __builtin_trap();
    return 0;
  }
  if (config->server.max_frame_bytes == 0 || config->broker.store.max_queued_bytes == 0 ||
      config->broker.store.default_topic_config.max_message_bytes <= 0) {
    __builtin_trap();
  }
  return 0;
}
