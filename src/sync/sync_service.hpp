// SyncService: the sync-window coordinator (issue #15). Opens and closes
// windows from the SyncSchedule on loop timers (no busy loop; re-checked at
// least every minute so a wall-clock jump is noticed), starts and stops the
// Replayer, runs the window tasks (kept-repository refresh) once per window,
// expires queue entries past their message TTL, and keeps the numbers status,
// metrics and `outpost sync now --wait` show. Loop thread only.
// Knows nothing of HTTP or the cache: what a window switches elsewhere (the
// pull-through gate, background probes) is the on_window callback's job.
//
//   closed --(schedule start | trigger())--> open: on_window(true), replayer
//     ^                                        start, tasks start
//     +------------(window end)--------------- open: replayer stop (cancel),
//                                               tasks cancel, on_window(false)
#pragma once
#include <uv.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "base/result.hpp"
#include "store/replay_queue.hpp"
#include "sync/loop_timer.hpp"
#include "sync/replayer.hpp"
#include "sync/schedule.hpp"

namespace outpost::storesvc { class StoreService; }
namespace outpost::upstream { class RegistryClient; }

namespace outpost::sync {

struct SyncServiceOptions {
  /// Replay pushes (registry.mode = ReadWrite with a parent). Without it the
  /// service still runs windows (tasks, background gating) but no replay.
  bool replay = true;
  bool self_read_only = false;
  uint64_t message_ttl_ms = 7 * 86'400'000ull;  ///< sync.message_ttl (test knob included)
  /// Continuous sync runs the window tasks again this often (a schedule runs
  /// them once per window).
  uint64_t continuous_task_interval_ms = 3'600'000;
  ReplayerOptions replayer;
  size_t max_problems = 20;  ///< failed/expired entries listed in status
};

/// Work that runs once in each sync window besides the replay, e.g. the
/// kept-repository refresh (sync::Keeper). Every function runs on the loop.
struct WindowTask {
  std::string name;  ///< for logs and status ("keep")
  /// Start one run; call `done` exactly once when it ends (any thread rule of
  /// the task's own; the loop thread here). Not called again while a run is
  /// busy.
  std::function<void(std::function<void(Status)> done)> start;
  /// The window closed or the process stops: end the run soon; `done` still
  /// fires (with Errc::Cancelled or whatever the task reports).
  std::function<void()> cancel;
  /// Entries appended to status "sync.keep" (a JSON array; null = none).
  std::function<nlohmann::json()> status;
};

class SyncService {
 public:
  enum class Trigger { Accepted, AlreadyOpen };

  /// `store` and `parent` must outlive the service. Nothing runs before start().
  SyncService(uv_loop_t* loop, storesvc::StoreService& store, upstream::RegistryClient& parent,
              SyncSchedule schedule, SyncServiceOptions opts);
  ~SyncService();
  SyncService(const SyncService&) = delete;
  SyncService& operator=(const SyncService&) = delete;

  /// Called with true when a window opens and false when it closes (also
  /// once from start(), with the state at that moment).
  void set_on_window(std::function<void(bool open)> fn) { on_window_ = std::move(fn); }
  /// Adds work run once per window (and by trigger()); before or after start().
  void add_window_task(WindowTask t);

  /// Arms the timers and opens a window if one is open now.
  void start();
  /// Process shutdown: cancels replay pushes and tasks, stops the timers. Store
  /// jobs in flight still deliver (into a service that ignores them): drain
  /// the loop before destroying it and the store.
  void shutdown();

  /// Looks at the schedule now (the timers do it at each window edge and at
  /// least every minute): for a caller that knows the clock jumped, and tests.
  void check_now() { evaluate(); }
  /// SIGHUP (issue #17): sync.schedule/window/timezone changed. A manual
  /// window open now stays open (from its start, with the new length); the
  /// window state is evaluated again at once.
  void set_schedule(SyncSchedule next);
  /// SIGHUP changed the parent (issue #17): the replay and the mode watch
  /// move to `parent` (held from now on); pushes in flight finish where
  /// they started.
  void set_parent(std::shared_ptr<upstream::RegistryClient> parent);
  /// SIGHUP changed a task's work (sync.keep): tasks not running start now
  /// if a window is open; nothing else (no replay retry) is touched.
  void run_idle_tasks() {
    if (!down_ && started_ && open_) start_tasks();
  }
  /// Whether background work may reach the parent now (continuous: always).
  bool is_open() const { return open_; }
  /// `outpost sync now`: opens a manual window (AlreadyOpen when one is open;
  /// then backoff waits are cut short and idle tasks run again).
  Trigger trigger();
  /// Reads fresh queue numbers (a store job), then `done()` on the loop.
  void refresh(std::function<void()> done);

  /// The "sync" object of /outpost/status.
  nlohmann::json status_json() const;
  /// app::SyncControl::progress_json keys.
  nlohmann::json progress_json() const;
  /// Prometheus lines (outpost_replay_*, outpost_sync_window_open).
  std::string metrics_text() const;
  /// idle | replaying | blocked | closed
  std::string state() const;
  bool busy() const;
  Replayer* replayer() { return replayer_.get(); }

 private:
  struct TaskSlot {
    WindowTask task;
    bool running = false;
    std::string last_error;
  };
  void evaluate();
  void open_window();
  void close_window();
  void start_tasks();
  void arm_window_timer();
  void arm_expire_timer();
  void expire();
  void on_mode_change();
  void stats_changed();

  uv_loop_t* loop_;
  storesvc::StoreService& store_;
  void watch_parent_mode();
  upstream::RegistryClient* parent_;  ///< never null
  std::shared_ptr<upstream::RegistryClient> parent_hold_;  ///< set_parent's; null: the constructor's reference
  SyncSchedule schedule_;
  SyncServiceOptions opts_;
  std::unique_ptr<Replayer> replayer_;  ///< null without replay
  std::vector<std::unique_ptr<TaskSlot>> tasks_;
  std::function<void(bool)> on_window_;
  LoopTimer window_timer_;
  LoopTimer expire_timer_;
  LoopTimer task_timer_;  ///< continuous sync: re-run tasks
  LoopTimer stats_timer_;  ///< coalesces stats refreshes after queue changes
  bool started_ = false;
  bool down_ = false;
  bool open_ = false;
  std::optional<int64_t> last_start_ms_;
  std::optional<int64_t> last_end_ms_;
  std::string last_result_;
  store::ReplayStats stats_;
  std::vector<store::ReplayEntry> problems_;
  bool stats_known_ = false;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

/// "2026-12-05T02:00:00Z" (UTC, seconds).
std::string iso_time(int64_t ms);

}  // namespace outpost::sync
