// Lag and status: group descriptions, where a record is for each group, and the retention floor
// of retain.until.acked groups.
#include <algorithm>
#include <limits>

#include "group_manager.h"
#include "log_store_impl.h"
#include "rocks_status.h"

namespace runnel::storage {

namespace fmt = format;

namespace {

constexpr int64_t kNoFloor = std::numeric_limits<int64_t>::max();

}  // namespace

Result<GroupDescription> GroupManager::DescribeGroup(std::string_view name) const {
  auto g = Find(name);
  if (!g) return Status::NotFound("unknown group '" + std::string(name) + "'");
  std::lock_guard lk(g->mu);
  const int64_t now = store_.clock_->NowMs();
  GroupDescription d{g->name, g->mode, g->protocol, g->config, g->generation, {}, {}, g->counters};
  auto log_end = [&](const std::string& topic, int32_t p) {
    auto r = store_.ListOffset(topic, Partition(p), OffsetQuery::Latest());
    return r.ok() ? r->value() : 0;
  };
  if (g->mode == GroupMode::kQueue) {
    for (size_t p = 0; p < g->parts.size(); ++p) {
      const QueuePartition& qp = g->parts[p];
      PartitionLag l;
      l.tp = {g->config.topic, Partition(static_cast<int32_t>(p))};
      l.position = Offset(qp.cursor);
      l.log_end = Offset(log_end(g->config.topic, static_cast<int32_t>(p)));
      l.lag = std::max<int64_t>(0, l.log_end.value() - qp.cursor);
      l.pending = static_cast<int64_t>(qp.pel.size());
      int64_t oldest = 0;
      for (const auto& [off, e] : qp.pel) {
        if (e.first_delivery_ms > 0 && (oldest == 0 || e.first_delivery_ms < oldest))
          oldest = e.first_delivery_ms;
      }
      l.oldest_pending_age_ms = oldest ? now - oldest : 0;
      d.partitions.push_back(std::move(l));
    }
    for (const ConsumerState& c : g->consumers)
      d.consumers.push_back({c.name, c.pending, now - c.last_seen_ms, {}});
  } else {
    std::set<TopicPartition> tps;
    for (const auto& [tp, v] : g->committed) tps.insert(tp);
    for (const auto& [id, m] : g->members) tps.insert(m.assignment.begin(), m.assignment.end());
    for (const TopicPartition& tp : tps) {
      PartitionLag l;
      l.tp = tp;
      auto it = g->committed.find(tp);
      l.log_end = Offset(log_end(tp.topic, tp.partition.value()));
      if (it != g->committed.end()) {
        l.position = Offset(it->second.offset);
      } else {
        auto start = store_.ListOffset(tp.topic, tp.partition, OffsetQuery::Earliest());
        l.position = Offset(-1);
        l.lag = l.log_end.value() - (start.ok() ? start->value() : 0);
      }
      if (it != g->committed.end())
        l.lag = std::max<int64_t>(0, l.log_end.value() - l.position.value());
      d.partitions.push_back(std::move(l));
    }
    for (const auto& [id, m] : g->members)
      d.consumers.push_back({id, 0, now - m.last_seen_ms, m.assignment});
  }
  return d;
}

RecordStatus GroupManager::QueueStatus(const GroupState& g, int32_t p, int64_t offset) const {
  RecordStatus s;
  s.group = g.name;
  if (static_cast<size_t>(p) < g.parts.size()) {
    const QueuePartition& qp = g.parts[static_cast<size_t>(p)];
    if (auto it = qp.pel.find(offset); it != qp.pel.end()) {
      const PelEntry& e = it->second;
      s.state =
          e.state == fmt::PendingState::kParked ? RecordState::kUndelivered : RecordState::kPending;
      if (e.state == fmt::PendingState::kLocked) s.consumer = g.consumers[e.consumer].name;
      s.deliveries = e.deliveries;
      s.lock_until_ms = e.due_ms;
      return s;
    }
    std::string v;
    rocksdb::Status gs = store_.db_->Get(rocksdb::ReadOptions(), store_.meta_cf_,
                                         fmt::DeadLetterKey(g.id, p, offset), &v);
    fmt::DeadLetterValue dl;
    if (gs.ok() && fmt::Decode(v, &dl).ok()) {
      s.state = RecordState::kDeadLettered;
      s.dlq_partition = Partition(dl.dlq_partition);
      s.dlq_offset = Offset(dl.dlq_offset);
      s.reason = dl.reason;
      return s;
    }
    s.state = offset < qp.cursor ? RecordState::kAcked : RecordState::kUndelivered;
  }
  return s;
}

Result<std::vector<RecordStatus>> GroupManager::StatusOf(std::string_view topic,
                                                         Partition partition, Offset offset) const {
  auto t = store_.FindTopic(topic);
  if (!t) return Status::NotFound("unknown topic '" + std::string(topic) + "'");
  RUNNEL_ASSIGN_OR_RETURN(Offset lo, store_.ListOffset(topic, partition, OffsetQuery::Earliest()));
  RUNNEL_ASSIGN_OR_RETURN(Offset hi, store_.ListOffset(topic, partition, OffsetQuery::Latest()));
  if (offset < lo || offset >= hi) {
    return Status::OutOfRange("offset " + std::to_string(offset.value()) + " is outside [" +
                              std::to_string(lo.value()) + ", " + std::to_string(hi.value()) +
                              ") of " + std::string(topic) + "/" +
                              std::to_string(partition.value()));
  }
  std::vector<std::shared_ptr<GroupState>> groups;
  {
    std::shared_lock lk(mu_);
    for (const auto& [name, g] : groups_) groups.push_back(g);
  }
  std::vector<RecordStatus> out;
  for (const auto& g : groups) {
    std::lock_guard lk(g->mu);
    if (g->mode == GroupMode::kQueue) {
      if (g->topic_id == t->id) out.push_back(QueueStatus(*g, partition.value(), offset.value()));
      continue;
    }
    auto it = g->committed.find(TopicPartition{std::string(topic), partition});
    bool subscribed = it != g->committed.end();
    for (const auto& [id, m] : g->members) {
      subscribed |= std::find(m.topics.begin(), m.topics.end(), topic) != m.topics.end();
    }
    if (!subscribed) continue;
    RecordStatus s;
    s.group = g->name;
    s.state = it != g->committed.end() && offset.value() < it->second.offset
                  ? RecordState::kAcked
                  : RecordState::kUndelivered;
    out.push_back(std::move(s));
  }
  return out;
}

Result<std::vector<RecordStatus>> GroupManager::StatusByDedupKey(std::string_view topic,
                                                                 std::string_view dedup_key) const {
  auto t = store_.FindTopic(topic);
  if (!t) return Status::NotFound("unknown topic '" + std::string(topic) + "'");
  std::optional<DedupEntry> found;
  {
    std::lock_guard commit(store_.commit_mu_);
    if (const DedupEntry* e = t->dedup.Find(dedup_key, store_.clock_->NowMs())) found = *e;
  }
  if (!found) {
    return Status::NotFound("no record with dedup key '" + std::string(dedup_key) +
                            "' within the dedup window of '" + std::string(topic) + "'");
  }
  return StatusOf(topic, Partition(found->partition), Offset(found->offset));
}

int64_t GroupManager::RetentionFloor(uint32_t topic_id, int32_t partition) const {
  std::vector<std::shared_ptr<GroupState>> groups;
  {
    std::shared_lock lk(mu_);
    for (const auto& [name, g] : groups_) groups.push_back(g);
  }
  int64_t floor = kNoFloor;
  for (const auto& g : groups) {
    std::lock_guard lk(g->mu);
    if (g->mode != GroupMode::kQueue || !g->config.retain_until_acked || g->topic_id != topic_id)
      continue;
    if (static_cast<size_t>(partition) >= g->parts.size()) {
      floor = 0;  // a partition the group has not seen yet: keep everything
      continue;
    }
    const QueuePartition& qp = g->parts[static_cast<size_t>(partition)];
    floor =
        std::min(floor, qp.pel.empty() ? qp.cursor : std::min(qp.cursor, qp.pel.begin()->first));
  }
  return floor;
}

}  // namespace runnel::storage
