// The native front-end's gate: shutdown, authentication, api and version checks, then the
// handler of the request's area. Also the rights each request type needs.
#include "runnel/native/frontend.h"

#include "native_impl.h"
#include "runnel/common/coding.h"

namespace runnel::native {

std::vector<std::string> FrameAround(const wire::FrameHeader& h, std::vector<std::string> body) {
  size_t n = 0;
  for (const auto& p : body) n += p.size();
  body.insert(body.begin(), wire::EncodeFrameHeader(h.api, h.version, h.correlation_id, n));
  return body;
}

std::vector<std::string> ErrorFrame(const wire::FrameHeader& request, const Status& error) {
  return FrameAround(request, proto::EncodeResponse<proto::EmptyResponse>(error, nullptr));
}

NativeFrontEnd::NativeFrontEnd(Broker& broker)
    : broker_(broker), impl_(std::make_unique<Impl>(broker)) {}
NativeFrontEnd::~NativeFrontEnd() = default;

std::shared_ptr<broker::FrontEndSession> NativeFrontEnd::NewSession(std::string_view) {
  auto s = std::make_shared<NativeSession>(broker_.NewProduceLane());
  s->unauthenticated = broker_.options().auth != nullptr;
  return s;
}

void NativeFrontEnd::Handle(const std::shared_ptr<broker::FrontEndSession>& session,
                            wire::Frame request, ResponseFn respond) {
  impl_->Handle(static_cast<NativeSession&>(*session), std::move(request), std::move(respond));
}

size_t NativeFrontEnd::ResponseReservation(const wire::Frame& request) const {
  // FetchRequest starts max_wait_ms:i32 min_bytes:i32 max_bytes:i32 (see protocol.h).
  if (request.header.api != static_cast<uint16_t>(Api::kFetch) || request.body.size() < 12) return 0;
  const auto max_bytes = static_cast<int32_t>(DecodeFixed32BE(request.body.data() + 8));
  return max_bytes > 0 ? static_cast<size_t>(max_bytes) : 0;
}

std::vector<std::string> NativeFrontEnd::FramingError(const Status& error) const {
  return ErrorFrame(wire::FrameHeader{}, error);
}

void NativeFrontEnd::Impl::Handle(NativeSession& session, wire::Frame f, ResponseFn respond) {
  auto c = std::make_shared<Call>(Call{f.header, std::move(f.body), std::move(respond),
                                       SteadyClock::now(), nullptr});
  broker_.BeginRequest();
  const uint16_t api = c->header.api;
  if (broker_.shutting_down()) {
    return ReplyStatus(c, Status::Shutdown("the broker is shutting down"));
  }
  // Before anything else: an unauthenticated session learns nothing, not even which apis exist.
  const bool authenticate = api == static_cast<uint16_t>(Api::kAuthenticate);
  if (broker_.options().auth && !authenticate) {
    if (!session.principal) {
      session.refused = true;
      metrics().auth_failures.fetch_add(1, std::memory_order_relaxed);
      return ReplyStatus(c, Status::Unauthenticated(
                                "authentication required: send Authenticate with a token first"));
    }
    c->principal = session.principal;
  }
  const int served = proto::ServedVersion(api);
  if (served < 0) {
    return ReplyCode<proto::EmptyResponse>(c, ErrorCode::kUnknownApi,
                                           "unknown api " + std::to_string(api), nullptr);
  }
  if (c->header.version > served) {
    return ReplyCode<proto::EmptyResponse>(
        c, ErrorCode::kUnsupportedVersion,
        std::string(proto::ApiName(api)) + " version " + std::to_string(c->header.version) +
            " is not served (max " + std::to_string(served) + ")",
        nullptr);
  }
  if (authenticate) return Authenticate(session, c);  // inline: the next frame sees its result
  switch (static_cast<Api>(api)) {
    case Api::kProduce:
      session.produce->Post([this, c] { Produce(c); });
      return;
    case Api::kApiVersions:
    case Api::kInitProducerId:
      return DataRequest(c);  // cheap: answer on the caller's thread
    case Api::kFetch:
    case Api::kListOffsets:
    case Api::kMetadata:
      return broker_.Post([this, c] { DataRequest(c); });
    case Api::kJoinGroup:
    case Api::kHeartbeat:
    case Api::kLeaveGroup:
    case Api::kCommitOffsets:
    case Api::kFetchOffsets:
    case Api::kCreateQueueGroup:
    case Api::kDeliver:
    case Api::kAck:
    case Api::kNack:
    case Api::kReject:
    case Api::kExtend:
    case Api::kClaim:
    case Api::kListPending:
      return broker_.Post([this, c] { GroupRequest(c); });
    default:
      return broker_.Post([this, c] { AdminRequest(c); });
  }
}

void NativeFrontEnd::Impl::Authenticate(NativeSession& session, const CallPtr& c) {
  WithRequest<proto::AuthenticateRequest>(c, [&](proto::AuthenticateRequest& req) {
    proto::AuthenticateResponse resp;
    if (!broker_.options().auth) {
      resp.principal = "anonymous";  // access control is off: every token is as good as none
      return Reply(c, Status::OK(), &resp);
    }
    auto p = broker_.Authenticate(req.token);
    if (!p.ok()) {
      session.principal.reset();
      session.refused = true;
      return Reply<proto::AuthenticateResponse>(c, p.status(), nullptr);
    }
    session.principal = *p;
    session.unauthenticated = false;
    resp.principal = (*p)->name;
    Reply(c, Status::OK(), &resp);
  });
}

// ---- access control: what each request needs (see ARCHITECTURE.md "Access control") ----------

Status Authorizer::Check(const Principal& p, const proto::ProduceRequest& r) {
  for (const auto& part : r.partitions) RUNNEL_RETURN_IF_ERROR(p.OnTopic(Op::kProduce, part.topic));
  return Status::OK();
}
Status Authorizer::Check(const Principal& p, const proto::FetchRequest& r) {
  for (const auto& part : r.partitions) RUNNEL_RETURN_IF_ERROR(p.OnTopic(Op::kConsume, part.topic));
  return Status::OK();
}
Status Authorizer::Check(const Principal& p, const proto::ListOffsetsRequest& r) {
  for (const auto& part : r.partitions) RUNNEL_RETURN_IF_ERROR(p.SeeTopic(part.topic));
  return Status::OK();
}
Status Authorizer::Check(const Principal& p, const proto::MetadataRequest& r) {
  // Without names the answer lists only visible topics; auto-creating a topic needs the right
  // to produce to it (checked by Broker::DescribeTopic).
  for (const auto& t : r.topics) RUNNEL_RETURN_IF_ERROR(p.SeeTopic(t));
  return Status::OK();
}
Status Authorizer::Check(const Principal& p, const proto::CreateTopicRequest& r) {
  return p.OnTopic(Op::kAdmin, r.name);
}
Status Authorizer::Check(const Principal& p, const proto::DeleteTopicRequest& r) {
  return p.OnTopic(Op::kAdmin, r.name);
}
Status Authorizer::Check(const Principal& p, const proto::AlterTopicRequest& r) {
  return p.OnTopic(Op::kAdmin, r.name);
}
Status Authorizer::Check(const Principal& p, const proto::InitProducerIdRequest&) {
  return p.Allows(Op::kProduce);
}
Status Authorizer::OnGroup(const Principal& p, Op op, const std::string& group) {
  RUNNEL_RETURN_IF_ERROR(p.OnGroup(op, group));
  if (op != Op::kConsume) return Status::OK();
  auto topic = broker_.GroupTopic(group);
  if (!topic.ok() || topic->empty()) return Status::OK();  // unknown or a stream group
  return p.OnTopic(Op::kConsume, *topic);
}
Status Authorizer::Check(const Principal& p, const proto::JoinGroupRequest& r) {
  RUNNEL_RETURN_IF_ERROR(p.OnGroup(Op::kConsume, r.group));
  for (const auto& t : r.topics) RUNNEL_RETURN_IF_ERROR(p.OnTopic(Op::kConsume, t));
  return Status::OK();
}
Status Authorizer::Check(const Principal& p, const proto::HeartbeatRequest& r) {
  return p.OnGroup(Op::kConsume, r.group);
}
Status Authorizer::Check(const Principal& p, const proto::LeaveGroupRequest& r) {
  return p.OnGroup(Op::kConsume, r.group);
}
Status Authorizer::Check(const Principal& p, const proto::CommitOffsetsRequest& r) {
  // An admin reset (no member) moves a group's positions for everyone: admin on the group.
  const bool reset = r.member_id.empty() && r.generation == -1;
  RUNNEL_RETURN_IF_ERROR(p.OnGroup(reset ? Op::kAdmin : Op::kConsume, r.group));
  for (const auto& o : r.offsets) RUNNEL_RETURN_IF_ERROR(p.SeeTopic(o.topic));
  return reset ? Status::OK() : OnGroup(p, Op::kConsume, r.group);
}
Status Authorizer::Check(const Principal& p, const proto::FetchOffsetsRequest& r) {
  RUNNEL_RETURN_IF_ERROR(p.SeeGroup(r.group));
  for (const auto& o : r.partitions) RUNNEL_RETURN_IF_ERROR(p.SeeTopic(o.topic));
  return Status::OK();
}
Status Authorizer::Check(const Principal& p, const proto::CreateQueueGroupRequest& r) {
  RUNNEL_RETURN_IF_ERROR(p.OnGroup(Op::kConsume, r.group));
  for (const auto& [k, v] : r.config) {
    if (k == "topic") RUNNEL_RETURN_IF_ERROR(p.OnTopic(Op::kConsume, v));
    if (k == "dlq.topic") RUNNEL_RETURN_IF_ERROR(p.OnTopic(Op::kProduce, v));
  }
  return Status::OK();
}
Status Authorizer::Check(const Principal& p, const proto::ListDeadLettersRequest& r) {
  return OnGroup(p, Op::kConsume, r.group);
}
Status Authorizer::Check(const Principal& p, const proto::RedriveRequest& r) {
  RUNNEL_RETURN_IF_ERROR(p.OnGroup(Op::kAdmin, r.group));
  return r.to_topic.empty() ? Status::OK() : p.OnTopic(Op::kProduce, r.to_topic);
}
Status Authorizer::Check(const Principal& p, const proto::PurgeDeadLettersRequest& r) {
  return p.OnGroup(Op::kAdmin, r.group);
}
Status Authorizer::Check(const Principal&, const proto::ListGroupsRequest&) {
  return Status::OK();  // lists only the visible groups
}
Status Authorizer::Check(const Principal& p, const proto::DescribeGroupRequest& r) {
  return p.SeeGroup(r.group);
}
Status Authorizer::Check(const Principal& p, const proto::DeleteGroupRequest& r) {
  return p.OnGroup(Op::kAdmin, r.group);
}
Status Authorizer::Check(const Principal& p, const proto::RecordStatusRequest& r) {
  return p.SeeTopic(r.topic);
}
Status Authorizer::Check(const Principal& p, const proto::StatsRequest&) {
  return p.Allows(Op::kAdmin);
}
Status Authorizer::Check(const Principal& p, const proto::BackupRequest&) {
  return p.Allows(Op::kAdmin);  // a copy of every topic and group
}

}  // namespace runnel::native
