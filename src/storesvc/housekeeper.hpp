// Housekeeper: the server's cache management around the store (issue #18),
// loop-thread side. Owns no store data; everything blocking runs as a
// StoreService job.
//   - access times: touch() records reads in a loop-owned map (no SQLite
//     per GET); a timer flushes them in one pool job (a crash loses recency,
//     never data);
//   - eviction: a pool job when the store may be over its limits (polled
//     after writes through Store::bytes_written, an atomic) and on a timer;
//     one pass at a time;
//   - GC on a schedule (storage.gc_interval) and on demand (POST /outpost/gc);
//   - check on demand (POST /outpost/check), one at a time, rate-limited,
//     with progress readable while it runs;
//   - the figures status and metrics show (usage by origin, evicted
//     totals, last GC, last check).
#pragma once
#include <uv.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>

#include "base/digest.hpp"
#include "store/check.hpp"
#include "store/evict.hpp"
#include "store/gc.hpp"
#include "store/types.hpp"
#include "storesvc/store_service.hpp"

namespace outpost::storesvc {

struct HousekeeperOptions {
  store::EvictOptions evict;   ///< limits (unset: no eviction) and grace
  store::GcOptions gc;         ///< upload_ttl, grace
  int64_t gc_interval_ms = 60 * 60 * 1000;  ///< 0: no scheduled GC
  int64_t first_gc_ms = 60 * 1000;          ///< first scheduled GC after start
  int64_t evict_interval_ms = 60 * 1000;    ///< timer pass (and usage refresh)
  int64_t write_poll_ms = 500;              ///< how often bytes_written is looked at
  int64_t access_flush_ms = 30 * 1000;
  size_t access_max_pending = 65536;        ///< flush early beyond this many digests
  uint64_t check_rate = 100ull * 1024 * 1024;  ///< bytes/s for server-side checks
  /// What a pass after a disk-full write frees at least (10% of the
  /// filesystem, at most EvictOptions::free_at_least_max).
  store::SizeLimit disk_full_reserve{0, 10};
};

/// Everything status/metrics show. Loop thread.
struct StorageStats {
  std::optional<store::StorageUsage> usage;  ///< last measured (nullopt: not yet)
  int64_t usage_ms = 0;
  uint64_t quota = 0;          ///< resolved max_size (0: none)
  uint64_t evicted_bytes = 0;  ///< since start
  uint64_t evicted_blobs = 0;
  uint64_t evicted_manifests = 0;
  uint64_t eviction_passes = 0;
  bool last_evict_short = false;  ///< the last pass could not free enough
  std::optional<store::GcReport> last_gc;
  int64_t last_gc_ms = 0;
  uint64_t last_gc_duration_ms = 0;
  std::string last_gc_error;
  std::optional<store::CheckReport> last_check;
  std::string last_check_error;
  bool check_running = false;
};

class Housekeeper {
 public:
  Housekeeper(uv_loop_t* loop, StoreService& store, HousekeeperOptions opts);
  ~Housekeeper();
  Housekeeper(const Housekeeper&) = delete;
  Housekeeper& operator=(const Housekeeper&) = delete;

  /// Starts the timers (unref'd: they never keep the loop alive).
  void start();
  /// Stops timers, asks a running check to stop, flushes access times as a
  /// last job. Call before StoreService::drain().
  void stop();

  /// A read of `d` (blob or manifest) now. Loop thread, O(1), no I/O.
  void touch(const Digest& d);

  /// Runs an eviction pass unless one is running.
  /// `disk_full`: a write just failed for want of space, so the pass frees
  /// at least `disk_full_reserve` of cached content.
  void evict_now(bool disk_full = false);
  /// One GC pass now (`dry_run`: report only); `done` on the loop.
  /// `grace_ms` >= 0 replaces the 10 min grace of unreferenced blobs (an
  /// operator who deleted content and wants the space now).
  void gc_now(bool dry_run, StoreService::Done<store::GcReport> done, int64_t grace_ms = -1);
  /// Starts a check; false when one is running already.
  bool start_check(bool repair, uint64_t rate);
  /// The running check's progress (null when none runs).
  const store::CheckProgress* check_progress() const { return check_progress_.get(); }

  const StorageStats& stats() const { return stats_; }
  const HousekeeperOptions& options() const { return opts_; }
  /// Access times waiting for the next flush.
  size_t pending_access() const { return access_.size(); }

 private:
  struct Timer;
  Timer* make_timer(std::function<void()> fn);
  void flush_access();
  void poll_writes();
  void refresh_usage();
  void on_evicted(Result<store::EvictReport> r);

  uv_loop_t* loop_;
  StoreService& store_;
  HousekeeperOptions opts_;
  StorageStats stats_;
  std::unordered_map<std::string, int64_t> access_;  ///< digest -> last read ms
  int64_t wall_offset_ms_ = 0;  ///< wall clock minus uv_now at construction
  uint64_t seen_written_ = 0;
  uint64_t seen_nospace_ = 0;
  bool evict_again_disk_full_ = false;
  bool evicting_ = false;
  bool evict_again_ = false;
  bool gc_running_ = false;
  bool stopped_ = false;
  std::shared_ptr<store::CheckProgress> check_progress_;
  Timer* flush_timer_ = nullptr;
  Timer* poll_timer_ = nullptr;
  Timer* evict_timer_ = nullptr;
  Timer* gc_timer_ = nullptr;
};

}  // namespace outpost::storesvc
