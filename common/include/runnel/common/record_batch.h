// Kafka RecordBatch v2 (magic 2): the unit Runnel stores, sends and validates.
//
// Layout (all integers big-endian; see storage/FORMAT.md for a worked example):
//   baseOffset:int64 batchLength:int32 partitionLeaderEpoch:int32 magic:int8(=2) crc:uint32
//   attributes:int16 lastOffsetDelta:int32 baseTimestamp:int64 maxTimestamp:int64
//   producerId:int64 producerEpoch:int16 baseSequence:int32 recordCount:int32 records...
// The CRC-32C covers attributes..end. With compression the records section (not the count) is
// one compressed blob; Runnel reads and writes all five Kafka codecs: none, gzip, snappy (xerial
// framed or raw), LZ4 (frame format) and zstd (see compression.h).
// Record: length:varint attributes:int8 timestampDelta:varlong offsetDelta:varint
//   keyLength:varint key valueLength:varint value headerCount:varint
//   [headerKeyLength:varint headerKey headerValueLength:varint headerValue]...
// (varint/varlong = zigzag LEB128; a length of -1 means null).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "runnel/common/compression.h"  // Compression, CompressionName, ParseCompression
#include "runnel/common/ids.h"
#include "runnel/common/result.h"
#include "runnel/common/status.h"

namespace runnel {

inline constexpr int8_t kRecordBatchMagic = 2;

// Byte offsets of the batch header fields. DO NOT CHANGE: Kafka's DefaultRecordBatch layout.
namespace batch_layout {
inline constexpr size_t kBaseOffset = 0;
inline constexpr size_t kBatchLength = 8;
inline constexpr size_t kPartitionLeaderEpoch = 12;
inline constexpr size_t kMagic = 16;
inline constexpr size_t kCrc = 17;
inline constexpr size_t kAttributes = 21;
inline constexpr size_t kLastOffsetDelta = 23;
inline constexpr size_t kBaseTimestamp = 27;
inline constexpr size_t kMaxTimestamp = 35;
inline constexpr size_t kProducerId = 43;
inline constexpr size_t kProducerEpoch = 51;
inline constexpr size_t kBaseSequence = 53;
inline constexpr size_t kRecordCount = 57;
inline constexpr size_t kRecords = 61;  // == header size
// baseOffset + batchLength: the part not counted by batchLength.
inline constexpr size_t kLogOverhead = 12;
}  // namespace batch_layout

inline constexpr size_t kBatchHeaderSize = batch_layout::kRecords;

// Attribute bits beyond the codec. DO NOT CHANGE.
inline constexpr int16_t kAttrCompressionMask = 0x07;
inline constexpr int16_t kAttrLogAppendTime = 0x08;
inline constexpr int16_t kAttrTransactional = 0x10;
inline constexpr int16_t kAttrControl = 0x20;

// The decoded fixed header of a batch.
struct BatchHeader {
  int64_t base_offset = 0;
  int32_t batch_length = 0;
  int32_t partition_leader_epoch = -1;
  int8_t magic = kRecordBatchMagic;
  uint32_t crc = 0;
  int16_t attributes = 0;
  int32_t last_offset_delta = 0;
  int64_t base_timestamp = 0;
  int64_t max_timestamp = 0;
  int64_t producer_id = -1;
  int16_t producer_epoch = -1;
  int32_t base_sequence = -1;
  int32_t record_count = 0;

  Compression compression() const {
    return static_cast<Compression>(attributes & kAttrCompressionMask);
  }
  bool log_append_time() const { return (attributes & kAttrLogAppendTime) != 0; }
  int64_t last_offset() const {
    return static_cast<int64_t>(static_cast<uint64_t>(base_offset) +
                                static_cast<uint64_t>(static_cast<int64_t>(last_offset_delta)));
  }
  int64_t next_offset() const {
    return static_cast<int64_t>(static_cast<uint64_t>(last_offset()) + 1);
  }
  // Total bytes of the batch including baseOffset and batchLength.
  size_t total_size() const {
    return batch_layout::kLogOverhead + static_cast<size_t>(batch_length);
  }
  // Last sequence number of an idempotent batch (wraps like Kafka's).
  int32_t last_sequence() const;
};

// One record header; header keys are never null, values may be.
struct RecordHeader {
  std::string_view key;
  std::optional<std::string_view> value;
};

// One decoded record. Views borrow from the batch bytes or from DecodedBatch's buffer.
struct Record {
  int64_t offset = 0;     // base offset + offset delta
  int64_t timestamp = 0;  // base timestamp + timestamp delta (ms)
  std::optional<std::string_view> key;
  std::optional<std::string_view> value;
  std::string_view headers_data;  // encoded headers, already validated
  int32_t header_count = 0;

