// Sync windows: when Outpost may talk to its parent for background work
// (replay, kept-repository refresh, probes). A cron schedule plus a window
// length, or continuous sync; manual windows from `outpost sync now`.
// Knows nothing about what is done inside a window, nor about the event loop.
#pragma once
#include <cstdint>
#include <functional>
#include <optional>
#include <string_view>

#include "base/result.hpp"
#include "sync/cron.hpp"

namespace outpost::sync {

/// Wall-clock milliseconds since the Unix epoch. Injected so that tests
/// drive the schedule with a fake clock and never wait on real time.
using WallClock = std::function<int64_t()>;

/// The real wall clock (CLOCK_REALTIME, in ms).
int64_t system_wall_clock_ms();

/// sync.pull_through: may a client's miss be fetched from the parent?
enum class PullThrough { Always = 0, InWindow = 1, Never = 2 };

/// True when a client-driven fetch from the parent is allowed now.
inline bool pull_through_allowed(PullThrough p, bool window_open) {
  return p == PullThrough::Always || (p == PullThrough::InWindow && window_open);
}

/// A half-open interval [start_ms, end_ms) of wall-clock milliseconds.
struct Window {
  int64_t start_ms = 0;
  int64_t end_ms = 0;
  bool manual = false;  ///< opened by open_now (`outpost sync now`), not by the schedule

  bool contains(int64_t t) const { return start_ms <= t && t < end_ms; }
  bool operator==(const Window&) const = default;
};

/// When sync may run. Continuous (no cron) means always open.
///
/// A window starts at each cron match and lasts window_ms; at `now` the
/// schedule is open when some match s has s <= now < s + window_ms (so it
/// looks back as far as one window length; overlapping windows chain).
///
/// Thread: not thread-safe; owned and called by one thread (the loop). The
/// const queries cache the last computed window, hence `mutable` state.
class SyncSchedule {
 public:
  /// Continuous sync: always open; open_now is a no-op.
  static SyncSchedule continuous(WallClock clock = &system_wall_clock_ms);

  /// Scheduled sync. `window_ms` > 0 (config bounds: 1h .. 7d).
  SyncSchedule(CronExpr cron, uint64_t window_ms, TimeZone tz, WallClock clock = &system_wall_clock_ms);

  /// From config strings: an empty `schedule` is continuous sync; otherwise
  /// it is parsed (Errc::ConfigInvalid as from CronExpr::parse).
  static Result<SyncSchedule> create(std::string_view schedule, uint64_t window_ms, TimeZone tz,
                                     WallClock clock = &system_wall_clock_ms);

  bool is_continuous() const { return !cron_.has_value(); }
  uint64_t window_ms() const { return window_ms_; }
  TimeZone time_zone() const { return tz_; }
  const std::optional<CronExpr>& cron() const { return cron_; }

  /// The injected clock's reading.
  int64_t now() const { return clock_(); }

  /// True when background work may reach the parent at `now`.
  bool is_open(int64_t now) const;
  bool is_open() const { return is_open(now()); }

  /// The window open at `now` (scheduled or manual; when both are open, the
  /// union of the two); nullopt when closed. Continuous: nullopt too (there
  /// is no window, sync is always on): check is_continuous() first.
  std::optional<Window> current_window(int64_t now) const;

  /// The next scheduled window that starts strictly after `now`; nullopt
  /// when continuous (or the cron expression has no match in ~9 years).
  std::optional<Window> next_window(int64_t now) const;

  /// When sync may next run: `now` if open now, else the next window's
  /// start. nullopt: never (no future match).
  std::optional<int64_t> next_open(int64_t now) const;

  /// The most recent window that started at or before `now` (open or
  /// already over), for status: "last window start/end". Scheduled starts
  /// are looked for up to ~9 years back; nullopt when there is none (or
  /// continuous sync without a manual window).
  std::optional<Window> last_window(int64_t now) const;

  /// `outpost sync now`: opens a manual window [now, now + window_ms).
  /// Opening again while one is open restarts it from `now`. Continuous:
  /// no-op (returns nullopt: there is nothing to open).
  std::optional<Window> open_now(int64_t now);

  /// Ends a manual window early (e.g. the queue drained with --wait); the
  /// scheduled windows are unaffected.
  void close_manual() { manual_.reset(); }

 private:
  SyncSchedule() = default;

  /// The scheduled window containing `now`, if any.
  std::optional<Window> scheduled_window(int64_t now) const;
  /// The latest cron match at or before `now`, if any (cached).
  std::optional<int64_t> latest_start(int64_t now) const;

  std::optional<CronExpr> cron_;
  uint64_t window_ms_ = 0;
  TimeZone tz_ = TimeZone::Utc;
  WallClock clock_;
  std::optional<Window> manual_;

  // Cache of latest_start(): the answer holds for every now in [lo, hi),
  // hi being the first match after lo (no new window starts in between).
  mutable bool cache_valid_ = false;
  mutable int64_t cache_lo_ = 0;
  mutable int64_t cache_hi_ = 0;
  mutable std::optional<int64_t> cache_start_;
};

}  // namespace outpost::sync
