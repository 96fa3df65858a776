// Native handlers for administration: topics, dead letters, group listing and deletion, record
// status and the stats document.
#include "native_impl.h"

namespace runnel::native {

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
        proto::DescribeGroupResponse resp;
        resp.name = r->name;
        resp.mode = static_cast<proto::GroupModeWire>(r->mode);
        resp.generation = r->generation;
        if (r->mode == storage::GroupMode::kQueue) resp.config = r->config.ToList();
        for (const auto& p : r->partitions) {
          resp.partitions.push_back({p.tp.topic, p.tp.partition.value(), p.position.value(),
                                     p.log_end.value(), p.lag, p.pending,
                                     p.oldest_pending_age_ms});
        }
        for (const auto& ci : r->consumers)
          resp.consumers.push_back({ci.consumer, ci.pending, ci.idle_ms, ToWire(ci.assignment)});
        const auto& k = r->counters;
        resp.counters = {k.deliveries, k.redeliveries, k.acks, k.nacks, k.rejects,
                         k.dead_lettered, k.ack_latency_ms_total};
        Reply(c, Status::OK(), &resp);
      });
    case Api::kDeleteGroup:
      return WithRequest<proto::DeleteGroupRequest>(c, [&](proto::DeleteGroupRequest& req) {
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
    default:
      ReplyCode<proto::EmptyResponse>(c, ErrorCode::kUnknownApi,
                                      "unknown api " + std::to_string(c->header.api), nullptr);
  }
}

}  // namespace runnel::native
