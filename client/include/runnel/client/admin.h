// Admin: topics, offsets, groups, dead letters, record status and broker stats, as plain calls.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "runnel/client/connection.h"
#include "runnel/common/protocol.h"

namespace runnel::client {

// Thread-safe (each call is one request on the shared connection). Every call returns the
// broker's error as a Status (NotFound for an unknown topic or group, and so on).
class Admin {
 public:
  explicit Admin(std::shared_ptr<Connection> connection, int64_t timeout_ms = 30'000)
      : conn_(std::move(connection)), timeout_ms_(timeout_ms) {}

  Status CreateTopic(const std::string& name, int32_t partitions,
                     const proto::ConfigEntries& config = {});
  Status DeleteTopic(const std::string& name);
  Status AlterTopic(const std::string& name, int32_t new_partitions,
                    const proto::ConfigEntries& config = {});
  // Every topic when `topics` is empty; per-topic errors are inside the result.
  Result<std::vector<proto::TopicMetadata>> DescribeTopics(const std::vector<std::string>& topics = {});
  Result<int64_t> ListOffset(const std::string& topic, int32_t partition, proto::OffsetSpec spec,
                             int64_t timestamp_ms = 0);

  Status CreateQueueGroup(const std::string& group, const std::string& topic,
                          const proto::ConfigEntries& config = {},
                          proto::StartKind start = proto::StartKind::kEarliest,
                          int64_t start_value = 0);
  Result<std::vector<std::string>> ListGroups();
  Result<proto::DescribeGroupResponse> DescribeGroup(const std::string& group);
  Status DeleteGroup(const std::string& group);
  Result<std::vector<proto::CommittedOffsetWire>> FetchOffsets(
      const std::string& group, const std::vector<proto::TopicPartitionRef>& partitions);
  // Stream group with no live members: sets its committed offsets. Queue group: moves its
  // delivery cursors (like XGROUP SETID); pending entries stay pending.
  Status ResetOffsets(const std::string& group, const std::vector<proto::OffsetCommitWire>& offsets);

  // A queue group's pending entries (like XPENDING), by (partition, offset).
  Result<proto::ListPendingResponse> ListPending(const proto::ListPendingRequest& query);
  // Takes over locked entries idle for at least min_idle_ms for `consumer` (like XCLAIM); the
  // records come back locked to it.
  Result<proto::DeliverResponse> Claim(const std::string& group, const std::string& consumer,
                                       int64_t min_idle_ms, int32_t max_records = 100);

  // Dead letters from DLQ offset `from_offset` on (in every DLQ partition), at most `max`.
  Result<std::vector<proto::DeadLetterWire>> ListDeadLetters(const std::string& group,
                                                             int32_t max = 100,
                                                             int64_t from_offset = 0);
  Result<int64_t> Redrive(const std::string& group, const proto::RedriveRequest& spec);
  Status PurgeDeadLetters(const std::string& group);

  Result<std::vector<proto::RecordStatusWire>> StatusOf(const std::string& topic,
                                                        int32_t partition, int64_t offset);
  Result<std::vector<proto::RecordStatusWire>> StatusByDedupKey(const std::string& topic,
                                                                const std::string& key);
  // The broker's JSON stats document (the same as HTTP /api/v1/stats).
  Result<std::string> Stats();
  // An online backup written by the broker into `directory` on its own host (absolute path;
  // must not exist or be empty): usable as a data directory for runneld --data-dir.
  Result<proto::BackupResponse> Backup(const std::string& directory);
  Result<proto::ApiVersionsResponse> ApiVersions();

 private:
  std::shared_ptr<Connection> conn_;
  int64_t timeout_ms_;
};

}  // namespace runnel::client
