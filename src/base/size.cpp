// Sizes and durations as operators write them. Strict: digits immediately
// followed by one known unit, no sign, no spaces, no fractions; every
// multiplication is overflow-checked. Errors are Errc::ConfigInvalid whose
// detail reads well after a "file:line: key: " prefix.
#include "base/size.hpp"

#include <cstdio>
#include <limits>
#include <string>

namespace outpost {

namespace {

struct Unit {
  std::string_view suffix;
  uint64_t factor;
};

// Binary units are what the defaults use; decimal ones are accepted because
// disks are sold in them. "B" is an explicit spelling of plain bytes.
constexpr Unit kSizeUnits[] = {
    {"", 1},
    {"B", 1},
    {"KiB", uint64_t{1} << 10},
    {"MiB", uint64_t{1} << 20},
    {"GiB", uint64_t{1} << 30},
    {"TiB", uint64_t{1} << 40},
    {"KB", 1'000},
    {"MB", 1'000'000},
    {"GB", 1'000'000'000},
    {"TB", 1'000'000'000'000},
};

constexpr Unit kDurationUnits[] = {
    {"ms", 1},
    {"s", 1'000},
    {"m", 60'000},
    {"h", 3'600'000},
    {"d", 86'400'000},
};

// The value as it will appear in a message: quoted, printable, bounded.
std::string quoted(std::string_view s) {
  constexpr size_t kMax = 64;
  std::string out = "\"";
  for (size_t i = 0; i < s.size() && i < kMax; ++i) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else {
      out += (c < 0x20 || c == 0x7f) ? '?' : static_cast<char>(c);
    }
  }
  if (s.size() > kMax) out += "...";
  out += '"';
  return out;
}

enum class Parse { Ok, Malformed, Overflow };

// "<digits><suffix>" with suffix one of `units`; *out = digits * factor.
template <size_t N>
Parse parse_quantity(std::string_view s, const Unit (&units)[N], uint64_t* out) {
  size_t i = 0;
  uint64_t n = 0;
  bool overflow = false;
  constexpr uint64_t kMax = std::numeric_limits<uint64_t>::max();
  while (i < s.size() && s[i] >= '0' && s[i] <= '9') {
    uint64_t d = static_cast<uint64_t>(s[i] - '0');
    if (n > (kMax - d) / 10) overflow = true;  // keep scanning: "1x" beats "too large"
    else n = n * 10 + d;
    ++i;
  }
  if (i == 0) return Parse::Malformed;
  std::string_view suffix = s.substr(i);
  for (const Unit& u : units) {
    if (suffix != u.suffix) continue;
    if (overflow || n > kMax / u.factor) return Parse::Overflow;
    *out = n * u.factor;
    return Parse::Ok;
  }
  return Parse::Malformed;
}

}  // namespace

Result<uint64_t> parse_size(std::string_view s) {
  uint64_t v = 0;
  switch (parse_quantity(s, kSizeUnits, &v)) {
    case Parse::Ok:
      return v;
    case Parse::Overflow:
      return Error(Errc::ConfigInvalid, quoted(s) + " is too large a size");
    case Parse::Malformed:
      break;
  }
  return Error(Errc::ConfigInvalid,
               quoted(s) + " is not a size (e.g. \"512\", \"64KiB\", \"4MiB\", \"200GiB\")");
}

Result<uint64_t> parse_duration_ms(std::string_view s) {
  uint64_t v = 0;
  switch (parse_quantity(s, kDurationUnits, &v)) {
    case Parse::Ok:
      return v;
    case Parse::Overflow:
      return Error(Errc::ConfigInvalid, quoted(s) + " is too long a duration");
    case Parse::Malformed:
      break;
  }
  return Error(Errc::ConfigInvalid, quoted(s) + " is not a duration (e.g. \"30s\", \"5m\")");
}

std::string human_size(uint64_t n) {
  static const char* kUnits[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = static_cast<double>(n);
  int u = 0;
  while (v >= 1024 && u < 4) {
    v /= 1024;
    ++u;
  }
  char buf[32];
  if (u == 0) snprintf(buf, sizeof buf, "%llu B", static_cast<unsigned long long>(n));
  else snprintf(buf, sizeof buf, "%.1f %s", v, kUnits[u]);
  return buf;
}

}  // namespace outpost
