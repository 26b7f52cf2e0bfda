// Garbage collection: what is kept (linked, referenced, recent, active
// uploads) and what goes (unreferenced old blobs, orphan files, stale uploads).
#include <catch2/catch.hpp>
#include <memory>

#include "store_fixture.hpp"

using namespace outpost;
using namespace outpost::store;

namespace {
constexpr int64_t kMinute = 60 * 1000;
constexpr int64_t kHour = 60 * kMinute;

Digest put(Store& st, const std::string& repo, const std::string& bytes) {
  auto d = test::digest_of(bytes);
  REQUIRE(st.put_blob(repo, d, bytes).ok());
  return d;
}

/// Pushes a manifest of `repo` that references `layer` (`counted`: as a
/// layer the GC must keep, else a loose reference); returns its digest.
Digest put_manifest_of(Store& st, const std::string& repo, const Digest& layer, bool counted = true) {
  const std::string bytes = "{\"layers\":[\"" + layer.str() + "\"]}";
  ManifestPut m;
  m.repo = repo;
  m.digest = test::digest_of(bytes);
  m.media_type = "application/vnd.oci.image.manifest.v1+json";
  m.refs = {{layer, counted}};
  REQUIRE(st.put_manifest(m, bytes).ok());
  return m.digest;
}

std::unique_ptr<Store> open_store(const test::Sandbox& sb, test::TestClock& clock) {
  auto s = Store::open(sb.root(), test::options(clock));
  REQUIRE(s.ok());
  return std::move(*s);
}

/// A fresh store in a temp dir with a clock the test moves.
struct GcFixture {
  test::Sandbox sb;
  test::TestClock clock;
  std::unique_ptr<Store> owned = open_store(sb, clock);
  Store& st = *owned;
};
}  // namespace

TEST_CASE_METHOD(GcFixture, "gc: keeps linked and recent blobs, removes unlinked old ones", "[store]") {
  const Digest kept = put(st, "app", "linked blob");
  const Digest dropped = put(st, "app", "unlinked blob");
  REQUIRE(st.delete_blob("app", dropped).ok());

  GcOptions opts;
  opts.grace_ms = 10 * kMinute;
  auto r1 = st.gc(opts);
  REQUIRE(r1.ok());
  CHECK(r1->blobs_removed == 0);  // within the grace period
  CHECK(st.blobs().contains(dropped));

  clock.advance_ms(11 * kMinute);
  auto r2 = st.gc(opts);
  REQUIRE(r2.ok());
  CHECK(r2->blobs_removed == 1);
  CHECK(r2->bytes_removed == std::string("unlinked blob").size());
  CHECK_FALSE(st.blobs().contains(dropped));
  CHECK(st.blobs().contains(kept));
  CHECK(*st.stat_blob("app", kept) > 0);
  CHECK_FALSE(st.meta().blob_size(dropped)->has_value());

  // Re-linking restarts the grace period (touched), re-pushing restores it.
  REQUIRE(st.put_blob("app", dropped, "unlinked blob").ok());
  CHECK(*st.stat_blob("app", dropped) == std::string("unlinked blob").size());
}

TEST_CASE_METHOD(GcFixture, "gc: manifests keep their own bytes and everything they reference", "[store]") {
  const Digest layer = put(st, "app", "layer");
  const Digest manifest = put_manifest_of(st, "app", layer);
  // Unlinking is refused while referenced; drop the link via another route:
  // mount into a second repo and delete there, the first link stays anyway.
  CHECK(st.delete_blob("app", layer).error().code == Errc::Unsupported);

  clock.advance_ms(2 * kHour);
  auto r = st.gc();
  REQUIRE(r.ok());
  CHECK(r->blobs_removed == 0);
  CHECK(st.blobs().contains(layer));
  CHECK(st.blobs().contains(manifest));

  // Once the manifest is deleted and the layer unlinked, both go.
  REQUIRE(st.delete_manifest("app", manifest).ok());
  REQUIRE(st.delete_blob("app", layer).ok());
  r = st.gc();
  REQUIRE(r.ok());
  CHECK(r->blobs_removed == 2);
  CHECK_FALSE(st.blobs().contains(layer));
  CHECK_FALSE(st.blobs().contains(manifest));
  CHECK(test::blob_files(sb.root()).empty());
}

