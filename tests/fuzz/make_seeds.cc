// Writes the seed corpora in tests/fuzz/corpus/ (run once by hand; the output is checked in):
//   make_seeds <tests/fuzz/corpus>
#include <snappy.h>

#include <concepts>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "runnel/common/coding.h"
#include "runnel/common/crc32c.h"
#include "runnel/common/protocol.h"
#include "runnel/common/record_batch.h"
#include "runnel/common/wire.h"
#include "runnel/kafka/codec.h"
#include "runnel/kafka/messages.h"

using namespace runnel;

namespace {

void Write(const std::filesystem::path& dir, const std::string& name, const std::string& bytes) {
  std::filesystem::create_directories(dir);
  std::ofstream(dir / name, std::ios::binary) << bytes;
}

std::string Batch(Compression c, int n, bool headers) {
  RecordBatchBuilder b({.compression = c, .producer_id = headers ? 7 : -1,
                        .producer_epoch = headers ? int16_t{1} : int16_t{-1},
                        .base_sequence = headers ? 3 : -1});
  for (int i = 0; i < n; ++i) {
    std::vector<RecordHeader> h;
    if (headers) h.push_back({"runnel.dedup.key", std::string_view("scan-1")});
    b.Add(1700000000000 + i, i % 3 == 0 ? std::nullopt : std::optional<std::string_view>("key"),
          std::string_view("{\"barcode\":\"000123\",\"device\":\"dev-7\"}"), h);
  }
  return b.Build();
}

// A batch whose records are one raw snappy block, as librdkafka writes snappy.
std::string RawSnappyBatch(int n) {
  namespace L = batch_layout;
  std::string b = Batch(Compression::kNone, n, false);
  std::string block;
  snappy::Compress(b.data() + kBatchHeaderSize, b.size() - kBatchHeaderSize, &block);
  b.resize(kBatchHeaderSize);
  b += block;
  EncodeFixed32BE(b.data() + L::kBatchLength, static_cast<uint32_t>(b.size() - L::kLogOverhead));
  EncodeFixed16BE(b.data() + L::kAttributes, static_cast<uint16_t>(Compression::kSnappy));
  EncodeFixed32BE(b.data() + L::kCrc,
                  crc32c::Value(b.data() + L::kAttributes, b.size() - L::kAttributes));
  return b;
}

template <class Req> std::string Frame(Req req, uint32_t corr) {
  return wire::EncodeFrame(static_cast<uint16_t>(Req::kApi), 0, corr, proto::EncodeBody(req));
}

// ---- kafka_request_fuzz ----

// Gives every field of a Kafka message a small deterministic value (lists of two elements).
struct KafkaFiller {
  int next = 1;
  template <class T> void operator()(std::string_view, T& field) { Fill(field); }
  void Fill(bool& v) { v = next++ % 2 != 0; }
  template <std::integral T> void Fill(T& v) { v = static_cast<T>(next++); }
  void Fill(double& v) { v = next++; }
  void Fill(kafka::Uuid& v) { v.fill(static_cast<uint8_t>(next++)); }
  void Fill(std::string& v) { v = "s" + std::to_string(next++); }
  template <class T> void Fill(std::optional<T>& v) { Fill(v.emplace()); }
  template <class T> void Fill(std::vector<T>& v) {
    v.resize(2);
    for (auto& e : v) Fill(e);
  }
  template <class T>
    requires std::is_class_v<T>
  void Fill(T& v) {
    ForEachField(v, *this);
  }
};

// A kafka_request_fuzz input: the api key (2 bytes little-endian; the top bit marks a
// response), the version (2 bytes big-endian), then for a request the header after the
// correlation id (client_id, tagged fields in header v2), then the body.
template <class M> std::string KafkaInput(M m, int16_t version, bool response) {
  kafka::Writer w;
  if (!response) {
    w.WriteString(false, "seed-client");
    if (kafka::RequestHeaderIsFlexible(M::kApiKey, version)) w.WriteEmptyTaggedFields();
  }
  m.Encode(w, version);
  std::string out;
  out.push_back(static_cast<char>(M::kApiKey & 0xff));
  out.push_back(static_cast<char>((M::kApiKey >> 8) | (response ? 0x80 : 0)));
  out.push_back(static_cast<char>(version >> 8));
  out.push_back(static_cast<char>(version & 0xff));
  return out + kafka::JoinChunks(w.Finish());
}

template <class M> void KafkaFilled(const std::filesystem::path& dir, int16_t version) {
  M m;
  KafkaFiller().Fill(m);
  const bool response = M::kName.ends_with("Response");
  Write(dir, std::string(M::kName) + "-v" + std::to_string(version),
        KafkaInput(std::move(m), version, response));
}

template <class... M> void KafkaFilledAll(const std::filesystem::path& dir, kafka::TypeList<M...>) {
  ((KafkaFilled<M>(dir, M::kMinVersion), KafkaFilled<M>(dir, M::kMaxVersion)), ...);
}

void KafkaSeeds(const std::filesystem::path& dir) {
  // Every message at its lowest and highest version, every field set.
  KafkaFilledAll(dir, kafka::AllRequestTypes{});
  KafkaFilledAll(dir, kafka::AllResponseTypes{});

  // What clients send first and most.
  Write(dir, "api-versions-v0", KafkaInput(kafka::ApiVersionsRequest{}, 0, false));
  kafka::ApiVersionsRequest av;
  av.client_software_name = "librdkafka";
  av.client_software_version = "2.0.2";
  Write(dir, "api-versions-v3", KafkaInput(av, 3, false));
  Write(dir, "metadata-v1-all-topics", KafkaInput(kafka::MetadataRequest{}, 1, false));
  kafka::MetadataRequest md;
  md.topics.emplace().push_back({{}, "scans"});
  Write(dir, "metadata-v4-one-topic", KafkaInput(md, 4, false));
  for (int16_t v : {3, 7}) {
    kafka::ProduceRequest pr;
    pr.acks = -1;
    pr.timeout_ms = 30000;
    pr.topic_data.push_back({"scans", {{0, Batch(Compression::kLz4, 4, true)},
                                       {1, Batch(Compression::kNone, 2, false)}}});
    Write(dir, "produce-v" + std::to_string(v) + "-batches", KafkaInput(std::move(pr), v, false));
  }
  for (int16_t v : {4, 11, 12}) {
    kafka::FetchRequest fe;
    fe.max_wait_ms = 500;
    fe.min_bytes = 1;
    fe.max_bytes = 52428800;
    fe.topics.push_back({"scans", {{0, -1, 42, -1, -1, 1048576}, {1, -1, 0, -1, -1, 1048576}}});
    Write(dir, "fetch-v" + std::to_string(v), KafkaInput(fe, v, false));
  }
  kafka::FetchResponse fr;
  auto& topic = fr.responses.emplace_back();
  topic.topic = "scans";
  auto& part = topic.partitions.emplace_back();
  part.high_watermark = 4;
  part.last_stable_offset = 4;
  part.log_start_offset = 0;
  part.records = Batch(Compression::kLz4, 4, true);
  Write(dir, "fetch-response-v11", KafkaInput(fr, 11, true));
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: make_seeds <corpus dir>\n");
    return 2;
  }
  const std::filesystem::path root = argv[1];

