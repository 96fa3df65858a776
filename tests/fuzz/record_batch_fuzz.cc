// Fuzzes the RecordBatch v2 decoder (header, CRC, LZ4 frame, record varints) with a 1 MiB
// decompression limit. A batch that decodes must rebuild, record by record, into a batch that
// decodes to the same records.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "runnel/common/record_batch.h"

using namespace runnel;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  const DecodeLimits limits{.max_uncompressed_bytes = 1 << 20};
  auto decoded = DecodedBatch::Decode(bytes, limits);
  if (!decoded.ok()) return 0;
  const auto& records = decoded->records();
  if (records.empty() || records.size() != static_cast<size_t>(decoded->header().record_count)) {
    __builtin_trap();
  }
  RecordBatchBuilder builder({.compression = decoded->header().compression()});
  for (const Record& r : records) {
    (void)r.Headers();
    builder.AddCopy(r);
  }
  const std::string rebuilt = builder.Build();
  auto again = DecodedBatch::Decode(rebuilt, DecodeLimits{.max_uncompressed_bytes = 64u << 20});
  if (!again.ok() || again->records().size() != records.size()) __builtin_trap();
  for (size_t i = 0; i < records.size(); ++i) {
    const Record& a = records[i];
    const Record& b = again->records()[i];
    if (a.key != b.key || a.value != b.value || a.headers_data != b.headers_data ||
        a.header_count != b.header_count || a.timestamp != b.timestamp) {
      __builtin_trap();
    }
  }
  return 0;
}
