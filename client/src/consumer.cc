// Consumer internals: stream mode (join, fetch with long-poll, commit, background heartbeats,
// rejoin after a rebalance) and queue mode (deliver with long-poll, ack / nack / reject / extend).
#include "runnel/client/consumer.h"

#include <pthread.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include "runnel/common/record_batch.h"

namespace runnel::client {

const std::string* ConsumerRecord::FindHeader(std::string_view name) const {
  for (const auto& [k, v] : headers)
    if (k == name) return v ? &*v : nullptr;
  return nullptr;
}

namespace {

using SteadyClock = std::chrono::steady_clock;
using TP = proto::TopicPartitionRef;

std::string DefaultConsumerName() {
  static std::atomic<int> n{0};
  char host[256] = {};
  ::gethostname(host, sizeof host - 1);
  return std::string(host) + "-" + std::to_string(::getpid()) + "-" + std::to_string(++n);
}

class ConsumerImpl final : public Consumer {
 public:
  ConsumerImpl(std::shared_ptr<Connection> c, ConsumerOptions o)
      : conn_(std::move(c)), options_(std::move(o)) {
    name_ = options_.consumer_name.empty() ? DefaultConsumerName() : options_.consumer_name;
    if (options_.mode == ConsumerMode::kStream && !options_.group.empty()) {
      heartbeat_ = std::thread([this] {
        pthread_setname_np(pthread_self(), "runnel-heartbeat");
        HeartbeatLoop();
      });
    }
  }
  ~ConsumerImpl() override { Close(); }

  Result<std::vector<ConsumerRecord>> Poll(int64_t timeout_ms, int32_t max_records) override {
    if (closed_) return Status::Shutdown("consumer is closed");
    if (max_records <= 0) max_records = options_.max_poll_records;
    const auto deadline = SteadyClock::now() + std::chrono::milliseconds(std::max<int64_t>(0, timeout_ms));
    return options_.mode == ConsumerMode::kQueue ? PollQueue(deadline, max_records)
                                                 : PollStream(deadline, max_records);
  }

  Status Commit() override {
    std::vector<std::pair<TP, int64_t>> offsets;
    {
      std::lock_guard lk(mu_);
      for (const auto& [tp, off] : consumed_) offsets.emplace_back(tp, off);
    }
    if (offsets.empty()) return Status::OK();
    return Commit(offsets);
  }

  Status Commit(const std::vector<std::pair<TP, int64_t>>& offsets) override {
    if (options_.mode != ConsumerMode::kStream || options_.group.empty())
      return Status::InvalidArgument("commit needs a stream consumer with a group");
    proto::CommitOffsetsRequest req;
    {
      std::lock_guard lk(mu_);
      req.group = options_.group;
      req.member_id = member_id_;
      req.generation = generation_;
    }
    for (const auto& [tp, off] : offsets) req.offsets.push_back({tp.topic, tp.partition, off, ""});
    Status s = CallStatus(*conn_, std::move(req), options_.request_timeout_ms);
    if (s.code() == StatusCode::kFenced || s.IsNotFound()) {
      rejoin_.store(true);  // our view of the group is stale
    }
    if (s.ok()) last_commit_ = SteadyClock::now();
    return s;
  }

  Status Seek(const TP& tp, int64_t offset) override {
    std::lock_guard lk(mu_);
    if (!positions_.count(tp)) return Status::NotFound("partition is not assigned");
    positions_[tp] = offset;
    consumed_[tp] = offset;
    DropBuffered(tp);
    return Status::OK();
  }

  std::vector<TP> Assignment() const override {
    std::lock_guard lk(mu_);
    std::vector<TP> out;
    for (const auto& [tp, pos] : positions_) out.push_back(tp);
    return out;
  }
  std::optional<int64_t> Position(const TP& tp) const override {
    std::lock_guard lk(mu_);
    auto it = consumed_.find(tp);
    if (it == consumed_.end()) return std::nullopt;
    return it->second;
  }
  int32_t Generation() const override {
    std::lock_guard lk(mu_);
    return generation_;
  }
  std::string MemberId() const override {
    std::lock_guard lk(mu_);
    return member_id_;
  }

