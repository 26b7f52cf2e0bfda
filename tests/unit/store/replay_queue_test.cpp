// The replay queue inside the store: which writes enqueue, supersede rules,
// readiness order, retry/failure/expiry bookkeeping, durability across a
// reopen and a crash, and GC keeping what the queue still owes the parent.
#include <catch2/catch.hpp>

#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <limits>

#include "store/meta_schema.hpp"
#include "store/sqlite.hpp"
#include "store_fixture.hpp"

using namespace outpost;
using namespace outpost::store;

namespace {

constexpr int64_t kMinute = 60 * 1000;
constexpr const char* kManifestType = "application/vnd.oci.image.manifest.v1+json";
constexpr const char* kIndexType = "application/vnd.oci.image.index.v1+json";

StoreOptions replay_options(const test::TestClock& c, bool deletes = false) {
  StoreOptions o = test::options(c);
  o.replay = true;
  o.replay_deletes = deletes;
  return o;
}

std::unique_ptr<Store> open_store(const std::string& root, StoreOptions o) {
  auto s = Store::open(root, std::move(o));
  REQUIRE(s.ok());
  return std::move(*s);
}

Digest push_blob(Store& st, std::string_view repo, const std::string& bytes, Origin o = Origin::Pushed) {
  const Digest d = test::digest_of(bytes);
  REQUIRE(st.put_blob(repo, d, bytes, o).ok());
  return d;
}

Digest upload_blob(Store& st, std::string_view repo, const std::string& bytes) {
  const Digest d = test::digest_of(bytes);
  auto id = st.start_upload(repo);
  REQUIRE(id.ok());
  REQUIRE(st.append_upload(repo, *id, 0, bytes).ok());
  REQUIRE(st.flush_upload(repo, *id).ok());
  REQUIRE(st.commit_upload(repo, *id, d).ok());
  return d;
}

// A manifest's bytes only need to hash to its digest: the store does not
// parse them, the caller passes refs and subject.
Digest push_manifest(Store& st, std::string_view repo, const std::string& bytes, std::vector<Digest> refs,
                     std::optional<std::string> tag = std::nullopt, std::optional<Digest> subject = std::nullopt,
                     Origin o = Origin::Pushed, const char* type = kManifestType) {
  ManifestPut m;
  m.repo = std::string(repo);
  m.digest = test::digest_of(bytes);
  m.media_type = type;
  for (auto& r : refs) m.refs.push_back({r, true});
  m.tag = std::move(tag);
  m.subject = std::move(subject);
  m.origin = o;
  auto r = st.put_manifest(m, bytes);
  REQUIRE(r.ok());
  return m.digest;
}

std::vector<ReplayEntry> ready(Store& st, int64_t now = std::numeric_limits<int64_t>::max()) {
  auto r = st.replay_next(now, 100);
  REQUIRE(r.ok());
  return *r;
}

std::vector<ReplayEntry> all_entries(Store& st) {
  std::vector<ReplayEntry> out;
  for (int64_t id = 1; id < 200; ++id) {
    auto e = st.replay_get(id);
    REQUIRE(e.ok());
    if (*e) out.push_back(**e);
  }
  return out;
}

// "blob app sha256:..." style one-line descriptions, for readable checks.
std::string describe(const ReplayEntry& e) {
  std::string s(replay_kind_name(e.kind));
  s += " " + e.repo;
  if (e.tag) s += ":" + *e.tag;
  if (e.digest) s += " " + e.digest->str().substr(7, 8);
  return s;
}

std::vector<std::string> describe(const std::vector<ReplayEntry>& es) {
  std::vector<std::string> out;
  for (const auto& e : es) out.push_back(describe(e));
  return out;
}

std::string short_of(const Digest& d) { return d.str().substr(7, 8); }

void done_all(Store& st, const std::vector<ReplayEntry>& es) {
  for (const auto& e : es) REQUIRE(*st.replay_done(e.id));
}

}  // namespace

