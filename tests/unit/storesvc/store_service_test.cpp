// StoreService (src/storesvc/store_service.hpp): jobs run off the loop,
// results come back on it, jobs of one key run in order and alone, keys run
// in parallel, idle keys are dropped, and destruction drains every job
// (follow-ups included) before the store closes.
#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "store/store.hpp"
#include "storesvc/store_service.hpp"
#include "unit/store/store_fixture.hpp"
#include "uv/loop.hpp"

namespace outpost {
namespace {

using storesvc::StoreService;

struct SvcEnv {
  SvcEnv() {
    auto s = store::Store::open(box.root());
    REQUIRE(s);
    svc.emplace(loop.get(), std::move(*s));
  }
  /// Steps the loop until `done` holds; false after 10 s.
  template <typename Pred>
  bool run_until(Pred done) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (!done()) {
      if (std::chrono::steady_clock::now() > deadline) return false;
      uv_run(loop.get(), UV_RUN_ONCE);
    }
    return true;
  }

  store::test::Sandbox box;
  uv::Loop loop;  // destroyed after svc
  std::optional<StoreService> svc;
};

}  // namespace

TEST_CASE("storesvc: a job runs on the pool and its result is delivered on the loop thread", "[storesvc]") {
  SvcEnv env;
  const auto loop_thread = std::this_thread::get_id();
  std::atomic<bool> job_on_loop{false};
  bool done_on_loop = false;
  std::optional<Result<std::string>> got;
  env.svc->run<std::string>(
      [&](store::Store& s) -> Result<std::string> {
        if (std::this_thread::get_id() == loop_thread) job_on_loop = true;
        return s.start_upload("app/web");
      },
      [&](Result<std::string> r) {
        done_on_loop = std::this_thread::get_id() == loop_thread;
        got.emplace(std::move(r));
      });
  CHECK(env.svc->pending() == 1);
  REQUIRE(env.run_until([&] { return got.has_value(); }));
  CHECK_FALSE(job_on_loop);
  CHECK(done_on_loop);
  REQUIRE(*got);
  CHECK(env.svc->pending() == 0);

  // An error comes back as a value, on the loop too.
  std::optional<Status> cancel;
  env.svc->run<void>([](store::Store& s) { return s.cancel_upload("app/web", "no-such-id"); },
                     [&](Status st) { cancel.emplace(std::move(st)); });
  REQUIRE(env.run_until([&] { return cancel.has_value(); }));
  REQUIRE_FALSE(*cancel);
  CHECK(cancel->error().code == Errc::BlobUploadUnknown);
}

TEST_CASE("storesvc: jobs of one key run one at a time in call order; idle keys are dropped", "[storesvc]") {
  SvcEnv env;
  constexpr int kJobs = 100;
  std::vector<int> ran;  // written by jobs: safe only if they never overlap
  std::atomic<int> concurrent{0};
  std::atomic<bool> overlap{false};
  std::vector<int> delivered;
  for (int i = 0; i < kJobs; ++i) {
    env.svc->run_serial<int>(
        "upload/a",
        [&, i](store::Store&) -> Result<int> {
          if (++concurrent > 1) overlap = true;
          ran.push_back(i);
          --concurrent;
          return i;
        },
        [&](Result<int> r) { delivered.push_back(*r); });
  }
  CHECK(env.svc->serial_queues() == 1);
  REQUIRE(env.run_until([&] { return delivered.size() == kJobs; }));
  CHECK_FALSE(overlap);
  for (int i = 0; i < kJobs; ++i) {
    CHECK(ran[i] == i);
    CHECK(delivered[i] == i);
  }
  CHECK(env.svc->serial_queues() == 0);
  CHECK(env.svc->pending() == 0);
}

TEST_CASE("storesvc: jobs of different keys run in parallel", "[storesvc]") {
  SvcEnv env;
  // Key a's job waits (bounded) until key b's job has started: were the keys
  // serialised together, it would give up and report false.
  std::atomic<bool> b_started{false};
  std::optional<bool> a_saw_b;
  bool b_done = false;
  env.svc->run_serial<bool>(
      "upload/a",
      [&](store::Store&) -> Result<bool> {
        const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
        while (!b_started && std::chrono::steady_clock::now() < deadline)
          std::this_thread::sleep_for(std::chrono::milliseconds(1));
        return b_started.load();
      },
      [&](Result<bool> r) { a_saw_b = *r; });
  env.svc->run_serial<bool>(
      "upload/b",
      [&](store::Store&) -> Result<bool> {
        b_started = true;
        return true;
      },
      [&](Result<bool>) { b_done = true; });
  CHECK(env.svc->serial_queues() == 2);
  REQUIRE(env.run_until([&] { return a_saw_b.has_value() && b_done; }));
  CHECK(*a_saw_b);
  CHECK(env.svc->serial_queues() == 0);
}

