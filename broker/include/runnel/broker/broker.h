// The broker core: turns request frames into calls on the LogStore and its Groups and answers
// them. No sockets and no Asio here: the TCP server (server.h) and the embedded client
// connection feed it frames the same way.
//
// Threads: Handle() may be called from any thread and never blocks on storage. Produce requests
// of one Session are submitted to the store in arrival order on the append pool (so an
// idempotent producer's pipelined batches keep their sequence order); everything else runs on the
// worker pool. Long-polls (Fetch, Deliver) park without a thread and wake when a durable high
// watermark moves or their deadline passes. Responses are delivered through the callback, on a
// pool or committer thread.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "runnel/common/result.h"
#include "runnel/common/wire.h"
#include "runnel/storage/log_store.h"

namespace runnel::broker {

class TokenSet;

struct BrokerOptions {
  storage::LogStoreOptions store;  // data_dir, default topic config, committer bounds
  bool auto_create_topics = true;  // Produce / Metadata may create unknown topics
  int32_t default_partitions = 1;  // for auto-created topics
  int worker_threads = 4;          // reads, group operations, admin
  int append_threads = 2;          // produce submission (may block on committer backpressure)
  int32_t max_wait_ms = 30'000;    // upper bound of a long-poll
  // Access control (auth.h): when set, a session must Authenticate with one of these tokens
  // before anything else, and each request is checked against the token's rights. Null: every
  // session may do everything (the loopback default).
  std::shared_ptr<const TokenSet> auth;
};

class Metrics;
class Session;

// A response frame as buffers (header first); written out back to back.
using ResponseFn = std::function<void(std::vector<std::string> frame)>;

class Broker {
 public:
  // Opens the data directory and starts the pools. IOError (directory unusable or locked by
  // another process), Corruption.
  static Result<std::unique_ptr<Broker>> Open(BrokerOptions options);

  // Stops (see BeginShutdown / WaitIdle) and closes the store.
  ~Broker();

  // One per client connection; carries the produce ordering.
  std::shared_ptr<Session> NewSession();

  // Handles one request frame; `respond` runs exactly once with the response frame.
  void Handle(const std::shared_ptr<Session>& session, wire::Frame request, ResponseFn respond);

  // True once the session was refused (a request before Authenticate, or a bad token): the
  // connection should read nothing more and close after writing the answers. Set by Handle on
  // the calling thread, so the caller may check it right after Handle returns.
  static bool Refused(const Session& session);

  // The most response bytes `request` can produce beyond its own size, for admission control: a
  // Fetch reserves its max_bytes, so a connection pipelining fetches is bounded by the answers,
  // not by its tiny requests. 0 for requests with small answers.
  static size_t ResponseReservation(const wire::Frame& request);

  // New requests are answered `shutdown`; parked long-polls are answered now.
  void BeginShutdown();
  // Blocks until every request handed to Handle has been answered.
  void WaitIdle();

  Metrics& metrics() { return *metrics_; }
  storage::LogStore& store() { return *store_; }
  const BrokerOptions& options() const { return options_; }

  // GET /metrics (Prometheus text format) and GET /api/v1/stats (JSON).
  std::string PrometheusText();
  std::string StatsJson();

  class Impl;

 private:
  Broker() = default;
  BrokerOptions options_;
  std::unique_ptr<Metrics> metrics_;
  std::unique_ptr<storage::LogStore> store_;
  std::unique_ptr<Impl> impl_;
};

// A response frame carrying only `error` (frame-level failures: a frame too large or malformed).
std::vector<std::string> ErrorFrame(const wire::FrameHeader& request, const Status& error);

}  // namespace runnel::broker
