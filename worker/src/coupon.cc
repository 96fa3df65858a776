// Workload `coupon`: decisions, stock, consumed offsets and the result outbox in one SQLite
// transaction per partition batch; a publisher thread drains the outbox to coupon.results.
#include "runnel/worker/coupon.h"

#include <pthread.h>

#include <chrono>

#include "runnel/common/clock.h"
#include "runnel/common/json.h"
#include "runnel/worker/load.h"

namespace runnel::worker {

namespace {

constexpr const char* kSchema = R"sql(
CREATE TABLE IF NOT EXISTS coupons(
  coupon_id TEXT PRIMARY KEY,
  stock INTEGER NOT NULL CHECK (stock >= 0),
  initial_stock INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS issued_coupons(
  user_id TEXT NOT NULL,
  coupon_id TEXT NOT NULL,
  request_id TEXT NOT NULL,
  issued_ms INTEGER NOT NULL,
  UNIQUE (user_id, coupon_id));
CREATE TABLE IF NOT EXISTS coupon_requests(
  request_id TEXT PRIMARY KEY,
  user_id TEXT,
  coupon_id TEXT,
  outcome TEXT NOT NULL,
  detail TEXT,
  source_partition INTEGER NOT NULL,
  source_offset INTEGER NOT NULL,
  decided_ms INTEGER NOT NULL,
  published INTEGER NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS coupon_requests_unpublished ON coupon_requests(decided_ms)
  WHERE published = 0;
CREATE TABLE IF NOT EXISTS consumer_offsets(
  topic TEXT NOT NULL,
  partition INTEGER NOT NULL,
  next_offset INTEGER NOT NULL,
  PRIMARY KEY (topic, partition));
)sql";

// Errors that say the database (not the request) is in trouble: the whole batch is retried.
bool TransientDbError(const Status& s) {
  return s.code() == StatusCode::kBusy || s.code() == StatusCode::kIOError ||
         s.code() == StatusCode::kNoSpace;
}

constexpr const char* kOutcomeColumns =
    "request_id, user_id, coupon_id, outcome, detail, source_partition, source_offset, "
    "decided_ms, published";

CouponOutcome ReadOutcome(const SqliteStatement& q) {
  CouponOutcome o;
  o.request_id = q.Text(0);
  o.user_id = q.Text(1);
  o.coupon_id = q.Text(2);
  o.outcome = q.Text(3);
  o.detail = q.Text(4);
  o.partition = static_cast<int32_t>(q.Int(5));
  o.offset = q.Int(6);
  o.decided_ms = q.Int(7);
  o.published = q.Int(8) != 0;
  return o;
}

}  // namespace

Result<std::unique_ptr<CouponService>> CouponService::Open(
    const std::string& db_path, std::shared_ptr<client::Producer> producer) {
  auto db = SqliteDb::Open(db_path, kSchema);
  if (!db.ok()) return db.status();
  return std::unique_ptr<CouponService>(new CouponService(std::move(db).value(), std::move(producer)));
}

CouponService::CouponService(std::unique_ptr<SqliteDb> db, std::shared_ptr<client::Producer> producer)
    : db_(std::move(db)), producer_(std::move(producer)) {
  if (producer_) {
    publisher_ = std::thread([this] {
      pthread_setname_np(pthread_self(), "runnel-outbox");
      PublisherLoop();
    });
  }
}

CouponService::~CouponService() { Close(); }

void CouponService::Close() {
  {
    std::lock_guard lk(pub_mu_);
    if (closing_) return;
    closing_ = true;
  }
  pub_cv_.notify_all();
  if (publisher_.joinable()) publisher_.join();
  if (producer_) {
    (void)PublishPending(0);
    (void)producer_->Flush(10'000);
    std::vector<std::string> done;
    {
      std::lock_guard lk(pub_mu_);
      done.swap(published_);
    }
    MarkPublished(std::move(done));
  }
}

Status CouponService::AddCoupon(const std::string& coupon_id, int64_t stock) {
  if (coupon_id.empty() || stock < 0) return Status::InvalidArgument("a coupon needs an id and stock >= 0");
  std::lock_guard lk(db_mu_);
  auto q = db_->Prepare(
      "INSERT OR IGNORE INTO coupons VALUES (?1, ?2, ?2)");
  if (!q.ok()) return q.status();
  q->Bind(1, coupon_id).Bind(2, stock);
  return q->Run();
}

PartitionHandler CouponService::Handler() {
  PartitionHandler h;
  h.load_offset = [this](const proto::TopicPartitionRef& tp) { return LoadOffset(tp); };
  h.process = [this](const proto::TopicPartitionRef& tp,
                     const std::vector<client::ConsumerRecord>& records) {
    return Process(tp, records);
  };
  return h;
}

Result<std::optional<int64_t>> CouponService::LoadOffset(const proto::TopicPartitionRef& tp) {
  std::lock_guard lk(db_mu_);
  auto q = db_->Prepare("SELECT next_offset FROM consumer_offsets WHERE topic = ?1 AND partition = ?2");
  if (!q.ok()) return q.status();
  q->Bind(1, tp.topic).Bind(2, int64_t{tp.partition});
  auto row = q->Step();
  if (!row.ok()) return row.status();
  if (!*row) return std::optional<int64_t>();
  return std::optional<int64_t>(q->Int(0));
}

Result<int64_t> CouponService::Process(const proto::TopicPartitionRef& tp,
                                       const std::vector<client::ConsumerRecord>& records) {
  std::vector<CouponOutcome> decided;
  int64_t next = records.back().offset + 1;
  {
    std::lock_guard lk(db_mu_);
    Status s = db_->Transaction([&]() -> Status {
      // The stored offset is the truth: it fences a worker that lost the partition and still
      // holds records (its stored offset moved on), and skips records already applied.
      auto q = db_->Prepare(
          "SELECT next_offset FROM consumer_offsets WHERE topic = ?1 AND partition = ?2");
      if (!q.ok()) return q.status();
      q->Bind(1, tp.topic).Bind(2, int64_t{tp.partition});
      auto row = q->Step();
      if (!row.ok()) return row.status();
      const int64_t start = *row ? q->Int(0) : records.front().offset;
      q->Reset();
      if (start < records.front().offset || start > records.back().offset) {
        next = start;  // a gap before these records, or all of them applied already
        return Status::OK();
      }
      auto insert = db_->Prepare(
          "INSERT INTO coupon_requests VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 0)");
      if (!insert.ok()) return insert.status();
      auto seen = db_->Prepare("SELECT 1 FROM coupon_requests WHERE request_id = ?1");
      if (!seen.ok()) return seen.status();
      auto stmts = DecideStatements::Prepare(*db_);
      if (!stmts.ok()) return stmts.status();
      for (const client::ConsumerRecord& r : records) {
        if (r.offset < start) continue;
        CouponOutcome o;
        RUNNEL_RETURN_IF_ERROR(db_->Exec("SAVEPOINT request"));
        Status d = Decide(*stmts, r, &o);
        if (!d.ok()) {
          if (TransientDbError(d)) return d;
          RUNNEL_RETURN_IF_ERROR(db_->Exec("ROLLBACK TO request"));
          o.outcome = "SYSTEM_ERROR";
          o.detail = d.ToString();
        }
        RUNNEL_RETURN_IF_ERROR(db_->Exec("RELEASE request"));
        // A request id decided before (re-sent after the dedup window) keeps its first outcome.
        seen->Bind(1, o.request_id);
        auto dup = seen->Step();
        if (!dup.ok()) return dup.status();
        seen->Reset();
        if (*dup) continue;
        insert->Bind(1, o.request_id).Bind(2, o.user_id).Bind(3, o.coupon_id);
        insert->Bind(4, o.outcome).Bind(5, o.detail).Bind(6, int64_t{o.partition});
        insert->Bind(7, o.offset).Bind(8, o.decided_ms);
        RUNNEL_RETURN_IF_ERROR(insert->Run());
        decided.push_back(std::move(o));
      }
      auto save = db_->Prepare(
          "INSERT INTO consumer_offsets VALUES (?1, ?2, ?3) ON CONFLICT(topic, partition) DO "
          "UPDATE SET next_offset = excluded.next_offset");
      if (!save.ok()) return save.status();
      save->Bind(1, tp.topic).Bind(2, int64_t{tp.partition}).Bind(3, next);
      return save->Run();
    });
    if (!s.ok()) return s;
  }
  if (!decided.empty()) (void)Publish(std::move(decided));
  return next;
}

Result<CouponService::DecideStatements> CouponService::DecideStatements::Prepare(SqliteDb& db) {
  auto stock = db.Prepare("SELECT stock FROM coupons WHERE coupon_id = ?1");
  if (!stock.ok()) return stock.status();
  auto issued = db.Prepare("SELECT request_id FROM issued_coupons WHERE user_id = ?1 AND coupon_id = ?2");
  if (!issued.ok()) return issued.status();
  auto take = db.Prepare("UPDATE coupons SET stock = stock - 1 WHERE coupon_id = ?1 AND stock > 0");
  if (!take.ok()) return take.status();
  auto give = db.Prepare("INSERT INTO issued_coupons VALUES (?1, ?2, ?3, ?4)");
  if (!give.ok()) return give.status();
  return DecideStatements{std::move(stock).value(), std::move(issued).value(),
                          std::move(take).value(), std::move(give).value()};
}

Status CouponService::Decide(DecideStatements& q, const client::ConsumerRecord& r,
                             CouponOutcome* o) {
  o->partition = r.partition;
  o->offset = r.offset;
  o->decided_ms = WallClockMs();
  o->request_id = r.topic + "-" + std::to_string(r.partition) + "-" + std::to_string(r.offset);
  auto doc = r.value ? ParseJson(*r.value) : Result<JsonValue>(Status::InvalidArgument("no value"));
  if (!doc.ok() || !doc->is_object()) {
    o->outcome = "VALIDATION_FAILED";
    o->detail = doc.ok() ? "not a JSON object" : "malformed JSON: " + doc.status().message();
    return Status::OK();
  }
  if (!doc->Str("requestId").empty()) o->request_id = doc->Str("requestId");
  o->user_id = doc->Str("userId");
  o->coupon_id = doc->Str("couponId");
  if (doc->Str("requestId").empty() || o->user_id.empty() || o->coupon_id.empty()) {
    o->outcome = "VALIDATION_FAILED";
    o->detail = "a request needs requestId, userId and couponId";
    return Status::OK();
  }
  q.stock.Bind(1, o->coupon_id);
  auto has = q.stock.Step();
  const int64_t stock = has.ok() && *has ? q.stock.Int(0) : 0;
  q.stock.Reset();
  if (!has.ok()) return has.status();
  if (!*has) {
    o->outcome = "VALIDATION_FAILED";
    o->detail = "unknown coupon '" + o->coupon_id + "'";
    return Status::OK();
  }
  q.issued.Bind(1, o->user_id).Bind(2, o->coupon_id);
  auto issued = q.issued.Step();
  const std::string by = issued.ok() && *issued ? q.issued.Text(0) : std::string();
  q.issued.Reset();
  if (!issued.ok()) return issued.status();
  if (*issued) {
    o->outcome = "DUPLICATE_REQUEST";
    o->detail = "already issued by request " + by;
    return Status::OK();
  }
  if (stock <= 0) {
    o->outcome = "OUT_OF_STOCK";
    return Status::OK();
  }
  q.take.Bind(1, o->coupon_id);
  RUNNEL_RETURN_IF_ERROR(q.take.Run());
  q.give.Bind(1, o->user_id).Bind(2, o->coupon_id).Bind(3, o->request_id).Bind(4, o->decided_ms);
  RUNNEL_RETURN_IF_ERROR(q.give.Run());
  o->outcome = "SUCCESS";
  return Status::OK();
}

Status CouponService::Publish(std::vector<CouponOutcome> outcomes) {
  if (!producer_) return Status::OK();
  for (CouponOutcome& o : outcomes) {
    client::ProducerRecord rec;
    rec.topic = kCouponResultsTopic;
    rec.key = o.request_id;
    rec.value = CouponOutcomeJson(o, /*with_source=*/false);
    rec.headers.emplace_back("runnel.dedup.key", o.request_id);
    producer_->Send(std::move(rec), [this, id = o.request_id](Result<client::RecordMetadata> r) {
      if (!r.ok()) return;  // stays unpublished; the publisher retries it
      {
        std::lock_guard lk(pub_mu_);
        published_.push_back(id);
      }
      pub_cv_.notify_one();
    });
  }
  return Status::OK();
}

Status CouponService::PublishPending(int64_t older_than_ms) {
  std::vector<CouponOutcome> pending;
  {
    std::lock_guard lk(db_mu_);
    auto q = db_->Prepare(std::string("SELECT ") + kOutcomeColumns +
                          " FROM coupon_requests WHERE published = 0 AND decided_ms <= ?1 "
                          "ORDER BY decided_ms LIMIT 10000");
    if (!q.ok()) return q.status();
    q->Bind(1, WallClockMs() - older_than_ms);
    for (;;) {
      auto row = q->Step();
      if (!row.ok()) return row.status();
      if (!*row) break;
      pending.push_back(ReadOutcome(*q));
    }
  }
  return Publish(std::move(pending));
}

void CouponService::MarkPublished(std::vector<std::string> ids) {
  if (ids.empty()) return;
  std::lock_guard lk(db_mu_);
  Status s = db_->Transaction([&]() -> Status {
    auto q = db_->Prepare("UPDATE coupon_requests SET published = 1 WHERE request_id = ?1");
    if (!q.ok()) return q.status();
    for (const std::string& id : ids) {
      q->Bind(1, id);
      RUNNEL_RETURN_IF_ERROR(q->Run());
    }
    return Status::OK();
  });
  if (!s.ok()) {  // tried again on the next round
    std::lock_guard plk(pub_mu_);
    published_.insert(published_.end(), ids.begin(), ids.end());
  }
}

void CouponService::PublisherLoop() {
  auto last_sweep = std::chrono::steady_clock::now();
  for (;;) {
    std::vector<std::string> done;
    bool closing;
    {
      std::unique_lock lk(pub_mu_);
      pub_cv_.wait_for(lk, std::chrono::milliseconds(200),
                       [&] { return closing_ || published_.size() >= 500; });
      done.swap(published_);
      closing = closing_;
    }
    MarkPublished(std::move(done));
    if (closing) return;
    // Outcomes a dead worker decided but never published (and our own failed sends).
    if (std::chrono::steady_clock::now() - last_sweep > std::chrono::seconds(1)) {
      last_sweep = std::chrono::steady_clock::now();
      (void)PublishPending(2'000);
    }
  }
}

Result<std::optional<CouponOutcome>> CouponService::Lookup(const std::string& request_id) {
  std::lock_guard lk(db_mu_);
  auto q = db_->Prepare(std::string("SELECT ") + kOutcomeColumns +
                        " FROM coupon_requests WHERE request_id = ?1");
  if (!q.ok()) return q.status();
  q->Bind(1, request_id);
  auto row = q->Step();
  if (!row.ok()) return row.status();
  if (!*row) return std::optional<CouponOutcome>();
  return std::optional<CouponOutcome>(ReadOutcome(*q));
}

Result<CouponDbStats> CouponService::DbStats() {
  std::lock_guard lk(db_mu_);
  CouponDbStats out;
  auto q = db_->Prepare(
      "SELECT (SELECT COUNT(*) FROM coupons), (SELECT IFNULL(SUM(initial_stock), 0) FROM coupons), "
      "(SELECT IFNULL(SUM(stock), 0) FROM coupons), (SELECT COUNT(*) FROM issued_coupons), "
      "(SELECT COUNT(*) FROM coupon_requests), "
      "(SELECT COUNT(*) FROM coupon_requests WHERE published = 0)");
  if (!q.ok()) return q.status();
  auto row = q->Step();
  if (!row.ok()) return row.status();
  out = {q->Int(0), q->Int(1), q->Int(2), q->Int(3), q->Int(4), q->Int(5), {}};
  auto by = db_->Prepare("SELECT outcome, COUNT(*) FROM coupon_requests GROUP BY outcome ORDER BY outcome");
  if (!by.ok()) return by.status();
  for (;;) {
    auto r = by->Step();
    if (!r.ok()) return r.status();
    if (!*r) break;
    out.by_outcome.emplace_back(by->Text(0), by->Int(1));
  }
  return out;
}

std::string CouponOutcomeJson(const CouponOutcome& o, bool with_source) {
  JsonWriter w;
  w.BeginObject();
  w.Field("requestId", o.request_id).Field("userId", o.user_id).Field("couponId", o.coupon_id);
  w.Field("outcome", o.outcome).Field("detail", o.detail).Field("decidedMs", o.decided_ms);
  if (with_source) {
    w.Field("partition", o.partition).Field("offset", o.offset).Field("published", o.published);
  }
  w.EndObject();
  return w.Take();
}

int64_t CouponLoadShape::Total() const { return RepeatRunTotal(users, repeat_share); }

std::string CouponId(int64_t n) { return "c" + std::to_string(n); }

client::ProducerRecord MakeCouponRequest(const CouponLoadShape& shape, int64_t i) {
  const int64_t user = RepeatRunItem(shape.users, shape.repeat_share, i);
  const std::string coupon = CouponId(user % std::max<int64_t>(1, shape.coupons));
  const std::string request_id = shape.run_id + "-" + std::to_string(i);
  JsonWriter w;
  w.BeginObject();
  w.Field("requestId", request_id);
  if (!(shape.invalid_every > 0 && i % shape.invalid_every == 5))
    w.Field("userId", "user-" + std::to_string(user));
  w.Field("couponId", coupon).Field("requestedMs", WallClockMs());
  w.EndObject();
  client::ProducerRecord r;
  r.topic = kCouponTopic;
  r.key = "coupon-" + coupon;
  r.value = w.Take();
  r.headers.emplace_back("runnel.dedup.key", request_id);
  return r;
}

}  // namespace runnel::worker
