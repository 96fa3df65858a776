// Workload `barcode`: batch insert into SQLite with a UNIQUE index, ack after commit.
#include "runnel/worker/barcode.h"

#include <chrono>
#include <cmath>

#include "runnel/common/clock.h"
#include "runnel/common/json.h"
#include "runnel/worker/load.h"

namespace runnel::worker {

namespace {

constexpr const char* kSchema = R"sql(
CREATE TABLE IF NOT EXISTS barcode_scans(
  internal_barcode_id TEXT NOT NULL,
  barcode TEXT NOT NULL,
  scanner TEXT,
  warehouse TEXT,
  scanned_ms INTEGER,
  stored_ms INTEGER NOT NULL,
  source_partition INTEGER NOT NULL,
  source_offset INTEGER NOT NULL);
CREATE UNIQUE INDEX IF NOT EXISTS barcode_scans_internal_id ON barcode_scans(internal_barcode_id);
CREATE TABLE IF NOT EXISTS barcode_stats(
  id INTEGER PRIMARY KEY CHECK (id = 1),
  transactions INTEGER NOT NULL,
  rows_inserted INTEGER NOT NULL,
  duplicates_ignored INTEGER NOT NULL,
  scans_seen INTEGER NOT NULL);
INSERT OR IGNORE INTO barcode_stats VALUES (1, 0, 0, 0, 0);
)sql";

struct Scan {
  std::string id, barcode, scanner, warehouse;
  int64_t scanned_ms = 0;
};

Result<Scan> ParseScan(const client::ConsumerRecord& r) {
  if (!r.value) return Status::InvalidArgument("empty scan");
  auto doc = ParseJson(*r.value);
  if (!doc.ok()) return doc.status();
  if (!doc->is_object()) return Status::InvalidArgument("a scan is a JSON object");
  Scan s{doc->Str("internalBarcodeId"), doc->Str("barcode"), doc->Str("scanner"),
         doc->Str("warehouse"), doc->Int("scannedMs")};
  if (s.id.empty() || s.barcode.empty())
    return Status::InvalidArgument("a scan needs internalBarcodeId and barcode");
  return s;
}

}  // namespace

Result<std::shared_ptr<BarcodeSink>> BarcodeSink::Open(const std::string& db_path,
                                                       int64_t busy_timeout_ms) {
  std::shared_ptr<BarcodeSink> sink(new BarcodeSink(db_path, busy_timeout_ms));
  auto db = SqliteDb::Open(db_path, kSchema, busy_timeout_ms);
  if (!db.ok()) return db.status();
  sink->Return(std::move(db).value());
  return sink;
}

Result<std::unique_ptr<SqliteDb>> BarcodeSink::Borrow() {
  {
    std::lock_guard lk(mu_);
    if (!idle_.empty()) {
      auto db = std::move(idle_.back());
      idle_.pop_back();
      return db;
    }
  }
  return SqliteDb::Open(path_, {}, busy_timeout_ms_);
}

void BarcodeSink::Return(std::unique_ptr<SqliteDb> db) {
  std::lock_guard lk(mu_);
  idle_.push_back(std::move(db));
}

std::vector<Outcome> BarcodeSink::Handle(const std::vector<client::ConsumerRecord>& batch) {
  std::vector<Outcome> outcomes(batch.size());
  std::vector<std::pair<size_t, Scan>> valid;
  for (size_t i = 0; i < batch.size(); ++i) {
    auto scan = ParseScan(batch[i]);
    if (scan.ok()) {
      valid.emplace_back(i, std::move(scan).value());
    } else {
      outcomes[i] = Outcome::Reject("malformed", scan.status().message());
    }
  }
  if (valid.empty()) return outcomes;

  Status s;
  auto db = Borrow();
  if (!db.ok()) {
    s = db.status();
  } else {
    s = (*db)->Transaction([&]() -> Status {
      auto insert = (*db)->Prepare(
          "INSERT OR IGNORE INTO barcode_scans VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)");
      if (!insert.ok()) return insert.status();
      int64_t inserted = 0;
      const int64_t now = WallClockMs();
      for (const auto& [i, scan] : valid) {
        insert->Bind(1, scan.id).Bind(2, scan.barcode).Bind(3, scan.scanner);
        insert->Bind(4, scan.warehouse).Bind(5, scan.scanned_ms).Bind(6, now);
        insert->Bind(7, int64_t{batch[i].partition}).Bind(8, batch[i].offset);
        RUNNEL_RETURN_IF_ERROR(insert->Run());
        inserted += (*db)->Changes();
      }
      auto stats = (*db)->Prepare(
          "UPDATE barcode_stats SET transactions = transactions + 1, rows_inserted = "
          "rows_inserted + ?1, duplicates_ignored = duplicates_ignored + ?2, scans_seen = "
          "scans_seen + ?3 WHERE id = 1");
      if (!stats.ok()) return stats.status();
      const auto n = static_cast<int64_t>(valid.size());
      stats->Bind(1, inserted).Bind(2, n - inserted).Bind(3, n);
      return stats->Run();
    });
    Return(std::move(db).value());
  }
  if (!s.ok()) {
    for (const auto& [i, scan] : valid) outcomes[i] = Outcome::Fail("db", s.ToString());
  }
  return outcomes;
}

Result<BarcodeDbStats> BarcodeSink::DbStats() {
  auto db = Borrow();
  if (!db.ok()) return db.status();
  BarcodeDbStats out;
  Status s;
  {
    auto q = (*db)->Prepare(
        "SELECT (SELECT COUNT(*) FROM barcode_scans), transactions, rows_inserted, "
        "duplicates_ignored, scans_seen FROM barcode_stats WHERE id = 1");
    if (!q.ok()) {
      s = q.status();
    } else {
      auto row = q->Step();
      if (!row.ok()) {
        s = row.status();
      } else if (*row) {
        out = {q->Int(0), q->Int(1), q->Int(2), q->Int(3), q->Int(4)};
      }
    }
  }
  Return(std::move(db).value());
  if (!s.ok()) return s;
  return out;
}

int64_t BarcodeLoadShape::Total() const { return RepeatRunTotal(distinct, duplicate_share); }

int64_t BarcodeLoadShape::ScanNumber(int64_t position) const {
  return RepeatRunItem(distinct, duplicate_share, position);
}

client::ProducerRecord MakeScan(const BarcodeLoadShape& shape, int64_t n) {
  const std::string id = "IB-" + shape.run_id + "-" + std::to_string(n);
  const std::string scanner = "s-" + std::to_string(n % std::max<int64_t>(1, shape.scanners));
  client::ProducerRecord r;
  r.topic = kBarcodeTopic;
  r.key = scanner;
  if (shape.malformed_every > 0 && n % shape.malformed_every == 3) {
    r.value = "{\"internalBarcodeId\":\"" + id + "\",";  // broken
  } else {
    JsonWriter w;
    w.BeginObject();
    w.Field("internalBarcodeId", id);
    w.Field("barcode", "880" + std::to_string(1'000'000'000 + n));
    w.Field("scanner", scanner).Field("warehouse", "W" + std::to_string(n % 3 + 1));
    w.Field("scannedMs", WallClockMs());
    w.EndObject();
    r.value = w.Take();
  }
  r.headers.emplace_back("runnel.dedup.key", id);
  return r;
}

}  // namespace runnel::worker
