// Workload `barcode` (seed 002): scans from topic `barcode.scans` batch-inserted into SQLite with
// a UNIQUE index on internal_barcode_id and acknowledged only after the transaction committed.
// Duplicates are dropped twice: by the topic's dedup window (producers set runnel.dedup.key to
// the internalBarcodeId, replacing the seed's Redis Set) and by the index (redeliveries after a
// worker died mid-batch), so the table ends with exactly the distinct scans.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "runnel/client/producer.h"
#include "runnel/worker/sqlite.h"
#include "runnel/worker/worker.h"

namespace runnel::worker {

inline constexpr const char* kBarcodeTopic = "barcode.scans";
inline constexpr const char* kBarcodeGroup = "barcode";

// Counters kept in the database itself, so they add up across workers and survive kills.
struct BarcodeDbStats {
  int64_t rows = 0;                // rows in the table
  int64_t transactions = 0;        // write transactions committed by workers
  int64_t rows_inserted = 0;       // rows those transactions inserted
  int64_t duplicates_ignored = 0;  // scans the UNIQUE index turned away
  int64_t scans_seen = 0;          // valid scans in committed transactions
  // Write transactions per 1,000 scans seen (0 when none).
  double TransactionsPerThousand() const {
    return scans_seen ? 1000.0 * static_cast<double>(transactions) / static_cast<double>(scans_seen) : 0;
  }
};

// Thread-safe: each handler call borrows one of its SQLite connections.
class BarcodeSink {
 public:
  // Opens (creating) the database and its schema. IOError when it cannot.
  // A handler waits up to busy_timeout_ms for a database another writer holds, then fails.
  static Result<std::shared_ptr<BarcodeSink>> Open(const std::string& db_path,
                                                   int64_t busy_timeout_ms = 5'000);

  // The batch handler: one transaction for the valid scans (INSERT OR IGNORE); malformed scans
  // are dead-lettered; a database error fails the valid ones with kind "db" (retried).
  std::vector<Outcome> Handle(const std::vector<client::ConsumerRecord>& batch);

  Result<BarcodeDbStats> DbStats();

 private:
  BarcodeSink(std::string path, int64_t busy_timeout_ms)
      : path_(std::move(path)), busy_timeout_ms_(busy_timeout_ms) {}
  Result<std::unique_ptr<SqliteDb>> Borrow();
  void Return(std::unique_ptr<SqliteDb> db);

  const std::string path_;
  const int64_t busy_timeout_ms_;
  std::mutex mu_;
  std::vector<std::unique_ptr<SqliteDb>> idle_;
};

// The load generator's shape: `distinct` scans plus duplicate_share * distinct re-sends of recent
// scans, spread evenly through the run; scan numbers n with n % malformed_every == 3 (when
// malformed_every > 0) are sent as broken JSON instead.
struct BarcodeLoadShape {
  std::string run_id = "r";
  int64_t distinct = 50'000;
  double duplicate_share = 0.1;
  int64_t scanners = 40;
  int64_t malformed_every = 0;

  int64_t Total() const;
  // The scan number (0 .. distinct-1) sent at `position` (0 .. Total()-1).
  int64_t ScanNumber(int64_t position) const;
};
// Scan number n as JSON {internalBarcodeId: "IB-<run>-<n>", barcode, scanner, warehouse,
// scannedMs}, keyed by scanner, with header runnel.dedup.key = internalBarcodeId.
client::ProducerRecord MakeScan(const BarcodeLoadShape& shape, int64_t n);

}  // namespace runnel::worker
