// sync/schedule: windows open and close on a fake clock (no real waiting):
// look-back of one window length, overlapping windows, manual windows from
// `sync now`, continuous mode, and what status reads.
#include <catch2/catch.hpp>

#include <string>

#include "sync/schedule.hpp"
#include "time_helpers.hpp"

using outpost::sync::PullThrough;
using outpost::sync::SyncSchedule;
using outpost::sync::TimeZone;
using outpost::sync::Window;
using sync_test::iso;
using sync_test::utc;

namespace {

constexpr int64_t kHour = 3'600'000;
constexpr int64_t kDay = 24 * kHour;

SyncSchedule scheduled(const std::string& cron, int64_t window_ms, int64_t* clock) {
  auto r = SyncSchedule::create(cron, static_cast<uint64_t>(window_ms), TimeZone::Utc, [clock] { return *clock; });
  if (!r) FAIL(r.error().detail);
  return std::move(r).value();
}

std::string show(const std::optional<Window>& w) {
  if (!w) return "none";
  return "[" + iso(w->start_ms) + ", " + iso(w->end_ms) + ")" + (w->manual ? " manual" : "");
}

}  // namespace

TEST_CASE("schedule: continuous sync is always open and has nothing to open", "[sync][schedule]") {
  int64_t now = utc(2026, 6, 1, 3);
  auto r = SyncSchedule::create("", kHour, TimeZone::Utc, [&] { return now; });
  REQUIRE(r.ok());
  SyncSchedule s = std::move(*r);
  CHECK(s.is_continuous());
  CHECK(s.is_open());
  CHECK(s.is_open(0));
  CHECK(s.next_open(now) == now);
  CHECK_FALSE(s.current_window(now));
  CHECK_FALSE(s.next_window(now));
  CHECK_FALSE(s.open_now(now));  // `sync now` is a no-op
  CHECK_FALSE(s.last_window(now));
  CHECK(SyncSchedule::create("  ", kHour, TimeZone::Utc).value().is_continuous());
  CHECK(SyncSchedule::continuous().is_open());
}

TEST_CASE("schedule: a bad cron string is an error", "[sync][schedule]") {
  auto r = SyncSchedule::create("0 2 * *", kHour, TimeZone::Utc);
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().detail.find("has 4 fields") != std::string::npos);
}

TEST_CASE("schedule: a daily window opens at the match and lasts `window`", "[sync][schedule]") {
  int64_t now = utc(2026, 6, 1, 1, 59);
  SyncSchedule s = scheduled("0 2 * * *", 4 * kHour, &now);
  CHECK_FALSE(s.is_continuous());
  CHECK_FALSE(s.is_open());  // reads the injected clock
  CHECK(iso(s.next_open(now)) == "2026-06-01T02:00:00Z");
  CHECK(show(s.next_window(now)) == "[2026-06-01T02:00:00Z, 2026-06-01T06:00:00Z)");
  CHECK_FALSE(s.current_window(now));

  now = utc(2026, 6, 1, 2);
  CHECK(s.is_open());
  CHECK(s.next_open(now) == now);
  CHECK(show(s.current_window(now)) == "[2026-06-01T02:00:00Z, 2026-06-01T06:00:00Z)");
  CHECK(show(s.next_window(now)) == "[2026-06-02T02:00:00Z, 2026-06-02T06:00:00Z)");

  now = utc(2026, 6, 1, 6) - 1;
  CHECK(s.is_open());
  now = utc(2026, 6, 1, 6);  // half-open: the end is outside
  CHECK_FALSE(s.is_open());
  CHECK(iso(s.next_open(now)) == "2026-06-02T02:00:00Z");
  CHECK(show(s.last_window(now)) == "[2026-06-01T02:00:00Z, 2026-06-01T06:00:00Z)");

  // The clock may go backwards (NTP step); the answer follows it.
  CHECK(s.is_open(utc(2026, 6, 1, 3)));
  CHECK_FALSE(s.is_open(utc(2026, 6, 1, 1)));
  CHECK(show(s.last_window(utc(2026, 6, 1, 1))) == "[2026-05-31T02:00:00Z, 2026-05-31T06:00:00Z)");
  // Far jumps in both directions.
  CHECK(s.is_open(utc(2030, 1, 1, 5)));
  CHECK_FALSE(s.is_open(utc(2020, 1, 1, 7)));
}

