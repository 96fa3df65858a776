// Kafka through librdkafka, against --kafka host:port or librdkafka's in-process mock cluster
// (target kafka-mock: it exercises the driver, it is not a Kafka broker and its numbers mean
// nothing). The producer's acks, linger, batch size, compression and idempotence are set
// explicitly from the workload. For durable acks the topic is created with flush.messages=1, which
// makes a Kafka broker fsync before it acknowledges (its default leaves flushing to the OS).
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include <atomic>
#include <thread>

#include "runnel/bench/driver.h"

namespace runnel::bench {
namespace {

struct KafkaDeleter {
  void operator()(rd_kafka_t* rk) const { rd_kafka_destroy(rk); }
};
using Handle = std::unique_ptr<rd_kafka_t, KafkaDeleter>;

Status Set(rd_kafka_conf_t* conf, const std::string& key, const std::string& value) {
  char err[512];
  if (rd_kafka_conf_set(conf, key.c_str(), value.c_str(), err, sizeof err) != RD_KAFKA_CONF_OK)
    return Status::InvalidArgument("kafka config " + key + "=" + value + ": " + err);
  return Status::OK();
}

Result<Handle> NewHandle(rd_kafka_type_t type,
                         const std::vector<std::pair<std::string, std::string>>& config,
                         void (*dr_cb)(rd_kafka_t*, const rd_kafka_message_t*, void*) = nullptr,
                         void* opaque = nullptr) {
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  for (const auto& [k, v] : config) {
    if (Status s = Set(conf, k, v); !s.ok()) {
      rd_kafka_conf_destroy(conf);
      return s;
    }
  }
  if (dr_cb) rd_kafka_conf_set_dr_msg_cb(conf, dr_cb);
  if (opaque) rd_kafka_conf_set_opaque(conf, opaque);
  char err[512];
  rd_kafka_t* rk = rd_kafka_new(type, conf, err, sizeof err);  // owns conf on success
  if (!rk) {
    rd_kafka_conf_destroy(conf);
    return Status::IOError(std::string("kafka: ") + err);
  }
  return Handle(rk);
}

Status KafkaError(rd_kafka_resp_err_t e) {
  return Status::IOError(std::string("kafka: ") + rd_kafka_err2str(e));
}

class KafkaProducer final : public ProducerDriver {
 public:
  static Result<std::unique_ptr<ProducerDriver>> Create(
      const std::vector<std::pair<std::string, std::string>>& config, const std::string& topic,
      SendListener* listener) {
    auto h = NewHandle(RD_KAFKA_PRODUCER, config, &KafkaProducer::OnDelivery, listener);
    if (!h.ok()) return h.status();
    return std::unique_ptr<ProducerDriver>(new KafkaProducer(std::move(h).value(), topic));
  }
  ~KafkaProducer() override {
    rd_kafka_flush(rk_.get(), 10'000);
    stop_ = true;
    poller_.join();
  }

  void Send(OutMessage m, uint64_t token) override {
    void* opaque = reinterpret_cast<void*>(static_cast<uintptr_t>(token));
    rd_kafka_vu_t vu[5] = {};
    size_t n = 0;
    vu[n].vtype = RD_KAFKA_VTYPE_TOPIC;
    vu[n++].u.cstr = topic_.c_str();
    vu[n].vtype = RD_KAFKA_VTYPE_MSGFLAGS;
    vu[n++].u.i = RD_KAFKA_MSG_F_COPY;
    vu[n].vtype = RD_KAFKA_VTYPE_VALUE;
    vu[n].u.mem.ptr = m.value.data();
    vu[n++].u.mem.size = m.value.size();
    if (m.key) {
      vu[n].vtype = RD_KAFKA_VTYPE_KEY;
      vu[n].u.mem.ptr = m.key->data();
      vu[n++].u.mem.size = m.key->size();
    }
    vu[n].vtype = RD_KAFKA_VTYPE_OPAQUE;
    vu[n++].u.ptr = opaque;
    for (;;) {
      rd_kafka_error_t* error = rd_kafka_produceva(rk_.get(), vu, n);
      if (!error) return;
      const rd_kafka_resp_err_t e = rd_kafka_error_code(error);
      rd_kafka_error_destroy(error);
      if (e != RD_KAFKA_RESP_ERR__QUEUE_FULL) {
        static_cast<SendListener*>(rd_kafka_opaque(rk_.get()))->Done(token, KafkaError(e));
        return;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(1));  // the poller frees space
    }
  }

  Status Flush(int64_t timeout_ms) override {
    const rd_kafka_resp_err_t e = rd_kafka_flush(rk_.get(), static_cast<int>(timeout_ms));
    return e == RD_KAFKA_RESP_ERR_NO_ERROR ? Status::OK() : KafkaError(e);
  }

 private:
  KafkaProducer(Handle rk, std::string topic) : rk_(std::move(rk)), topic_(std::move(topic)) {
    poller_ = std::thread([this] {
      while (!stop_) rd_kafka_poll(rk_.get(), 50);
    });
  }
  static void OnDelivery(rd_kafka_t*, const rd_kafka_message_t* m, void* listener) {
    static_cast<SendListener*>(listener)->Done(
        static_cast<uint64_t>(reinterpret_cast<uintptr_t>(m->_private)),
        m->err == RD_KAFKA_RESP_ERR_NO_ERROR ? Status::OK() : KafkaError(m->err));
  }

  Handle rk_;
  std::string topic_;
  std::atomic<bool> stop_{false};
  std::thread poller_;
};

class KafkaConsumer final : public ConsumerDriver {
 public:
  // `partitions` empty: subscribe (group management); else assign these from the start.
  static Result<std::unique_ptr<ConsumerDriver>> Create(
      const std::vector<std::pair<std::string, std::string>>& config, const std::string& topic,
      const std::vector<int32_t>& partitions, bool drain) {
    auto h = NewHandle(RD_KAFKA_CONSUMER, config);
    if (!h.ok()) return h.status();
    rd_kafka_poll_set_consumer(h->get());
    rd_kafka_topic_partition_list_t* topics = rd_kafka_topic_partition_list_new(1);
    rd_kafka_resp_err_t e;
    if (partitions.empty()) {
      rd_kafka_topic_partition_list_add(topics, topic.c_str(), RD_KAFKA_PARTITION_UA);
      e = rd_kafka_subscribe(h->get(), topics);
    } else {
      for (int32_t p : partitions)
        rd_kafka_topic_partition_list_add(topics, topic.c_str(), p)->offset = RD_KAFKA_OFFSET_BEGINNING;
      e = rd_kafka_assign(h->get(), topics);
    }
    rd_kafka_topic_partition_list_destroy(topics);
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR) return KafkaError(e);
    return std::unique_ptr<ConsumerDriver>(new KafkaConsumer(std::move(h).value(), drain));
  }
  ~KafkaConsumer() override {
    queue_.reset();
    rd_kafka_consumer_close(rk_.get());
  }

