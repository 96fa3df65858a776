// Workload `notify` (seeds 000/001): notifications from topic `notifications`, keyed by user,
// each POSTed as JSON to a webhook. 2xx acks; 5xx, 429, timeouts and connection errors retry with
// backoff; 4xx and malformed or incomplete JSON are dead-lettered with the reason. Also a flaky
// webhook (a test double that fails a share of calls and hangs on some) and the load generator.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <vector>

#include "runnel/client/admin.h"
#include "runnel/client/producer.h"
#include "runnel/common/metrics.h"
#include "runnel/worker/http.h"
#include "runnel/worker/worker.h"

namespace runnel::worker {

inline constexpr const char* kNotifyTopic = "notifications";
inline constexpr const char* kNotifyGroup = "notify";

struct NotifyOptions {
  std::string webhook_url;     // http://host:port/path
  int64_t timeout_ms = 2'000;  // per call
};

// Thread-safe: its Handle runs on the worker's handler threads (one HTTP connection each).
class NotifyHandler {
 public:
  static Result<std::shared_ptr<NotifyHandler>> Create(const NotifyOptions& options);

  Outcome Handle(const client::ConsumerRecord& record);

  int64_t sending() const { return sending_.load(); }
  int64_t sent() const { return sent_.load(); }
  int64_t failed_calls() const { return failed_calls_.load(); }
  int64_t malformed() const { return malformed_.load(); }
  Histogram::Snapshot CallLatency() const { return call_ms_.Snap(); }

 private:
  NotifyHandler(NotifyOptions options, HttpUrl url)
      : options_(std::move(options)), url_(std::move(url)), call_ms_(LatencyBucketsMs()) {}
  const NotifyOptions options_;
  const HttpUrl url_;
  std::atomic<int64_t> sending_{0}, sent_{0}, failed_calls_{0}, malformed_{0};
  Histogram call_ms_;
};

// The seed-000 metrics document: {"success":true,"data":{"pendingTasks":..,"sendingTasks":..,
// "sentTasks":..,"failedTasks":..,"dlqTasks":..,"requestQueuedLag":..,"malformedQueuedLag":..,
// "successRate":..,"averageLatencyMs":..}}. Group-wide figures come from the broker (`admin`),
// per-worker ones from `handler` and `stats`.
std::string NotifyMetricsJson(client::Admin& admin, const NotifyHandler& handler,
                              const WorkerStats& stats);

// A notification as the load generator writes it: JSON with id, user, channel, title, body and
// created_ms. Record i is malformed JSON when malformed_every > 0 and i % malformed_every == 1,
// and addressed to a user the flaky webhook refuses (422) when blocked_every > 0 and
// i % blocked_every == 2.
struct NotifyLoadShape {
  std::string run_id = "n";  // ids are "<run_id>-<i>"
  int64_t users = 1'000;
  int64_t malformed_every = 0;
  int64_t blocked_every = 0;
};
client::ProducerRecord MakeNotification(const NotifyLoadShape& shape, int64_t i);

// ---- the flaky webhook -----------------------------------------------------------------------

struct FlakyWebhookOptions {
  double fail_rate = 0.3;   // answer 503 to this share of calls
  double hang_rate = 0.02;  // hold this share of calls for hang_ms, then drop them unanswered
  int64_t hang_ms = 5'000;
  std::string blocked_prefix = "blocked-";  // users answered 422
  uint64_t seed = 1;
};

// Thread-safe. Remembers every call per notification id (the Idempotency-Key header, else the
// body's "id") with the worker's Runnel-Delivery header, so tests can check retries and spacing.
class FlakyWebhook {
 public:
  explicit FlakyWebhook(FlakyWebhookOptions options);
  HttpResponse Handle(const HttpRequest& request);

  enum class Answer { kOk, kFailed, kHung, kRefused, kBadRequest };
  struct Call {
    int32_t delivery = 0;  // the Runnel-Delivery header (0 when absent)
    int64_t at_ms = 0;     // wall clock when the call arrived
    Answer answer = Answer::kOk;
  };
  std::map<std::string, std::vector<Call>> Calls() const;
  // {"calls":..,"ok":..,"failed":..,"hung":..,"refused":..,"bad_request":..,"ids":..,
  //  "ids_ok":..,"ids_ok_twice":..}
  std::string StatsJson() const;

 private:
  const FlakyWebhookOptions options_;
  mutable std::mutex mu_;
  std::mt19937_64 rng_;
  std::map<std::string, std::vector<Call>> calls_;
  int64_t counts_[5] = {0, 0, 0, 0, 0};
};

}  // namespace runnel::worker
