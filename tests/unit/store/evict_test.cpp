// Cache management in the store (issue #18): LRU eviction of cached
// content within a quota, never of pushed, owed or kept content, an open
// reader surviving eviction, check marking corrupt blobs unreadable (and a
// verified re-publish making them good), and restart sweeps of sessions no
// client holds and of files without rows.
#include <catch2/catch.hpp>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>

#include "store/store.hpp"
#include "store_fixture.hpp"

using namespace outpost;
using namespace outpost::store;

namespace {

constexpr const char* kManifestType = "application/vnd.oci.image.manifest.v1+json";

/// Distinct bytes per (repo, tag).
std::string layer_of(const std::string& repo, const std::string& tag, size_t size) {
  return std::string(size, 'x') + repo + ":" + tag;
}

struct Image {
  Digest layer;
  Digest manifest;
};

/// A manifest naming one layer of `size` bytes, tagged `tag`.
Image image(Store& st, const std::string& repo, const std::string& tag, size_t size, Origin origin) {
  const std::string layer_bytes = layer_of(repo, tag, size);
  const Digest layer = test::digest_of(layer_bytes);
  REQUIRE(st.put_blob(repo, layer, layer_bytes, origin).ok());
  ManifestPut m;
  m.repo = repo;
  const std::string note = "manifest of " + repo + ":" + tag;
  m.digest = test::digest_of(note);
  m.media_type = kManifestType;
  m.refs.push_back({layer, true});
  m.tag = tag;
  m.origin = origin;
  REQUIRE(st.put_manifest(m, note).ok());
  return Image{layer, m.digest};
}

EvictOptions quota(uint64_t bytes) {
  EvictOptions o;
  o.max_size.bytes = bytes;
  o.grace_ms = 0;
  return o;
}

bool readable(Store& st, const std::string& repo, const Digest& d) { return st.stat_blob(repo, d).ok(); }

}  // namespace

TEST_CASE("evict: least recently used cached image goes first, within the quota", "[store][evict]") {
  test::Sandbox sb;
  test::TestClock clock;
  auto opened = Store::open(sb.root(), test::options(clock));
  REQUIRE(opened.ok());
  Store& st = **opened;

  const Image a = image(st, "lib/a", "v1", 4000, Origin::Cached);
  clock.advance_ms(1000);
  const Image b = image(st, "lib/b", "v1", 4000, Origin::Cached);
  clock.advance_ms(1000);
  const Image c = image(st, "lib/c", "v1", 4000, Origin::Cached);
  clock.advance_ms(1000);
  // `a` is read again now: the most recent of the three.
  REQUIRE(st.record_access({{a.manifest, clock.fn()()}, {a.layer, clock.fn()()}}).ok());
  clock.advance_ms(1000);

  const uint64_t gen = st.blob_generation();
  auto usage = st.storage_usage();
  REQUIRE(usage.ok());
  CHECK(usage->cached == usage->total);
  auto totals = st.meta().storage_usage(false);  // what the limits read: no breakdown
  REQUIRE(totals.ok());
  CHECK(totals->total == usage->total);
  CHECK(totals->blobs == usage->blobs);
  CHECK(totals->cached == 0);
  // Room for two images: one must go, and it is b (least recently used).
  auto r = st.evict(quota(usage->total - 1000));
  REQUIRE(r.ok());
  CHECK(r->manifests_removed == 1);
  CHECK(r->blobs_removed == 2);
  CHECK(r->freed >= 4000);
  CHECK_FALSE(r->short_of_target);
  CHECK(st.blob_generation() != gen);
  CHECK(readable(st, "lib/a", a.layer));
  CHECK_FALSE(readable(st, "lib/b", b.layer));
  CHECK_FALSE(st.get_tag("lib/b", "v1").ok());
  CHECK(readable(st, "lib/c", c.layer));
  CHECK(st.get_tag("lib/a", "v1").ok());
  CHECK_FALSE(std::filesystem::exists(st.layout().blob_file(b.layer)));

  // Within the quota: nothing more goes, nothing bumps.
  const uint64_t gen2 = st.blob_generation();
  auto again = st.evict(quota(usage->total - 1000));
  REQUIRE(again.ok());
  CHECK(again->need == 0);
  CHECK(st.blob_generation() == gen2);
}

