// sync/cron: the 5-field grammar (good and bad input, exact messages) and
// next_match across hour, month and year ends, Feb 29, the dom/dow OR rule,
// steps, and local time across DST transitions.
#include <catch2/catch.hpp>

#include <string>

#include "sync/cron.hpp"
#include "time_helpers.hpp"

using outpost::Errc;
using outpost::sync::CronExpr;
using outpost::sync::TimeZone;
using sync_test::iso;
using sync_test::utc;

namespace {

CronExpr cron(const std::string& text) {
  auto r = CronExpr::parse(text);
  if (!r) FAIL("unexpected error for \"" << text << "\": " << r.error().detail);
  return std::move(r).value();
}

std::string bad(const std::string& text) {
  auto r = CronExpr::parse(text);
  INFO(text);
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().code == Errc::ConfigInvalid);
  return r.error().detail;
}

/// next_match in UTC, as ISO text so a failure shows both times readably.
std::string next(const std::string& text, int64_t after, TimeZone tz = TimeZone::Utc) {
  return iso(cron(text).next_match(after, tz));
}

}  // namespace

TEST_CASE("cron: well-formed expressions parse", "[sync][cron]") {
  for (const char* ok : {"* * * * *", "0 2 * * *", "*/15 * * * *", "0-30/10 8-17 * * mon-fri",
                         "0 0 1,15 * *", "5/20 * * * *", "0 0 * * 7", "0 0 * JAN,jul *", "59 23 31 12 6",
                         "0 0 29 2 *", "  0\t2  * * *  ", "0 0 * * 0-7", "0 0 * * SUN"}) {
    INFO(ok);
    CHECK(CronExpr::parse(ok).ok());
  }
  CHECK(cron("0 2 * * *").text() == "0 2 * * *");
}

TEST_CASE("cron: wrong field counts are refused with the count", "[sync][cron]") {
  CHECK(bad("0 2 * *") ==
        "\"0 2 * *\" has 4 fields; a schedule has 5: minute hour day-of-month month day-of-week (e.g. \"0 2 * * *\")");
  CHECK(bad("0 0 2 * * *").find("has 6 fields; a schedule has 5") != std::string::npos);
  CHECK(bad("").find("has 0 fields") != std::string::npos);
  CHECK(bad("@daily").find("has 1 field;") != std::string::npos);
}

TEST_CASE("cron: out-of-range values name the field and the range", "[sync][cron]") {
  CHECK(bad("60 * * * *") == "\"60 * * * *\": minute: 60 is out of range (0 .. 59)");
  CHECK(bad("* 24 * * *") == "\"* 24 * * *\": hour: 24 is out of range (0 .. 23)");
  CHECK(bad("* * 0 * *") == "\"* * 0 * *\": day-of-month: 0 is out of range (1 .. 31)");
  CHECK(bad("* * 32 * *") == "\"* * 32 * *\": day-of-month: 32 is out of range (1 .. 31)");
  CHECK(bad("* * * 13 *") == "\"* * * 13 *\": month: 13 is out of range (1 .. 12)");
  CHECK(bad("* * * 0 *") == "\"* * * 0 *\": month: 0 is out of range (1 .. 12)");
  CHECK(bad("* * * * 8") == "\"* * * * 8\": day-of-week: 8 is out of range (0 .. 7)");
  CHECK(bad("99999999999 * * * *").find("minute: \"99999999999\" is too large") != std::string::npos);
  CHECK(bad("1000 * * * *") == "\"1000 * * * *\": minute: 1000 is out of range (0 .. 59)");
  CHECK(bad("0 024 * * *") == "\"0 024 * * *\": hour: 024 is out of range (0 .. 23)");
  CHECK(CronExpr::parse("00 02 01 01 00").ok());
  CHECK(bad("1,61 * * * *").find("minute: 61 is out of range") != std::string::npos);
  CHECK(bad("0 0-24 * * *").find("hour: 24 is out of range") != std::string::npos);
}

