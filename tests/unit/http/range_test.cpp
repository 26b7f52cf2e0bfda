// evaluate_range: RFC 9110 single byte ranges against a representation size.
#include <catch2/catch.hpp>

#include <cstdint>
#include <optional>
#include <string>

#include "http/range.hpp"

using outpost::http::evaluate_range;
using outpost::http::RangeResult;
using outpost::http::RangeVerdict;

namespace {
RangeResult eval(const char* h, uint64_t size) {
  return evaluate_range(h ? std::optional<std::string_view>(h) : std::nullopt, size);
}
void check_partial(const char* h, uint64_t size, uint64_t off, uint64_t len) {
  INFO("Range: " << h << " size=" << size);
  RangeResult r = eval(h, size);
  REQUIRE(r.verdict == RangeVerdict::Partial);
  CHECK(r.range.offset == off);
  CHECK(r.range.length == len);
}
void check_whole(const char* h, uint64_t size) {
  INFO("Range: " << (h ? h : "(none)") << " size=" << size);
  CHECK(eval(h, size).verdict == RangeVerdict::Whole);
}
void check_416(const char* h, uint64_t size) {
  INFO("Range: " << h << " size=" << size);
  CHECK(eval(h, size).verdict == RangeVerdict::Unsatisfiable);
}
}  // namespace

TEST_CASE("range: no header means the whole representation", "[http][range]") {
  check_whole(nullptr, 100);
  check_whole(nullptr, 0);
}

TEST_CASE("range: first and last byte positions", "[http][range]") {
  check_partial("bytes=0-0", 100, 0, 1);
  check_partial("bytes=0-99", 100, 0, 100);
  check_partial("bytes=10-19", 100, 10, 10);
  check_partial("bytes=99-99", 100, 99, 1);
  check_partial("bytes=0-0", 1, 0, 1);
  // optional whitespace around the numbers and the value
  check_partial(" bytes=5-9 ", 100, 5, 5);
  check_partial("bytes= 5 - 9", 100, 5, 5);
}

TEST_CASE("range: open-ended ranges run to the end", "[http][range]") {
  check_partial("bytes=0-", 100, 0, 100);
  check_partial("bytes=40-", 100, 40, 60);
  check_partial("bytes=99-", 100, 99, 1);
}

TEST_CASE("range: suffix ranges are the last N bytes", "[http][range]") {
  check_partial("bytes=-1", 100, 99, 1);
  check_partial("bytes=-10", 100, 90, 10);
  check_partial("bytes=-100", 100, 0, 100);
  // a suffix longer than the representation is the whole of it, as a 206
  check_partial("bytes=-500", 100, 0, 100);
  check_416("bytes=-0", 100);
}

TEST_CASE("range: a last position beyond the end is clamped", "[http][range]") {
  check_partial("bytes=0-1000", 100, 0, 100);
  check_partial("bytes=50-18446744073709551615", 100, 50, 50);
  check_partial("bytes=99-100", 100, 99, 1);
}

TEST_CASE("range: a first position at or beyond the size is unsatisfiable", "[http][range]") {
  check_416("bytes=100-", 100);
  check_416("bytes=100-200", 100);
  check_416("bytes=1000-2000", 100);
  check_416("bytes=1-1", 1);
}

TEST_CASE("range: multiple ranges are answered with the whole body", "[http][range]") {
  check_whole("bytes=0-0,5-9", 100);
  check_whole("bytes=0-0, -1", 100);
  check_whole("bytes=0-10,200-300", 100);
}

TEST_CASE("range: garbage is ignored (whole body)", "[http][range]") {
  for (const char* h : {"", "bytes", "bytes=", "bytes=-", "bytes=abc", "bytes=a-b", "bytes=1-a",
                        "bytes=-x", "bytes=10", "bytes=5-2", "items=0-10", "Bytes=0-10", "bytes 0-10",
                        "bytes=+1-2", "bytes=1--2", "bytes=--1", "bytes=0x10-20",
                        "bytes=99999999999999999999999-", "bytes=0-99999999999999999999999"}) {
    check_whole(h, 100);
  }
}

TEST_CASE("range: a zero-length representation", "[http][range]") {
  check_whole(nullptr, 0);
  check_416("bytes=0-", 0);
  check_416("bytes=0-0", 0);
  check_416("bytes=0-10", 0);
  check_416("bytes=-1", 0);
  check_416("bytes=5-", 0);
  check_whole("bytes=x", 0);
  check_whole("bytes=0-0,1-1", 0);
}

TEST_CASE("range: large sizes do not overflow", "[http][range]") {
  const uint64_t big = 10ull << 40;  // 10 TiB
  check_partial("bytes=-1", big, big - 1, 1);
  check_partial("bytes=0-", big, 0, big);
  check_partial("bytes=1099511627776-", big, 1ull << 40, big - (1ull << 40));
  check_416("bytes=10995116277760-", big);
}

// parse_content_range: the PATCH Content-Range of chunked uploads (moved here
// from src/api/uploads.cpp so that it can be fuzzed on its own).
TEST_CASE("content-range: upload chunk bounds", "[http][range]") {
  using outpost::http::parse_content_range;
  auto r = parse_content_range("0-1023");
  REQUIRE(r);
  CHECK(r->start == 0);
  CHECK(r->end == 1023);
  r = parse_content_range("bytes 1024-2047/4096");
  REQUIRE(r);
  CHECK(r->start == 1024);
  CHECK(r->end == 2047);
  r = parse_content_range("5-5/*");
  REQUIRE(r);
  CHECK(r->end - r->start + 1 == 1);
  for (const char* bad : {"", "-", "5", "5-", "-5", "6-5", "a-b", "1-2x", " 1-2", "+1-2", "1--2",
                          "bytes=0-1", "0-18446744073709551616"}) {
    INFO("Content-Range: " << bad);
    CHECK_FALSE(parse_content_range(bad));
  }
  // The largest end would make the length end - start + 1 wrap to 0, which a
  // "Content-Length: 0" request then matched.
  CHECK_FALSE(parse_content_range("0-18446744073709551615"));
  r = parse_content_range("0-18446744073709551614");
  REQUIRE(r);
  CHECK(r->end - r->start + 1 == UINT64_MAX);
}
