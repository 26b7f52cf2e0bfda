// HotBlobs (src/cache/hot_blobs.cpp) over a real Store in a temp dir and its
// StoreService: a known blob answers without the store; every write that can
// make a blob unreadable in a repository (unlink, manifest delete, GC) after
// an entry was learnt makes it stale (never a stale "yes"); writes that only
// add readability (publish, link, upload, manifest put) leave entries
// current; an answer read across a revoking write is never kept; the entry
// bound holds with LRU eviction.
#include <uv.h>

#include <catch2/catch.hpp>
#include <memory>
#include <optional>
#include <string>

#include "cache/hot_blobs.hpp"
#include "store/store.hpp"
#include "storesvc/store_service.hpp"
#include "unit/store/store_fixture.hpp"

using namespace outpost;
using cache::HotBlobs;

namespace {

class BlobMemoEnv {
 public:
  explicit BlobMemoEnv(size_t max_entries = HotBlobs::kDefaultMaxEntries,
                       uint64_t max_bytes = HotBlobs::kDefaultMaxBytes) {
    uv_loop_init(&loop_);
    auto s = store::Store::open(box_.root(), store::test::options(clock_));
    REQUIRE(s);
    store_ = s->get();  // the test thread writes directly; the memo reads svc_
    svc_.emplace(&loop_, std::move(*s));
    memo_.emplace(&*svc_, max_entries, max_bytes);
  }
  ~BlobMemoEnv() {
    memo_.reset();
    svc_.reset();
    uv_run(&loop_, UV_RUN_DEFAULT);
    uv_loop_close(&loop_);
  }

  store::Store& store() { return *store_; }
  HotBlobs& memo() { return *memo_; }
  uint64_t generation() { return svc_->blob_generation(); }
  store::test::TestClock& clock() { return clock_; }

  /// Pushes `bytes` as a blob of `repo` and learns it, as the API does
  /// after a store read (generation taken before the read).
  Digest push_and_learn(const std::string& repo, const std::string& bytes) {
    const Digest d = Digest::sha256_of(bytes);
    REQUIRE(store_->put_blob(repo, d, bytes));
    const uint64_t gen = generation();
    auto size = store_->stat_blob(repo, d);
    REQUIRE(size);
    memo_->insert(repo, d, cache::HotBlob{*size, nullptr}, gen);
    return d;
  }

 private:
  store::test::Sandbox box_;
  store::test::TestClock clock_;
  uv_loop_t loop_{};
  store::Store* store_ = nullptr;  ///< owned by svc_
  std::optional<storesvc::StoreService> svc_;
  std::optional<HotBlobs> memo_;
};

}  // namespace

TEST_CASE("hot blobs: a learnt blob answers with its size, per repository", "[cache][hot-blobs]") {
  BlobMemoEnv env;
  const std::string bytes = "layer bytes";
  const Digest d = env.push_and_learn("app/web", bytes);
  for (int i = 0; i < 3; ++i) CHECK(env.memo().find("app/web", d)->size == bytes.size());
  // Another repository is another question (it may not read the blob).
  CHECK_FALSE(env.memo().find("app/other", d));
  CHECK_FALSE(env.memo().find("app/web", Digest::sha256_of("never pushed")));
  CHECK(env.memo().stats().hits == 3);
  CHECK(env.memo().stats().misses == 2);
}

TEST_CASE("hot blobs: every write that can revoke a read makes learnt entries stale", "[cache][hot-blobs]") {
  BlobMemoEnv env;
  SECTION("blob unlink") {
    const Digest d = env.push_and_learn("app/web", "one");
    REQUIRE(env.memo().find("app/web", d));
    REQUIRE(env.store().delete_blob("app/web", d));
    CHECK_FALSE(env.memo().find("app/web", d));
    CHECK_FALSE(env.store().stat_blob("app/web", d).ok());  // what the memo must not contradict
  }
  SECTION("manifest delete (a manifest is readable as a blob of its repository)") {
    const std::string m = R"({"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json"})";
    store::ManifestPut put;
    put.repo = "app/web";
    put.digest = Digest::sha256_of(m);
    put.media_type = "application/vnd.oci.image.manifest.v1+json";
    REQUIRE(env.store().put_manifest(put, m));
    const uint64_t gen = env.generation();
    auto size = env.store().stat_blob("app/web", put.digest);
    REQUIRE(size);
    env.memo().insert("app/web", put.digest, cache::HotBlob{*size, nullptr}, gen);
    REQUIRE(env.memo().find("app/web", put.digest));
    REQUIRE(env.store().delete_manifest("app/web", put.digest));
    CHECK_FALSE(env.memo().find("app/web", put.digest));
    CHECK_FALSE(env.store().stat_blob("app/web", put.digest).ok());
  }
  SECTION("GC") {
    const Digest d = env.push_and_learn("app/web", "two");
    REQUIRE(env.store().delete_blob("app/web", d));
    const Digest e = env.push_and_learn("app/web", "three");
    REQUIRE(env.memo().find("app/web", e));
    store::GcOptions o;
    o.grace_ms = 0;
    REQUIRE(env.store().gc(o));
    CHECK_FALSE(env.memo().find("app/web", e));  // dropped although it survived: GC may remove anything
    CHECK_FALSE(env.store().stat_blob("app/web", d).ok());
  }
}