TEST_CASE("schedule: a window looks back one window length (multi-day windows)", "[sync][schedule]") {
  // Mondays at 00:00 for two days. 2026-12-07 is a Monday.
  int64_t now = utc(2026, 12, 8, 12);  // Tuesday noon
  SyncSchedule s = scheduled("0 0 * * 1", 2 * kDay, &now);
  CHECK(s.is_open());
  CHECK(show(s.current_window(now)) == "[2026-12-07T00:00:00Z, 2026-12-09T00:00:00Z)");
  CHECK_FALSE(s.is_open(utc(2026, 12, 9)));
  CHECK(iso(s.next_open(utc(2026, 12, 9))) == "2026-12-14T00:00:00Z");
  CHECK_FALSE(s.is_open(utc(2026, 12, 6, 23, 59)));
  // A 7-day window from a weekly start never closes.
  SyncSchedule week = scheduled("0 0 * * 1", 7 * kDay, &now);
  for (int64_t t = utc(2026, 12, 1); t < utc(2026, 12, 31); t += 5 * kHour + 17 * 60'000) {
    INFO(iso(t));
    CHECK(week.is_open(t));
  }
}

TEST_CASE("schedule: overlapping windows run together", "[sync][schedule]") {
  int64_t now = utc(2026, 6, 1, 10, 30);
  SyncSchedule s = scheduled("0 * * * *", 2 * kHour, &now);
  CHECK(s.is_open());
  CHECK(show(s.current_window(now)) == "[2026-06-01T10:00:00Z, 2026-06-01T12:00:00Z)");
  SyncSchedule every_minute = scheduled("* * * * *", 7 * kDay, &now);
  CHECK(show(every_minute.current_window(now)) == "[2026-06-01T10:30:00Z, 2026-06-08T10:30:00Z)");
  CHECK(iso(every_minute.next_open(now)) == iso(now));
}

TEST_CASE("schedule: `sync now` opens a manual window of `window`", "[sync][schedule]") {
  int64_t now = utc(2026, 6, 1, 10);
  SyncSchedule s = scheduled("0 2 * * *", kHour, &now);
  CHECK_FALSE(s.is_open());
  auto w = s.open_now(now);
  REQUIRE(w);
  CHECK(show(w) == "[2026-06-01T10:00:00Z, 2026-06-01T11:00:00Z) manual");
  CHECK(s.is_open());
  CHECK(show(s.current_window(utc(2026, 6, 1, 10, 30))) == "[2026-06-01T10:00:00Z, 2026-06-01T11:00:00Z) manual");
  CHECK_FALSE(s.is_open(utc(2026, 6, 1, 11)));
  CHECK(show(s.last_window(utc(2026, 6, 1, 12))) == "[2026-06-01T10:00:00Z, 2026-06-01T11:00:00Z) manual");
  // Once a later scheduled window has started, that one is the last.
  CHECK(show(s.last_window(utc(2026, 6, 2, 4))) == "[2026-06-02T02:00:00Z, 2026-06-02T03:00:00Z)");

  // Opening again restarts from now; close_manual ends it early.
  now = utc(2026, 6, 1, 10, 45);
  CHECK(show(s.open_now(now)) == "[2026-06-01T10:45:00Z, 2026-06-01T11:45:00Z) manual");
  CHECK(s.is_open(utc(2026, 6, 1, 11, 30)));
  s.close_manual();
  CHECK_FALSE(s.is_open(utc(2026, 6, 1, 11, 30)));
}

TEST_CASE("schedule: a manual window overlapping a scheduled one is their union", "[sync][schedule]") {
  int64_t now = utc(2026, 6, 1, 5, 30);
  SyncSchedule s = scheduled("0 2 * * *", 4 * kHour, &now);
  REQUIRE(s.is_open());
  s.open_now(now);
  CHECK(show(s.current_window(utc(2026, 6, 1, 5, 45))) == "[2026-06-01T02:00:00Z, 2026-06-01T09:30:00Z)");
  CHECK(show(s.current_window(utc(2026, 6, 1, 7))) == "[2026-06-01T05:30:00Z, 2026-06-01T09:30:00Z) manual");
  CHECK(s.is_open(utc(2026, 6, 1, 9, 29)));
  CHECK_FALSE(s.is_open(utc(2026, 6, 1, 9, 30)));
}

