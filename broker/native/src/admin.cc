// Native handlers for administration: topics, dead letters, group listing and deletion, record
// status and the stats document.
#include "native_impl.h"

namespace runnel::native {
namespace {

// A group's description; an external group's live membership (Kafka's) supplies its state,
// assignor, members and their assigned partitions.
proto::DescribeGroupResponse DescriptionToWire(const storage::GroupDescription& d,
                                               const std::optional<broker::LiveGroup>& live,
                                               storage::LogStore& store) {
  proto::DescribeGroupResponse resp;
  resp.name = d.name;
  resp.mode = static_cast<proto::GroupModeWire>(d.mode);
  resp.generation = d.generation;
  if (d.mode == storage::GroupMode::kQueue) resp.config = d.config.ToList();
  for (const auto& p : d.partitions) {
    resp.partitions.push_back({p.tp.topic, p.tp.partition.value(), p.position.value(),
                               p.log_end.value(), p.lag, p.pending, p.oldest_pending_age_ms});
  }
  for (const auto& ci : d.consumers)
    resp.consumers.push_back({ci.consumer, ci.pending, ci.idle_ms, ToWire(ci.assignment), {}, {}, {}});
  const auto& k = d.counters;
  resp.counters = {k.deliveries, k.redeliveries, k.acks, k.nacks, k.rejects,
                   k.dead_lettered, k.ack_latency_ms_total};
  if (d.mode == storage::GroupMode::kQueue) return resp;
  resp.protocol = std::string(storage::GroupProtocolName(d.protocol));
  if (d.protocol == storage::GroupProtocol::kNative) {
    resp.state = d.consumers.empty() ? "Empty" : "Stable";
    return resp;
  }
  resp.state = "Empty";
  resp.protocol_type = "consumer";
  if (!live) return resp;
  resp.state = live->state;
  resp.protocol_type = live->protocol_type;
  resp.assignor = live->assignor;
  resp.generation = live->generation;
  for (const auto& m : live->members) {
    resp.consumers.push_back(
        {m.member_id, 0, 0, ToWire(m.assignment), m.client_id, m.host, m.instance_id});
    // Assigned partitions without a committed offset yet are shown too (lag from the start).
    for (const auto& tp : m.assignment) {
      const bool listed = std::any_of(resp.partitions.begin(), resp.partitions.end(), [&](const auto& p) {
        return p.topic == tp.topic && p.partition == tp.partition.value();
      });
      if (!listed) {
        proto::PartitionLagWire p;
        p.topic = tp.topic;
        p.partition = tp.partition.value();
        p.position = -1;
        auto end = store.ListOffset(tp.topic, tp.partition, storage::OffsetQuery::Latest());
        auto start = store.ListOffset(tp.topic, tp.partition, storage::OffsetQuery::Earliest());
        if (end.ok()) p.log_end = end->value();
        if (end.ok() && start.ok()) p.lag = end->value() - start->value();
        resp.partitions.push_back(std::move(p));
      }
    }
  }
  return resp;
}

}  // namespace

void NativeFrontEnd::Impl::AdminRequest(const CallPtr& c) {
  switch (static_cast<Api>(c->header.api)) {
    case Api::kCreateTopic:
      return WithRequest<proto::CreateTopicRequest>(c, [&](proto::CreateTopicRequest& req) {
        ReplyStatus(c, broker_.CreateTopic(req.name, req.partitions, req.config));
      });
    case Api::kDeleteTopic:
      return WithRequest<proto::DeleteTopicRequest>(c, [&](proto::DeleteTopicRequest& req) {
        ReplyStatus(c, broker_.DeleteTopic(req.name));
      });
    case Api::kAlterTopic:
      return WithRequest<proto::AlterTopicRequest>(c, [&](proto::AlterTopicRequest& req) {
        ReplyStatus(c, broker_.AlterTopic(req.name, req.config, req.new_partitions));
      });
    case Api::kListDeadLetters:
      return WithRequest<proto::ListDeadLettersRequest>(c, [&](proto::ListDeadLettersRequest& req) {
        auto r = groups().ListDeadLetters(req.group, static_cast<size_t>(std::max(0, req.max)),
                                          Offset(std::max<int64_t>(0, req.from_offset)));
        if (!r.ok()) return Reply<proto::ListDeadLettersResponse>(c, r.status(), nullptr);
        proto::ListDeadLettersResponse resp;
        for (auto& d : *r) {
          resp.dead_letters.push_back({d.dlq_partition.value(), d.dlq_offset.value(),
                                       std::move(d.source_topic), d.source_partition.value(),
                                       d.source_offset.value(), d.deliveries, std::move(d.reason),
                                       d.first_failure_ms, d.last_failure_ms, std::move(d.key),
                                       std::move(d.value)});
        }
        Reply(c, Status::OK(), &resp);
      });
    case Api::kRedrive:
      return WithRequest<proto::RedriveRequest>(c, [&](proto::RedriveRequest& req) {
        storage::RedriveSpec spec{req.to_topic, req.reason, Offset(req.from), Offset(req.to)};
        auto r = groups().Redrive(req.group, spec);
        if (!r.ok()) return Reply<proto::RedriveResponse>(c, r.status(), nullptr);
        proto::RedriveResponse resp{*r};
        Reply(c, Status::OK(), &resp);
      });
    case Api::kPurgeDeadLetters:
      return WithRequest<proto::PurgeDeadLettersRequest>(
          c, [&](proto::PurgeDeadLettersRequest& req) {
            ReplyStatus(c, groups().PurgeDeadLetters(req.group));
          });
    case Api::kListGroups:
      return WithRequest<proto::ListGroupsRequest>(c, [&](auto&) {
        proto::ListGroupsResponse resp{groups().ListGroups()};
        if (c->principal) {
          std::erase_if(resp.groups,
                        [&](const std::string& g) { return !c->principal->SeesGroup(g); });
        }
        Reply(c, Status::OK(), &resp);
      });
    case Api::kDescribeGroup:
      return WithRequest<proto::DescribeGroupRequest>(c, [&](proto::DescribeGroupRequest& req) {
        auto r = groups().DescribeGroup(req.group);
        if (!r.ok()) return Reply<proto::DescribeGroupResponse>(c, r.status(), nullptr);
        proto::DescribeGroupResponse resp = DescriptionToWire(*r, broker_.DescribeLiveGroup(r->name, r->protocol), broker_.store());
        Reply(c, Status::OK(), &resp);
      });
    case Api::kDeleteGroup:
      return WithRequest<proto::DeleteGroupRequest>(c, [&](proto::DeleteGroupRequest& req) {
        if (Status busy = broker_.CheckGroupIdle(req.group); !busy.ok()) return ReplyStatus(c, busy);
        broker_.ForgetGroup(req.group);
        ReplyStatus(c, groups().DeleteGroup(req.group));
      });
    case Api::kRecordStatus:
      return WithRequest<proto::RecordStatusRequest>(c, [&](proto::RecordStatusRequest& req) {
        auto r = req.by_dedup_key
                     ? groups().StatusByDedupKey(req.topic, req.dedup_key)
                     : groups().StatusOf(req.topic, Partition(req.partition), Offset(req.offset));
        if (!r.ok()) return Reply<proto::RecordStatusResponse>(c, r.status(), nullptr);
        proto::RecordStatusResponse resp;
        for (const auto& s : *r) {
          resp.groups.push_back({s.group, static_cast<proto::RecordStateWire>(s.state), s.consumer,
                                 s.deliveries, s.lock_until_ms, s.dlq_partition.value(),
                                 s.dlq_offset.value(), s.reason});
        }
        Reply(c, Status::OK(), &resp);
      });
    case Api::kStats:
      return WithRequest<proto::StatsRequest>(c, [&](auto&) {
        proto::StatsResponse resp{broker_.StatsJson()};
        Reply(c, Status::OK(), &resp);
      });
    case Api::kBackup:
      return WithRequest<proto::BackupRequest>(c, [&](proto::BackupRequest& req) {
        auto r = broker_.Backup(req.directory);
        if (!r.ok()) return Reply<proto::BackupResponse>(c, r.status(), nullptr);
        proto::BackupResponse resp{static_cast<int64_t>(r->bytes), r->files};
        Reply(c, Status::OK(), &resp);
      });
    default:
      ReplyCode<proto::EmptyResponse>(c, ErrorCode::kUnknownApi,
                                      "unknown api " + std::to_string(c->header.api), nullptr);
  }
}

}  // namespace runnel::native
