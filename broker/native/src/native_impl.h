// The native front-end's private parts: one request in flight (Call), the reply helpers, the
// per-request rights check, and the handlers by area (data.cc, groups.cc, admin.cc).
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "runnel/broker/auth.h"
#include "runnel/broker/broker.h"
#include "runnel/broker/metrics.h"
#include "runnel/common/protocol.h"
#include "runnel/native/frontend.h"

namespace runnel::native {

using broker::Broker;
using broker::Op;
using broker::Principal;
using broker::ResponseFn;
using wire::Api;
using wire::ErrorCode;
using SteadyClock = std::chrono::steady_clock;

class NativeSession final : public broker::FrontEndSession {
 public:
  explicit NativeSession(std::shared_ptr<broker::ProduceLane> lane) : produce(std::move(lane)) {}
  std::shared_ptr<broker::ProduceLane> produce;
  std::shared_ptr<const Principal> principal;  // set by a successful Authenticate
};

// One request in flight.
struct Call {
  wire::FrameHeader header;
  std::string body;
  ResponseFn respond;
  SteadyClock::time_point start;
  std::shared_ptr<const Principal> principal;  // null: access control is off
};
using CallPtr = std::shared_ptr<Call>;

// The rights a request needs (ARCHITECTURE.md "Access control"): one overload per request type,
// so a new request type without one does not compile.
class Authorizer {
 public:
  explicit Authorizer(Broker& b) : broker_(b) {}
  Status Check(const Principal&, const proto::ApiVersionsRequest&) { return Status::OK(); }
  Status Check(const Principal&, const proto::AuthenticateRequest&) { return Status::OK(); }
  Status Check(const Principal& p, const proto::ProduceRequest& r);
  Status Check(const Principal& p, const proto::FetchRequest& r);
  Status Check(const Principal& p, const proto::ListOffsetsRequest& r);
  Status Check(const Principal& p, const proto::MetadataRequest& r);
  Status Check(const Principal& p, const proto::CreateTopicRequest& r);
  Status Check(const Principal& p, const proto::DeleteTopicRequest& r);
  Status Check(const Principal& p, const proto::AlterTopicRequest& r);
  Status Check(const Principal& p, const proto::InitProducerIdRequest& r);
  Status Check(const Principal& p, const proto::JoinGroupRequest& r);
  Status Check(const Principal& p, const proto::HeartbeatRequest& r);
  Status Check(const Principal& p, const proto::LeaveGroupRequest& r);
  Status Check(const Principal& p, const proto::CommitOffsetsRequest& r);
  Status Check(const Principal& p, const proto::FetchOffsetsRequest& r);
  Status Check(const Principal& p, const proto::CreateQueueGroupRequest& r);
  template <class Req>
    requires requires(const Req& r) { r.consumer; }
  Status Check(const Principal& p, const Req& r) {  // Deliver Ack Nack Reject Extend Claim ListPending
    return OnGroup(p, Op::kConsume, r.group);
  }
  Status Check(const Principal& p, const proto::ListDeadLettersRequest& r);
  Status Check(const Principal& p, const proto::RedriveRequest& r);
  Status Check(const Principal& p, const proto::PurgeDeadLettersRequest& r);
  Status Check(const Principal& p, const proto::ListGroupsRequest& r);
  Status Check(const Principal& p, const proto::DescribeGroupRequest& r);
  Status Check(const Principal& p, const proto::DeleteGroupRequest& r);
  Status Check(const Principal& p, const proto::RecordStatusRequest& r);
  Status Check(const Principal& p, const proto::StatsRequest& r);
  Status Check(const Principal& p, const proto::BackupRequest& r);

 private:
  // A group operation: the operation on the group, and for a queue group consuming its topic.
  Status OnGroup(const Principal& p, Op op, const std::string& group);
  Broker& broker_;
};

// The wire form of a member's assignment (groups.cc; also used by DescribeGroup in admin.cc).
std::vector<proto::TopicPartitionRef> ToWire(const std::vector<storage::TopicPartition>& tps);

class NativeFrontEnd::Impl {
 public:
  explicit Impl(Broker& b) : broker_(b), authorizer_(b) {}

  void Handle(NativeSession& session, wire::Frame f, ResponseFn respond);

 private:
  storage::Groups& groups() { return broker_.groups(); }
  broker::Metrics& metrics() { return broker_.metrics(); }

  template <class Msg> void Reply(const CallPtr& c, const Status& s, Msg* msg) {
    ReplyCode(c, proto::ToErrorCode(s.code()), s.message(), msg);
  }
  void ReplyStatus(const CallPtr& c, const Status& s) {
    Reply<proto::EmptyResponse>(c, s, nullptr);
  }
  template <class Msg>
  void ReplyCode(const CallPtr& c, ErrorCode code, std::string_view message, Msg* msg) {
    const double ms =
        std::chrono::duration<double, std::milli>(SteadyClock::now() - c->start).count();
    metrics().OnRequest(c->header.api, ms, code != ErrorCode::kNone);
    c->respond(FrameAround(c->header, proto::EncodeResponse(code, message, msg)));
    broker_.EndRequest();
  }

  // Decodes the body as Req, checks the caller may make it, and runs fn(req); or answers
  // malformed_request / permission_denied.
  template <class Req, class Fn> void WithRequest(const CallPtr& c, Fn&& fn) {
    auto req = proto::DecodeBody<Req>(c->body);
    if (!req.ok()) {
      return ReplyCode<proto::EmptyResponse>(c, ErrorCode::kMalformedRequest,
                                             req.status().message(), nullptr);
    }
    if (c->principal) {
      if (Status s = authorizer_.Check(*c->principal, *req); !s.ok()) {
        return ReplyStatus(c, broker_.Denied(s));
      }
    }
    fn(*req);
  }

  void Authenticate(NativeSession& session, const CallPtr& c);
  // The handlers by area; each answers `c` exactly once.
  void DataRequest(const CallPtr& c);  // data.cc
  void Produce(const CallPtr& c);
  void Metadata(const CallPtr& c, const proto::MetadataRequest& req);
  void GroupRequest(const CallPtr& c);                         // groups.cc
  void AdminRequest(const CallPtr& c);                         // admin.cc

  Broker& broker_;
  Authorizer authorizer_;
};

}  // namespace runnel::native
