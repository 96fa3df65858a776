// The Kafka front-end's gate: the versions served, the request header, SASL before anything
// else, then the handler of the request's API on the right thread.
#include "runnel/kafka/frontend.h"

#include <algorithm>
#include <array>

#include "kafka_impl.h"
#include "runnel/common/coding.h"

namespace runnel::kafka {
namespace {

struct Served {
  ApiKey key;
  int16_t min;
  int16_t max;
};

// What ApiVersions advertises. Produce is advertised from v0 although only 3-7 are served:
// librdkafka applies gzip, snappy and lz4 only when Produce v0 is advertised (as Kafka 4 does).
constexpr std::array kServed = {
    Served{ApiKey::kProduce, 0, 7},
    Served{ApiKey::kFetch, 4, 11},
    Served{ApiKey::kListOffsets, 1, 3},
    Served{ApiKey::kMetadata, 0, 4},
    Served{ApiKey::kOffsetCommit, 2, 7},
    Served{ApiKey::kOffsetFetch, 1, 5},
    // librdkafka enables lz4 only where FindCoordinator v0 is served (its test for brokers newer
    // than 0.8.2).
    Served{ApiKey::kFindCoordinator, 0, 2},
    Served{ApiKey::kJoinGroup, 0, 5},
    Served{ApiKey::kHeartbeat, 0, 3},
    Served{ApiKey::kLeaveGroup, 0, 3},
    Served{ApiKey::kSyncGroup, 0, 3},
    Served{ApiKey::kDescribeGroups, 0, 4},
    Served{ApiKey::kListGroups, 0, 3},
    Served{ApiKey::kSaslHandshake, 0, 1},
    Served{ApiKey::kApiVersions, 0, 3},
    Served{ApiKey::kCreateTopics, 2, 4},
    Served{ApiKey::kDeleteTopics, 1, 3},
    Served{ApiKey::kInitProducerId, 0, 1},
    Served{ApiKey::kDescribeConfigs, 1, 2},
    Served{ApiKey::kAlterConfigs, 0, 1},
    Served{ApiKey::kSaslAuthenticate, 0, 1},
    Served{ApiKey::kCreatePartitions, 0, 1},
    Served{ApiKey::kDeleteGroups, 0, 1},
    Served{ApiKey::kIncrementalAlterConfigs, 0, 1},
    Served{ApiKey::kOffsetDelete, 0, 0},
};

std::string_view KafkaApiName(uint16_t api) {
  const ApiInfo* info = FindApi(static_cast<int16_t>(api));
  return info ? info->name : "unknown";
}

}  // namespace

std::pair<int16_t, int16_t> KafkaFrontEnd::ServedVersions(int16_t api_key) {
  for (const auto& s : kServed)
    if (static_cast<int16_t>(s.key) == api_key) return {s.min, s.max};
  return {-1, -1};
}

KafkaFrontEnd::Impl::Impl(Broker& b, KafkaOptions o)
    : broker_(b),
      options_(std::move(o)),
      advertised_port_(options_.advertised_port),
      // Stable for a data directory; clients only compare it.
      cluster_id_("runnel-" +
                  std::to_string(std::hash<std::string>{}(b.options().store.data_dir) % 1000000007)),
      coordinator_(
          CoordinatorOptions{.initial_rebalance_delay_ms = options_.group_initial_rebalance_delay_ms},
          [] {
            return std::chrono::duration_cast<std::chrono::milliseconds>(
                       SteadyClock::now().time_since_epoch())
                .count();
          },
          [&b](const std::string& group) {
            return b.groups().EnsureExternalGroup(group, storage::GroupProtocol::kKafka);
          }) {
  broker_.SetLiveGroups(storage::GroupProtocol::kKafka, &coordinator_);
  timer_ = std::thread([this] { GroupTimer(); });
}

KafkaFrontEnd::Impl::~Impl() {
  {
    std::lock_guard lk(timer_mu_);
    timer_stop_ = true;
  }
  timer_cv_.notify_all();
  timer_.join();
  broker_.SetLiveGroups(storage::GroupProtocol::kKafka, nullptr);
  coordinator_.FailParked(Error::kNotCoordinator);
}

void KafkaFrontEnd::Impl::GroupTimer() {
  std::unique_lock lk(timer_mu_);
  while (!timer_stop_) {
    timer_cv_.wait_for(lk, std::chrono::milliseconds(100));
    lk.unlock();
    coordinator_.Tick();
    // Parked joins and syncs would hold the shutdown up: answer them so clients look again.
    if (broker_.shutting_down()) coordinator_.FailParked(Error::kNotCoordinator);
    lk.lock();
  }
}

KafkaFrontEnd::KafkaFrontEnd(Broker& broker, KafkaOptions options)
    : impl_(std::make_unique<Impl>(broker, std::move(options))) {
  broker.metrics().SetApiNames(broker::Protocol::kKafka, &KafkaApiName);
}
KafkaFrontEnd::~KafkaFrontEnd() = default;

void KafkaFrontEnd::SetAdvertisedPort(int32_t port) { impl_->SetAdvertisedPort(port); }

std::shared_ptr<broker::FrontEndSession> KafkaFrontEnd::NewSession(std::string_view peer) {
  auto s = std::make_shared<KafkaSession>(impl_->broker().NewProduceLane(), std::string(peer));
  s->unauthenticated = impl_->broker().options().auth != nullptr;
  return s;
}

void KafkaFrontEnd::Handle(const std::shared_ptr<broker::FrontEndSession>& session,
                           wire::Frame request, ResponseFn respond) {
  impl_->Handle(static_cast<KafkaSession&>(*session), std::move(request), std::move(respond));
}

size_t KafkaFrontEnd::ResponseReservation(const wire::Frame& request) const {
  // A fetch's answer is bounded by its max_bytes and by the sum of its partitions' max bytes
  // (each may exceed its own only by one batch of at most max.message.bytes); clients ask for
  // 50 MiB overall but 1 MiB per partition, so the sum is the bound that matters.
  const auto api = static_cast<int16_t>(request.header.api);
  const auto version = static_cast<int16_t>(request.header.version);
  if (api != static_cast<int16_t>(ApiKey::kFetch)) return 0;
  const auto [min_version, max_version] = ServedVersions(api);
  if (version < min_version || version > max_version) return 0;
  Reader r(request.body);
  std::optional<std::string> client_id;
  FetchRequest req;
  if (!DecodeRequestHeaderRest(r, RequestHeaderIsFlexible(api, version), &client_id).ok() ||
      !req.Decode(r, version).ok()) {
    return 0;  // refused when handled
  }
  int64_t partitions = 0;
  for (const auto& t : req.topics)
    for (const auto& p : t.partitions) partitions += std::max(0, p.partition_max_bytes);
  return static_cast<size_t>(std::clamp<int64_t>(partitions, 0, std::max(0, req.max_bytes)));
}

std::vector<std::string> KafkaFrontEnd::FramingError(const Status&) const {
  return {};  // Kafka closes a connection whose stream it cannot frame
}

void KafkaFrontEnd::Impl::Send(const CallPtr& c, Writer& w, bool failed) {
  std::vector<std::string> chunks = w.Finish();
  size_t n = 0;
  for (const auto& p : chunks) n += p.size();
  std::string size(4, '\0');
  EncodeFixed32BE(size.data(), static_cast<uint32_t>(n));
  chunks.insert(chunks.begin(), std::move(size));
  const double ms =
      std::chrono::duration<double, std::milli>(SteadyClock::now() - c->start).count();
  metrics().OnRequest(broker::Protocol::kKafka, static_cast<uint16_t>(c->api), ms, failed);
  c->respond(std::move(chunks));
  broker_.EndRequest();
}

void KafkaFrontEnd::Impl::NoReply(const CallPtr& c) {
  const double ms =
      std::chrono::duration<double, std::milli>(SteadyClock::now() - c->start).count();
  metrics().OnRequest(broker::Protocol::kKafka, static_cast<uint16_t>(c->api), ms, false);
  c->respond({});
  broker_.EndRequest();
}

void KafkaFrontEnd::Impl::Refuse(KafkaSession& session, const CallPtr& c, std::string_view) {
  session.refused = true;
  metrics().protocol_errors.fetch_add(1, std::memory_order_relaxed);
  c->respond({});
  broker_.EndRequest();
}

template <class Req, class Fn>
void KafkaFrontEnd::Impl::Route(KafkaSession& session, const CallPtr& c, Reader& r, Where where,
                                Fn fn) {
  auto req = std::make_shared<Req>();
  if (Status s = req->Decode(r, c->version); !s.ok()) return Refuse(session, c, s.message());
  if (r.remaining() != 0) return Refuse(session, c, "trailing bytes after the request");
  switch (where) {
    case Where::kInline:
      return fn(*req);
    case Where::kLane:
      return session.produce->Post([req, fn] { fn(*req); });
    case Where::kPool:
      return broker_.Post([req, fn] { fn(*req); });
  }
}

void KafkaFrontEnd::Impl::ApiVersions(const CallPtr& c, bool supported) {
  ApiVersionsResponse resp;
  resp.error_code = supported ? Code(Error::kNone) : Code(Error::kUnsupportedVersion);
  for (const auto& s : kServed)
    resp.api_keys.push_back({static_cast<int16_t>(s.key), s.min, s.max});
  if (supported) return Reply(c, resp);
  // A version this broker does not know: answer in v0 (header v0 too), so that any client can
  // read the list and retry with a version both sides know (KIP-511).
  Writer w;
  WriteResponseHeader(w, c->api, 0, c->correlation_id);
  resp.Encode(w, 0);
  Send(c, w, true);
}

void KafkaFrontEnd::Impl::Handle(KafkaSession& session, wire::Frame f, ResponseFn respond) {
  auto c = std::make_shared<Call>();
  c->api = static_cast<int16_t>(f.header.api);
  c->version = static_cast<int16_t>(f.header.version);
  c->correlation_id = static_cast<int32_t>(f.header.correlation_id);
  c->respond = std::move(respond);
  c->start = SteadyClock::now();
  broker_.BeginRequest();
  if (broker_.shutting_down()) return Refuse(session, c, "shutting down");
  if (session.sasl == KafkaSession::Sasl::kRaw) return RawSaslToken(session, f, c);

  const auto [min_version, max_version] = ServedVersions(c->api);
  const auto api = static_cast<ApiKey>(c->api);
  if (api == ApiKey::kApiVersions && c->version > max_version) return ApiVersions(c, false);
  if (min_version < 0) return Refuse(session, c, "unknown api key");
  if (c->version < min_version || c->version > max_version)
    return Refuse(session, c, "version not served");
  Reader r(f.body);
  std::optional<std::string> client_id;
  if (!DecodeRequestHeaderRest(r, RequestHeaderIsFlexible(c->api, c->version), &client_id).ok())
    return Refuse(session, c, "malformed request header");

  // With access control on, only ApiVersions and SASL are answered before authentication.
  if (broker_.options().auth) {
    const bool sasl = api == ApiKey::kApiVersions || api == ApiKey::kSaslHandshake ||
                      api == ApiKey::kSaslAuthenticate;
    if (session.sasl != KafkaSession::Sasl::kDone && !sasl) {
      metrics().auth_failures.fetch_add(1, std::memory_order_relaxed);
      return Refuse(session, c, "not authenticated");
    }
    c->principal = session.principal;
  }
  c->client_id = client_id.value_or("");
  c->host = session.host;

  KafkaSession* s = &session;  // borrowed by inline handlers only
  switch (api) {
    case ApiKey::kApiVersions:
      return Route<ApiVersionsRequest>(session, c, r, Where::kInline,
                                       [this, c](ApiVersionsRequest&) { ApiVersions(c, true); });
    case ApiKey::kSaslHandshake:
      return Route<SaslHandshakeRequest>(
          session, c, r, Where::kInline,
          [this, c, s](SaslHandshakeRequest& req) { SaslHandshake(*s, c, req); });
    case ApiKey::kSaslAuthenticate:
      return Route<SaslAuthenticateRequest>(
          session, c, r, Where::kInline,
          [this, c, s](SaslAuthenticateRequest& req) { SaslAuthenticate(*s, c, req); });
    case ApiKey::kProduce:
      return Route<ProduceRequest>(session, c, r, Where::kLane,
                                   [this, c](ProduceRequest& req) { Produce(c, req); });
    case ApiKey::kInitProducerId:
      return Route<InitProducerIdRequest>(
          session, c, r, Where::kInline,
          [this, c](InitProducerIdRequest& req) { InitProducerId(c, req); });
    case ApiKey::kFetch:
      return Route<FetchRequest>(session, c, r, Where::kPool,
                                 [this, c](FetchRequest& req) { Fetch(c, req); });
    case ApiKey::kListOffsets:
      return Route<ListOffsetsRequest>(session, c, r, Where::kPool,
                                       [this, c](ListOffsetsRequest& req) { ListOffsets(c, req); });
    case ApiKey::kMetadata:
      return Route<MetadataRequest>(session, c, r, Where::kPool,
                                    [this, c](MetadataRequest& req) { Metadata(c, req); });
    case ApiKey::kFindCoordinator:
      return Route<FindCoordinatorRequest>(
          session, c, r, Where::kInline,
          [this, c](FindCoordinatorRequest& req) { FindCoordinator(c, req); });
    case ApiKey::kCreateTopics:
      return Route<CreateTopicsRequest>(
          session, c, r, Where::kPool,
          [this, c](CreateTopicsRequest& req) { CreateTopics(c, req); });
    case ApiKey::kDeleteTopics:
      return Route<DeleteTopicsRequest>(
          session, c, r, Where::kPool,
          [this, c](DeleteTopicsRequest& req) { DeleteTopics(c, req); });
    case ApiKey::kCreatePartitions:
      return Route<CreatePartitionsRequest>(
          session, c, r, Where::kPool,
          [this, c](CreatePartitionsRequest& req) { CreatePartitions(c, req); });
    case ApiKey::kDescribeConfigs:
      return Route<DescribeConfigsRequest>(
          session, c, r, Where::kPool,
          [this, c](DescribeConfigsRequest& req) { DescribeConfigs(c, req); });
    case ApiKey::kAlterConfigs:
      return Route<AlterConfigsRequest>(
          session, c, r, Where::kPool,
          [this, c](AlterConfigsRequest& req) { AlterConfigs(c, req); });
    case ApiKey::kJoinGroup:
      return Route<JoinGroupRequest>(session, c, r, Where::kPool,
                                     [this, c](JoinGroupRequest& req) { JoinGroup(c, req); });
    case ApiKey::kSyncGroup:
      return Route<SyncGroupRequest>(session, c, r, Where::kInline,
                                     [this, c](SyncGroupRequest& req) { SyncGroup(c, req); });
    case ApiKey::kHeartbeat:
      return Route<HeartbeatRequest>(session, c, r, Where::kInline,
                                     [this, c](HeartbeatRequest& req) { Heartbeat(c, req); });
    case ApiKey::kLeaveGroup:
      return Route<LeaveGroupRequest>(session, c, r, Where::kInline,
                                      [this, c](LeaveGroupRequest& req) { LeaveGroup(c, req); });
    case ApiKey::kOffsetCommit:
      return Route<OffsetCommitRequest>(
          session, c, r, Where::kPool,
          [this, c](OffsetCommitRequest& req) { OffsetCommit(c, req); });
    case ApiKey::kOffsetFetch:
      return Route<OffsetFetchRequest>(session, c, r, Where::kPool,
                                       [this, c](OffsetFetchRequest& req) { OffsetFetch(c, req); });
    case ApiKey::kDescribeGroups:
      return Route<DescribeGroupsRequest>(
          session, c, r, Where::kPool,
          [this, c](DescribeGroupsRequest& req) { DescribeGroups(c, req); });
    case ApiKey::kListGroups:
      return Route<ListGroupsRequest>(session, c, r, Where::kPool,
                                      [this, c](ListGroupsRequest& req) { ListGroups(c, req); });
    case ApiKey::kDeleteGroups:
      return Route<DeleteGroupsRequest>(
          session, c, r, Where::kPool,
          [this, c](DeleteGroupsRequest& req) { DeleteGroups(c, req); });
    case ApiKey::kOffsetDelete:
      return Route<OffsetDeleteRequest>(
          session, c, r, Where::kPool,
          [this, c](OffsetDeleteRequest& req) { OffsetDelete(c, req); });
    case ApiKey::kIncrementalAlterConfigs:
      return Route<IncrementalAlterConfigsRequest>(
          session, c, r, Where::kPool,
          [this, c](IncrementalAlterConfigsRequest& req) { IncrementalAlterConfigs(c, req); });
  }
  Refuse(session, c, "unknown api key");
}

}  // namespace runnel::kafka