TEST_CASE("replay: each pushed write enqueues its entries, cached writes none", "[store][replay]") {
  test::Sandbox sb;
  test::TestClock clock;
  auto s = open_store(sb.root(), replay_options(clock));
  auto& st = *s;

  const Digest up = upload_blob(st, "app", "uploaded layer");
  const Digest mono = push_blob(st, "app", "monolithic layer");
  REQUIRE(st.mount_blob("app", "other", up).ok());
  REQUIRE(st.link_blob("third", mono, Origin::Pushed).ok());
  const Digest by_digest = push_manifest(st, "app", "manifest by digest", {up});
  const Digest by_tag = push_manifest(st, "app", "manifest by tag", {up, mono}, "v1");
  REQUIRE(st.put_tag("app", "latest", by_digest).ok());

  // Cached (pull-through) writes: nothing.
  const Digest cached = push_blob(st, "cache", "cached layer", Origin::Cached);
  REQUIRE(st.link_blob("cache2", cached, Origin::Cached).ok());
  REQUIRE(st.mount_blob("cache", "cache3", cached, Origin::Cached).ok());
  const Digest cm = push_manifest(st, "cache", "cached manifest", {cached}, "c1", std::nullopt, Origin::Cached);
  REQUIRE(st.put_tag("cache", "c2", cm, Origin::Cached).ok());

  const auto es = all_entries(st);
  CHECK(describe(es) == std::vector<std::string>{
                            "blob app " + short_of(up),
                            "blob app " + short_of(mono),
                            "blob other " + short_of(up),
                            "blob third " + short_of(mono),
                            "manifest app " + short_of(by_digest),
                            "manifest app " + short_of(by_tag),
                            "tag app:v1 " + short_of(by_tag),
                            "tag app:latest " + short_of(by_digest),
                        });
  REQUIRE(es.size() == 8);
  CHECK(es[0].size == std::string("uploaded layer").size());
  CHECK(es[2].mount_from == std::optional<std::string>("app"));
  CHECK_FALSE(es[0].mount_from);
  CHECK(es[5].media_type == kManifestType);
  CHECK(es[5].size == std::string("manifest by tag").size());
  CHECK(es[6].media_type == kManifestType);
  for (const auto& e : es) {
    CHECK(e.state == ReplayState::Pending);
    CHECK(e.attempts == 0);
    CHECK(e.created_ms > 0);
  }
  auto stats = st.replay_stats();
  REQUIRE(stats.ok());
  CHECK(stats->pending == 8);
  CHECK(stats->bytes_pending == 2 * std::string("uploaded layer").size() + 2 * std::string("monolithic layer").size());
  CHECK(stats->oldest_pending_ms == es[0].created_ms);
  CHECK(stats->failed == 0);
  CHECK(stats->done == 0);
}

TEST_CASE("replay: a pushed manifest queues the cached layers it names, before itself", "[store][replay]") {
  // A client pushing an image whose layer this registry already caches for
  // another repository skips the upload (its HEAD is answered 200 after the
  // cached blob is linked): the parent still needs the layer in the pushed
  // repository, and may mount it from the repository it served it in.
  test::Sandbox sb;
  test::TestClock clock;
  auto s = open_store(sb.root(), replay_options(clock));
  auto& st = *s;
  const Digest shared = push_blob(st, "lib/base", "layer pulled through", Origin::Cached);
  REQUIRE(st.link_blob("site/app", shared, Origin::Cached).ok());  // what the HEAD does
  const Digest own = upload_blob(st, "site/app", "own layer");
  const Digest m = push_manifest(st, "site/app", "app manifest", {own, shared}, "1");

  const auto es = all_entries(st);
  CHECK(describe(es) == std::vector<std::string>{
                            "blob site/app " + short_of(own),
                            "blob site/app " + short_of(shared),
                            "manifest site/app " + short_of(m),
                            "tag site/app:1 " + short_of(m),
                        });
  REQUIRE(es.size() == 4);
  CHECK(es[1].mount_from == std::optional<std::string>("lib/base"));
  CHECK(es[1].size == std::string("layer pulled through").size());
  // The blobs go first: the manifest is not ready before both are done.
  CHECK(describe(ready(st)) == std::vector<std::string>{"blob site/app " + short_of(own),
                                                        "blob site/app " + short_of(shared)});
  // A second manifest naming it adds nothing: the link is pushed now.
  push_manifest(st, "site/app", "app manifest 2", {shared});
  CHECK(all_entries(st).size() == 5);
}

TEST_CASE("replay: nothing is enqueued when replay is off; deletes only with replay_deletes", "[store][replay]") {
  test::Sandbox sb;
  test::TestClock clock;
  {
    auto s = open_store(sb.root(), test::options(clock));
    const Digest b = push_blob(*s, "app", "layer");
    push_manifest(*s, "app", "m", {b}, "v1");
    CHECK(s->replay_stats()->pending == 0);
  }
  {
    auto s = open_store(sb.root(), replay_options(clock, /*deletes=*/false));
    const Digest b = push_blob(*s, "app", "layer 2");
    const Digest m = push_manifest(*s, "app", "m2", {b}, "v2");
    REQUIRE(s->delete_tag("app", "v2").ok());
    REQUIRE(s->delete_manifest("app", m).ok());
    REQUIRE(s->delete_blob("app", b).ok());
    // The pushed writes are still owed; the deletes stay local.
    CHECK(describe(all_entries(*s)) == std::vector<std::string>{"blob app " + short_of(b), "manifest app " + short_of(m),
                                                                 "tag app:v2 " + short_of(m)});
  }
}

