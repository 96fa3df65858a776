// Kafka Metadata and FindCoordinator: this broker is the only broker, the controller and every partition's leader
// and only replica. Named unknown topics are created when the client allows it, the broker
// auto-creates topics and the token may produce to them.
#include "kafka_impl.h"
#include "runnel/storage/topic_config.h"

namespace runnel::kafka {

void KafkaFrontEnd::Impl::Metadata(const CallPtr& c, MetadataRequest& req) {
  MetadataResponse resp;
  resp.brokers.push_back(
      {options_.node_id, options_.advertised_host, advertised_port_.load(), std::nullopt});
  resp.cluster_id = cluster_id_;
  resp.controller_id = options_.node_id;
  const Principal* who = c->principal.get();
  // v0: an empty list means every topic; v1+: null does (and an empty list none).
  std::vector<std::string> names;
  bool listing = false;
  if (!req.topics || (c->version == 0 && req.topics->empty())) {
    names = broker_.ListTopics(who);
    listing = true;
  } else {
    for (const auto& t : *req.topics) names.push_back(t.name.value_or(""));
  }
  // Auto-creation is asked for in v4+ (allow_auto_topic_creation) and implied before; it needs
  // --kafka-auto-create-topics (and, checked by the core, --auto-create-topics, --max-topics and
  // the right to produce to the topic).
  const bool auto_create =
      options_.auto_create_topics && (c->version < 4 || req.allow_auto_topic_creation);
  bool failed = false;
  for (const auto& name : names) {
    MetadataResponse::MetadataResponseTopic tm;
    tm.name = name;
    tm.is_internal = false;
    if (!storage::ValidateTopicName(name).ok()) {
      tm.error_code = Code(Error::kInvalidTopicException);
    } else if (!listing && who && !Check(c, who->SeeTopic(name)).ok()) {
      tm.error_code = Code(Error::kTopicAuthorizationFailed);
    } else {
      auto info = broker_.DescribeTopic(name, auto_create, who);
      if (!info.ok()) {
        tm.error_code = Code(ToKafka(info.status()));
      } else {
        for (const auto& p : info->partitions) {
          MetadataResponse::MetadataResponsePartition mp;
          mp.partition_index = p.partition.value();
          mp.leader_id = options_.node_id;
          mp.leader_epoch = 0;
          mp.replica_nodes = {options_.node_id};
          mp.isr_nodes = {options_.node_id};
          tm.partitions.push_back(std::move(mp));
        }
      }
    }
    failed |= tm.error_code != 0;
    resp.topics.push_back(std::move(tm));
  }
  Reply(c, resp, failed);
}

void KafkaFrontEnd::Impl::FindCoordinator(const CallPtr& c, FindCoordinatorRequest& req) {
  FindCoordinatorResponse resp;
  resp.node_id = options_.node_id;
  resp.host = options_.advertised_host;
  resp.port = advertised_port_.load();
  if (req.key_type != 0) {
    resp.error_code = Code(Error::kCoordinatorNotAvailable);  // no transaction coordinator
    resp.error_message = "Runnel has no transactions";
  } else if (c->principal && !Check(c, c->principal->SeeGroup(req.key)).ok()) {
    resp.error_code = Code(Error::kGroupAuthorizationFailed);
  }
  if (resp.error_code != 0) {
    resp.node_id = -1;
    resp.host.clear();
    resp.port = -1;
  }
  Reply(c, resp, resp.error_code != 0);
}

}  // namespace runnel::kafka
