// HotManifests (src/cache/hot_manifests.cpp) over a real Store in a temp dir
// and a real uv loop run on the test thread: a current entry answers without
// a store job; every manifest/tag write after a memoized read is seen by the
// next read (never a stale answer); the byte bound holds with LRU eviction;
// a HEAD-style read gives the size.
#include <uv.h>

#include <catch2/catch.hpp>
#include <map>
#include <optional>
#include <vector>
#include <string>

#include "cache/hot_manifests.hpp"
#include "store/store.hpp"
#include "storesvc/store_service.hpp"
#include "unit/store/store_fixture.hpp"

using namespace outpost;
using cache::HotManifest;
using cache::HotManifests;

namespace {

const char* kType = "application/vnd.oci.image.manifest.v1+json";

std::string manifest_bytes(const std::string& note, size_t pad = 0) {
  return R"({"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","annotations":{"note":")" +
         note + std::string(pad, 'x') + R"("}})";
}

class MemoEnv {
 public:
  explicit MemoEnv(uint64_t max_bytes = HotManifests::kDefaultMaxBytes) {
    uv_loop_init(&loop_);
    auto s = store::Store::open(box_.root(), store::test::options(clock_));
    REQUIRE(s);
    store_ = s->get();  // the test thread writes directly; the loop goes through svc_
    svc_.emplace(&loop_, std::move(*s));
    memo_.emplace(&*svc_, max_bytes);
  }
  ~MemoEnv() {
    memo_.reset();
    svc_.reset();
    uv_run(&loop_, UV_RUN_DEFAULT);
    uv_loop_close(&loop_);
  }

  store::Store& store() { return *store_; }
  HotManifests& memo() { return *memo_; }

  /// Pushes `bytes` as a manifest of `repo`, tagged `tag` when given.
  Digest push(const std::string& repo, const std::string& bytes, std::optional<std::string> tag) {
    store::ManifestPut m;
    m.repo = repo;
    m.digest = Digest::sha256_of(bytes);
    m.media_type = kType;
    m.tag = std::move(tag);
    REQUIRE(store_->put_manifest(m, bytes));
    return m.digest;
  }

  /// One get, driven to its answer; `inline_answer` tells whether it came
  /// before get() returned (no store job).
  Result<HotManifest> get(const std::string& repo, const std::string& ref, bool want_bytes = true,
                          bool* inline_answer = nullptr) {
    std::optional<Result<HotManifest>> out;
    memo_->get(repo, ref, want_bytes, [&](Result<HotManifest> r) { out.emplace(std::move(r)); });
    if (inline_answer) *inline_answer = out.has_value();
    run_until([&] { return out.has_value(); });
    return std::move(*out);
  }

  template <typename Pred>
  void run_until(Pred done) {
    while (!done()) uv_run(&loop_, UV_RUN_ONCE);
  }

 private:
  store::test::Sandbox box_;
  store::test::TestClock clock_;
  uv_loop_t loop_{};
  store::Store* store_ = nullptr;  ///< owned by svc_
  std::optional<storesvc::StoreService> svc_;
  std::optional<HotManifests> memo_;
};

}  // namespace

TEST_CASE("hot manifests: a repeated read is answered from the memo without a store job", "[cache]") {
  MemoEnv env;
  const std::string bytes = manifest_bytes("one");
  const Digest d = env.push("app/web", bytes, "v1");

  bool was_inline = true;
  auto first = env.get("app/web", "v1", true, &was_inline);
  REQUIRE(first);
  CHECK_FALSE(was_inline);
  CHECK(first->info.digest == d);
  CHECK(*first->bytes == bytes);
  CHECK(env.memo().stats().pool_reads == 1);

  for (int i = 0; i < 3; ++i) {
    auto again = env.get("app/web", "v1", true, &was_inline);
    REQUIRE(again);
    CHECK(was_inline);
    CHECK(again->info.digest == d);
    CHECK(again->info.media_type == kType);
    CHECK(*again->bytes == bytes);
  }
  // By digest is its own key, memoized the same way.
  REQUIRE(env.get("app/web", d.str()));
  REQUIRE(env.get("app/web", d.str(), true, &was_inline));
  CHECK(was_inline);
  CHECK(env.memo().stats().pool_reads == 2);
  CHECK(env.memo().stats().hits == 4);
}

