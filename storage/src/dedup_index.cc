// DedupIndex implementation.
#include "dedup_index.h"

namespace runnel::storage {

const DedupEntry* DedupIndex::Find(std::string_view key, int64_t now_ms) const {
  auto it = map_.find(std::string(key));
  if (it == map_.end() || it->second.expire_ms <= now_ms) return nullptr;
  return &it->second;
}

void DedupIndex::Insert(std::string_view key, const DedupEntry& entry) {
  auto [it, inserted] = map_.insert_or_assign(std::string(key), entry);
  // Replacing keeps the node, so an older queue item for it stays valid; Expire skips it
  // because its expiry no longer matches.
  queue_.push_back({entry.expire_ms, &it->first});
}

void DedupIndex::Expire(int64_t now_ms, const std::function<void(const std::string&)>& on_expired) {
  while (!queue_.empty() && queue_.front().expire_ms <= now_ms) {
    const QueueItem item = queue_.front();
    queue_.pop_front();
    auto it = map_.find(*item.key);
    if (it == map_.end() || it->second.expire_ms != item.expire_ms) continue;  // re-inserted
    if (on_expired) on_expired(it->first);
    map_.erase(it);
  }
}

}  // namespace runnel::storage
