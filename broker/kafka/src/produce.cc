// Kafka Produce and InitProducerId over the core's appends. acks -1 (all) is Runnel's durable
// ack (after the fsync), 1 is written (after the WAL write), 0 gets no answer. An idempotent
// producer's (producer id, epoch, sequence) are checked by the store, so a retried batch is
// answered with its original offsets and stored once.
#include <mutex>

#include "kafka_impl.h"
#include "runnel/storage/topic_config.h"

namespace runnel::kafka {

void KafkaFrontEnd::Impl::Produce(const CallPtr& c, ProduceRequest& req) {
  struct State {
    std::mutex mu;
    ProduceResponse resp;
    size_t remaining = 1;  // one extra until every append was submitted
    bool failed = false;
  };
  auto st = std::make_shared<State>();
  const bool answer = req.acks != 0;
  storage::AckMode mode = storage::AckMode::kDurable;
  Error request_error = Error::kNone;
  if (c->version < 3) {
    request_error = Error::kUnsupportedVersion;  // message formats v0 and v1 are not stored
  } else if (req.acks == 1) {
    mode = storage::AckMode::kWritten;
  } else if (req.acks == 0) {
    mode = storage::AckMode::kNone;
  } else if (req.acks != -1) {
    request_error = Error::kInvalidRequiredAcks;
  } else if (req.transactional_id) {
    request_error = Error::kTransactionalIdAuthorizationFailed;  // no transactions here
  }
  // Finishes one partition (or the submission itself, with i == npos).
  auto finish = [this, c, st, answer](size_t t, size_t p, Error e, int64_t base_offset) {
    bool last = false;
    {
      std::lock_guard lk(st->mu);
      if (t != SIZE_MAX) {
        auto& out = st->resp.responses[t].partition_responses[p];
        out.error_code = Code(e);
        out.base_offset = base_offset;
        st->failed |= e != Error::kNone;
      }
      last = --st->remaining == 0;
    }
    if (last && answer) Reply(c, st->resp, st->failed);
  };
  st->resp.responses.resize(req.topic_data.size());
  for (size_t t = 0; t < req.topic_data.size(); ++t) {
    auto& in = req.topic_data[t];
    auto& out = st->resp.responses[t];
    out.name = in.name;
    out.partition_responses.resize(in.partition_data.size());
    for (size_t p = 0; p < in.partition_data.size(); ++p) out.partition_responses[p].index = in.partition_data[p].index;
    st->remaining += in.partition_data.size();
  }
  for (size_t t = 0; t < req.topic_data.size(); ++t) {
    auto& in = req.topic_data[t];
    Error topic_error = request_error;
    if (topic_error == Error::kNone && !storage::ValidateTopicName(in.name).ok())
      topic_error = Error::kInvalidTopicException;
    if (topic_error == Error::kNone && c->principal &&
        !Check(c, c->principal->OnTopic(Op::kProduce, in.name)).ok())
      topic_error = Error::kTopicAuthorizationFailed;
    // Without --kafka-auto-create-topics an unknown topic stays unknown, as in Kafka.
    if (topic_error == Error::kNone && !options_.auto_create_topics &&
        !broker_.store().DescribeTopic(in.name).ok())
      topic_error = Error::kUnknownTopicOrPartition;
    for (size_t p = 0; p < in.partition_data.size(); ++p) {
      auto& part = in.partition_data[p];
      if (topic_error != Error::kNone) {
        finish(t, p, topic_error, -1);
        continue;
      }
      if (!part.records || part.records->empty()) {
        finish(t, p, Error::kInvalidRecord, -1);
        continue;
      }
      storage::AppendRequest ar{in.name, Partition(part.index), std::move(*part.records), mode};
      broker_.Append(std::move(ar), [this, finish, t, p, topic = in.name](
                                        Result<storage::AppendResult> r) {
        if (r.ok()) {
          finish(t, p, Error::kNone, r->base_offset.value());
        } else if (r.status().code() == StatusCode::kOutOfRange &&
                   !broker_.store().DescribeTopic(topic).ok()) {
          finish(t, p, Error::kUnknownTopicOrPartition, -1);  // not created: --max-topics
        } else {
          finish(t, p, ToKafka(r.status()), -1);
        }
      });
    }
  }
  if (!answer) NoReply(c);  // acks=0: appends are submitted, in order; nothing is answered
  finish(SIZE_MAX, 0, Error::kNone, 0);
}

void KafkaFrontEnd::Impl::InitProducerId(const CallPtr& c, InitProducerIdRequest& req) {
  InitProducerIdResponse resp;
  if (req.transactional_id) {
    resp.error_code = Code(Error::kTransactionalIdAuthorizationFailed);  // no transactions here
    return Reply(c, resp, true);
  }
  if (c->principal && !Check(c, c->principal->Allows(Op::kProduce)).ok()) {
    resp.error_code = Code(Error::kClusterAuthorizationFailed);
    return Reply(c, resp, true);
  }
  auto id = broker_.NextProducerId();
  if (!id.ok()) {
    resp.error_code = Code(ToKafka(id.status()));
    return Reply(c, resp, true);
  }
  resp.producer_id = *id;
  resp.producer_epoch = 0;
  Reply(c, resp);
}

}  // namespace runnel::kafka