  Status Ack(const std::vector<ConsumerRecord>& records) override {
    proto::AckRequest req{options_.group, name_, Refs(records)};
    return CallStatus(*conn_, std::move(req), options_.request_timeout_ms);
  }
  Status Nack(const std::vector<ConsumerRecord>& records, int64_t delay_ms) override {
    proto::NackRequest req{options_.group, name_, delay_ms, Refs(records)};
    return CallStatus(*conn_, std::move(req), options_.request_timeout_ms);
  }
  Status Reject(const std::vector<ConsumerRecord>& records, std::string_view reason) override {
    proto::RejectRequest req{options_.group, name_, std::string(reason), Refs(records)};
    return CallStatus(*conn_, std::move(req), options_.request_timeout_ms);
  }
  Result<int64_t> Extend(const std::vector<ConsumerRecord>& records) override {
    proto::ExtendRequest req{options_.group, name_, Refs(records)};
    auto r = Call<proto::ExtendResponse>(*conn_, std::move(req), options_.request_timeout_ms);
    if (!r.ok()) return r.status();
    return r->lock_until_ms;
  }
  Result<std::vector<ConsumerRecord>> Claim(int64_t min_idle_ms, int32_t max_records) override {
    proto::ClaimRequest req{options_.group, name_, min_idle_ms, max_records};
    auto r = Call<proto::DeliverResponse>(*conn_, std::move(req), options_.request_timeout_ms);
    if (!r.ok()) return r.status();
    return FromDelivered(std::move(r).value());
  }
  const std::string& ConsumerName() const override { return name_; }

  void Close() override {
    if (closed_.exchange(true)) return;
    {
      std::lock_guard lk(hb_mu_);
      stop_heartbeat_ = true;
    }
    hb_cv_.notify_all();
    if (heartbeat_.joinable()) heartbeat_.join();
    if (options_.mode == ConsumerMode::kStream && !options_.group.empty() && !member_id_.empty()) {
      if (options_.auto_commit) (void)Commit();
      (void)CallStatus(*conn_, proto::LeaveGroupRequest{options_.group, member_id_},
                       options_.request_timeout_ms);
    }
  }

 private:
  static std::vector<proto::RecordRefWire> Refs(const std::vector<ConsumerRecord>& records) {
    std::vector<proto::RecordRefWire> refs;
    refs.reserve(records.size());
    for (const auto& r : records) refs.push_back({r.partition, r.offset});
    return refs;
  }

  static std::vector<ConsumerRecord> FromDelivered(proto::DeliverResponse resp) {
    std::vector<ConsumerRecord> out;
    out.reserve(resp.records.size());
    for (auto& d : resp.records) {
      ConsumerRecord r;
      r.topic = resp.topic;
      r.partition = d.partition;
      r.offset = d.offset;
      r.timestamp_ms = d.timestamp_ms;
      r.key = std::move(d.key);
      r.value = std::move(d.value);
      for (auto& h : d.headers) r.headers.emplace_back(std::move(h.key), std::move(h.value));
      r.deliveries = d.deliveries;
      r.lock_until_ms = d.lock_until_ms;
      out.push_back(std::move(r));
    }
    return out;
  }

  static void Backoff(SteadyClock::time_point deadline) {
    const auto until = std::min(deadline, SteadyClock::now() + std::chrono::milliseconds(100));
    std::this_thread::sleep_until(until);
  }