TEST_CASE("hot manifests: a HEAD-style read gives the size", "[cache]") {
  MemoEnv env;
  const std::string bytes = manifest_bytes("sized", 100);
  env.push("app/web", bytes, "v1");
  auto head = env.get("app/web", "v1", false);
  REQUIRE(head);
  CHECK(head->info.size == bytes.size());
  bool was_inline = false;
  auto again = env.get("app/web", "v1", false, &was_inline);
  REQUIRE(again);
  CHECK(was_inline);
  CHECK(again->info.size == bytes.size());
}

TEST_CASE("hot manifests: every manifest or tag write after a memoized read is seen by the next read", "[cache]") {
  MemoEnv env;
  const std::string one = manifest_bytes("one"), two = manifest_bytes("two");
  const Digest d1 = env.push("app/web", one, "v1");
  REQUIRE(env.get("app/web", "v1")->info.digest == d1);

  SECTION("put_manifest moving the tag") {
    const Digest d2 = env.push("app/web", two, "v1");
    auto r = env.get("app/web", "v1");
    REQUIRE(r);
    CHECK(r->info.digest == d2);
    CHECK(*r->bytes == two);
  }
  SECTION("put_tag moving the tag") {
    const Digest d2 = env.push("app/web", two, std::nullopt);
    REQUIRE(env.get("app/web", "v1")->info.digest == d1);  // re-memoized after the untagged put
    REQUIRE(env.store().put_tag("app/web", "v1", d2));
    auto r = env.get("app/web", "v1");
    REQUIRE(r);
    CHECK(r->info.digest == d2);
    CHECK(*r->bytes == two);
  }
  SECTION("delete_tag") {
    REQUIRE(env.store().delete_tag("app/web", "v1"));
    auto r = env.get("app/web", "v1");
    REQUIRE_FALSE(r);
    CHECK(r.error().code == Errc::ManifestUnknown);
  }
  SECTION("delete_manifest, read by digest and by tag") {
    REQUIRE(env.get("app/web", d1.str()));
    REQUIRE(env.store().delete_manifest("app/web", d1));
    auto by_digest = env.get("app/web", d1.str());
    REQUIRE_FALSE(by_digest);
    CHECK(by_digest.error().code == Errc::ManifestUnknown);
    CHECK_FALSE(env.get("app/web", "v1"));
  }
  SECTION("a write committing while the read is in flight") {
    // The pool read may run before or after the write: either way the
    // answer after the write is the new manifest.
    const Digest d2 = env.push("app/web", two, std::nullopt);
    std::optional<Result<HotManifest>> racing;
    env.memo().get("app/web", "v1", true, [&](Result<HotManifest> r) { racing.emplace(std::move(r)); });
    REQUIRE(env.store().put_tag("app/web", "v1", d2));
    env.run_until([&] { return racing.has_value(); });
    auto r = env.get("app/web", "v1");
    REQUIRE(r);
    CHECK(r->info.digest == d2);
  }
  SECTION("another repository is not served the memoized entry") {
    auto r = env.get("app/other", "v1");
    REQUIRE_FALSE(r);
  }
}

TEST_CASE("hot manifests: blob writes leave memoized entries current", "[cache]") {
  MemoEnv env;
  env.push("app/web", manifest_bytes("one"), "v1");
  REQUIRE(env.get("app/web", "v1"));
  const std::string layer = "layer bytes";
  REQUIRE(env.store().put_blob("app/web", Digest::sha256_of(layer), layer));
  bool was_inline = false;
  REQUIRE(env.get("app/web", "v1", true, &was_inline));
  CHECK(was_inline);
}