TEST_CASE("evict: pushed, owed and kept content survive any quota", "[store][evict]") {
  test::Sandbox sb;
  test::TestClock clock;
  StoreOptions so = test::options(clock);
  so.replay = true;  // pushed content is owed to the parent
  auto opened = Store::open(sb.root(), so);
  REQUIRE(opened.ok());
  Store& st = **opened;

  const Image pushed = image(st, "site/app", "v1", 3000, Origin::Pushed);
  const Image kept = image(st, "base/os", "v1", 3000, Origin::Cached);
  REQUIRE(st.pin_tag("base/os", "v1", kept.manifest, "base/*").ok());
  const Image cached = image(st, "lib/x", "v1", 3000, Origin::Cached);
  // The same layer cached elsewhere and pushed here stays for the push.
  REQUIRE(st.link_blob("lib/y", pushed.layer, Origin::Cached).ok());
  clock.advance_ms(10'000);

  auto usage = st.storage_usage();
  REQUIRE(usage.ok());
  CHECK(usage->pushed >= 3000);
  CHECK(usage->kept >= 3000);
  auto r = st.evict(quota(1));
  REQUIRE(r.ok());
  CHECK(r->short_of_target);
  CHECK_FALSE(readable(st, "lib/x", cached.layer));
  CHECK(readable(st, "site/app", pushed.layer));
  CHECK(st.get_tag("site/app", "v1").ok());
  CHECK(readable(st, "base/os", kept.layer));
  CHECK(st.get_tag("base/os", "v1").ok());
  CHECK(std::filesystem::exists(st.layout().blob_file(pushed.layer)));
}

TEST_CASE("evict: content used within the grace stays", "[store][evict]") {
  test::Sandbox sb;
  test::TestClock clock;
  auto opened = Store::open(sb.root(), test::options(clock));
  REQUIRE(opened.ok());
  Store& st = **opened;
  const Image a = image(st, "lib/a", "v1", 2000, Origin::Cached);
  EvictOptions o = quota(1);
  o.grace_ms = 60'000;
  auto r = st.evict(o);
  REQUIRE(r.ok());
  CHECK(r->freed == 0);
  CHECK(readable(st, "lib/a", a.layer));
}

TEST_CASE("evict: a reader holding the file open reads it whole after eviction", "[store][evict]") {
  test::Sandbox sb;
  test::TestClock clock;
  auto opened = Store::open(sb.root(), test::options(clock));
  REQUIRE(opened.ok());
  Store& st = **opened;
  const Image a = image(st, "lib/a", "v1", 100'000, Origin::Cached);
  auto open = st.open_blob("lib/a", a.layer);
  REQUIRE(open.ok());
  clock.advance_ms(10'000);
  auto r = st.evict(quota(1));
  REQUIRE(r.ok());
  REQUIRE_FALSE(std::filesystem::exists(st.layout().blob_file(a.layer)));
  std::string got(open->size, '\0');
  REQUIRE(::pread(open->fd.get(), got.data(), got.size(), 0) == static_cast<ssize_t>(got.size()));
  CHECK(test::digest_of(got) == a.layer);
}

TEST_CASE("check: a flipped byte is found, never served again, and a verified re-publish heals it",
          "[store][check]") {
  test::Sandbox sb;
  test::TestClock clock;
  auto opened = Store::open(sb.root(), test::options(clock));
  REQUIRE(opened.ok());
  Store& st = **opened;
  const Image a = image(st, "lib/a", "v1", 5000, Origin::Cached);
  const Image p = image(st, "site/p", "v1", 5000, Origin::Pushed);
  for (const Digest* d : {&a.layer, &p.layer}) {
    const std::string path = st.layout().blob_file(*d);
    REQUIRE(::chmod(path.c_str(), 0644) == 0);
    std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(10);
    f.put('Z');
  }
  const uint64_t gen = st.blob_generation();
  auto r = st.check(CheckOptions{});
  REQUIRE(r.ok());
  CHECK(r->corrupt == 2);
  CHECK(r->refetchable == 1);
  CHECK_FALSE(r->ok());
  CHECK(st.blob_generation() != gen);
  REQUIRE(r->problems.size() == 2);
  CHECK_FALSE(readable(st, "lib/a", a.layer));
  CHECK_FALSE(st.open_blob("site/p", p.layer).ok());
  CHECK(readable(st, "lib/a", a.manifest));  // the manifests are intact

  // --repair moves the files aside; the rows stay bad.
  CheckOptions rep;
  rep.repair = true;
  auto r2 = st.check(rep);
  REQUIRE(r2.ok());
  CHECK(r2->quarantined == 2);
  CHECK_FALSE(std::filesystem::exists(st.layout().blob_file(a.layer)));
  CHECK(std::filesystem::exists(sb.root() + "/quarantine/sha256-" + std::string(a.layer.hex())));

  // A refetch (a fill publishes verified bytes) makes it good again.
  const std::string bytes = layer_of("lib/a", "v1", 5000);
  REQUIRE(test::digest_of(bytes) == a.layer);
  REQUIRE(st.put_blob("lib/a", a.layer, bytes, Origin::Cached).ok());
  CHECK(readable(st, "lib/a", a.layer));
  auto r3 = st.check(CheckOptions{});
  REQUIRE(r3.ok());
  CHECK(r3->missing == 1);  // only the pushed one, still quarantined
  CHECK(r3->corrupt == 0);
}

TEST_CASE("open: sessions no client holds and files without rows are swept", "[store][gc]") {
  test::Sandbox sb;
  test::TestClock clock;
  std::string client_id, internal_id;
  const std::string rowless = "rowless bytes";
  const Digest rd = test::digest_of(rowless);
  {
    auto s = Store::open(sb.root(), test::options(clock));
    REQUIRE(s.ok());
    auto c = (*s)->start_upload("app");
    auto i = (*s)->start_upload("app", true);
    REQUIRE(c.ok());
    REQUIRE(i.ok());
    client_id = *c;
    internal_id = *i;
    REQUIRE((*s)->append_upload("app", *i, 0, "partial").ok());
    REQUIRE((*s)->flush_upload("app", *i).ok());
    // A verified file whose row never committed (kill between the two).
    REQUIRE((*s)->blobs().write_verified(rd, rowless).ok());
  }
  auto s = Store::open(sb.root(), test::options(clock));
  REQUIRE(s.ok());
  CHECK((*s)->upload_status("app", client_id).ok());
  CHECK_FALSE((*s)->upload_status("app", internal_id).ok());
  CHECK_FALSE(std::filesystem::exists((*s)->layout().blob_file(rd)));
}

TEST_CASE("parse_size_limit: bytes, sizes and percentages", "[store][evict]") {
  CHECK_FALSE(parse_size_limit("")->set());
  CHECK(parse_size_limit("10GiB")->bytes == 10ull << 30);
  CHECK(parse_size_limit("80%")->percent == 80.0);
  CHECK(parse_size_limit("50%")->resolve(1000) == 500);
  CHECK_FALSE(parse_size_limit("0%").ok());
  CHECK_FALSE(parse_size_limit("101%").ok());
  CHECK_FALSE(parse_size_limit("lots").ok());
}
