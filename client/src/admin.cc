#include "runnel/client/admin.h"

namespace runnel::client {

Status Admin::CreateTopic(const std::string& name, int32_t partitions,
                          const proto::ConfigEntries& config) {
  return CallStatus(*conn_, proto::CreateTopicRequest{name, partitions, config}, timeout_ms_);
}

Status Admin::DeleteTopic(const std::string& name) {
  return CallStatus(*conn_, proto::DeleteTopicRequest{name}, timeout_ms_);
}

Status Admin::AlterTopic(const std::string& name, int32_t new_partitions,
                         const proto::ConfigEntries& config) {
  return CallStatus(*conn_, proto::AlterTopicRequest{name, new_partitions, config}, timeout_ms_);
}

Result<std::vector<proto::TopicMetadata>> Admin::DescribeTopics(
    const std::vector<std::string>& topics) {
  auto r = Call<proto::MetadataResponse>(*conn_, proto::MetadataRequest{topics, false}, timeout_ms_);
  if (!r.ok()) return r.status();
  return std::move(r->topics);
}

Result<int64_t> Admin::ListOffset(const std::string& topic, int32_t partition,
                                  proto::OffsetSpec spec, int64_t timestamp_ms) {
  proto::ListOffsetsRequest req;
  req.partitions.push_back({topic, partition, spec, timestamp_ms});
  auto r = Call<proto::ListOffsetsResponse>(*conn_, std::move(req), timeout_ms_);
  if (!r.ok()) return r.status();
  if (r->partitions.size() != 1) return Status::Corruption("bad list offsets answer");
  if (!r->partitions[0].error.ok()) return r->partitions[0].error.ToStatus();
  return r->partitions[0].offset;
}

Status Admin::CreateQueueGroup(const std::string& group, const std::string& topic,
                               const proto::ConfigEntries& config, proto::StartKind start,
                               int64_t start_value) {
  proto::CreateQueueGroupRequest req{group, config, start, start_value};
  req.config.emplace_back("topic", topic);
  return CallStatus(*conn_, std::move(req), timeout_ms_);
}

Result<std::vector<std::string>> Admin::ListGroups() {
  auto r = Call<proto::ListGroupsResponse>(*conn_, proto::ListGroupsRequest{}, timeout_ms_);
  if (!r.ok()) return r.status();
  return std::move(r->groups);
}

Result<proto::DescribeGroupResponse> Admin::DescribeGroup(const std::string& group) {
  return Call<proto::DescribeGroupResponse>(*conn_, proto::DescribeGroupRequest{group}, timeout_ms_);
}

Status Admin::DeleteGroup(const std::string& group) {
  return CallStatus(*conn_, proto::DeleteGroupRequest{group}, timeout_ms_);
}

Result<std::vector<proto::CommittedOffsetWire>> Admin::FetchOffsets(
    const std::string& group, const std::vector<proto::TopicPartitionRef>& partitions) {
  auto r = Call<proto::FetchOffsetsResponse>(
      *conn_, proto::FetchOffsetsRequest{group, partitions}, timeout_ms_);
  if (!r.ok()) return r.status();
  return std::move(r->offsets);
}

Status Admin::ResetOffsets(const std::string& group,
                           const std::vector<proto::OffsetCommitWire>& offsets) {
  return CallStatus(*conn_, proto::CommitOffsetsRequest{group, "", -1, offsets}, timeout_ms_);
}

Result<proto::ListPendingResponse> Admin::ListPending(const proto::ListPendingRequest& query) {
  return Call<proto::ListPendingResponse>(*conn_, query, timeout_ms_);
}

Result<proto::DeliverResponse> Admin::Claim(const std::string& group, const std::string& consumer,
                                            int64_t min_idle_ms, int32_t max_records) {
  return Call<proto::DeliverResponse>(
      *conn_, proto::ClaimRequest{group, consumer, min_idle_ms, max_records}, timeout_ms_);
}

Result<std::vector<proto::DeadLetterWire>> Admin::ListDeadLetters(const std::string& group,
                                                                  int32_t max,
                                                                  int64_t from_offset) {
  auto r = Call<proto::ListDeadLettersResponse>(
      *conn_, proto::ListDeadLettersRequest{group, max, from_offset}, timeout_ms_);
  if (!r.ok()) return r.status();
  return std::move(r->dead_letters);
}

Result<int64_t> Admin::Redrive(const std::string& group, const proto::RedriveRequest& spec) {
  proto::RedriveRequest req = spec;
  req.group = group;
  auto r = Call<proto::RedriveResponse>(*conn_, std::move(req), timeout_ms_);
  if (!r.ok()) return r.status();
  return r->redriven;
}

Status Admin::PurgeDeadLetters(const std::string& group) {
  return CallStatus(*conn_, proto::PurgeDeadLettersRequest{group}, timeout_ms_);
}

Result<std::vector<proto::RecordStatusWire>> Admin::StatusOf(const std::string& topic,
                                                             int32_t partition, int64_t offset) {
  auto r = Call<proto::RecordStatusResponse>(
      *conn_, proto::RecordStatusRequest{topic, false, partition, offset, ""}, timeout_ms_);
  if (!r.ok()) return r.status();
  return std::move(r->groups);
}

Result<std::vector<proto::RecordStatusWire>> Admin::StatusByDedupKey(const std::string& topic,
                                                                     const std::string& key) {
  auto r = Call<proto::RecordStatusResponse>(
      *conn_, proto::RecordStatusRequest{topic, true, 0, 0, key}, timeout_ms_);
  if (!r.ok()) return r.status();
  return std::move(r->groups);
}

Result<std::string> Admin::Stats() {
  auto r = Call<proto::StatsResponse>(*conn_, proto::StatsRequest{}, timeout_ms_);
  if (!r.ok()) return r.status();
  return std::move(r->json);
}

Result<proto::BackupResponse> Admin::Backup(const std::string& directory) {
  return Call<proto::BackupResponse>(*conn_, proto::BackupRequest{directory}, timeout_ms_);
}

Result<proto::ApiVersionsResponse> Admin::ApiVersions() {
  return Call<proto::ApiVersionsResponse>(*conn_, proto::ApiVersionsRequest{}, timeout_ms_);
}

}  // namespace runnel::client
