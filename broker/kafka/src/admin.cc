// Kafka topic administration: CreateTopics, DeleteTopics, CreatePartitions, DescribeConfigs and
// IncrementalAlterConfigs, over Runnel's topic configs (retention.ms, retention.bytes,
// max.message.bytes share Kafka's names; dedup.window.ms and index.interval.* are Runnel's).
// Kafka settings that have one meaning on a single node (cleanup.policy=delete,
// compression.type=producer, min.insync.replicas=1, ...) are accepted and shown read-only.
#include <algorithm>

#include "kafka_impl.h"
#include "runnel/storage/topic_config.h"

namespace runnel::kafka {
namespace {

constexpr int8_t kResourceTopic = 2;
constexpr int8_t kResourceBroker = 4;
constexpr int8_t kSourceDynamicTopic = 1;
constexpr int8_t kSourceDefault = 5;

// Kafka topic settings with a single meaning here: name, the one value accepted ("" = any),
// and the value shown.
struct FixedConfig {
  std::string_view name;
  std::string_view accepted;
  std::string_view shown;
};
constexpr FixedConfig kFixed[] = {
    {"cleanup.policy", "delete", "delete"},
    {"compression.type", "producer", "producer"},  // batches are stored as the producer sent them
    {"message.timestamp.type", "CreateTime", "CreateTime"},
    {"min.insync.replicas", "1", "1"},
    {"unclean.leader.election.enable", "", "false"},
    {"segment.bytes", "", "1073741824"},  // no segments: retention works on index intervals
    {"segment.ms", "", "604800000"},
    // Runnel fsyncs before every durable ack, whatever these ask for (at least as often).
    {"flush.messages", "", "1"},
    {"flush.ms", "", "0"},
};

const FixedConfig* FindFixed(std::string_view name) {
  for (const auto& f : kFixed)
    if (f.name == name) return &f;
  return nullptr;
}

// Checks Kafka config entries and keeps the ones Runnel stores. InvalidArgument names the key.
Status RunnelConfigs(const std::vector<std::pair<std::string, std::string>>& in,
                     const storage::TopicConfig& base,
                     std::vector<std::pair<std::string, std::string>>* out) {
  storage::TopicConfig probe = base;
  for (const auto& [k, v] : in) {
    if (const FixedConfig* f = FindFixed(k)) {
      if (!f->accepted.empty() && v != f->accepted) {
        return Status::InvalidArgument(k + "=" + v + " is not supported (only " +
                                       std::string(f->accepted) + " on a single-node broker)");
      }
      continue;
    }
    RUNNEL_RETURN_IF_ERROR(probe.Set(k, v));
    out->emplace_back(k, v);
  }
  return probe.Validate();
}

Error TopicAdminError(const Status& s) {
  if (s.code() == StatusCode::kInvalidArgument) return Error::kInvalidConfig;
  if (s.code() == StatusCode::kOutOfRange) return Error::kPolicyViolation;  // --max-topics
  return ToKafka(s);
}

}  // namespace

void KafkaFrontEnd::Impl::CreateTopics(const CallPtr& c, CreateTopicsRequest& req) {
  CreateTopicsResponse resp;
  bool failed = false;
  const auto& defaults = broker_.options().store.default_topic_config;
  for (auto& t : req.topics) {
    CreateTopicsResponse::CreatableTopicResult out;
    out.name = t.name;
    auto fail = [&](Error e, std::string message) {
      out.error_code = Code(e);
      out.error_message = std::move(message);
      failed = true;
    };
    int32_t partitions = t.num_partitions == -1 ? broker_.options().default_partitions
                                                : t.num_partitions;
    std::vector<std::pair<std::string, std::string>> given, configs;
    for (const auto& cfg : t.configs) given.emplace_back(cfg.name, cfg.value.value_or(""));
    if (Status s = storage::ValidateTopicName(t.name); !s.ok()) {
      fail(Error::kInvalidTopicException, s.message());
    } else if (c->principal && !Check(c, c->principal->OnTopic(Op::kAdmin, t.name)).ok()) {
      fail(Error::kTopicAuthorizationFailed, "this token may not create topic " + t.name);
    } else if (t.replication_factor != -1 && t.replication_factor != 1) {
      fail(Error::kInvalidReplicationFactor,
           "Runnel is a single broker: the replication factor must be 1 (or -1)");
    } else if (!t.assignments.empty() &&
               (t.num_partitions != -1 ||
                std::any_of(t.assignments.begin(), t.assignments.end(), [&](const auto& a) {
                  return a.broker_ids != std::vector<int32_t>{options_.node_id};
                }))) {
      fail(Error::kInvalidReplicaAssignment,
           "replica assignments may only name this broker (" + std::to_string(options_.node_id) +
               "), with num_partitions -1");
    } else if (Status bad = RunnelConfigs(given, defaults, &configs); !bad.ok()) {
      fail(Error::kInvalidConfig, bad.message());
    } else {
      if (!t.assignments.empty()) partitions = static_cast<int32_t>(t.assignments.size());
      if (partitions < 1 || partitions > storage::kMaxPartitionsPerTopic) {
        fail(Error::kInvalidPartitions, "the number of partitions must be 1 to " +
                                            std::to_string(storage::kMaxPartitionsPerTopic));
      } else if (req.validate_only) {
        if (broker_.store().DescribeTopic(t.name).ok())
          fail(Error::kTopicAlreadyExists, "topic " + t.name + " already exists");
      } else if (Status created = broker_.CreateTopic(t.name, partitions, configs);
                 !created.ok()) {
        fail(TopicAdminError(created), created.message());
      }
    }
    resp.topics.push_back(std::move(out));
  }
  Reply(c, resp, failed);
}

void KafkaFrontEnd::Impl::DeleteTopics(const CallPtr& c, DeleteTopicsRequest& req) {
  DeleteTopicsResponse resp;
  bool failed = false;
  for (const auto& name : req.topic_names) {
    DeleteTopicsResponse::DeletableTopicResult out;
    out.name = name;
    if (c->principal && !Check(c, c->principal->OnTopic(Op::kAdmin, name)).ok()) {
      out.error_code = Code(Error::kTopicAuthorizationFailed);
    } else {
      out.error_code = Code(ToKafka(broker_.DeleteTopic(name)));
    }
    failed |= out.error_code != 0;
    resp.responses.push_back(std::move(out));
  }
  Reply(c, resp, failed);
}

void KafkaFrontEnd::Impl::CreatePartitions(const CallPtr& c, CreatePartitionsRequest& req) {
  CreatePartitionsResponse resp;
  bool failed = false;
  for (const auto& t : req.topics) {
    CreatePartitionsResponse::CreatePartitionsTopicResult out;
    out.name = t.name;
    auto fail = [&](Error e, std::string message) {
      out.error_code = Code(e);
      out.error_message = std::move(message);
      failed = true;
    };
    auto info = broker_.store().DescribeTopic(t.name);
    if (c->principal && !Check(c, c->principal->OnTopic(Op::kAdmin, t.name)).ok()) {
      fail(Error::kTopicAuthorizationFailed, "this token may not alter topic " + t.name);
    } else if (!info.ok()) {
      fail(ToKafka(info.status()), info.status().message());
    } else if (t.count <= static_cast<int32_t>(info->partitions.size())) {
      fail(Error::kInvalidPartitions,
           "topic " + t.name + " has " + std::to_string(info->partitions.size()) +
               " partitions; the new count must be larger (partitions are never removed)");
    } else if (t.assignments &&
               std::any_of(t.assignments->begin(), t.assignments->end(), [&](const auto& a) {
                 return a.broker_ids != std::vector<int32_t>{options_.node_id};
               })) {
      fail(Error::kInvalidReplicaAssignment, "replica assignments may only name this broker");
    } else if (!req.validate_only) {
      if (Status s = broker_.AlterTopic(t.name, {}, t.count); !s.ok())
        fail(TopicAdminError(s), s.message());
    }
    resp.results.push_back(std::move(out));
  }
  Reply(c, resp, failed);
}

void KafkaFrontEnd::Impl::DescribeConfigs(const CallPtr& c, DescribeConfigsRequest& req) {
  DescribeConfigsResponse resp;
  bool failed = false;
  const auto defaults = broker_.options().store.default_topic_config.ToList();
  for (const auto& res : req.resources) {
    DescribeConfigsResponse::DescribeConfigsResult out;
    out.resource_type = res.resource_type;
    out.resource_name = res.resource_name;
    auto wanted = [&](std::string_view key) {
      return !res.configuration_keys ||
             std::find(res.configuration_keys->begin(), res.configuration_keys->end(), key) !=
                 res.configuration_keys->end();
    };
    auto add = [&](std::string_view name, std::string value, bool read_only, int8_t source) {
      if (!wanted(name)) return;
      DescribeConfigsResponse::DescribeConfigsResourceResult e;
      e.name = std::string(name);
      e.value = std::move(value);
      e.read_only = read_only;
      e.config_source = source;
      out.configs.push_back(std::move(e));
    };
    if (res.resource_type == kResourceTopic) {
      auto info = broker_.store().DescribeTopic(res.resource_name);
      if (c->principal && !Check(c, c->principal->SeeTopic(res.resource_name)).ok()) {
        out.error_code = Code(Error::kTopicAuthorizationFailed);
      } else if (!info.ok()) {
        out.error_code = Code(ToKafka(info.status()));
        out.error_message = info.status().message();
      } else {
        for (auto& [k, v] : info->config.ToList()) {
          const bool is_default = std::find(defaults.begin(), defaults.end(),
                                            std::pair<std::string, std::string>(k, v)) !=
                                  defaults.end();
          add(k, v, false, is_default ? kSourceDefault : kSourceDynamicTopic);
        }
        for (const auto& f : kFixed) add(f.name, std::string(f.shown), true, kSourceDefault);
      }
    } else if (res.resource_type == kResourceBroker) {
      // The broker-wide defaults of new topics, under Kafka's broker names.
      for (auto& [k, v] : defaults) add("log." + k, v, true, kSourceDefault);
    } else {
      out.error_code = Code(Error::kInvalidRequest);
      out.error_message = "only topic (2) and broker (4) resources have configs here";
    }
    failed |= out.error_code != 0;
    resp.results.push_back(std::move(out));
  }
  Reply(c, resp, failed);
}

std::pair<Error, std::string> KafkaFrontEnd::Impl::AlterTopicConfigs(
    const CallPtr& c, int8_t resource_type, const std::string& topic,
    const std::vector<std::pair<std::string, std::string>>& changes, Status bad,
    bool validate_only) {
  if (resource_type != kResourceTopic)
    return {Error::kInvalidRequest, "only topic configs can be altered (broker settings are flags)"};
  if (c->principal && !Check(c, c->principal->OnTopic(Op::kAdmin, topic)).ok())
    return {Error::kTopicAuthorizationFailed, "this token may not alter topic " + topic};
  auto info = broker_.store().DescribeTopic(topic);
  if (!info.ok()) return {ToKafka(info.status()), info.status().message()};
  std::vector<std::pair<std::string, std::string>> kept;
  if (bad.ok()) bad = RunnelConfigs(changes, info->config, &kept);
  if (!bad.ok()) return {Error::kInvalidConfig, bad.message()};
  if (!validate_only && !kept.empty()) {
    if (Status s = broker_.AlterTopic(topic, kept, 0); !s.ok())
      return {TopicAdminError(s), s.message()};
  }
  return {Error::kNone, ""};
}

template <class Out> static void SetResult(Out& out, std::pair<Error, std::string> result) {
  out.error_code = Code(result.first);
  if (result.first != Error::kNone) out.error_message = std::move(result.second);
}

void KafkaFrontEnd::Impl::IncrementalAlterConfigs(const CallPtr& c,
                                                  IncrementalAlterConfigsRequest& req) {
  IncrementalAlterConfigsResponse resp;
  bool failed = false;
  const auto defaults = broker_.options().store.default_topic_config.ToList();
  for (const auto& res : req.resources) {
    IncrementalAlterConfigsResponse::AlterConfigsResourceResponse out;
    out.resource_type = res.resource_type;
    out.resource_name = res.resource_name;
    std::vector<std::pair<std::string, std::string>> changes;
    Status bad;
    for (const auto& cfg : res.configs) {
      switch (cfg.config_operation) {
        case 0:  // SET
          changes.emplace_back(cfg.name, cfg.value.value_or(""));
          break;
        case 1: {  // DELETE: back to the broker default
          auto it = std::find_if(defaults.begin(), defaults.end(),
                                 [&](const auto& kv) { return kv.first == cfg.name; });
          if (it != defaults.end()) {
            changes.emplace_back(cfg.name, it->second);
          } else if (!FindFixed(cfg.name)) {
            bad = Status::InvalidArgument("unknown topic config " + cfg.name);
          }
          break;
        }
        default:  // APPEND, SUBTRACT
          bad = Status::InvalidArgument(cfg.name + " is not a list config");
      }
    }
    SetResult(out, AlterTopicConfigs(c, res.resource_type, res.resource_name, changes, bad,
                                     req.validate_only));
    failed |= out.error_code != 0;
    resp.responses.push_back(std::move(out));
  }
  Reply(c, resp, failed);
}

void KafkaFrontEnd::Impl::AlterConfigs(const CallPtr& c, AlterConfigsRequest& req) {
  // The whole configuration is replaced: every Runnel key not given goes back to the default.
  AlterConfigsResponse resp;
  bool failed = false;
  const auto defaults = broker_.options().store.default_topic_config.ToList();
  for (const auto& res : req.resources) {
    AlterConfigsResponse::AlterConfigsResourceResponse out;
    out.resource_type = res.resource_type;
    out.resource_name = res.resource_name;
    std::vector<std::pair<std::string, std::string>> changes;
    for (const auto& kv : defaults) {
      const bool given = std::any_of(res.configs.begin(), res.configs.end(),
                                     [&](const auto& cfg) { return cfg.name == kv.first; });
      if (!given) changes.push_back(kv);
    }
    for (const auto& cfg : res.configs) changes.emplace_back(cfg.name, cfg.value.value_or(""));
    SetResult(out, AlterTopicConfigs(c, res.resource_type, res.resource_name, changes,
                                     Status::OK(), req.validate_only));
    failed |= out.error_code != 0;
    resp.responses.push_back(std::move(out));
  }
  Reply(c, resp, failed);
}

}  // namespace runnel::kafka