TEST_CASE("cron: bad steps, ranges and tokens", "[sync][cron]") {
  CHECK(bad("*/0 * * * *") == "\"*/0 * * * *\": minute: step 0 is out of range (1 .. 60)");
  CHECK(bad("*/61 * * * *").find("minute: step 61 is out of range (1 .. 60)") != std::string::npos);
  CHECK(bad("* */25 * * *").find("hour: step 25 is out of range (1 .. 24)") != std::string::npos);
  CHECK(bad("*/ * * * *").find("minute: \"*/\" has no step after \"/\"") != std::string::npos);
  CHECK(bad("*/x * * * *").find("minute: step \"x\" is not a number") != std::string::npos);
  CHECK(bad("30-10 * * * *") == "\"30-10 * * * *\": minute: range \"30-10\" is reversed (30 > 10)");
  CHECK(bad("1,,2 * * * *").find("minute: \"1,,2\" has an empty list item") != std::string::npos);
  CHECK(bad("1, * * * *").find("has an empty list item") != std::string::npos);
  CHECK(bad("a * * * *").find("minute: \"a\" is not a number") != std::string::npos);
  CHECK(bad("* * * foo *").find("month: \"foo\" is not a number or a name") != std::string::npos);
  CHECK(bad("* * * * mon-") .find("day-of-week: empty value") != std::string::npos);
  CHECK(bad("-5 * * * *").find("minute: empty value") != std::string::npos);
  CHECK(bad("1-2-3 * * * *").find("minute:") != std::string::npos);
  CHECK(bad("*/5/5 * * * *").find("minute: step") != std::string::npos);
}

TEST_CASE("cron: a day that never comes is refused", "[sync][cron]") {
  CHECK(bad("0 0 31 2 *") == "\"0 0 31 2 *\" never matches: no chosen month has the chosen day-of-month");
  CHECK(bad("0 0 30 2 *").find("never matches") != std::string::npos);
  CHECK(bad("0 0 31 4,6,9,11 *").find("never matches") != std::string::npos);
  CHECK(CronExpr::parse("0 0 31 2,3 *").ok());
  CHECK(CronExpr::parse("0 0 31 2 1").ok());  // the OR rule: every Monday in February
}

TEST_CASE("cron: next_match is strictly after, across hour, day, month and year ends", "[sync][cron]") {
  CHECK(next("0 2 * * *", utc(2026, 12, 31, 23, 0)) == "2027-01-01T02:00:00Z");
  CHECK(next("0 2 * * *", utc(2026, 6, 1, 1, 59, 59)) == "2026-06-01T02:00:00Z");
  CHECK(next("0 2 * * *", utc(2026, 6, 1, 2, 0)) == "2026-06-02T02:00:00Z");  // strictly after
  CHECK(next("0 2 * * *", utc(2026, 6, 1, 2, 0) - 1) == "2026-06-01T02:00:00Z");
  CHECK(next("* * * * *", utc(2026, 6, 1, 2, 0) + 500) == "2026-06-01T02:01:00Z");
  CHECK(next("59 23 31 12 *", utc(2026, 1, 1)) == "2026-12-31T23:59:00Z");
  CHECK(next("0 0 1 * *", utc(2026, 12, 15)) == "2027-01-01T00:00:00Z");
  CHECK(next("0 0 31 * *", utc(2026, 4, 1)) == "2026-05-31T00:00:00Z");  // April has no 31st
  CHECK(next("0 0 * 2 *", utc(2026, 2, 28, 12)) == "2027-02-01T00:00:00Z");
}

TEST_CASE("cron: Feb 29 comes only in leap years", "[sync][cron]") {
  CHECK(next("0 12 29 2 *", utc(2026, 1, 1)) == "2028-02-29T12:00:00Z");
  CHECK(next("0 12 29 2 *", utc(2028, 2, 29, 12)) == "2032-02-29T12:00:00Z");
  // 2100 is not a leap year: eight years to the next Feb 29, within the bound.
  CHECK(next("0 0 29 2 *", utc(2096, 3, 1)) == "2104-02-29T00:00:00Z");
}

TEST_CASE("cron: day-of-month and day-of-week, OR when both are restricted", "[sync][cron]") {
  // 2026-12-01 is a Tuesday.
  CHECK(next("0 0 13 * 5", utc(2026, 12, 1)) == "2026-12-04T00:00:00Z");   // Friday the 4th (OR)
  CHECK(next("0 0 13 * 5", utc(2026, 12, 11, 1)) == "2026-12-13T00:00:00Z");  // the 13th, a Sunday
  CHECK(next("0 0 * * 1", utc(2026, 12, 1)) == "2026-12-07T00:00:00Z");    // dom "*": Mondays only
  CHECK(next("0 0 */2 * 1", utc(2026, 12, 1)) == "2026-12-07T00:00:00Z");  // "*/2" counts as "*": AND
  CHECK(next("0 0 */2 * 1", utc(2026, 12, 8)) == "2026-12-21T00:00:00Z");  // the 14th is even
  CHECK(next("0 0 * * 7", utc(2026, 12, 1)) == "2026-12-06T00:00:00Z");    // 7 is Sunday
  CHECK(next("0 0 * * 0", utc(2026, 12, 1)) == "2026-12-06T00:00:00Z");
  CHECK(next("0 0 * * sun", utc(2026, 12, 1)) == "2026-12-06T00:00:00Z");
  CHECK(next("0 0 * * 5-7", utc(2026, 12, 1)) == "2026-12-04T00:00:00Z");
  CHECK(next("0 0 * * 6-7", utc(2026, 12, 1)) == "2026-12-05T00:00:00Z");
  CHECK(next("0 0 1 * mon", utc(2026, 12, 1, 1)) == "2026-12-07T00:00:00Z");
}

