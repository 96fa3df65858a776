// Kafka consumer groups: the membership APIs (JoinGroup, SyncGroup, Heartbeat, LeaveGroup) over
// the coordinator, offsets (OffsetCommit, OffsetFetch, OffsetDelete) in the store's stream-group
// offsets, and group admin (DescribeGroups, ListGroups, DeleteGroups).
//
// A group id belongs to one protocol for life: a native or queue group of that name answers
// INCONSISTENT_GROUP_PROTOCOL to every Kafka group API but ListGroups (which lists Kafka groups
// only, as kafka-consumer-groups expects).
#include <set>

#include "kafka_impl.h"

namespace runnel::kafka {
namespace {

// Kafka's offset.metadata.max.bytes.
constexpr size_t kMaxOffsetMetadataBytes = 4096;

}  // namespace

Error KafkaFrontEnd::Impl::GroupAccess(const CallPtr& c, const std::string& group,
                                       std::optional<Op> op) {
  if (!c->principal) return Error::kNone;
  const Status verdict = op ? c->principal->OnGroup(*op, group) : c->principal->SeeGroup(group);
  return Check(c, verdict).ok() ? Error::kNone : Error::kGroupAuthorizationFailed;
}

Error KafkaFrontEnd::Impl::StoredGroup(const std::string& group, bool* exists) {
  auto d = broker_.groups().DescribeGroup(group);
  *exists = d.ok();
  if (!d.ok()) return Error::kNone;
  const bool kafka =
      d->mode == storage::GroupMode::kStream && d->protocol == storage::GroupProtocol::kKafka;
  return kafka ? Error::kNone : Error::kInconsistentGroupProtocol;
}

// ---- membership ---------------------------------------------------------------------------------

void KafkaFrontEnd::Impl::JoinGroup(const CallPtr& c, JoinGroupRequest& req) {
  auto reply = [this, c](JoinOutcome o) {
    JoinGroupResponse resp;
    resp.error_code = Code(o.error);
    resp.generation_id = o.generation;
    resp.protocol_name = std::move(o.protocol_name);
    resp.leader = std::move(o.leader);
    resp.member_id = std::move(o.member_id);
    for (auto& m : o.members)
      resp.members.push_back({std::move(m.member_id), std::move(m.instance_id), std::move(m.metadata)});
    Reply(c, resp, o.error != Error::kNone && o.error != Error::kMemberIdRequired);
  };
  if (c->principal && !Check(c, c->principal->OnGroup(Op::kConsume, req.group_id)).ok()) {
    JoinOutcome o;
    o.error = Error::kGroupAuthorizationFailed;
    return reply(std::move(o));
  }
  JoinArgs a;
  a.group_id = std::move(req.group_id);
  a.member_id = std::move(req.member_id);
  a.instance_id = std::move(req.group_instance_id);
  a.client_id = c->client_id;
  a.client_host = c->host;
  a.session_timeout_ms = req.session_timeout_ms;
  a.rebalance_timeout_ms = req.rebalance_timeout_ms;
  a.protocol_type = std::move(req.protocol_type);
  for (auto& p : req.protocols) a.protocols.push_back({std::move(p.name), std::move(p.metadata)});
  a.require_known_member_id = c->version >= 4;
  coordinator_.Join(std::move(a), std::move(reply));
}

void KafkaFrontEnd::Impl::SyncGroup(const CallPtr& c, SyncGroupRequest& req) {
  auto reply = [this, c](SyncOutcome o) {
    SyncGroupResponse resp;
    resp.error_code = Code(o.error);
    resp.assignment = std::move(o.assignment);
    Reply(c, resp, o.error != Error::kNone);
  };
  if (c->principal && !Check(c, c->principal->OnGroup(Op::kConsume, req.group_id)).ok())
    return reply({Error::kGroupAuthorizationFailed, {}});
  std::vector<std::pair<std::string, std::string>> assignments;
  assignments.reserve(req.assignments.size());
  for (auto& a : req.assignments)
    assignments.emplace_back(std::move(a.member_id), std::move(a.assignment));
  coordinator_.Sync(req.group_id, req.generation_id, req.member_id, req.group_instance_id,
                    std::move(assignments), std::move(reply));
}

void KafkaFrontEnd::Impl::Heartbeat(const CallPtr& c, HeartbeatRequest& req) {
  HeartbeatResponse resp;
  Error e = Error::kGroupAuthorizationFailed;
  if (!c->principal || Check(c, c->principal->OnGroup(Op::kConsume, req.group_id)).ok())
    e = coordinator_.Heartbeat(req.group_id, req.generation_id, req.member_id, req.group_instance_id);
  resp.error_code = Code(e);
  // REBALANCE_IN_PROGRESS is how a member learns to rejoin, not a failure.
  Reply(c, resp, e != Error::kNone && e != Error::kRebalanceInProgress);
}

void KafkaFrontEnd::Impl::LeaveGroup(const CallPtr& c, LeaveGroupRequest& req) {
  LeaveGroupResponse resp;
  if (c->principal && !Check(c, c->principal->OnGroup(Op::kConsume, req.group_id)).ok()) {
    resp.error_code = Code(Error::kGroupAuthorizationFailed);
    return Reply(c, resp, true);
  }
  std::vector<std::pair<std::string, std::optional<std::string>>> members;
  if (c->version < 3) {
    members.emplace_back(req.member_id, std::nullopt);
  } else {
    for (auto& m : req.members) members.emplace_back(m.member_id, m.group_instance_id);
  }
  const std::vector<Error> results = coordinator_.Leave(req.group_id, members);
  bool failed = false;
  for (size_t i = 0; i < results.size(); ++i) {
    failed |= results[i] != Error::kNone;
    if (c->version >= 3) {
      resp.members.push_back({members[i].first, members[i].second, Code(results[i])});
    } else {
      resp.error_code = Code(results[i]);
    }
  }
  Reply(c, resp, failed);
}

// ---- offsets ------------------------------------------------------------------------------------

void KafkaFrontEnd::Impl::OffsetCommit(const CallPtr& c, OffsetCommitRequest& req) {
  auto resp = std::make_shared<OffsetCommitResponse>();
  // Where each committed offset's answer goes.
  auto slots = std::make_shared<std::vector<OffsetCommitResponse::OffsetCommitResponsePartition*>>();
  std::vector<storage::OffsetCommit> offsets;
  Error group_error = GroupAccess(c, req.group_id, Op::kConsume);
  if (group_error == Error::kNone) {
    group_error = coordinator_.CheckCommit(req.group_id, req.generation_id_or_member_epoch,
                                           req.member_id, req.group_instance_id);
  }
  if (group_error == Error::kNone) {
    // Standalone consumers commit into groups nobody joined: the store's record is made here.
    Status s = broker_.groups().EnsureExternalGroup(req.group_id, storage::GroupProtocol::kKafka);
    if (!s.ok()) {
      group_error = s.code() == StatusCode::kInvalidArgument ? Error::kInconsistentGroupProtocol
                                                             : Error::kCoordinatorNotAvailable;
    }
  }
  resp->topics.reserve(req.topics.size());
  for (auto& t : req.topics) {
    auto& out = resp->topics.emplace_back();
    out.name = t.name;
    Error topic_error = group_error;
    if (topic_error == Error::kNone && c->principal &&
        !Check(c, c->principal->SeeTopic(t.name)).ok())
      topic_error = Error::kTopicAuthorizationFailed;
    out.partitions.reserve(t.partitions.size());
    for (auto& p : t.partitions) {
      auto& pr = out.partitions.emplace_back();
      pr.partition_index = p.partition_index;
      Error e = topic_error;
      if (e == Error::kNone && p.committed_metadata &&
          p.committed_metadata->size() > kMaxOffsetMetadataBytes)
        e = Error::kOffsetMetadataTooLarge;
      if (e == Error::kNone &&
          !broker_.store()
               .ListOffset(t.name, Partition(p.partition_index), storage::OffsetQuery::Latest())
               .ok())
        e = Error::kUnknownTopicOrPartition;
      pr.error_code = Code(e);
      if (e != Error::kNone) continue;
      offsets.push_back({{t.name, Partition(p.partition_index)}, Offset(p.committed_offset),
                         p.committed_metadata.value_or("")});
    }
  }
  // The pointers stay valid: no vector grows from here on.
  for (auto& t : resp->topics)
    for (auto& p : t.partitions)
      if (p.error_code == 0) slots->push_back(&p);
  if (offsets.empty()) {
    bool failed = false;
    for (const auto& t : resp->topics)
      for (const auto& p : t.partitions) failed |= p.error_code != 0;
    return Reply(c, *resp, failed);
  }
  // Answered on the committer thread once the fsync covers the offsets.
  broker_.groups().CommitExternalAsync(req.group_id, offsets, [this, c, resp, slots](Status s) {
    const Error e = s.code() == StatusCode::kInvalidArgument ? Error::kInconsistentGroupProtocol
                    : s.code() == StatusCode::kNotFound      ? Error::kUnknownTopicOrPartition
                                                             : ToKafka(s, Resource::kGroup);
    for (auto* p : *slots) p->error_code = Code(e);
    bool failed = false;
    for (const auto& t : resp->topics)
      for (const auto& p : t.partitions) failed |= p.error_code != 0;
    Reply(c, *resp, failed);
  });
}

void KafkaFrontEnd::Impl::OffsetFetch(const CallPtr& c, OffsetFetchRequest& req) {
  OffsetFetchResponse resp;
  bool exists = false;
  Error group_error = GroupAccess(c, req.group_id);
  if (group_error == Error::kNone) group_error = StoredGroup(req.group_id, &exists);
  if (group_error != Error::kNone && c->version >= 2) {
    resp.error_code = Code(group_error);
    return Reply(c, resp, true);
  }
  // Which partitions: those asked for, or (null topics, v2+) every partition with an offset.
  std::vector<std::pair<std::string, std::vector<int32_t>>> wanted;
  if (req.topics) {
    for (auto& t : *req.topics) wanted.emplace_back(t.name, t.partition_indexes);
  } else if (exists) {
    auto d = broker_.groups().DescribeGroup(req.group_id);
    if (d.ok()) {
      for (const auto& p : d->partitions) {
        if (p.position.value() < 0) continue;
        if (wanted.empty() || wanted.back().first != p.tp.topic) wanted.emplace_back(p.tp.topic, std::vector<int32_t>{});
        wanted.back().second.push_back(p.tp.partition.value());
      }
    }
  }
  std::vector<storage::TopicPartition> tps;
  for (const auto& [topic, parts] : wanted)
    for (int32_t p : parts) tps.push_back({topic, Partition(p)});
  std::vector<storage::CommittedOffset> committed(tps.size());
  if (exists && group_error == Error::kNone && !tps.empty()) {
    auto r = broker_.groups().FetchOffsets(req.group_id, tps);
    if (r.ok()) committed = std::move(r).value();
  }
  bool failed = group_error != Error::kNone;
  size_t i = 0;
  for (const auto& [topic, parts] : wanted) {
    auto& out = resp.topics.emplace_back();
    out.name = topic;
    const bool allowed = !c->principal || Check(c, c->principal->SeeTopic(topic)).ok();
    for (int32_t p : parts) {
      auto& pr = out.partitions.emplace_back();
      const storage::CommittedOffset& o = committed[i++];
      pr.partition_index = p;
      pr.committed_offset = -1;
      pr.metadata = "";  // never null: Sarama and others expect a string
      if (group_error != Error::kNone) {
        pr.error_code = Code(group_error);
      } else if (!allowed) {
        pr.error_code = Code(Error::kTopicAuthorizationFailed);
        failed = true;
      } else if (o.offset.value() >= 0) {
        pr.committed_offset = o.offset.value();
        pr.metadata = o.metadata;
      }
    }
  }
  Reply(c, resp, failed);
}

void KafkaFrontEnd::Impl::OffsetDelete(const CallPtr& c, OffsetDeleteRequest& req) {
  OffsetDeleteResponse resp;
  bool exists = false;
  Error e = GroupAccess(c, req.group_id, Op::kAdmin);
  if (e == Error::kNone) e = StoredGroup(req.group_id, &exists);
  if (e == Error::kNone && !exists) e = Error::kGroupIdNotFound;
  if (e != Error::kNone) {
    resp.error_code = Code(e);
    return Reply(c, resp, true);
  }
  std::vector<storage::TopicPartition> gone;
  bool failed = false;
  for (const auto& t : req.topics) {
    auto& out = resp.topics.emplace_back();
    out.name = t.name;
    // Offsets of a topic the group's members consume stay: they are in use.
    const Error topic_error = coordinator_.Subscribed(req.group_id, t.name)
                                  ? Error::kGroupSubscribedToTopic
                                  : Error::kNone;
    for (const auto& p : t.partitions) {
      out.partitions.push_back({p.partition_index, Code(topic_error)});
      failed |= topic_error != Error::kNone;
      if (topic_error == Error::kNone) gone.push_back({t.name, Partition(p.partition_index)});
    }
  }
  if (!gone.empty()) {
    if (Status s = broker_.groups().DeleteOffsets(req.group_id, gone); !s.ok()) {
      resp.error_code = Code(ToKafka(s, Resource::kGroup));
      failed = true;
    }
  }
  Reply(c, resp, failed);
}

// ---- group admin --------------------------------------------------------------------------------

void KafkaFrontEnd::Impl::DescribeGroups(const CallPtr& c, DescribeGroupsRequest& req) {
  DescribeGroupsResponse resp;
  bool failed = false;
  for (const std::string& id : req.groups) {
    auto& out = resp.groups.emplace_back();
    out.group_id = id;
    bool exists = false;
    Error e = GroupAccess(c, id);
    if (e == Error::kNone) e = StoredGroup(id, &exists);
    if (e != Error::kNone) {
      out.error_code = Code(e);
      failed = true;
      continue;
    }
    // The store says whether the group exists: the coordinator still holds a group an operator
    // deleted natively (runnelctl group delete) once it was empty, and does not hear of that.
    auto v = coordinator_.View(id);
    if (v && !exists && v->members.empty()) v.reset();
    if (v) {
      out.group_state = std::move(v->state);
      out.protocol_type = std::move(v->protocol_type);
      out.protocol_data = std::move(v->protocol);
      for (auto& m : v->members) {
        out.members.push_back({std::move(m.member_id), std::move(m.instance_id),
                               std::move(m.client_id), std::move(m.client_host),
                               std::move(m.metadata), std::move(m.assignment)});
      }
    } else {
      // Offsets only (no member since the last start), or nothing at all: Kafka's "Dead".
      out.group_state = exists ? "Empty" : "Dead";
      out.protocol_type = exists ? "consumer" : "";
    }
  }
  Reply(c, resp, failed);
}

void KafkaFrontEnd::Impl::ListGroups(const CallPtr& c, ListGroupsRequest&) {
  ListGroupsResponse resp;
  std::map<std::string, std::string> groups;
  for (const std::string& name : broker_.groups().ListGroups()) {
    bool exists = false;
    if (StoredGroup(name, &exists) == Error::kNone && exists) groups[name] = "consumer";
  }
  for (auto& [id, type] : coordinator_.List()) {
    if (type.empty()) continue;
    // As in DescribeGroups: an empty group the store no longer holds was deleted natively.
    if (!groups.count(id)) {
      auto v = coordinator_.View(id);
      if (!v || v->members.empty()) continue;
    }
    groups[id] = type;
  }
  for (auto& [id, type] : groups) {
    if (c->principal && !c->principal->SeesGroup(id)) continue;
    resp.groups.push_back({id, type});
  }
  Reply(c, resp);
}

void KafkaFrontEnd::Impl::DeleteGroups(const CallPtr& c, DeleteGroupsRequest& req) {
  DeleteGroupsResponse resp;
  bool failed = false;
  for (const std::string& id : req.groups_names) {
    bool exists = false;
    Error e = GroupAccess(c, id, Op::kAdmin);
    if (e == Error::kNone) e = StoredGroup(id, &exists);
    if (e == Error::kNone) e = coordinator_.Forget(id);
    if (e == Error::kNone && !exists) e = Error::kGroupIdNotFound;
    if (e == Error::kNone) {
      broker_.ForgetGroup(id);
      e = ToKafka(broker_.groups().DeleteGroup(id), Resource::kGroup);
    }
    failed |= e != Error::kNone;
    resp.results.push_back({id, Code(e)});
  }
  Reply(c, resp, failed);
}

}  // namespace runnel::kafka