TEST_CASE("hot manifests: the byte bound holds, least recently used entries go first", "[cache]") {
  const uint64_t bound = 64 * 1024;  // entries up to 8 KiB each
  MemoEnv env(bound);
  constexpr int kTags = 40;
  for (int i = 0; i < kTags; ++i) env.push("app/web", manifest_bytes("m" + std::to_string(i), 3000), "t" + std::to_string(i));
  for (int i = 0; i < kTags; ++i) {
    REQUIRE(env.get("app/web", "t" + std::to_string(i)));
    CHECK(env.memo().bytes() <= bound);
    REQUIRE(env.get("app/web", "t0"));  // keep t0 the most recently used
  }
  CHECK(env.memo().bytes() <= bound);
  CHECK(env.memo().stats().evictions > 0);
  CHECK(env.memo().entries() < static_cast<size_t>(kTags));
  bool was_inline = false;
  REQUIRE(env.get("app/web", "t0", true, &was_inline));
  CHECK(was_inline);  // recently used: kept
  REQUIRE(env.get("app/web", "t1", true, &was_inline));
  CHECK_FALSE(was_inline);  // least recently used: evicted, read again
  CHECK(env.memo().bytes() <= bound);

  // A manifest above the per-entry limit is answered but never memoized.
  const std::string big = manifest_bytes("big", 9000);
  env.push("app/web", big, "big");
  REQUIRE(*env.get("app/web", "big")->bytes == big);
  REQUIRE(env.get("app/web", "big", true, &was_inline));
  CHECK_FALSE(was_inline);
}

TEST_CASE("hot manifests: peek answers a current entry in place, only when accepted, never a stale one", "[cache]") {
  MemoEnv env;
  const std::string one = manifest_bytes("one"), two = manifest_bytes("two");
  const Digest d1 = env.push("app/web", one, "v1");
  auto accept_all = [](const HotManifest&) { return true; };
  // Nothing memoized yet: no answer, no hit.
  CHECK(env.memo().peek("app/web", "v1", accept_all) == nullptr);
  REQUIRE(env.get("app/web", "v1"));
  const uint64_t hits = env.memo().stats().hits;

  const HotManifest* hot = env.memo().peek("app/web", "v1", accept_all);
  REQUIRE(hot != nullptr);
  CHECK(hot->info.digest == d1);
  REQUIRE(hot->bytes);
  CHECK(*hot->bytes == one);
  CHECK(env.memo().stats().hits == hits + 1);

  // Refused by the caller's rule: no answer and not counted.
  CHECK(env.memo().peek("app/web", "v1", [](const HotManifest&) { return false; }) == nullptr);
  CHECK(env.memo().stats().hits == hits + 1);
  // Another repository or reference is a different key.
  CHECK(env.memo().peek("app/other", "v1", accept_all) == nullptr);
  CHECK(env.memo().peek("app/web", "v2", accept_all) == nullptr);

  // A write moves the tag: the memoized entry is no longer current.
  env.push("app/web", two, "v1");
  CHECK(env.memo().peek("app/web", "v1", accept_all) == nullptr);
  auto fresh = env.get("app/web", "v1");
  REQUIRE(fresh);
  const HotManifest* again = env.memo().peek("app/web", "v1", accept_all);
  REQUIRE(again != nullptr);
  CHECK(*again->bytes == two);
}

TEST_CASE("hot manifests: tags of one manifest share its bytes, so a large tag table fits the bound", "[cache]") {
  MemoEnv env;
  const std::string bytes = manifest_bytes("shared", 400);
  constexpr int kTags = 2000;
  Digest d;
  for (int i = 0; i < kTags; ++i) d = env.push("bench/tags", bytes, "s0t1-" + std::to_string(i));
  for (int i = 0; i < kTags; ++i) REQUIRE(env.get("bench/tags", "s0t1-" + std::to_string(i)));
  CHECK(env.memo().entries() == static_cast<size_t>(kTags));
  CHECK(env.memo().contents() == 1);
  // Each tag costs its key and bookkeeping, not another copy of the manifest:
  // 100,000 such tags fit the default 16 MiB bound.
  CHECK(env.memo().bytes() < kTags * 160 + 2048);
  CHECK(env.memo().bytes() * 50 < HotManifests::kDefaultMaxBytes);
  CHECK(env.memo().stats().evictions == 0);
  for (int i = 0; i < kTags; i += 97) {
    bool was_inline = false;
    auto r = env.get("bench/tags", "s0t1-" + std::to_string(i), true, &was_inline);
    REQUIRE(r);
    CHECK(was_inline);
    CHECK(r->info.digest == d);
    CHECK(*r->bytes == bytes);
  }
}

