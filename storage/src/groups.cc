// GroupManager's core: the group registry, group lifecycle (create, delete, list, persist) and
// the path of group writes to the committer. The rest is in rooms of its own: queue_groups.cc,
// stream_groups.cc, dead_letters.cc, group_status.cc, group_recovery.cc, group_config.cc and
// group_record_reader.cc. See group_manager.h for the concurrency model.
#include <algorithm>

#include "group_manager.h"
#include "log_store_impl.h"
#include "logging.h"
#include "rocks_status.h"

namespace runnel::storage {

namespace fmt = format;

void WriteOverlay::Put(std::string key, std::string value, bool fresh) {
  auto [it, inserted] = ops_.try_emplace(std::move(key));
  if (inserted) it->second.fresh = fresh;
  it->second.value = std::move(value);
}

void WriteOverlay::Delete(const std::string& key) {
  auto it = ops_.find(key);
  if (it != ops_.end() && it->second.fresh) {
    ops_.erase(it);  // created and finished between two flushes: nothing to write
  } else if (it != ops_.end()) {
    it->second.value.reset();
  } else {
    ops_.emplace(key, Op{std::nullopt, false});
  }
}

MetaWrites WriteOverlay::Take() {
  MetaWrites out;
  out.ops.reserve(ops_.size());
  for (auto& [key, op] : ops_) out.ops.emplace_back(key, std::move(op.value));
  ops_.clear();
  return out;
}

GroupManager::GroupManager(LogStoreImpl& store) : store_(store) {}

void GroupManager::FlushAsync(GroupState& g) {
  if (g.overlay.empty()) return;
  const std::string name = g.name;
  SubmitAsync(g.overlay.Take(), /*durable=*/false, [name](Status s) {
    if (!s.ok()) log::Error("group '" + name + "': writing state failed: " + s.ToString());
  });
}

void GroupManager::FlushAll() {
  std::vector<std::shared_ptr<GroupState>> groups;
  {
    std::shared_lock lk(mu_);
    for (const auto& [name, g] : groups_) groups.push_back(g);
  }
  for (const auto& g : groups) {
    std::lock_guard lk(g->mu);
    FlushAsync(*g);
  }
}

std::shared_ptr<GroupState> GroupManager::Find(std::string_view name) const {
  std::shared_lock lk(mu_);
  auto it = groups_.find(name);
  return it == groups_.end() ? nullptr : it->second;
}

Result<std::shared_ptr<GroupState>> GroupManager::FindQueue(std::string_view name) const {
  auto g = Find(name);
  if (!g) return Status::NotFound("unknown group '" + std::string(name) + "'");
  if (g->mode != GroupMode::kQueue) {
    return Status::InvalidArgument("group '" + std::string(name) +
                                   "' is a stream group, not a queue group");
  }
  return g;
}

Result<std::shared_ptr<GroupState>> GroupManager::FindStream(std::string_view name) const {
  auto g = Find(name);
  if (!g) return Status::NotFound("unknown group '" + std::string(name) + "'");
  if (g->mode != GroupMode::kStream) {
    return Status::InvalidArgument("group '" + std::string(name) +
                                   "' is a queue group, not a stream group");
  }
  return g;
}

void GroupManager::SubmitAsync(MetaWrites writes, bool durable, std::function<void(Status)> done) {
  if (writes.empty()) {
    done(Status::OK());
    return;
  }
  auto op = std::make_unique<PendingAppend>();
  op->acks = durable ? AckMode::kDurable : AckMode::kWritten;
  auto shared = std::make_shared<MetaWrites>(std::move(writes));
  rocksdb::ColumnFamilyHandle* meta = store_.meta_cf_;
  op->extra = [shared, meta](const AppendResult*, rocksdb::WriteBatch& round) {
    for (const auto& [begin, end] : shared->range_deletes) round.DeleteRange(meta, begin, end);
    for (const auto& [key, value] : shared->ops) {
      if (value) {
        round.Put(meta, key, *value);
      } else {
        round.Delete(meta, key);
      }
    }
  };
  op->done = [done = std::move(done)](Result<AppendResult> r) { done(r.status()); };
  store_.Enqueue(std::move(op));
}

std::future<Status> GroupManager::Submit(MetaWrites writes, bool durable) {
  auto promise = std::make_shared<std::promise<Status>>();
  std::future<Status> f = promise->get_future();
  SubmitAsync(std::move(writes), durable,
              [promise](Status s) { promise->set_value(std::move(s)); });
  return f;
}

// ---- group lifecycle --------------------------------------------------------------------------

Status GroupManager::CreateQueueGroup(std::string_view name, const GroupConfig& config_in,
                                      StartPosition start) {
  RUNNEL_RETURN_IF_ERROR(ValidateTopicName(name).WithContext("group name"));
  GroupConfig config = config_in;
  auto topic = store_.FindTopic(config.topic);
  if (!topic) return Status::NotFound("unknown topic '" + config.topic + "'");
  if (config.dlq_topic.empty()) config.dlq_topic = config.topic + ".dlq." + std::string(name);
  RUNNEL_RETURN_IF_ERROR(ValidateTopicName(config.dlq_topic).WithContext("dead-letter topic"));
  if (config.dlq_topic == config.topic) {
    return Status::InvalidArgument("a group's dead-letter topic cannot be the topic it consumes");
  }
  if (Find(name)) return Status::AlreadyExists("group '" + std::string(name) + "' already exists");
  if (!config.dlq_retention_ms) config.dlq_retention_ms = -1;
  size_t partitions;
  {
    std::shared_lock lk(store_.topics_mu_);
    partitions = topic->partitions.size();
  }
  if (!store_.FindTopic(config.dlq_topic)) {
    TopicConfig dlq_config = store_.options_.default_topic_config;
    dlq_config.dedup_window_ms = 0;  // every dead letter is kept, even repeats
    // Dead letters wait for an operator: by default they are kept until purged or redriven,
    // never expired by the default retention (dlq.retention.ms, or the topic's config later).
    dlq_config.retention_ms = *config.dlq_retention_ms;
    dlq_config.retention_bytes = -1;
    {
      // Room for the largest source record plus its runnel.dlq.* headers.
      std::shared_lock lk(store_.topics_mu_);
      dlq_config.max_message_bytes =
          std::min<int32_t>(64 << 20, topic->config.max_message_bytes + (64 << 10));
    }
    Status s = store_.CreateTopic(config.dlq_topic, static_cast<int32_t>(partitions), dlq_config);
    if (!s.ok() && s.code() != StatusCode::kAlreadyExists) return s;
  }
  auto g = std::make_shared<GroupState>();
  g->name = std::string(name);
  g->mode = GroupMode::kQueue;
  g->config = config;
  g->topic_id = topic->id;
  g->created_ms = store_.clock_->NowMs();
  for (size_t p = 0; p < partitions; ++p) {
    const Partition part(static_cast<int32_t>(p));
    Result<Offset> pos = Offset(0);
    switch (start.kind) {
      case StartPosition::Kind::kEarliest:
        pos = store_.ListOffset(config.topic, part, OffsetQuery::Earliest());
        break;
      case StartPosition::Kind::kLatest:
        pos = store_.ListOffset(config.topic, part, OffsetQuery::Latest());
        break;
      case StartPosition::Kind::kTimestamp:
        pos = store_.ListOffset(config.topic, part, OffsetQuery::AtTime(start.value));
        break;
      case StartPosition::Kind::kOffset: {
        RUNNEL_ASSIGN_OR_RETURN(Offset lo,
                                store_.ListOffset(config.topic, part, OffsetQuery::Earliest()));
        RUNNEL_ASSIGN_OR_RETURN(Offset hi,
                                store_.ListOffset(config.topic, part, OffsetQuery::Latest()));
        if (start.value < lo.value() || start.value > hi.value()) {
          return Status::OutOfRange("start offset " + std::to_string(start.value) +
                                    " is outside [" + std::to_string(lo.value()) + ", " +
                                    std::to_string(hi.value()) + "] of partition " +
                                    std::to_string(p));
        }
        pos = Offset(start.value);
        break;
      }
    }
    if (!pos.ok()) return pos.status();
    g->parts.push_back({pos->value(), {}});
  }
  std::lock_guard admin(store_.admin_mu_);
  std::unique_lock lk(mu_);
  if (groups_.count(name))
    return Status::AlreadyExists("group '" + std::string(name) + "' already exists");
  RUNNEL_ASSIGN_OR_RETURN(fmt::CountersValue counters, store_.ReadCounters());
  g->id = counters.next_group_id++;
  rocksdb::WriteBatch wb;
  wb.Put(store_.meta_cf_, fmt::CountersKey(), fmt::Encode(counters));
  wb.Put(store_.meta_cf_, fmt::GroupKey(name),
         fmt::Encode(fmt::GroupValue{g->id, static_cast<uint8_t>(g->mode), 0, g->created_ms,
                                     config.ToList()}));
  for (size_t p = 0; p < g->parts.size(); ++p) {
    wb.Put(store_.meta_cf_, fmt::OffsetKey(g->id, g->topic_id, static_cast<int32_t>(p)),
           fmt::Encode(fmt::OffsetValue{g->parts[p].cursor, g->created_ms, {}}));
  }
  RUNNEL_RETURN_IF_ERROR(store_.WriteMeta(&wb, "creating group '" + g->name + "'"));
  groups_[g->name] = std::move(g);
  return Status::OK();
}

Status GroupManager::UpgradeDeadLetterTopics() {
  std::vector<std::shared_ptr<GroupState>> groups;
  {
    std::shared_lock lk(mu_);
    for (const auto& [name, g] : groups_) groups.push_back(g);
  }
  const TopicConfig defaults = store_.options_.default_topic_config;
  for (const auto& g : groups) {
    if (g->mode != GroupMode::kQueue) continue;
    std::string dlq_topic, private_name;
    {
      std::lock_guard lk(g->mu);
      if (g->config.dlq_retention_ms) continue;  // created or upgraded since it existed
      dlq_topic = g->config.dlq_topic;
      private_name = g->config.topic + ".dlq." + g->name;
    }
    auto info = store_.DescribeTopic(dlq_topic);
    int64_t keep = -1;
    if (info.ok() && dlq_topic == private_name &&
        info->config.retention_ms == defaults.retention_ms &&
        info->config.retention_bytes == defaults.retention_bytes) {
      // Created with the store's default retention, which would expire dead letters nobody
      // has looked at yet.
      RUNNEL_RETURN_IF_ERROR(
          store_.AlterTopic(dlq_topic, {{"retention.ms", "-1"}, {"retention.bytes", "-1"}}, 0));
      log::Warn("group '" + g->name + "': its dead-letter topic '" + dlq_topic +
                "' now keeps letters until purged or redriven (it had the default retention of " +
                std::to_string(defaults.retention_ms) + " ms)");
    } else if (info.ok()) {
      keep = info->config.retention_ms;  // chosen by someone: respected
    }
    std::lock_guard lk(g->mu);
    g->config.dlq_retention_ms = keep;
    RUNNEL_RETURN_IF_ERROR(PersistGroup(*g, /*durable=*/true));
  }
  return Status::OK();
}

Status GroupManager::DeleteGroup(std::string_view name) {
  std::shared_ptr<GroupState> g;
  {
    std::unique_lock lk(mu_);
    auto it = groups_.find(name);
    if (it == groups_.end()) return Status::NotFound("unknown group '" + std::string(name) + "'");
    g = it->second;
    groups_.erase(it);
  }
  std::future<Status> done;
  {
    std::lock_guard glk(g->mu);
    g->deleted = true;
    (void)g->overlay.Take();  // nothing of this group is written any more
    MetaWrites w;
    w.Delete(fmt::GroupKey(name));
    for (auto type :
         {fmt::MetaKeyType::kOffset, fmt::MetaKeyType::kPending, fmt::MetaKeyType::kDeadLetter,
          fmt::MetaKeyType::kRedrive, fmt::MetaKeyType::kRedriven}) {
      w.range_deletes.emplace_back(fmt::IdPrefixBegin(type, g->id), fmt::IdPrefixEnd(type, g->id));
    }
    // Through the committer, so writes of this group queued earlier land before the deletion.
    done = Submit(std::move(w), /*durable=*/true);
  }
  return done.get();
}

std::vector<std::string> GroupManager::ListGroups() const {
  std::shared_lock lk(mu_);
  std::vector<std::string> names;
  for (const auto& [name, g] : groups_) names.push_back(name);
  return names;
}

Status GroupManager::CheckLive(const GroupState& g) const {
  if (g.deleted) return Status::NotFound("group '" + g.name + "' was deleted");
  if (g.mode == GroupMode::kQueue) {
    auto t = store_.FindTopic(g.config.topic);
    if (!t || t->id != g.topic_id) {
      return Status::NotFound("topic '" + g.config.topic + "' of group '" + g.name +
                              "' was deleted; recreate the group");
    }
  }
  return Status::OK();
}

fmt::GroupValue GroupManager::GroupValueOf(const GroupState& g) {
  fmt::GroupValue v{g.id, static_cast<uint8_t>(g.mode), g.generation, g.created_ms, {}};
  if (g.mode == GroupMode::kQueue) v.config = g.config.ToList();
  if (g.protocol != GroupProtocol::kNative)
    v.config.emplace_back(std::string(kProtocolKey), std::string(GroupProtocolName(g.protocol)));
  return v;
}

void GroupManager::PersistGroupAsync(const GroupState& g) {
  MetaWrites w;
  w.Put(fmt::GroupKey(g.name), fmt::Encode(GroupValueOf(g)));
  const std::string name = g.name;
  SubmitAsync(std::move(w), /*durable=*/true, [name](Status s) {
    if (!s.ok())
      log::Error("group '" + name + "': persisting the generation failed: " + s.ToString());
  });
}

Status GroupManager::PersistGroup(const GroupState& g, bool durable) {
  MetaWrites w;
  w.Put(fmt::GroupKey(g.name), fmt::Encode(GroupValueOf(g)));
  return Submit(std::move(w), durable).get();
}

// ---- stream groups ----------------------------------------------------------------------------

// ---- lag and status ---------------------------------------------------------------------------

// ---- dead letters -----------------------------------------------------------------------------

// ---- recovery and retention -------------------------------------------------------------------

}  // namespace runnel::storage