  const auto rb = root / "record_batch_fuzz";
  Write(rb, "plain-1", Batch(Compression::kNone, 1, false));
  Write(rb, "plain-5-headers", Batch(Compression::kNone, 5, true));
  Write(rb, "lz4-20", Batch(Compression::kLz4, 20, false));
  Write(rb, "lz4-3-headers", Batch(Compression::kLz4, 3, true));
  Write(rb, "gzip-10", Batch(Compression::kGzip, 10, false));
  Write(rb, "snappy-xerial-10-headers", Batch(Compression::kSnappy, 10, true));
  Write(rb, "snappy-raw-10", RawSnappyBatch(10));
  Write(rb, "zstd-10", Batch(Compression::kZstd, 10, false));

  const auto fr = root / "frame_fuzz";
  const std::string chunk(1, '\x07');  // first byte: the chunk size
  proto::ProduceRequest produce;
  produce.partitions.push_back({"scans", 0, proto::Payload{Batch(Compression::kLz4, 4, true)}});
  Write(fr, "produce", chunk + Frame(produce, 1));
  proto::FetchRequest fetch;
  fetch.max_wait_ms = 500;
  fetch.partitions.push_back({"scans", 0, 42, 1 << 20});
  fetch.partitions.push_back({"scans", 1, 0, 1 << 20});
  Write(fr, "fetch", chunk + Frame(fetch, 2));
  proto::MetadataRequest md;
  md.topics = {"scans", "notifications"};
  md.allow_auto_create = true;
  Write(fr, "metadata", chunk + Frame(md, 3));
  proto::CreateTopicRequest ct;
  ct.name = "coupons";
  ct.partitions = 8;
  ct.config = {{"retention.ms", "86400000"}, {"dedup.window.ms", "60000"}};
  Write(fr, "create-topic", chunk + Frame(ct, 4));
  proto::DeliverRequest dl;
  dl.group = "notify";
  dl.consumer = "w-1";
  Write(fr, "deliver", chunk + Frame(dl, 5));
  proto::AckRequest ack;
  ack.group = "notify";
  ack.consumer = "w-1";
  ack.refs = {{0, 1}, {0, 2}, {3, 9}};
  proto::CommitOffsetsRequest co;
  co.group = "billing";
  co.member_id = "m-1";
  co.generation = 3;
  co.offsets.push_back({"orders", 2, 100, ""});
  // Several frames in one stream, cut into 1-byte chunks.
  Write(fr, "pipelined", std::string(1, '\0') + Frame(ack, 6) + Frame(co, 7) +
                             Frame(proto::ApiVersionsRequest{}, 8));

  const auto un = root / "units_fuzz";
  for (const char* s : {"250ms", "30s", "1.5h", "7d", "2w", "-1", "64MiB", "1.5MB", "10GiB", "0"}) {
    Write(un, s, s);
  }

  const auto cf = root / "config_fuzz";
  Write(cf, "full.toml",
        "data-dir = \"/var/lib/runnel\"\nbind = \"127.0.0.1\"\nport = 7070\nhttp-port = 7071\n"
        "io-threads = 2\nworker-threads = 4\nauto-create-topics = true\ndefault-partitions = 8\n"
        "retention = \"7d\"\nretention-bytes = \"10GiB\"\nmax-message-bytes = \"1MiB\"\n"
        "dedup-window = \"5m\"\nmax-connections = 10000\nmax-frame-bytes = \"64MiB\"\n"
        "max-inflight-bytes-per-connection = \"64MiB\"\nmax-inflight-bytes = \"1GiB\"\n"
        "max-queued-bytes = \"256MiB\"\nmax-wait = \"30s\"\nlog-level = \"info\"\n");
  Write(cf, "small.toml", "port = 0\nno-http = true\nretention = \"-1\"\n");

  KafkaSeeds(root / "kafka_request_fuzz");
  return 0;
}