  // ---- queue mode ----
  Result<std::vector<ConsumerRecord>> PollQueue(SteadyClock::time_point deadline,
                                                 int32_t max_records) {
    bool created = false;
    for (;;) {
      const auto now = SteadyClock::now();
      const int64_t wait = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - now).count();
      proto::DeliverRequest req{options_.group, name_, max_records,
                                options_.fetch_max_bytes, static_cast<int32_t>(std::max<int64_t>(0, wait))};
      auto r = Call<proto::DeliverResponse>(*conn_, std::move(req),
                                            options_.request_timeout_ms + std::max<int64_t>(0, wait));
      if (r.ok()) return FromDelivered(std::move(r).value());
      if (r.status().IsNotFound() && options_.create_queue_group && !created) {
        RUNNEL_RETURN_IF_ERROR(CreateQueueGroup());
        created = true;
        continue;
      }
      if (!IsRetriable(r.status())) return r.status();
      if (SteadyClock::now() >= deadline) return std::vector<ConsumerRecord>{};
      Backoff(deadline);
    }
  }

  Status CreateQueueGroup() {
    if (options_.topics.size() != 1)
      return Status::InvalidArgument("a queue consumer needs exactly one topic to create its group");
    proto::CreateQueueGroupRequest req;
    req.group = options_.group;
    req.config = options_.queue_config;
    req.config.emplace_back("topic", options_.topics[0]);
    req.start = options_.queue_start == OffsetReset::kEarliest ? proto::StartKind::kEarliest
                                                               : proto::StartKind::kLatest;
    Status s = CallStatus(*conn_, std::move(req), options_.request_timeout_ms);
    return s.code() == StatusCode::kAlreadyExists ? Status::OK() : s;
  }

  // ---- stream mode ----
  void DropBuffered(const TP& tp) {
    std::deque<ConsumerRecord> keep;
    for (auto& r : buffer_)
      if (!(r.topic == tp.topic && r.partition == tp.partition)) keep.push_back(std::move(r));
    buffer_.swap(keep);
  }

  Result<int64_t> ListOffset(const TP& tp, proto::OffsetSpec spec, int64_t timestamp_ms = 0) {
    proto::ListOffsetsRequest req;
    req.partitions.push_back({tp.topic, tp.partition, spec, timestamp_ms});
    auto r = Call<proto::ListOffsetsResponse>(*conn_, std::move(req), options_.request_timeout_ms);
    if (!r.ok()) return r.status();
    if (r->partitions.size() != 1) return Status::Corruption("bad list offsets answer");
    if (!r->partitions[0].error.ok()) return r->partitions[0].error.ToStatus();
    return r->partitions[0].offset;
  }

  Result<int64_t> ResetOffset(const TP& tp) {
    return ListOffset(tp, options_.auto_offset_reset == OffsetReset::kEarliest
                              ? proto::OffsetSpec::kEarliest
                              : proto::OffsetSpec::kLatest);
  }

  // Where a partition without a committed offset starts.
  Result<int64_t> StartOffset(const TP& tp) {
    if (options_.start_timestamp_ms) {
      RUNNEL_ASSIGN_OR_RETURN(int64_t off, ListOffset(tp, proto::OffsetSpec::kTimestamp,
                                                      *options_.start_timestamp_ms));
      if (off >= 0) return off;
      return ListOffset(tp, proto::OffsetSpec::kLatest);  // nothing that late yet
    }
    if (options_.start_offset) {
      RUNNEL_ASSIGN_OR_RETURN(int64_t lo, ListOffset(tp, proto::OffsetSpec::kEarliest));
      RUNNEL_ASSIGN_OR_RETURN(int64_t hi, ListOffset(tp, proto::OffsetSpec::kLatest));
      return std::clamp(*options_.start_offset, lo, hi);
    }
    return ResetOffset(tp);
  }