TEST_CASE_METHOD(GcFixture, "gc: a reference from any repository's manifest keeps a blob", "[store]") {
  // A foreign layer reference (not required) to a blob that is stored but
  // linked nowhere still protects it.
  const Digest loose = put(st, "tmp", "loose");
  REQUIRE(st.delete_blob("tmp", loose).ok());
  const std::string mbytes = "{\"foreign\":\"" + loose.str() + "\"}";
  ManifestPut m;
  m.repo = "win";
  m.digest = test::digest_of(mbytes);
  m.media_type = "application/vnd.oci.image.manifest.v1+json";
  m.refs = {{loose, false}};
  REQUIRE(st.put_manifest(m, mbytes).ok());
  clock.advance_ms(kHour);
  REQUIRE(st.gc().ok());
  CHECK(st.blobs().contains(loose));
}

TEST_CASE_METHOD(GcFixture, "gc: orphan blob files (no row) go after the grace period", "[store]") {
  const Digest recorded = put(st, "app", "recorded");
  // Verified bytes renamed into place but never recorded (crash between the
  // rename and the SQLite commit), plus a stray file with a foreign name.
  const std::string orphan = "orphan bytes";
  const Digest od = test::digest_of(orphan);
  REQUIRE(st.blobs().write_verified(od, orphan).ok());
  const std::string stray = st.layout().blobs_alg_dir() + "/" + std::string(od.hex().substr(0, 2)) + "/junk.swp";
  std::ofstream(stray) << "junk";

  auto r1 = st.gc();
  REQUIRE(r1.ok());
  CHECK(r1->orphan_files_removed == 0);  // young: could be a publish in flight
  clock.advance_ms(kHour);
  auto r2 = st.gc();
  REQUIRE(r2.ok());
  CHECK(r2->orphan_files_removed == 2);
  CHECK_FALSE(st.blobs().contains(od));
  CHECK_FALSE(std::filesystem::exists(stray));
  CHECK(st.blobs().contains(recorded));
}

TEST_CASE_METHOD(GcFixture, "gc: stale uploads expire after the TTL, active ones stay", "[store]") {
  auto stale = st.start_upload("app");
  REQUIRE(stale.ok());
  REQUIRE(st.append_upload("app", *stale, 0, "old").ok());
  REQUIRE(st.flush_upload("app", *stale).ok());
  std::ofstream(sb.root() + "/tmp/leftover.tmp") << "x";

  clock.advance_ms(25 * kHour);
  auto fresh = st.start_upload("app");
  REQUIRE(fresh.ok());
  GcOptions opts;
  opts.upload_ttl_ms = 24 * kHour;
  auto r = st.gc(opts);
  REQUIRE(r.ok());
  CHECK(r->uploads_expired == 1);
  CHECK(r->temp_files_removed == 1);
  CHECK(st.upload_status("app", *stale).error().code == Errc::BlobUploadUnknown);
  CHECK(*st.upload_status("app", *fresh) == 0);
  CHECK(test::files_under(sb.root() + "/uploads") == std::vector<std::string>{*fresh + "/data"});
}

TEST_CASE_METHOD(GcFixture, "gc: uploads in progress survive and can still commit", "[store]") {
  const std::string data = test::pattern_bytes(70000, 9);
  auto id = st.start_upload("app");
  REQUIRE(id.ok());
  REQUIRE(st.append_upload("app", *id, 0, std::string_view(data).substr(0, 30000)).ok());
  REQUIRE(st.flush_upload("app", *id).ok());
  clock.advance_ms(kHour);
  auto r = st.gc();
  REQUIRE(r.ok());
  CHECK(r->uploads_expired == 0);
  CHECK(r->upload_dirs_removed == 0);
  REQUIRE(st.append_upload("app", *id, 30000, std::string_view(data).substr(30000)).ok());
  REQUIRE(st.commit_upload("app", *id, test::digest_of(data)).ok());
  // Just committed: even unlinked right away, it is inside the grace period.
  REQUIRE(st.delete_blob("app", test::digest_of(data)).ok());
  REQUIRE(st.gc().ok());
  CHECK(st.blobs().contains(test::digest_of(data)));
}

