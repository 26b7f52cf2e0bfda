// RAII over sqlite3 / sqlite3_stmt, transactions and user_version migrations.
#include "store/sqlite.hpp"

#include <functional>
#include <string>
#include <unordered_map>
#include <utility>

namespace outpost::store::sql {

// ---- statement cache ---------------------------------------------------------

// A cached statement is either idle (reset, no bindings) or held by exactly
// one Stmt. Entries are never erased while the connection is open, so a
// Stmt's slot pointer stays valid (unordered_map nodes do not move).
struct CachedStmt {
  sqlite3_stmt* stmt = nullptr;
  bool in_use = false;
};

// Shared by the Db and every Stmt holding a cached statement, so a Stmt
// destroyed after its Db (sqlite3_close_v2 allows that) finds `closed` and
// finalizes instead of parking its statement on a dead connection.
struct StmtCache {
  struct Hash {
    using is_transparent = void;  // find() by string_view without a copy
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };
  std::unordered_map<std::string, CachedStmt, Hash, std::equal_to<>> entries;
  bool closed = false;
};

namespace {
// The store has a few dozen distinct statements; the bound only keeps a
// caller that builds SQL text at run time from growing the cache forever.
constexpr size_t kMaxCachedStmts = 128;
}  // namespace

// ---- Stmt -------------------------------------------------------------------

Stmt::~Stmt() { release(); }

void Stmt::release() {
  if (s_ != nullptr) {
    if (slot_ != nullptr && !cache_->closed) {
      // Back to idle: reset ends any read transaction the statement holds,
      // and cleared bindings do not keep the caller's values alive.
      sqlite3_reset(s_);
      sqlite3_clear_bindings(s_);
      slot_->in_use = false;
    } else {
      sqlite3_finalize(s_);
    }
  }
  s_ = nullptr;
  slot_ = nullptr;
  cache_.reset();
}

Stmt::Stmt(Stmt&& o) noexcept
    : db_(std::exchange(o.db_, nullptr)),
      s_(std::exchange(o.s_, nullptr)),
      cache_(std::move(o.cache_)),
      slot_(std::exchange(o.slot_, nullptr)),
      bind_rc_(o.bind_rc_) {}

Stmt& Stmt::operator=(Stmt&& o) noexcept {
  if (this != &o) {
    release();
    db_ = std::exchange(o.db_, nullptr);
    s_ = std::exchange(o.s_, nullptr);
    cache_ = std::move(o.cache_);
    slot_ = std::exchange(o.slot_, nullptr);
    bind_rc_ = o.bind_rc_;
  }
  return *this;
}

void Stmt::note_bind(int rc) {
  if (rc != SQLITE_OK && bind_rc_ == SQLITE_OK) bind_rc_ = rc;
}

Stmt& Stmt::bind(int i, int64_t v) {
  note_bind(sqlite3_bind_int64(s_, i, v));
  return *this;
}

Stmt& Stmt::bind(int i, std::string_view v) {
  // SQLITE_TRANSIENT: SQLite copies, so temporaries are safe to pass.
  note_bind(sqlite3_bind_text64(s_, i, v.data(), v.size(), SQLITE_TRANSIENT, SQLITE_UTF8));
  return *this;
}

Stmt& Stmt::bind(int i, const std::optional<std::string>& v) {
  return v ? bind(i, std::string_view(*v)) : bind_null(i);
}

Stmt& Stmt::bind_null(int i) {
  note_bind(sqlite3_bind_null(s_, i));
  return *this;
}

Result<bool> Stmt::step() {
  if (bind_rc_ != SQLITE_OK)
    return Error(Errc::Db, std::string("sqlite bind: ") + sqlite3_errstr(bind_rc_));
  int rc = sqlite3_step(s_);
  if (rc == SQLITE_ROW) return true;
  if (rc == SQLITE_DONE) return false;
  std::string d = "sqlite step: ";
  d += sqlite3_errmsg(db_);
  d += " [";
  d += sqlite3_sql(s_);
  d += "]";
  sqlite3_reset(s_);
  return Error(Errc::Db, std::move(d));
}

Status Stmt::run() {
  for (;;) {
    auto r = step();
    if (!r) return std::move(r).error();
    if (!*r) return {};
  }
}

void Stmt::reset() { sqlite3_reset(s_); }

std::string Stmt::col_text(int i) const {
  const auto* p = reinterpret_cast<const char*>(sqlite3_column_text(s_, i));
  if (p == nullptr) return {};
  return std::string(p, static_cast<size_t>(sqlite3_column_bytes(s_, i)));
}

std::optional<std::string> Stmt::col_opt_text(int i) const {
  if (col_null(i)) return std::nullopt;
  return col_text(i);
}

// ---- Db ---------------------------------------------------------------------

Db::Db(sqlite3* db) : db_(db), cache_(std::make_shared<StmtCache>()) {}

Db::~Db() { close(); }

Db::Db(Db&& o) noexcept : db_(std::exchange(o.db_, nullptr)), cache_(std::move(o.cache_)) {}

Db& Db::operator=(Db&& o) noexcept {
  if (this != &o) {
    close();
    db_ = std::exchange(o.db_, nullptr);
    cache_ = std::move(o.cache_);
  }
  return *this;
}

void Db::close() {
  if (cache_) {
    cache_->closed = true;  // statements still held finalize when released
    for (auto& [sql, c] : cache_->entries) {
      if (!c.in_use) sqlite3_finalize(c.stmt);
    }
    cache_.reset();
  }
  // sqlite3_close_v2 defers the close until every statement is finalized.
  if (db_ != nullptr) sqlite3_close_v2(db_);
  db_ = nullptr;
}

Error Db::last_error(std::string_view context) const {
  std::string d = "sqlite ";
  d += context;
  d += ": ";
  d += db_ != nullptr ? sqlite3_errmsg(db_) : "no connection";
  if (db_ != nullptr && (sqlite3_errcode(db_) & 0xff) == SQLITE_FULL)
    return Error(Errc::InsufficientStorage, "insufficient storage: the registry's disk is full (" + d + ")");
  return Error(Errc::Db, std::move(d));
}

Result<Db> Db::open(const std::string& path, int busy_timeout_ms) {
  sqlite3* raw = nullptr;
  // NOMUTEX: the owner (MetaDb) serializes every use of the connection.
  int rc = sqlite3_open_v2(path.c_str(), &raw,
                           SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, nullptr);
  Db db(raw);  // owns even a failed handle, which must be closed too
  if (rc != SQLITE_OK) return db.last_error("open " + path);
  sqlite3_extended_result_codes(raw, 1);
  sqlite3_busy_timeout(raw, busy_timeout_ms);
  // journal_mode returns a row; exec ignores it. WAL lets readers run during a
  // write; synchronous=FULL fsyncs the WAL at every commit, which is what makes
  // an acknowledged write survive power loss (NORMAL would only survive kill -9).
  OUTPOST_TRY(db.exec("PRAGMA journal_mode=WAL"));
  OUTPOST_TRY(db.exec("PRAGMA synchronous=FULL"));
  OUTPOST_TRY(db.exec("PRAGMA foreign_keys=ON"));
  // Lookups must not slow down as the store grows (docs/architecture.md has
  // the numbers). At 100,000 tags meta.db is 100-200 MB, far past SQLite's
  // ~2 MB page cache, so B-tree pages were copied in with a pread each.
  // - no mmap_size: mapping meta.db measured ~30 % faster lookups, but an
  //   I/O error while reading a mapped page (a failing SD card or eMMC, the
  //   edge's usual disk) kills the daemon with SIGBUS instead of failing one
  //   request, and every touched page counts in the process's RSS. The
  //   statement cache (above) is most of the gain; reads stay pread(2).
  // - cache_size stays at SQLite's default (~2 MB): a 64 MiB private cache
  //   measured no faster for tag lookups and slower for blob lookups, with
  //   and without mmap; it is a second, unreclaimable copy of pages the
  //   kernel already caches.
  // - temp_store=MEMORY: sorts and temporary indexes never touch the disk.
  OUTPOST_TRY(db.exec("PRAGMA temp_store=MEMORY"));
  auto mode = db.prepare("PRAGMA journal_mode");
  if (!mode) return std::move(mode).error();
  auto row = mode->step();
  if (!row) return std::move(row).error();
  if (!*row || mode->col_text(0) != "wal") return Error(Errc::Db, "sqlite: cannot enable WAL on " + path);
  return db;
}

Status Db::exec(std::string_view sql) {
  std::string s(sql);
  char* msg = nullptr;
  int rc = sqlite3_exec(db_, s.c_str(), nullptr, nullptr, &msg);
  if (rc == SQLITE_OK) return {};
  std::string d = "sqlite exec: ";
  d += msg != nullptr ? msg : sqlite3_errstr(rc);
  sqlite3_free(msg);
  return Error(Errc::Db, std::move(d));
}

Result<Stmt> Db::prepare(std::string_view sql) {
  bool known = false;
  if (cache_) {
    auto it = cache_->entries.find(sql);
    known = it != cache_->entries.end();
    if (known && !it->second.in_use) {
      it->second.in_use = true;
      return Stmt(db_, it->second.stmt, cache_, &it->second);
    }
  }
  sqlite3_stmt* s = nullptr;
  int rc = sqlite3_prepare_v2(db_, sql.data(), static_cast<int>(sql.size()), &s, nullptr);
  if (rc != SQLITE_OK) return last_error("prepare [" + std::string(sql) + "]");
  // A second user of a statement that is in use gets its own, finalized
  // after use; so does text with no statement in it (s is null then).
  if (known || s == nullptr || !cache_ || cache_->entries.size() >= kMaxCachedStmts)
    return Stmt(db_, s, nullptr, nullptr);
  auto pos = cache_->entries.emplace(std::string(sql), CachedStmt{s, true}).first;
  return Stmt(db_, s, cache_, &pos->second);
}

Result<int64_t> Db::user_version() {
  auto st = prepare("PRAGMA user_version");
  if (!st) return std::move(st).error();
  auto row = st->step();
  if (!row) return std::move(row).error();
  return *row ? st->col_int(0) : int64_t{0};
}

Status Db::migrate(std::span<const std::string_view> steps) {
  auto v = user_version();
  if (!v) return std::move(v).error();
  const auto have = static_cast<size_t>(*v);
  if (have > steps.size())
    return Error(Errc::Db, "database schema version " + std::to_string(have) +
                               " is newer than this build knows (" + std::to_string(steps.size()) + ")");
  for (size_t i = have; i < steps.size(); ++i) {
    auto txn = Txn::begin(*this);
    if (!txn) return std::move(txn).error();
    OUTPOST_TRY(exec(steps[i]));
    // PRAGMA takes no bound parameters; the value is our own integer.
    OUTPOST_TRY(exec("PRAGMA user_version=" + std::to_string(i + 1)));
    OUTPOST_TRY(txn->commit());
  }
  return {};
}

// ---- Txn --------------------------------------------------------------------

Result<Txn> Txn::begin(Db& db) {
  OUTPOST_TRY(db.exec("BEGIN IMMEDIATE"));
  return Txn(&db);
}

Txn::~Txn() {
  if (db_ != nullptr) (void)db_->exec("ROLLBACK");
}

Status Txn::commit() {
  Db* db = std::exchange(db_, nullptr);
  auto st = db->exec("COMMIT");
  // A failed COMMIT (e.g. SQLITE_BUSY, I/O) leaves the transaction open:
  // roll it back so the connection is usable and nothing half-applies.
  if (!st) (void)db->exec("ROLLBACK");
  return st;
}

}  // namespace outpost::store::sql
