// Consumer: stream mode (Kafka-like: a group assigns partitions, the consumer fetches them in
// order and commits offsets) and queue mode (a queue group delivers records one by one with
// locks; each is acked, nacked with a delay, rejected to the dead-letter topic or extended).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "runnel/client/connection.h"
#include "runnel/common/result.h"

namespace runnel::client {

enum class ConsumerMode { kStream, kQueue };
enum class OffsetReset { kEarliest, kLatest };

struct ConsumerOptions {
  ConsumerMode mode = ConsumerMode::kStream;
  // Stream: the consumer group (empty: no group; every partition of `topics` is read from
  // `auto_offset_reset` and nothing is committed). Queue: the queue group (required).
  std::string group;
  // Stream: the subscription. Queue: the group's topic (one), used when the group is created.
  std::vector<std::string> topics;
  OffsetReset auto_offset_reset = OffsetReset::kEarliest;  // where to start without a commit
  // Stream: start partitions without a committed offset here instead (clamped into the log), or
  // at the first record with a timestamp >= start_timestamp_ms. auto_offset_reset still applies
  // when retention later passes the position.
  std::optional<int64_t> start_offset;
  std::optional<int64_t> start_timestamp_ms;
  // Stream without a group: read only these partitions of `topics` (empty: all).
  std::vector<int32_t> partitions;
  int32_t max_poll_records = 500;
  int32_t fetch_max_bytes = 16 << 20;
  int32_t partition_fetch_max_bytes = 4 << 20;
  int64_t request_timeout_ms = 30'000;

  // Stream groups.
  int64_t session_timeout_ms = 10'000;
  int64_t heartbeat_interval_ms = 1'000;
  bool auto_commit = true;  // commit positions every interval, on rebalance and on Close
  int64_t auto_commit_interval_ms = 1'000;

  // Queue groups.
  std::string consumer_name;  // default: "<hostname>-<pid>-<n>"
  bool create_queue_group = true;  // create the group on first use when it does not exist
  // The new group's settings (storage::GroupConfig keys): lock.timeout.ms, max.deliveries,
  // ordered.keys, message.ttl.ms, dlq.topic, retain.until.acked, and ack.durability ("durable",
  // the default: deliveries and settles are answered after their fsync; "written": after the
  // WAL write, faster, but a power cut may revert them).
  std::vector<std::pair<std::string, std::string>> queue_config;
  OffsetReset queue_start = OffsetReset::kEarliest;
};

struct ConsumerRecord {
  std::string topic;
  int32_t partition = 0;
  int64_t offset = 0;
  int64_t timestamp_ms = 0;
  std::optional<std::string> key;
  std::optional<std::string> value;
  std::vector<std::pair<std::string, std::optional<std::string>>> headers;
  int32_t deliveries = 1;    // queue mode: including this one
  int64_t lock_until_ms = 0;  // queue mode
  const std::string* FindHeader(std::string_view name) const;  // null when absent or null
};

// Not thread-safe: one thread polls and acknowledges (Kafka's rule). Heartbeats run on a
// background thread. Survives broker restarts: failed requests are retried until the poll
// timeout and the connection reconnects.
class Consumer {
 public:
  static Result<std::unique_ptr<Consumer>> Create(std::shared_ptr<Connection> connection,
                                                  const ConsumerOptions& options);
  virtual ~Consumer() = default;  // Close()

  // Waits up to timeout_ms for records. Stream mode joins the group on first use and after a
  // rebalance. Returns an empty vector when nothing arrived; an error only for problems retrying
  // cannot fix (unknown group or topic, invalid options).
  // At most `max_records` records (<= 0: max_poll_records).
  virtual Result<std::vector<ConsumerRecord>> Poll(int64_t timeout_ms, int32_t max_records) = 0;
  Result<std::vector<ConsumerRecord>> Poll(int64_t timeout_ms) { return Poll(timeout_ms, 0); }

  // Stream mode: commits the position after every record returned so far (or the given ones).
  virtual Status Commit() = 0;
  virtual Status Commit(const std::vector<std::pair<proto::TopicPartitionRef, int64_t>>& offsets) = 0;
  // Moves the position of an assigned partition (the next Poll reads from `offset`).
  virtual Status Seek(const proto::TopicPartitionRef& tp, int64_t offset) = 0;
  virtual std::vector<proto::TopicPartitionRef> Assignment() const = 0;
  // The next offset Poll returns for an assigned partition; std::nullopt when not assigned.
  virtual std::optional<int64_t> Position(const proto::TopicPartitionRef& tp) const = 0;
  virtual int32_t Generation() const = 0;
  virtual std::string MemberId() const = 0;

  // Queue mode. Each takes records returned by Poll or Claim. Unlike the rest of the class these
  // five may be called from any thread, concurrently with Poll: each is one request.
  virtual Status Ack(const std::vector<ConsumerRecord>& records) = 0;
  virtual Status Nack(const std::vector<ConsumerRecord>& records, int64_t delay_ms) = 0;
  virtual Status Reject(const std::vector<ConsumerRecord>& records, std::string_view reason) = 0;
  virtual Result<int64_t> Extend(const std::vector<ConsumerRecord>& records) = 0;
  virtual Result<std::vector<ConsumerRecord>> Claim(int64_t min_idle_ms, int32_t max_records) = 0;
  Status Ack(const ConsumerRecord& r) { return Ack(std::vector<ConsumerRecord>{r}); }
  Status Nack(const ConsumerRecord& r, int64_t delay_ms) {
    return Nack(std::vector<ConsumerRecord>{r}, delay_ms);
  }
  Status Reject(const ConsumerRecord& r, std::string_view reason) {
    return Reject(std::vector<ConsumerRecord>{r}, reason);
  }
  virtual const std::string& ConsumerName() const = 0;

  // Stream: commits (auto_commit) and leaves the group so its partitions move at once.
  virtual void Close() = 0;
};

}  // namespace runnel::client