TEST_CASE("hot blobs: pushes, links, uploads and manifest puts leave entries current", "[cache][hot-blobs]") {
  BlobMemoEnv env;
  const Digest d = env.push_and_learn("app/web", "kept");
  const std::string other = "another layer";
  REQUIRE(env.store().put_blob("app/web", Digest::sha256_of(other), other));
  REQUIRE(env.store().link_blob("app/two", d, store::Origin::Cached));
  auto id = env.store().start_upload("app/web");
  REQUIRE(id);
  REQUIRE(env.store().append_upload("app/web", *id, 0, "xyz"));
  REQUIRE(env.store().commit_upload("app/web", *id, Digest::sha256_of("xyz")));
  const std::string m = R"({"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json"})";
  store::ManifestPut put;
  put.repo = "app/web";
  put.digest = Digest::sha256_of(m);
  put.media_type = "application/vnd.oci.image.manifest.v1+json";
  put.tag = "v1";
  REQUIRE(env.store().put_manifest(put, m));
  CHECK(env.memo().find("app/web", d)->size == 4u);
}

TEST_CASE("hot blobs: an answer read across a revoking write is not kept", "[cache][hot-blobs]") {
  BlobMemoEnv env;
  const std::string bytes = "raced";
  const Digest d = Digest::sha256_of(bytes);
  REQUIRE(env.store().put_blob("app/web", d, bytes));
  const uint64_t before = env.generation();
  auto size = env.store().stat_blob("app/web", d);  // the pool read...
  REQUIRE(size);
  REQUIRE(env.store().delete_blob("app/web", d));   // ...and an unlink committing before its answer lands
  env.memo().insert("app/web", d, cache::HotBlob{*size, nullptr}, before);
  CHECK_FALSE(env.memo().find("app/web", d));
  CHECK(env.memo().entries() == 0);
}

TEST_CASE("hot blobs: the entry bound holds, least recently used go first", "[cache][hot-blobs]") {
  BlobMemoEnv env(3);
  const Digest a = env.push_and_learn("r", "a");
  const Digest b = env.push_and_learn("r", "b");
  const Digest c = env.push_and_learn("r", "c");
  REQUIRE(env.memo().find("r", a));  // a is now the most recently used
  const Digest d = env.push_and_learn("r", "d");
  CHECK(env.memo().entries() == 3);
  CHECK(env.memo().stats().evictions == 1);
  CHECK_FALSE(env.memo().find("r", b));
  CHECK(env.memo().find("r", a));
  CHECK(env.memo().find("r", c));
  CHECK(env.memo().find("r", d));
}

TEST_CASE("hot blobs: small blobs keep their bytes under a byte bound; larger ones only the size",
          "[cache][hot-blobs]") {
  BlobMemoEnv env(100, /*max_bytes=*/10000);
  const uint64_t gen = env.generation();
  const Digest a = Digest::sha256_of("a"), b = Digest::sha256_of("b"), big = Digest::sha256_of("big");
  env.memo().insert("r", a, cache::HotBlob{6000, std::make_shared<const std::string>(6000, 'a')}, gen);
  auto got = env.memo().find("r", a);
  REQUIRE(got);
  REQUIRE(got->bytes);
  CHECK(*got->bytes == std::string(6000, 'a'));
  // A second 6000-byte blob does not fit beside the first: the older goes.
  env.memo().insert("r", b, cache::HotBlob{6000, std::make_shared<const std::string>(6000, 'b')}, gen);
  CHECK(env.memo().bytes() == 6000);
  CHECK_FALSE(env.memo().find("r", a));
  CHECK(env.memo().find("r", b));
  // Above kMaxInlineBytes only the size is kept.
  const uint64_t n = HotBlobs::kMaxInlineBytes + 1;
  env.memo().insert("r", big, cache::HotBlob{n, std::make_shared<const std::string>(n, 'x')}, gen);
  auto g = env.memo().find("r", big);
  REQUIRE(g);
  CHECK(g->size == n);
  CHECK_FALSE(g->bytes);
  CHECK(env.memo().bytes() == 6000);
}