  // Takes up to `max` messages with librdkafka's batch API (a poll per message cost more than
  // the broker's side of the fetch). The batch call waits until the batch is full or the
  // timeout passed: right for draining a backlog (`drain_`); for latency runs the first message
  // is awaited alone and the rest taken as far as they are there.
  Status Poll(int64_t timeout_ms, int max, std::vector<InMessage>* out) override {
    if (max <= 0) return Status::OK();
    batch_.resize(static_cast<size_t>(max));
    ssize_t n = 0;
    if (drain_) {
      n = rd_kafka_consume_batch_queue(queue_.get(), static_cast<int>(timeout_ms), batch_.data(),
                                       batch_.size());
      if (n < 0) return KafkaError(rd_kafka_last_error());
    } else {
      rd_kafka_message_t* first = rd_kafka_consumer_poll(rk_.get(), static_cast<int>(timeout_ms));
      if (!first) return Status::OK();
      batch_[0] = first;
      n = 1;
      const ssize_t more =
          rd_kafka_consume_batch_queue(queue_.get(), 0, batch_.data() + 1, batch_.size() - 1);
      if (more > 0) n += more;
    }
    Status status;
    for (ssize_t i = 0; i < n; ++i) {
      rd_kafka_message_t* m = batch_[static_cast<size_t>(i)];
      if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
        InMessage in;
        in.value.assign(static_cast<const char*>(m->payload), m->len);
        in.partition = m->partition;
        in.offset = m->offset;
        out->push_back(std::move(in));
      } else if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF && status.ok()) {
        status = KafkaError(m->err);
      }
      rd_kafka_message_destroy(m);
    }
    return status;
  }

