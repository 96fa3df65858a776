// The storage module's logger ("storage"), behind a tiny interface so spdlog's heavy headers stay
// in one translation unit. Thread-safe.
#pragma once

#include <string_view>

namespace runnel::storage::log {

void Info(std::string_view message);
void Warn(std::string_view message);
void Error(std::string_view message);

}  // namespace runnel::storage::log
