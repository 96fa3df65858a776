// Metrics collection and rendering (Prometheus text format 0.0.4 and the JSON stats document).
#include "runnel/broker/metrics.h"

#include <algorithm>
#include <chrono>
#include <cstdio>

#include "runnel/common/clock.h"
#include "runnel/common/json.h"
#include "runnel/common/protocol.h"

namespace runnel::broker {

Metrics::Metrics()
    : commit_records_({1, 2, 5, 10, 50, 100, 500, 1000, 5000, 10000, 50000, 100000}),
      fsync_ms_({0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 25, 50, 100, 250, 1000}) {
  started_ms = WallClockMs();
  names_[0].store(&proto::ApiName);
}

std::string_view ProtocolName(Protocol p) { return p == Protocol::kKafka ? "kafka" : "native"; }

void Metrics::SetApiNames(Protocol protocol, std::string_view (*name)(uint16_t)) {
  names_[static_cast<size_t>(protocol)].store(name);
}

void Metrics::OnRequest(Protocol protocol, uint16_t api, double latency_ms, bool failed) {
  if (api >= kMaxApi) return;
  PerApi& a = apis_[static_cast<size_t>(protocol)][api];
  a.requests.fetch_add(1, std::memory_order_relaxed);
  if (failed) a.errors.fetch_add(1, std::memory_order_relaxed);
  a.latency.Observe(latency_ms);
}

void Metrics::OnCommit(const storage::CommitRoundInfo& info) {
  if (info.batches > 0) commit_records_.Observe(static_cast<double>(info.records));
  if (info.fsync_micros >= 0) fsync_ms_.Observe(static_cast<double>(info.fsync_micros) / 1000.0);
}

void Metrics::OnProduced(const std::string& topic, int32_t partition, uint64_t records,
                         uint64_t bytes) {
  std::lock_guard lk(traffic_mu_);
  auto& t = traffic_[{topic, partition}];
  t.records_in += records;
  t.bytes_in += bytes;
}

void Metrics::OnFetched(const std::string& topic, int32_t partition, uint64_t records,
                        uint64_t bytes) {
  std::lock_guard lk(traffic_mu_);
  auto& t = traffic_[{topic, partition}];
  t.records_out += records;
  t.bytes_out += bytes;
}

std::vector<Metrics::ApiStats> Metrics::Apis() const {
  std::vector<ApiStats> out;
  for (size_t p = 0; p < kProtocols; ++p) {
    auto* namer = names_[p].load();
    for (size_t i = 0; i < kMaxApi; ++i) {
      const PerApi& a = apis_[p][i];
      const uint64_t n = a.requests.load(std::memory_order_relaxed);
      if (n == 0) continue;
      const auto api = static_cast<uint16_t>(i);
      out.push_back({static_cast<Protocol>(p), api, namer ? namer(api) : "unknown", n,
                     a.errors.load(std::memory_order_relaxed), a.latency.Snap()});
    }
  }
  return out;
}

std::map<std::pair<std::string, int32_t>, PartitionTraffic> Metrics::Traffic() const {
  std::lock_guard lk(traffic_mu_);
  return traffic_;
}

namespace {

std::string Labels(const Metrics::ApiStats& a) {
  return "protocol=\"" + std::string(ProtocolName(a.protocol)) + "\",api=\"" +
         std::string(a.name) + "\"";
}

struct GroupRow {
  storage::GroupDescription d;
  int64_t lag = 0, pending = 0, in_flight = 0, oldest_ms = 0;
};

std::vector<GroupRow> CollectGroups(storage::LogStore& store) {
  std::vector<GroupRow> rows;
  for (const std::string& name : store.groups().ListGroups()) {
    auto d = store.groups().DescribeGroup(name);
    if (!d.ok()) continue;
    GroupRow r{std::move(d).value()};
    for (const auto& p : r.d.partitions) {
      r.lag += p.lag;
      r.pending += p.pending;
      r.oldest_ms = std::max(r.oldest_ms, p.oldest_pending_age_ms);
    }
    for (const auto& c : r.d.consumers) r.in_flight += c.pending;
    rows.push_back(std::move(r));
  }
  return rows;
}

std::vector<storage::TopicInfo> CollectTopics(storage::LogStore& store) {
  std::vector<storage::TopicInfo> out;
  for (const std::string& t : store.ListTopics()) {
    auto info = store.DescribeTopic(t);
    if (info.ok()) out.push_back(std::move(info).value());
  }
  return out;
}

double SuccessRate(const storage::GroupCounters& c) {
  const int64_t attempts = c.acks + c.nacks + c.rejects;
  return attempts == 0 ? 1.0 : static_cast<double>(c.acks) / static_cast<double>(attempts);
}
double AverageLatencyMs(const storage::GroupCounters& c) {
  return c.acks == 0 ? 0.0
                     : static_cast<double>(c.ack_latency_ms_total) / static_cast<double>(c.acks);
}

}  // namespace

std::string RenderPrometheus(const Metrics& m, storage::LogStore& store) {
  PrometheusWriter p;
  p.Type("runnel_up_seconds", "gauge", "Seconds since runneld started.");
  p.Sample("runnel_up_seconds", "", static_cast<double>(WallClockMs() - m.started_ms) / 1000.0);
  p.Type("runnel_connections", "gauge", "Open client connections.");
  p.Sample("runnel_connections", "", static_cast<double>(m.connections.load()));
  p.Type("runnel_connections_accepted_total", "counter", "Connections accepted.");
  p.Sample("runnel_connections_accepted_total", "",
           static_cast<double>(m.connections_accepted.load()));
  p.Type("runnel_connections_rejected_total", "counter", "Connections refused at the limit.");
  p.Sample("runnel_connections_rejected_total", "",
           static_cast<double>(m.connections_rejected.load()));
  p.Type("runnel_connections_timed_out_total", "counter",
         "Connections closed by the frame timeout (slow senders) or the idle timeout.");
  p.Sample("runnel_connections_timed_out_total", "",
           static_cast<double>(m.connections_timed_out.load()));
  p.Type("runnel_protocol_errors_total", "counter", "Connections closed for a protocol error.");
  p.Sample("runnel_protocol_errors_total", "", static_cast<double>(m.protocol_errors.load()));
  p.Type("runnel_auth_failures_total", "counter",
         "Connections refused for a missing or invalid token (native port and HTTP).");
  p.Sample("runnel_auth_failures_total", "", static_cast<double>(m.auth_failures.load()));
  p.Type("runnel_auth_denied_total", "counter",
         "Requests refused because their token lacks the operation or the resource.");
  p.Sample("runnel_auth_denied_total", "", static_cast<double>(m.auth_denied.load()));
  p.Type("runnel_tls_handshake_failures_total", "counter",
         "Connections closed because the TLS handshake failed or timed out.");
  p.Sample("runnel_tls_handshake_failures_total", "",
           static_cast<double>(m.tls_handshake_failures.load()));
  p.Type("runnel_inflight_bytes", "gauge", "Request and unsent response bytes held.");
  p.Sample("runnel_inflight_bytes", "", static_cast<double>(m.inflight_bytes.load()));

  const auto apis = m.Apis();
  p.Type("runnel_requests_total", "counter", "Requests handled, per API.");
  for (const auto& a : apis) {
    p.Sample("runnel_requests_total",
             Labels(a), static_cast<double>(a.requests));
  }
  p.Type("runnel_request_errors_total", "counter", "Requests answered with an error, per API.");
  for (const auto& a : apis) {
    p.Sample("runnel_request_errors_total",
             Labels(a), static_cast<double>(a.errors));
  }
  p.Type("runnel_request_latency_seconds", "histogram",
         "Time from a request's arrival to its response, per API (long-polls include the wait).");
  for (const auto& a : apis) {
    p.Hist("runnel_request_latency_seconds", Labels(a), a.latency, 1e-3);
  }
  p.Type("runnel_commit_batch_records", "histogram", "Records written per group commit.");
  p.Hist("runnel_commit_batch_records", "", m.CommitRecords(), 1);
  p.Type("runnel_fsync_latency_seconds", "histogram", "WAL fsync latency.");
  p.Hist("runnel_fsync_latency_seconds", "", m.FsyncMs(), 1e-3);

  const storage::StoreStats st = store.GetStats();
  p.Type("runnel_store_records_appended_total", "counter", "Records appended.");
  p.Sample("runnel_store_records_appended_total", "", static_cast<double>(st.records_appended));
  p.Type("runnel_store_bytes_appended_total", "counter", "Batch bytes appended.");
  p.Sample("runnel_store_bytes_appended_total", "", static_cast<double>(st.bytes_appended));
  p.Type("runnel_store_commits_total", "counter", "Group commits.");
  p.Sample("runnel_store_commits_total", "", static_cast<double>(st.commits));
  p.Type("runnel_store_queued_bytes", "gauge", "Bytes waiting for the committer.");
  p.Sample("runnel_store_queued_bytes", "", static_cast<double>(st.queued_bytes));
  p.Type("runnel_store_disk_bytes", "gauge", "Bytes of the store's files on disk.");
  p.Sample("runnel_store_disk_bytes", "", static_cast<double>(st.disk_bytes));
  p.Type("runnel_store_disk_free_bytes", "gauge", "Free bytes on the store's filesystem.");
  p.Sample("runnel_store_disk_free_bytes", "", static_cast<double>(st.disk_free_bytes));
  p.Type("runnel_store_degraded", "gauge",
         "1 while the store refuses writes (full disk, I/O error; GET /health says why), else 0.");
  p.Sample("runnel_store_degraded", "", store.Health().ok() ? 0.0 : 1.0);

  // Per-partition families, one row per partition (built once, emitted family by family).
  static constexpr PromFamily kPartitionFamilies[] = {
      {"runnel_partition_log_end_offset", "gauge", "Durable high watermark."},
      {"runnel_partition_log_start_offset", "gauge", "First offset still stored."},
      {"runnel_partition_size_bytes", "gauge", "Stored bytes."},
      {"runnel_partition_records_in_total", "counter", "Records produced since start."},
      {"runnel_partition_bytes_in_total", "counter", "Batch bytes produced since start."},
      {"runnel_partition_records_out_total", "counter", "Records fetched since start."},
      {"runnel_partition_bytes_out_total", "counter", "Bytes fetched since start."},
  };
  const auto traffic = m.Traffic();
  std::vector<PromRow> partition_rows;
  for (const auto& t : CollectTopics(store)) {
    for (const auto& part : t.partitions) {
      const int32_t pn = part.partition.value();
      PartitionTraffic tr;
      if (auto it = traffic.find({t.name, pn}); it != traffic.end()) tr = it->second;
      partition_rows.push_back(
          {"topic=\"" + PromLabel(t.name) + "\",partition=\"" + std::to_string(pn) + "\"",
           {static_cast<double>(part.high_watermark.value()),
            static_cast<double>(part.log_start.value()), static_cast<double>(part.size_bytes),
            static_cast<double>(tr.records_in), static_cast<double>(tr.bytes_in),
            static_cast<double>(tr.records_out), static_cast<double>(tr.bytes_out)}});
    }
  }
  p.Families(kPartitionFamilies, partition_rows);

  static constexpr PromFamily kGroupFamilies[] = {
      {"runnel_group_lag", "gauge", "Records not yet consumed (queue: not yet delivered)."},
      {"runnel_group_pending", "gauge", "Pending entries (delivered or waiting for a retry)."},
      {"runnel_group_in_flight", "gauge", "Entries locked by a consumer now."},
      {"runnel_group_oldest_pending_age_seconds", "gauge", "Age of the oldest pending entry."},
      {"runnel_group_deliveries_total", "counter", "Records delivered."},
      {"runnel_group_redeliveries_total", "counter", "Records delivered again."},
      {"runnel_group_acks_total", "counter", "Records acknowledged."},
      {"runnel_group_nacks_total", "counter", "Records negatively acknowledged."},
      {"runnel_group_rejects_total", "counter", "Records rejected."},
      {"runnel_group_dead_lettered_total", "counter", "Records moved to the dead-letter topic."},
  };
  std::vector<PromRow> group_rows;
  for (const auto& g : CollectGroups(store)) {
    const auto& c = g.d.counters;
    group_rows.push_back(
        {"group=\"" + PromLabel(g.d.name) + "\"",
         {static_cast<double>(g.lag), static_cast<double>(g.pending),
          static_cast<double>(g.in_flight), static_cast<double>(g.oldest_ms) / 1000.0,
          static_cast<double>(c.deliveries), static_cast<double>(c.redeliveries),
          static_cast<double>(c.acks), static_cast<double>(c.nacks), static_cast<double>(c.rejects),
          static_cast<double>(c.dead_lettered)}});
  }
  p.Families(kGroupFamilies, group_rows);
  return p.Take();
}

std::string RenderStatsJson(const Metrics& m, storage::LogStore& store) {
  JsonWriter w;
  w.BeginObject();
  const storage::StoreStats st = store.GetStats();
  w.Key("broker").BeginObject();
  w.Field("uptime_ms", WallClockMs() - m.started_ms);
  w.Field("connections", m.connections.load());
  w.Field("connections_accepted", m.connections_accepted.load());
  w.Field("records_appended", st.records_appended);
  w.Field("bytes_appended", st.bytes_appended);
  w.Field("disk_bytes", st.disk_bytes);
  w.Field("disk_free_bytes", st.disk_free_bytes);
  w.Field("commits", st.commits);
  w.Field("fsyncs", st.fsyncs);
  w.Field("avg_fsync_ms", st.fsyncs ? static_cast<double>(st.fsync_micros_total) /
                                          static_cast<double>(st.fsyncs) / 1000.0
                                    : 0.0);
  const auto fsync = m.FsyncMs();
  w.Field("fsync_p50_ms", fsync.Quantile(0.5));
  w.Field("fsync_p99_ms", fsync.Quantile(0.99));
  w.Field("fsync_p999_ms", fsync.Quantile(0.999));
  w.EndObject();

  w.Key("requests").BeginArray();
  for (const auto& a : m.Apis()) {
    w.BeginObject();
    w.Field("protocol", ProtocolName(a.protocol));
    w.Field("api", a.name);
    w.Field("count", a.requests);
    w.Field("errors", a.errors);
    w.Field("avg_ms", a.latency.count ? a.latency.sum / static_cast<double>(a.latency.count) : 0);
    w.Field("p50_ms", a.latency.Quantile(0.5));
    w.Field("p99_ms", a.latency.Quantile(0.99));
    w.EndObject();
  }
  w.EndArray();

  const auto traffic = m.Traffic();
  w.Key("topics").BeginArray();
  for (const auto& t : CollectTopics(store)) {
    w.BeginObject();
    w.Field("name", t.name);
    uint64_t size = 0;
    int64_t records = 0;
    w.Key("partitions").BeginArray();
    for (const auto& part : t.partitions) {
      const int32_t pn = part.partition.value();
      PartitionTraffic tr;
      if (auto it = traffic.find({t.name, pn}); it != traffic.end()) tr = it->second;
      size += part.size_bytes;
      records += part.high_watermark.value() - part.log_start.value();
      w.BeginObject();
      w.Field("partition", pn);
      w.Field("log_start", part.log_start.value());
      w.Field("log_end", part.high_watermark.value());
      w.Field("size_bytes", part.size_bytes);
      w.Field("records_in", tr.records_in);
      w.Field("records_out", tr.records_out);
      w.EndObject();
    }
    w.EndArray();
    w.Field("size_bytes", size);
    w.Field("records", records);
    w.EndObject();
  }
  w.EndArray();

  // The seeds' dashboard shape (pendingTasks, sendingTasks, sentTasks, failedTasks, dlqTasks,
  // queuedLag, successRate, averageLatencyMs), one object per group.
  w.Key("groups").BeginArray();
  for (const auto& g : CollectGroups(store)) {
    const auto& c = g.d.counters;
    w.BeginObject();
    w.Field("name", g.d.name);
    w.Field("mode", g.d.mode == storage::GroupMode::kQueue ? "queue" : "stream");
    w.Field("protocol", storage::GroupProtocolName(g.d.protocol));  // who keeps the membership
    w.Field("topic", g.d.config.topic);
    w.Field("pending", g.pending);
    w.Field("in_flight", g.in_flight);
    w.Field("acked", c.acks);
    w.Field("failed", c.nacks + c.rejects);
    w.Field("dead_lettered", c.dead_lettered);
    w.Field("lag", g.lag);
    w.Field("deliveries", c.deliveries);
    w.Field("redeliveries", c.redeliveries);
    w.Field("success_rate", SuccessRate(c));
    w.Field("average_latency_ms", AverageLatencyMs(c));
    w.Field("oldest_pending_age_ms", g.oldest_ms);
    w.Field("consumers", static_cast<int64_t>(g.d.consumers.size()));
    w.EndObject();
  }
  w.EndArray();
  w.EndObject();
  return w.Take();
}

}  // namespace runnel::broker
