// The Kafka front-end's private parts: the session (SASL state, principal, produce lane), one
// request in flight (Call), the reply helpers, and the handlers by area: produce.cc (Produce,
// InitProducerId), fetch.cc (Fetch, ListOffsets), metadata.cc (Metadata), admin.cc (topics and
// configs), sasl.cc (SaslHandshake, SaslAuthenticate).
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <condition_variable>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "coordinator.h"
#include "errors.h"
#include "runnel/broker/auth.h"
#include "runnel/broker/broker.h"
#include "runnel/broker/metrics.h"
#include "runnel/kafka/codec.h"
#include "runnel/kafka/frontend.h"
#include "runnel/kafka/messages.h"

namespace runnel::kafka {

using broker::Broker;
using broker::Op;
using broker::Principal;
using broker::ResponseFn;
using SteadyClock = std::chrono::steady_clock;

// The APIs served, by Kafka api key. DO NOT CHANGE: Kafka's wire values.
enum class ApiKey : int16_t {
  kProduce = 0,
  kFetch = 1,
  kListOffsets = 2,
  kMetadata = 3,
  kOffsetCommit = 8,
  kOffsetFetch = 9,
  kFindCoordinator = 10,
  kJoinGroup = 11,
  kHeartbeat = 12,
  kLeaveGroup = 13,
  kSyncGroup = 14,
  kDescribeGroups = 15,
  kListGroups = 16,
  kSaslHandshake = 17,
  kApiVersions = 18,
  kCreateTopics = 19,
  kDeleteTopics = 20,
  kInitProducerId = 22,
  kDescribeConfigs = 32,
  kAlterConfigs = 33,
  kSaslAuthenticate = 36,
  kCreatePartitions = 37,
  kDeleteGroups = 42,
  kIncrementalAlterConfigs = 44,
  kOffsetDelete = 47,
};

class KafkaSession final : public broker::FrontEndSession {
 public:
  KafkaSession(std::shared_ptr<broker::ProduceLane> lane, std::string peer)
      : produce(std::move(lane)), host("/" + std::move(peer)) {}
  enum class Sasl : uint8_t {
    kNone,       // nothing yet
    kHandshake,  // SaslHandshake v1 done: SaslAuthenticate next
    kRaw,        // SaslHandshake v0 done: the next frame is a bare PLAIN token
    kDone,       // authenticated
  };
  std::shared_ptr<broker::ProduceLane> produce;
  Sasl sasl = Sasl::kNone;
  std::shared_ptr<const Principal> principal;  // set by a successful authentication
  const std::string host;  // the peer's address as Kafka shows it ("/127.0.0.1")
};

// One request in flight.
struct Call {
  int16_t api = 0;
  int16_t version = 0;
  int32_t correlation_id = 0;
  ResponseFn respond;
  SteadyClock::time_point start;
  std::shared_ptr<const Principal> principal;  // null: access control is off
  std::string client_id;                       // from the request header
  std::string host;                            // the session's peer
};
using CallPtr = std::shared_ptr<Call>;

class KafkaFrontEnd::Impl {
 public:
  Impl(Broker& b, KafkaOptions o);
  // Stops the group timer and unregisters the coordinator.
  ~Impl();
  void SetAdvertisedPort(int32_t port) { advertised_port_.store(port); }

  void Handle(KafkaSession& session, wire::Frame f, ResponseFn respond);
  Broker& broker() { return broker_; }

 private:
  broker::Metrics& metrics() { return broker_.metrics(); }

  // Encodes `resp` for the call's version behind the response header and the size prefix, and
  // hands it to the connection. `failed` counts the request as an error in the metrics.
  template <class Resp> void Reply(const CallPtr& c, Resp& resp, bool failed = false) {
    Writer w;
    WriteResponseHeader(w, c->api, c->version, c->correlation_id);
    resp.Encode(w, c->version);
    Send(c, w, failed);
  }
  void Send(const CallPtr& c, Writer& w, bool failed);
  // Answers nothing (acks=0), ending the request.
  void NoReply(const CallPtr& c);
  // Ends the request without an answer and has the connection closed (what Kafka does with
  // requests it cannot parse or serve).
  void Refuse(KafkaSession& session, const CallPtr& c, std::string_view why);