TEST_CASE("replay: deletes of pushed content enqueue in order; cached deletes never", "[store][replay]") {
  test::Sandbox sb;
  test::TestClock clock;
  auto s = open_store(sb.root(), replay_options(clock, /*deletes=*/true));
  auto& st = *s;
  const Digest b = push_blob(st, "app", "layer");
  const Digest m = push_manifest(st, "app", "manifest", {b});
  REQUIRE(st.put_tag("app", "v1", m).ok());
  REQUIRE(st.delete_tag("app", "v1").ok());  // supersedes the unsent tag move
  REQUIRE(st.delete_manifest("app", m).ok());
  REQUIRE(st.delete_blob("app", b).ok());

  const Digest cb = push_blob(st, "cache", "cached", Origin::Cached);
  const Digest cm = push_manifest(st, "cache", "cached m", {cb}, "c", std::nullopt, Origin::Cached);
  REQUIRE(st.delete_tag("cache", "c").ok());
  REQUIRE(st.delete_manifest("cache", cm).ok());
  REQUIRE(st.delete_blob("cache", cb).ok());

  CHECK(describe(all_entries(st)) == std::vector<std::string>{
                                         "blob app " + short_of(b),
                                         "manifest app " + short_of(m),
                                         "delete_tag app:v1 " + short_of(m),
                                         "delete_manifest app " + short_of(m),
                                         "delete_blob app " + short_of(b),
                                     });
  // Each delete waits for the older writes of the same digest.
  auto r = ready(st);
  CHECK(describe(r) == std::vector<std::string>{"blob app " + short_of(b), "delete_tag app:v1 " + short_of(m)});
  done_all(st, r);
  r = ready(st);
  CHECK(describe(r) == std::vector<std::string>{"manifest app " + short_of(m)});
  done_all(st, r);
  r = ready(st);
  CHECK(describe(r) == std::vector<std::string>{"delete_manifest app " + short_of(m)});
  done_all(st, r);
  r = ready(st);
  CHECK(describe(r) == std::vector<std::string>{"delete_blob app " + short_of(b)});
  done_all(st, r);
  CHECK(ready(st).empty());
  CHECK(st.replay_stats()->done == 5);
}

TEST_CASE("replay: a tag move supersedes the unsent one; manifests are never superseded", "[store][replay]") {
  test::Sandbox sb;
  test::TestClock clock;
  auto s = open_store(sb.root(), replay_options(clock));
  auto& st = *s;
  const Digest b = push_blob(st, "app", "layer");
  const Digest m1 = push_manifest(st, "app", "one", {b}, "v1");
  const Digest m2 = push_manifest(st, "app", "two", {b}, "v1");
  const Digest m3 = push_manifest(st, "app", "three", {b});
  REQUIRE(st.put_tag("app", "v1", m3).ok());
  REQUIRE(st.put_tag("app", "other", m1).ok());
  // Pushing the same manifest again while it is pending adds nothing.
  push_manifest(st, "app", "two", {b});

  CHECK(describe(all_entries(st)) == std::vector<std::string>{
                                         "blob app " + short_of(b),
                                         "manifest app " + short_of(m1),
                                         "manifest app " + short_of(m2),
                                         "manifest app " + short_of(m3),
                                         "tag app:v1 " + short_of(m3),
                                         "tag app:other " + short_of(m1),
                                     });
  // A sent tag is not superseded by a later move: the move is a new entry.
  auto r = ready(st);
  done_all(st, r);
  r = ready(st);
  done_all(st, r);
  r = ready(st);
  CHECK(describe(r) == std::vector<std::string>{"tag app:v1 " + short_of(m3), "tag app:other " + short_of(m1)});
  done_all(st, r);
  REQUIRE(st.put_tag("app", "v1", m2).ok());
  CHECK(describe(ready(st)) == std::vector<std::string>{"tag app:v1 " + short_of(m2)});
}

