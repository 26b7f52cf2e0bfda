// Housekeeper (src/storesvc/housekeeper.hpp, issue #18): reads are kept in
// memory and reach the store only in a batch; a write past the quota
// triggers an eviction pass on its own (no call from the test), which
// removes the least recently read image and counts what it freed; a check
// runs once at a time and reports; stop() leaves nothing pending.
#include <catch2/catch.hpp>

#include <chrono>
#include <optional>
#include <string>

#include "store/store.hpp"
#include "storesvc/housekeeper.hpp"
#include "storesvc/store_service.hpp"
#include "unit/store/store_fixture.hpp"
#include "uv/loop.hpp"

namespace outpost {
namespace {

using storesvc::Housekeeper;
using storesvc::StoreService;

struct Env {
  explicit Env(storesvc::HousekeeperOptions o) {
    auto s = store::Store::open(box.root());
    REQUIRE(s);
    svc.emplace(loop.get(), std::move(*s));
    hk.emplace(loop.get(), *svc, std::move(o));
    // The Housekeeper's timers are unref'd (they never hold a server
    // open); a server always has its listeners, here this timer keeps the
    // loop alive so they fire.
    uv_timer_init(loop.get(), &alive);
    uv_timer_start(&alive, [](uv_timer_t*) {}, 1000, 1000);
  }
  ~Env() {
    uv_close(reinterpret_cast<uv_handle_t*>(&alive), nullptr);
    hk->stop();
    svc->drain();
    hk.reset();
    uv_run(loop.get(), UV_RUN_NOWAIT);  // close callbacks: `alive` must not outlive its memory
  }
  template <typename Pred>
  bool run_until(Pred done) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (!done()) {
      if (std::chrono::steady_clock::now() > deadline) return false;
      uv_run(loop.get(), UV_RUN_NOWAIT);
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    return true;
  }
  /// Stores a cached image: one layer of `n` bytes and a manifest naming it.
  std::pair<Digest, Digest> image(const std::string& repo, size_t n) {
    std::optional<Result<std::pair<Digest, Digest>>> got;
    svc->run<std::pair<Digest, Digest>>(
        [repo, n](store::Store& s) -> Result<std::pair<Digest, Digest>> {
          const std::string bytes = std::string(n, 'l') + repo;
          const Digest layer = store::test::digest_of(bytes);
          if (auto r = s.put_blob(repo, layer, bytes, store::Origin::Cached); !r) return std::move(r).error();
          store::ManifestPut m;
          m.repo = repo;
          const std::string note = "manifest " + repo;
          m.digest = store::test::digest_of(note);
          m.media_type = "application/vnd.oci.image.manifest.v1+json";
          m.refs.push_back({layer, true});
          m.tag = "v1";
          m.origin = store::Origin::Cached;
          if (auto r = s.put_manifest(m, note); !r) return std::move(r).error();
          return std::make_pair(layer, m.digest);
        },
        [&](Result<std::pair<Digest, Digest>> r) { got = std::move(r); });
    REQUIRE(run_until([&] { return got.has_value(); }));
    REQUIRE(got->ok());
    return **got;
  }
  bool readable(const std::string& repo, const Digest& d) {
    std::optional<bool> ok;
    svc->run<uint64_t>([repo, d](store::Store& s) { return s.stat_blob(repo, d); },
                       [&](Result<uint64_t> r) { ok = r.ok(); });
    REQUIRE(run_until([&] { return ok.has_value(); }));
    return *ok;
  }

  store::test::Sandbox box;
  uv::Loop loop;
  std::optional<StoreService> svc;
  std::optional<Housekeeper> hk;
  uv_timer_t alive;
};

}  // namespace

TEST_CASE("housekeeper: a write past the quota evicts the least recently read image by itself",
          "[storesvc][housekeeper]") {
  storesvc::HousekeeperOptions o;
  o.evict.max_size.bytes = 25'000;
  o.evict.grace_ms = 0;
  o.write_poll_ms = 10;
  o.gc_interval_ms = 0;
  o.access_flush_ms = 60'000;  // only the eviction pass flushes reads here
  Env env(o);
  env.hk->start();
  REQUIRE(env.run_until([&] { return env.hk->stats().usage.has_value(); }));  // first pass at start
  auto a = env.image("lib/a", 10'000);
  std::this_thread::sleep_for(std::chrono::milliseconds(5));
  auto b = env.image("lib/b", 10'000);
  std::this_thread::sleep_for(std::chrono::milliseconds(5));
  env.hk->touch(a.first);  // a is read again: b is now the oldest
  env.hk->touch(a.second);
  CHECK(env.hk->pending_access() == 2);
  std::this_thread::sleep_for(std::chrono::milliseconds(5));
  auto c = env.image("lib/c", 10'000);
  REQUIRE(env.run_until([&] { return env.hk->stats().evicted_blobs > 0; }));
  CHECK(env.hk->pending_access() == 0);
  CHECK(env.hk->stats().evicted_bytes >= 10'000);
  CHECK(env.hk->stats().evicted_manifests == 1);
  CHECK(env.readable("lib/a", a.first));
  CHECK_FALSE(env.readable("lib/b", b.first));
  CHECK(env.readable("lib/c", c.first));
}

TEST_CASE("housekeeper: one check at a time, its report kept for status", "[storesvc][housekeeper]") {
  storesvc::HousekeeperOptions o;
  o.gc_interval_ms = 0;
  Env env(o);
  env.image("lib/a", 1000);
  REQUIRE(env.hk->start_check(false, 0));
  CHECK_FALSE(env.hk->start_check(false, 0));
  CHECK(env.hk->stats().check_running);
  REQUIRE(env.run_until([&] { return !env.hk->stats().check_running; }));
  REQUIRE(env.hk->stats().last_check.has_value());
  CHECK(env.hk->stats().last_check->blobs_checked == 2);
  CHECK(env.hk->stats().last_check->ok());
  std::optional<Result<store::GcReport>> gc;
  env.hk->gc_now(true, [&](Result<store::GcReport> r) { gc = std::move(r); });
  REQUIRE(env.run_until([&] { return gc.has_value(); }));
  CHECK(gc->ok());
}

}  // namespace outpost