TEST_CASE("cron: lists, ranges and steps", "[sync][cron]") {
  CHECK(next("*/15 * * * *", utc(2026, 6, 1, 10, 7)) == "2026-06-01T10:15:00Z");
  CHECK(next("*/15 * * * *", utc(2026, 6, 1, 10, 45)) == "2026-06-01T11:00:00Z");
  CHECK(next("*/15 * * * *", utc(2026, 6, 1, 10, 15)) == "2026-06-01T10:30:00Z");
  CHECK(next("5/20 * * * *", utc(2026, 6, 1, 10, 26)) == "2026-06-01T10:45:00Z");
  CHECK(next("0-30/10 8-17 * * *", utc(2026, 6, 1, 17, 30)) == "2026-06-02T08:00:00Z");
  CHECK(next("0-30/10 8-17 * * *", utc(2026, 6, 1, 9, 21)) == "2026-06-01T09:30:00Z");
  CHECK(next("0 6,18 * * *", utc(2026, 6, 1, 7)) == "2026-06-01T18:00:00Z");
  CHECK(next("0 0 * * */2", utc(2026, 12, 1)) == "2026-12-03T00:00:00Z");  // sun,tue,thu,sat
  CHECK(next("30 22 * * fri", utc(2026, 12, 1)) == "2026-12-04T22:30:00Z");
  CHECK(next("0 0 1 jan-mar/2 *", utc(2026, 1, 1, 1)) == "2026-03-01T00:00:00Z");
}

TEST_CASE("cron: matches()", "[sync][cron]") {
  CronExpr c = cron("0-30/10 8-17 * * mon-fri");
  CHECK(c.matches(10, 8, 1, 12, 2));
  CHECK_FALSE(c.matches(15, 8, 1, 12, 2));
  CHECK_FALSE(c.matches(10, 18, 1, 12, 2));
  CHECK_FALSE(c.matches(10, 8, 6, 12, 0));
  CHECK_FALSE(c.matches(60, 8, 1, 12, 2));  // out of range is no match, not UB
}

TEST_CASE("cron: local time follows the host zone and its DST transitions", "[sync][cron]") {
  sync_test::ScopedTz tz("Europe/Berlin");
  // Summer (CEST, UTC+2): 09:00 local is 07:00 UTC.
  CHECK(next("0 9 * * *", utc(2026, 6, 1), TimeZone::Local) == "2026-06-01T07:00:00Z");
  // Winter (CET, UTC+1).
  CHECK(next("0 9 * * *", utc(2026, 12, 1), TimeZone::Local) == "2026-12-01T08:00:00Z");
  // 2026-03-29: 02:00 CET jumps to 03:00 CEST, so 02:30 never happens; the
  // window starts right after the jump (01:00 UTC) rather than being lost.
  CHECK(next("30 2 * * *", utc(2026, 3, 28, 12), TimeZone::Local) == "2026-03-29T01:00:00Z");
  CHECK(next("30 2 * * *", utc(2026, 3, 29, 1), TimeZone::Local) == "2026-03-30T00:30:00Z");
  // Unaffected times that day are plain.
  CHECK(next("30 3 * * *", utc(2026, 3, 28, 12), TimeZone::Local) == "2026-03-29T01:30:00Z");
  CHECK(next("30 1 * * *", utc(2026, 3, 28, 12), TimeZone::Local) == "2026-03-29T00:30:00Z");
  // 2026-10-25: 03:00 CEST falls back to 02:00 CET, so 02:30 happens twice;
  // only the first (00:30 UTC) starts a window.
  CHECK(next("30 2 * * *", utc(2026, 10, 24, 12), TimeZone::Local) == "2026-10-25T00:30:00Z");
  CHECK(next("30 2 * * *", utc(2026, 10, 25, 0, 30), TimeZone::Local) == "2026-10-26T01:30:00Z");
  CHECK(next("*/30 2 * * *", utc(2026, 10, 25, 0, 30), TimeZone::Local) == "2026-10-26T01:00:00Z");
  // Hourly across the fall-back: 02:00 CEST, 03:00 CET (02:00 CET repeats).
  CHECK(next("0 * * * *", utc(2026, 10, 25, 0, 0), TimeZone::Local) == "2026-10-25T02:00:00Z");
  // UTC is unaffected by TZ.
  CHECK(next("30 2 * * *", utc(2026, 3, 28, 12), TimeZone::Utc) == "2026-03-29T02:30:00Z");
}

