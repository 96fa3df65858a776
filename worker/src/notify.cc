// Workload `notify`: webhook delivery with retries and dead letters, the seed-000 metrics, the
// flaky webhook and the notification generator.
#include "runnel/worker/notify.h"

#include <charconv>
#include <chrono>

#include "runnel/common/clock.h"
#include "runnel/common/json.h"

namespace runnel::worker {

namespace {
int64_t ParseInt(std::string_view s, int64_t fallback) {
  int64_t v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  return ec == std::errc() && p == s.data() + s.size() ? v : fallback;
}
}  // namespace

Result<std::shared_ptr<NotifyHandler>> NotifyHandler::Create(const NotifyOptions& options) {
  auto url = ParseHttpUrl(options.webhook_url);
  if (!url.ok()) return url.status();
  if (options.timeout_ms < 1) return Status::InvalidArgument("webhook timeout must be >= 1 ms");
  return std::shared_ptr<NotifyHandler>(new NotifyHandler(options, std::move(url).value()));
}

Outcome NotifyHandler::Handle(const client::ConsumerRecord& record) {
  if (!record.value || record.value->empty()) {
    ++malformed_;
    return Outcome::Reject("malformed", "empty notification");
  }
  auto doc = ParseJson(*record.value);
  if (!doc.ok() || !doc->is_object()) {
    ++malformed_;
    return Outcome::Reject("malformed",
                           doc.ok() ? "not a JSON object" : doc.status().message());
  }
  const std::string id = doc->Str("id");
  const std::string user = doc->Str("user");
  if (id.empty() || user.empty()) {
    ++malformed_;
    return Outcome::Reject("invalid", "a notification needs \"id\" and \"user\"");
  }

  thread_local HttpClient http;
  ++sending_;
  const auto started = std::chrono::steady_clock::now();
  auto res = http.Send(url_, "POST", *record.value,
                       {{"Content-Type", "application/json"},
                        {"Idempotency-Key", id},
                        {"Runnel-Delivery", std::to_string(record.deliveries)}},
                       options_.timeout_ms);
  --sending_;
  call_ms_.Observe(
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - started).count());
  if (!res.ok()) {
    ++failed_calls_;
    if (res.status().code() == StatusCode::kTimeout)
      return Outcome::Fail("timeout", res.status().message());
    return Outcome::Fail("connect", res.status().message());
  }
  const int code = res->status;
  if (code >= 200 && code < 300) {
    ++sent_;
    return Outcome::Ack();
  }
  ++failed_calls_;
  const std::string detail = "HTTP " + std::to_string(code);
  if (code == 429) {
    const int64_t secs = ParseInt(res->Header("Retry-After"), -1);
    return Outcome::Fail("http_429", detail, secs >= 0 ? secs * 1000 : -1);
  }
  if (code >= 400 && code < 500) return Outcome::Fail("http_4xx", detail);
  return Outcome::Fail(code >= 500 ? "http_5xx" : "http_other", detail);
}

std::string NotifyMetricsJson(client::Admin& admin, const NotifyHandler& handler,
                              const WorkerStats& stats) {
  int64_t lag = -1, pending = -1, locked = -1, dlq = -1;
  const std::string group = kNotifyGroup;
  auto d = admin.DescribeGroup(group);
  if (d.ok()) {
    lag = pending = locked = 0;
    for (const auto& p : d->partitions) {
      lag += p.lag;
      pending += p.pending;
    }
    for (const auto& c : d->consumers) locked += c.pending;
    std::string dlq_topic = std::string(kNotifyTopic) + ".dlq." + group;
    for (const auto& [k, v] : d->config)
      if (k == "dlq.topic" && !v.empty()) dlq_topic = v;
    auto t = admin.DescribeTopics({dlq_topic});
    if (t.ok() && t->size() == 1 && (*t)[0].error.ok()) {
      dlq = 0;
      for (const auto& p : (*t)[0].partitions) dlq += p.high_watermark - p.log_start;
    }
  }
  auto by = [&](const char* reason) {
    auto it = stats.dead_letters_by_reason.find(reason);
    return it == stats.dead_letters_by_reason.end() ? 0 : it->second;
  };
  const int64_t sent = handler.sent();
  const int64_t done = sent + stats.dead_lettered;
  const auto lat = handler.CallLatency();
  JsonWriter w;
  w.BeginObject().Field("success", true).Key("data").BeginObject();
  w.Field("pendingTasks", lag);
  w.Field("sendingTasks", locked);
  w.Field("sentTasks", sent);
  w.Field("failedTasks", pending >= 0 ? pending - locked : -1);
  w.Field("dlqTasks", dlq);
  w.Field("requestQueuedLag", lag);
  w.Field("malformedQueuedLag", by("malformed") + by("invalid"));
  w.Field("successRate",
          done == 0 ? 100.0
                    : std::round(10000.0 * static_cast<double>(sent) / static_cast<double>(done)) /
                          100.0);
  w.Field("averageLatencyMs", lat.count ? lat.sum / static_cast<double>(lat.count) : 0.0);
  w.EndObject();
  w.Key("message").Null().Key("code").Null();
  w.EndObject();
  return w.Take();
}

