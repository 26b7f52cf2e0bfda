// The seam between the operator's "sync now" (POST/GET /outpost/sync in
// app/ops.cpp, `outpost sync now` in app/sync_cli.cpp) and whatever runs
// sync windows (the replay scheduler, issue #15). The endpoint knows nothing
// of queues or windows; the scheduler knows nothing of HTTP.
#pragma once
#include <functional>
#include <string>

namespace outpost::app {

class SyncControl {
 public:
  enum class Trigger {
    Accepted,     ///< a window was opened now (POST answers 202)
    AlreadyOpen,  ///< one was open already; nothing changed (POST answers 200)
  };
  virtual ~SyncControl() = default;

  /// Opens a sync window at once (issue #15: `outpost sync now`). Loop
  /// thread; must not block (no store or SQLite call here: start the work
  /// and return).
  virtual Trigger trigger() = 0;

  /// Progress of the open window, or of the last one, as one JSON object.
  /// Loop thread; must not block. `outpost sync now --wait` reads these keys
  /// (every other key is shown as it is by GET /outpost/sync):
  ///
  ///   "window_open"    bool    a window is open now
  ///   "busy"           bool    replay or refresh work is under way
  ///   "queue_depth"    uint    replay entries still to send
  ///   "bytes_pending"  uint    their bytes (optional)
  ///   "sent"           uint    entries sent in this window (optional)
  ///   "bytes_sent"     uint    (optional)
  ///   "failed"         uint    entries marked failed, not retried (optional)
  ///   "expired"        uint    entries past their message TTL (optional)
  ///   "last_error"     string|null  the parent's last error (optional)
  ///   "blocked_reason" string|null  why replay cannot run at all, e.g.
  ///                    upstream::hierarchy_conflict() (optional)
  ///
  /// --wait ends when blocked_reason is set, when the window is closed, or
  /// when the window is idle (busy false) with queue_depth 0.
  virtual std::string progress_json() const = 0;

  /// Re-reads what the views below show that lives in the store (queue
  /// depth, failed entries), then runs `done` on the loop thread. The ops
  /// routes call it before answering. Must not block (a store job).
  virtual void refresh(std::function<void()> done) { done(); }
  /// The "sync" object of /outpost/status as JSON text ("null": none).
  virtual std::string status_json() const { return "null"; }
  /// Prometheus lines added to /metrics (outpost_replay_*, outpost_sync_*).
  virtual std::string metrics_text() const { return {}; }
};

}  // namespace outpost::app