  // Access control: OK when off, else the principal's verdict (counted when denied).
  Status Check(const CallPtr& c, Status verdict) {
    if (!c->principal || verdict.ok()) return Status::OK();
    return broker_.Denied(std::move(verdict));
  }

  void ApiVersions(const CallPtr& c, bool supported);
  // sasl.cc
  void SaslHandshake(KafkaSession& session, const CallPtr& c, SaslHandshakeRequest& req);
  void SaslAuthenticate(KafkaSession& session, const CallPtr& c, SaslAuthenticateRequest& req);
  void RawSaslToken(KafkaSession& session, const wire::Frame& f, const CallPtr& c);
  // Decodes the body as Req and runs `fn(req)` where `where` says (inline, the session's produce
  // lane, or the worker pool); a body that does not decode refuses the session.
  enum class Where : uint8_t { kInline, kLane, kPool };
  template <class Req, class Fn>
  void Route(KafkaSession& session, const CallPtr& c, Reader& r, Where where, Fn fn);
  // The principal for a SASL/PLAIN message (authzid NUL user NUL password; the password is
  // the token), or Unauthenticated.
  Result<std::shared_ptr<const Principal>> PlainLogin(std::string_view message);
  // produce.cc
  void Produce(const CallPtr& c, ProduceRequest& req);
  void InitProducerId(const CallPtr& c, InitProducerIdRequest& req);
  // fetch.cc
  void Fetch(const CallPtr& c, FetchRequest& req);
  void ListOffsets(const CallPtr& c, ListOffsetsRequest& req);
  // metadata.cc
  void Metadata(const CallPtr& c, MetadataRequest& req);
  void FindCoordinator(const CallPtr& c, FindCoordinatorRequest& req);
  // groups.cc
  void JoinGroup(const CallPtr& c, JoinGroupRequest& req);
  void SyncGroup(const CallPtr& c, SyncGroupRequest& req);
  void Heartbeat(const CallPtr& c, HeartbeatRequest& req);
  void LeaveGroup(const CallPtr& c, LeaveGroupRequest& req);
  void OffsetCommit(const CallPtr& c, OffsetCommitRequest& req);
  void OffsetFetch(const CallPtr& c, OffsetFetchRequest& req);
  void DescribeGroups(const CallPtr& c, DescribeGroupsRequest& req);
  void ListGroups(const CallPtr& c, ListGroupsRequest& req);
  void DeleteGroups(const CallPtr& c, DeleteGroupsRequest& req);
  void OffsetDelete(const CallPtr& c, OffsetDeleteRequest& req);
  // kNone when the session may act on `group`: `op` on it, or (nullopt) see it;
  // GROUP_AUTHORIZATION_FAILED otherwise.
  Error GroupAccess(const CallPtr& c, const std::string& group, std::optional<Op> op = std::nullopt);
  // The store's record of a group: kNone (a Kafka group, or none: *exists says which),
  // kInconsistentGroupProtocol (a native or queue group).
  Error StoredGroup(const std::string& group, bool* exists);
  // The timer thread: expiries and rebalance deadlines, and parked calls answered at shutdown.
  void GroupTimer();
  // admin.cc
  void CreateTopics(const CallPtr& c, CreateTopicsRequest& req);
  void DeleteTopics(const CallPtr& c, DeleteTopicsRequest& req);
  void CreatePartitions(const CallPtr& c, CreatePartitionsRequest& req);
  void DescribeConfigs(const CallPtr& c, DescribeConfigsRequest& req);
  void IncrementalAlterConfigs(const CallPtr& c, IncrementalAlterConfigsRequest& req);
  void AlterConfigs(const CallPtr& c, AlterConfigsRequest& req);
  // Checks and applies (unless validate_only) config changes to one topic; OK or the error and
  // its message.
  std::pair<Error, std::string> AlterTopicConfigs(
      const CallPtr& c, int8_t resource_type, const std::string& topic,
      const std::vector<std::pair<std::string, std::string>>& changes, Status bad,
      bool validate_only);

  Broker& broker_;
  KafkaOptions options_;
  std::atomic<int32_t> advertised_port_;
  const std::string cluster_id_;
  GroupCoordinator coordinator_;
  std::mutex timer_mu_;
  std::condition_variable timer_cv_;
  bool timer_stop_ = false;
  std::thread timer_;
};

}  // namespace runnel::kafka