TEST_CASE("replay: order blob -> manifest -> index -> tag", "[store][replay]") {
  test::Sandbox sb;
  test::TestClock clock;
  auto s = open_store(sb.root(), replay_options(clock));
  auto& st = *s;
  const Digest l1 = upload_blob(st, "app", "layer amd64");
  const Digest c1 = push_blob(st, "app", "config amd64");
  const Digest l2 = upload_blob(st, "app", "layer arm64");
  const Digest c2 = push_blob(st, "app", "config arm64");
  const Digest m1 = push_manifest(st, "app", "manifest amd64", {c1, l1});
  const Digest m2 = push_manifest(st, "app", "manifest arm64", {c2, l2});
  const Digest idx = push_manifest(st, "app", "index", {m1, m2}, "v1", std::nullopt, Origin::Pushed, kIndexType);
  // An unrelated repository is independent.
  const Digest ob = push_blob(st, "other", "other layer");

  auto r = ready(st);
  CHECK(describe(r) == std::vector<std::string>{"blob app " + short_of(l1), "blob app " + short_of(c1),
                                                "blob app " + short_of(l2), "blob app " + short_of(c2),
                                                "blob other " + short_of(ob)});
  // One blob done: its manifest still waits for the other blob.
  REQUIRE(*st.replay_done(r[0].id));
  CHECK(ready(st).size() == 4);
  done_all(st, {r[1], r[2]});
  r = ready(st);
  CHECK(describe(r) == std::vector<std::string>{"blob app " + short_of(c2), "manifest app " + short_of(m1),
                                                "blob other " + short_of(ob)});
  done_all(st, r);
  r = ready(st);
  CHECK(describe(r) == std::vector<std::string>{"manifest app " + short_of(m2)});
  done_all(st, r);
  r = ready(st);
  CHECK(describe(r) == std::vector<std::string>{"manifest app " + short_of(idx)});
  CHECK(r[0].media_type == kIndexType);
  done_all(st, r);
  r = ready(st);
  CHECK(describe(r) == std::vector<std::string>{"tag app:v1 " + short_of(idx)});
  done_all(st, r);
  CHECK(ready(st).empty());
  auto stats = st.replay_stats();
  CHECK(stats->pending == 0);
  CHECK(stats->bytes_pending == 0);
  CHECK_FALSE(stats->oldest_pending_ms);
  CHECK(stats->done == 9);
}

TEST_CASE("replay: a referrer waits for its subject, even one pushed after it", "[store][replay]") {
  test::Sandbox sb;
  test::TestClock clock;
  auto s = open_store(sb.root(), replay_options(clock));
  auto& st = *s;
  const Digest b = push_blob(st, "app", "layer");
  // OCI allows the referrer first: the subject need not exist yet.
  const std::string subject_bytes = "the image";
  const Digest subject = test::digest_of(subject_bytes);
  const Digest sig = push_manifest(st, "app", "signature", {b}, std::nullopt, subject);
  const Digest img = push_manifest(st, "app", subject_bytes, {b});
  REQUIRE(img == subject);

  auto r = ready(st);
  CHECK(describe(r) == std::vector<std::string>{"blob app " + short_of(b)});
  done_all(st, r);
  r = ready(st);
  CHECK(describe(r) == std::vector<std::string>{"manifest app " + short_of(img)});
  done_all(st, r);
  r = ready(st);
  CHECK(describe(r) == std::vector<std::string>{"manifest app " + short_of(sig)});
}

TEST_CASE("replay: retry records attempts, error and the next attempt time", "[store][replay]") {
  test::Sandbox sb;
  test::TestClock clock;
  auto s = open_store(sb.root(), replay_options(clock));
  auto& st = *s;
  push_blob(st, "app", "a");
  push_blob(st, "app", "b");
  const int64_t now = clock.fn()();
  auto r = ready(st, now);
  REQUIRE(r.size() == 2);
  REQUIRE(*st.replay_retry(r[0].id, now + 1000, "connection refused"));
  REQUIRE(*st.replay_retry(r[0].id, now + 2000, "502 from parent"));
  auto e = st.replay_get(r[0].id);
  REQUIRE(e.ok());
  REQUIRE(*e);
  CHECK((*e)->attempts == 2);
  CHECK((*e)->next_attempt_ms == now + 2000);
  CHECK((*e)->error == "502 from parent");
  CHECK((*e)->state == ReplayState::Pending);
  // Not due yet: only the other entry is ready; then both, oldest first.
  auto later = ready(st, now + 1999);
  REQUIRE(later.size() == 1);
  CHECK(later[0].id == r[1].id);
  auto due = ready(st, now + 2000);
  REQUIRE(due.size() == 2);
  CHECK(due[0].id == r[0].id);
  // Still pending: counted in the stats, not a problem.
  CHECK(st.replay_stats()->pending == 2);
  CHECK(st.replay_problems(10)->empty());
  // A done entry cannot be retried or failed any more.
  REQUIRE(*st.replay_done(r[0].id));
  CHECK_FALSE(*st.replay_done(r[0].id));
  CHECK_FALSE(*st.replay_retry(r[0].id, now, "x"));
  CHECK_FALSE(*st.replay_failed(r[0].id, "x"));
}

