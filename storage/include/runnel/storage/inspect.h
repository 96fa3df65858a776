// DataDirInspector: a read-only, offline view of a stopped broker's data directory, for
// `runnelctl dump` (the kafka-dump-log of Runnel) and `runnelctl verify`. It opens RocksDB
// read-only, never writes and refuses a directory whose store another process has open.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "runnel/common/result.h"
#include "runnel/storage/format.h"

namespace runnel::storage {

struct InspectedPartition {
  int32_t partition = 0;
  uint32_t uid = 0;
  format::PartitionValue state;  // log start, next offset, byte counters as persisted
};

struct InspectedTopic {
  std::string name;
  uint32_t topic_id = 0;
  int64_t created_ms = 0;
  std::vector<std::pair<std::string, std::string>> config;  // explicit overrides
  std::vector<InspectedPartition> partitions;
};

struct InspectedOffset {
  std::string topic;  // empty when the topic id is unknown (deleted topic)
  int32_t partition = 0;
  format::OffsetValue value;  // committed offset (stream) or delivery cursor (queue)
};

struct InspectedGroup {
  std::string name;
  format::GroupValue value;
  std::vector<InspectedOffset> offsets;
  int64_t pending = 0;       // pending entries
  int64_t dead_letters = 0;  // dead-letter index entries
};

// One stored batch and the result of checking it: header, CRC and a full decode of its records
// (decompression included).
struct InspectedBatch {
  int64_t base_offset = 0;  // from the key
  int64_t last_offset = -1;
  int32_t records = 0;
  size_t bytes = 0;
  int64_t max_timestamp = -1;
  int64_t producer_id = -1;
  int16_t producer_epoch = -1;
  int32_t base_sequence = -1;
  std::string compression;
  Status check;  // OK, or what is wrong with the batch
};

// Not thread-safe.
class DataDirInspector {
 public:
  // IOError naming the holder when another process has the store open (a live runneld);
  // NotFound when `data_dir` holds no store; Corruption naming the WAL file and byte when the
  // store's WAL is damaged before its end (what LogStore::Open refuses too).
  static Result<std::unique_ptr<DataDirInspector>> Open(const std::string& data_dir);
  virtual ~DataDirInspector() = default;

  virtual const std::vector<InspectedTopic>& Topics() const = 0;
  virtual Result<std::vector<InspectedGroup>> Groups() const = 0;
  // Visits the stored batches of a partition in offset order until `fn` returns false.
  virtual Status ForEachBatch(uint32_t uid,
                              const std::function<bool(const InspectedBatch&)>& fn) const = 0;
};

}  // namespace runnel::storage