  // Kafka acknowledges by committing offsets (here: auto-commit of what was polled).
  Status Ack(const std::vector<const InMessage*>&) override { return Status::OK(); }
  Status Nack(const std::vector<const InMessage*>&, int64_t) override {
    return Status::InvalidArgument(
        "kafka has no per-message nack or redelivery delay (no share groups in librdkafka 2.0)");
  }

  bool Assigned() const override {
    rd_kafka_topic_partition_list_t* parts = nullptr;
    if (rd_kafka_assignment(rk_.get(), &parts) != RD_KAFKA_RESP_ERR_NO_ERROR) return false;
    const bool any = parts->cnt > 0;
    rd_kafka_topic_partition_list_destroy(parts);
    return any;
  }

 private:
  struct QueueDeleter {
    void operator()(rd_kafka_queue_t* q) const { rd_kafka_queue_destroy(q); }
  };
  KafkaConsumer(Handle rk, bool drain)
      : rk_(std::move(rk)), queue_(rd_kafka_queue_get_consumer(rk_.get())), drain_(drain) {}
  Handle rk_;
  std::unique_ptr<rd_kafka_queue_t, QueueDeleter> queue_;
  bool drain_;
  std::vector<rd_kafka_message_t*> batch_;
};

class KafkaDriver final : public Driver {
 public:
  KafkaDriver(TargetOptions options, bool mock) : options_(std::move(options)), mock_(mock) {}
  ~KafkaDriver() override { Finish(); }

  std::string Name() const override { return mock_ ? "kafka-mock" : "kafka"; }

  std::string Settings(const WorkloadSpec& spec) const override {
    std::string s = mock_ ? "librdkafka mock cluster (not a Kafka broker)" : "kafka at " + options_.kafka;
    if (options_.kafka_assign) s += "; consumers by assign";
    s += "; acks=" + Acks(spec);
    if (spec.acks == AckMode::kDurable) s += ", topic flush.messages=1 (fsync before ack), idempotent";
    s += ", linger.ms=" + std::to_string(spec.linger_ms) +
         ", batch.size=" + std::to_string(spec.batch_bytes) + ", lz4";
    return s;
  }

  Status Prepare(const WorkloadSpec& spec, const std::string& topic, const std::string&) override {
    Finish();
    if (spec.kind == WorkloadKind::kQueue && spec.nack_share > 0)
      return Status::InvalidArgument(
          "kafka has no per-message nack or redelivery delay; run queue with --nack-share 0");
    if (mock_) {
      auto h = NewHandle(RD_KAFKA_PRODUCER, {{"log_level", "3"}});
      if (!h.ok()) return h.status();
      holder_ = std::move(h).value();
      mock_cluster_ = rd_kafka_mock_cluster_new(holder_.get(), 1);
      if (!mock_cluster_) return Status::IOError("kafka: cannot create the mock cluster");
      bootstrap_ = rd_kafka_mock_cluster_bootstraps(mock_cluster_);
      const rd_kafka_resp_err_t e =
          rd_kafka_mock_topic_create(mock_cluster_, topic.c_str(), spec.partitions, 1);
      return e == RD_KAFKA_RESP_ERR_NO_ERROR ? Status::OK() : KafkaError(e);
    }
    if (options_.kafka.empty()) return Status::InvalidArgument("target kafka needs --kafka host:port");
    bootstrap_ = options_.kafka;
    return CreateTopic(spec, topic);
  }

  Result<std::unique_ptr<ProducerDriver>> NewProducer(const WorkloadSpec& spec,
                                                      const std::string& topic,
                                                      SendListener* listener) override {
    std::vector<std::pair<std::string, std::string>> config = {
        {"bootstrap.servers", bootstrap_},
        {"acks", Acks(spec)},
        {"linger.ms", std::to_string(spec.linger_ms)},
        {"batch.size", std::to_string(spec.batch_bytes)},
        {"compression.type", "lz4"},
        {"partitioner", "murmur2_random"},  // keys land where Java clients and Runnel put them
        {"queue.buffering.max.messages", "1000000"},
        {"enable.idempotence", spec.acks == AckMode::kDurable ? "true" : "false"},
        {"log_level", "3"}};
    return KafkaProducer::Create(config, topic, listener);
  }