TEST_CASE("replay: a failed entry fails what depends on it, and is reported", "[store][replay]") {
  test::Sandbox sb;
  test::TestClock clock;
  auto s = open_store(sb.root(), replay_options(clock));
  auto& st = *s;
  const Digest b1 = push_blob(st, "app", "layer 1");
  const Digest b2 = push_blob(st, "app", "layer 2");
  const Digest m = push_manifest(st, "app", "manifest", {b1, b2}, "v1");
  const Digest idx = push_manifest(st, "app", "index", {m}, "multi", std::nullopt, Origin::Pushed, kIndexType);
  const Digest free_b = push_blob(st, "app", "unrelated");
  const Digest free_m = push_manifest(st, "app", "unrelated manifest", {free_b});

  auto r = ready(st);
  REQUIRE(r.size() == 3);
  REQUIRE(*st.replay_failed(r[0].id, "DENIED: requested access to the resource is denied"));
  const std::string why = "depends on failed entry " + std::to_string(r[0].id);

  // Entries: 1 b1, 2 b2, 3 m, 4 tag v1, 5 idx, 6 tag multi, 7 free_b, 8 free_m.
  REQUIRE(r[0].id == 1);
  auto check_entry = [&](int64_t id, const std::string& what, ReplayState state, const std::string& error) {
    auto e = st.replay_get(id);
    REQUIRE(e.ok());
    REQUIRE(*e);
    CHECK(describe(**e) == what);
    CHECK((*e)->state == state);
    CHECK((*e)->error == error);
  };
  check_entry(1, "blob app " + short_of(b1), ReplayState::Failed, "DENIED: requested access to the resource is denied");
  check_entry(2, "blob app " + short_of(b2), ReplayState::Pending, "");
  check_entry(3, "manifest app " + short_of(m), ReplayState::Failed, why);
  check_entry(4, "tag app:v1 " + short_of(m), ReplayState::Failed, "depends on failed entry 3");
  check_entry(5, "manifest app " + short_of(idx), ReplayState::Failed, "depends on failed entry 3");
  check_entry(6, "tag app:multi " + short_of(idx), ReplayState::Failed, "depends on failed entry 5");
  auto problems = st.replay_problems(10);
  REQUIRE(problems.ok());
  CHECK(problems->size() == 5);
  // The unrelated image still goes; blob 2 still goes (nothing it needs failed).
  done_all(st, ready(st));
  CHECK(describe(ready(st)) == std::vector<std::string>{"manifest app " + short_of(free_m)});
  auto stats = st.replay_stats();
  CHECK(stats->failed == 5);
  CHECK(stats->pending == 1);

  // A manifest pushed later that needs the failed blob (the image pushed
  // again once the parent's refusal was fixed; the client skips the layer
  // this registry holds) queues the blob again and waits for it: the
  // documented way to send a refused image again (operations.md).
  const Digest late = push_manifest(st, "app", "late manifest", {b1});
  CHECK(describe(ready(st)) == std::vector<std::string>{"manifest app " + short_of(free_m), "blob app " + short_of(b1)});
  CHECK(st.replay_stats()->failed == 5);
  // Once the new blob entry is through, the manifest goes, and the old
  // failure of the same blob is no longer reported.
  done_all(st, ready(st));
  CHECK(describe(ready(st)) == std::vector<std::string>{"manifest app " + short_of(late)});
  CHECK(st.replay_stats()->failed == 4);
  // Pushing the blob itself again is a new write: manifests needing it wait again.
  push_blob(st, "app", "layer 1");
  const Digest again = push_manifest(st, "app", "another manifest", {b1});
  CHECK(describe(ready(st)) == std::vector<std::string>{"blob app " + short_of(b1)});
  done_all(st, ready(st));
  CHECK(describe(ready(st)) ==
        std::vector<std::string>{"manifest app " + short_of(late), "manifest app " + short_of(again)});
  (void)why;
}

TEST_CASE("replay: an image pushed again after its entries failed is queued whole again", "[store][replay]") {
  test::Sandbox sb;
  test::TestClock clock;
  auto s = open_store(sb.root(), replay_options(clock));
  auto& st = *s;
  const Digest b1 = push_blob(st, "app", "layer 1");
  const Digest m = push_manifest(st, "app", "manifest", {b1}, "v1");
  // The parent refused the repository: every entry failed.
  auto r = ready(st);
  REQUIRE(describe(r) == std::vector<std::string>{"blob app " + short_of(b1)});
  REQUIRE(*st.replay_failed(r[0].id, "DENIED"));
  CHECK(st.replay_stats()->failed == 3);
  CHECK(ready(st).empty());
  // Fixed at the parent; the client pushes the same manifest and tag again
  // (it skips the layer, which this registry holds).
  push_manifest(st, "app", "manifest", {b1}, "v1");
  CHECK(describe(ready(st)) == std::vector<std::string>{"blob app " + short_of(b1)});
  done_all(st, ready(st));
  CHECK(describe(ready(st)) == std::vector<std::string>{"manifest app " + short_of(m)});
  done_all(st, ready(st));
  CHECK(describe(ready(st)) == std::vector<std::string>{"tag app:v1 " + short_of(m)});
  done_all(st, ready(st));
  // Delivered: nothing pending, and the three old failures are answered.
  auto stats = st.replay_stats();
  CHECK(stats->pending == 0);
  CHECK(stats->failed == 0);
  // Pushed again once more: the parent has the blob (sent), so only the
  // manifest is owed (an identical one already delivered still goes: the
  // queue does not know the parent kept it).
  push_manifest(st, "app", "manifest", {b1}, "v1");
  CHECK(describe(ready(st)) == std::vector<std::string>{"manifest app " + short_of(m)});
}

