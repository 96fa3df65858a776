// Runnel over TCP (a runneld this driver starts, or --broker) and in-process (the embedded broker
// core), both through the client library.
#include "runnel/bench/driver.h"
#include "runnel/broker/embedded.h"
#include "runnel/broker/launch.h"
#include "runnel/client/admin.h"
#include "runnel/client/consumer.h"
#include "runnel/client/producer.h"
#include "scratch_server.h"

namespace runnel::bench {
namespace {

client::Acks ToAcks(AckMode a) {
  switch (a) {
    case AckMode::kNone: return client::Acks::kNone;
    case AckMode::kWritten: return client::Acks::kWritten;
    case AckMode::kDurable: return client::Acks::kDurable;
  }
  return client::Acks::kDurable;
}

class RunnelProducer final : public ProducerDriver {
 public:
  RunnelProducer(std::unique_ptr<client::Producer> p, std::string topic, SendListener* listener)
      : producer_(std::move(p)), topic_(std::move(topic)), listener_(listener) {}
  void Send(OutMessage m, uint64_t token) override {
    client::ProducerRecord r;
    r.topic = topic_;
    r.key = std::move(m.key);
    r.value = std::move(m.value);
    producer_->Send(std::move(r), [l = listener_, token](Result<client::RecordMetadata> md) {
      l->Done(token, md.status());
    });
  }
  Status Flush(int64_t timeout_ms) override { return producer_->Flush(timeout_ms); }

 private:
  std::unique_ptr<client::Producer> producer_;
  std::string topic_;
  SendListener* listener_;
};

class RunnelConsumer final : public ConsumerDriver {
 public:
  RunnelConsumer(std::unique_ptr<client::Consumer> c, std::string topic, bool queue)
      : consumer_(std::move(c)), topic_(std::move(topic)), queue_(queue) {}
  Status Poll(int64_t timeout_ms, int max, std::vector<InMessage>* out) override {
    auto r = consumer_->Poll(timeout_ms, max);
    if (!r.ok()) return r.status();
    for (auto& rec : *r) {
      InMessage m;
      m.value = rec.value ? std::move(*rec.value) : std::string();
      m.deliveries = rec.deliveries;
      m.partition = rec.partition;
      m.offset = rec.offset;
      out->push_back(std::move(m));
    }
    return Status::OK();
  }
  Status Ack(const std::vector<const InMessage*>& messages) override {
    return messages.empty() ? Status::OK() : consumer_->Ack(Records(messages));
  }
  Status Nack(const std::vector<const InMessage*>& messages, int64_t delay_ms) override {
    return messages.empty() ? Status::OK() : consumer_->Nack(Records(messages), delay_ms);
  }
  bool Assigned() const override { return queue_ || !consumer_->Assignment().empty(); }

 private:
  std::vector<client::ConsumerRecord> Records(const std::vector<const InMessage*>& messages) {
    std::vector<client::ConsumerRecord> out(messages.size());
    for (size_t i = 0; i < messages.size(); ++i) {
      out[i].topic = topic_;
      out[i].partition = messages[i]->partition;
      out[i].offset = messages[i]->offset;
    }
    return out;
  }
  std::unique_ptr<client::Consumer> consumer_;
  std::string topic_;
  bool queue_;
};

class RunnelDriver final : public Driver {
 public:
  RunnelDriver(TargetOptions options, bool embedded)
      : options_(std::move(options)), embedded_(embedded) {}
  ~RunnelDriver() override { Finish(); }

  std::string Name() const override { return embedded_ ? "runnel-embedded" : "runnel"; }

  std::string Settings(const WorkloadSpec& spec) const override {
    std::string s = embedded_ ? "in-process broker core" : "runneld over loopback TCP";
    s += "; acks=" + std::string(bench::Name(spec.acks));
    if (spec.acks == AckMode::kDurable) s += " (fsync before ack)";
    s += ", linger.ms=" + std::to_string(spec.linger_ms) +
         ", batch=" + std::to_string(spec.batch_bytes / 1024) + " KiB, lz4, idempotent";
    return s;
  }

