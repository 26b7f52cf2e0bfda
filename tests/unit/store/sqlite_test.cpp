// sql::Db / Stmt / Txn / migrate: pragmas, rollback, user_version steps.
#include <catch2/catch.hpp>
#include <malloc.h>

#include <chrono>
#include <cstdio>
#include <ctime>
#include <fstream>
#include <optional>
#include <utility>
#include <vector>

#include "store/sqlite.hpp"
#include "store_fixture.hpp"

using namespace outpost;
using namespace outpost::store;

namespace {
// The statement standing on its first row, which must exist.
sql::Stmt first_row(sql::Db& db, std::string_view q) {
  auto st = db.prepare(q);
  REQUIRE(st.ok());
  auto row = st->step();
  REQUIRE(row.ok());
  REQUIRE(*row);
  return std::move(*st);
}

int64_t scalar(sql::Db& db, std::string_view q) { return first_row(db, q).col_int(0); }
}  // namespace

TEST_CASE("sqlite: open sets WAL, synchronous=FULL, foreign keys, no mmap, in-memory temp store", "[store]") {
  test::Sandbox sb;
  auto db = sql::Db::open(sb.dir() + "/t.db");
  REQUIRE(db.ok());
  CHECK(first_row(*db, "PRAGMA journal_mode").col_text(0) == "wal");
  CHECK(scalar(*db, "PRAGMA synchronous") == 2);  // FULL
  CHECK(scalar(*db, "PRAGMA foreign_keys") == 1);
  CHECK(scalar(*db, "PRAGMA mmap_size") == 0);  // an I/O error must be an error, not SIGBUS
  CHECK(scalar(*db, "PRAGMA temp_store") == 2);  // MEMORY
}

TEST_CASE("sqlite: Txn rolls back unless committed", "[store]") {
  test::Sandbox sb;
  auto db = sql::Db::open(sb.dir() + "/t.db");
  REQUIRE(db.ok());
  REQUIRE(db->exec("CREATE TABLE t(x INTEGER)").ok());
  {
    auto txn = sql::Txn::begin(*db);
    REQUIRE(txn.ok());
    REQUIRE(db->exec("INSERT INTO t VALUES(1)").ok());
  }  // dropped: rollback
  CHECK(scalar(*db, "SELECT count(*) FROM t") == 0);
  {
    auto txn = sql::Txn::begin(*db);
    REQUIRE(txn.ok());
    REQUIRE(db->exec("INSERT INTO t VALUES(2)").ok());
    REQUIRE(txn->commit().ok());
  }
  CHECK(scalar(*db, "SELECT count(*) FROM t") == 1);
}

TEST_CASE("sqlite: statements bind and read values; errors are values", "[store]") {
  test::Sandbox sb;
  auto db = sql::Db::open(sb.dir() + "/t.db");
  REQUIRE(db.ok());
  REQUIRE(db->exec("CREATE TABLE t(a INTEGER, b TEXT)").ok());
  auto ins = db->prepare("INSERT INTO t VALUES(?1, ?2)");
  REQUIRE(ins.ok());
  ins->bind(1, int64_t{42}).bind(2, std::string_view("x\0y", 3));
  REQUIRE(ins->run().ok());
  ins->reset();
  ins->bind(1, int64_t{7}).bind(2, std::optional<std::string>());
  REQUIRE(ins->run().ok());

  auto sel = db->prepare("SELECT a, b FROM t ORDER BY a");
  REQUIRE(sel.ok());
  REQUIRE(*sel->step());
  CHECK(sel->col_int(0) == 7);
  CHECK(sel->col_null(1));
  CHECK_FALSE(sel->col_opt_text(1).has_value());
  REQUIRE(*sel->step());
  CHECK(test::same_bytes(sel->col_text(1), std::string("x\0y", 3)));
  CHECK_FALSE(*sel->step());

  auto bad = db->prepare("SELEC nonsense");
  REQUIRE_FALSE(bad.ok());
  CHECK(bad.error().code == Errc::Db);

  auto oob = db->prepare("SELECT ?1");
  REQUIRE(oob.ok());
  oob->bind(5, int64_t{1});  // out of range: reported by step()
  auto r = oob->step();
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().code == Errc::Db);
}

