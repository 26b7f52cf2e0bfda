// sync::SyncService (issue #15): windows from the schedule on an injected
// wall clock, `sync now` (trigger), window tasks run once per window and
// cancelled at its end, what status and `sync now --wait` read. Replay is off
// here (tests/unit/sync/replayer_test.cpp covers it): no request reaches the
// parent, whose address is a closed port.
#include <catch2/catch.hpp>

#include <functional>
#include <optional>
#include <string>

#include "http/client.hpp"
#include "store/store.hpp"
#include "storesvc/store_service.hpp"
#include "sync/sync_service.hpp"
#include "unit/store/store_fixture.hpp"
#include "upstream/registry_client.hpp"
#include "uv/loop.hpp"

namespace outpost {
namespace {

constexpr int64_t kHour = 3'600'000;
// 2026-12-05 00:30 UTC: after the 00:00 start of "0 0 * * *", before 02:00.
constexpr int64_t kT0 = 1'796'430'600'000;

struct Env {
  Env() {
    auto s = store::Store::open(box.root());
    REQUIRE(s);
    svc.emplace(loop.get(), std::move(*s));
    http.emplace(loop.get(), nullptr);
    upstream::UpstreamOptions o;
    o.name = "parent";
    o.url = *http::Url::parse("http://127.0.0.1:9");
    o.offline = true;  // nothing is sent anyway; keep the Link quiet
    rc.emplace(loop.get(), *http, o);
  }
  ~Env() {
    if (sync) sync->shutdown();
    while (uv::pending_work() > 0) uv_run(loop.get(), UV_RUN_ONCE);
    sync.reset();
    rc.reset();
    http.reset();
    svc.reset();
  }
  void make(const std::string& cron) {
    auto sched = sync::SyncSchedule::create(cron, kHour, sync::TimeZone::Utc, [this] { return now; });
    REQUIRE(sched);
    sync::SyncServiceOptions o;
    o.replay = false;
    sync.emplace(loop.get(), *svc, *rc, std::move(*sched), o);
    sync->set_on_window([this](bool open) { windows.push_back(open); });
  }
  /// A task that records its runs and finishes only when told.
  void add_task() {
    sync::WindowTask t;
    t.name = "keep";
    t.start = [this](std::function<void(Status)> done) {
      ++task_runs;
      task_done = std::move(done);
    };
    t.cancel = [this] {
      ++task_cancels;
      if (task_done) std::exchange(task_done, nullptr)(Error(Errc::Cancelled, "window closed"));
    };
    t.status = [] { return nlohmann::json::array({{{"pattern", "factory/*:v*"}, {"tags", 1}}}); };
    sync->add_window_task(std::move(t));
  }

