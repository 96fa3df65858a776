// Request dispatch: decode, call the store or groups, encode the response.
#include "runnel/broker/broker.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <set>
#include <unordered_map>

#include "executors.h"
#include "runnel/broker/auth.h"
#include "runnel/broker/metrics.h"
#include "runnel/common/clock.h"
#include "runnel/common/coding.h"
#include "runnel/common/protocol.h"
#include "runnel/storage/groups.h"

namespace runnel::broker {

namespace proto = runnel::proto;
using storage::AckMode;
using wire::Api;
using wire::ErrorCode;
using SteadyClock = std::chrono::steady_clock;

class Session {
 public:
  explicit Session(ThreadPool& appenders) : produce(std::make_shared<SerialQueue>(appenders)) {}
  std::shared_ptr<SerialQueue> produce;
  // Touched only by Handle, which a connection calls from one thread at a time.
  std::shared_ptr<const Principal> principal;  // set by a successful Authenticate
  bool refused = false;
};

namespace {

// One request in flight.
struct Call {
  wire::FrameHeader header;
  std::string body;
  ResponseFn respond;
  SteadyClock::time_point start;
  std::shared_ptr<const Principal> principal;  // null: access control is off
};
using CallPtr = std::shared_ptr<Call>;

std::vector<std::string> FrameAround(const wire::FrameHeader& h, std::vector<std::string> body) {
  size_t n = 0;
  for (const auto& p : body) n += p.size();
  body.insert(body.begin(), wire::EncodeFrameHeader(h.api, h.version, h.correlation_id, n));
  return body;
}

std::string Key(std::string_view topic, int32_t partition) {
  std::string k(topic);
  k.push_back('\0');
  k.append(std::to_string(partition));
  return k;
}

uint64_t CountRecords(std::string_view batches) {
  uint64_t n = 0;
  while (batches.size() >= kBatchHeaderSize) {
    BatchHeader h;
    if (!PeekBatchHeader(batches, &h).ok()) break;
    n += static_cast<uint64_t>(std::max(0, h.record_count));
    batches.remove_prefix(std::min(batches.size(), h.total_size()));
  }
  return n;
}

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

std::vector<proto::TopicPartitionRef> ToWire(const std::vector<storage::TopicPartition>& tps) {
  std::vector<proto::TopicPartitionRef> out;
  for (const auto& tp : tps) out.push_back({tp.topic, tp.partition.value()});
  return out;
}

}  // namespace

class Broker::Impl {
 public:
  Impl(Broker& b, const BrokerOptions& o)
      : broker_(b),
        options_(o),
        workers_(o.worker_threads, "runnel-work"),
        appenders_(o.append_threads, "runnel-append"),
        waiters_(workers_) {}

  void Handle(const std::shared_ptr<Session>& session, wire::Frame f, ResponseFn respond);
  void BeginShutdown() {
    shutting_down_.store(true);
    waiters_.ReleaseAll();
  }
  void WaitIdle() {
    std::unique_lock lk(idle_mu_);
    idle_cv_.wait(lk, [&] { return inflight_ == 0; });
  }
  void StopPools() {
    workers_.Stop();
    appenders_.Stop();
  }
  void OnHighWatermark(std::string_view topic, Partition p) {
    waiters_.Notify(Key(topic, p.value()));
    waiters_.Notify(std::string(topic));
  }

  ThreadPool& appenders() { return appenders_; }