TEST_CASE("sqlite: migrate applies each step once and refuses a newer schema", "[store]") {
  test::Sandbox sb;
  const std::string path = sb.dir() + "/t.db";
  constexpr std::string_view v1[] = {"CREATE TABLE a(x)"};
  constexpr std::string_view v2[] = {"CREATE TABLE a(x)", "CREATE TABLE b(y)"};
  {
    auto db = sql::Db::open(path);
    REQUIRE(db.ok());
    REQUIRE(db->migrate(v1).ok());
    CHECK(*db->user_version() == 1);
    REQUIRE(db->migrate(v1).ok());  // idempotent
    REQUIRE(db->migrate(v2).ok());
    CHECK(*db->user_version() == 2);
    CHECK(scalar(*db, "SELECT count(*) FROM sqlite_master WHERE name IN ('a','b')") == 2);
  }
  {
    auto db = sql::Db::open(path);
    REQUIRE(db.ok());
    auto st = db->migrate(v1);
    REQUIRE_FALSE(st.ok());
    CHECK(st.error().code == Errc::Db);
  }
  {
    constexpr std::string_view broken[] = {"CREATE TABLE a(x)", "CREATE TABLE b(y)", "CREATE TABLE c(z); BOGUS"};
    auto db = sql::Db::open(path);
    REQUIRE(db.ok());
    REQUIRE_FALSE(db->migrate(broken).ok());
    CHECK(*db->user_version() == 2);  // the failed step rolled back whole
    CHECK(scalar(*db, "SELECT count(*) FROM sqlite_master WHERE name = 'c'") == 0);
  }
}

// ---- statement cache -------------------------------------------------------------

namespace {
// Statements the connection holds compiled (idle in the cache or in use).
int compiled_statements(sql::Db& db) {
  int n = 0;
  for (sqlite3_stmt* s = sqlite3_next_stmt(db.raw(), nullptr); s != nullptr; s = sqlite3_next_stmt(db.raw(), s)) ++n;
  return n;
}
}  // namespace

TEST_CASE("sqlite: a statement is compiled once and reused without old bindings", "[store]") {
  test::Sandbox sb;
  auto db = sql::Db::open(sb.dir() + "/t.db");
  REQUIRE(db.ok());
  const int before = compiled_statements(*db);
  for (int64_t i = 1; i <= 3; ++i) {
    auto st = db->prepare("SELECT ?1");
    REQUIRE(st.ok());
    st->bind(1, i);
    REQUIRE(*st->step());
    CHECK(st->col_int(0) == i);
  }
  CHECK(compiled_statements(*db) == before + 1);
  auto st = db->prepare("SELECT ?1");
  REQUIRE(st.ok());
  REQUIRE(*st->step());
  CHECK(st->col_null(0));  // the last caller's 3 is gone
}

TEST_CASE("sqlite: the same statement used twice at once gives independent cursors", "[store]") {
  test::Sandbox sb;
  auto db = sql::Db::open(sb.dir() + "/t.db");
  REQUIRE(db.ok());
  REQUIRE(db->exec("CREATE TABLE t(x INTEGER); INSERT INTO t VALUES(1), (2), (3)").ok());
  constexpr std::string_view q = "SELECT x FROM t ORDER BY x";
  auto a = db->prepare(q);
  auto b = db->prepare(q);
  REQUIRE((a.ok() && b.ok()));
  REQUIRE(*a->step());
  REQUIRE(*b->step());
  REQUIRE(*b->step());
  CHECK(b->col_int(0) == 2);
  REQUIRE(*a->step());
  CHECK(a->col_int(0) == 2);
  REQUIRE(*b->step());
  CHECK(b->col_int(0) == 3);
}

TEST_CASE("sqlite: a statement given back mid-result holds no snapshot (the WAL can be truncated)", "[store]") {
  test::Sandbox sb;
  const std::string path = sb.dir() + "/t.db";
  auto db = sql::Db::open(path);
  REQUIRE(db.ok());
  REQUIRE(db->exec("CREATE TABLE t(x INTEGER); INSERT INTO t VALUES(1), (2)").ok());
  {
    auto st = db->prepare("SELECT x FROM t ORDER BY x");
    REQUIRE(st.ok());
    REQUIRE(*st->step());  // one row read, one left: a read transaction is open
  }
  auto other = sql::Db::open(path, /*busy_timeout_ms=*/50);
  REQUIRE(other.ok());
  REQUIRE(other->exec("INSERT INTO t VALUES(3)").ok());
  // Its first column, busy, is 0: no reader pins the WAL, so it is
  // checkpointed and truncated.
  CHECK(scalar(*other, "PRAGMA wal_checkpoint(TRUNCATE)") == 0);
  CHECK(scalar(*db, "SELECT count(*) FROM t") == 3);
}

