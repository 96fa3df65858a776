// Native handlers for consumer groups: stream groups (join, heartbeat, leave, offsets) and queue
// groups (create, deliver, ack, nack, reject, extend, claim, pending list).
#include "native_impl.h"

namespace runnel::native {
namespace {

proto::DeliveredRecordWire ToWire(storage::DeliveredRecord r) {
  proto::DeliveredRecordWire w;
  w.partition = r.partition.value();
  w.offset = r.offset.value();
  w.timestamp_ms = r.timestamp_ms;
  w.key = std::move(r.key);
  w.value = std::move(r.value);
  for (auto& [k, v] : r.headers) w.headers.push_back({std::move(k), std::move(v)});
  w.deliveries = r.deliveries;
  w.lock_until_ms = r.lock_until_ms;
  return w;
}

std::vector<storage::RecordRef> ToRefs(const std::vector<proto::RecordRefWire>& refs) {
  std::vector<storage::RecordRef> out;
  out.reserve(refs.size());
  for (const auto& r : refs) out.push_back({Partition(r.partition), Offset(r.offset)});
  return out;
}

}  // namespace

std::vector<proto::TopicPartitionRef> ToWire(const std::vector<storage::TopicPartition>& tps) {
  std::vector<proto::TopicPartitionRef> out;
  for (const auto& tp : tps) out.push_back({tp.topic, tp.partition.value()});
  return out;
}

void NativeFrontEnd::Impl::GroupRequest(const CallPtr& c) {
  switch (static_cast<Api>(c->header.api)) {
    case Api::kJoinGroup:
      return WithRequest<proto::JoinGroupRequest>(c, [&](proto::JoinGroupRequest& req) {
        auto m = groups().Join(req.group, req.member_id, req.topics, req.session_timeout_ms);
        if (!m.ok()) return Reply<proto::MembershipResponse>(c, m.status(), nullptr);
        proto::MembershipResponse resp{m->member_id, m->generation, ToWire(m->assignment)};
        Reply(c, Status::OK(), &resp);
      });
    case Api::kHeartbeat:
      return WithRequest<proto::HeartbeatRequest>(c, [&](proto::HeartbeatRequest& req) {
        auto m = groups().Heartbeat(req.group, req.member_id);
        if (!m.ok()) return Reply<proto::MembershipResponse>(c, m.status(), nullptr);
        proto::MembershipResponse resp{m->member_id, m->generation, ToWire(m->assignment)};
        Reply(c, Status::OK(), &resp);
      });
    case Api::kLeaveGroup:
      return WithRequest<proto::LeaveGroupRequest>(c, [&](proto::LeaveGroupRequest& req) {
        ReplyStatus(c, groups().Leave(req.group, req.member_id));
      });
    case Api::kCommitOffsets:
      return WithRequest<proto::CommitOffsetsRequest>(c, [&](proto::CommitOffsetsRequest& req) {
        std::vector<storage::OffsetCommit> offsets;
        for (auto& o : req.offsets) {
          offsets.push_back(
              {{o.topic, Partition(o.partition)}, Offset(o.offset), std::move(o.metadata)});
        }
        // An admin reset (no member) of a Kafka group waits until it has no live members.
        if (req.member_id.empty() && req.generation == -1) {
          if (Status busy = broker_.CheckGroupIdle(req.group); !busy.ok())
            return ReplyStatus(c, busy);
        }
        // The callback runs on the committer thread: encoding and handing the bytes to the
        // connection is quick and never calls back into the store.
        groups().CommitOffsetsAsync(req.group, req.member_id, req.generation, offsets,
                                    [this, c](Status s) { ReplyStatus(c, s); });
      });
    case Api::kFetchOffsets:
      return WithRequest<proto::FetchOffsetsRequest>(c, [&](proto::FetchOffsetsRequest& req) {
        std::vector<storage::TopicPartition> tps;
        for (const auto& p : req.partitions) tps.push_back({p.topic, Partition(p.partition)});
        auto r = groups().FetchOffsets(req.group, tps);
        if (!r.ok()) return Reply<proto::FetchOffsetsResponse>(c, r.status(), nullptr);
        proto::FetchOffsetsResponse resp;
        for (size_t i = 0; i < tps.size() && i < r->size(); ++i) {
          const auto& o = (*r)[i];
          resp.offsets.push_back(
              {tps[i].topic, tps[i].partition.value(), o.offset.value(), o.metadata, o.commit_ms});
        }
        Reply(c, Status::OK(), &resp);
      });
    case Api::kCreateQueueGroup:
      return WithRequest<proto::CreateQueueGroupRequest>(
          c, [&](proto::CreateQueueGroupRequest& req) {
            storage::GroupConfig cfg;
            for (const auto& [k, v] : req.config) {
              if (Status s = cfg.Set(k, v); !s.ok()) return ReplyStatus(c, s);
            }
            storage::StartPosition start;
            switch (req.start) {
              case proto::StartKind::kEarliest:
                start = storage::StartPosition::Earliest();
                break;
              case proto::StartKind::kLatest:
                start = storage::StartPosition::Latest();
                break;
              case proto::StartKind::kOffset:
                start = storage::StartPosition::AtOffset(req.start_value);
                break;
              case proto::StartKind::kTimestamp:
                start = storage::StartPosition::AtTime(req.start_value);
                break;
              default:
                return ReplyStatus(c, Status::InvalidArgument("unknown start position kind"));
            }
            broker_.ForgetGroup(req.group);
            ReplyStatus(c, groups().CreateQueueGroup(req.group, cfg, start));
          });
    case Api::kDeliver:
      return WithRequest<proto::DeliverRequest>(c, [&](proto::DeliverRequest& req) {
        broker::DeliverSpec spec{std::move(req.group), std::move(req.consumer), req.max_records,
                                 req.max_bytes, req.max_wait_ms};
        broker_.Deliver(std::move(spec),
                        [this, c](const std::string& topic,
                                  Result<std::vector<storage::DeliveredRecord>> records) {
                          if (!records.ok())
                            return Reply<proto::DeliverResponse>(c, records.status(), nullptr);
                          proto::DeliverResponse resp;
                          resp.topic = topic;
                          resp.records.reserve(records->size());
                          for (auto& r : *records) resp.records.push_back(ToWire(std::move(r)));
                          Reply(c, Status::OK(), &resp);
                        });
      });
    // Settles and claims answer from the committer thread once their fsync is done (see
    // Groups::AckAsync): encoding the reply and handing it to the connection is quick and never
    // calls back into the store, and no worker waits on the disk.
    case Api::kAck:
      return WithRequest<proto::AckRequest>(c, [&](proto::AckRequest& req) {
        groups().AckAsync(req.group, req.consumer, ToRefs(req.refs),
                          [this, c](Status s) { ReplyStatus(c, s); });
      });
    case Api::kNack:
      return WithRequest<proto::NackRequest>(c, [&](proto::NackRequest& req) {
        groups().NackAsync(req.group, req.consumer, ToRefs(req.refs), req.delay_ms,
                           [this, c](Status s) { ReplyStatus(c, s); });
      });
    case Api::kReject:
      return WithRequest<proto::RejectRequest>(c, [&](proto::RejectRequest& req) {
        groups().RejectAsync(req.group, req.consumer, ToRefs(req.refs), req.reason,
                             [this, c](Status s) { ReplyStatus(c, s); });
      });
    case Api::kExtend:
      return WithRequest<proto::ExtendRequest>(c, [&](proto::ExtendRequest& req) {
        groups().ExtendAsync(req.group, req.consumer, ToRefs(req.refs),
                             [this, c](Result<int64_t> r) {
                               if (!r.ok())
                                 return Reply<proto::ExtendResponse>(c, r.status(), nullptr);
                               proto::ExtendResponse resp{*r};
                               Reply(c, Status::OK(), &resp);
                             });
      });
    case Api::kClaim:
      return WithRequest<proto::ClaimRequest>(c, [&](proto::ClaimRequest& req) {
        auto topic = broker_.GroupTopic(req.group);
        groups().ClaimAsync(req.group, req.consumer, req.min_idle_ms, req.max_records,
                            [this, c, topic = topic.ok() ? *topic : std::string()](
                                Result<std::vector<storage::DeliveredRecord>> r) {
                              if (!r.ok())
                                return Reply<proto::DeliverResponse>(c, r.status(), nullptr);
                              proto::DeliverResponse resp;
                              resp.topic = topic;
                              for (auto& rec : *r) resp.records.push_back(ToWire(std::move(rec)));
                              Reply(c, Status::OK(), &resp);
                            });
      });
    case Api::kListPending:
      static_assert(static_cast<int>(storage::PendingKind::kParked) ==
                    static_cast<int>(proto::PendingKindWire::kParked));
      return WithRequest<proto::ListPendingRequest>(c, [&](proto::ListPendingRequest& req) {
        storage::PendingQuery q;
        q.consumer = req.consumer;
        q.min_idle_ms = req.min_idle_ms;
        if (req.partition >= 0) q.partition = req.partition;
        q.max = static_cast<size_t>(std::max(0, req.max));
        auto r = groups().ListPending(req.group, q);
        if (!r.ok()) return Reply<proto::ListPendingResponse>(c, r.status(), nullptr);
        proto::ListPendingResponse resp;
        if (auto t = broker_.GroupTopic(req.group); t.ok()) resp.topic = *t;
        for (auto& e : *r) {
          resp.entries.push_back(
              {e.partition.value(), e.offset.value(), static_cast<proto::PendingKindWire>(e.kind),
               std::move(e.consumer), e.deliveries, e.idle_ms, e.due_ms, e.first_delivery_ms});
        }
        Reply(c, Status::OK(), &resp);
      });
    default:
      ReplyCode<proto::EmptyResponse>(c, ErrorCode::kUnknownApi,
                                      "unknown api " + std::to_string(c->header.api), nullptr);
  }
}

}  // namespace runnel::native
