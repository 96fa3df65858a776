// Recovery: loading every group's state from the meta column family at open.
#include <algorithm>

#include "group_manager.h"
#include "log_store_impl.h"
#include "logging.h"
#include "rocks_status.h"
#include "runnel/common/coding.h"

namespace runnel::storage {

namespace fmt = format;

Status GroupManager::Load() {
  std::unordered_map<uint32_t, std::shared_ptr<GroupState>> by_id;
  RUNNEL_RETURN_IF_ERROR(store_.ForEachMeta(
      fmt::TypeBegin(fmt::MetaKeyType::kGroup), fmt::TypeEnd(fmt::MetaKeyType::kGroup),
      [&](std::string_view k, std::string_view v) {
        fmt::GroupValue gv;
        RUNNEL_RETURN_IF_ERROR(fmt::Decode(v, &gv));
        auto g = std::make_shared<GroupState>();
        g->name = std::string(k.substr(1));
        g->id = gv.group_id;
        g->mode = gv.mode == static_cast<uint8_t>(GroupMode::kStream) ? GroupMode::kStream
                                                                      : GroupMode::kQueue;
        g->generation = gv.generation;
        g->created_ms = gv.created_ms;
        for (const auto& [ck, cv] : gv.config) {
          if (ck == kProtocolKey) {
            if (cv != GroupProtocolName(GroupProtocol::kKafka))
              return Status::Corruption("group '" + g->name + "' has unknown protocol '" + cv +
                                        "'");
            g->protocol = GroupProtocol::kKafka;
            continue;
          }
          RUNNEL_RETURN_IF_ERROR(g->config.Set(ck, cv));
        }
        if (g->mode == GroupMode::kQueue) {
          if (auto t = store_.FindTopic(g->config.topic)) {
            g->topic_id = t->id;
            g->parts.resize(t->partitions.size());
          }
        }
        by_id[g->id] = g;
        groups_[g->name] = std::move(g);
        return Status::OK();
      }));
  std::unordered_map<uint32_t, std::string> topic_names;
  for (const std::string& name : store_.ListTopics())
    topic_names[store_.FindTopic(name)->id] = name;

  RUNNEL_RETURN_IF_ERROR(store_.ForEachMeta(
      fmt::TypeBegin(fmt::MetaKeyType::kOffset), fmt::TypeEnd(fmt::MetaKeyType::kOffset),
      [&](std::string_view k, std::string_view v) {
        if (k.size() != 13) return Status::Corruption("malformed offset key in meta");
        auto g = by_id.find(DecodeFixed32BE(k.data() + 1));
        if (g == by_id.end()) return Status::OK();  // deleted group
        const uint32_t topic_id = DecodeFixed32BE(k.data() + 5);
        const int32_t p = static_cast<int32_t>(DecodeFixed32BE(k.data() + 9));
        fmt::OffsetValue ov;
        RUNNEL_RETURN_IF_ERROR(fmt::Decode(v, &ov));
        GroupState& gs = *g->second;
        if (gs.mode == GroupMode::kQueue) {
          if (topic_id != gs.topic_id) {
            // Its topic was deleted (perhaps recreated under the same name): stay bound to the
            // old one so every call reports the group stale instead of mixing two logs.
            gs.topic_id = topic_id;
          } else if (static_cast<size_t>(p) < gs.parts.size()) {
            gs.parts[static_cast<size_t>(p)].cursor = ov.offset;
          }
          return Status::OK();
        }
        auto topic = topic_names.find(topic_id);
        if (topic == topic_names.end()) return Status::OK();  // deleted topic
        gs.committed[{topic->second, Partition(p)}] = std::move(ov);
        return Status::OK();
      }));

  RUNNEL_RETURN_IF_ERROR(store_.ForEachMeta(
      fmt::TypeBegin(fmt::MetaKeyType::kPending), fmt::TypeEnd(fmt::MetaKeyType::kPending),
      [&](std::string_view k, std::string_view v) {
        if (k.size() != 17) return Status::Corruption("malformed pending key in meta");
        auto g = by_id.find(DecodeFixed32BE(k.data() + 1));
        if (g == by_id.end()) return Status::OK();
        GroupState& gs = *g->second;
        const int32_t p = static_cast<int32_t>(DecodeFixed32BE(k.data() + 5));
        const int64_t off = static_cast<int64_t>(DecodeFixed64BE(k.data() + 9));
        if (static_cast<size_t>(p) >= gs.parts.size()) return Status::OK();
        fmt::PendingValue pv;
        RUNNEL_RETURN_IF_ERROR(fmt::Decode(v, &pv));
        PelEntry e{pv.state,
                   0,
                   pv.deliveries,
                   pv.due_ms,
                   pv.first_delivery_ms,
                   pv.last_active_ms,
                   pv.first_failure_ms,
                   pv.last_failure_ms,
                   std::nullopt};
        if (e.state == fmt::PendingState::kLocked) {
          e.consumer = ConsumerId(gs, pv.consumer, pv.last_active_ms);
          ++gs.consumers[e.consumer].pending;
        }
        if (e.state != fmt::PendingState::kParked) gs.due.insert(DueKey{e.due_ms, p, off});
        gs.parts[static_cast<size_t>(p)].pel.emplace(off, std::move(e));
        return Status::OK();
      }));

  // ordered_keys: rebuild the per-key queues from the records' keys. A crash can leave a key
  // with its next record promoted before the head's dead-letter move was written, and parked
  // entries whose record retention removed: repair both.
  for (auto& [id, g] : by_id) {
    if (g->mode != GroupMode::kQueue || !g->config.ordered_keys) continue;
    GroupRecordReader& reader = ReaderFor(*g);
    const int64_t now = store_.clock_->NowMs();
    for (size_t p = 0; p < g->parts.size(); ++p) {
      auto& pel = g->parts[p].pel;
      for (auto it = pel.begin(); it != pel.end();) {
        auto rec = reader.Get(static_cast<int32_t>(p), it->first);
        if (!rec.ok()) {  // the record is gone: nothing left to deliver
          EraseDue(*g, static_cast<int32_t>(p), it->first, it->second);
          g->overlay.Delete(fmt::PendingKey(g->id, static_cast<int32_t>(p), it->first));
          it = pel.erase(it);
          continue;
        }
        if (rec->key) {
          it->second.key = rec->key;
          g->key_queues[{static_cast<int32_t>(p), *rec->key}].push_back(it->first);
        }
        ++it;
      }
    }
    for (auto& [pk, q] : g->key_queues) {
      auto& pel = g->parts[static_cast<size_t>(pk.first)].pel;
      for (size_t i = 0; i < q.size(); ++i) {
        PelEntry& e = pel.at(q[i]);
        if (i == 0 && e.state == fmt::PendingState::kParked) {
          e.state = fmt::PendingState::kRetry;  // heads are never parked
          e.due_ms = now;
          g->due.insert(DueKey{now, pk.first, q[i]});
          PutEntry(*g, pk.first, q[i], e);
        } else if (i > 0 && e.state != fmt::PendingState::kParked) {
          EraseDue(*g, pk.first, q[i], e);  // only the head may be in flight
          e.state = fmt::PendingState::kParked;
          PutEntry(*g, pk.first, q[i], e);
        }
      }
    }
  }
  return Status::OK();
}

}  // namespace runnel::storage