  // Replaces the assignment: keeps positions of partitions we still own, looks up committed
  // offsets (or the reset position) for new ones.
  Status Assign(const std::vector<TP>& assignment) {
    prefetch_.reset();  // issued for the old assignment
    std::set<TP> next(assignment.begin(), assignment.end());
    std::vector<TP> added;
    {
      std::lock_guard lk(mu_);
      for (auto it = positions_.begin(); it != positions_.end();) {
        if (!next.count(it->first)) {
          DropBuffered(it->first);
          consumed_.erase(it->first);
          it = positions_.erase(it);
        } else {
          ++it;
        }
      }
      for (const TP& tp : next)
        if (!positions_.count(tp)) added.push_back(tp);
    }
    if (added.empty()) return Status::OK();
    std::map<TP, int64_t> start;
    if (!options_.group.empty()) {
      auto r = Call<proto::FetchOffsetsResponse>(
          *conn_, proto::FetchOffsetsRequest{options_.group, added}, options_.request_timeout_ms);
      if (!r.ok()) return r.status();
      for (const auto& o : r->offsets)
        if (o.offset >= 0) start[{o.topic, o.partition}] = o.offset;
    }
    for (const TP& tp : added) {
      if (!start.count(tp)) {
        RUNNEL_ASSIGN_OR_RETURN(int64_t off, StartOffset(tp));
        start[tp] = off;
      }
    }
    std::lock_guard lk(mu_);
    for (const TP& tp : added) {
      positions_[tp] = start[tp];
      consumed_[tp] = start[tp];
    }
    return Status::OK();
  }

  Status Join() {
    proto::JoinGroupRequest req;
    {
      std::lock_guard lk(mu_);
      req = {options_.group, member_id_, static_cast<int32_t>(options_.session_timeout_ms),
             options_.topics};
    }
    auto r = Call<proto::MembershipResponse>(*conn_, std::move(req), options_.request_timeout_ms);
    if (!r.ok() && r.status().IsNotFound()) {  // our member expired: join as a new one
      std::lock_guard lk(mu_);
      member_id_.clear();
      return Status::Busy("member expired; rejoining");
    }
    if (!r.ok()) return r.status();
    return ApplyMembership(*r);
  }

  Status ApplyMembership(const proto::MembershipResponse& m) {
    {
      std::lock_guard lk(mu_);
      member_id_ = m.member_id;
      generation_ = m.generation;
      pending_membership_.reset();
    }
    RUNNEL_RETURN_IF_ERROR(Assign(m.assignment));
    joined_ = true;
    rejoin_.store(false);
    return Status::OK();
  }

  // Without a group: read every partition of the topics.
  Status AssignAll() {
    proto::MetadataRequest req;
    req.topics = options_.topics;
    auto r = Call<proto::MetadataResponse>(*conn_, std::move(req), options_.request_timeout_ms);
    if (!r.ok()) return r.status();
    std::vector<TP> all;
    for (const auto& t : r->topics) {
      if (!t.error.ok()) return t.error.ToStatus();
      for (const auto& p : t.partitions) {
        if (options_.partitions.empty() ||
            std::find(options_.partitions.begin(), options_.partitions.end(), p.partition) !=
                options_.partitions.end()) {
          all.push_back({t.name, p.partition});
        }
      }
    }
    for (int32_t p : options_.partitions) {
      const bool found = std::any_of(all.begin(), all.end(), [&](const TP& tp) { return tp.partition == p; });
      if (!found) return Status::InvalidArgument("partition " + std::to_string(p) + " does not exist");
    }
    RUNNEL_RETURN_IF_ERROR(Assign(all));
    joined_ = true;
    return Status::OK();
  }

  Status MaybeAutoCommit(bool force) {
    if (!options_.auto_commit || options_.group.empty() || !joined_) return Status::OK();
    if (!force && SteadyClock::now() - last_commit_ <
                      std::chrono::milliseconds(options_.auto_commit_interval_ms)) {
      return Status::OK();
    }
    return Commit();
  }

  Result<std::vector<ConsumerRecord>> TakeBuffered(int32_t max_records) {
    std::vector<ConsumerRecord> out;
    std::lock_guard lk(mu_);
    while (!buffer_.empty() && out.size() < static_cast<size_t>(max_records)) {
      ConsumerRecord& r = buffer_.front();
      consumed_[{r.topic, r.partition}] = r.offset + 1;
      out.push_back(std::move(r));
      buffer_.pop_front();
    }
    return out;
  }