client::ProducerRecord MakeNotification(const NotifyLoadShape& shape, int64_t i) {
  const std::string id = shape.run_id + "-" + std::to_string(i);
  const bool blocked = shape.blocked_every > 0 && i % shape.blocked_every == 2;
  const std::string user =
      blocked ? "blocked-" + std::to_string(i) : "u-" + std::to_string(i % std::max<int64_t>(1, shape.users));
  client::ProducerRecord r;
  r.topic = kNotifyTopic;
  r.key = user;
  if (shape.malformed_every > 0 && i % shape.malformed_every == 1) {
    r.value = "{\"id\":\"" + id + "\",\"user\":\"" + user + "\",\"body\":";  // truncated
  } else {
    JsonWriter w;
    w.BeginObject();
    w.Field("id", id).Field("user", user).Field("channel", "push");
    w.Field("title", "Order shipped").Field("body", "Your order " + std::to_string(i) + " is on its way");
    w.Field("created_ms", WallClockMs());
    w.EndObject();
    r.value = w.Take();
  }
  r.headers.emplace_back("runnel.dedup.key", id);
  return r;
}

// ---- flaky webhook -------------------------------------------------------------------------------

FlakyWebhook::FlakyWebhook(FlakyWebhookOptions options)
    : options_(std::move(options)), rng_(options_.seed) {}

HttpResponse FlakyWebhook::Handle(const HttpRequest& request) {
  HttpResponse res;
  res.content_type = "application/json";
  if (request.method == "GET") {
    if (request.Path() == "/stats") {
      res.body = StatsJson() + "\n";
    } else {
      res.status = 404;
      res.body = "{\"error\":\"POST a notification, or GET /stats\"}\n";
    }
    return res;
  }
  auto doc = ParseJson(request.body);
  std::string id = request.Header("Idempotency-Key");
  std::string user;
  if (doc.ok() && doc->is_object()) {
    if (id.empty()) id = doc->Str("id");
    user = doc->Str("user");
  }
  const int32_t delivery = static_cast<int32_t>(ParseInt(request.Header("Runnel-Delivery"), 0));
  std::lock_guard lk(mu_);
  Answer a;
  if (!doc.ok() || id.empty() || user.empty()) {
    a = Answer::kBadRequest;
  } else if (!options_.blocked_prefix.empty() &&
             user.compare(0, options_.blocked_prefix.size(), options_.blocked_prefix) == 0) {
    a = Answer::kRefused;
  } else {
    const double u = std::uniform_real_distribution<double>(0.0, 1.0)(rng_);
    a = u < options_.hang_rate                       ? Answer::kHung
        : u < options_.hang_rate + options_.fail_rate ? Answer::kFailed
                                                      : Answer::kOk;
  }
  ++counts_[static_cast<int>(a)];
  if (!id.empty()) calls_[id].push_back({delivery, WallClockMs(), a});
  switch (a) {
    case Answer::kOk: res.body = "{\"status\":\"sent\"}\n"; break;
    case Answer::kFailed:
      res.status = 503;
      res.body = "{\"error\":\"upstream unavailable\"}\n";
      break;
    case Answer::kHung:
      res.hang = true;
      res.delay_ms = options_.hang_ms;
      break;
    case Answer::kRefused:
      res.status = 422;
      res.body = "{\"error\":\"recipient refused\"}\n";
      break;
    case Answer::kBadRequest:
      res.status = 400;
      res.body = "{\"error\":\"bad notification\"}\n";
      break;
  }
  return res;
}

std::map<std::string, std::vector<FlakyWebhook::Call>> FlakyWebhook::Calls() const {
  std::lock_guard lk(mu_);
  return calls_;
}

std::string FlakyWebhook::StatsJson() const {
  std::lock_guard lk(mu_);
  int64_t ids_ok = 0, ids_ok_twice = 0;
  for (const auto& [id, calls] : calls_) {
    int ok = 0;
    for (const Call& c : calls) ok += c.answer == Answer::kOk;
    ids_ok += ok >= 1;
    ids_ok_twice += ok >= 2;
  }
  JsonWriter w;
  w.BeginObject();
  w.Field("calls", counts_[0] + counts_[1] + counts_[2] + counts_[3] + counts_[4]);
  w.Field("ok", counts_[0]).Field("failed", counts_[1]).Field("hung", counts_[2]);
  w.Field("refused", counts_[3]).Field("bad_request", counts_[4]);
  w.Field("ids", static_cast<int64_t>(calls_.size()));
  w.Field("ids_ok", ids_ok).Field("ids_ok_twice", ids_ok_twice);
  w.EndObject();
  return w.Take();
}

}  // namespace runnel::worker
