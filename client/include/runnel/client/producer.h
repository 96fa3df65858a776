// Producer: batches records per partition (linger + batch size), compresses with LZ4, partitions
// keys with murmur2 exactly like Kafka's Java client, and is idempotent by default: retries keep
// their sequence numbers, so a batch retried after a lost response or a broker restart is stored
// once.
#pragma once

#include <cstdint>
#include <functional>
#include <future>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "runnel/client/connection.h"
#include "runnel/common/record_batch.h"
#include "runnel/common/result.h"

namespace runnel::client {

// Kafka's murmur2 (seed 0x9747b28c) and its key partitioner: (murmur2(key) & 0x7fffffff) % n.
int32_t Murmur2(std::string_view data);
int32_t PartitionForKey(std::string_view key, int32_t partitions);

// When the broker acknowledges. Same values as storage::AckMode (on the wire).
enum class Acks : uint8_t { kNone = 0, kWritten = 1, kDurable = 2 };

struct ProducerOptions {
  Acks acks = Acks::kDurable;
  int64_t linger_ms = 2;              // wait this long for a batch to fill
  size_t batch_bytes = 256 * 1024;    // a partition's batch is sent when it holds this much
  Compression compression = Compression::kLz4;
  bool idempotence = true;            // stores each record once despite retries
  int max_in_flight_per_partition = 5;
  size_t max_request_bytes = 8u << 20;
  int64_t request_timeout_ms = 30'000;
  int64_t delivery_timeout_ms = 120'000;  // give up on a record (Timeout) after this long
  int64_t retry_backoff_ms = 50;
  size_t buffer_memory = 64u << 20;  // records waiting to be acknowledged
  bool block_on_buffer_full = true;  // else Send fails with Busy at once
  int64_t max_block_ms = 60'000;     // Send waits at most this long for buffer space / metadata
};

struct ProducerRecord {
  std::string topic;
  std::optional<std::string> key;
  std::optional<std::string> value;
  std::vector<std::pair<std::string, std::optional<std::string>>> headers;
  std::optional<int32_t> partition;  // explicit; else by key; else sticky round-robin
  int64_t timestamp_ms = 0;          // 0: now
};

struct RecordMetadata {
  std::string topic;
  int32_t partition = 0;
  int64_t offset = -1;     // -1 with acks=none
  bool duplicate = false;  // dropped by the topic's dedup window; offset is the original's
};

using SendCallback = std::function<void(Result<RecordMetadata>)>;

// Thread-safe: Send, Flush and Close may be called from any thread. Callbacks run on the
// producer's I/O threads, in send order per partition; keep them short and do not call Flush or
// Close from them.
class Producer {
 public:
  // Fetches a producer id when idempotence is on (IOError if the broker is unreachable).
  static Result<std::unique_ptr<Producer>> Create(std::shared_ptr<Connection> connection,
                                                  const ProducerOptions& options = {});
  virtual ~Producer() = default;  // Close()

  virtual void Send(ProducerRecord record, SendCallback done) = 0;
  std::future<Result<RecordMetadata>> Send(ProducerRecord record);

  // Sends everything buffered and waits until each record completed (or the timeout passed:
  // Timeout; -1 waits forever).
  virtual Status Flush(int64_t timeout_ms = -1) = 0;
  // Flushes, then stops. Later Sends fail with Shutdown.
  virtual void Close() = 0;

  struct Stats {
    uint64_t records_sent = 0;
    uint64_t batches_sent = 0;
    uint64_t retries = 0;
    uint64_t errors = 0;
    int64_t producer_id = -1;
  };
  virtual Stats GetStats() const = 0;
};

}  // namespace runnel::client
