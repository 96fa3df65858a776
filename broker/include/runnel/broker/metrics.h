// Broker metrics: lock-free counters and fixed-bucket histograms, rendered as Prometheus text
// and as the JSON stats document. Thread-safe: every method may be called from any thread.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "runnel/common/metrics.h"
#include "runnel/storage/log_store.h"

namespace runnel::broker {


// Which front-end a request came through; request metrics are kept per protocol and API.
enum class Protocol : uint8_t { kNative = 0, kKafka = 1 };
inline constexpr size_t kProtocols = 2;
std::string_view ProtocolName(Protocol p);

struct PartitionTraffic {
  uint64_t records_in = 0, bytes_in = 0, records_out = 0, bytes_out = 0;
};

class Metrics {
 public:
  Metrics();

  void OnRequest(uint16_t api, double latency_ms, bool failed) {
    OnRequest(Protocol::kNative, api, latency_ms, failed);
  }
  void OnRequest(Protocol protocol, uint16_t api, double latency_ms, bool failed);
  // How a protocol's API numbers are named in metrics (the native names are built in). Call
  // before the first request of that protocol.
  void SetApiNames(Protocol protocol, std::string_view (*name)(uint16_t api));
  void OnCommit(const storage::CommitRoundInfo& info);
  void OnProduced(const std::string& topic, int32_t partition, uint64_t records, uint64_t bytes);
  void OnFetched(const std::string& topic, int32_t partition, uint64_t records, uint64_t bytes);

  std::atomic<int64_t> connections{0};           // open now
  std::atomic<uint64_t> connections_accepted{0};  // since start
  std::atomic<uint64_t> connections_rejected{0};  // over max connections
  std::atomic<uint64_t> connections_timed_out{0};  // closed by the frame or idle timeout
  std::atomic<uint64_t> protocol_errors{0};       // frames that closed a connection
  std::atomic<uint64_t> auth_failures{0};         // sessions refused: no token or a bad one
  std::atomic<uint64_t> auth_denied{0};           // requests beyond their token's rights
  std::atomic<uint64_t> tls_handshake_failures{0};  // connections closed in the TLS handshake
  std::atomic<int64_t> inflight_bytes{0};         // request + unsent response bytes, all connections
  int64_t started_ms = 0;

  struct ApiStats {
    Protocol protocol;
    uint16_t api;
    std::string_view name;
    uint64_t requests;
    uint64_t errors;
    Histogram::Snapshot latency;
  };
  std::vector<ApiStats> Apis() const;  // APIs seen at least once
  Histogram::Snapshot CommitRecords() const { return commit_records_.Snap(); }
  Histogram::Snapshot FsyncMs() const { return fsync_ms_.Snap(); }
  std::map<std::pair<std::string, int32_t>, PartitionTraffic> Traffic() const;

 private:
  static constexpr size_t kMaxApi = 64;
  struct PerApi {
    std::atomic<uint64_t> requests{0};
    std::atomic<uint64_t> errors{0};
    Histogram latency{LatencyBucketsMs()};
  };
  std::array<std::array<PerApi, kMaxApi>, kProtocols> apis_;
  std::array<std::atomic<std::string_view (*)(uint16_t)>, kProtocols> names_{};
  Histogram commit_records_;
  Histogram fsync_ms_;
  mutable std::mutex traffic_mu_;
  std::map<std::pair<std::string, int32_t>, PartitionTraffic> traffic_;
};

// The Prometheus exposition and the JSON stats document, from metrics plus live store state.
std::string RenderPrometheus(const Metrics& m, storage::LogStore& store);
std::string RenderStatsJson(const Metrics& m, storage::LogStore& store);

}  // namespace runnel::broker
