// Human sizes and durations: units, strictness and overflow.
#include <catch2/catch.hpp>

#include <string>

#include "base/size.hpp"

using outpost::Errc;
using outpost::parse_duration_ms;
using outpost::parse_size;

namespace {
uint64_t size_ok(const std::string& s) {
  INFO(s);
  auto r = parse_size(s);
  REQUIRE(r.ok());
  return *r;
}
uint64_t dur_ok(const std::string& s) {
  INFO(s);
  auto r = parse_duration_ms(s);
  REQUIRE(r.ok());
  return *r;
}
std::string size_bad(const std::string& s) {
  INFO(s);
  auto r = parse_size(s);
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().code == Errc::ConfigInvalid);
  return r.error().detail;
}
std::string dur_bad(const std::string& s) {
  INFO(s);
  auto r = parse_duration_ms(s);
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().code == Errc::ConfigInvalid);
  return r.error().detail;
}
}  // namespace

TEST_CASE("sizes", "[base][size]") {
  CHECK(size_ok("0") == 0);
  CHECK(size_ok("512") == 512);
  CHECK(size_ok("512B") == 512);
  CHECK(size_ok("64KiB") == 64 * 1024);
  CHECK(size_ok("4MiB") == 4u << 20);
  CHECK(size_ok("200GiB") == 200ull << 30);
  CHECK(size_ok("3TiB") == 3ull << 40);
  CHECK(size_ok("64KB") == 64'000);
  CHECK(size_ok("4MB") == 4'000'000);
  CHECK(size_ok("2GB") == 2'000'000'000);
  CHECK(size_ok("1TB") == 1'000'000'000'000);
  CHECK(size_ok("007KiB") == 7 * 1024);
  CHECK(size_ok("18446744073709551615") == 18446744073709551615ull);
}

TEST_CASE("malformed sizes", "[base][size]") {
  CHECK(size_bad("5x") == "\"5x\" is not a size (e.g. \"512\", \"64KiB\", \"4MiB\", \"200GiB\")");
  for (const char* s : {"", "KiB", "-1", "+1", " 1", "1 ", "1 KiB", "1kib", "1Kib", "1k", "1.5GiB",
                        "1e3", "0x10", "1KiBB", "1iB"}) {
    size_bad(s);
  }
}

TEST_CASE("size overflow", "[base][size]") {
  CHECK(size_bad("18446744073709551616").find("too large") != std::string::npos);
  CHECK(size_bad("99999999999999999999999999").find("too large") != std::string::npos);
  CHECK(size_ok("16777215TiB") == 16777215ull << 40);
  CHECK(size_bad("16777216TiB").find("too large") != std::string::npos);  // 2^64
  CHECK(size_bad("18446744073709551615KiB").find("too large") != std::string::npos);
  // Malformed wins over too large: the unit is wrong whatever the number.
  CHECK(size_bad("99999999999999999999999x").find("is not a size") != std::string::npos);
}

TEST_CASE("durations", "[base][size]") {
  CHECK(dur_ok("0ms") == 0);
  CHECK(dur_ok("250ms") == 250);
  CHECK(dur_ok("30s") == 30'000);
  CHECK(dur_ok("5m") == 300'000);
  CHECK(dur_ok("4h") == 14'400'000);
  CHECK(dur_ok("7d") == 604'800'000);
  CHECK(dur_ok("90d") == 90ull * 86'400'000);
}

TEST_CASE("malformed durations", "[base][size]") {
  CHECK(dur_bad("5x") == "\"5x\" is not a duration (e.g. \"30s\", \"5m\")");
  for (const char* s : {"", "30", "s", "-5s", "+5s", "5 s", "5S", "5sec", "1h30m", "1.5h", "5mss",
                        "5us", "5M", "5D"}) {
    dur_bad(s);
  }
  CHECK(dur_bad("a\"b").find("\\\"") != std::string::npos);  // quotes are escaped
}

TEST_CASE("duration overflow", "[base][size]") {
  CHECK(dur_bad("18446744073709551616ms").find("too long") != std::string::npos);
  CHECK(dur_ok("18446744073709551615ms") == 18446744073709551615ull);
  CHECK(dur_bad("18446744073709552s").find("too long") != std::string::npos);
  CHECK(dur_ok("213503982334d") == 213503982334ull * 86'400'000);
  CHECK(dur_bad("213503982335d").find("too long") != std::string::npos);
}
