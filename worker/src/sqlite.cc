// SQLite wrapper.
#include "runnel/worker/sqlite.h"

#include <sqlite3.h>

#include <chrono>
#include <thread>

namespace runnel::worker {

namespace {
Status FromSqlite(sqlite3* db, int rc, std::string_view what) {
  std::string msg = std::string(what) + ": " + (db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
  switch (rc & 0xff) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
      return Status::Busy(msg);
    case SQLITE_CONSTRAINT:
      return Status::AlreadyExists(msg);
    case SQLITE_FULL:
      return Status::NoSpace(msg);
    default:
      return Status::IOError(msg);
  }
}
}  // namespace

Result<std::unique_ptr<SqliteDb>> SqliteDb::Open(const std::string& path, std::string_view schema,
                                                 int64_t busy_timeout_ms) {
  sqlite3* db = nullptr;
  const int rc = sqlite3_open_v2(path.c_str(), &db,
                                 SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                                 nullptr);
  if (rc != SQLITE_OK) {
    Status s = FromSqlite(db, rc, "cannot open database '" + path + "'");
    sqlite3_close(db);
    return s;
  }
  std::unique_ptr<SqliteDb> out(new SqliteDb(db));
  sqlite3_busy_timeout(db, static_cast<int>(busy_timeout_ms));
  // Switching to WAL and creating tables take locks the busy handler does not always wait for.
  auto setup = [&](std::string_view sql) {
    const auto deadline =
        std::chrono::steady_clock::now() + std::chrono::milliseconds(busy_timeout_ms);
    for (;;) {
      Status s = out->Exec(sql);
      if (s.code() != StatusCode::kBusy || std::chrono::steady_clock::now() > deadline) return s;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  };
  RUNNEL_RETURN_IF_ERROR(setup("PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;"));
  if (!schema.empty()) RUNNEL_RETURN_IF_ERROR(setup(schema));
  return out;
}

SqliteDb::~SqliteDb() { sqlite3_close_v2(db_); }

Status SqliteDb::Exec(std::string_view sql) {
  char* err = nullptr;
  const std::string text(sql);
  const int rc = sqlite3_exec(db_, text.c_str(), nullptr, nullptr, &err);
  if (rc == SQLITE_OK) return Status::OK();
  Status s = FromSqlite(db_, rc, text.substr(0, 60));
  sqlite3_free(err);
  return s;
}

Result<SqliteStatement> SqliteDb::Prepare(std::string_view sql) {
  sqlite3_stmt* stmt = nullptr;
  const int rc = sqlite3_prepare_v2(db_, sql.data(), static_cast<int>(sql.size()), &stmt, nullptr);
  if (rc != SQLITE_OK) return FromSqlite(db_, rc, "prepare " + std::string(sql.substr(0, 60)));
  return SqliteStatement(db_, stmt);
}

int64_t SqliteDb::Changes() const { return sqlite3_changes(db_); }

SqliteStatement& SqliteStatement::operator=(SqliteStatement&& o) noexcept {
  if (this != &o) {
    sqlite3_finalize(stmt_);
    db_ = o.db_;
    stmt_ = o.stmt_;
    o.stmt_ = nullptr;
  }
  return *this;
}

SqliteStatement::~SqliteStatement() { sqlite3_finalize(stmt_); }

SqliteStatement& SqliteStatement::Bind(int index, int64_t v) {
  sqlite3_bind_int64(stmt_, index, v);
  return *this;
}
SqliteStatement& SqliteStatement::Bind(int index, std::string_view v) {
  sqlite3_bind_text(stmt_, index, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
  return *this;
}

Result<bool> SqliteStatement::Step() {
  const int rc = sqlite3_step(stmt_);
  if (rc == SQLITE_ROW) return true;
  if (rc == SQLITE_DONE) return false;
  return FromSqlite(db_, rc, "step");
}

Status SqliteStatement::Run() {
  for (;;) {
    auto r = Step();
    if (!r.ok()) {
      Reset();
      return r.status();
    }
    if (!*r) break;
  }
  Reset();
  return Status::OK();
}

int64_t SqliteStatement::Int(int column) const { return sqlite3_column_int64(stmt_, column); }
std::string SqliteStatement::Text(int column) const {
  const auto* p = sqlite3_column_text(stmt_, column);
  return p ? std::string(reinterpret_cast<const char*>(p),
                         static_cast<size_t>(sqlite3_column_bytes(stmt_, column)))
           : std::string();
}
void SqliteStatement::Reset() {
  sqlite3_reset(stmt_);
  sqlite3_clear_bindings(stmt_);
}

}  // namespace runnel::worker
