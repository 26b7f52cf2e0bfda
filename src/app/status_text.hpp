// Reading /outpost/status JSON for people: `outpost status` (cli_status.cpp)
// and the status page (status_page.cpp) show the same values, each key that
// is absent, null or of the wrong type as "n/a", never a crash.
#pragma once
#include <cstdint>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <string>

namespace outpost::app::status_text {

inline constexpr const char* kNa = "n/a";

/// A non-negative integer (parsed JSON has them unsigned, built JSON maybe signed).
inline bool is_count(const nlohmann::json& v) {
  return v.is_number_unsigned() || (v.is_number_integer() && v.get<int64_t>() >= 0);
}

/// How a fractional value (the hit ratio) is shown.
enum class Fraction { Percent, Plain };

/// The value at a JSON pointer as plain text: strings as they are, booleans
/// as yes/no, fractions per `f`, "n/a" when absent or null.
inline std::string text_at(const nlohmann::json& j, const char* pointer, Fraction f) {
  const nlohmann::json::json_pointer p(pointer);
  if (!j.contains(p)) return kNa;
  const nlohmann::json& v = j.at(p);
  if (v.is_null()) return kNa;
  if (v.is_string()) return v.get<std::string>();
  if (v.is_boolean()) return v.get<bool>() ? "yes" : "no";
  if (v.is_number_float()) {
    char buf[32];
    if (f == Fraction::Percent) snprintf(buf, sizeof buf, "%.1f%%", v.get<double>() * 100);
    else snprintf(buf, sizeof buf, "%.3f", v.get<double>());
    return buf;
  }
  return v.dump();
}

}  // namespace outpost::app::status_text