TEST_CASE("replay: a manifest the parent refuses for a missing reference queues its references again",
          "[store][replay]") {
  test::Sandbox sb;
  test::TestClock clock;
  auto s = open_store(sb.root(), replay_options(clock));
  auto& st = *s;
  const Digest b1 = push_blob(st, "app", "layer 1");
  const Digest b2 = push_blob(st, "app", "layer 2");
  const Digest m = push_manifest(st, "app", "manifest", {b1, b2});
  const Digest idx = push_manifest(st, "app", "index", {m}, "multi", std::nullopt, Origin::Pushed, kIndexType);
  for (int i = 0; i < 4; ++i) done_all(st, ready(st));
  REQUIRE(st.replay_stats()->pending == 0);
  // The parent lost all of it (its GC); the index is pushed again here.
  push_manifest(st, "app", "index", {m}, "multi", std::nullopt, Origin::Pushed, kIndexType);
  auto r = ready(st);
  REQUIRE(describe(r) == std::vector<std::string>{"manifest app " + short_of(idx)});
  // MANIFEST_BLOB_UNKNOWN for the index: its child manifest is queued
  // again, and the index waits for it.
  auto n = st.replay_requeue_refs(r[0].id);
  REQUIRE(n.ok());
  CHECK(*n == 1);
  CHECK(describe(ready(st)) == std::vector<std::string>{"manifest app " + short_of(m)});
  // The child is refused the same way: both layers go again, then the child,
  // then the index, then its tag.
  r = ready(st);
  CHECK(*st.replay_requeue_refs(r[0].id) == 2);
  auto layers = describe(ready(st));
  std::sort(layers.begin(), layers.end());
  auto want = std::vector<std::string>{"blob app " + short_of(b1), "blob app " + short_of(b2)};
  std::sort(want.begin(), want.end());
  CHECK(layers == want);
  done_all(st, ready(st));
  CHECK(describe(ready(st)) == std::vector<std::string>{"manifest app " + short_of(m)});
  done_all(st, ready(st));
  CHECK(describe(ready(st)) == std::vector<std::string>{"manifest app " + short_of(idx)});
  done_all(st, ready(st));
  CHECK(describe(ready(st)) == std::vector<std::string>{"tag app:multi " + short_of(idx)});
  // Nothing to queue for an entry that is gone or is not a manifest.
  CHECK(*st.replay_requeue_refs(9999) == 0);
}

TEST_CASE("replay: expiry marks old pending entries expired and keeps the content", "[store][replay]") {
  test::Sandbox sb;
  test::TestClock clock;
  auto s = open_store(sb.root(), replay_options(clock));
  auto& st = *s;
  const Digest b = push_blob(st, "app", "old layer");
  const Digest m = push_manifest(st, "app", "old manifest", {b}, "v1");
  REQUIRE(*st.replay_retry(1, 0, "503 from parent"));
  clock.advance_ms(60 * kMinute);
  const Digest fresh = push_blob(st, "app", "fresh layer");
  const int64_t now = clock.fn()();

  auto n = st.replay_expire(now, 30 * kMinute);
  REQUIRE(n.ok());
  CHECK(*n == 3);  // blob, manifest, tag
  CHECK(*st.replay_expire(now, 30 * kMinute) == 0);
  auto stats = st.replay_stats();
  CHECK(stats->expired == 3);
  CHECK(stats->pending == 1);
  CHECK(describe(ready(st)) == std::vector<std::string>{"blob app " + short_of(fresh)});
  auto problems = st.replay_problems(10);
  REQUIRE(problems->size() == 3);
  for (const auto& p : *problems) CHECK(p.state == ReplayState::Expired);
  auto blob_entry = st.replay_get(1);
  CHECK((*blob_entry)->error == "not replayed within the message TTL (last error: 503 from parent)");
  // Local content stays.
  CHECK(*st.read_manifest("app", m) == "old manifest");
  CHECK(st.resolve_manifest("app", "v1")->digest == m);
  CHECK(st.stat_blob("app", b).ok());
}