TEST_CASE("storesvc: a job queued behind a key's slow job waits on the pool while the loop goes on", "[storesvc]") {
  // The GET /uploads/<id> case (issue #14): a status read queued behind a
  // commit of the same session is answered after it, and the loop keeps
  // delivering other results meanwhile instead of waiting for the session.
  SvcEnv env;
  std::atomic<bool> release{false};
  std::vector<std::string> order;
  env.svc->run_serial<int>(
      "upload/k",
      [&](store::Store&) -> Result<int> {
        const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
        while (!release && std::chrono::steady_clock::now() < deadline)
          std::this_thread::sleep_for(std::chrono::milliseconds(1));
        return 1;
      },
      [&](Result<int>) { order.push_back("commit"); });
  env.svc->run_serial<int>("upload/k", [](store::Store&) -> Result<int> { return 2; },
                           [&](Result<int>) { order.push_back("status"); });
  env.svc->run<int>([](store::Store&) -> Result<int> { return 3; }, [&](Result<int>) { order.push_back("other"); });
  REQUIRE(env.run_until([&] { return !order.empty(); }));
  CHECK(order == std::vector<std::string>{"other"});
  release = true;
  REQUIRE(env.run_until([&] { return order.size() == 3; }));
  CHECK(order == std::vector<std::string>{"other", "commit", "status"});
}

TEST_CASE("storesvc: destruction drains every job, follow-ups included, before the store closes", "[storesvc]") {
  store::test::Sandbox box;
  uv::Loop loop;
  int delivered = 0;
  int followups = 0;
  std::atomic<int> ran_on_open_store{0};
  {
    auto s = store::Store::open(box.root());
    REQUIRE(s);
    StoreService svc(loop.get(), std::move(*s));
    for (int i = 0; i < 20; ++i) {
      svc.run_serial<std::string>(
          "upload/k" + std::to_string(i % 3),
          [&](store::Store& st) -> Result<std::string> {
            ++ran_on_open_store;
            return st.start_upload("app/web");
          },
          [&, i](Result<std::string> r) {
            CHECK(r);
            ++delivered;
            // A done callback that queues more work during shutdown: that
            // job still sees an open store and still delivers.
            if (i == 0)
              svc.run<uint64_t>(
                  [&ran_on_open_store, id = *r](store::Store& st) {
                    ++ran_on_open_store;
                    return st.upload_status("app/web", id);
                  },
                  [&](Result<uint64_t> off) {
                CHECK(off);
                ++followups;
              });
          });
    }
    CHECK(svc.pending() == 20);
    // The loop never ran: ~StoreService does the draining.
  }
  CHECK(delivered == 20);
  CHECK(followups == 1);
  CHECK(ran_on_open_store == 21);
  CHECK(outpost::uv::pending_work() == 0);
  // The store is closed: its lock is free for a new opener.
  auto again = store::Store::open(box.root());
  CHECK(again);
}

TEST_CASE("storesvc: gc runs a pass on the pool and reports on the loop", "[storesvc]") {
  SvcEnv env;
  const auto loop_thread = std::this_thread::get_id();
  std::optional<Result<store::GcReport>> got;
  bool on_loop = false;
  store::GcOptions o;
  o.grace_ms = 0;
  env.svc->gc(o, [&](Result<store::GcReport> r) {
    on_loop = std::this_thread::get_id() == loop_thread;
    got.emplace(std::move(r));
  });
  REQUIRE(env.run_until([&] { return got.has_value(); }));
  CHECK(on_loop);
  CHECK(*got);
}

TEST_CASE("storesvc: loop-safe accessors need no job", "[storesvc]") {
  SvcEnv env;
  const uint64_t g0 = env.svc->manifest_generation();
  CHECK(env.svc->layout().root() == env.box.root());
  bool done = false;
  env.svc->run<store::ManifestInfo>(
      [](store::Store& s) {
        const std::string bytes = R"({"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json"})";
        store::ManifestPut m;
        m.repo = "app/web";
        m.digest = Digest::sha256_of(bytes);
        m.media_type = "application/vnd.oci.image.manifest.v1+json";
        m.tag = "v1";
        return s.put_manifest(m, bytes);
      },
      [&](Result<store::ManifestInfo> r) {
        CHECK(r);
        done = true;
      });
  REQUIRE(env.run_until([&] { return done; }));
  CHECK(env.svc->manifest_generation() > g0);  // a tag write is visible to the loop without a job
}

}  // namespace outpost
