// Paced, multi-producer load generation.
#include "runnel/worker/load.h"

#include <pthread.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <mutex>
#include <thread>
#include <vector>

namespace runnel::worker {

double LoadDueMs(const LoadOptions& o, double n) {
  if (o.rate_per_s <= 0) return 0;
  const double r = o.rate_per_s / 1000.0;  // per ms at full rate
  const double ramp = static_cast<double>(o.ramp_ms);
  // Records due by time t: r*t^2/(2*ramp) during the ramp, then r*ramp/2 + r*(t - ramp).
  const double during_ramp = r * ramp / 2;
  if (ramp > 0 && n < during_ramp) return std::sqrt(2 * n * ramp / r);
  return ramp + (n - during_ramp) / r;
}

LoadReport RunLoad(std::shared_ptr<client::Connection> connection, const LoadOptions& options,
                   const std::function<client::ProducerRecord(int64_t i)>& make) {
  LoadReport report;
  std::atomic<int64_t> sent{0}, dups{0}, errors{0};
  std::mutex err_mu;
  const auto start = std::chrono::steady_clock::now();
  const int n = std::max(1, options.producers);
  std::vector<std::thread> threads;
  for (int k = 0; k < n; ++k) {
    threads.emplace_back([&, k] {
      pthread_setname_np(pthread_self(), "runnel-load");
      auto producer = client::Producer::Create(connection, options.producer);
      auto fail = [&](const Status& s, int64_t how_many) {
        errors += how_many;
        std::lock_guard lk(err_mu);
        if (report.first_error.empty()) report.first_error = s.ToString();
      };
      if (!producer.ok()) {
        fail(producer.status(), (options.count - k + n - 1) / n);
        return;
      }
      for (int64_t i = k; i < options.count; i += n) {
        const double due = LoadDueMs(options, static_cast<double>(i));
        if (due > 0) {
          std::this_thread::sleep_until(start + std::chrono::microseconds(static_cast<int64_t>(due * 1000)));
        }
        (*producer)->Send(make(i), [&](Result<client::RecordMetadata> r) {
          if (!r.ok()) {
            fail(r.status(), 1);
          } else if (r->duplicate) {
            ++dups;
          } else {
            ++sent;
          }
        });
      }
      Status s = (*producer)->Flush();
      if (!s.ok()) fail(s, 0);
      (*producer)->Close();
    });
  }
  for (auto& t : threads) t.join();
  report.sent = sent;
  report.duplicates = dups;
  report.errors = errors;
  report.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return report;
}

int64_t RepeatRunTotal(int64_t distinct, double repeat_share) {
  return distinct + static_cast<int64_t>(std::llround(static_cast<double>(distinct) * repeat_share));
}

int64_t RepeatRunItem(int64_t distinct, double repeat_share, int64_t position) {
  const int64_t total = RepeatRunTotal(distinct, repeat_share);
  const int64_t repeats = total - distinct;
  if (repeats <= 0 || total <= 0) return position;
  auto repeats_before = [&](int64_t p) { return p * repeats / total; };
  const int64_t before = repeats_before(position);
  const int64_t originals_before = position - before;
  const bool repeat = repeats_before(position + 1) > before && originals_before > 0;
  if (!repeat) return std::min(originals_before, distinct - 1);
  return std::max<int64_t>(0, originals_before - 1 - position % 50);  // one of the last 50
}

}  // namespace runnel::worker