TEST_CASE("sqlite: a cached statement follows a schema change", "[store]") {
  test::Sandbox sb;
  auto db = sql::Db::open(sb.dir() + "/t.db");
  REQUIRE(db.ok());
  REQUIRE(db->exec("CREATE TABLE t(a INTEGER); INSERT INTO t VALUES(1)").ok());
  constexpr std::string_view q = "SELECT * FROM t";
  CHECK(scalar(*db, q) == 1);
  REQUIRE(db->exec("ALTER TABLE t ADD COLUMN b TEXT DEFAULT 'new'").ok());
  CHECK(first_row(*db, q).col_text(1) == "new");
}

TEST_CASE("sqlite: a statement may outlive its connection; the cache is bounded", "[store]") {
  test::Sandbox sb;
  std::optional<sql::Stmt> kept;
  {
    auto db = sql::Db::open(sb.dir() + "/t.db");
    REQUIRE(db.ok());
    for (int i = 0; i < 300; ++i) {
      auto st = db->prepare("SELECT " + std::to_string(i));
      REQUIRE(st.ok());
      REQUIRE(*st->step());
      CHECK(st->col_int(0) == i);
    }
    CHECK(compiled_statements(*db) <= 128);
    auto st = db->prepare("SELECT 7");
    REQUIRE(st.ok());
    kept.emplace(std::move(*st));
    REQUIRE(*kept->step());
    CHECK(kept->col_int(0) == 7);
  }  // the connection closes while `kept` still holds a statement of it
  kept.reset();  // finalized here, closing the connection; ASan flags any use of the closed cache
}

// ---- query plans of the hot lookups -------------------------------------------------

namespace {

// Records the SQL of every statement run on connections opened while it is
// alive: sqlite3_auto_extension reaches the connection MetaDb opens inside
// Store::open, so the plans checked below are those of the store's real
// queries, not copies of them.
class SqlRecorder {
 public:
  SqlRecorder() {
    active_ = this;
    sqlite3_auto_extension(reinterpret_cast<void (*)(void)>(&SqlRecorder::attach));
  }
  ~SqlRecorder() {
    sqlite3_cancel_auto_extension(reinterpret_cast<void (*)(void)>(&SqlRecorder::attach));
    active_ = nullptr;
  }
  SqlRecorder(const SqlRecorder&) = delete;
  SqlRecorder& operator=(const SqlRecorder&) = delete;
  std::vector<std::string> take() { return std::exchange(sql_, {}); }

 private:
  static int attach(sqlite3* db, char**, const void*) {
    sqlite3_trace_v2(db, SQLITE_TRACE_STMT, &SqlRecorder::on_trace, nullptr);
    return SQLITE_OK;
  }
  static int on_trace(unsigned, void*, void* stmt, void*) {
    if (active_ != nullptr) active_->sql_.emplace_back(sqlite3_sql(static_cast<sqlite3_stmt*>(stmt)));
    return 0;
  }
  static inline SqlRecorder* active_ = nullptr;
  std::vector<std::string> sql_;
};

// EXPLAIN QUERY PLAN rows (the `detail` column) of `sql` on `db`.
std::vector<std::string> plan_of(sql::Db& db, const std::string& sql) {
  auto st = db.prepare("EXPLAIN QUERY PLAN " + sql);
  REQUIRE(st.ok());
  std::vector<std::string> out;
  for (;;) {
    auto row = st->step();
    REQUIRE(row.ok());
    if (!*row) break;
    out.push_back(st->col_text(3));
  }
  return out;
}

}  // namespace

TEST_CASE("sqlite: hot lookups search by index, never scan a table", "[store]") {
  test::Sandbox sb;
  SqlRecorder rec;
  auto st = Store::open(sb.root());
  REQUIRE(st.ok());
  Store& store = **st;
  const std::string layer = "layer bytes";
  const Digest layer_d = Digest::sha256_of(layer);
  REQUIRE(store.put_blob("app", layer_d, layer).ok());
  const std::string man = R"({"schemaVersion":2})";
  ManifestPut m;
  m.repo = "app";
  m.digest = Digest::sha256_of(man);
  m.media_type = "application/vnd.oci.image.manifest.v1+json";
  m.refs.push_back(ManifestRef{layer_d, true});
  m.tag = "v1";
  REQUIRE(store.put_manifest(m, man).ok());
  (void)rec.take();

  // Each lookup a pull makes, and the SQL it ran.
  std::vector<std::pair<std::string, std::vector<std::string>>> lookups;
  auto mi = store.resolve_manifest("app", "v1");  // tag -> digest -> manifest
  REQUIRE(mi.ok());
  CHECK(mi->digest == m.digest);
  lookups.emplace_back("manifest by tag", rec.take());
  REQUIRE(store.get_manifest("app", m.digest).ok());
  lookups.emplace_back("manifest by digest", rec.take());
  auto size = store.stat_blob("app", layer_d);
  REQUIRE(size.ok());
  CHECK(*size == layer.size());
  lookups.emplace_back("blob by digest", rec.take());
  auto any = store.meta().blob_size(layer_d);
  REQUIRE(any.ok());
  lookups.emplace_back("blob by digest, any repository", rec.take());

  // A second connection has the same schema, so the same plans.
  auto db = sql::Db::open(sb.root() + "/meta.db");
  REQUIRE(db.ok());
  for (const auto& [what, statements] : lookups) {
    INFO(what);
    CHECK_FALSE(statements.empty());
    for (const auto& q : statements) {
      INFO(q);
      for (const auto& step : plan_of(*db, q)) {
        INFO(step);
        // "SCAN <table>" reads every row; SEARCH ... USING (COVERING) INDEX or
        // PRIMARY KEY is a B-tree descent. Subquery headers name no table.
        const bool searches = step.rfind("SEARCH ", 0) == 0 &&
                              (step.find(" INDEX ") != std::string::npos ||
                               step.find(" PRIMARY KEY ") != std::string::npos);
        const bool header = step.find("SUBQUERY") != std::string::npos;
        CHECK((searches || header));
      }
    }
  }
}