  Result<std::vector<ConsumerRecord>> PollStream(SteadyClock::time_point deadline,
                                                  int32_t max_records) {
    for (;;) {
      {
        std::lock_guard lk(mu_);
        if (!buffer_.empty()) break;
      }
      Status s;
      if (options_.group.empty()) {
        if (!joined_) s = AssignAll();
      } else {
        std::optional<proto::MembershipResponse> pending;
        {
          std::lock_guard lk(mu_);
          pending = pending_membership_;
        }
        if (!joined_ || rejoin_.load()) {
          if (joined_) (void)MaybeAutoCommit(true);
          s = Join();
        } else if (pending) {
          s = ApplyMembership(*pending);
          if (s.ok()) (void)MaybeAutoCommit(true);  // keep progress on partitions we still own
        } else {
          (void)MaybeAutoCommit(false);
        }
      }
      if (!s.ok()) {
        if (!IsRetriable(s)) return s;
        if (SteadyClock::now() >= deadline) return std::vector<ConsumerRecord>{};
        Backoff(deadline);
        continue;
      }
      s = FetchOnce(deadline);
      if (!s.ok() && !IsRetriable(s)) return s;
      {
        std::lock_guard lk(mu_);
        if (!buffer_.empty()) break;
      }
      if (SteadyClock::now() >= deadline) return std::vector<ConsumerRecord>{};
      if (!s.ok()) Backoff(deadline);
    }
    return TakeBuffered(max_records);
  }

  struct Prefetch {
    proto::FetchRequest request;
    std::future<Result<proto::FetchResponse>> response;
  };

  // Sends a Fetch for the current positions without waiting for it.
  std::unique_ptr<Prefetch> IssueFetch(int32_t max_wait_ms) {
    auto pf = std::make_unique<Prefetch>();
    {
      std::lock_guard lk(mu_);
      for (const auto& [tp, pos] : positions_)
        pf->request.partitions.push_back({tp.topic, tp.partition, pos, options_.partition_fetch_max_bytes});
    }
    if (pf->request.partitions.empty()) return nullptr;
    pf->request.max_wait_ms = max_wait_ms;
    pf->request.max_bytes = options_.fetch_max_bytes;
    auto promise = std::make_shared<std::promise<Result<proto::FetchResponse>>>();
    pf->response = promise->get_future();
    CallAsync<proto::FetchResponse>(*conn_, pf->request, options_.request_timeout_ms + max_wait_ms,
                                    [promise](Result<proto::FetchResponse> r) {
                                      promise->set_value(std::move(r));
                                    });
    return pf;
  }

  // One fetch round trip. While the application works on what this returns, the next fetch is
  // already on its way (a prefetch), so broker reads and client decoding overlap.
  Status FetchOnce(SteadyClock::time_point deadline) {
    const int64_t remaining =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - SteadyClock::now()).count();
    // Bounded so a rebalance noticed by the heartbeat thread is applied promptly.
    const int32_t wait = static_cast<int32_t>(std::clamp<int64_t>(remaining, 0, 500));
    std::unique_ptr<Prefetch> pf = std::move(prefetch_);
    if (!pf) pf = IssueFetch(wait);
    if (!pf) {
      // Nothing assigned (more members than partitions): wait for a rebalance.
      Backoff(deadline);
      return Status::OK();
    }
    auto r = pf->response.get();
    if (!r.ok()) return r.status();
    std::vector<TP> reset;
    bool got = false;
    {
      std::lock_guard lk(mu_);
      for (size_t i = 0; i < r->partitions.size(); ++i) {
        auto& p = r->partitions[i];
        const TP tp{p.topic, p.partition};
        auto pos = positions_.find(tp);
        // Revoked, or moved (Seek, reset) since the request was sent: the data is stale.
        if (pos == positions_.end() || i >= pf->request.partitions.size() ||
            pf->request.partitions[i].offset != pos->second) {
          continue;
        }
        if (!p.error.ok()) {
          if (p.error.error == wire::ErrorCode::kOutOfRange) reset.push_back(tp);
          continue;
        }
        std::string_view data = p.records.bytes;
        while (!data.empty()) {
          BatchHeader h;
          if (!PeekBatchHeader(data, &h).ok()) break;
          const std::string_view one = data.substr(0, h.total_size());
          data.remove_prefix(one.size());
          if (h.next_offset() <= pos->second) continue;
          auto batch = DecodedBatch::Decode(one);
          if (!batch.ok()) return Status::Corruption("fetched batch of " + p.topic + "/" +
                                                     std::to_string(p.partition) + ": " +
                                                     batch.status().message());
          for (const Record& rec : batch->records()) {
            if (rec.offset < pos->second) continue;
            ConsumerRecord& cr = buffer_.emplace_back();
            cr.topic = p.topic;
            cr.partition = p.partition;
            cr.offset = rec.offset;
            cr.timestamp_ms = rec.timestamp;
            if (rec.key) cr.key.emplace(*rec.key);
            if (rec.value) cr.value.emplace(*rec.value);
            if (rec.header_count > 0) {
              for (const RecordHeader& hd : rec.Headers()) {
                cr.headers.emplace_back(std::string(hd.key),
                                        hd.value ? std::optional<std::string>(std::string(*hd.value))
                                                 : std::nullopt);
              }
            }
            got = true;
          }
          pos->second = h.next_offset();
        }
      }
    }
    for (const TP& tp : reset) {
      auto off = ResetOffset(tp);
      if (!off.ok()) continue;
      std::lock_guard lk(mu_);
      if (positions_.count(tp)) {
        positions_[tp] = *off;
        consumed_[tp] = *off;
      }
    }
    if (got && reset.empty()) prefetch_ = IssueFetch(500);
    return Status::OK();
  }

