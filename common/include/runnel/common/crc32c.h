// CRC-32C (Castagnoli), the checksum of Kafka RecordBatch v2. Uses the SSE4.2 crc32
// instruction when the CPU has it, a portable slicing-by-8 table otherwise.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace runnel::crc32c {

// Returns the CRC-32C of data[0, n) continued from `crc` (the CRC of the preceding bytes; 0 to
// start). Thread-safe.
uint32_t Extend(uint32_t crc, const void* data, size_t n);

inline uint32_t Value(const void* data, size_t n) { return Extend(0, data, n); }
inline uint32_t Value(std::string_view s) { return Extend(0, s.data(), s.size()); }

// True when Extend uses the hardware instruction on this CPU.
bool HardwareAccelerated();

namespace internal {
uint32_t ExtendPortable(uint32_t crc, const void* data, size_t n);
// Precondition: HardwareAccelerated().
uint32_t ExtendHardware(uint32_t crc, const void* data, size_t n);
}  // namespace internal

}  // namespace runnel::crc32c