  Result<std::unique_ptr<ConsumerDriver>> NewConsumer(const WorkloadSpec& spec,
                                                      const std::string& topic,
                                                      const std::string& group, ConsumerMode,
                                                      int index) override {
    std::vector<int32_t> partitions;
    if (options_.kafka_assign) {
      for (int32_t p = index; p < spec.partitions; p += std::max(1, spec.consumers))
        partitions.push_back(p);
      if (partitions.empty()) return Status::InvalidArgument("more consumers than partitions");
    }
    std::vector<std::pair<std::string, std::string>> config = {
        {"bootstrap.servers", bootstrap_},
        {"group.id", group},
        {"auto.offset.reset", "earliest"},
        {"enable.auto.commit", options_.kafka_assign ? "false" : "true"},
        {"fetch.wait.max.ms", "10"},
        {"session.timeout.ms", "10000"},
        {"log_level", "3"}};
    return KafkaConsumer::Create(config, topic, partitions, spec.kind == WorkloadKind::kConsume);
  }

  void Finish() override {
    if (mock_cluster_) rd_kafka_mock_cluster_destroy(mock_cluster_);
    mock_cluster_ = nullptr;
    holder_.reset();
  }

 private:
  static std::string Acks(const WorkloadSpec& spec) {
    switch (spec.acks) {
      case AckMode::kNone: return "0";
      case AckMode::kWritten: return "1";
      case AckMode::kDurable: return "all";
    }
    return "all";
  }

  Status CreateTopic(const WorkloadSpec& spec, const std::string& topic) {
    auto h = NewHandle(RD_KAFKA_PRODUCER, {{"bootstrap.servers", bootstrap_}, {"log_level", "3"}});
    if (!h.ok()) return h.status();
    char err[512];
    rd_kafka_NewTopic_t* nt = rd_kafka_NewTopic_new(topic.c_str(), spec.partitions, 1, err, sizeof err);
    if (!nt) return Status::InvalidArgument(std::string("kafka: ") + err);
    if (spec.acks == AckMode::kDurable) rd_kafka_NewTopic_set_config(nt, "flush.messages", "1");
    rd_kafka_queue_t* q = rd_kafka_queue_new(h->get());
    rd_kafka_CreateTopics(h->get(), &nt, 1, nullptr, q);
    rd_kafka_event_t* ev = rd_kafka_queue_poll(q, 30'000);
    Status s = Status::OK();
    if (!ev) {
      s = Status::Timeout("kafka: CreateTopics got no answer from " + bootstrap_ + " in 30 s");
    } else if (rd_kafka_event_error(ev)) {
      s = Status::IOError(std::string("kafka: ") + rd_kafka_event_error_string(ev));
    } else {
      size_t n = 0;
      const rd_kafka_topic_result_t** r =
          rd_kafka_CreateTopics_result_topics(rd_kafka_event_CreateTopics_result(ev), &n);
      for (size_t i = 0; i < n; ++i) {
        const rd_kafka_resp_err_t e = rd_kafka_topic_result_error(r[i]);
        if (e != RD_KAFKA_RESP_ERR_NO_ERROR && e != RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS)
          s = KafkaError(e);
      }
    }
    if (ev) rd_kafka_event_destroy(ev);
    rd_kafka_queue_destroy(q);
    rd_kafka_NewTopic_destroy(nt);
    return s;
  }

  TargetOptions options_;
  bool mock_;
  Handle holder_;  // owns the mock cluster
  rd_kafka_mock_cluster_t* mock_cluster_ = nullptr;
  std::string bootstrap_;
};

}  // namespace

std::unique_ptr<Driver> MakeKafkaDriver(const TargetOptions& options, bool mock) {
  return std::make_unique<KafkaDriver>(options, mock);
}

}  // namespace runnel::bench