  void HeartbeatLoop() {
    std::unique_lock lk(hb_mu_);
    while (!stop_heartbeat_) {
      hb_cv_.wait_for(lk, std::chrono::milliseconds(options_.heartbeat_interval_ms));
      if (stop_heartbeat_) break;
      std::string member;
      int32_t generation;
      {
        std::lock_guard g(mu_);
        member = member_id_;
        generation = generation_;
      }
      if (member.empty() || !joined_) continue;
      lk.unlock();
      auto r = Call<proto::MembershipResponse>(
          *conn_, proto::HeartbeatRequest{options_.group, member}, options_.request_timeout_ms);
      lk.lock();
      if (r.ok()) {
        if (r->generation != generation) {
          std::lock_guard g(mu_);
          pending_membership_ = *r;
        }
      } else if (r.status().IsNotFound()) {
        rejoin_.store(true);
      }
    }
  }

  std::shared_ptr<Connection> conn_;
  const ConsumerOptions options_;
  std::string name_;
  std::atomic<bool> closed_{false};

  mutable std::mutex mu_;  // guards the group view, positions and the buffer
  std::string member_id_;
  int32_t generation_ = 0;
  std::optional<proto::MembershipResponse> pending_membership_;
  std::map<TP, int64_t> positions_;  // next offset to fetch
  std::map<TP, int64_t> consumed_;   // next offset after the records handed out
  std::deque<ConsumerRecord> buffer_;
  std::unique_ptr<Prefetch> prefetch_;  // poll thread only
  std::atomic<bool> rejoin_{false};
  bool joined_ = false;  // poll thread only
  SteadyClock::time_point last_commit_ = SteadyClock::now();

  std::mutex hb_mu_;
  std::condition_variable hb_cv_;
  bool stop_heartbeat_ = false;
  std::thread heartbeat_;
};

}  // namespace

Result<std::unique_ptr<Consumer>> Consumer::Create(std::shared_ptr<Connection> connection,
                                                   const ConsumerOptions& options) {
  if (options.mode == ConsumerMode::kQueue && options.group.empty())
    return Status::InvalidArgument("a queue consumer needs a group");
  if (options.mode == ConsumerMode::kStream && options.topics.empty())
    return Status::InvalidArgument("a stream consumer needs at least one topic");
  if (options.max_poll_records <= 0) return Status::InvalidArgument("max_poll_records must be positive");
  return std::unique_ptr<Consumer>(new ConsumerImpl(std::move(connection), options));
}

}  // namespace runnel::client