// next_match skips whole days, hours and minute runs; this checks it against
// the plainest possible search (every minute in turn) for many generated
// expressions, in UTC, in a half-hour-offset zone (the hour skips land on
// :00 local, not UTC) and in a DST zone around both transitions.
namespace {

/// Minute-by-minute reference: the first minute after `after` whose local
/// fields match and whose wall time did not already occur (fall-back), or
/// the first minute after a spring-forward jump that skipped a match.
std::optional<int64_t> brute_next(const CronExpr& c, int64_t after_ms, TimeZone tz, int64_t horizon_min) {
  auto fields = [&](int64_t t, std::tm* out) {
    std::time_t tt = static_cast<std::time_t>(t);
    return tz == TimeZone::Utc ? gmtime_r(&tt, out) : localtime_r(&tt, out);
  };
  auto wall = [&](int64_t t) {
    std::tm tm{};
    fields(t, &tm);
    return t + tm.tm_gmtoff;
  };
  auto match_wall = [&](int64_t w) {
    std::tm tm{};
    std::time_t tt = static_cast<std::time_t>(w);
    gmtime_r(&tt, &tm);
    return c.matches(tm.tm_min, tm.tm_hour, tm.tm_mday, tm.tm_mon + 1, tm.tm_wday);
  };
  int64_t t = (after_ms / 60'000 + 1) * 60;
  for (int64_t i = 0; i < horizon_min; ++i, t += 60) {
    const int64_t w = wall(t), w_prev = wall(t - 60);
    for (int64_t s = w_prev + 60; s < w; s += 60) {  // walls skipped just before t
      if (match_wall(s)) return t * 1000;
    }
    if (!match_wall(w)) continue;
    bool seen = false;
    for (int64_t back = 60; back <= 3 * 3600 && !seen; back += 60) seen = wall(t - back) == w;
    if (!seen) return t * 1000;
  }
  return std::nullopt;
}

std::string gen_field(uint32_t& seed, int lo, int hi) {
  auto rnd = [&](int n) {
    seed = seed * 1'103'515'245u + 12'345u;
    return static_cast<int>((seed >> 16) % static_cast<uint32_t>(n));
  };
  switch (rnd(5)) {
    case 0: return "*";
    case 1: return "*/" + std::to_string(1 + rnd(hi - lo));
    case 2: {
      int a = lo + rnd(hi - lo + 1), b = a + rnd(hi - a + 1);
      return std::to_string(a) + "-" + std::to_string(b) + (rnd(2) ? "/" + std::to_string(1 + rnd(3)) : "");
    }
    case 3: return std::to_string(lo + rnd(hi - lo + 1)) + "," + std::to_string(lo + rnd(hi - lo + 1));
    default: return std::to_string(lo + rnd(hi - lo + 1));
  }
}

}  // namespace

TEST_CASE("cron: next_match agrees with a minute-by-minute search", "[sync][cron]") {
  struct Zone {
    const char* tz;
    TimeZone kind;
    int64_t around;  // start times are drawn near this instant
  };
  const Zone zones[] = {{"UTC", TimeZone::Utc, utc(2026, 12, 31, 20)},
                        {"Asia/Kolkata", TimeZone::Local, utc(2027, 2, 27)},
                        {"Europe/Berlin", TimeZone::Local, utc(2026, 3, 28, 22)},
                        {"Europe/Berlin", TimeZone::Local, utc(2026, 10, 24, 22)}};
  uint32_t seed = 15;
  int compared = 0;
  for (const Zone& z : zones) {
    sync_test::ScopedTz scoped(z.tz);
    for (int i = 0; i < 120; ++i) {
      // Day fields kept loose so that most expressions match within the horizon.
      std::string text = gen_field(seed, 0, 59) + " " + gen_field(seed, 0, 23) + " " +
                         (i % 3 == 0 ? gen_field(seed, 1, 31) : "*") + " * " +
                         (i % 4 == 0 ? gen_field(seed, 0, 6) : "*");
      auto c = CronExpr::parse(text);
      if (!c) continue;  // e.g. a reversed range the generator cannot produce, or never-matching
      const int64_t after = z.around + static_cast<int64_t>(i) * 457'913;
      const auto want = brute_next(*c, after, z.kind, 40 * 24 * 60);
      if (!want) continue;
      INFO(z.tz << " \"" << text << "\" after " << iso(after));
      CHECK(iso(c->next_match(after, z.kind)) == iso(want));
      ++compared;
    }
  }
  CHECK(compared > 300);
}
