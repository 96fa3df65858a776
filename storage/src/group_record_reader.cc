// GroupRecordReader: the records a queue group delivers or dead-letters, read through a
// one-batch cache per partition.
#include "group_manager.h"
#include "log_store_impl.h"

namespace runnel::storage {

LoadedRecord CopyRecord(const Record& r) {
  LoadedRecord out;
  out.timestamp_ms = r.timestamp;
  if (r.key) out.key = std::string(*r.key);
  if (r.value) out.value = std::string(*r.value);
  for (const RecordHeader& h : r.Headers()) {
    out.headers.emplace_back(
        std::string(h.key),
        h.value ? std::optional<std::string>(std::string(*h.value)) : std::nullopt);
  }
  out.size = (r.key ? r.key->size() : 0) + (r.value ? r.value->size() : 0) + r.headers_data.size();
  return out;
}

GroupRecordReader::GroupRecordReader(const LogStoreImpl& store, std::string topic)
    : store_(store), topic_(std::move(topic)) {}

Result<LoadedRecord> GroupRecordReader::Get(int32_t p, int64_t offset) {
  RUNNEL_RETURN_IF_ERROR(Load(p, offset));
  const Cached& c = cache_[p];
  return CopyRecord(c.batch->records()[static_cast<size_t>(offset - c.base)]);
}

Status GroupRecordReader::Load(int32_t p, int64_t offset) {
  Cached& c = cache_[p];
  if (c.batch && offset >= c.base && offset <= c.last) return Status::OK();
  RUNNEL_ASSIGN_OR_RETURN(ReadResult r, store_.Read(topic_, Partition(p), Offset(offset), 1));
  if (r.batch_count == 0) {
    return Status::OutOfRange("offset " + std::to_string(offset) + " is at the end of the log");
  }
  BatchHeader h;
  RUNNEL_RETURN_IF_ERROR(PeekBatchHeader(r.records, &h));
  c.batch.reset();
  c.bytes = std::make_unique<std::string>(std::move(r.records));
  c.bytes->resize(h.total_size());
  auto decoded =
      DecodedBatch::Decode(*c.bytes, DecodeLimits{store_.options_.max_uncompressed_batch_bytes});
  if (!decoded.ok()) return decoded.status();
  c.batch.emplace(std::move(decoded).value());
  c.base = h.base_offset;
  c.last = h.last_offset();
  if (offset < c.base || offset > c.last) {
    return Status::OutOfRange("offset " + std::to_string(offset) + " is no longer stored");
  }
  return Status::OK();
}

Status GroupRecordReader::Scan(int32_t p, int64_t from,
                               const std::function<bool(const Record&)>& fn) {
  while (true) {
    Status s = Load(p, from);
    if (s.IsOutOfRange()) return Status::OK();  // reached the high watermark
    RUNNEL_RETURN_IF_ERROR(s);
    const Cached& c = cache_[p];
    for (const Record& r : c.batch->records()) {
      if (r.offset < from) continue;
      if (!fn(r)) return Status::OK();
    }
    from = c.last + 1;
  }
}

}  // namespace runnel::storage
