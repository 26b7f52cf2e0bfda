// Replayer: drains the durable replay queue (store/replay_queue.hpp) to the
// parent while a sync window is open (issue #15). Loop thread; it reaches the
// store only through storesvc::StoreService jobs and the parent only through
// upstream::Pusher, so nothing here blocks the loop. It knows nothing of
// schedules (sync::SyncService starts and stops it) nor of HTTP routes.
//
//   start() --> fetch: replay_next(now, n) on the pool
//                 |  entries not in flight, up to max_in_flight
//                 v
//              entry ----> blob: HEAD -> (mount) -> upload (fd opened on the pool,
//                 |               resumable; location saved with replay_set_upload)
//                 |        manifest/tag: bytes read on the pool -> PUT by digest/tag
//                 |        deletes: DELETE
//                 v
//              outcome: replay_done | replay_retry (backoff) | replay_failed
//                 |
//                 +--> fetch again; nothing ready: idle, poll every idle_poll_ms
//   stop() cancels pushes in flight (the entries stay pending; a blob resumes
//   from its saved upload location in the next window).
#pragma once
#include <uv.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "store/replay_queue.hpp"
#include "sync/loop_timer.hpp"
#include "sync/replay_policy.hpp"
#include "sync/schedule.hpp"
#include "upstream/pusher.hpp"

namespace outpost::storesvc { class StoreService; }

namespace outpost::sync {

struct ReplayerOptions {
  size_t max_in_flight = 3;         ///< entries pushed at once
  uint64_t idle_poll_ms = 1'000;    ///< queue poll while open and idle (new pushes, due retries)
  uint64_t chunk_size = 32 << 20;   ///< bytes per PATCH (UploadOptions::chunk_size)
  bool self_read_only = false;      ///< this registry's mode (RegistryClient::replay_blocked_reason)
  WallClock clock = &system_wall_clock_ms;  ///< next_attempt and retry times (ms since epoch)
  std::function<double()> random;   ///< [0,1) for the jitter; null: a seeded PRNG
};

/// Counters of the current window (reset by SyncService at each open).
struct ReplayProgress {
  uint64_t sent = 0;        ///< entries the parent acknowledged
  uint64_t bytes_sent = 0;  ///< blob bytes uploaded (not those found or mounted)
  uint64_t failed = 0;      ///< entries marked failed (never retried)
  uint64_t retried = 0;     ///< attempts that will be retried
  std::string last_error;   ///< the parent's (or the store's) last error
};

class Replayer {
 public:
  /// `store` and `parent` must outlive the Replayer. Loop thread.
  Replayer(uv_loop_t* loop, storesvc::StoreService& store, upstream::RegistryClient& parent, ReplayerOptions opts);
  ~Replayer();
  Replayer(const Replayer&) = delete;
  Replayer& operator=(const Replayer&) = delete;

  /// The window opened: replay until stop(). Idempotent.
  void start();
  /// The window closed (or shutdown): cancel pushes in flight; no callback
  /// of theirs runs after. Their entries stay pending. Idempotent.
  void stop();
  /// `sync now` while already running: entries waiting on their backoff are
  /// tried once more at once, and an idle replayer looks at the queue now.
  void retry_now();
  /// Something was enqueued or the parent changed: look at the queue soon.
  void poke();
  /// Process shutdown: stop() for good; later calls do nothing.
  void shutdown();
  /// SIGHUP changed the parent (issue #17): entries started from now on go
  /// to `parent` (held until then); pushes in flight finish where they
  /// started. A blob whose upload session was saved at a replaced parent
  /// starts a new upload at the new one.
  void set_parent(std::shared_ptr<upstream::RegistryClient> parent);

  bool running() const { return running_; }
  /// Running and not idle: entries in flight, a fetch under way, or ready
  /// entries not yet looked at (sync now --wait waits while busy).
  bool busy() const;
  size_t in_flight() const { return tasks_.size(); }
  /// Bytes of uploads in flight handed to the socket (progress display).
  uint64_t bytes_in_flight() const;
  /// Why replay cannot run (the parent is ReadOnly); empty when it can.
  std::string blocked_reason() const;
  const ReplayProgress& progress() const { return progress_; }
  void reset_progress() { progress_ = {}; }
  /// Runs (loop thread) whenever the queue changed through this replayer or
  /// it went idle: SyncService refreshes its stats.
  void set_on_change(std::function<void()> fn) { on_change_ = std::move(fn); }

 private:
  struct Task;
  using TaskPtr = std::shared_ptr<Task>;

  void fetch();
  void on_fetched(uint64_t gen, Result<std::vector<store::ReplayEntry>> r);
  void launch(store::ReplayEntry e);
  /// `e` moves or deletes a tag whose earlier entry is still in flight: it
  /// starts once that one has settled, so the parent sees them in order.
  bool waits_for_tag_in_flight(const store::ReplayEntry& e) const;
  void blob_head(const TaskPtr& t);
  void blob_mount_or_upload(const TaskPtr& t);
  void blob_upload(const TaskPtr& t, std::string resume_location);
  void put_manifest(const TaskPtr& t);
  void remove(const TaskPtr& t);
  /// The parent has it: replay_done.
  void finish_done(const TaskPtr& t);
  void finish_error(const TaskPtr& t, const upstream::PushError& e);
  void finish_local_error(const TaskPtr& t, const std::string& why);
  /// A manifest or tag PUT the parent refused because it lacks a blob or
  /// child manifest the manifest references.
  static bool refused_for_missing_reference(const store::ReplayEntry& entry, const upstream::PushError& e);
  /// Queues the entry's references again (replay_requeue_refs), then retries
  /// it after them; with nothing to queue, `o` stands.
  void requeue_refs_then_retry(const TaskPtr& t, Outcome o);
  /// Stores the retry time and error of `t`'s entry, then settles it.
  void record_retry(const TaskPtr& t, const Outcome& o);
  void finish_failed(const TaskPtr& t, const std::string& why);
  /// The entry's store job ended (whatever it was): forget it, fetch more.
  void settle(const TaskPtr& t);
  bool live(const TaskPtr& t) const;
  double draw();
  void changed();
  void arm_poll();

  uv_loop_t* loop_;
  storesvc::StoreService& store_;
  upstream::RegistryClient* parent_;  ///< never null
  std::shared_ptr<upstream::RegistryClient> parent_hold_;  ///< set_parent's; null: the constructor's reference
  std::vector<std::string> replaced_origins_;  ///< of parents set_parent replaced
  /// `url` (a saved upload session) is at a replaced parent's origin.
  bool at_replaced_parent(const std::string& url) const;
  ReplayerOptions opts_;
  LoopTimer poll_;
  bool running_ = false;
  bool down_ = false;      ///< shutdown(): never again
  bool fetching_ = false;
  bool probing_ = false;   ///< waiting for the parent's mode before the first push of a window
  bool probed_ = false;
  bool idle_ = false;      ///< the last fetch found nothing to start and nothing is in flight
  bool again_ = false;     ///< poke() during a fetch: fetch once more after it
  uint64_t gen_ = 0;       ///< bumped by stop(): outcomes of an older window are ignored
  /// retry_now(): the next fetches ignore next_attempt, each entry once.
  bool force_ = false;
  std::unordered_set<int64_t> forced_;
  std::unordered_map<int64_t, TaskPtr> tasks_;  ///< in flight, by entry id
  ReplayProgress progress_;
  std::function<void()> on_change_;
  uint64_t rng_;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace outpost::sync
