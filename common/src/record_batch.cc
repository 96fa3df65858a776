// Kafka RecordBatch v2 encoding, validation and decoding.
#include "runnel/common/record_batch.h"

#include <algorithm>
#include <limits>

#include "runnel/common/coding.h"
#include "runnel/common/crc32c.h"

namespace runnel {
namespace {

namespace L = batch_layout;

// Smallest possible encoded record: length, attributes, timestamp delta, offset delta, key
// length, value length and header count, one byte each.
constexpr size_t kMinRecordSize = 7;

std::string Fmt(std::string_view a, int64_t n, std::string_view b = {}) {
  std::string s(a);
  s += std::to_string(n);
  s += b;
  return s;
}

// Validates the headers section of one record; on success `*end` is one past it.
bool SkipHeaders(ByteReader& r, int32_t count) {
  for (int32_t i = 0; i < count; ++i) {
    int32_t klen, vlen;
    std::string_view unused;
    if (!r.ReadSignedVarint32(&klen) || klen < 0 ||
        !r.ReadBytes(static_cast<size_t>(klen), &unused))
      return false;
    if (!r.ReadSignedVarint32(&vlen) || vlen < -1) return false;
    if (vlen >= 0 && !r.ReadBytes(static_cast<size_t>(vlen), &unused)) return false;
  }
  return true;
}

bool ReadNullableBytes(ByteReader& r, std::optional<std::string_view>* out) {
  int32_t len;
  if (!r.ReadSignedVarint32(&len) || len < -1) return false;
  if (len == -1) {
    out->reset();
    return true;
  }
  std::string_view v;
  if (!r.ReadBytes(static_cast<size_t>(len), &v)) return false;
  *out = v;
  return true;
}

Status ParseRecords(std::string_view data, const BatchHeader& h,
                    const std::function<void(const Record&)>& fn) {
  ByteReader r(data);
  int64_t max_ts = std::numeric_limits<int64_t>::min();
  Record rec;
  for (int32_t i = 0; i < h.record_count; ++i) {
    int32_t len;
    if (r.empty()) {
      return Status::Corruption(Fmt("batch declares ", h.record_count, " records but holds ") +
                                std::to_string(i));
    }
    std::string_view body;
    if (!r.ReadSignedVarint32(&len) || len < 0 || !r.ReadBytes(static_cast<size_t>(len), &body)) {
      return Status::Corruption(Fmt("record ", i, ": length exceeds the batch"));
    }
    ByteReader br(body);
    uint8_t attributes;
    int64_t ts_delta;
    int32_t offset_delta;
    if (!br.ReadU8(&attributes) || !br.ReadSignedVarint64(&ts_delta) ||
        !br.ReadSignedVarint32(&offset_delta)) {
      return Status::Corruption(Fmt("record ", i, ": truncated record prefix"));
    }
    if (offset_delta != i) {
      return Status::Corruption(Fmt("record ", i, ": offset delta ") +
                                std::to_string(offset_delta) + " is not sequential");
    }
    if (!ReadNullableBytes(br, &rec.key)) {
      return Status::Corruption(Fmt("record ", i, ": bad key length"));
    }
    if (!ReadNullableBytes(br, &rec.value)) {
      return Status::Corruption(Fmt("record ", i, ": bad value length"));
    }
    int32_t header_count;
    if (!br.ReadSignedVarint32(&header_count) || header_count < 0 ||
        static_cast<size_t>(header_count) > br.remaining() / 2) {
      return Status::Corruption(Fmt("record ", i, ": bad header count"));
    }
    const char* headers_begin = br.position();
    if (!SkipHeaders(br, header_count)) {
      return Status::Corruption(Fmt("record ", i, ": malformed headers"));
    }
    if (!br.empty()) {
      return Status::Corruption(Fmt("record ", i, ": trailing bytes inside the record"));
    }
    // Reject deltas that would overflow instead of wrapping silently.
    if ((ts_delta > 0 && h.base_timestamp > std::numeric_limits<int64_t>::max() - ts_delta) ||
        (ts_delta < 0 && h.base_timestamp < std::numeric_limits<int64_t>::min() - ts_delta)) {
      return Status::Corruption(Fmt("record ", i, ": timestamp overflows"));
    }
    // Wrapping arithmetic: baseOffset is producer-supplied until the store rewrites it.
    rec.offset = static_cast<int64_t>(static_cast<uint64_t>(h.base_offset) +
                                      static_cast<uint64_t>(offset_delta));
    rec.timestamp = h.base_timestamp + ts_delta;
    rec.headers_data =
        std::string_view(headers_begin, static_cast<size_t>(br.position() - headers_begin));
    rec.header_count = header_count;
    max_ts = std::max(max_ts, rec.timestamp);
    if (fn) fn(rec);
  }
  if (!r.empty()) {
    return Status::Corruption(
        Fmt("", static_cast<int64_t>(r.remaining()), " trailing bytes after the last record"));
  }
  if (!h.log_append_time() && max_ts != h.max_timestamp) {
    return Status::Corruption(
        Fmt("batch max timestamp ", h.max_timestamp, " does not match its records' max ") +
        std::to_string(max_ts));
  }
  return Status::OK();
}

}  // namespace

int32_t BatchHeader::last_sequence() const {
  if (base_sequence < 0) return -1;
  const int64_t last = int64_t{base_sequence} + last_offset_delta;
  return static_cast<int32_t>(last > std::numeric_limits<int32_t>::max()
                                  ? last - std::numeric_limits<int32_t>::max() - 1
                                  : last);
}

std::vector<RecordHeader> Record::Headers() const {
  std::vector<RecordHeader> out;
  out.reserve(static_cast<size_t>(header_count));
  ByteReader r(headers_data);
  for (int32_t i = 0; i < header_count; ++i) {
    int32_t klen;
    RecordHeader h;
    if (!r.ReadSignedVarint32(&klen) || klen < 0 ||
        !r.ReadBytes(static_cast<size_t>(klen), &h.key) || !ReadNullableBytes(r, &h.value)) {
      break;  // cannot happen for validated records; stay in bounds regardless
    }
    out.push_back(h);
  }
  return out;
}

std::optional<std::string_view> Record::FindHeader(std::string_view name) const {
  ByteReader r(headers_data);
  for (int32_t i = 0; i < header_count; ++i) {
    int32_t klen;
    std::string_view k;
    std::optional<std::string_view> v;
    if (!r.ReadSignedVarint32(&klen) || klen < 0 || !r.ReadBytes(static_cast<size_t>(klen), &k) ||
        !ReadNullableBytes(r, &v)) {
      return std::nullopt;
    }
    if (k == name) return v.value_or(std::string_view());
  }
  return std::nullopt;
}

Status PeekBatchHeader(std::string_view bytes, BatchHeader* h) {
  if (bytes.size() < kBatchHeaderSize) {
    return Status::Corruption(Fmt("truncated batch: ", static_cast<int64_t>(bytes.size()),
                                  " bytes, the header alone needs 61"));
  }
  const char* p = bytes.data();
  h->base_offset = static_cast<int64_t>(DecodeFixed64BE(p + L::kBaseOffset));
  h->batch_length = static_cast<int32_t>(DecodeFixed32BE(p + L::kBatchLength));
  h->partition_leader_epoch = static_cast<int32_t>(DecodeFixed32BE(p + L::kPartitionLeaderEpoch));
  h->magic = static_cast<int8_t>(p[L::kMagic]);
  h->crc = DecodeFixed32BE(p + L::kCrc);
  h->attributes = static_cast<int16_t>(DecodeFixed16BE(p + L::kAttributes));
  h->last_offset_delta = static_cast<int32_t>(DecodeFixed32BE(p + L::kLastOffsetDelta));
  h->base_timestamp = static_cast<int64_t>(DecodeFixed64BE(p + L::kBaseTimestamp));
  h->max_timestamp = static_cast<int64_t>(DecodeFixed64BE(p + L::kMaxTimestamp));
  h->producer_id = static_cast<int64_t>(DecodeFixed64BE(p + L::kProducerId));
  h->producer_epoch = static_cast<int16_t>(DecodeFixed16BE(p + L::kProducerEpoch));
  h->base_sequence = static_cast<int32_t>(DecodeFixed32BE(p + L::kBaseSequence));
  h->record_count = static_cast<int32_t>(DecodeFixed32BE(p + L::kRecordCount));
  if (h->batch_length < static_cast<int32_t>(kBatchHeaderSize - L::kLogOverhead)) {
    return Status::Corruption(Fmt("batch length ", h->batch_length, " is smaller than the header"));
  }
  if (h->total_size() > bytes.size()) {
    return Status::Corruption(
        Fmt("truncated batch: declares ", static_cast<int64_t>(h->total_size()), " bytes, ") +
        std::to_string(bytes.size()) + " present");
  }
  return Status::OK();
}

Status ParseBatchHeader(std::string_view bytes, BatchHeader* h) {
  RUNNEL_RETURN_IF_ERROR(PeekBatchHeader(bytes, h));
  if (h->total_size() != bytes.size()) {
    return Status::Corruption(
        Fmt("batch declares ", static_cast<int64_t>(h->total_size()), " bytes but ") +
        std::to_string(bytes.size()) + " were given");
  }
  if (h->magic != kRecordBatchMagic) {
    return Status::Corruption(Fmt("unsupported magic byte ", h->magic, " (expected 2)"));
  }
  const uint32_t crc = crc32c::Value(bytes.data() + L::kAttributes, bytes.size() - L::kAttributes);
  if (crc != h->crc) {
    return Status::Corruption(Fmt("CRC mismatch: stored ", h->crc, ", computed ") +
                              std::to_string(crc));
  }
  return Status::OK();
}

namespace {

// Checks the header of one batch and yields its uncompressed records section: a view into
// `bytes`, or into `*storage` when the batch is compressed.
Status OpenRecords(std::string_view bytes, const DecodeLimits& limits, BatchHeader* h,
                   std::string* storage, std::string_view* records) {
  RUNNEL_RETURN_IF_ERROR(ParseBatchHeader(bytes, h));
  if (h->record_count <= 0) {
    return Status::Corruption(Fmt("batch has an invalid record count ", h->record_count));
  }
  if (h->last_offset_delta != h->record_count - 1) {
    return Status::Corruption(
        Fmt("last offset delta ", h->last_offset_delta, " does not match record count ") +
        std::to_string(h->record_count));
  }
  *records = bytes.substr(kBatchHeaderSize);
  switch (h->compression()) {
    case Compression::kNone:
      break;
    case Compression::kGzip:
    case Compression::kSnappy:
    case Compression::kLz4:
    case Compression::kZstd:
      storage->clear();
      RUNNEL_RETURN_IF_ERROR(
          Decompress(h->compression(), *records, limits.max_uncompressed_bytes, storage));
      *records = *storage;
      break;
    default:
      return Status::Corruption(
          Fmt("invalid compression attribute ", h->attributes & kAttrCompressionMask));
  }
  if (static_cast<size_t>(h->record_count) > records->size() / kMinRecordSize) {
    return Status::Corruption(Fmt("batch declares ", h->record_count, " records in ") +
                              std::to_string(records->size()) + " bytes");
  }
  return Status::OK();
}

}  // namespace

Status ForEachRecord(std::string_view bytes, const DecodeLimits& limits, BatchHeader* header,
                     const std::function<void(const Record&)>& fn) {
  BatchHeader h;
  std::string storage;
  std::string_view records;
  RUNNEL_RETURN_IF_ERROR(OpenRecords(bytes, limits, &h, &storage, &records));
  if (header) *header = h;
  return ParseRecords(records, h, fn);
}

Result<DecodedBatch> DecodedBatch::Decode(std::string_view bytes, const DecodeLimits& limits) {
  DecodedBatch out;
  // Records borrow from the decompression buffer, so it lives on the heap and moves with `out`.
  out.decompressed_ = std::make_unique<std::string>();
  std::string_view records;
  RUNNEL_RETURN_IF_ERROR(
      OpenRecords(bytes, limits, &out.header_, out.decompressed_.get(), &records));
  // Grow as records parse rather than trusting the declared count for a huge reservation.
  out.records_.reserve(std::min<size_t>(static_cast<size_t>(out.header_.record_count), 4096));
  RUNNEL_RETURN_IF_ERROR(
      ParseRecords(records, out.header_, [&](const Record& r) { out.records_.push_back(r); }));
  return out;
}

RecordBatchBuilder::RecordBatchBuilder(BatchBuilderOptions options) : options_(options) {}

void RecordBatchBuilder::Reset() {
  records_.clear();
  count_ = 0;
  base_timestamp_ = 0;
  max_timestamp_ = 0;
}

void RecordBatchBuilder::Add(int64_t timestamp_ms, std::optional<std::string_view> key,
                             std::optional<std::string_view> value,
                             std::span<const RecordHeader> headers) {
  std::string encoded_headers;
  for (const RecordHeader& h : headers) {
    PutSignedVarint64(&encoded_headers, static_cast<int64_t>(h.key.size()));
    encoded_headers.append(h.key);
    if (h.value) {
      PutSignedVarint64(&encoded_headers, static_cast<int64_t>(h.value->size()));
      encoded_headers.append(*h.value);
    } else {
      PutSignedVarint64(&encoded_headers, -1);
    }
  }
  AddEncoded(timestamp_ms, key, value, encoded_headers, static_cast<int32_t>(headers.size()));
}

void RecordBatchBuilder::AddCopy(const Record& record) {
  AddEncoded(record.timestamp, record.key, record.value, record.headers_data, record.header_count);
}

void RecordBatchBuilder::AddEncoded(int64_t timestamp_ms, std::optional<std::string_view> key,
                                    std::optional<std::string_view> value,
                                    std::string_view headers_data, int32_t header_count) {
  if (count_ == 0) {
    base_timestamp_ = timestamp_ms;
    max_timestamp_ = timestamp_ms;
  }
  max_timestamp_ = std::max(max_timestamp_, timestamp_ms);
  const int64_t ts_delta = timestamp_ms - base_timestamp_;
  const int64_t key_len = key ? static_cast<int64_t>(key->size()) : -1;
  const int64_t value_len = value ? static_cast<int64_t>(value->size()) : -1;
  const size_t body = 1 + static_cast<size_t>(SignedVarintLength(ts_delta)) +
                      static_cast<size_t>(SignedVarintLength(count_)) +
                      static_cast<size_t>(SignedVarintLength(key_len)) + (key ? key->size() : 0) +
                      static_cast<size_t>(SignedVarintLength(value_len)) +
                      (value ? value->size() : 0) +
                      static_cast<size_t>(SignedVarintLength(header_count)) + headers_data.size();
  const size_t old = records_.size();
  records_.resize(old + kMaxVarint64Bytes + body);
  char* p = records_.data() + old;
  p = EncodeSignedVarint64(p, static_cast<int64_t>(body));
  *p++ = 0;  // record attributes: unused in v2
  p = EncodeSignedVarint64(p, ts_delta);
  p = EncodeSignedVarint64(p, count_);
  p = EncodeSignedVarint64(p, key_len);
  if (key) p = std::copy(key->begin(), key->end(), p);
  p = EncodeSignedVarint64(p, value_len);
  if (value) p = std::copy(value->begin(), value->end(), p);
  p = EncodeSignedVarint64(p, header_count);
  p = std::copy(headers_data.begin(), headers_data.end(), p);
  records_.resize(static_cast<size_t>(p - records_.data()));
  ++count_;
}

std::string RecordBatchBuilder::Build() {
  std::string out;
  if (options_.compression == Compression::kNone) {
    out.reserve(kBatchHeaderSize + records_.size());
  }
  out.resize(kBatchHeaderSize);
  Compress(options_.compression, records_, &out);
  char* p = out.data();
  EncodeFixed64BE(p + L::kBaseOffset, 0);
  EncodeFixed32BE(p + L::kBatchLength, static_cast<uint32_t>(out.size() - L::kLogOverhead));
  EncodeFixed32BE(p + L::kPartitionLeaderEpoch, static_cast<uint32_t>(-1));
  p[L::kMagic] = kRecordBatchMagic;
  EncodeFixed16BE(p + L::kAttributes, static_cast<uint16_t>(options_.compression));
  EncodeFixed32BE(p + L::kLastOffsetDelta, static_cast<uint32_t>(count_ - 1));
  EncodeFixed64BE(p + L::kBaseTimestamp, static_cast<uint64_t>(base_timestamp_));
  EncodeFixed64BE(p + L::kMaxTimestamp, static_cast<uint64_t>(max_timestamp_));
  EncodeFixed64BE(p + L::kProducerId, static_cast<uint64_t>(options_.producer_id));
  EncodeFixed16BE(p + L::kProducerEpoch, static_cast<uint16_t>(options_.producer_epoch));
  EncodeFixed32BE(p + L::kBaseSequence, static_cast<uint32_t>(options_.base_sequence));
  EncodeFixed32BE(p + L::kRecordCount, static_cast<uint32_t>(count_));
  EncodeFixed32BE(p + L::kCrc, crc32c::Value(p + L::kAttributes, out.size() - L::kAttributes));
  Reset();
  return out;
}

void SetBatchBaseOffset(std::string& batch, int64_t base_offset) {
  EncodeFixed64BE(batch.data() + L::kBaseOffset, static_cast<uint64_t>(base_offset));
}

void SetBatchProducer(std::string& batch, int64_t producer_id, int16_t producer_epoch,
                      int32_t base_sequence) {
  char* p = batch.data();
  EncodeFixed64BE(p + L::kProducerId, static_cast<uint64_t>(producer_id));
  EncodeFixed16BE(p + L::kProducerEpoch, static_cast<uint16_t>(producer_epoch));
  EncodeFixed32BE(p + L::kBaseSequence, static_cast<uint32_t>(base_sequence));
  EncodeFixed32BE(p + L::kCrc, crc32c::Value(p + L::kAttributes, batch.size() - L::kAttributes));
}

}  // namespace runnel
