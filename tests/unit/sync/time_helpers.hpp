// Test helpers: UTC calendar times as epoch milliseconds, and a scoped TZ.
#pragma once
#include <cstdint>
#include <cstdlib>
#include <ctime>
#include <optional>
#include <string>

namespace sync_test {

/// Milliseconds since the epoch of a UTC calendar time.
inline int64_t utc(int y, int mo, int d, int h = 0, int mi = 0, int s = 0) {
  std::tm t{};
  t.tm_year = y - 1900;
  t.tm_mon = mo - 1;
  t.tm_mday = d;
  t.tm_hour = h;
  t.tm_min = mi;
  t.tm_sec = s;
  return static_cast<int64_t>(timegm(&t)) * 1000;
}

/// "2026-03-29T01:00:00Z" for failure messages.
inline std::string iso(std::optional<int64_t> ms) {
  if (!ms) return "none";
  std::time_t t = static_cast<std::time_t>(*ms / 1000);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

/// Sets TZ for the scope of one test (local-time schedules), then restores it.
class ScopedTz {
 public:
  explicit ScopedTz(const char* tz) {
    if (const char* old = std::getenv("TZ")) old_ = old;
    setenv("TZ", tz, 1);
    tzset();
  }
  ~ScopedTz() {
    if (old_)
      setenv("TZ", old_->c_str(), 1);
    else
      unsetenv("TZ");
    tzset();
  }
  ScopedTz(const ScopedTz&) = delete;
  ScopedTz& operator=(const ScopedTz&) = delete;

 private:
  std::optional<std::string> old_;
};

}  // namespace sync_test