  std::vector<RecordHeader> Headers() const;
  // The value of the first header named `name`; std::nullopt when absent. A present header with
  // a null value yields an engaged optional holding an empty view.
  std::optional<std::string_view> FindHeader(std::string_view name) const;
};

struct DecodeLimits {
  // Upper bound on the decompressed records section: bounds memory against decompression bombs.
  size_t max_uncompressed_bytes = 64u << 20;
};

// Parses and checks the fixed header of one batch that spans exactly `bytes`: size, batchLength,
// magic and CRC. Returns Corruption with a precise message otherwise. Does not look at records.
Status ParseBatchHeader(std::string_view bytes, BatchHeader* out);

// Reads the header of the first batch in `bytes` without checking the CRC, for splitting a
// sequence of batches: Corruption if the header or the declared length does not fit.
Status PeekBatchHeader(std::string_view bytes, BatchHeader* out);

// Fully validates one batch (header, CRC, decompression within limits, every record's lengths,
// offset deltas 0..n-1, record count, max timestamp) and calls `fn` for each record in order.
// `fn` may be empty. Never reads outside `bytes` whatever they contain.
Status ForEachRecord(std::string_view bytes, const DecodeLimits& limits, BatchHeader* header,
                     const std::function<void(const Record&)>& fn);

// A fully validated batch and its records. Records borrow from the input bytes (which must
// outlive this object) or from an owned decompression buffer. Movable; not thread-safe.
class DecodedBatch {
 public:
  static Result<DecodedBatch> Decode(std::string_view bytes, const DecodeLimits& limits = {});

  const BatchHeader& header() const { return header_; }
  const std::vector<Record>& records() const { return records_; }

 private:
  BatchHeader header_;
  std::unique_ptr<std::string> decompressed_;
  std::vector<Record> records_;
};

struct BatchBuilderOptions {
  Compression compression = Compression::kNone;  // any of the five codecs
  int64_t producer_id = -1;                      // -1: not idempotent
  int16_t producer_epoch = -1;
  int32_t base_sequence = -1;
};

// Builds one batch record by record. Not thread-safe. The batch's base offset is 0; the broker
// assigns the real one.
class RecordBatchBuilder {
 public:
  explicit RecordBatchBuilder(BatchBuilderOptions options = {});

  void Add(int64_t timestamp_ms, std::optional<std::string_view> key,
           std::optional<std::string_view> value, std::span<const RecordHeader> headers = {});
  // Copies `record` (timestamp, key, value, headers) as the next record.
  void AddCopy(const Record& record);

  int32_t record_count() const { return count_; }
  bool empty() const { return count_ == 0; }
  // Bytes of the uncompressed records section so far (a size estimate for batching).
  size_t uncompressed_bytes() const { return records_.size(); }
  BatchBuilderOptions& options() { return options_; }
  // Room for `bytes` of records before the buffer grows (a hint; saves copies on growth).
  void Reserve(size_t bytes) { records_.reserve(bytes); }

  // Returns the encoded batch and resets the builder (options are kept). Precondition: !empty().
  std::string Build();
  void Reset();

 private:
  void AddEncoded(int64_t timestamp_ms, std::optional<std::string_view> key,
                  std::optional<std::string_view> value, std::string_view headers_data,
                  int32_t header_count);

  BatchBuilderOptions options_;
  std::string records_;
  int32_t count_ = 0;
  int64_t base_timestamp_ = 0;
  int64_t max_timestamp_ = 0;
};

// Overwrites the baseOffset field of an encoded batch (not covered by the CRC).
void SetBatchBaseOffset(std::string& batch, int64_t base_offset);

// Rewrites the idempotent-producer fields of an encoded batch (a producer re-sequencing a batch
// before a retry) and recomputes its CRC. Precondition: `batch` is one well-formed batch.
void SetBatchProducer(std::string& batch, int64_t producer_id, int16_t producer_epoch,
                      int32_t base_sequence);

}  // namespace runnel
