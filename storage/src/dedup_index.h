// The per-topic dedup window: dedup key -> where the first record with that key went.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <string>
#include <string_view>
#include <unordered_map>

namespace runnel::storage {

struct DedupEntry {
  int32_t partition = 0;
  int64_t offset = 0;
  int64_t timestamp_ms = 0;  // first seen
  int64_t expire_ms = 0;     // timestamp_ms + window at insertion
};

// Keys with an expiry queue in insertion order, so expiring costs O(expired keys).
// Not thread-safe: owned by the committer (LogStoreImpl::commit_mu_).
class DedupIndex {
 public:
  // The live entry for `key`, or nullptr if absent or expired at `now_ms`.
  const DedupEntry* Find(std::string_view key, int64_t now_ms) const;
  // Inserts or replaces (an expired entry) `key`.
  void Insert(std::string_view key, const DedupEntry& entry);
  // Removes every entry whose expiry is <= now_ms, calling on_expired(key) for each.
  void Expire(int64_t now_ms, const std::function<void(const std::string&)>& on_expired);
  size_t size() const { return map_.size(); }

 private:
  struct QueueItem {
    int64_t expire_ms;
    const std::string* key;  // points into map_'s node, which is stable until erased
  };
  std::unordered_map<std::string, DedupEntry> map_;
  std::deque<QueueItem> queue_;
};

}  // namespace runnel::storage