TEST_CASE("schedule: local time zone", "[sync][schedule]") {
  sync_test::ScopedTz tz("Europe/Berlin");
  int64_t now = utc(2026, 5, 31, 12);
  auto r = SyncSchedule::create("0 2 * * *", kHour, TimeZone::Local, [&] { return now; });
  REQUIRE(r.ok());
  CHECK(r->time_zone() == TimeZone::Local);
  CHECK(show(r->next_window(now)) == "[2026-06-01T00:00:00Z, 2026-06-01T01:00:00Z)");  // 02:00 CEST
  CHECK(r->is_open(utc(2026, 6, 1, 0, 30)));
  CHECK_FALSE(r->is_open(utc(2026, 6, 1, 2, 30)));
}

TEST_CASE("schedule: pull-through policy", "[sync][schedule]") {
  CHECK(outpost::sync::pull_through_allowed(PullThrough::Always, false));
  CHECK(outpost::sync::pull_through_allowed(PullThrough::Always, true));
  CHECK(outpost::sync::pull_through_allowed(PullThrough::InWindow, true));
  CHECK_FALSE(outpost::sync::pull_through_allowed(PullThrough::InWindow, false));
  CHECK_FALSE(outpost::sync::pull_through_allowed(PullThrough::Never, true));
}

TEST_CASE("schedule: the system clock is the default", "[sync][schedule]") {
  const int64_t a = outpost::sync::system_wall_clock_ms();
  CHECK(a > utc(2020, 1, 1));
  auto r = SyncSchedule::create("0 2 * * *", kHour, TimeZone::Utc);
  REQUIRE(r.ok());
  CHECK(r->now() >= a);
}

// is_open and current_window against the definition, minute by minute: open
// at `now` iff some match s has now - window < s <= now, and the window
// reported starts at the latest such s. Queried in a shuffled time order so
// the cached latest start is exercised going forwards and backwards.
TEST_CASE("schedule: is_open agrees with the definition", "[sync][schedule]") {
  const char* exprs[] = {"0 2 * * *", "*/20 9-17 * * 1-5", "15 */3 * * *", "0 0 1,15 * *", "45 23 * * 0"};
  const int64_t windows[] = {kHour, 3 * kHour, 26 * kHour};
  uint32_t seed = 7;
  int open_seen = 0, closed_seen = 0;
  for (const char* e : exprs) {
    auto c = outpost::sync::CronExpr::parse(e);
    REQUIRE(c.ok());
    for (int64_t w : windows) {
      int64_t clock = 0;
      SyncSchedule s = scheduled(e, w, &clock);
      for (int i = 0; i < 60; ++i) {
        seed = seed * 1'103'515'245u + 12'345u;
        const int64_t now = utc(2026, 12, 1) + static_cast<int64_t>(seed % (40u * 86'400u)) * 1000 + (seed % 997);
        std::optional<int64_t> latest;
        for (int64_t m = (now / 60'000) * 60'000; m > now - w; m -= 60'000) {
          std::time_t tt = static_cast<std::time_t>(m / 1000);
          std::tm tm{};
          gmtime_r(&tt, &tm);
          if (c->matches(tm.tm_min, tm.tm_hour, tm.tm_mday, tm.tm_mon + 1, tm.tm_wday)) {
            latest = m;
            break;
          }
        }
        INFO(e << " window " << w / kHour << "h at " << iso(now));
        CHECK(s.is_open(now) == latest.has_value());
        if (latest) {
          ++open_seen;
          CHECK(show(s.current_window(now)) == show(Window{*latest, *latest + w, false}));
        } else {
          ++closed_seen;
        }
      }
    }
  }
  CHECK(open_seen > 50);
  CHECK(closed_seen > 50);
}