TEST_CASE("replay: dependents of an entry that expires later fail", "[store][replay]") {
  test::Sandbox sb;
  test::TestClock clock;
  auto s = open_store(sb.root(), replay_options(clock));
  auto& st = *s;
  const Digest b = push_blob(st, "app", "layer");
  clock.advance_ms(20 * kMinute);
  const Digest m = push_manifest(st, "app", "manifest", {b});
  CHECK(*st.replay_expire(clock.fn()(), 10 * kMinute) == 1);
  auto e = st.replay_get(2);
  REQUIRE(*e);
  CHECK(describe(**e) == "manifest app " + short_of(m));
  CHECK((*e)->state == ReplayState::Failed);
  CHECK((*e)->error == "depends on expired entry 1");
}

TEST_CASE("replay: the parent's upload location survives a reopen", "[store][replay]") {
  test::Sandbox sb;
  test::TestClock clock;
  int64_t id = 0;
  {
    auto s = open_store(sb.root(), replay_options(clock));
    push_blob(*s, "app", test::pattern_bytes(4096, 3));
    auto r = ready(*s);
    REQUIRE(r.size() == 1);
    id = r[0].id;
    CHECK_FALSE(r[0].upload_url);
    REQUIRE(*s->replay_set_upload(id, "https://parent/v2/app/blobs/uploads/abc?state=1", 2048));
  }
  auto s = open_store(sb.root(), replay_options(clock));
  auto r = ready(*s);
  REQUIRE(r.size() == 1);
  CHECK(r[0].id == id);
  CHECK(r[0].upload_url == std::optional<std::string>("https://parent/v2/app/blobs/uploads/abc?state=1"));
  CHECK(r[0].upload_offset == 2048);
  // The parent lost the session: forget it.
  REQUIRE(*s->replay_set_upload(id, "", 0));
  CHECK_FALSE((*s->replay_get(id))->upload_url);
}

TEST_CASE("replay: entries survive a process that dies without closing the store", "[store][replay]") {
  test::Sandbox sb;
  test::TestClock clock;
  const std::string layer = test::pattern_bytes(100000, 9);
  const pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    // Child: push an image, then die without destructors (like kill -9
    // after the answer was sent: every write returned, so it is durable).
    auto s = Store::open(sb.root(), replay_options(clock));
    if (!s) ::_exit(2);
    const Digest d = test::digest_of(layer);
    if (!(*s)->put_blob("app", d, layer).ok()) ::_exit(3);
    ManifestPut m;
    m.repo = "app";
    m.digest = test::digest_of("crash manifest");
    m.media_type = kManifestType;
    m.refs = {{d, true}};
    m.tag = "v1";
    if (!(*s)->put_manifest(m, "crash manifest").ok()) ::_exit(4);
    ::_exit(0);
  }
  int status = 0;
  REQUIRE(::waitpid(pid, &status, 0) == pid);
  REQUIRE(WIFEXITED(status));
  REQUIRE(WEXITSTATUS(status) == 0);
  auto s = open_store(sb.root(), replay_options(clock));
  CHECK(describe(all_entries(*s)) ==
        std::vector<std::string>{"blob app " + short_of(test::digest_of(layer)),
                                 "manifest app " + short_of(test::digest_of("crash manifest")),
                                 "tag app:v1 " + short_of(test::digest_of("crash manifest"))});
  CHECK(s->replay_stats()->bytes_pending == layer.size());
}

TEST_CASE("replay: a write that fails leaves no entry (same transaction)", "[store][replay]") {
  test::Sandbox sb;
  test::TestClock clock;
  auto s = open_store(sb.root(), replay_options(clock));
  auto& st = *s;
  const Digest b = push_blob(st, "app", "layer");
  const Digest missing = test::digest_of("never pushed");
  // Through MetaDb directly, past the Store's pre-check: the refs check fails
  // inside the transaction that would have inserted the entries.
  ManifestPut m;
  m.repo = "app";
  m.digest = test::digest_of("bad manifest");
  m.media_type = kManifestType;
  m.refs = {{b, true}, {missing, true}};
  m.tag = "v1";
  auto r = st.meta().put_manifest(m, 12);
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().code == Errc::ManifestBlobUnknown);
  // Through the Store too, and a tag naming an unknown manifest.
  auto r2 = st.put_manifest(m, "bad manifest");
  CHECK(r2.error().code == Errc::ManifestBlobUnknown);
  CHECK(st.put_tag("app", "v2", missing).error().code == Errc::ManifestUnknown);
  CHECK(st.mount_blob("nowhere", "app2", missing).error().code == Errc::BlobUnknown);
  CHECK(describe(all_entries(st)) == std::vector<std::string>{"blob app " + short_of(b)});
}

