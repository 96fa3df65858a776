// Encoders and decoders for the keys and values described in format.h / FORMAT.md.
#include "runnel/storage/format.h"

#include <charconv>

#include "runnel/common/coding.h"

namespace runnel::storage::format {
namespace {

std::string KeyWithId(MetaKeyType type, uint32_t id) {
  std::string k(1, static_cast<char>(type));
  PutFixed32BE(&k, id);
  return k;
}

Status Bad(std::string_view what) {
  return Status::Corruption(std::string("malformed ") + std::string(what) + " value in meta");
}

// Checks the leading layout-version byte.
bool ReadVersion(ByteReader& r) {
  uint8_t v;
  return r.ReadU8(&v) && v == kValueVersion;
}

bool ReadI64(ByteReader& r, int64_t* v) {
  uint64_t u;
  if (!r.ReadFixed64BE(&u)) return false;
  *v = static_cast<int64_t>(u);
  return true;
}
void PutConfig(std::string* s, const std::vector<std::pair<std::string, std::string>>& config) {
  PutVarint64(s, config.size());
  for (const auto& [key, value] : config) {
    PutLengthPrefixed(s, key);
    PutLengthPrefixed(s, value);
  }
}
bool ReadConfig(ByteReader& r, std::vector<std::pair<std::string, std::string>>* config) {
  uint64_t count;
  if (!r.ReadVarint64(&count) || count > r.remaining() / 2) return false;
  config->clear();
  for (uint64_t i = 0; i < count; ++i) {
    std::string_view key, value;
    if (!r.ReadLengthPrefixed(&key) || !r.ReadLengthPrefixed(&value)) return false;
    config->emplace_back(key, value);
  }
  return true;
}

bool ReadI32(ByteReader& r, int32_t* v) {
  uint32_t u;
  if (!r.ReadFixed32BE(&u)) return false;
  *v = static_cast<int32_t>(u);
  return true;
}

}  // namespace

std::string LogColumnFamilyName(uint32_t uid) {
  return std::string(kLogColumnFamilyPrefix) + std::to_string(uid);
}

std::optional<uint32_t> ParseLogColumnFamilyName(std::string_view name) {
  if (!name.starts_with(kLogColumnFamilyPrefix)) return std::nullopt;
  name.remove_prefix(kLogColumnFamilyPrefix.size());
  uint32_t uid = 0;
  auto [ptr, ec] = std::from_chars(name.data(), name.data() + name.size(), uid);
  if (ec != std::errc() || ptr != name.data() + name.size() || name.empty()) return std::nullopt;
  return uid;
}

std::string LogKey(uint32_t uid, int64_t base_offset) {
  std::string k;
  k.reserve(12);
  PutFixed32BE(&k, uid);
  PutFixed64BE(&k, static_cast<uint64_t>(base_offset));
  return k;
}

std::string LogRangeBegin(uint32_t uid) {
  std::string k;
  PutFixed32BE(&k, uid);
  return k;
}

bool ParseLogKey(std::string_view key, uint32_t* uid, int64_t* base_offset) {
  if (key.size() != 12) return false;
  *uid = DecodeFixed32BE(key.data());
  *base_offset = static_cast<int64_t>(DecodeFixed64BE(key.data() + 4));
  return true;
}

std::string FormatVersionKey() { return std::string(1, static_cast<char>(MetaKeyType::kVersion)); }
std::string CountersKey() { return std::string(1, static_cast<char>(MetaKeyType::kCounters)); }
std::string TopicKeyPrefix() { return TypeBegin(MetaKeyType::kTopic); }
std::string TopicKey(std::string_view name) { return TopicKeyPrefix() + std::string(name); }
std::string PartitionKey(uint32_t uid) { return KeyWithId(MetaKeyType::kPartition, uid); }

std::string IndexKey(uint32_t uid, int64_t base_offset) {
  std::string k = KeyWithId(MetaKeyType::kIndex, uid);
  PutFixed64BE(&k, static_cast<uint64_t>(base_offset));
  return k;
}

std::string ProducerKey(uint32_t uid, int64_t producer_id) {
  std::string k = KeyWithId(MetaKeyType::kProducer, uid);
  PutFixed64BE(&k, static_cast<uint64_t>(producer_id));
  return k;
}

std::string DedupKey(uint32_t topic_id, std::string_view dedup_key) {
  std::string k = KeyWithId(MetaKeyType::kDedup, topic_id);
  k.append(dedup_key);
  return k;
}

std::string TypeBegin(MetaKeyType type) { return std::string(1, static_cast<char>(type)); }
std::string TypeEnd(MetaKeyType type) {
  return std::string(1, static_cast<char>(static_cast<char>(type) + 1));
}

std::string IdPrefixBegin(MetaKeyType type, uint32_t id) { return KeyWithId(type, id); }

std::string IdPrefixEnd(MetaKeyType type, uint32_t id) {
  // The next id's prefix; for the largest id, the next key type.
  return id == UINT32_MAX ? TypeEnd(type) : KeyWithId(type, id + 1);
}

// ---- values --------------------------------------------------------------------------------

std::string Encode(const CountersValue& v) {
  std::string s(1, static_cast<char>(3));
  PutFixed32BE(&s, v.next_topic_id);
  PutFixed32BE(&s, v.next_partition_uid);
  PutFixed32BE(&s, v.next_group_id);
  PutFixed64BE(&s, static_cast<uint64_t>(v.next_producer_id));
  return s;
}

Status Decode(std::string_view in, CountersValue* v) {
  ByteReader r(in);
  uint8_t version;
  if (!r.ReadU8(&version) || version < 1 || version > 3 || !r.ReadFixed32BE(&v->next_topic_id) ||
      !r.ReadFixed32BE(&v->next_partition_uid)) {
    return Bad("counters");
  }
  v->next_group_id = 1;
  v->next_producer_id = 0;
  if (version >= 2 && !r.ReadFixed32BE(&v->next_group_id)) return Bad("counters");
  if (version >= 3) {
    uint64_t pid;
    if (!r.ReadFixed64BE(&pid) || pid > uint64_t{INT64_MAX}) return Bad("counters");
    v->next_producer_id = static_cast<int64_t>(pid);
  }
  return r.empty() ? Status::OK() : Bad("counters");
}

std::string GroupKey(std::string_view name) {
  return TypeBegin(MetaKeyType::kGroup) + std::string(name);
}

std::string OffsetKey(uint32_t group_id, uint32_t topic_id, int32_t partition) {
  std::string k = KeyWithId(MetaKeyType::kOffset, group_id);
  PutFixed32BE(&k, topic_id);
  PutFixed32BE(&k, static_cast<uint32_t>(partition));
  return k;
}

std::string PendingKey(uint32_t group_id, int32_t partition, int64_t offset) {
  std::string k = KeyWithId(MetaKeyType::kPending, group_id);
  PutFixed32BE(&k, static_cast<uint32_t>(partition));
  PutFixed64BE(&k, static_cast<uint64_t>(offset));
  return k;
}

std::string DeadLetterKey(uint32_t group_id, int32_t partition, int64_t offset) {
  std::string k = KeyWithId(MetaKeyType::kDeadLetter, group_id);
  PutFixed32BE(&k, static_cast<uint32_t>(partition));
  PutFixed64BE(&k, static_cast<uint64_t>(offset));
  return k;
}

std::string RedriveKey(uint32_t group_id, uint32_t dlq_topic_id, int32_t dlq_partition) {
  std::string k = KeyWithId(MetaKeyType::kRedrive, group_id);
  PutFixed32BE(&k, dlq_topic_id);
  PutFixed32BE(&k, static_cast<uint32_t>(dlq_partition));
  return k;
}

std::string RedrivenKey(uint32_t group_id, uint32_t dlq_topic_id, int32_t dlq_partition,
                        int64_t dlq_offset) {
  std::string k = RedriveKey(group_id, dlq_topic_id, dlq_partition);
  k[0] = static_cast<char>(MetaKeyType::kRedriven);
  PutFixed64BE(&k, static_cast<uint64_t>(dlq_offset));
  return k;
}

bool ParseRedrivenKey(std::string_view key, uint32_t* group_id, uint32_t* dlq_topic_id,
                      int32_t* dlq_partition, int64_t* dlq_offset) {
  if (key.size() != 1 + 4 + 4 + 4 + 8 || key[0] != static_cast<char>(MetaKeyType::kRedriven))
    return false;
  const char* p = key.data() + 1;
  *group_id = DecodeFixed32BE(p);
  *dlq_topic_id = DecodeFixed32BE(p + 4);
  *dlq_partition = static_cast<int32_t>(DecodeFixed32BE(p + 8));
  *dlq_offset = static_cast<int64_t>(DecodeFixed64BE(p + 12));
  return true;
}

std::string Encode(const GroupValue& v) {
  std::string s(1, static_cast<char>(kValueVersion));
  PutFixed32BE(&s, v.group_id);
  PutFixed8(&s, v.mode);
  PutFixed32BE(&s, static_cast<uint32_t>(v.generation));
  PutFixed64BE(&s, static_cast<uint64_t>(v.created_ms));
  PutConfig(&s, v.config);
  return s;
}

Status Decode(std::string_view in, GroupValue* v) {
  ByteReader r(in);
  if (!ReadVersion(r) || !r.ReadFixed32BE(&v->group_id) || !r.ReadU8(&v->mode) ||
      !ReadI32(r, &v->generation) || !ReadI64(r, &v->created_ms) || !ReadConfig(r, &v->config) ||
      !r.empty()) {
    return Bad("group");
  }
  return Status::OK();
}

std::string Encode(const OffsetValue& v) {
  std::string s(1, static_cast<char>(kValueVersion));
  PutFixed64BE(&s, static_cast<uint64_t>(v.offset));
  PutFixed64BE(&s, static_cast<uint64_t>(v.commit_ms));
  PutLengthPrefixed(&s, v.metadata);
  return s;
}

Status Decode(std::string_view in, OffsetValue* v) {
  ByteReader r(in);
  std::string_view meta;
  if (!ReadVersion(r) || !ReadI64(r, &v->offset) || !ReadI64(r, &v->commit_ms) ||
      !r.ReadLengthPrefixed(&meta) || !r.empty()) {
    return Bad("offset");
  }
  v->metadata = meta;
  return Status::OK();
}

std::string Encode(const PendingValue& v) {
  std::string s(1, static_cast<char>(kValueVersion));
  PutFixed8(&s, static_cast<uint8_t>(v.state));
  PutFixed32BE(&s, static_cast<uint32_t>(v.deliveries));
  PutFixed64BE(&s, static_cast<uint64_t>(v.due_ms));
  PutFixed64BE(&s, static_cast<uint64_t>(v.first_delivery_ms));
  PutFixed64BE(&s, static_cast<uint64_t>(v.last_active_ms));
  PutFixed64BE(&s, static_cast<uint64_t>(v.first_failure_ms));
  PutFixed64BE(&s, static_cast<uint64_t>(v.last_failure_ms));
  PutLengthPrefixed(&s, v.consumer);
  return s;
}

Status Decode(std::string_view in, PendingValue* v) {
  ByteReader r(in);
  uint8_t state;
  std::string_view consumer;
  if (!ReadVersion(r) || !r.ReadU8(&state) || state < 1 || state > 3 ||
      !ReadI32(r, &v->deliveries) || !ReadI64(r, &v->due_ms) ||
      !ReadI64(r, &v->first_delivery_ms) || !ReadI64(r, &v->last_active_ms) ||
      !ReadI64(r, &v->first_failure_ms) || !ReadI64(r, &v->last_failure_ms) ||
      !r.ReadLengthPrefixed(&consumer) || !r.empty()) {
    return Bad("pending");
  }
  v->state = static_cast<PendingState>(state);
  v->consumer = consumer;
  return Status::OK();
}

std::string Encode(const DeadLetterValue& v) {
  std::string s(1, static_cast<char>(kValueVersion));
  PutFixed32BE(&s, static_cast<uint32_t>(v.dlq_partition));
  PutFixed64BE(&s, static_cast<uint64_t>(v.dlq_offset));
  PutFixed64BE(&s, static_cast<uint64_t>(v.dead_lettered_ms));
  PutLengthPrefixed(&s, v.reason);
  return s;
}

Status Decode(std::string_view in, DeadLetterValue* v) {
  ByteReader r(in);
  std::string_view reason;
  if (!ReadVersion(r) || !ReadI32(r, &v->dlq_partition) || !ReadI64(r, &v->dlq_offset) ||
      !ReadI64(r, &v->dead_lettered_ms) || !r.ReadLengthPrefixed(&reason) || !r.empty()) {
    return Bad("dead-letter");
  }
  v->reason = reason;
  return Status::OK();
}

std::string Encode(const TopicValue& v) {
  std::string s(1, static_cast<char>(kValueVersion));
  PutFixed32BE(&s, v.topic_id);
  PutFixed64BE(&s, static_cast<uint64_t>(v.created_ms));
  PutFixed32BE(&s, static_cast<uint32_t>(v.partition_uids.size()));
  for (uint32_t uid : v.partition_uids) PutFixed32BE(&s, uid);
  PutConfig(&s, v.config);
  return s;
}

Status Decode(std::string_view in, TopicValue* v) {
  ByteReader r(in);
  uint32_t n;
  if (!ReadVersion(r) || !r.ReadFixed32BE(&v->topic_id) || !ReadI64(r, &v->created_ms) ||
      !r.ReadFixed32BE(&n) || n > r.remaining() / 4) {
    return Bad("topic");
  }
  v->partition_uids.resize(n);
  for (uint32_t& uid : v->partition_uids) {
    if (!r.ReadFixed32BE(&uid)) return Bad("topic");
  }
  if (!ReadConfig(r, &v->config)) return Bad("topic");
  return r.empty() ? Status::OK() : Bad("topic");
}

std::string Encode(const PartitionValue& v) {
  std::string s(1, static_cast<char>(kValueVersion));
  PutFixed32BE(&s, v.topic_id);
  PutFixed32BE(&s, static_cast<uint32_t>(v.partition));
  PutFixed64BE(&s, static_cast<uint64_t>(v.next_offset));
  PutFixed64BE(&s, static_cast<uint64_t>(v.log_start));
  PutFixed64BE(&s, v.start_bytes);
  PutFixed64BE(&s, v.end_bytes);
  PutFixed64BE(&s, static_cast<uint64_t>(v.max_timestamp));
  return s;
}

Status Decode(std::string_view in, PartitionValue* v) {
  ByteReader r(in);
  if (!ReadVersion(r) || !r.ReadFixed32BE(&v->topic_id) || !ReadI32(r, &v->partition) ||
      !ReadI64(r, &v->next_offset) || !ReadI64(r, &v->log_start) ||
      !r.ReadFixed64BE(&v->start_bytes) || !r.ReadFixed64BE(&v->end_bytes) ||
      !ReadI64(r, &v->max_timestamp) || !r.empty()) {
    return Bad("partition");
  }
  return Status::OK();
}

std::string Encode(const IndexValue& v) {
  std::string s(1, static_cast<char>(kValueVersion));
  PutFixed64BE(&s, v.bytes_before);
  PutFixed64BE(&s, static_cast<uint64_t>(v.max_ts_before));
  PutFixed64BE(&s, static_cast<uint64_t>(v.created_ms));
  return s;
}

Status Decode(std::string_view in, IndexValue* v) {
  ByteReader r(in);
  if (!ReadVersion(r) || !r.ReadFixed64BE(&v->bytes_before) || !ReadI64(r, &v->max_ts_before) ||
      !ReadI64(r, &v->created_ms) || !r.empty()) {
    return Bad("index");
  }
  return Status::OK();
}

std::string Encode(const ProducerValue& v) {
  std::string s(1, static_cast<char>(kValueVersion));
  PutFixed16BE(&s, static_cast<uint16_t>(v.epoch));
  PutFixed32BE(&s, static_cast<uint32_t>(v.last_sequence));
  PutFixed64BE(&s, static_cast<uint64_t>(v.last_update_ms));
  PutFixed8(&s, static_cast<uint8_t>(v.recent.size()));
  for (const ProducerBatchValue& b : v.recent) {
    PutFixed32BE(&s, static_cast<uint32_t>(b.first_sequence));
    PutFixed32BE(&s, static_cast<uint32_t>(b.last_sequence));
    PutFixed64BE(&s, static_cast<uint64_t>(b.base_offset));
    PutFixed64BE(&s, static_cast<uint64_t>(b.last_offset));
  }
  return s;
}

Status Decode(std::string_view in, ProducerValue* v) {
  ByteReader r(in);
  uint16_t epoch;
  uint8_t n;
  if (!ReadVersion(r) || !r.ReadFixed16BE(&epoch) || !ReadI32(r, &v->last_sequence) ||
      !ReadI64(r, &v->last_update_ms) || !r.ReadU8(&n) || n > kMaxRecentBatches) {
    return Bad("producer");
  }
  v->epoch = static_cast<int16_t>(epoch);
  v->recent.resize(n);
  for (ProducerBatchValue& b : v->recent) {
    if (!ReadI32(r, &b.first_sequence) || !ReadI32(r, &b.last_sequence) ||
        !ReadI64(r, &b.base_offset) || !ReadI64(r, &b.last_offset)) {
      return Bad("producer");
    }
  }
  return r.empty() ? Status::OK() : Bad("producer");
}

std::string Encode(const DedupValue& v) {
  std::string s(1, static_cast<char>(kValueVersion));
  PutFixed32BE(&s, static_cast<uint32_t>(v.partition));
  PutFixed64BE(&s, static_cast<uint64_t>(v.offset));
  PutFixed64BE(&s, static_cast<uint64_t>(v.timestamp_ms));
  return s;
}

Status Decode(std::string_view in, DedupValue* v) {
  ByteReader r(in);
  if (!ReadVersion(r) || !ReadI32(r, &v->partition) || !ReadI64(r, &v->offset) ||
      !ReadI64(r, &v->timestamp_ms) || !r.empty()) {
    return Bad("dedup");
  }
  return Status::OK();
}

}  // namespace runnel::storage::format