TEST_CASE_METHOD(GcFixture, "gc: repository rows left by pushes that stored nothing are removed", "[store]") {
  const std::string bytes = "kept";
  REQUIRE(st.put_blob("kept", test::digest_of(bytes), bytes).ok());
  auto cancelled = st.start_upload("gone");  // a session, then nothing
  REQUIRE(cancelled.ok());
  REQUIRE(st.cancel_upload("gone", *cancelled).ok());
  auto open = st.start_upload("pending");  // a live session keeps its row
  REQUIRE(open.ok());

  auto r = st.gc();
  REQUIRE(r.ok());
  CHECK(r->repos_removed == 1);
  CHECK(*st.meta().repo_exists("kept"));
  CHECK(*st.upload_status("pending", *open) == 0);
  REQUIRE(st.append_upload("pending", *open, 0, bytes).ok());
  REQUIRE(st.commit_upload("pending", *open, test::digest_of(bytes)).ok());
  CHECK(*st.meta().repo_exists("pending"));
  CHECK(st.gc()->repos_removed == 0);
}

TEST_CASE_METHOD(GcFixture, "gc: layers of a push that never got its manifest go after upload_ttl", "[store]") {
  // Issue #18: kill -9 rounds of pushes left layers linked in their
  // repository that no manifest would ever name (the manifest PUT never
  // came); a restart and a GC kept them for good.
  const Digest abandoned = put(st, "app", "abandoned layer");
  const Digest mounted = put(st, "app", "mounted layer");
  const Digest headed = put(st, "app", "layer a client found and skipped");
  const Digest cached = test::digest_of("cached layer");
  REQUIRE(st.put_blob("mirror", cached, "cached layer", Origin::Cached).ok());
  const Digest layer = put(st, "app", "layer");
  const Digest manifest = put_manifest_of(st, "app", layer);

  GcOptions opts;
  opts.upload_ttl_ms = 24 * kHour;
  clock.advance_ms(23 * kHour);
  REQUIRE(st.mount_blob("app", "other", mounted).ok());  // a fresh link restarts the wait
  REQUIRE(st.record_access({{headed, clock.fn()()}}).ok());  // so does a read (HEAD before a re-push)
  auto r1 = st.gc(opts);
  REQUIRE(r1.ok());
  CHECK(r1->blobs_removed == 0);  // within upload_ttl: the manifest may still come

  clock.advance_ms(2 * kHour);
  auto r2 = st.gc(opts);
  REQUIRE(r2.ok());
  CHECK(r2->blobs_removed == 1);
  CHECK(r2->bytes_removed == std::string("abandoned layer").size());
  CHECK_FALSE(st.blobs().contains(abandoned));
  CHECK(st.stat_blob("app", abandoned).error().code == Errc::BlobUnknown);
  // Kept: linked within upload_ttl (in any repository), referenced by a
  // manifest, or cached (eviction's business, not GC's).
  CHECK(*st.stat_blob("app", mounted) > 0);
  CHECK(*st.stat_blob("app", headed) > 0);
  CHECK(*st.stat_blob("other", mounted) > 0);
  CHECK(*st.stat_blob("app", layer) > 0);
  CHECK(*st.stat_blob("mirror", cached) > 0);
  CHECK(st.get_manifest("app", manifest).ok());

  // The dry run counts what a real pass would remove, nothing more.
  clock.advance_ms(24 * kHour);
  opts.dry_run = true;
  auto r3 = st.gc(opts);
  REQUIRE(r3.ok());
  CHECK(r3->blobs_removed == 2);  // `mounted`, `headed`
  CHECK(st.blobs().contains(mounted));
}
