// spdlog-backed implementation of storage/src/logging.h.
#include "logging.h"

#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

namespace runnel::storage::log {
namespace {

spdlog::logger& Logger() {
  static std::shared_ptr<spdlog::logger> logger = [] {
    if (auto existing = spdlog::get("storage")) return existing;  // configured by the host
    auto l = spdlog::stderr_color_mt("storage");
    return l;
  }();
  return *logger;
}

}  // namespace

void Info(std::string_view message) { Logger().info("{}", message); }
void Warn(std::string_view message) { Logger().warn("{}", message); }
void Error(std::string_view message) { Logger().error("{}", message); }

}  // namespace runnel::storage::log