  store::test::Sandbox box;
  uv::Loop loop;
  std::optional<storesvc::StoreService> svc;
  std::optional<http::HttpClient> http;
  std::optional<upstream::RegistryClient> rc;
  std::optional<sync::SyncService> sync;
  int64_t now = kT0;
  std::vector<bool> windows;
  int task_runs = 0;
  int task_cancels = 0;
  std::function<void(Status)> task_done;
};

}  // namespace

TEST_CASE("sync service: a closed schedule opens on sync now, runs its tasks once, closes at the window end",
          "[sync][service]") {
  Env env;
  env.make("0 2 * * *");  // next window at 02:00; closed at 00:30
  env.add_task();
  env.sync->start();
  CHECK_FALSE(env.sync->is_open());
  CHECK(env.windows == std::vector<bool>{false});
  CHECK(env.task_runs == 0);
  auto st = env.sync->status_json();
  CHECK(st["state"] == "closed");
  CHECK(st["window"]["open"] == false);
  CHECK(st["window"]["next"] == "2026-12-05T02:00:00Z");
  CHECK(st["window"]["last_start"].is_null());
  CHECK(st["keep"].size() == 1);

  CHECK(env.sync->trigger() == sync::SyncService::Trigger::Accepted);
  CHECK(env.sync->is_open());
  CHECK(env.windows == std::vector<bool>{false, true});
  CHECK(env.task_runs == 1);
  auto p = env.sync->progress_json();
  for (const char* key : {"window_open", "busy", "queue_depth", "bytes_pending", "sent", "bytes_sent", "failed",
                          "expired", "last_error", "blocked_reason"})
    CHECK(p.contains(key));
  CHECK(p["window_open"] == true);
  CHECK(p["busy"] == true);  // the task runs
  CHECK(env.sync->status_json()["state"] == "replaying");

  // sync now again: already open; the task still runs, so it is not started twice.
  CHECK(env.sync->trigger() == sync::SyncService::Trigger::AlreadyOpen);
  CHECK(env.task_runs == 1);
  std::exchange(env.task_done, nullptr)(Status{});
  CHECK(env.sync->progress_json()["busy"] == false);
  CHECK(env.sync->status_json()["state"] == "idle");
  // Finished: another sync now runs it again.
  CHECK(env.sync->trigger() == sync::SyncService::Trigger::AlreadyOpen);
  CHECK(env.task_runs == 2);

  // The manual window ends one hour after it opened: the task is cancelled.
  env.now = kT0 + kHour + 1;
  env.sync->check_now();
  CHECK_FALSE(env.sync->is_open());
  CHECK(env.windows == std::vector<bool>{false, true, false});
  CHECK(env.task_cancels == 1);
  st = env.sync->status_json();
  CHECK(st["window"]["last_start"] == sync::iso_time(kT0));
  CHECK(st["window"]["last_end"] == sync::iso_time(kT0 + kHour + 1));
  CHECK(st["window"]["last_result"].is_string());

  // The scheduled window opens at 02:00 by itself.
  env.now = kT0 + 90 * 60'000;
  env.sync->check_now();
  CHECK(env.sync->is_open());
  CHECK(env.task_runs == 3);
  CHECK(env.sync->status_json()["window"]["last_start"] == "2026-12-05T02:00:00Z");
}

TEST_CASE("sync service: continuous sync is always open; sync now reruns idle tasks", "[sync][service]") {
  Env env;
  env.make("");
  env.add_task();
  env.sync->start();
  CHECK(env.sync->is_open());
  CHECK(env.task_runs == 1);
  auto st = env.sync->status_json();
  CHECK(st["window"]["continuous"] == true);
  CHECK(st["window"]["next"].is_null());
  std::exchange(env.task_done, nullptr)(Error(Errc::UpstreamUnavailable, "parent offline"));
  CHECK(env.sync->trigger() == sync::SyncService::Trigger::AlreadyOpen);
  CHECK(env.task_runs == 2);
  env.now += 30 * 86'400'000ll;
  env.sync->check_now();
  CHECK(env.sync->is_open());
  CHECK(env.windows.back() == true);
}

TEST_CASE("sync service: metrics name the window and queue gauges", "[sync][service]") {
  Env env;
  env.make("0 2 * * *");
  env.sync->start();
  const std::string m = env.sync->metrics_text();
  for (const char* name : {"outpost_sync_window_open 0", "outpost_replay_pending 0", "outpost_replay_bytes_pending 0",
                           "outpost_replay_failed 0", "outpost_replay_expired 0"})
    CHECK(m.find(name) != std::string::npos);
}

TEST_CASE("sync service: metrics give the last and next window and each kept pattern", "[sync][service]") {
  Env env;
  env.make("0 2 * * *");  // next window 2026-12-05 02:00 UTC
  env.add_task();
  env.sync->start();
  std::string m = env.sync->metrics_text();
  CHECK(m.find("outpost_sync_last_window_start_seconds 0\n") != std::string::npos);
  CHECK(m.find("outpost_sync_next_window_seconds 1796436000\n") != std::string::npos);
  CHECK(m.find("outpost_keep_tags{pattern=\"factory/*:v*\"} 1\n") != std::string::npos);
  CHECK(m.find("outpost_keep_last_refresh_seconds{pattern=\"factory/*:v*\"} 0\n") != std::string::npos);
  REQUIRE(env.sync->trigger() == sync::SyncService::Trigger::Accepted);
  m = env.sync->metrics_text();
  CHECK(m.find("outpost_sync_last_window_start_seconds " + std::to_string(kT0 / 1000) + "\n") != std::string::npos);
  CHECK(m.find("outpost_sync_window_open 1\n") != std::string::npos);
}

TEST_CASE("sync service: set_schedule (SIGHUP) opens or closes at once and keeps a manual window", "[sync][service]") {
  Env env;
  env.make("0 2 * * *");  // closed at 00:30
  env.sync->start();
  CHECK_FALSE(env.sync->is_open());
  // A schedule whose window (00:00 + 1h) is open now: it opens at once.
  auto open_now = sync::SyncSchedule::create("0 0 * * *", kHour, sync::TimeZone::Utc, [&env] { return env.now; });
  REQUIRE(open_now);
  env.sync->set_schedule(std::move(*open_now));
  CHECK(env.sync->is_open());
  CHECK(env.sync->status_json()["window"]["next"] == "2026-12-06T00:00:00Z");
  // Back to a closed one: it closes at once.
  auto closed = sync::SyncSchedule::create("0 2 * * *", kHour, sync::TimeZone::Utc, [&env] { return env.now; });
  REQUIRE(closed);
  env.sync->set_schedule(std::move(*closed));
  CHECK_FALSE(env.sync->is_open());
  // A manual window survives a new schedule (with the new length).
  CHECK(env.sync->trigger() == sync::SyncService::Trigger::Accepted);
  auto longer = sync::SyncSchedule::create("0 5 * * *", 2 * kHour, sync::TimeZone::Utc, [&env] { return env.now; });
  REQUIRE(longer);
  env.sync->set_schedule(std::move(*longer));
  CHECK(env.sync->is_open());
  env.now = kT0 + kHour + 60'000;  // past the old length, within the new one
  env.sync->check_now();
  CHECK(env.sync->is_open());
  CHECK(env.sync->status_json()["window"]["next"] == "2026-12-05T05:00:00Z");
  env.now = kT0 + 2 * kHour + 1;
  env.sync->check_now();
  CHECK_FALSE(env.sync->is_open());
}

TEST_CASE("sync service: set_parent and run_idle_tasks (SIGHUP) switch the parent, start idle tasks only in a window",
          "[sync][service]") {
  Env env;
  env.make("0 2 * * *");  // closed at 00:30
  env.add_task();
  env.sync->start();
  env.sync->run_idle_tasks();  // closed: nothing starts
  CHECK(env.task_runs == 0);

  upstream::UpstreamOptions o;
  o.name = "parent";
  o.url = *http::Url::parse("http://127.0.0.1:10");
  o.offline = true;
  auto next = std::make_shared<upstream::RegistryClient>(env.loop.get(), *env.http, o);
  env.sync->set_parent(next);
  CHECK(next.use_count() == 2);  // held by the service from now on
  CHECK(env.sync->status_json()["parent_mode"] == "Unknown");

  CHECK(env.sync->trigger() == sync::SyncService::Trigger::Accepted);
  CHECK(env.task_runs == 1);
  env.sync->run_idle_tasks();  // running: not started twice
  CHECK(env.task_runs == 1);
  std::exchange(env.task_done, nullptr)(Status{});
  env.sync->run_idle_tasks();  // idle in an open window: runs again
  CHECK(env.task_runs == 2);
  env.sync->shutdown();
  while (uv::pending_work() > 0) uv_run(env.loop.get(), UV_RUN_ONCE);
  env.sync.reset();
  CHECK(next.use_count() == 1);
}

}  // namespace outpost