// ---- benchmark (hidden) ---------------------------------------------------------
//
// Run with: build/tests/unit/store/store_test "[store-lookup-speed]"
// Fills meta.db directly (one transaction; the store API would fsync per
// manifest) with `tags` image manifests shaped like real pushes (a config and
// two layers each, linked, referenced and tagged), then measures, through the
// Store API: restart-to-ready (Store::open on the filled root), tag ->
// manifest lookups and repo-scoped blob stats at random (a working set as
// large as the store). Every lookup's answer is checked.
namespace {

using Clk = std::chrono::steady_clock;
double secs_since(Clk::time_point t0) { return std::chrono::duration<double>(Clk::now() - t0).count(); }
// CPU seconds of this process: on a loaded shared machine wall time also
// counts waiting for a core, so both are reported.
double cpu_since(std::clock_t c0) { return static_cast<double>(std::clock() - c0) / CLOCKS_PER_SEC; }

struct Rate {
  double wall = 0;  // per second
  double cpu = 0;   // per CPU second
};

struct Filled {
  std::vector<Digest> manifests;  // manifest i is tag "v<i % per_repo>" of repo i / per_repo
  std::vector<Digest> layers;     // the first layer of manifest i
  size_t per_repo = 0;
};

std::string repo_name(size_t r) { return "bench/r" + std::to_string(r); }

Filled fill(const std::string& db_path, size_t tags) {
  Filled f;
  f.per_repo = std::min<size_t>(tags, 1000);
  auto db = sql::Db::open(db_path);
  REQUIRE(db.ok());
  auto txn = sql::Txn::begin(*db);
  REQUIRE(txn.ok());
  auto repo = db->prepare("INSERT INTO repositories(id, name, created) VALUES(?1, ?2, 1)");
  auto blob = db->prepare("INSERT INTO blobs(digest, size, created, touched) VALUES(?1, ?2, 1, 1)");
  auto link = db->prepare("INSERT INTO repo_blobs(repo_id, digest, origin, created) VALUES(?1, ?2, 'pushed', 1)");
  auto man = db->prepare(
      "INSERT INTO manifests(id, repo_id, digest, media_type, size, origin, created)"
      " VALUES(?1, ?2, ?3, 'application/vnd.oci.image.manifest.v1+json', 1234, 'pushed', 1)");
  auto ref = db->prepare("INSERT INTO manifest_refs(manifest_id, digest) VALUES(?1, ?2)");
  auto tag = db->prepare("INSERT INTO tags(repo_id, name, digest, origin, updated) VALUES(?1, ?2, ?3, 'pushed', 1)");
  REQUIRE((repo.ok() && blob.ok() && link.ok() && man.ok() && ref.ok() && tag.ok()));
  size_t failed = 0;  // counted, not REQUIREd: a million assertions would dominate the fill
  auto run = [&failed](sql::Stmt& st) {
    if (!st.run().ok()) ++failed;
    st.reset();
  };
  for (size_t i = 0; i < tags; ++i) {
    const auto repo_id = static_cast<int64_t>(i / f.per_repo + 1);
    if (i % f.per_repo == 0) {
      repo->bind(1, repo_id).bind(2, repo_name(i / f.per_repo));
      run(*repo);
    }
    const std::string n = std::to_string(i);
    const Digest parts[] = {Digest::sha256_of("config" + n), Digest::sha256_of("layer-a" + n),
                            Digest::sha256_of("layer-b" + n)};
    const Digest m = Digest::sha256_of("manifest" + n);
    for (const auto& d : parts) {
      blob->bind(1, d.str()).bind(2, int64_t{1} << 20);
      run(*blob);
      link->bind(1, repo_id).bind(2, d.str());
      run(*link);
    }
    blob->bind(1, m.str()).bind(2, int64_t{1234});
    run(*blob);
    man->bind(1, static_cast<int64_t>(i + 1)).bind(2, repo_id).bind(3, m.str());
    run(*man);
    for (const auto& d : parts) {
      ref->bind(1, static_cast<int64_t>(i + 1)).bind(2, d.str());
      run(*ref);
    }
    tag->bind(1, repo_id).bind(2, "v" + std::to_string(i % f.per_repo)).bind(3, m.str());
    run(*tag);
    f.manifests.push_back(m);
    f.layers.push_back(parts[1]);
  }
  REQUIRE(failed == 0);
  REQUIRE(txn->commit().ok());
  return f;
}

// Resident memory of this process in kB (anonymous + file-backed, which
// includes mapped meta.db pages), from /proc/self/status.
long rss_kb() {
  std::ifstream in("/proc/self/status");
  std::string line;
  long total = 0;
  while (std::getline(in, line)) {
    if (line.rfind("RssAnon:", 0) == 0 || line.rfind("RssFile:", 0) == 0) total += std::stol(line.substr(8));
  }
  return total;
}

void bench_lookups(size_t tags) {
  test::Sandbox sb;
  { REQUIRE(Store::open(sb.root()).ok()); }  // creates the root and the schema
  const std::string db_path = sb.root() + "/meta.db";
  const auto t_fill = Clk::now();
  const Filled f = fill(db_path, tags);
  const double fill_s = secs_since(t_fill);
  std::ifstream file(db_path, std::ios::binary | std::ios::ate);
  const auto db_mb = static_cast<double>(file.tellg()) / 1e6;

  ::malloc_trim(0);  // the fill's freed page cache must not hide the growth below
  const long rss0 = rss_kb();
  const auto t_open = Clk::now();
  const std::clock_t c_open = std::clock();
  auto st = Store::open(sb.root());
  const double open_s = secs_since(t_open);
  const double open_cpu = cpu_since(c_open);
  REQUIRE(st.ok());
  Store& store = **st;

  constexpr size_t kLookups = 20000;
  uint64_t x = 88172645463325252ull;  // xorshift: the same random tags every run
  auto next = [&x, tags] {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return static_cast<size_t>(x % tags);
  };
  // Pass 0 starts right after open (cold cache); the last one shows the
  // steady state once the working set has been touched.
  Rate rate[5];
  for (Rate& r : rate) {
    size_t wrong = 0;
    const auto t0 = Clk::now();
    const std::clock_t c0 = std::clock();
    for (size_t k = 0; k < kLookups; ++k) {
      const size_t i = next();
      auto mi = store.resolve_manifest(repo_name(i / f.per_repo), "v" + std::to_string(i % f.per_repo));
      if (!mi || !(mi->digest == f.manifests[i])) ++wrong;
    }
    r = {kLookups / secs_since(t0), kLookups / cpu_since(c0)};
    CHECK(wrong == 0);
  }
  size_t wrong = 0;
  const auto t_blob = Clk::now();
  const std::clock_t c_blob = std::clock();
  for (size_t k = 0; k < kLookups; ++k) {
    const size_t i = next();
    auto sz = store.stat_blob(repo_name(i / f.per_repo), f.layers[i]);
    if (!sz || *sz != uint64_t{1} << 20) ++wrong;
  }
  const Rate blob{kLookups / secs_since(t_blob), kLookups / cpu_since(c_blob)};
  CHECK(wrong == 0);
  std::printf("tags=%zu meta.db=%.1f MB (filled in %.1f s)\n  open: %.2f ms wall, %.2f ms CPU\n"
              "  tag->manifest, %zu at random: first pass %.0f/s wall, %.0f/CPU s; fifth pass %.0f/s, %.0f/CPU s\n"
              "  blob stat: %.0f/s wall, %.0f/CPU s\n  RSS growth from open to here: %ld kB\n",
              tags, db_mb, fill_s, open_s * 1e3, open_cpu * 1e3, kLookups, rate[0].wall, rate[0].cpu,
              rate[4].wall, rate[4].cpu, blob.wall, blob.cpu, rss_kb() - rss0);
}

}  // namespace

TEST_CASE("store lookup rate and open time at 100 and 100,000 tags", "[.][store-lookup-speed]") {
  bench_lookups(100);
  bench_lookups(100000);
}
