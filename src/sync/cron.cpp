// Cron parsing and next-start search. The search walks real time (UTC
// seconds) and reads each candidate's fields in the chosen zone, skipping a
// whole day, hour or run of minutes when a field cannot match, so DST
// transitions are seen as they happen instead of computed around.
#include "sync/cron.hpp"

#include <ctime>

#include <array>
#include <cctype>
#include <string>
#include <vector>

namespace outpost::sync {

namespace {

constexpr std::array<std::string_view, 12> kMonthNames = {"jan", "feb", "mar", "apr", "may", "jun",
                                                          "jul", "aug", "sep", "oct", "nov", "dec"};
constexpr std::array<std::string_view, 7> kDayNames = {"sun", "mon", "tue", "wed", "thu", "fri", "sat"};

struct FieldSpec {
  std::string_view name;
  int lo, hi;
  const std::string_view* names;  ///< three-letter names, or nullptr
  int names_count;
  int names_base;  ///< value of names[0]
};

constexpr FieldSpec kFields[5] = {
    {"minute", 0, 59, nullptr, 0, 0},
    {"hour", 0, 23, nullptr, 0, 0},
    {"day-of-month", 1, 31, nullptr, 0, 0},
    {"month", 1, 12, kMonthNames.data(), 12, 1},
    {"day-of-week", 0, 7, kDayNames.data(), 7, 0},
};

std::string quoted(std::string_view s) {
  std::string out = "\"";
  out += s;
  out += '"';
  return out;
}

Error field_error(const FieldSpec& f, std::string_view why) {
  std::string d(f.name);
  d += ": ";
  d += why;
  return Error(Errc::ConfigInvalid, std::move(d));
}

std::string range_text(int lo, int hi) { return "(" + std::to_string(lo) + " .. " + std::to_string(hi) + ")"; }

/// A number or (for month and day-of-week) a three-letter name.
Result<int> parse_value(std::string_view s, const FieldSpec& f) {
  if (s.empty()) return field_error(f, "empty value");
  if (std::isdigit(static_cast<unsigned char>(s[0]))) {
    for (char c : s) {
      if (!std::isdigit(static_cast<unsigned char>(c))) return field_error(f, quoted(s) + " is not a number");
    }
    if (s.size() > 6) return field_error(f, quoted(s) + " is too large");  // and could overflow an int
    int v = 0;
    for (char c : s) v = v * 10 + (c - '0');
    if (v < f.lo || v > f.hi) return field_error(f, std::string(s) + " is out of range " + range_text(f.lo, f.hi));
    return v;
  }
  if (f.names && s.size() == 3) {
    for (int i = 0; i < f.names_count; ++i) {
      std::string_view n = f.names[i];
      bool eq = true;
      for (size_t k = 0; k < 3; ++k) {
        if (std::tolower(static_cast<unsigned char>(s[k])) != n[k]) eq = false;
      }
      if (eq) return f.names_base + i;
    }
  }
  return field_error(f, quoted(s) + " is not a number" + std::string(f.names ? " or a name" : ""));
}

/// Sets the bits of one field ("1,5-10/2,*/15") in *mask (bit v = value v).
Status parse_field(std::string_view text, const FieldSpec& f, uint64_t* mask, bool* star) {
  *mask = 0;
  *star = !text.empty() && text[0] == '*';
  size_t pos = 0;
  while (true) {
    size_t comma = text.find(',', pos);
    std::string_view item = text.substr(pos, comma == std::string_view::npos ? std::string_view::npos : comma - pos);
    if (item.empty()) return field_error(f, quoted(text) + " has an empty list item");

    std::string_view base = item;
    int step = 1;
    bool has_step = false;
    if (size_t slash = item.find('/'); slash != std::string_view::npos) {
      base = item.substr(0, slash);
      std::string_view st = item.substr(slash + 1);
      if (st.empty()) return field_error(f, quoted(item) + " has no step after \"/\"");
      int v = 0;
      for (char c : st) {
        if (!std::isdigit(static_cast<unsigned char>(c)) || v > 1000)
          return field_error(f, "step " + quoted(st) + " is not a number");
        v = v * 10 + (c - '0');
      }
      const int max_step = f.hi - f.lo + (f.hi == 7 ? 0 : 1);  // dow: 0 and 7 are one day
      if (v < 1 || v > max_step)
        return field_error(f, "step " + std::to_string(v) + " is out of range " + range_text(1, max_step));
      step = v;
      has_step = true;
    }
    int lo = 0, hi = 0;
    if (base == "*") {
      lo = f.lo;
      hi = f.hi == 7 ? 6 : f.hi;  // "*" in day-of-week is 0-6, so */2 is sun,tue,thu,sat
    } else if (size_t dash = base.find('-'); dash != std::string_view::npos) {
      auto a = parse_value(base.substr(0, dash), f);
      if (!a) return std::move(a).error();
      auto b = parse_value(base.substr(dash + 1), f);
      if (!b) return std::move(b).error();
      if (*a > *b) return field_error(f, "range " + quoted(base) + " is reversed (" + std::to_string(*a) + " > " + std::to_string(*b) + ")");
      lo = *a;
      hi = *b;
    } else {
      auto a = parse_value(base, f);
      if (!a) return std::move(a).error();
      lo = *a;
      hi = has_step ? f.hi : *a;  // "5/15" means 5-max/15 (cronie)
    }
    for (int v = lo; v <= hi; v += step) *mask |= uint64_t{1} << v;

    if (comma == std::string_view::npos) break;
    pos = comma + 1;
  }
  return {};
}

int days_in_month(int month, bool leap) {
  static constexpr int kDays[13] = {0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  return month == 2 && leap ? 29 : kDays[month];
}

// ---------------------------------------------------------------------------
// Time zone access: the only place that calls the C library's time functions.
// ---------------------------------------------------------------------------

bool fields_at(int64_t t, TimeZone tz, std::tm* out) {
  const std::time_t tt = static_cast<std::time_t>(t);
  return tz == TimeZone::Utc ? gmtime_r(&tt, out) != nullptr : localtime_r(&tt, out) != nullptr;
}

/// Seconds east of UTC in force at `t` (0 in UTC).
int64_t offset_at(int64_t t, TimeZone tz) {
  if (tz == TimeZone::Utc) return 0;
  std::tm tm{};
  if (!fields_at(t, tz, &tm)) return 0;
  return tm.tm_gmtoff;
}

/// Start of the day after the one `lt` (the fields of `t`) lies in.
int64_t next_day_start(const std::tm& lt, int64_t t, TimeZone tz) {
  std::tm n = lt;
  n.tm_mday += 1;
  n.tm_hour = n.tm_min = n.tm_sec = 0;
  n.tm_isdst = -1;  // let the C library find the offset in force then
  const int64_t r = tz == TimeZone::Utc ? static_cast<int64_t>(timegm(&n)) : static_cast<int64_t>(mktime(&n));
  // A midnight that does not exist locally may normalise to either side of
  // its gap; never step backwards (the loop must progress).
  return r > t ? r : t + 60;
}

constexpr int64_t kMinute = 60;
constexpr int64_t kSearchSeconds = int64_t{9} * 366 * 86'400;  // every Feb 29 lies within 8 years

}  // namespace

Result<CronExpr> CronExpr::parse(std::string_view text) {
  std::vector<std::string_view> parts;
  size_t i = 0;
  while (i < text.size()) {
    while (i < text.size() && (text[i] == ' ' || text[i] == '\t')) ++i;
    if (i >= text.size()) break;
    size_t j = i;
    while (j < text.size() && text[j] != ' ' && text[j] != '\t') ++j;
    parts.push_back(text.substr(i, j - i));
    i = j;
  }
  if (parts.size() != 5) {
    return Error(Errc::ConfigInvalid,
                 quoted(text) + " has " + std::to_string(parts.size()) + (parts.size() == 1 ? " field" : " fields") +
                     "; a schedule has 5: minute hour day-of-month month day-of-week (e.g. \"0 2 * * *\")");
  }
  CronExpr c;
  c.text_ = std::string(text);
  uint64_t masks[5] = {};
  bool stars[5] = {};
  for (int k = 0; k < 5; ++k) {
    if (Status st = parse_field(parts[k], kFields[k], &masks[k], &stars[k]); !st)
      return Error(Errc::ConfigInvalid, quoted(text) + ": " + st.error().detail);
  }
  if (masks[4] & (uint64_t{1} << 7)) masks[4] = (masks[4] | 1) & 0x7f;  // 7 is Sunday, like 0
  c.minutes_ = std::bitset<60>(masks[0]);
  c.hours_ = std::bitset<24>(masks[1]);
  c.mdays_ = std::bitset<32>(masks[2]);
  c.months_ = std::bitset<13>(masks[3]);
  c.wdays_ = std::bitset<7>(masks[4]);
  c.mday_star_ = stars[2];
  c.wday_star_ = stars[4];

  // A day-of-month that no chosen month has ("0 0 31 2 *") would never open
  // a window: refuse it at start rather than wait forever in silence. With
  // both day fields restricted the OR rule always finds a weekday.
  if (!c.mday_star_ && c.wday_star_) {
    bool possible = false;
    for (int m = 1; m <= 12 && !possible; ++m) {
      if (!c.months_[m]) continue;
      for (int d = 1; d <= days_in_month(m, true); ++d) {
        if (c.mdays_[d]) {
          possible = true;
          break;
        }
      }
    }
    if (!possible) {
      return Error(Errc::ConfigInvalid,
                   quoted(text) + " never matches: no chosen month has the chosen day-of-month");
    }
  }
  return c;
}

bool CronExpr::day_matches(int mday, int month, int wday) const {
  if (!months_[month]) return false;
  const bool md = mdays_[mday];
  const bool wd = wdays_[wday];
  // The POSIX / vixie rule: both restricted means either may match.
  if (!mday_star_ && !wday_star_) return md || wd;
  return md && wd;
}

bool CronExpr::matches(int minute, int hour, int mday, int month, int wday) const {
  if (minute < 0 || minute > 59 || hour < 0 || hour > 23 || mday < 1 || mday > 31 || month < 1 || month > 12 ||
      wday < 0 || wday > 6)
    return false;
  return minutes_[minute] && hours_[hour] && day_matches(mday, month, wday);
}

std::optional<int64_t> CronExpr::next_match(int64_t after_ms, TimeZone tz) const {
  // First whole minute strictly after `after_ms` (floor division: the epoch
  // may be negative in tests).
  int64_t t = after_ms / 1000;
  if (after_ms < 0 && after_ms % 1000 != 0) --t;
  t = (t >= 0 ? t / kMinute : (t - (kMinute - 1)) / kMinute) * kMinute + kMinute;
  const int64_t end = t + kSearchSeconds;

  // Each step advances at least one minute and skips non-matching days and
  // hours whole, so this bound is far above any real search.
  for (int steps = 0; t < end && steps < 1'000'000; ++steps) {
    std::tm lt{};
    if (!fields_at(t, tz, &lt)) return std::nullopt;
    const int month = lt.tm_mon + 1;
    if (!day_matches(lt.tm_mday, month, lt.tm_wday)) {
      t = next_day_start(lt, t, tz);
      continue;
    }
    if (tz == TimeZone::Local) {
      // Spring forward: the wall clock jumped at `t`. A skipped minute that
      // matches starts its window now, at the first instant after the jump.
      const int64_t off_now = lt.tm_gmtoff;
      const int64_t off_before = offset_at(t - kMinute, tz);
      if (off_now > off_before && off_now - off_before <= 86'400) {
        for (int64_t wall = t - kMinute + off_before + kMinute; wall < t + off_now; wall += kMinute) {
          std::tm w{};
          const std::time_t wt = static_cast<std::time_t>(wall);
          if (gmtime_r(&wt, &w) && matches(w.tm_min, w.tm_hour, w.tm_mday, w.tm_mon + 1, w.tm_wday))
            return t * 1000;
        }
      }
    }
    if (!hours_[lt.tm_hour]) {
      t += (60 - lt.tm_min) * kMinute - lt.tm_sec;
      continue;
    }
    if (!minutes_[lt.tm_min]) {
      int m = lt.tm_min + 1;
      while (m < 60 && !minutes_[m]) ++m;
      t += (m - lt.tm_min) * kMinute - lt.tm_sec;  // m == 60: the next hour
      continue;
    }
    if (tz == TimeZone::Local) {
      // Fall back: this wall minute already happened `back - off` seconds
      // ago under the earlier (larger) offset; it matched then.
      const int64_t off = lt.tm_gmtoff;
      const int64_t back = offset_at(t - 3 * 3600, tz);
      if (back > off && offset_at(t - (back - off), tz) == back) {
        t += kMinute;
        continue;
      }
    }
    return t * 1000;
  }
  return std::nullopt;
}

}  // namespace outpost::sync