 private:
  storage::LogStore& store() { return *broker_.store_; }
  storage::Groups& groups() { return broker_.store_->groups(); }
  Metrics& metrics() { return *broker_.metrics_; }

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
    Done();
  }
  void Done() {
    std::lock_guard lk(idle_mu_);
    if (--inflight_ == 0) idle_cv_.notify_all();
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
      if (Status s = Authorize(*c->principal, *req); !s.ok()) {
        metrics().auth_denied.fetch_add(1, std::memory_order_relaxed);
        return ReplyStatus(c, s);
      }
    }
    fn(*req);
  }

  void Authenticate(Session& session, const CallPtr& c);

  // ---- access control: what each request needs (see ARCHITECTURE.md "Access control") ----
  Status Authorize(const Principal&, const proto::ApiVersionsRequest&) { return Status::OK(); }
  Status Authorize(const Principal& p, const proto::ProduceRequest& r) {
    for (const auto& part : r.partitions)
      RUNNEL_RETURN_IF_ERROR(p.OnTopic(Op::kProduce, part.topic));
    return Status::OK();
  }
  Status Authorize(const Principal& p, const proto::FetchRequest& r) {
    for (const auto& part : r.partitions)
      RUNNEL_RETURN_IF_ERROR(p.OnTopic(Op::kConsume, part.topic));
    return Status::OK();
  }
  Status Authorize(const Principal& p, const proto::ListOffsetsRequest& r) {
    for (const auto& part : r.partitions) RUNNEL_RETURN_IF_ERROR(p.SeeTopic(part.topic));
    return Status::OK();
  }
  Status Authorize(const Principal& p, const proto::MetadataRequest& r) {
    // Without names the answer lists only visible topics (Metadata()); auto-creating a topic
    // needs the right to produce to it (checked there).
    for (const auto& t : r.topics) RUNNEL_RETURN_IF_ERROR(p.SeeTopic(t));
    return Status::OK();
  }
  Status Authorize(const Principal& p, const proto::CreateTopicRequest& r) {
    return p.OnTopic(Op::kAdmin, r.name);
  }
  Status Authorize(const Principal& p, const proto::DeleteTopicRequest& r) {
    return p.OnTopic(Op::kAdmin, r.name);
  }
  Status Authorize(const Principal& p, const proto::AlterTopicRequest& r) {
    return p.OnTopic(Op::kAdmin, r.name);
  }
  Status Authorize(const Principal& p, const proto::InitProducerIdRequest&) {
    return p.Allows(Op::kProduce);
  }
  // A group operation: the operation on the group, and for a queue group consuming its topic.
  Status OnGroup(const Principal& p, Op op, const std::string& group) {
    RUNNEL_RETURN_IF_ERROR(p.OnGroup(op, group));
    if (op != Op::kConsume) return Status::OK();
    auto topic = GroupTopic(group);
    if (!topic.ok() || topic->empty()) return Status::OK();  // unknown or a stream group
    return p.OnTopic(Op::kConsume, *topic);
  }
  Status Authorize(const Principal& p, const proto::JoinGroupRequest& r) {
    RUNNEL_RETURN_IF_ERROR(p.OnGroup(Op::kConsume, r.group));
    for (const auto& t : r.topics) RUNNEL_RETURN_IF_ERROR(p.OnTopic(Op::kConsume, t));
    return Status::OK();
  }
  Status Authorize(const Principal& p, const proto::HeartbeatRequest& r) {
    return p.OnGroup(Op::kConsume, r.group);
  }
  Status Authorize(const Principal& p, const proto::LeaveGroupRequest& r) {
    return p.OnGroup(Op::kConsume, r.group);
  }
  Status Authorize(const Principal& p, const proto::CommitOffsetsRequest& r) {
    // An admin reset (no member) moves a group's positions for everyone: admin on the group.
    const bool reset = r.member_id.empty() && r.generation == -1;
    RUNNEL_RETURN_IF_ERROR(p.OnGroup(reset ? Op::kAdmin : Op::kConsume, r.group));
    for (const auto& o : r.offsets) RUNNEL_RETURN_IF_ERROR(p.SeeTopic(o.topic));
    return reset ? Status::OK() : OnGroup(p, Op::kConsume, r.group);
  }
  Status Authorize(const Principal& p, const proto::FetchOffsetsRequest& r) {
    RUNNEL_RETURN_IF_ERROR(p.SeeGroup(r.group));
    for (const auto& o : r.partitions) RUNNEL_RETURN_IF_ERROR(p.SeeTopic(o.topic));
    return Status::OK();
  }
  Status Authorize(const Principal& p, const proto::CreateQueueGroupRequest& r) {
    RUNNEL_RETURN_IF_ERROR(p.OnGroup(Op::kConsume, r.group));
    for (const auto& [k, v] : r.config) {
      if (k == "topic") RUNNEL_RETURN_IF_ERROR(p.OnTopic(Op::kConsume, v));
      if (k == "dlq.topic") RUNNEL_RETURN_IF_ERROR(p.OnTopic(Op::kProduce, v));
    }
    return Status::OK();
  }
  template <class Req>
    requires requires(const Req& r) { r.consumer; }
  Status Authorize(const Principal& p, const Req& r) {  // Deliver Ack Nack Reject Extend Claim ListPending
    return OnGroup(p, Op::kConsume, r.group);
  }
  Status Authorize(const Principal& p, const proto::ListDeadLettersRequest& r) {
    return OnGroup(p, Op::kConsume, r.group);
  }
  Status Authorize(const Principal& p, const proto::RedriveRequest& r) {
    RUNNEL_RETURN_IF_ERROR(p.OnGroup(Op::kAdmin, r.group));
    return r.to_topic.empty() ? Status::OK() : p.OnTopic(Op::kProduce, r.to_topic);
  }
  Status Authorize(const Principal& p, const proto::PurgeDeadLettersRequest& r) {
    return p.OnGroup(Op::kAdmin, r.group);
  }
  Status Authorize(const Principal&, const proto::ListGroupsRequest&) {
    return Status::OK();  // lists only the visible groups
  }
  Status Authorize(const Principal& p, const proto::DescribeGroupRequest& r) {
    return p.SeeGroup(r.group);
  }
  Status Authorize(const Principal& p, const proto::DeleteGroupRequest& r) {
    return p.OnGroup(Op::kAdmin, r.group);
  }
  Status Authorize(const Principal& p, const proto::RecordStatusRequest& r) {
    return p.SeeTopic(r.topic);
  }
  Status Authorize(const Principal& p, const proto::StatsRequest&) { return p.Allows(Op::kAdmin); }
  Status Authorize(const Principal&, const proto::AuthenticateRequest&) { return Status::OK(); }

  void Dispatch(const CallPtr& c);
  void Produce(const CallPtr& c);
  void Fetch(const CallPtr& c, std::shared_ptr<proto::FetchRequest> req,
             SteadyClock::time_point deadline, bool final_attempt);
  void Deliver(const CallPtr& c, std::shared_ptr<proto::DeliverRequest> req,
               SteadyClock::time_point deadline);
  void Metadata(const CallPtr& c, const proto::MetadataRequest& req);
  Status EnsureTopic(const std::string& topic);
  Result<std::string> GroupTopic(const std::string& group);
  int64_t NextProducerId();

  Broker& broker_;
  BrokerOptions options_;
  ThreadPool workers_;
  ThreadPool appenders_;
  WaitRegistry waiters_;
  std::atomic<bool> shutting_down_{false};
  std::mutex idle_mu_;
  std::condition_variable idle_cv_;
  int64_t inflight_ = 0;
  std::atomic<int64_t> last_producer_id_{0};
  std::mutex cache_mu_;
  std::set<std::string, std::less<>> known_topics_;
  std::unordered_map<std::string, std::string> group_topics_;
};