  Status Prepare(const WorkloadSpec& spec, const std::string& topic,
                 const std::string& group) override {
    if (Status s = Start(); !s.ok()) return s;
    client::Admin admin(conn_);
    if (Status s = admin.CreateTopic(topic, spec.partitions); !s.ok()) return s;
    if (spec.kind == WorkloadKind::kQueue) {
      // Nacked messages come back once; deliveries are never exhausted by the benchmark.
      return admin.CreateQueueGroup(group, topic, {{"max.deliveries", "100"}});
    }
    return Status::OK();
  }

  Result<std::unique_ptr<ProducerDriver>> NewProducer(const WorkloadSpec& spec,
                                                      const std::string& topic,
                                                      SendListener* listener) override {
    client::ProducerOptions po;
    po.acks = ToAcks(spec.acks);
    po.linger_ms = spec.linger_ms;
    po.batch_bytes = spec.batch_bytes;
    auto p = client::Producer::Create(NewConnection(), po);
    if (!p.ok()) return p.status();
    return std::unique_ptr<ProducerDriver>(new RunnelProducer(std::move(p).value(), topic, listener));
  }

  Result<std::unique_ptr<ConsumerDriver>> NewConsumer(const WorkloadSpec& spec,
                                                      const std::string& topic,
                                                      const std::string& group, ConsumerMode mode,
                                                      int index) override {
    client::ConsumerOptions co;
    co.mode = mode == ConsumerMode::kQueue ? client::ConsumerMode::kQueue
                                           : client::ConsumerMode::kStream;
    co.group = group;
    co.topics = {topic};
    co.max_poll_records = spec.poll_max;
    co.consumer_name = "bench-" + std::to_string(index);
    auto c = client::Consumer::Create(NewConnection(), co);
    if (!c.ok()) return c.status();
    return std::unique_ptr<ConsumerDriver>(new RunnelConsumer(std::move(c).value(), topic, mode == ConsumerMode::kQueue));
  }

  void Finish() override {
    conn_.reset();
    broker_.reset();
    runneld_.reset();  // SIGTERM and wait
    server_.Stop();
  }

 private:
  Status Start() {
    Finish();
    if (!embedded_ && !options_.broker.empty()) {
      auto to = client::ParseBrokerAddress(options_.broker);
      if (!to.ok()) return to.status();
      tcp_ = *to;
      conn_ = client::ConnectTcp(tcp_);
      return Status::OK();
    }
    if (Status s = server_.MakeDir(options_.scratch_dir, Name()); !s.ok()) return s;
    if (embedded_) {
      broker::BrokerOptions bo;
      bo.store.data_dir = server_.Path("data");
      auto b = broker::EmbeddedBroker::Open(bo);
      if (!b.ok()) return b.status();
      broker_ = std::move(b).value();
      conn_ = broker_->Connect();
      return Status::OK();
    }
    runneld_ = std::make_unique<broker::RunneldProcess>(
        broker::RunneldOptions{options_.runneld, server_.dir(), 0, /*http=*/false});
    if (Status s = runneld_->Start(); !s.ok()) return s;
    tcp_.port = runneld_->port();
    conn_ = client::ConnectTcp(tcp_);
    return Status::OK();
  }

  // Each producer and consumer gets its own TCP connection, as separate processes would.
  std::shared_ptr<client::Connection> NewConnection() {
    return embedded_ ? broker_->Connect() : client::ConnectTcp(tcp_);
  }

  TargetOptions options_;
  bool embedded_;
  ScratchServer server_;  // the directory; runneld_ stops before it is removed
  std::unique_ptr<broker::RunneldProcess> runneld_;
  client::TcpOptions tcp_;
  std::unique_ptr<broker::EmbeddedBroker> broker_;
  std::shared_ptr<client::Connection> conn_;
};

}  // namespace

std::unique_ptr<Driver> MakeRunnelDriver(const TargetOptions& options, bool embedded) {
  return std::make_unique<RunnelDriver>(options, embedded);
}

}  // namespace runnel::bench
