// The Kafka protocol front-end: unmodified Kafka clients (librdkafka, the Java client, kafka-python,
// KafkaJS) produce, fetch and administer topics on runneld. It decodes Kafka requests with the
// schema-generated codec (runnel/kafka/messages.h), checks rights with the session's token (SASL
// PLAIN), calls the broker core's operations and encodes the answers. See broker/kafka/README.md
// for every API and version served and how Kafka's concepts map onto Runnel's.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "runnel/broker/broker.h"
#include "runnel/broker/frontend.h"

namespace runnel::kafka {

struct KafkaOptions {
  // What Metadata answers as this broker's address: clients connect back to it.
  std::string advertised_host = "127.0.0.1";
  int32_t advertised_port = 9092;
  int32_t node_id = 0;  // this broker's id: leader and controller of everything
  // How long the first rebalance of an empty consumer group waits for more members to join
  // (Kafka's group.initial.rebalance.delay.ms).
  int32_t group_initial_rebalance_delay_ms = 3000;
  // Kafka's auto.create.topics.enable. On: Metadata creates a named unknown topic when the client
  // allows it (v4+ allow_auto_topic_creation; implied before v4), and Produce may create one, both
  // only within BrokerOptions::auto_create_topics, max_topics and the token's rights. Off: no
  // Kafka request creates a topic implicitly (UNKNOWN_TOPIC_OR_PARTITION); CreateTopics still does.
  bool auto_create_topics = true;
};

// Thread-safe. Borrows the broker, which must outlive it.
//
// Threads: Handle answers ApiVersions, InitProducerId and SASL on the caller's thread; produce
// requests of one session go through its ProduceLane, in order; everything else runs on the
// broker's worker pool. Responses leave in request order (the server keeps them ordered, as
// Kafka clients require). Requests Kafka would close the connection for (an unknown API, a
// version not served, a malformed request, anything but ApiVersions and SASL before
// authentication) refuse the session: the connection closes without an answer.
class KafkaFrontEnd final : public broker::FrontEnd {
 public:
  KafkaFrontEnd(broker::Broker& broker, KafkaOptions options);
  ~KafkaFrontEnd() override;

  std::string_view name() const override { return "kafka"; }
  std::shared_ptr<broker::FrontEndSession> NewSession(std::string_view peer) override;
  void Handle(const std::shared_ptr<broker::FrontEndSession>& session, wire::Frame request,
              broker::ResponseFn respond) override;
  size_t ResponseReservation(const wire::Frame& request) const override;
  std::vector<std::string> FramingError(const Status& error) const override;
  bool ordered_responses() const override { return true; }

  // The port Metadata advertises, once a listener on "any" port knows it. Thread-safe.
  void SetAdvertisedPort(int32_t port);

  // The advertised version range of `api_key` ({-1, -1}: not served).
  static std::pair<int16_t, int16_t> ServedVersions(int16_t api_key);

  class Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace runnel::kafka
