// POST/GET /outpost/sync (src/app/ops.cpp) over a real http::Server, with a
// scripted SyncControl standing in for the scheduler, and `outpost sync now`
// (src/app/sync_cli.cpp) run against it on the test thread: the answers
// (202 opened, 200 already open, 503 with no scheduler), the progress lines
// --wait prints, and each way --wait ends (queue empty, blocked, window
// closed with entries left, --timeout).
#include <catch2/catch.hpp>

#include <cstdio>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "app/ops.hpp"
#include "app/sync_cli.hpp"
#include "app/sync_control.hpp"
#include "http/router.hpp"
#include "support/loop_fixture.hpp"

using namespace outpost;
using namespace outpost::test;

namespace {

/// A window that drains one entry per progress poll; loop thread only.
class FakeSync : public app::SyncControl {
 public:
  enum class Ending { Drain, Blocked, Closes, Never };
  explicit FakeSync(Ending e) : ending_(e) {}
  Trigger trigger() override {
    ++triggers;
    if (open_) return Trigger::AlreadyOpen;
    open_ = true;
    return Trigger::Accepted;
  }
  std::string progress_json() const override {
    nlohmann::json j = {{"window_open", open_}, {"busy", open_ && depth_ > 0}, {"queue_depth", depth_},
                        {"bytes_pending", depth_ * 1024 * 1024}, {"sent", 3 - depth_},
                        {"bytes_sent", (3 - depth_) * 1024 * 1024}, {"failed", 0}, {"expired", 0},
                        {"last_error", nullptr}, {"blocked_reason", nullptr}};
    if (ending_ == Ending::Blocked && polls_ >= 1) j["blocked_reason"] = "parent http://p/ is ReadOnly: test";
    if (ending_ == Ending::Closes && polls_ >= 1) j["window_open"] = false;
    // Progress moves on each time someone looks (const: the scheduler's
    // progress is its own state; here the poll is the clock).
    if (open_ && ending_ == Ending::Drain && depth_ > 0) --depth_;
    ++polls_;
    return j.dump();
  }
  int triggers = 0;

 private:
  Ending ending_;
  bool open_ = false;
  mutable uint64_t depth_ = 3;
  mutable int polls_ = 0;
};

/// The ops routes on a server; `sync` may be null (no scheduler).
struct OpsEnv {
  explicit OpsEnv(app::SyncControl* sync) {
    src.config = &cfg;
    src.sync = sync;
    app::register_ops_routes(router, src);
    server = std::make_unique<ServerFixture>(http::ServerLimits{}, [this](ServerFixture&, const http::ExchangePtr& ex) {
      auto m = router.match(ex->req().method, ex->req().path);
      if (!m.handler) return ex->respond(404, "no route");
      (*m.handler)(ex);
    });
    cfg.server.listen = {"127.0.0.1:" + std::to_string(server->port)};
  }
  app::Config cfg;
  app::OpsSources src;
  http::Router router;
  std::unique_ptr<ServerFixture> server;
};

struct Ran {
  int rc = -1;
  std::string out, err;
};

Ran run_sync_now(const app::Config& cfg, app::SyncNowOptions o) {
  char* obuf = nullptr;
  char* ebuf = nullptr;
  size_t olen = 0, elen = 0;
  FILE* out = open_memstream(&obuf, &olen);
  FILE* err = open_memstream(&ebuf, &elen);
  Ran r;
  r.rc = app::sync_now(cfg, o, out, err);
  fclose(out);
  fclose(err);
  r.out.assign(obuf, olen);
  r.err.assign(ebuf, elen);
  free(obuf);
  free(ebuf);
  return r;
}

app::SyncNowOptions fast(bool wait, uint64_t timeout_ms = 10'000) {
  app::SyncNowOptions o;
  o.wait = wait;
  o.timeout_ms = timeout_ms;
  o.poll_ms = 20;
  return o;
}

}  // namespace

TEST_CASE("sync now: opens a window; --wait prints progress until the queue is empty", "[app][sync]") {
  FakeSync sync(FakeSync::Ending::Drain);
  OpsEnv env(&sync);
  auto r = run_sync_now(env.cfg, fast(true));
  INFO(r.out << r.err);
  CHECK(r.rc == 0);
  CHECK(r.out.rfind("sync window opened\n", 0) == 0);
  CHECK(r.out.find("window open: 2 pending (2.0 MiB), 1 sent (1.0 MiB), 0 failed, 0 expired") != std::string::npos);
  CHECK(r.out.find("window open: 0 pending (0 B), 3 sent (3.0 MiB)") != std::string::npos);
  CHECK(r.out.find("done: the queue is empty") != std::string::npos);
  CHECK(r.err.empty());

  // A second "sync now" finds the window open: 200, nothing new started.
  auto again = run_sync_now(env.cfg, fast(false));
  CHECK(again.rc == 0);
  CHECK(again.out.rfind("a sync window is already open\n", 0) == 0);
  CHECK(env.server->call([&] { return sync.triggers; }) == 2);
}

TEST_CASE("sync now --wait: blocked replay, a window that closes early and --timeout end it with status 1",
          "[app][sync]") {
  {
    FakeSync sync(FakeSync::Ending::Blocked);
    OpsEnv env(&sync);
    auto r = run_sync_now(env.cfg, fast(true));
    CHECK(r.rc == 1);
    CHECK(r.err.find("sync blocked: parent http://p/ is ReadOnly: test") != std::string::npos);
  }
  {
    FakeSync sync(FakeSync::Ending::Closes);
    OpsEnv env(&sync);
    auto r = run_sync_now(env.cfg, fast(true));
    CHECK(r.rc == 1);
    CHECK(r.err.find("the window closed with 3 entries pending") != std::string::npos);
  }
  {
    FakeSync sync(FakeSync::Ending::Never);
    OpsEnv env(&sync);
    auto r = run_sync_now(env.cfg, fast(true, 300));
    CHECK(r.rc == 1);
    CHECK(r.err.find("gave up waiting") != std::string::npos);
  }
}

TEST_CASE("sync endpoint: 503 UNAVAILABLE without a scheduler; sync now says so", "[app][sync]") {
  OpsEnv env(nullptr);
  auto r = run_sync_now(env.cfg, fast(true));
  CHECK(r.rc == 1);
  CHECK(r.out.empty());
  CHECK(r.err.find("answered 503: UNAVAILABLE: this outpost runs no sync scheduler") != std::string::npos);
}

TEST_CASE("sync now: nobody listening is a clear error", "[app][sync]") {
  app::Config cfg;
  cfg.server.listen = {"127.0.0.1:" + std::to_string(pick_free_port())};
  auto r = run_sync_now(cfg, fast(false));
  CHECK(r.rc == 1);
  CHECK(r.err.find("cannot reach the outpost at http://127.0.0.1:") != std::string::npos);
}
