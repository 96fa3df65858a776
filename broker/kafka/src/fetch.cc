// Kafka Fetch (whole stored batches, long-poll on the durable high watermark; fetch sessions are
// not kept: every answer carries session id 0, so clients send full requests) and ListOffsets
// (earliest, latest, by timestamp).
#include "kafka_impl.h"
#include "runnel/common/record_batch.h"

namespace runnel::kafka {
namespace {

constexpr int16_t kFetchSessionIdNotFound = 70;

// The timestamp of the record at `offset` (-1 if it cannot be read).
int64_t RecordTimestamp(storage::LogStore& store, const std::string& topic, Partition partition,
                        Offset offset) {
  auto read = store.Read(topic, partition, offset, 1);
  if (!read.ok()) return -1;
  std::string_view first = read->records;
  BatchHeader h;
  if (!PeekBatchHeader(first, &h).ok()) return -1;
  auto batch = DecodedBatch::Decode(first.substr(0, h.total_size()));
  if (!batch.ok()) return -1;
  for (const auto& rec : batch->records())
    if (rec.offset == offset.value()) return rec.timestamp;
  return -1;
}

}  // namespace

void KafkaFrontEnd::Impl::Fetch(const CallPtr& c, FetchRequest& req) {
  auto resp = std::make_shared<FetchResponse>();
  resp->session_id = 0;
  if (req.session_id != 0) {
    resp->error_code = kFetchSessionIdNotFound;  // this broker never hands out sessions
    return Reply(c, *resp, true);
  }
  broker::FetchSpec spec;
  spec.max_wait_ms = req.max_wait_ms;
  spec.min_bytes = req.min_bytes;
  spec.max_bytes = req.max_bytes;
  // Where each partition of the spec goes in the response.
  auto slots = std::make_shared<std::vector<std::pair<size_t, size_t>>>();
  resp->responses.resize(req.topics.size());
  for (size_t t = 0; t < req.topics.size(); ++t) {
    auto& in = req.topics[t];
    auto& out = resp->responses[t];
    out.topic = in.topic;
    const bool allowed =
        !c->principal || Check(c, c->principal->OnTopic(Op::kConsume, in.topic)).ok();
    for (size_t p = 0; p < in.partitions.size(); ++p) {
      auto& part = in.partitions[p];
      FetchResponse::PartitionData pd;
      pd.partition_index = part.partition;
      pd.aborted_transactions.emplace();  // none: Runnel has no transactions
      if (!allowed) {
        pd.error_code = Code(Error::kTopicAuthorizationFailed);
      } else {
        spec.partitions.push_back(
            {in.topic, part.partition, part.fetch_offset, part.partition_max_bytes});
        slots->emplace_back(t, p);
      }
      out.partitions.push_back(std::move(pd));
    }
  }
  if (spec.partitions.empty()) return Reply(c, *resp);
  broker_.Fetch(std::move(spec), [this, c, resp, slots](
                                     std::vector<broker::FetchPartitionResult> results) {
    bool failed = false;
    for (size_t i = 0; i < results.size() && i < slots->size(); ++i) {
      auto& r = results[i];
      auto& pd = resp->responses[(*slots)[i].first].partitions[(*slots)[i].second];
      pd.error_code = Code(ToKafka(r.status));
      failed |= !r.status.ok();
      pd.high_watermark = r.high_watermark;
      pd.last_stable_offset = r.high_watermark;  // no transactions: everything is stable
      pd.log_start_offset = r.log_start;
      pd.records = std::move(r.records);
    }
    Reply(c, *resp, failed);
  });
}

void KafkaFrontEnd::Impl::ListOffsets(const CallPtr& c, ListOffsetsRequest& req) {
  ListOffsetsResponse resp;
  bool failed = false;
  storage::LogStore& store = broker_.store();
  for (const auto& in : req.topics) {
    ListOffsetsResponse::ListOffsetsTopicResponse out;
    out.name = in.name;
    const bool allowed = !c->principal || Check(c, c->principal->SeeTopic(in.name)).ok();
    for (const auto& part : in.partitions) {
      ListOffsetsResponse::ListOffsetsPartitionResponse pr;
      pr.partition_index = part.partition_index;
      if (!allowed) {
        pr.error_code = Code(Error::kTopicAuthorizationFailed);
        failed = true;
        out.partitions.push_back(std::move(pr));
        continue;
      }
      // -1 latest, -2 earliest (Kafka's sentinels); anything else is a timestamp in ms.
      const storage::OffsetQuery q = part.timestamp == -1   ? storage::OffsetQuery::Latest()
                                     : part.timestamp == -2 ? storage::OffsetQuery::Earliest()
                                                            : storage::OffsetQuery::AtTime(part.timestamp);
      const Partition partition(part.partition_index);
      auto r = store.ListOffset(in.name, partition, q);
      if (!r.ok()) {
        pr.error_code = Code(ToKafka(r.status()));
        failed = true;
      } else if (part.timestamp < 0) {
        pr.offset = r->value();
      } else {
        // By time: the first record at or after the timestamp, with its own timestamp; none
        // (offset at the high watermark) is -1 / -1, as in Kafka.
        auto hwm = store.ListOffset(in.name, partition, storage::OffsetQuery::Latest());
        if (hwm.ok() && r->value() < hwm->value()) {
          pr.offset = r->value();
          pr.timestamp = RecordTimestamp(store, in.name, partition, *r);
        }
      }
      out.partitions.push_back(std::move(pr));
    }
    resp.topics.push_back(std::move(out));
  }
  Reply(c, resp, failed);
}

}  // namespace runnel::kafka