TEST_CASE("hot manifests: evicting the last tag of a manifest frees its bytes", "[cache]") {
  const uint64_t bound = 8 * 1024;  // room for a few dozen small slots
  MemoEnv env(bound);
  const std::string one = manifest_bytes("one", 200), two = manifest_bytes("two", 200);
  for (int i = 0; i < 100; ++i) env.push("app/web", one, "a" + std::to_string(i));
  for (int i = 0; i < 100; ++i) env.push("app/web", two, "b" + std::to_string(i));
  for (int i = 0; i < 100; ++i) REQUIRE(env.get("app/web", "a" + std::to_string(i)));
  CHECK(env.memo().contents() == 1);
  // Reading only the second manifest's tags evicts every slot of the first.
  for (int i = 0; i < 100; ++i) {
    auto r = env.get("app/web", "b" + std::to_string(i));
    REQUIRE(r);
    CHECK(*r->bytes == two);
    CHECK(env.memo().bytes() <= bound);
  }
  CHECK(env.memo().contents() == 1);
  CHECK(env.memo().stats().evictions > 0);
  CHECK(env.memo().entries() < 100);
  // Whatever is still memoized answers the right bytes.
  for (int i = 99; i >= 90; --i) CHECK(*env.get("app/web", "b" + std::to_string(i))->bytes == two);
  CHECK(*env.get("app/web", "a5")->bytes == one);
}

TEST_CASE("hot manifests: under churn across repositories every answer is the manifest its tag names", "[cache]") {
  // A bound of a few dozen slots, many tags in three repositories, reads in
  // a fixed pseudo-random order: slots are evicted, reused and found again
  // through the open-addressing table many times over.
  MemoEnv env(6 * 1024);
  const char* repos[] = {"app/web", "app/db", "tools/x"};
  std::map<std::pair<std::string, std::string>, std::string> want;  // (repo, tag) -> bytes
  for (int r = 0; r < 3; ++r)
    for (int i = 0; i < 60; ++i) {
      // Three manifests per repository, each shared by twenty tags.
      const std::string bytes = manifest_bytes(std::string(repos[r]) + "-" + std::to_string(i % 3));
      const std::string tag = (i % 7 == 0 ? "a-long-tag-name-past-the-inline-buffer-" : "t") + std::to_string(i);
      env.push(repos[r], bytes, tag);
      want[{repos[r], tag}] = bytes;
    }
  std::vector<std::pair<std::string, std::string>> keys;
  for (const auto& [k, v] : want) keys.push_back(k);
  uint32_t x = 12345;
  for (int n = 0; n < 3000; ++n) {
    x = x * 1103515245u + 12345u;
    const auto& [repo, tag] = keys[(x >> 8) % keys.size()];
    auto r = env.get(repo, tag);
    REQUIRE(r);
    REQUIRE(*r->bytes == want[{repo, tag}]);
    REQUIRE(env.memo().bytes() <= 6 * 1024);
    // What was just memoized is found again (a slot lost in the table
    // would be read from the store every time).
    bool was_inline = false;
    REQUIRE(*env.get(repo, tag, true, &was_inline)->bytes == want[{repo, tag}]);
    REQUIRE(was_inline);
  }
  CHECK(env.memo().stats().evictions > 100);
  CHECK(env.memo().stats().hits > 0);
  CHECK(env.memo().entries() > 10);
  CHECK(env.memo().contents() <= env.memo().entries());
}