TEST_CASE("replay: GC keeps every blob and manifest a pending entry needs", "[store][replay]") {
  test::Sandbox sb;
  test::TestClock clock;
  auto s = open_store(sb.root(), replay_options(clock));
  auto& st = *s;
  const Digest b = push_blob(st, "app", "layer owed to the parent");
  // A base layer that came from the parent (no entry of its own) but that a
  // pending pushed manifest references.
  const Digest base = push_blob(st, "app", "cached base layer", Origin::Cached);
  const Digest m = push_manifest(st, "app", "manifest owed", {b, base}, "v1");
  // Deleted locally (deletes are not replayed): still owed to the parent.
  REQUIRE(st.delete_manifest("app", m).ok());
  REQUIRE(st.delete_blob("app", b).ok());
  REQUIRE(st.delete_blob("app", base).ok());
  clock.advance_ms(60 * kMinute);
  GcOptions o;
  o.grace_ms = 10 * kMinute;
  auto g = st.gc(o);
  REQUIRE(g.ok());
  CHECK(g->blobs_removed == 0);
  CHECK(st.blobs().contains(b));
  CHECK(st.blobs().contains(base));
  CHECK(st.blobs().contains(m));

  // Sent: nothing holds them any more.
  for (int i = 0; i < 4; ++i) done_all(st, ready(st));
  CHECK(st.replay_stats()->pending == 0);
  g = st.gc(o);
  REQUIRE(g.ok());
  CHECK(g->blobs_removed == 3);
  CHECK_FALSE(st.blobs().contains(b));
  CHECK_FALSE(st.blobs().contains(base));
  CHECK_FALSE(st.blobs().contains(m));
}

TEST_CASE("replay: mount sources come from replayed blobs, else the local mount", "[store][replay]") {
  test::Sandbox sb;
  test::TestClock clock;
  auto s = open_store(sb.root(), replay_options(clock));
  auto& st = *s;
  const Digest cached = push_blob(st, "library/base", "base layer", Origin::Cached);
  REQUIRE(st.mount_blob("library/base", "app", cached).ok());
  CHECK(*st.replay_mount_source(cached, "app") == std::optional<std::string>("library/base"));
  CHECK_FALSE(*st.replay_mount_source(cached, "library/base"));

  const Digest b = push_blob(st, "team/one", "shared layer");
  push_blob(st, "team/two", "shared layer");
  CHECK_FALSE(*st.replay_mount_source(b, "team/two"));
  auto r = ready(st);
  for (const auto& e : r)
    if (e.repo == "team/one") REQUIRE(*st.replay_done(e.id));
  CHECK(*st.replay_mount_source(b, "team/two") == std::optional<std::string>("team/one"));
  CHECK_FALSE(*st.replay_mount_source(b, "team/one"));
}

TEST_CASE("replay: a store made before the queue existed upgrades in place", "[store][replay]") {
  test::Sandbox sb;
  test::TestClock clock;
  Digest old_blob;
  {
    // A round-1 store: schema v1 only, with content.
    auto s = open_store(sb.root(), test::options(clock));
    old_blob = push_blob(*s, "app", "round 1 layer");
  }
  {
    auto db = sql::Db::open(sb.root() + "/meta.db");
    REQUIRE(db.ok());
    REQUIRE(db->exec("DROP INDEX blobs_bad; ALTER TABLE blobs DROP COLUMN bad; ALTER TABLE blobs DROP COLUMN accessed;"
                     " ALTER TABLE uploads DROP COLUMN internal; "
                     "DROP TABLE kept_tags; DROP TABLE replay_counters; DROP TABLE replay_sent; DROP TABLE replay_deps;"
                     " DROP TABLE replay_queue; PRAGMA user_version = 1;")
                .ok());
  }
  auto s = open_store(sb.root(), replay_options(clock));
  auto db_version = [&] {
    auto db = sql::Db::open(sb.root() + "/meta.db");
    REQUIRE(db.ok());
    return *db->user_version();
  };
  CHECK(db_version() == static_cast<int64_t>(meta_migrations().size()));
  CHECK(s->stat_blob("app", old_blob).ok());
  // Content from before the upgrade is not owed (there was no queue); new pushes are.
  CHECK(s->replay_stats()->pending == 0);
  const Digest b = push_blob(*s, "app", "round 2 layer");
  CHECK(describe(all_entries(*s)) == std::vector<std::string>{"blob app " + short_of(b)});
}