void Broker::Impl::Handle(const std::shared_ptr<Session>& session, wire::Frame f,
                          ResponseFn respond) {
  auto c = std::make_shared<Call>(Call{f.header, std::move(f.body), std::move(respond),
                                       SteadyClock::now()});
  {
    std::lock_guard lk(idle_mu_);
    ++inflight_;
  }
  const uint16_t api = c->header.api;
  if (shutting_down_.load()) {
    return ReplyStatus(c, Status::Shutdown("the broker is shutting down"));
  }
  // Before anything else: an unauthenticated session learns nothing, not even which apis exist.
  const bool authenticate = api == static_cast<uint16_t>(Api::kAuthenticate);
  if (options_.auth && !authenticate) {
    if (!session->principal) {
      session->refused = true;
      metrics().auth_failures.fetch_add(1, std::memory_order_relaxed);
      return ReplyStatus(c, Status::Unauthenticated(
                                "authentication required: send Authenticate with a token first"));
    }
    c->principal = session->principal;
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
  if (authenticate) return Authenticate(*session, c);  // inline: the next frame sees its result
  switch (static_cast<Api>(api)) {
    case Api::kProduce:
      session->produce->Post([this, c] { Produce(c); });
      return;
    case Api::kApiVersions:
    case Api::kInitProducerId:
      return Dispatch(c);  // cheap: answer on the caller's thread
    default:
      workers_.Post([this, c] { Dispatch(c); });
  }
}

void Broker::Impl::Authenticate(Session& session, const CallPtr& c) {
  WithRequest<proto::AuthenticateRequest>(c, [&](proto::AuthenticateRequest& req) {
    proto::AuthenticateResponse resp;
    if (!options_.auth) {
      resp.principal = "anonymous";  // access control is off: every token is as good as none
      return Reply(c, Status::OK(), &resp);
    }
    auto p = options_.auth->Authenticate(req.token);
    if (!p.ok()) {
      session.principal.reset();
      session.refused = true;
      metrics().auth_failures.fetch_add(1, std::memory_order_relaxed);
      return Reply<proto::AuthenticateResponse>(c, p.status(), nullptr);
    }
    session.principal = *p;
    resp.principal = (*p)->name;
    Reply(c, Status::OK(), &resp);
  });
}

int64_t Broker::Impl::NextProducerId() {
  // Wall-clock milliseconds << 12 plus a counter: unique across restarts without persisted
  // state as long as the clock does not step back and fewer than 4096 ids are taken per ms.
  const int64_t floor = WallClockMs() << 12;
  int64_t last = last_producer_id_.load();
  int64_t next;
  do {
    next = std::max(floor, last + 1);
  } while (!last_producer_id_.compare_exchange_weak(last, next));
  return next;
}

Status Broker::Impl::EnsureTopic(const std::string& topic) {
  {
    std::lock_guard lk(cache_mu_);
    if (known_topics_.count(topic)) return Status::OK();
  }
  auto info = store().DescribeTopic(topic);
  if (!info.ok()) {
    if (!info.status().IsNotFound() || !options_.auto_create_topics) return info.status();
    Status s = store().CreateTopic(topic, options_.default_partitions,
                                   options_.store.default_topic_config);
    if (!s.ok() && s.code() != StatusCode::kAlreadyExists) return s;
  }
  std::lock_guard lk(cache_mu_);
  known_topics_.insert(topic);
  return Status::OK();
}

Result<std::string> Broker::Impl::GroupTopic(const std::string& group) {
  {
    std::lock_guard lk(cache_mu_);
    if (auto it = group_topics_.find(group); it != group_topics_.end()) return it->second;
  }
  RUNNEL_ASSIGN_OR_RETURN(auto d, groups().DescribeGroup(group));
  std::lock_guard lk(cache_mu_);
  group_topics_[group] = d.config.topic;
  return d.config.topic;
}

void Broker::Impl::Produce(const CallPtr& c) {
  WithRequest<proto::ProduceRequest>(c, [&](proto::ProduceRequest& req) {
    if (req.acks > 2) {
      return ReplyStatus(c, Status::InvalidArgument("acks must be 0, 1 or 2, not " +
                                                    std::to_string(req.acks)));
    }
    struct State {
      std::mutex mu;
      proto::ProduceResponse resp;
      size_t remaining;
    };
    auto st = std::make_shared<State>();
    st->remaining = req.partitions.size();
    st->resp.partitions.resize(req.partitions.size());
    if (req.partitions.empty()) return Reply(c, Status::OK(), &st->resp);
    auto finish_one = [this, c, st](size_t i, Result<storage::AppendResult> r, size_t bytes) {
      bool last = false;
      {
        std::lock_guard lk(st->mu);
        auto& out = st->resp.partitions[i];
        if (r.ok()) {
          out.base_offset = r->base_offset.value();
          out.last_offset = r->last_offset.value();
          out.records_written = r->records_written;
          out.duplicate_batch = r->duplicate_batch;
          for (const auto& d : r->duplicates)
            out.duplicates.push_back({d.index, d.partition.value(), d.offset.value()});
          if (r->records_written > 0 && !r->duplicate_batch) {
            metrics().OnProduced(out.topic, out.partition,
                                 static_cast<uint64_t>(r->records_written), bytes);
          }
        } else {
          out.error = proto::ItemError::From(r.status());
        }
        last = --st->remaining == 0;
      }
      if (last) Reply(c, Status::OK(), &st->resp);
    };
    for (size_t i = 0; i < req.partitions.size(); ++i) {
      auto& p = req.partitions[i];
      st->resp.partitions[i].topic = p.topic;
      st->resp.partitions[i].partition = p.partition;
      if (Status s = EnsureTopic(p.topic); !s.ok()) {
        finish_one(i, s, 0);
        continue;
      }
      const size_t bytes = p.batch.bytes.size();
      storage::AppendRequest ar{p.topic, Partition(p.partition), std::move(p.batch.bytes),
                                static_cast<AckMode>(req.acks)};
      store().AppendAsync(std::move(ar), [finish_one, i, bytes](Result<storage::AppendResult> r) {
        finish_one(i, std::move(r), bytes);
      });
    }
  });
}

void Broker::Impl::Fetch(const CallPtr& c, std::shared_ptr<proto::FetchRequest> req,
                         SteadyClock::time_point deadline, bool final_attempt) {
  proto::FetchResponse resp;
  int64_t total = 0;
  bool any_error = false;
  for (const auto& p : req->partitions) {
    proto::FetchPartitionResult out;
    out.topic = p.topic;
    out.partition = p.partition;
    const int64_t room = std::min<int64_t>(p.max_bytes, req->max_bytes - total);
    if (room <= 0 && total > 0) {
      // The response is full: report positions only.
      auto hwm = store().ListOffset(p.topic, Partition(p.partition), storage::OffsetQuery::Latest());
      if (hwm.ok()) out.high_watermark = hwm->value();
      resp.partitions.push_back(std::move(out));
      continue;
    }
    auto r = store().Read(p.topic, Partition(p.partition), Offset(p.offset),
                          static_cast<size_t>(std::max<int64_t>(room, 1)));
    if (r.ok()) {
      out.high_watermark = r->high_watermark.value();
      out.log_start = r->log_start.value();
      total += static_cast<int64_t>(r->records.size());
      if (!r->records.empty())
        metrics().OnFetched(p.topic, p.partition, CountRecords(r->records), r->records.size());
      out.records.bytes = std::move(r->records);
    } else {
      any_error = true;
      out.error = proto::ItemError::From(r.status());
      auto start =
          store().ListOffset(p.topic, Partition(p.partition), storage::OffsetQuery::Earliest());
      auto end = store().ListOffset(p.topic, Partition(p.partition), storage::OffsetQuery::Latest());
      if (start.ok()) out.log_start = start->value();
      if (end.ok()) out.high_watermark = end->value();
    }
    resp.partitions.push_back(std::move(out));
  }
  const bool satisfied = total >= std::max(1, req->min_bytes) || any_error;
  if (satisfied || final_attempt || req->max_wait_ms <= 0 || shutting_down_.load() ||
      SteadyClock::now() >= deadline) {
    return Reply(c, Status::OK(), &resp);
  }
  std::vector<std::string> keys;
  for (const auto& p : req->partitions) keys.push_back(Key(p.topic, p.partition));
  auto ready = [this, req] {
    for (const auto& p : req->partitions) {
      auto hwm = store().ListOffset(p.topic, Partition(p.partition), storage::OffsetQuery::Latest());
      if (hwm.ok() && hwm->value() > p.offset) return true;
    }
    return false;
  };
  waiters_.Wait(
      std::move(keys), deadline,
      [this, c, req, deadline](bool timed_out) { Fetch(c, req, deadline, timed_out); }, ready,
      /*run_inline=*/true);  // a woken fetch reads the tail from memory: answer it right away
}

void Broker::Impl::Deliver(const CallPtr& c, std::shared_ptr<proto::DeliverRequest> req,
                           SteadyClock::time_point deadline) {
  auto topic = GroupTopic(req->group);
  auto records = groups().Deliver(req->group, req->consumer, req->max_records,
                                  static_cast<size_t>(std::max(1, req->max_bytes)));
  if (!records.ok()) return Reply<proto::DeliverResponse>(c, records.status(), nullptr);
  const auto now = SteadyClock::now();
  if (records->empty() && topic.ok() && now < deadline && !shutting_down_.load()) {
    // Nothing deliverable: wait for new records on the topic; look again at least every 100 ms
    // for retries and expired locks coming due.
    const auto wake = std::min(deadline, now + std::chrono::milliseconds(100));
    waiters_.Wait({*topic}, wake, [this, c, req, deadline](bool) { Deliver(c, req, deadline); },
                  nullptr);
    return;
  }
  proto::DeliverResponse resp;
  if (topic.ok()) resp.topic = *topic;
  resp.records.reserve(records->size());
  for (auto& r : *records) resp.records.push_back(ToWire(std::move(r)));
  Reply(c, Status::OK(), &resp);
}

void Broker::Impl::Metadata(const CallPtr& c, const proto::MetadataRequest& req) {
  proto::MetadataResponse resp;
  std::vector<std::string> names = req.topics.empty() ? store().ListTopics() : req.topics;
  for (const auto& name : names) {
    if (req.topics.empty() && c->principal && !c->principal->SeesTopic(name)) continue;
    proto::TopicMetadata tm;
    tm.name = name;
    auto info = store().DescribeTopic(name);
    if (!info.ok() && info.status().IsNotFound() && req.allow_auto_create &&
        options_.auto_create_topics &&
        (!c->principal || c->principal->OnTopic(Op::kProduce, name).ok())) {
      if (Status s = EnsureTopic(name); s.ok()) info = store().DescribeTopic(name);
    }
    if (!info.ok()) {
      tm.error = proto::ItemError::From(info.status());
    } else {
      tm.id = info->id.value();
      tm.config = info->config.ToList();
      for (const auto& p : info->partitions) {
        tm.partitions.push_back({p.partition.value(), p.log_start.value(),
                                 p.high_watermark.value(), static_cast<int64_t>(p.size_bytes)});
      }
    }
    resp.topics.push_back(std::move(tm));
  }
  Reply(c, Status::OK(), &resp);
}

void Broker::Impl::Dispatch(const CallPtr& c) {
  switch (static_cast<Api>(c->header.api)) {
    case Api::kApiVersions:
      return WithRequest<proto::ApiVersionsRequest>(c, [&](auto&) {
        proto::ApiVersionsResponse resp;
        for (uint16_t a = 0; a < 64; ++a) {
          if (proto::ServedVersion(a) >= 0)
            resp.apis.push_back({a, 0, static_cast<uint16_t>(proto::ServedVersion(a))});
        }
        resp.broker_version = "runneld 0.1.0";
        Reply(c, Status::OK(), &resp);
      });
    case Api::kInitProducerId:
      return WithRequest<proto::InitProducerIdRequest>(c, [&](auto&) {
        proto::InitProducerIdResponse resp{NextProducerId(), 0};
        Reply(c, Status::OK(), &resp);
      });
    case Api::kFetch:
      return WithRequest<proto::FetchRequest>(c, [&](proto::FetchRequest& req) {
        const int32_t wait = std::clamp(req.max_wait_ms, 0, options_.max_wait_ms);
        auto shared = std::make_shared<proto::FetchRequest>(std::move(req));
        Fetch(c, shared, SteadyClock::now() + std::chrono::milliseconds(wait), false);
      });
    case Api::kListOffsets:
      return WithRequest<proto::ListOffsetsRequest>(c, [&](proto::ListOffsetsRequest& req) {
        proto::ListOffsetsResponse resp;
        for (const auto& p : req.partitions) {
          proto::ListOffsetsResult out{p.topic, p.partition, {}, -1};
          storage::OffsetQuery q = p.spec == proto::OffsetSpec::kEarliest
                                       ? storage::OffsetQuery::Earliest()
                                   : p.spec == proto::OffsetSpec::kTimestamp
                                       ? storage::OffsetQuery::AtTime(p.timestamp_ms)
                                       : storage::OffsetQuery::Latest();
          auto r = store().ListOffset(p.topic, Partition(p.partition), q);
          if (r.ok()) {
            out.offset = r->value();
          } else {
            out.error = proto::ItemError::From(r.status());
          }
          resp.partitions.push_back(std::move(out));
        }
        Reply(c, Status::OK(), &resp);
      });
    case Api::kMetadata:
      return WithRequest<proto::MetadataRequest>(
          c, [&](proto::MetadataRequest& req) { Metadata(c, req); });
    case Api::kCreateTopic:
      return WithRequest<proto::CreateTopicRequest>(c, [&](proto::CreateTopicRequest& req) {
        storage::TopicConfig cfg = options_.store.default_topic_config;
        for (const auto& [k, v] : req.config) {
          if (Status s = cfg.Set(k, v); !s.ok()) return ReplyStatus(c, s);
        }
        ReplyStatus(c, store().CreateTopic(req.name, req.partitions, cfg));
      });
    case Api::kDeleteTopic:
      return WithRequest<proto::DeleteTopicRequest>(c, [&](proto::DeleteTopicRequest& req) {
        Status s = store().DeleteTopic(req.name);
        {
          std::lock_guard lk(cache_mu_);
          known_topics_.erase(req.name);
        }
        ReplyStatus(c, s);
      });
    case Api::kAlterTopic:
      return WithRequest<proto::AlterTopicRequest>(c, [&](proto::AlterTopicRequest& req) {
        ReplyStatus(c, store().AlterTopic(req.name, req.config, req.new_partitions));
      });
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
          resp.offsets.push_back({tps[i].topic, tps[i].partition.value(), o.offset.value(),
                                  o.metadata, o.commit_ms});
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
            {
              std::lock_guard lk(cache_mu_);
              group_topics_.erase(req.group);
            }
            ReplyStatus(c, groups().CreateQueueGroup(req.group, cfg, start));
          });
    case Api::kDeliver:
      return WithRequest<proto::DeliverRequest>(c, [&](proto::DeliverRequest& req) {
        const int32_t wait = std::clamp(req.max_wait_ms, 0, options_.max_wait_ms);
        auto shared = std::make_shared<proto::DeliverRequest>(std::move(req));
        Deliver(c, shared, SteadyClock::now() + std::chrono::milliseconds(wait));
      });
    case Api::kAck:
      return WithRequest<proto::AckRequest>(c, [&](proto::AckRequest& req) {
        ReplyStatus(c, groups().Ack(req.group, req.consumer, ToRefs(req.refs)));
      });
    case Api::kNack:
      return WithRequest<proto::NackRequest>(c, [&](proto::NackRequest& req) {
        ReplyStatus(c, groups().Nack(req.group, req.consumer, ToRefs(req.refs), req.delay_ms));
      });
    case Api::kReject:
      return WithRequest<proto::RejectRequest>(c, [&](proto::RejectRequest& req) {
        ReplyStatus(c, groups().Reject(req.group, req.consumer, ToRefs(req.refs), req.reason));
      });
    case Api::kExtend:
      return WithRequest<proto::ExtendRequest>(c, [&](proto::ExtendRequest& req) {
        auto r = groups().Extend(req.group, req.consumer, ToRefs(req.refs));
        if (!r.ok()) return Reply<proto::ExtendResponse>(c, r.status(), nullptr);
        proto::ExtendResponse resp{*r};
        Reply(c, Status::OK(), &resp);
      });
    case Api::kClaim:
      return WithRequest<proto::ClaimRequest>(c, [&](proto::ClaimRequest& req) {
        auto r = groups().Claim(req.group, req.consumer, req.min_idle_ms, req.max_records);
        if (!r.ok()) return Reply<proto::DeliverResponse>(c, r.status(), nullptr);
        proto::DeliverResponse resp;
        if (auto t = GroupTopic(req.group); t.ok()) resp.topic = *t;
        for (auto& rec : *r) resp.records.push_back(ToWire(std::move(rec)));
        Reply(c, Status::OK(), &resp);
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
        if (auto t = GroupTopic(req.group); t.ok()) resp.topic = *t;
        for (auto& e : *r) {
          resp.entries.push_back({e.partition.value(), e.offset.value(),
                                  static_cast<proto::PendingKindWire>(e.kind),
                                  std::move(e.consumer), e.deliveries, e.idle_ms, e.due_ms,
                                  e.first_delivery_ms});
        }
        Reply(c, Status::OK(), &resp);
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
        {
          std::lock_guard lk(cache_mu_);
          group_topics_.erase(req.group);
        }
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
    case Api::kProduce:
      return Produce(c);
    case Api::kAuthenticate:
      break;  // answered in Handle
  }
  ReplyCode<proto::EmptyResponse>(c, ErrorCode::kUnknownApi,
                                  "unknown api " + std::to_string(c->header.api), nullptr);
}

// ---- Broker -----------------------------------------------------------------------------------

Result<std::unique_ptr<Broker>> Broker::Open(BrokerOptions options) {
  std::unique_ptr<Broker> b(new Broker());
  b->options_ = options;
  b->metrics_ = std::make_unique<Metrics>();
  b->impl_ = std::make_unique<Impl>(*b, options);
  Impl* impl = b->impl_.get();
  Metrics* metrics = b->metrics_.get();
  storage::LogStoreOptions so = options.store;
  auto user_hwm = so.on_high_watermark;
  so.on_high_watermark = [impl, user_hwm](std::string_view t, Partition p, Offset hwm) {
    impl->OnHighWatermark(t, p);
    if (user_hwm) user_hwm(t, p, hwm);
  };
  so.on_commit = [metrics](const storage::CommitRoundInfo& info) { metrics->OnCommit(info); };
  auto store = storage::LogStore::Open(so);
  if (!store.ok()) {
    b->impl_->StopPools();
    return store.status();
  }
  b->store_ = std::move(store).value();
  return b;
}

Broker::~Broker() {
  if (!impl_) return;
  BeginShutdown();
  WaitIdle();
  impl_->StopPools();
  store_.reset();  // drains the committer; its last callbacks reach a stopped pool
  impl_.reset();
}

bool Broker::Refused(const Session& session) { return session.refused; }

std::shared_ptr<Session> Broker::NewSession() {
  return std::make_shared<Session>(impl_->appenders());
}

void Broker::Handle(const std::shared_ptr<Session>& session, wire::Frame request,
                    ResponseFn respond) {
  impl_->Handle(session, std::move(request), std::move(respond));
}

size_t Broker::ResponseReservation(const wire::Frame& request) {
  // FetchRequest starts max_wait_ms:i32 min_bytes:i32 max_bytes:i32 (see protocol.h).
  if (request.header.api != static_cast<uint16_t>(Api::kFetch) || request.body.size() < 12) return 0;
  const auto max_bytes = static_cast<int32_t>(DecodeFixed32BE(request.body.data() + 8));
  return max_bytes > 0 ? static_cast<size_t>(max_bytes) : 0;
}

void Broker::BeginShutdown() { impl_->BeginShutdown(); }
void Broker::WaitIdle() { impl_->WaitIdle(); }

std::string Broker::PrometheusText() { return RenderPrometheus(*metrics_, *store_); }
std::string Broker::StatsJson() { return RenderStatsJson(*metrics_, *store_); }

std::vector<std::string> ErrorFrame(const wire::FrameHeader& request, const Status& error) {
  return FrameAround(request, proto::EncodeResponse<proto::EmptyResponse>(error, nullptr));
}

}  // namespace runnel::broker
