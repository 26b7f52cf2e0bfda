// 5-field cron expressions (minute hour day-of-month month day-of-week) for
// sync.schedule: parsing with errors as values, and the next start time in UTC
// or local time. Pure computation on wall-clock milliseconds: no clock, no
// loop, no knowledge of what a window does.
#pragma once
#include <bitset>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "base/result.hpp"

namespace outpost::sync {

/// Which clock the fields of a schedule are read on (sync.timezone).
enum class TimeZone { Utc = 0, Local = 1 };

/// A parsed cron expression. Grammar, per field (vixie cron / POSIX crontab):
///   field := item ("," item)*
///   item  := ("*" | N | N "-" M) ("/" STEP)?      N "/" STEP means N-max/STEP
/// Ranges: minute 0-59, hour 0-23, day-of-month 1-31, month 1-12 (or jan-dec),
/// day-of-week 0-7 (0 and 7 are Sunday; or sun-sat). When both day-of-month
/// and day-of-week are restricted (neither starts with "*"), a day matches if
/// EITHER matches (the classic cron OR rule); otherwise both must.
/// A value type: copyable, no state beyond the parsed sets.
class CronExpr {
 public:
  /// Errc::ConfigInvalid with a detail that quotes the input and names the
  /// field: "\"0 2 * *\" has 4 fields; a schedule has 5: minute hour
  /// day-of-month month day-of-week", "hour: 24 is out of range (0 .. 23)".
  /// An expression that can never match (e.g. "0 0 31 2 *") is refused too.
  static Result<CronExpr> parse(std::string_view text);

  /// The first minute strictly after `after_ms` (ms since the Unix epoch)
  /// whose fields, read in `tz`, match; nullopt only if none falls within
  /// the search bound (about 9 years, enough for every Feb 29).
  ///
  /// Local time and DST (sync.timezone = "local"):
  ///  - a wall-clock minute skipped by a spring-forward jump (02:30 on the
  ///    night clocks go 02:00 -> 03:00) starts at the first instant after the
  ///    jump (03:00), so no day loses its window;
  ///  - a wall-clock minute that occurs twice (fall-back) matches only its
  ///    first occurrence.
  std::optional<int64_t> next_match(int64_t after_ms, TimeZone tz) const;

  /// True when the broken-down time (tm-style fields: month 1-12, dow 0-6)
  /// matches, ignoring DST questions.
  bool matches(int minute, int hour, int mday, int month, int wday) const;

  const std::string& text() const { return text_; }

 private:
  bool day_matches(int mday, int month, int wday) const;

  std::string text_;
  std::bitset<60> minutes_;
  std::bitset<24> hours_;
  std::bitset<32> mdays_;   ///< bits 1..31
  std::bitset<13> months_;  ///< bits 1..12
  std::bitset<7> wdays_;    ///< bits 0..6, Sunday = 0 (7 folded onto 0)
  bool mday_star_ = true;   ///< day-of-month field started with "*"
  bool wday_star_ = true;   ///< day-of-week field started with "*"
};

}  // namespace outpost::sync
