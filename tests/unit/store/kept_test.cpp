// Kept tags (sync.keep pins, schema v3): pin_tag/kept_tag/count_kept, the
// is_pinned closure (index -> children -> blobs, referrers and their
// blobs), a tag deleted locally pins nothing, GC keeps pinned content, and
// a v2 store upgrades in place.
#include <catch2/catch.hpp>

#include "store/meta_schema.hpp"
#include "store/sqlite.hpp"
#include "store/store.hpp"
#include "store_fixture.hpp"

using namespace outpost;
using namespace outpost::store;

namespace {

constexpr const char* kManifestType = "application/vnd.oci.image.manifest.v1+json";
constexpr const char* kIndexType = "application/vnd.oci.image.index.v1+json";

Digest blob(Store& st, std::string_view repo, const std::string& bytes) {
  const Digest d = test::digest_of(bytes);
  REQUIRE(st.put_blob(repo, d, bytes, Origin::Cached).ok());
  return d;
}

/// A manifest whose bytes are `note` (the store does not parse them).
Digest manifest(Store& st, std::string_view repo, const std::string& note, const char* type,
                std::vector<Digest> refs, std::optional<Digest> subject = std::nullopt,
                std::optional<std::string> tag = std::nullopt) {
  ManifestPut m;
  m.repo = std::string(repo);
  m.digest = test::digest_of(note);
  m.media_type = type;
  for (auto& r : refs) m.refs.push_back({r, true});
  m.subject = subject;
  m.tag = tag;
  m.origin = Origin::Cached;
  auto info = st.put_manifest(m, note);
  REQUIRE(info.ok());
  return info->digest;
}

}  // namespace

TEST_CASE("kept tags: pins follow the local tag and cover everything under it", "[store][kept]") {
  test::Sandbox sb;
  test::TestClock clock;
  auto opened = Store::open(sb.root(), test::options(clock));
  REQUIRE(opened.ok());
  Store& st = **opened;

  const Digest layer = blob(st, "app", "layer"), config = blob(st, "app", "config");
  const Digest child = manifest(st, "app", "child", kManifestType, {config, layer});
  const Digest index = manifest(st, "app", "index", kIndexType, {child}, std::nullopt, "v1");
  const Digest sig_blob = blob(st, "app", "signature");
  const Digest sig = manifest(st, "app", "sig", kManifestType, {sig_blob}, child);
  const Digest loose = blob(st, "app", "unrelated");
  const Digest other = manifest(st, "app", "other", kManifestType, {loose}, std::nullopt, "dev");

  CHECK_FALSE(*st.is_pinned("app", index));
  REQUIRE(st.pin_tag("app", "v1", index, "app:v*").ok());
  CHECK(*st.count_kept("app:v*") == 1);
  CHECK(*st.count_kept("other") == 0);
  auto k = st.kept_tag("app", "v1");
  REQUIRE(k.ok());
  REQUIRE(k->has_value());
  CHECK((*k)->digest == index);
  CHECK((*k)->pattern == "app:v*");
  CHECK_FALSE(st.kept_tag("app", "dev")->has_value());

  for (const Digest& d : {index, child, config, layer, sig, sig_blob}) CHECK(*st.is_pinned("app", d));
  for (const Digest& d : {other, loose}) CHECK_FALSE(*st.is_pinned("app", d));
  CHECK_FALSE(*st.is_pinned("elsewhere", layer));

  // GC with no grace keeps all of it (referenced), and the pin too.
  GcOptions gc;
  gc.grace_ms = 0;
  clock.advance_ms(60'000);
  REQUIRE(st.gc(gc).ok());
  for (const Digest& d : {config, layer, sig_blob}) CHECK(st.stat_blob("app", d).ok());

  // Re-pinning upserts; the pin holds what the local tag names NOW.
  REQUIRE(st.pin_tag("app", "v1", other, "app:*").ok());
  CHECK(*st.count_kept("app:v*") == 0);
  CHECK(*st.count_kept("app:*") == 1);
  CHECK(*st.is_pinned("app", layer));  // the local tag still names the index
  REQUIRE(st.delete_tag("app", "v1").ok());
  CHECK_FALSE(*st.is_pinned("app", index));  // the operator removed it: nothing pinned
  CHECK_FALSE(*st.is_pinned("app", layer));
  CHECK(*st.count_kept("app:*") == 0);

  CHECK(st.pin_tag("app", "bad tag", index, "x").error().code == Errc::TagInvalid);
  CHECK(st.pin_tag("Bad/Repo", "v1", index, "x").error().code == Errc::NameInvalid);
}

TEST_CASE("kept tags: a store made before the pin table upgrades in place", "[store][kept]") {
  test::Sandbox sb;
  test::TestClock clock;
  Digest m;
  {
    auto s = Store::open(sb.root(), test::options(clock));
    REQUIRE(s.ok());
    m = manifest(**s, "app", "old", kManifestType, {blob(**s, "app", "l")}, std::nullopt, "v1");
  }
  {
    auto db = sql::Db::open(sb.root() + "/meta.db");
    REQUIRE(db.ok());
    // Undo v4 (issue #18) too, so the upgrade re-applies v3 and v4.
    REQUIRE(db->exec("DROP INDEX blobs_bad; ALTER TABLE blobs DROP COLUMN bad; ALTER TABLE blobs DROP COLUMN accessed;"
                     " ALTER TABLE uploads DROP COLUMN internal; "
                     "DROP TABLE kept_tags; PRAGMA user_version = 2;").ok());
  }
  auto s = Store::open(sb.root(), test::options(clock));
  REQUIRE(s.ok());
  {
    auto db = sql::Db::open(sb.root() + "/meta.db");
    REQUIRE(db.ok());
    CHECK(*db->user_version() == static_cast<int64_t>(meta_migrations().size()));
  }
  CHECK((*s)->get_tag("app", "v1").ok());
  REQUIRE((*s)->pin_tag("app", "v1", m, "app").ok());
  CHECK(*(*s)->is_pinned("app", m));
}
