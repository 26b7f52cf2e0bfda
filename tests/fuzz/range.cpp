// Fuzz target: Range (GET) and Content-Range (upload PATCH) parsing
// (src/http/range). Input: "<representation size>\n<header value>"; without
// a newline the whole input is the header and the size is its length.
// A Partial range must lie inside the representation; a parsed Content-Range
// must have end >= start and a length that does not wrap.
#include <charconv>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "fuzz_check.hpp"
#include "http/range.hpp"

using namespace outpost::http;

namespace {
void check_range(std::string_view header, uint64_t size) {
  RangeResult r = evaluate_range(header, size);
  switch (r.verdict) {
    case RangeVerdict::Whole:
      break;
    case RangeVerdict::Partial:
      FUZZ_CHECK(size > 0);
      FUZZ_CHECK(r.range.length >= 1);
      FUZZ_CHECK(r.range.offset < size);
      FUZZ_CHECK(r.range.length <= size - r.range.offset);
      break;
    case RangeVerdict::Unsatisfiable:
      break;
  }
  // The same header is never worse for a larger representation: the range
  // stays at the same offset (a suffix range moves with the end, by one).
  if (r.verdict == RangeVerdict::Partial && size < UINT64_MAX) {
    RangeResult bigger = evaluate_range(header, size + 1);
    FUZZ_CHECK(bigger.verdict == RangeVerdict::Partial);
    FUZZ_CHECK(bigger.range.offset == r.range.offset || bigger.range.offset == r.range.offset + 1);
  }
  FUZZ_CHECK(evaluate_range(std::nullopt, size).verdict == RangeVerdict::Whole);
}

void check_content_range(std::string_view header) {
  auto cr = parse_content_range(header);
  if (!cr) return;
  FUZZ_CHECK(cr->end >= cr->start);
  FUZZ_CHECK(cr->end - cr->start + 1 != 0);
  // Printed back the way a client writes it, it parses to the same bounds.
  const std::string again = std::to_string(cr->start) + "-" + std::to_string(cr->end);
  auto back = parse_content_range(again);
  FUZZ_CHECK(back && back->start == cr->start && back->end == cr->end);
  auto with_unit = parse_content_range("bytes " + again + "/*");
  FUZZ_CHECK(with_unit && with_unit->start == cr->start && with_unit->end == cr->end);
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  uint64_t rep_size = size;
  std::string_view header = in;
  if (size_t nl = in.find('\n'); nl != std::string_view::npos) {
    std::string_view num = in.substr(0, nl);
    uint64_t n = 0;
    auto [p, ec] = std::from_chars(num.data(), num.data() + num.size(), n);
    if (ec == std::errc() && p == num.data() + num.size()) rep_size = n;
    header = in.substr(nl + 1);
  }
  check_range(header, rep_size);
  check_range(header, 0);
  check_content_range(header);
  return 0;
}
