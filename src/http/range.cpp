#include "http/range.hpp"

#include <charconv>

namespace outpost::http {

namespace {
bool parse_u64(std::string_view s, uint64_t* out) {
  if (s.empty()) return false;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), *out);
  return ec == std::errc() && p == s.data() + s.size();
}
std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}
}  // namespace

RangeResult evaluate_range(std::optional<std::string_view> header, uint64_t size) {
  RangeResult whole;
  if (!header) return whole;
  std::string_view h = trim(*header);
  constexpr std::string_view kUnit = "bytes=";
  if (h.size() < kUnit.size() || h.substr(0, kUnit.size()) != kUnit) return whole;
  h = trim(h.substr(kUnit.size()));
  if (h.find(',') != std::string_view::npos) return whole;  // multi-range: send it all
  size_t dash = h.find('-');
  if (dash == std::string_view::npos) return whole;
  std::string_view first = trim(h.substr(0, dash)), last = trim(h.substr(dash + 1));
  RangeResult r;
  if (first.empty()) {
    // suffix range: the last N bytes
    uint64_t n;
    if (!parse_u64(last, &n)) return whole;
    if (n == 0 || size == 0) return {RangeVerdict::Unsatisfiable, {}};
    if (n > size) n = size;
    r.verdict = RangeVerdict::Partial;
    r.range = {size - n, n};
    return r;
  }
  uint64_t a;
  if (!parse_u64(first, &a)) return whole;
  uint64_t b = size == 0 ? 0 : size - 1;
  if (!last.empty()) {
    if (!parse_u64(last, &b)) return whole;
    if (b < a) return whole;  // syntactically invalid per RFC 9110 §14.1.1: ignore
    if (b >= size) b = size - 1;
  }
  if (a >= size) return {RangeVerdict::Unsatisfiable, {}};
  r.verdict = RangeVerdict::Partial;
  r.range = {a, b - a + 1};
  return r;
}

std::optional<ContentRange> parse_content_range(std::string_view v) {
  if (v.substr(0, 6) == "bytes ") v.remove_prefix(6);
  size_t slash = v.find('/');
  if (slash != std::string_view::npos) v = v.substr(0, slash);
  size_t dash = v.find('-');
  if (dash == std::string_view::npos) return std::nullopt;
  ContentRange r;
  if (!parse_u64(v.substr(0, dash), &r.start) || !parse_u64(v.substr(dash + 1), &r.end) || r.end < r.start)
    return std::nullopt;
  // The chunk's length, end - start + 1, must not wrap to 0 (it is checked
  // against Content-Length): no upload reaches 2^64 - 1 bytes.
  if (r.end == UINT64_MAX) return std::nullopt;
  return r;
}

}  // namespace outpost::http
