// Thin RAII layer over the SQLite C API: one Db (connection), Stmt (prepared
// statement), Txn (transaction that rolls back unless committed) and schema
// migrations by `PRAGMA user_version`. Knows nothing about the store's schema.
#pragma once
#include <sqlite3.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "base/result.hpp"

namespace outpost::store::sql {

struct StmtCache;   // a Db's compiled statements (sqlite.cpp)
struct CachedStmt;  // one of them

/// A prepared statement. Bind indexes are 1-based, column indexes 0-based
/// (as in the C API). Bind errors are remembered and reported by step().
/// Not thread-safe: used under the same serialization as its Db. Destroying
/// it hands the statement back to the Db's cache (reset, bindings cleared).
class Stmt {
 public:
  Stmt() = default;
  ~Stmt();
  Stmt(Stmt&& o) noexcept;
  Stmt& operator=(Stmt&& o) noexcept;
  Stmt(const Stmt&) = delete;
  Stmt& operator=(const Stmt&) = delete;

  Stmt& bind(int i, int64_t v);
  Stmt& bind(int i, std::string_view v);
  Stmt& bind(int i, const char* v) { return bind(i, std::string_view(v)); }
  Stmt& bind(int i, const std::string& v) { return bind(i, std::string_view(v)); }
  Stmt& bind(int i, const std::optional<std::string>& v);
  Stmt& bind_null(int i);

  /// Advances: true when a row is available, false when done.
  Result<bool> step();
  /// Runs a statement that returns no rows (or ignores them) to completion.
  Status run();
  /// Resets for re-execution; bindings are kept unless cleared.
  void reset();

  int64_t col_int(int i) const { return sqlite3_column_int64(s_, i); }
  std::string col_text(int i) const;
  std::optional<std::string> col_opt_text(int i) const;
  bool col_null(int i) const { return sqlite3_column_type(s_, i) == SQLITE_NULL; }

 private:
  friend class Db;
  Stmt(sqlite3* db, sqlite3_stmt* s, std::shared_ptr<StmtCache> cache, CachedStmt* slot)
      : db_(db), s_(s), cache_(std::move(cache)), slot_(slot) {}
  void release();
  void note_bind(int rc);
  sqlite3* db_ = nullptr;
  sqlite3_stmt* s_ = nullptr;
  std::shared_ptr<StmtCache> cache_;  ///< set with slot_: where s_ goes back to
  CachedStmt* slot_ = nullptr;        ///< null: s_ is not cached, finalize it
  int bind_rc_ = SQLITE_OK;
};

/// One connection. Opened with WAL, synchronous=FULL (a committed
/// transaction is on stable storage when commit returns), foreign keys on, a
/// busy timeout, the file memory-mapped for reads and temp tables in memory
/// (why: Db::open). Not thread-safe by itself: the owner serializes access.
///
/// prepare() keeps compiled statements: a Stmt handed back (destroyed) is
/// reset and kept by its SQL text, and the next prepare() of the same text
/// reuses it. Compiling dominated a point lookup (parser, planner, code
/// generation cost more than the B-tree search), so callers may prepare in
/// every call and still only compile each distinct statement once.
class Db {
 public:
  Db() = default;
  ~Db();
  Db(Db&& o) noexcept;
  Db& operator=(Db&& o) noexcept;
  Db(const Db&) = delete;
  Db& operator=(const Db&) = delete;

  /// Opens (creating) the database file and applies the connection pragmas.
  static Result<Db> open(const std::string& path, int busy_timeout_ms = 5000);

  /// Runs one or more statements without results (DDL, pragmas).
  Status exec(std::string_view sql);
  /// One statement; reuses a cached compiled one for the same text when it
  /// is not in use. Statements that are in use at once are distinct.
  Result<Stmt> prepare(std::string_view sql);
  /// Rows changed by the last INSERT/UPDATE/DELETE on this connection.
  int64_t changes() const { return sqlite3_changes64(db_); }

  Result<int64_t> user_version();
  /// Applies steps[user_version..] in order, each in its own transaction that
  /// also bumps user_version, so a crash leaves the schema at a step boundary.
  /// A database newer than `steps` is refused (Errc::Db) rather than guessed at.
  Status migrate(std::span<const std::string_view> steps);

  sqlite3* raw() const { return db_; }
  /// Errc::Db with the connection's last error message and `context`.
  Error last_error(std::string_view context) const;

 private:
  explicit Db(sqlite3* db);
  void close();
  sqlite3* db_ = nullptr;
  std::shared_ptr<StmtCache> cache_;
};

/// BEGIN IMMEDIATE ... COMMIT; rolls back on destruction unless committed.
/// IMMEDIATE takes the write lock up front, so a read-then-write transaction
/// cannot fail half-way with SQLITE_BUSY on lock upgrade.
class Txn {
 public:
  static Result<Txn> begin(Db& db);
  ~Txn();
  Txn(Txn&& o) noexcept : db_(o.db_) { o.db_ = nullptr; }
  Txn& operator=(Txn&&) = delete;
  Txn(const Txn&) = delete;
  Txn& operator=(const Txn&) = delete;
  Status commit();

 private:
  explicit Txn(Db* db) : db_(db) {}
  Db* db_ = nullptr;
};

}  // namespace outpost::store::sql
