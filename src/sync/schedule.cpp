// Sync window arithmetic over CronExpr::next_match. Finding the latest start
// at or before now uses only forward searches (next_match is monotone in its
// argument): gallop back until a match lies in (now - d, now], then bisect.
#include "sync/schedule.hpp"

#include <ctime>

#include <algorithm>
#include <utility>

namespace outpost::sync {

namespace {

constexpr int64_t kMinuteMs = 60'000;
constexpr int64_t kDayMs = 86'400'000;
constexpr int64_t kMaxLookbackMs = int64_t{9} * 366 * kDayMs;  // as far as next_match searches

}  // namespace

int64_t system_wall_clock_ms() {
  std::timespec ts{};
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1'000'000;
}

SyncSchedule SyncSchedule::continuous(WallClock clock) {
  SyncSchedule s;
  s.clock_ = std::move(clock);
  return s;
}

SyncSchedule::SyncSchedule(CronExpr cron, uint64_t window_ms, TimeZone tz, WallClock clock)
    : cron_(std::move(cron)), window_ms_(window_ms), tz_(tz), clock_(std::move(clock)) {}

Result<SyncSchedule> SyncSchedule::create(std::string_view schedule, uint64_t window_ms, TimeZone tz,
                                          WallClock clock) {
  if (schedule.find_first_not_of(" \t") == std::string_view::npos) {
    SyncSchedule s = continuous(std::move(clock));
    s.window_ms_ = window_ms;  // the length of nothing, kept for status
    s.tz_ = tz;
    return s;
  }
  auto c = CronExpr::parse(schedule);
  if (!c) return std::move(c).error();
  return SyncSchedule(std::move(*c), window_ms, tz, std::move(clock));
}

std::optional<int64_t> SyncSchedule::latest_start(int64_t now) const {
  if (!cron_) return std::nullopt;
  if (cache_valid_ && cache_lo_ <= now && now < cache_hi_) return cache_start_;

  const auto next_after_now = cron_->next_match(now, tz_);
  // Gallop: find d with a match in (now - d, now].
  std::optional<int64_t> found;
  int64_t d = std::max<int64_t>(static_cast<int64_t>(window_ms_), kMinuteMs);
  for (int i = 0; i < 64; ++i) {
    auto m = cron_->next_match(now - d, tz_);
    if (m && *m <= now) {
      found = m;
      break;
    }
    if (d >= kMaxLookbackMs) break;
    d = std::min(d * 2, kMaxLookbackMs);
  }
  std::optional<int64_t> latest;
  if (found) {
    // Bisect on p: next_match(lo) <= now < next_match(hi). Matches are whole
    // minutes, so once hi - lo <= 1 min, next_match(lo) is the last <= now.
    int64_t lo = now - d, hi = now;
    for (int i = 0; i < 64 && hi - lo > kMinuteMs; ++i) {
      const int64_t mid = lo + (hi - lo) / 2;
      auto m = cron_->next_match(mid, tz_);
      if (m && *m <= now)
        lo = mid;
      else
        hi = mid;
    }
    latest = cron_->next_match(lo, tz_);
  }
  cache_valid_ = true;
  cache_lo_ = latest ? std::min(*latest, now) : now;
  cache_hi_ = next_after_now ? *next_after_now : INT64_MAX;
  cache_start_ = latest;
  return latest;
}

std::optional<Window> SyncSchedule::scheduled_window(int64_t now) const {
  auto s = latest_start(now);
  if (!s) return std::nullopt;
  Window w{*s, *s + static_cast<int64_t>(window_ms_), false};
  if (!w.contains(now)) return std::nullopt;
  return w;
}

bool SyncSchedule::is_open(int64_t now) const {
  if (!cron_) return true;
  if (manual_ && manual_->contains(now)) return true;
  return scheduled_window(now).has_value();
}

std::optional<Window> SyncSchedule::current_window(int64_t now) const {
  if (!cron_) return std::nullopt;
  std::optional<Window> sched = scheduled_window(now);
  std::optional<Window> man = manual_ && manual_->contains(now) ? manual_ : std::nullopt;
  if (sched && man) {
    // Both cover now, so they overlap: one window, the union of the two.
    return Window{std::min(sched->start_ms, man->start_ms), std::max(sched->end_ms, man->end_ms),
                  man->start_ms < sched->start_ms};
  }
  return sched ? sched : man;
}

std::optional<Window> SyncSchedule::next_window(int64_t now) const {
  if (!cron_) return std::nullopt;
  auto s = cron_->next_match(now, tz_);
  if (!s) return std::nullopt;
  return Window{*s, *s + static_cast<int64_t>(window_ms_), false};
}

std::optional<int64_t> SyncSchedule::next_open(int64_t now) const {
  if (is_open(now)) return now;
  auto w = next_window(now);
  if (!w) return std::nullopt;
  // A manual window cannot start in the future (open_now starts at now).
  return w->start_ms;
}

std::optional<Window> SyncSchedule::last_window(int64_t now) const {
  std::optional<Window> man = manual_ && manual_->start_ms <= now ? manual_ : std::nullopt;
  std::optional<Window> sched;
  if (auto s = latest_start(now)) sched = Window{*s, *s + static_cast<int64_t>(window_ms_), false};
  if (sched && man) {
    if (sched->contains(now) && man->contains(now)) return current_window(now);
    return man->start_ms >= sched->start_ms ? man : sched;
  }
  return sched ? sched : man;
}

std::optional<Window> SyncSchedule::open_now(int64_t now) {
  if (!cron_) return std::nullopt;
  manual_ = Window{now, now + static_cast<int64_t>(window_ms_), true};
  return manual_;
}

}  // namespace outpost::sync
