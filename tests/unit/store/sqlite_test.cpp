// sql::Db / Stmt / Txn / migrate: pragmas, rollback, user_version steps.
#include <catch2/catch.hpp>

#include "store/sqlite.hpp"
#include "store_fixture.hpp"

using namespace outpost;
using namespace outpost::store;

namespace {
int64_t scalar(sql::Db& db, const char* q) {
  auto st = db.prepare(q);
  REQUIRE(st.ok());
  auto row = st->step();
  REQUIRE(row.ok());
  REQUIRE(*row);
  return st->col_int(0);
}
}  // namespace

TEST_CASE("sqlite: open sets WAL, synchronous=FULL, foreign keys", "[store]") {
  test::Sandbox sb;
  auto db = sql::Db::open(sb.dir() + "/t.db");
  REQUIRE(db.ok());
  auto mode = db->prepare("PRAGMA journal_mode");
  REQUIRE(mode.ok());
  REQUIRE(*mode->step());
  CHECK(mode->col_text(0) == "wal");
  CHECK(scalar(*db, "PRAGMA synchronous") == 2);  // FULL
  CHECK(scalar(*db, "PRAGMA foreign_keys") == 1);
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
