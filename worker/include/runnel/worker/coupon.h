// Workload `coupon` (seeds 003/004): first-come coupon issuance. Requests arrive on topic
// `coupon.requests` keyed "coupon-<id>", so one coupon's requests are in one partition and in
// order: no distributed lock. The worker reads them over a stream group and, in one SQLite
// transaction per partition batch, decides each request (SUCCESS, DUPLICATE_REQUEST,
// OUT_OF_STOCK, VALIDATION_FAILED, SYSTEM_ERROR), updates stock and issued coupons
// (UNIQUE(user_id, coupon_id)), records the outcome under the request id, and moves the
// partition's consumed offset. A crash therefore can neither issue twice nor skip a request.
// Outcomes are published to `coupon.results` keyed by request id from that table (an outbox),
// with the request id as dedup key, so each request gets exactly one result record.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "runnel/client/producer.h"
#include "runnel/worker/sqlite.h"
#include "runnel/worker/worker.h"

namespace runnel::worker {

inline constexpr const char* kCouponTopic = "coupon.requests";
inline constexpr const char* kCouponResultsTopic = "coupon.results";
inline constexpr const char* kCouponGroup = "coupon";

struct CouponOutcome {
  std::string request_id;
  std::string user_id;
  std::string coupon_id;
  std::string outcome;  // SUCCESS, DUPLICATE_REQUEST, OUT_OF_STOCK, VALIDATION_FAILED, SYSTEM_ERROR
  std::string detail;
  int32_t partition = 0;
  int64_t offset = 0;
  int64_t decided_ms = 0;
  bool published = false;
};

// {"requestId","userId","couponId","outcome","detail","decidedMs"}: the coupon.results value;
// with_source adds "partition", "offset" and "published" (the lookup answer).
std::string CouponOutcomeJson(const CouponOutcome& o, bool with_source);

struct CouponDbStats {
  int64_t coupons = 0;
  int64_t initial_stock = 0;
  int64_t stock = 0;        // left
  int64_t issued = 0;       // rows in issued_coupons
  int64_t requests = 0;     // decided requests
  int64_t unpublished = 0;  // outcomes not yet on coupon.results
  std::vector<std::pair<std::string, int64_t>> by_outcome;
};

// Owns one SQLite connection (the worker's loop is serial) and a publisher thread that moves
// decided outcomes to coupon.results. Thread-safe.
class CouponService {
 public:
  // Opens (creating) the database. `producer` publishes results; it may be null for read-only
  // use (status lookups, stats, stock setup).
  static Result<std::unique_ptr<CouponService>> Open(const std::string& db_path,
                                                     std::shared_ptr<client::Producer> producer);
  ~CouponService();

  // Creates a coupon with `stock` unless it exists (then nothing changes, so every worker of a
  // deployment may pass the same --stock flags, and a restart never refills the stock).
  Status AddCoupon(const std::string& coupon_id, int64_t stock);
  // The handler for Worker::Create: offsets and effects in one transaction.
  PartitionHandler Handler();
  Result<std::optional<CouponOutcome>> Lookup(const std::string& request_id);
  Result<CouponDbStats> DbStats();
  // Publishes outcomes not yet published (the outbox), e.g. those of a worker that died.
  Status PublishPending(int64_t older_than_ms);
  // Stops the publisher after a last PublishPending.
  void Close();

 private:
  CouponService(std::unique_ptr<SqliteDb> db, std::shared_ptr<client::Producer> producer);
  Result<std::optional<int64_t>> LoadOffset(const proto::TopicPartitionRef& tp);
  Result<int64_t> Process(const proto::TopicPartitionRef& tp,
                          const std::vector<client::ConsumerRecord>& records);
  // The per-request statements, prepared once per batch.
  struct DecideStatements {
    SqliteStatement stock, issued, take, give;
    static Result<DecideStatements> Prepare(SqliteDb& db);
  };
  Status Decide(DecideStatements& q, const client::ConsumerRecord& r, CouponOutcome* out);
  Status Publish(std::vector<CouponOutcome> outcomes);
  void PublisherLoop();
  void MarkPublished(std::vector<std::string> ids);

  std::mutex db_mu_;
  std::unique_ptr<SqliteDb> db_;
  std::shared_ptr<client::Producer> producer_;
  std::mutex pub_mu_;
  std::condition_variable pub_cv_;
  bool closing_ = false;
  std::vector<std::string> published_;  // request ids acknowledged on coupon.results
  std::thread publisher_;
};

// Request i of a run: JSON {requestId: "<run>-<i>", userId, couponId, requestedMs}, key
// "coupon-<couponId>", dedup key = requestId. The first `users` requests come from users
// 0..users-1; the rest (repeat_share * users) from earlier users asking again. User u asks for
// coupon "c<u % coupons>". Every `invalid_every`-th request (when > 0) has no userId.
struct CouponLoadShape {
  std::string run_id = "q";
  int64_t users = 2'000;
  double repeat_share = 0.1;
  int64_t coupons = 1;
  int64_t invalid_every = 0;

  int64_t Total() const;
};
client::ProducerRecord MakeCouponRequest(const CouponLoadShape& shape, int64_t i);
std::string CouponId(int64_t n);  // "c<n>"

}  // namespace runnel::worker
