// Native handlers for the data path: ApiVersions, InitProducerId, Produce, Fetch, ListOffsets and
// Metadata.
#include <algorithm>
#include <mutex>

#include "native_impl.h"

namespace runnel::native {

void NativeFrontEnd::Impl::Produce(const CallPtr& c) {
  WithRequest<proto::ProduceRequest>(c, [&](proto::ProduceRequest& req) {
    if (req.acks > 2) {
      return ReplyStatus(c, Status::InvalidArgument("acks must be 0, 1 or 2, not " +
                                                    std::to_string(req.acks)));
    }
    struct State {
      std::mutex mu;
      proto::ProduceResponse resp;
      size_t remaining;
    };
    auto st = std::make_shared<State>();
    st->remaining = req.partitions.size();
    st->resp.partitions.resize(req.partitions.size());
    if (req.partitions.empty()) return Reply(c, Status::OK(), &st->resp);
    auto finish_one = [this, c, st](size_t i, Result<storage::AppendResult> r) {
      bool last = false;
      {
        std::lock_guard lk(st->mu);
        auto& out = st->resp.partitions[i];
        if (r.ok()) {
          out.base_offset = r->base_offset.value();
          out.last_offset = r->last_offset.value();
          out.records_written = r->records_written;
          out.duplicate_batch = r->duplicate_batch;
          for (const auto& d : r->duplicates)
            out.duplicates.push_back({d.index, d.partition.value(), d.offset.value()});
        } else {
          out.error = proto::ItemError::From(r.status());
        }
        last = --st->remaining == 0;
      }
      if (last) Reply(c, Status::OK(), &st->resp);
    };
    for (size_t i = 0; i < req.partitions.size(); ++i) {
      auto& p = req.partitions[i];
      st->resp.partitions[i].topic = p.topic;
      st->resp.partitions[i].partition = p.partition;
      storage::AppendRequest ar{p.topic, Partition(p.partition), std::move(p.batch.bytes),
                                static_cast<storage::AckMode>(req.acks)};
      broker_.Append(std::move(ar), [finish_one, i](Result<storage::AppendResult> r) {
        finish_one(i, std::move(r));
      });
    }
  });
}

void NativeFrontEnd::Impl::Metadata(const CallPtr& c, const proto::MetadataRequest& req) {
  proto::MetadataResponse resp;
  const Principal* who = c->principal.get();
  std::vector<std::string> names = req.topics.empty() ? broker_.ListTopics(who) : req.topics;
  for (const auto& name : names) {
    proto::TopicMetadata tm;
    tm.name = name;
    auto info = broker_.DescribeTopic(name, req.allow_auto_create, who);
    if (!info.ok()) {
      tm.error = proto::ItemError::From(info.status());
    } else {
      tm.id = info->id.value();
      tm.config = info->config.ToList();
      for (const auto& p : info->partitions) {
        tm.partitions.push_back({p.partition.value(), p.log_start.value(),
                                 p.high_watermark.value(), static_cast<int64_t>(p.size_bytes)});
      }
    }
    resp.topics.push_back(std::move(tm));
  }
  Reply(c, Status::OK(), &resp);
}

void NativeFrontEnd::Impl::DataRequest(const CallPtr& c) {
  switch (static_cast<Api>(c->header.api)) {
    case Api::kApiVersions:
      return WithRequest<proto::ApiVersionsRequest>(c, [&](auto&) {
        proto::ApiVersionsResponse resp;
        for (uint16_t a = 0; a < 64; ++a) {
          if (proto::ServedVersion(a) >= 0)
            resp.apis.push_back({a, 0, static_cast<uint16_t>(proto::ServedVersion(a))});
        }
        resp.broker_version = "runneld 0.1.0";
        Reply(c, Status::OK(), &resp);
      });
    case Api::kInitProducerId:
      return WithRequest<proto::InitProducerIdRequest>(c, [&](auto&) {
        auto id = broker_.NextProducerId();
        if (!id.ok()) return Reply<proto::InitProducerIdResponse>(c, id.status(), nullptr);
        proto::InitProducerIdResponse resp{*id, 0};
        Reply(c, Status::OK(), &resp);
      });
    case Api::kFetch:
      return WithRequest<proto::FetchRequest>(c, [&](proto::FetchRequest& req) {
        broker::FetchSpec spec;
        spec.max_wait_ms = req.max_wait_ms;
        spec.min_bytes = req.min_bytes;
        spec.max_bytes = req.max_bytes;
        auto resp = std::make_shared<proto::FetchResponse>();
        for (auto& p : req.partitions) {
          spec.partitions.push_back({p.topic, p.partition, p.offset, p.max_bytes});
          proto::FetchPartitionResult out;
          out.topic = std::move(p.topic);
          out.partition = p.partition;
          resp->partitions.push_back(std::move(out));
        }
        broker_.Fetch(std::move(spec),
                      [this, c, resp](std::vector<broker::FetchPartitionResult> results) {
                        for (size_t i = 0; i < results.size(); ++i) {
                          auto& out = resp->partitions[i];
                          auto& r = results[i];
                          if (!r.status.ok()) out.error = proto::ItemError::From(r.status);
                          out.high_watermark = std::max<int64_t>(0, r.high_watermark);
                          out.log_start = std::max<int64_t>(0, r.log_start);
                          out.records.bytes = std::move(r.records);
                        }
                        Reply(c, Status::OK(), resp.get());
                      });
      });
    case Api::kListOffsets:
      return WithRequest<proto::ListOffsetsRequest>(c, [&](proto::ListOffsetsRequest& req) {
        proto::ListOffsetsResponse resp;
        for (const auto& p : req.partitions) {
          proto::ListOffsetsResult out{p.topic, p.partition, {}, -1};
          storage::OffsetQuery q = p.spec == proto::OffsetSpec::kEarliest
                                       ? storage::OffsetQuery::Earliest()
                                   : p.spec == proto::OffsetSpec::kTimestamp
                                       ? storage::OffsetQuery::AtTime(p.timestamp_ms)
                                       : storage::OffsetQuery::Latest();
          auto r = broker_.store().ListOffset(p.topic, Partition(p.partition), q);
          if (r.ok()) {
            out.offset = r->value();
          } else {
            out.error = proto::ItemError::From(r.status());
          }
          resp.partitions.push_back(std::move(out));
        }
        Reply(c, Status::OK(), &resp);
      });
    case Api::kMetadata:
      return WithRequest<proto::MetadataRequest>(
          c, [&](proto::MetadataRequest& req) { Metadata(c, req); });
    default:
      ReplyCode<proto::EmptyResponse>(c, ErrorCode::kUnknownApi,
                                      "unknown api " + std::to_string(c->header.api), nullptr);
  }
}

}  // namespace runnel::native
