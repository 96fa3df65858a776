// Stream groups: Kafka-like membership (join, heartbeat, leave, sticky rebalances) and durable
// offset commits, for native members and for members a front-end vouches for.
#include <algorithm>

#include "group_manager.h"
#include "log_store_impl.h"
#include "rocks_status.h"

namespace runnel::storage {

namespace fmt = format;

void GroupManager::ExpireMembers(GroupState& g, int64_t now, bool* changed) {
  for (auto it = g.members.begin(); it != g.members.end();) {
    if (now - it->second.last_seen_ms > it->second.session_timeout_ms) {
      it = g.members.erase(it);
      *changed = true;
    } else {
      ++it;
    }
  }
}

void GroupManager::Rebalance(GroupState& g) {
  ++g.generation;
  // Every partition of every subscribed topic, and who may own it.
  std::map<TopicPartition, std::vector<std::string>> eligible;
  for (const auto& [id, m] : g.members) {
    for (const std::string& t : m.topics) {
      auto topic = store_.FindTopic(t);
      if (!topic) continue;
      std::shared_lock lk(store_.topics_mu_);
      for (size_t p = 0; p < topic->partitions.size(); ++p) {
        eligible[{t, Partition(static_cast<int32_t>(p))}].push_back(id);
      }
    }
  }
  const size_t members = g.members.size();
  if (members == 0) return;
  const size_t total = eligible.size();
  const size_t floor = total / members;
  size_t ceil_slots = total % members;  // members that may hold floor + 1
  std::map<std::string, std::vector<TopicPartition>> next;
  std::set<TopicPartition> taken;
  // Sticky pass: members keep what they had, up to their fair share.
  for (auto& [id, m] : g.members) {
    auto& mine = next[id];
    for (const TopicPartition& tp : m.assignment) {
      auto e = eligible.find(tp);
      if (e == eligible.end() ||
          std::find(e->second.begin(), e->second.end(), id) == e->second.end())
        continue;
      const size_t cap = floor + (ceil_slots > 0 ? 1 : 0);
      if (mine.size() >= cap) break;
      mine.push_back(tp);
      taken.insert(tp);
    }
    if (mine.size() > floor) --ceil_slots;
  }
  // The rest go to the least loaded eligible member below its share. Partitions with the fewest
  // eligible members go first, so constrained ones are placed while there is room.
  std::vector<std::pair<const TopicPartition*, const std::vector<std::string>*>> rest;
  for (const auto& [tp, ids] : eligible) {
    if (!taken.count(tp)) rest.emplace_back(&tp, &ids);
  }
  std::stable_sort(rest.begin(), rest.end(), [](const auto& a, const auto& b) {
    return a.second->size() < b.second->size();
  });
  for (const auto& [tp, ids] : rest) {
    const std::string* best = nullptr;
    for (const std::string& id : *ids) {
      const size_t have = next[id].size();
      const bool room = have < floor || (have == floor && ceil_slots > 0);
      if (room && (!best || have < next[*best].size())) best = &id;
    }
    if (!best) {  // uneven subscriptions leave no fair slot: take the least loaded subscriber
      for (const std::string& id : *ids) {
        if (!best || next[id].size() < next[*best].size()) best = &id;
      }
    }
    if (next[*best].size() == floor && ceil_slots > 0) --ceil_slots;
    next[*best].push_back(*tp);
  }
  for (auto& [id, m] : g.members) {
    m.assignment = std::move(next[id]);
    std::sort(m.assignment.begin(), m.assignment.end());
  }
}

Membership GroupManager::MembershipOf(const GroupState& g, const std::string& member) const {
  return Membership{member, g.generation, g.members.at(member).assignment};
}

Result<std::shared_ptr<GroupState>> GroupManager::FindOrCreateStream(std::string_view group,
                                                                     GroupProtocol protocol) {
  std::shared_ptr<GroupState> g = Find(group);
  if (!g) {
    RUNNEL_RETURN_IF_ERROR(ValidateTopicName(group).WithContext("group name"));
    std::lock_guard admin(store_.admin_mu_);
    std::unique_lock lk(mu_);
    if (auto it = groups_.find(group); it != groups_.end()) {
      g = it->second;
    } else {
      g = std::make_shared<GroupState>();
      g->name = std::string(group);
      g->mode = GroupMode::kStream;
      g->protocol = protocol;
      g->created_ms = store_.clock_->NowMs();
      RUNNEL_ASSIGN_OR_RETURN(fmt::CountersValue counters, store_.ReadCounters());
      g->id = counters.next_group_id++;
      rocksdb::WriteBatch wb;
      wb.Put(store_.meta_cf_, fmt::CountersKey(), fmt::Encode(counters));
      wb.Put(store_.meta_cf_, fmt::GroupKey(group), fmt::Encode(GroupValueOf(*g)));
      RUNNEL_RETURN_IF_ERROR(store_.WriteMeta(&wb, "creating group '" + g->name + "'"));
      groups_[g->name] = g;
    }
  }
  if (g->mode != GroupMode::kStream) {
    return Status::InvalidArgument("group '" + std::string(group) +
                                   "' is a queue group, not a stream group");
  }
  if (g->protocol != protocol) {
    auto display = [](GroupProtocol p) { return p == GroupProtocol::kKafka ? "Kafka" : "native"; };
    return Status::InvalidArgument(
        "group '" + std::string(group) + "' is a " + display(g->protocol) + " consumer group; a " +
        display(protocol) + " client cannot join it (use another group id)");
  }
  return g;
}

Status GroupManager::EnsureExternalGroup(std::string_view name, GroupProtocol protocol) {
  if (protocol == GroupProtocol::kNative)
    return Status::InvalidArgument("a native group's membership is kept by the store");
  return FindOrCreateStream(name, protocol).status();
}

void GroupManager::CommitExternalAsync(std::string_view group,
                                       const std::vector<OffsetCommit>& offsets,
                                       std::function<void(Status)> done) {
  if (offsets.empty()) return done(Status::InvalidArgument("no offsets to commit"));
  Status s = StageCommit(group, {}, -1, offsets, &done, /*external=*/true);
  if (done) done(std::move(s));  // not handed to the committer: validation failed
}

Status GroupManager::DeleteOffsets(std::string_view group,
                                   const std::vector<TopicPartition>& partitions) {
  RUNNEL_ASSIGN_OR_RETURN(auto g, FindStream(group));
  std::future<Status> done;
  {
    std::lock_guard lk(g->mu);
    RUNNEL_RETURN_IF_ERROR(CheckLive(*g));
    MetaWrites writes;
    for (const TopicPartition& tp : partitions) {
      if (!g->committed.erase(tp)) continue;
      if (auto topic = store_.FindTopic(tp.topic))
        writes.Delete(fmt::OffsetKey(g->id, topic->id, tp.partition.value()));
    }
    if (writes.empty()) return Status::OK();
    done = Submit(std::move(writes), /*durable=*/true);
  }
  return done.get();
}

Result<Membership> GroupManager::Join(std::string_view group, std::string_view member_id,
                                      const std::vector<std::string>& topics,
                                      int64_t session_timeout_ms) {
  RUNNEL_RETURN_IF_ERROR(ValidateTopicName(group).WithContext("group name"));
  if (topics.empty())
    return Status::InvalidArgument("a member must subscribe to at least one topic");
  for (const std::string& t : topics) {
    if (!store_.FindTopic(t)) return Status::NotFound("unknown topic '" + t + "'");
  }
  if (session_timeout_ms < 1 || session_timeout_ms > 3'600'000) {
    return Status::InvalidArgument("session timeout must be between 1 ms and 1 hour");
  }
  RUNNEL_ASSIGN_OR_RETURN(auto g, FindOrCreateStream(group, GroupProtocol::kNative));
  std::lock_guard lk(g->mu);
  RUNNEL_RETURN_IF_ERROR(CheckLive(*g));
  const int64_t now = store_.clock_->NowMs();
  bool changed = false;
  ExpireMembers(*g, now, &changed);
  std::string id(member_id);
  if (id.empty()) {
    id = g->name + "-" + std::to_string(g->generation + 1) + "-" + std::to_string(++g->member_seq) +
         "-" + std::to_string(now % 100000);
  } else if (!g->members.count(id)) {
    return Status::NotFound("unknown member '" + id + "' of group '" + g->name +
                            "'; rejoin with an empty id");
  }
  StreamMember& m = g->members[id];
  m.topics = topics;
  std::sort(m.topics.begin(), m.topics.end());
  m.session_timeout_ms = session_timeout_ms;
  m.last_seen_ms = now;
  Rebalance(*g);
  RUNNEL_RETURN_IF_ERROR(PersistGroup(*g, /*durable=*/true));
  return MembershipOf(*g, id);
}

Result<Membership> GroupManager::Heartbeat(std::string_view group, std::string_view member_id) {
  RUNNEL_ASSIGN_OR_RETURN(auto g, FindStream(group));
  std::lock_guard lk(g->mu);
  RUNNEL_RETURN_IF_ERROR(CheckLive(*g));
  const int64_t now = store_.clock_->NowMs();
  bool changed = false;
  ExpireMembers(*g, now, &changed);
  auto it = g->members.find(std::string(member_id));
  if (it == g->members.end()) {
    if (changed) {
      Rebalance(*g);
      RUNNEL_RETURN_IF_ERROR(PersistGroup(*g, true));
    }
    return Status::NotFound("unknown member '" + std::string(member_id) + "' of group '" + g->name +
                            "' (session expired?); rejoin");
  }
  it->second.last_seen_ms = now;
  if (changed) {
    Rebalance(*g);
    RUNNEL_RETURN_IF_ERROR(PersistGroup(*g, true));
  }
  return MembershipOf(*g, it->first);
}

Status GroupManager::Leave(std::string_view group, std::string_view member_id) {
  RUNNEL_ASSIGN_OR_RETURN(auto g, FindStream(group));
  std::lock_guard lk(g->mu);
  RUNNEL_RETURN_IF_ERROR(CheckLive(*g));
  if (g->members.erase(std::string(member_id)) == 0) {
    return Status::NotFound("unknown member '" + std::string(member_id) + "' of group '" + g->name +
                            "'");
  }
  Rebalance(*g);
  return PersistGroup(*g, true);
}

Status Groups::CommitOffsets(std::string_view group, std::string_view member_id, int32_t generation,
                             const std::vector<OffsetCommit>& offsets) {
  std::promise<Status> promise;
  auto f = promise.get_future();
  CommitOffsetsAsync(group, member_id, generation, offsets,
                     [&promise](Status s) { promise.set_value(std::move(s)); });
  return f.get();
}

void GroupManager::CommitOffsetsAsync(std::string_view group, std::string_view member_id,
                                      int32_t generation, const std::vector<OffsetCommit>& offsets,
                                      std::function<void(Status)> done) {
  if (offsets.empty()) {
    done(Status::InvalidArgument("no offsets to commit"));
    return;
  }
  if (member_id.empty() && generation == -1) {
    if (auto g = Find(group); g && g->mode == GroupMode::kQueue) {
      // An admin reset of a queue group moves its delivery cursors (XGROUP SETID).
      std::string topic;
      {
        std::lock_guard lk(g->mu);
        topic = g->config.topic;
      }
      std::vector<std::pair<Partition, Offset>> positions;
      for (const OffsetCommit& c : offsets) {
        if (c.tp.topic != topic) {
          done(Status::InvalidArgument("queue group '" + g->name + "' reads topic '" + topic +
                                       "', not '" + c.tp.topic + "'"));
          return;
        }
        positions.emplace_back(c.tp.partition, c.offset);
      }
      done(SetQueuePositions(group, positions));
      return;
    }
  }
  Status s = StageCommit(group, member_id, generation, offsets, &done, /*external=*/false);
  if (done) done(std::move(s));  // not handed to the committer: validation failed
}

Status GroupManager::StageCommit(std::string_view group, std::string_view member_id,
                                 int32_t generation, const std::vector<OffsetCommit>& offsets,
                                 std::function<void(Status)>* done, bool external) {
  RUNNEL_ASSIGN_OR_RETURN(auto g, FindStream(group));
  {
    std::lock_guard lk(g->mu);
    RUNNEL_RETURN_IF_ERROR(CheckLive(*g));
    if (external && g->protocol == GroupProtocol::kNative) {
      return Status::InvalidArgument("group '" + g->name +
                                     "' is a native consumer group; commit as its member");
    }
    const int64_t now = store_.clock_->NowMs();
    bool changed = false;
    ExpireMembers(*g, now, &changed);
    if (changed) {
      Rebalance(*g);
      PersistGroupAsync(*g);  // never block a commit on it; members rejoin after a restart anyway
    }
    const StreamMember* m = nullptr;
    if (member_id.empty() && generation == -1) {
      if (!g->members.empty()) {
        return Status::Fenced("group '" + g->name + "' has live members; commit as a member");
      }
    } else {
      auto it = g->members.find(std::string(member_id));
      if (it == g->members.end()) {
        return Status::Fenced("member '" + std::string(member_id) + "' is not in group '" +
                              g->name + "'");
      }
      if (generation != g->generation) {
        return Status::Fenced("stale generation " + std::to_string(generation) + " (current " +
                              std::to_string(g->generation) + ") in group '" + g->name + "'");
      }
      m = &it->second;
      it->second.last_seen_ms = now;
    }
    MetaWrites writes;
    std::vector<std::pair<TopicPartition, fmt::OffsetValue>> updates;
    for (const OffsetCommit& c : offsets) {
      if (m && !std::binary_search(m->assignment.begin(), m->assignment.end(), c.tp)) {
        return Status::Fenced(c.tp.topic + "/" + std::to_string(c.tp.partition.value()) +
                              " is not assigned to member '" + std::string(member_id) + "'");
      }
      auto topic = store_.FindTopic(c.tp.topic);
      if (!topic) return Status::NotFound("unknown topic '" + c.tp.topic + "'");
      RUNNEL_ASSIGN_OR_RETURN(
          Offset lo, store_.ListOffset(c.tp.topic, c.tp.partition, OffsetQuery::Earliest()));
      RUNNEL_ASSIGN_OR_RETURN(Offset hi,
                              store_.ListOffset(c.tp.topic, c.tp.partition, OffsetQuery::Latest()));
      if (external) {
        // A Kafka client may commit any position (one past a compacted or future offset).
        if (c.offset.value() < 0) {
          return Status::OutOfRange("negative offset " + std::to_string(c.offset.value()) +
                                    " for " + c.tp.topic + "/" +
                                    std::to_string(c.tp.partition.value()));
        }
      } else if (c.offset < lo || c.offset > hi) {
        return Status::OutOfRange("offset " + std::to_string(c.offset.value()) + " is outside [" +
                                  std::to_string(lo.value()) + ", " + std::to_string(hi.value()) +
                                  "] of " + c.tp.topic + "/" +
                                  std::to_string(c.tp.partition.value()));
      }
      fmt::OffsetValue v{c.offset.value(), now, c.metadata};
      writes.Put(fmt::OffsetKey(g->id, topic->id, c.tp.partition.value()), fmt::Encode(v));
      updates.emplace_back(c.tp, std::move(v));
    }
    for (auto& [tp, v] : updates) g->committed[tp] = std::move(v);
    SubmitAsync(std::move(writes), /*durable=*/true, std::move(*done));
    *done = nullptr;
  }
  return Status::OK();
}

Result<std::vector<CommittedOffset>> GroupManager::FetchOffsets(
    std::string_view group, const std::vector<TopicPartition>& partitions) const {
  RUNNEL_ASSIGN_OR_RETURN(auto g, FindStream(group));
  std::lock_guard lk(g->mu);
  std::vector<CommittedOffset> out;
  for (const TopicPartition& tp : partitions) {
    auto it = g->committed.find(tp);
    if (it == g->committed.end()) {
      out.push_back({});
    } else {
      out.push_back({Offset(it->second.offset), it->second.metadata, it->second.commit_ms});
    }
  }
  return out;
}

}  // namespace runnel::storage
