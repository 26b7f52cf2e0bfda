// WWW-Authenticate parsing (src/upstream/www_authenticate.cpp): the Bearer
// challenges registries send (realm/service/scope, error), Basic, quoted
// strings with escapes and commas, token values, whitespace, case, several
// challenges in one header, and malformed input.
#include <catch2/catch.hpp>

#include <string>

#include "upstream/www_authenticate.hpp"

using outpost::upstream::Challenge;
using outpost::upstream::parse_challenge;

namespace {

Challenge must_parse(const std::string& s) {
  auto c = parse_challenge(s);
  INFO("header: " << s);
  REQUIRE(c.has_value());
  return *c;
}

}  // namespace

TEST_CASE("www-authenticate: Docker Hub's Bearer challenge", "[upstream][auth]") {
  Challenge c = must_parse(
      R"(Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/alpine:pull")");
  CHECK(c.scheme == "bearer");
  CHECK(c.params.size() == 3);
  CHECK(c.param("realm") == "https://auth.docker.io/token");
  CHECK(c.param("service") == "registry.docker.io");
  CHECK(c.param("scope") == "repository:library/alpine:pull");
  CHECK(c.param("missing").empty());
}

TEST_CASE("www-authenticate: Bearer with an error and several scopes", "[upstream][auth]") {
  Challenge c = must_parse(
      R"(Bearer realm="https://ghcr.io/token",service="ghcr.io",scope="repository:a/b:pull repository:c:pull",error="insufficient_scope")");
  CHECK(c.scheme == "bearer");
  CHECK(c.param("scope") == "repository:a/b:pull repository:c:pull");
  CHECK(c.param("error") == "insufficient_scope");
}

TEST_CASE("www-authenticate: scheme and parameter names are case-insensitive; values keep their case",
          "[upstream][auth]") {
  Challenge c = must_parse(R"(BEARER Realm="https://Auth.Example/Token",SERVICE="Reg")");
  CHECK(c.scheme == "bearer");
  CHECK(c.param("realm") == "https://Auth.Example/Token");
  CHECK(c.param("service") == "Reg");
  CHECK(must_parse(R"(bAsIc realm="x")").scheme == "basic");
}

TEST_CASE("www-authenticate: quoted strings keep commas, spaces and '=' and unescape backslashes",
          "[upstream][auth]") {
  Challenge c = must_parse(R"(Bearer realm="a,b c=d",scope="repository:x:pull,push",service="q\"uo\\te\d")");
  CHECK(c.param("realm") == "a,b c=d");
  CHECK(c.param("scope") == "repository:x:pull,push");
  CHECK(c.param("service") == R"(q"uo\ted)");
}

TEST_CASE("www-authenticate: empty quoted values", "[upstream][auth]") {
  Challenge c = must_parse(R"(Bearer realm="",service="s")");
  CHECK(c.params.count("realm") == 1);
  CHECK(c.param("realm").empty());
  CHECK(c.param("service") == "s");
}

TEST_CASE("www-authenticate: unquoted token values", "[upstream][auth]") {
  Challenge c = must_parse("Bearer service=registry.example,error=invalid_token");
  CHECK(c.param("service") == "registry.example");
  CHECK(c.param("error") == "invalid_token");
}

TEST_CASE("www-authenticate: whitespace around '=' and ',' and leading/trailing", "[upstream][auth]") {
  Challenge c = must_parse("  Bearer   realm = \"https://a/t\" ,\tservice=\"s\"  ,  scope =\"x\"  ");
  CHECK(c.scheme == "bearer");
  CHECK(c.param("realm") == "https://a/t");
  CHECK(c.param("service") == "s");
  CHECK(c.param("scope") == "x");
}

TEST_CASE("www-authenticate: Basic, with and without a realm", "[upstream][auth]") {
  Challenge a = must_parse(R"(Basic realm="Registry Realm")");
  CHECK(a.scheme == "basic");
  CHECK(a.param("realm") == "Registry Realm");
  Challenge b = must_parse("Basic");
  CHECK(b.scheme == "basic");
  CHECK(b.params.empty());
  Challenge c = must_parse(R"(Basic realm="r", charset="UTF-8")");
  CHECK(c.param("charset") == "UTF-8");
}

TEST_CASE("www-authenticate: only the first of several challenges is read", "[upstream][auth]") {
  Challenge a = must_parse(R"(Bearer realm="https://a/token",service="s", Basic realm="b")");
  CHECK(a.scheme == "bearer");
  CHECK(a.param("realm") == "https://a/token");
  CHECK(a.param("service") == "s");
  CHECK(a.params.size() == 2);

  Challenge b = must_parse(R"(Basic realm="b", Bearer realm="https://a/token")");
  CHECK(b.scheme == "basic");
  CHECK(b.param("realm") == "b");
  CHECK(b.params.size() == 1);
}

TEST_CASE("www-authenticate: a repeated parameter keeps the last value", "[upstream][auth]") {
  Challenge c = must_parse(R"(Bearer realm="one",realm="two")");
  CHECK(c.param("realm") == "two");
}

TEST_CASE("www-authenticate: a token68 credential without '=' padding ends the parameters", "[upstream][auth]") {
  Challenge c = must_parse("Negotiate abcDEF123");
  CHECK(c.scheme == "negotiate");
  CHECK(c.params.empty());
}

TEST_CASE("www-authenticate: token68 with '=' padding is never mistaken for Basic/Bearer parameters",
          "[upstream][auth]") {
  // RFC 9110 allows "Negotiate YII=="; whether it parses or not, it must not
  // turn into a usable Bearer realm.
  auto c = parse_challenge("Negotiate YIIabc==");
  if (c) {
    CHECK(c->scheme == "negotiate");
    CHECK(c->param("realm").empty());
  }
}

TEST_CASE("www-authenticate: malformed headers are rejected", "[upstream][auth]") {
  const char* bad[] = {
      "",                                      // nothing
      "   ",                                   // only whitespace
      "=realm",                                // no scheme
      "\"Bearer\" realm=\"x\"",                // quoted scheme
      R"(Bearer realm="unterminated)",         // open quote
      R"(Bearer realm="abc\")",                // the escape eats the closing quote
      R"(Bearer ="x")",                        // parameter without a name
      R"(Bearer realm=https://a/token)",       // unquoted value that is not a token
  };
  for (const char* s : bad) {
    INFO("header: '" << s << "'");
    CHECK_FALSE(parse_challenge(s).has_value());
  }
}

TEST_CASE("www-authenticate: every prefix of a real challenge parses or fails without crashing",
          "[upstream][auth]") {
  const std::string full =
      R"(Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/alpine:pull")";
  int parsed = 0;
  for (size_t n = 0; n <= full.size(); ++n) {
    auto c = parse_challenge(full.substr(0, n));
    if (c) {
      ++parsed;
      CHECK(c->scheme.size() <= 6);
    }
  }
  CHECK(parsed > 0);
}

// parse_token_response: the token endpoint's JSON (moved out of the registry
// client so that it can be fuzzed on its own).
TEST_CASE("token response: token, access_token, expires_in", "[upstream][auth]") {
  using outpost::upstream::parse_token_response;
  auto g = parse_token_response(R"({"token":"abc","expires_in":300})");
  REQUIRE(g.ok());
  CHECK(g->token == "abc");
  CHECK(g->lifetime_ms == 295'000);
  g = parse_token_response(R"({"access_token":"xyz"})");
  REQUIRE(g.ok());
  CHECK(g->token == "xyz");
  CHECK(g->lifetime_ms == 55'000);  // default 60 s
  g = parse_token_response(R"({"token":7,"access_token":"xyz","expires_in":1})");
  REQUIRE(g.ok());
  CHECK(g->token == "xyz");
  CHECK(g->lifetime_ms == 5'000);  // at least 10 s
  g = parse_token_response(R"({"token":"t","expires_in":-4})");
  REQUIRE(g.ok());
  CHECK(g->lifetime_ms == 5'000);
  g = parse_token_response(R"({"token":"t","expires_in":1.5e3})");
  REQUIRE(g.ok());
  CHECK(g->lifetime_ms == 55'000);  // not an integer: the default
  // Huge values stay at one day instead of wrapping (before: a ttl above
  // INT64_MAX read as negative, and (ttl - 5) * 1000 overflowed).
  for (const char* huge : {R"({"token":"t","expires_in":18446744073709551615})",
                           R"({"token":"t","expires_in":9223372036854775807})"}) {
    g = parse_token_response(huge);
    REQUIRE(g.ok());
    CHECK(g->lifetime_ms == (86'400 - 5) * 1000);
  }
  for (const char* bad : {"", "[]", "\"token\"", "{\"token\":\"\"}", "{\"token\":null}", "{}", "{\"token\":\"a\""}) {
    INFO("body: " << bad);
    auto r = parse_token_response(bad);
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().code == outpost::Errc::UpstreamError);
  }
  CHECK(parse_token_response("[]").error().detail == "response is not JSON");
  CHECK(parse_token_response("{}").error().detail == "no token in response");
  // A token that would forge headers in the request it goes into.
  for (const char* forged : {R"({"token":"t\r\nX-Injected: yes"})", R"({"token":"a b"})", R"({"token":"a\u0000"})"}) {
    INFO("body: " << forged);
    auto r = parse_token_response(forged);
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().detail == "token has a space or control character");
  }
}
