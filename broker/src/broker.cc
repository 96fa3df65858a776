// The broker core's lifecycle, request accounting, identities and topic operations.
#include "runnel/broker/broker.h"

#include <algorithm>
#include <filesystem>

#include "broker_impl.h"
#include "runnel/broker/auth.h"
#include "runnel/broker/metrics.h"
#include "runnel/common/clock.h"

namespace runnel::broker {
namespace {

class SerialLane final : public ProduceLane {
 public:
  explicit SerialLane(ThreadPool& pool) : queue_(std::make_shared<SerialQueue>(pool)) {}
  void Post(std::function<void()> task) override { queue_->Post(std::move(task)); }

 private:
  std::shared_ptr<SerialQueue> queue_;
};

}  // namespace

Status Broker::Impl::EnsureTopic(const std::string& topic) {
  {
    std::lock_guard lk(cache_mu);
    if (known_topics.count(topic)) return Status::OK();
  }
  auto info = broker.store().DescribeTopic(topic);
  if (!info.ok()) {
    if (!info.status().IsNotFound() || !broker.options().auto_create_topics) return info.status();
    Status s = CreateTopicWithinLimit(topic, broker.options().default_partitions,
                                      broker.options().store.default_topic_config);
    if (!s.ok() && s.code() != StatusCode::kAlreadyExists) return s;
  }
  std::lock_guard lk(cache_mu);
  known_topics.insert(topic);
  return Status::OK();
}

Status Broker::Impl::CreateTopicWithinLimit(const std::string& name, int32_t partitions,
                                            const storage::TopicConfig& config) {
  std::lock_guard lk(create_mu);
  const size_t max = broker.options().max_topics;
  if (broker.store().ListTopics().size() >= max && !broker.store().DescribeTopic(name).ok()) {
    return Status::OutOfRange("cannot create topic '" + name + "': the broker holds " +
                              std::to_string(max) + " topics, its limit (--max-topics)");
  }
  return broker.store().CreateTopic(name, partitions, config);
}

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

void Broker::BeginRequest() {
  std::lock_guard lk(impl_->idle_mu);
  ++impl_->inflight;
}

void Broker::EndRequest() {
  std::lock_guard lk(impl_->idle_mu);
  if (--impl_->inflight == 0) impl_->idle_cv.notify_all();
}

bool Broker::shutting_down() const { return impl_->shutting_down.load(); }

void Broker::BeginShutdown() {
  impl_->shutting_down.store(true);
  impl_->waiters.ReleaseAll();
}

void Broker::WaitIdle() {
  std::unique_lock lk(impl_->idle_mu);
  impl_->idle_cv.wait(lk, [&] { return impl_->inflight == 0; });
}

void Broker::Post(std::function<void()> task) { impl_->workers.Post(std::move(task)); }

std::shared_ptr<ProduceLane> Broker::NewProduceLane() {
  return std::make_shared<SerialLane>(impl_->appenders);
}

Result<std::shared_ptr<const Principal>> Broker::Authenticate(std::string_view token) {
  auto p = options_.auth->Authenticate(token);
  if (!p.ok()) metrics_->auth_failures.fetch_add(1, std::memory_order_relaxed);
  return p;
}

Status Broker::Denied(Status s) {
  metrics_->auth_denied.fetch_add(1, std::memory_order_relaxed);
  return s;
}

void Broker::Append(storage::AppendRequest request,
                    std::function<void(Result<storage::AppendResult>)> done) {
  if (Status s = impl_->EnsureTopic(request.topic); !s.ok()) return done(s);
  const size_t bytes = request.batch.size();
  std::string topic = request.topic;
  const int32_t partition = request.partition.value();
  store_->AppendAsync(std::move(request), [this, topic = std::move(topic), partition, bytes,
                                           done = std::move(done)](
                                              Result<storage::AppendResult> r) {
    if (r.ok() && r->records_written > 0 && !r->duplicate_batch) {
      metrics_->OnProduced(topic, partition, static_cast<uint64_t>(r->records_written), bytes);
    }
    done(std::move(r));
  });
}

Result<storage::TopicInfo> Broker::DescribeTopic(const std::string& name, bool auto_create,
                                                 const Principal* who) {
  auto info = store_->DescribeTopic(name);
  if (!info.ok() && info.status().IsNotFound() && auto_create && options_.auto_create_topics &&
      (!who || who->OnTopic(Op::kProduce, name).ok())) {
    if (Status s = impl_->EnsureTopic(name); s.ok()) info = store_->DescribeTopic(name);
  }
  return info;
}

std::vector<std::string> Broker::ListTopics(const Principal* who) {
  std::vector<std::string> all = store_->ListTopics();
  if (who) std::erase_if(all, [&](const std::string& t) { return !who->SeesTopic(t); });
  return all;
}

Status Broker::CreateTopic(const std::string& name, int32_t partitions,
                           const std::vector<std::pair<std::string, std::string>>& config) {
  storage::TopicConfig cfg = options_.store.default_topic_config;
  for (const auto& [k, v] : config) RUNNEL_RETURN_IF_ERROR(cfg.Set(k, v));
  return impl_->CreateTopicWithinLimit(name, partitions, cfg);
}

Status Broker::DeleteTopic(const std::string& name) {
  Status s = store_->DeleteTopic(name);
  {
    std::lock_guard lk(impl_->cache_mu);
    impl_->known_topics.erase(name);
  }
  if (s.ok()) impl_->TopicChanged(name);
  return s;
}

Status Broker::AlterTopic(const std::string& name,
                          const std::vector<std::pair<std::string, std::string>>& config,
                          int32_t new_partitions) {
  Status s = store_->AlterTopic(name, config, new_partitions);
  if (s.ok() && new_partitions > 0) impl_->TopicChanged(name);
  return s;
}

Result<std::string> Broker::GroupTopic(const std::string& group) {
  {
    std::lock_guard lk(impl_->cache_mu);
    if (auto it = impl_->group_topics.find(group); it != impl_->group_topics.end())
      return it->second;
  }
  RUNNEL_ASSIGN_OR_RETURN(auto d, groups().DescribeGroup(group));
  std::lock_guard lk(impl_->cache_mu);
  impl_->group_topics[group] = d.config.topic;
  return d.config.topic;
}

void Broker::ForgetGroup(const std::string& group) {
  std::lock_guard lk(impl_->cache_mu);
  impl_->group_topics.erase(group);
}

void Broker::SetLiveGroups(storage::GroupProtocol protocol, LiveGroups* source) {
  if (protocol != storage::GroupProtocol::kKafka) return;  // the only external protocol yet
  std::lock_guard lk(impl_->live_mu);
  impl_->live_groups = source;
}

std::optional<LiveGroup> Broker::DescribeLiveGroup(const std::string& group,
                                                   storage::GroupProtocol protocol) {
  if (protocol != storage::GroupProtocol::kKafka) return std::nullopt;
  std::lock_guard lk(impl_->live_mu);  // held so the source cannot unregister meanwhile
  return impl_->live_groups ? impl_->live_groups->Describe(group) : std::nullopt;
}

Status Broker::CheckGroupIdle(const std::string& group) {
  auto d = groups().DescribeGroup(group);
  if (!d.ok() || d->protocol == storage::GroupProtocol::kNative) return Status::OK();
  auto live = DescribeLiveGroup(group, d->protocol);
  if (!live || live->members.empty()) return Status::OK();
  return Status::Busy("group '" + group + "' has " + std::to_string(live->members.size()) + " live " +
                      std::string(storage::GroupProtocolName(d->protocol)) +
                      " members; stop its consumers first");
}

Result<int64_t> Broker::NextProducerId() {
  // One fsynced reservation per block: a restart skips the rest of the block, never reuses it.
  constexpr int64_t kBlock = 1000;
  std::lock_guard lk(impl_->producer_id_mu);
  if (impl_->next_producer_id == impl_->producer_id_end) {
    RUNNEL_ASSIGN_OR_RETURN(int64_t first, store_->ReserveProducerIds(kBlock));
    impl_->next_producer_id = first;
    impl_->producer_id_end = first + kBlock;
  }
  return impl_->next_producer_id++;
}

Result<Broker::BackupInfo> Broker::Backup(const std::string& directory) {
  if (directory.empty() || directory.front() != '/') {
    return Status::InvalidArgument("backup directory '" + directory + "' must be an absolute path");
  }
  RUNNEL_RETURN_IF_ERROR(store_->Checkpoint(directory));
  BackupInfo info;
  std::error_code ec;
  for (auto it = std::filesystem::recursive_directory_iterator(directory, ec);
       !ec && it != std::filesystem::recursive_directory_iterator(); it.increment(ec)) {
    std::error_code fec;
    if (!it->is_regular_file(fec)) continue;
    info.bytes += it->file_size(fec);
    ++info.files;
  }
  return info;
}

std::string Broker::PrometheusText() { return RenderPrometheus(*metrics_, *store_); }
std::string Broker::StatsJson() { return RenderStatsJson(*metrics_, *store_); }

}  // namespace runnel::broker
