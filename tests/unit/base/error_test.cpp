// error_body: the OCI error JSON every refusal is answered with.
#include <catch2/catch.hpp>

#include <string>

#include <nlohmann/json.hpp>

#include "base/error.hpp"

using outpost::Errc;
using outpost::Error;
using outpost::error_body;

TEST_CASE("error_body: code, message, detail", "[error]") {
  auto j = nlohmann::json::parse(error_body(Error(Errc::NotFound, "no route for /x")));
  REQUIRE(j["errors"].size() == 1);
  CHECK(j["errors"][0]["code"] == "NOT_FOUND");
  CHECK(j["errors"][0]["detail"] == "no route for /x");
  CHECK(nlohmann::json::parse(error_body(Error(Errc::NotFound)))["errors"][0]["detail"].is_null());
}

// Found by the http_request and manifest fuzz targets: a detail quoting a
// request path or header that is not UTF-8 made nlohmann's dump() throw, and
// from a body callback (inside llhttp) that terminated the registry.
TEST_CASE("error_body: a detail that is not UTF-8 still gives JSON", "[error]") {
  const std::string detail = "malformed Content-Range '0-9\xff\xfe' and /\xc3(";
  std::string body;
  REQUIRE_NOTHROW(body = error_body(Error(Errc::RangeInvalid, detail)));
  auto j = nlohmann::json::parse(body);
  CHECK(j["errors"][0]["code"] == "RANGE_INVALID");
  CHECK(j["errors"][0]["detail"] == "malformed Content-Range '0-9\xef\xbf\xbd\xef\xbf\xbd' and /\xef\xbf\xbd(");
}
