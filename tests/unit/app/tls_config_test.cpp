// [tls] (issue #16): HTTPS listeners beside the plain ones, and their files.
#include <catch2/catch.hpp>

#include <string>

#include "app/config.hpp"

using namespace outpost::app;

namespace {
outpost::Result<Config> parse(const std::string& text) { return parse_config(text, "t.toml"); }
}  // namespace

TEST_CASE("[tls] defaults to no HTTPS listener") {
  auto r = parse("");
  REQUIRE(r.ok());
  CHECK(r->tls.listen.empty());
  CHECK(r->tls.cert.empty());
  CHECK(r->server.listen == std::vector<std::string>{"127.0.0.1:5000"});
}

TEST_CASE("[tls] listen, cert and key parse; plain listeners stay as configured") {
  auto r = parse("[server]\nlisten = [\"127.0.0.1:5000\"]\n"
                 "[tls]\nlisten = [\"0.0.0.0:5443\", \"[::]:5443\"]\ncert = \"/etc/outpost/c.pem\"\n"
                 "key = \"/etc/outpost/k.pem\"\n");
  REQUIRE(r.ok());
  CHECK(r->server.listen == std::vector<std::string>{"127.0.0.1:5000"});
  CHECK(r->tls.listen == std::vector<std::string>{"0.0.0.0:5443", "[::]:5443"});
  CHECK(r->tls.cert == "/etc/outpost/c.pem");
  CHECK(r->tls.key == "/etc/outpost/k.pem");
  CHECK(dump_config(*r).find("[tls]") != std::string::npos);
}

TEST_CASE("[tls] listen without cert or key is refused, naming the keys") {
  auto r = parse("[tls]\nlisten = [\"0.0.0.0:5443\"]\ncert = \"/c.pem\"\n");
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().detail.find("tls.cert and tls.key") != std::string::npos);
}

TEST_CASE("[tls] a bad listen address or an unknown key is refused with its line") {
  auto r = parse("[tls]\nlisten = [\"localhost:5443\"]\ncert = \"/c\"\nkey = \"/k\"\n");
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().detail.find("t.toml:2") != std::string::npos);
  auto u = parse("[tls]\nciphers = \"all\"\n");
  REQUIRE_FALSE(u.ok());
  CHECK(u.error().detail.find("unknown key 'tls.ciphers'") != std::string::npos);
}
