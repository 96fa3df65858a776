// A thin SQLite wrapper for the workloads: statuses instead of result codes, RAII handles, and
// the settings a durable worker database needs (WAL, synchronous=FULL, a busy timeout).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "runnel/common/result.h"

struct sqlite3;
struct sqlite3_stmt;

namespace runnel::worker {

class SqliteStatement;

// One connection. Not thread-safe: use one per thread (SQLite serializes writers across
// connections and processes; BUSY is waited out for busy_timeout_ms).
class SqliteDb {
 public:
  // Opens (creating) `path` in WAL mode with synchronous=FULL, so a committed transaction
  // survives a power loss, then runs `schema` (idempotent DDL). Several processes may open one
  // file at once: lock conflicts while setting up are retried for busy_timeout_ms. IOError when
  // the file cannot be opened.
  static Result<std::unique_ptr<SqliteDb>> Open(const std::string& path,
                                                std::string_view schema = {},
                                                int64_t busy_timeout_ms = 10'000);
  ~SqliteDb();
  SqliteDb(const SqliteDb&) = delete;
  SqliteDb& operator=(const SqliteDb&) = delete;

  // Runs one or more statements without results.
  Status Exec(std::string_view sql);
  Result<SqliteStatement> Prepare(std::string_view sql);
  int64_t Changes() const;  // rows changed by the last statement

  // BEGIN IMMEDIATE ... COMMIT, rolled back when `body` fails or the commit does.
  template <class F> Status Transaction(F body) {
    RUNNEL_RETURN_IF_ERROR(Exec("BEGIN IMMEDIATE"));
    Status s = body();
    if (s.ok()) s = Exec("COMMIT");
    if (!s.ok()) (void)Exec("ROLLBACK");
    return s;
  }

 private:
  explicit SqliteDb(sqlite3* db) : db_(db) {}
  sqlite3* db_;
};

// A prepared statement. Bind parameters are 1-based, columns 0-based. Movable.
class SqliteStatement {
 public:
  SqliteStatement(SqliteStatement&& o) noexcept : db_(o.db_), stmt_(o.stmt_) { o.stmt_ = nullptr; }
  SqliteStatement& operator=(SqliteStatement&& o) noexcept;
  ~SqliteStatement();

  SqliteStatement& Bind(int index, int64_t v);
  SqliteStatement& Bind(int index, std::string_view v);
  // Runs to the next row: true with a row, false when done. Errors map to Busy / IOError /
  // AlreadyExists (a constraint failed).
  Result<bool> Step();
  // Step until done; for statements without rows.
  Status Run();
  int64_t Int(int column) const;
  std::string Text(int column) const;
  // Resets for another run with new bindings.
  void Reset();

 private:
  friend class SqliteDb;
  SqliteStatement(sqlite3* db, sqlite3_stmt* stmt) : db_(db), stmt_(stmt) {}
  sqlite3* db_;
  sqlite3_stmt* stmt_;
};

}  // namespace runnel::worker
