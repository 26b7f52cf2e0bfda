// Absolute URLs for the upstream client (src/http/url.cpp): parse() of
// http/https with ports, IPv6 literals and queries; origin() as the pool key
// and the credential boundary; host_header(); resolve() of a Location header
// (absolute, scheme-relative, absolute-path, relative).
#include <catch2/catch.hpp>

#include <string>

#include "http/url.hpp"

using outpost::Errc;
using outpost::http::Url;

namespace {

Url must_parse(const std::string& s) {
  auto u = Url::parse(s);
  INFO(s);
  REQUIRE(u.ok());
  return *u;
}

}  // namespace

TEST_CASE("Url::parse: scheme, default ports, target", "[http][url]") {
  Url a = must_parse("http://registry.example");
  CHECK_FALSE(a.tls);
  CHECK(a.host == "registry.example");
  CHECK(a.port == 80);
  CHECK(a.target == "/");

  Url b = must_parse("https://registry.example/v2/");
  CHECK(b.tls);
  CHECK(b.port == 443);
  CHECK(b.target == "/v2/");

  Url c = must_parse("http://127.0.0.1:5000/v2/lib/alpine/blobs/sha256:ab?x=1&y=%2F");
  CHECK(c.host == "127.0.0.1");
  CHECK(c.port == 5000);
  CHECK(c.target == "/v2/lib/alpine/blobs/sha256:ab?x=1&y=%2F");
}

TEST_CASE("Url::parse: a query right after the authority gets a '/' path", "[http][url]") {
  Url u = must_parse("https://auth.example?service=reg");
  CHECK(u.host == "auth.example");
  CHECK(u.target == "/?service=reg");
  Url v = must_parse("http://h:81?a=b");
  CHECK(v.port == 81);
  CHECK(v.target == "/?a=b");
}

TEST_CASE("Url::parse: IPv6 literals keep the host without brackets", "[http][url]") {
  Url a = must_parse("http://[::1]:5000/v2/");
  CHECK(a.host == "::1");
  CHECK(a.port == 5000);
  CHECK(a.target == "/v2/");
  CHECK(a.origin() == "http://[::1]:5000");
  CHECK(a.host_header() == "[::1]:5000");

  Url b = must_parse("https://[2001:db8::7]");
  CHECK(b.host == "2001:db8::7");
  CHECK(b.port == 443);
  CHECK(b.target == "/");
  CHECK(b.host_header() == "[2001:db8::7]");
}

TEST_CASE("Url::parse: rejects what the client cannot use", "[http][url]") {
  const char* bad[] = {
      "",
      "registry.example/v2/",        // no scheme
      "ftp://registry.example/",     // other scheme
      "http:/registry.example",      // one slash
      "http://",                     // no host
      "http:///v2/",                 // empty host
      "http://:5000/",               // port only
      "http://user:pw@host/",        // credentials belong in the token file
      "http://host:0/",              // port 0
      "http://host:65536/",          // port out of range
      "http://host:99999999999/",    // overflows
      "http://host:5x/",             // not a number
      "http://host:-1/",             // negative
      "http://[::1/",                // unterminated IPv6
      "http://[::1]x/",              // junk after the IPv6 bracket
      "http://host/a b",             // a space would split the request line
      "http://host/a\r\nX-Injected: 1",  // and CR LF would add a header
      "http://host/a\tb",            // control characters
  };
  for (const char* s : bad) {
    INFO("url: '" << s << "'");
    auto u = Url::parse(s);
    REQUIRE_FALSE(u.ok());
    CHECK(u.error().code == Errc::ConfigInvalid);
  }
}

TEST_CASE("Url::parse: port bounds", "[http][url]") {
  CHECK(must_parse("http://h:1/").port == 1);
  CHECK(must_parse("http://h:65535/").port == 65535);
  CHECK(must_parse("https://h:80/").port == 80);  // explicit port wins over the scheme's
  // RFC 3986 §3.2.3: an empty port is the scheme's default.
  CHECK(must_parse("http://h:/x").port == 80);
  CHECK(must_parse("https://[::1]:/x").port == 443);
}

TEST_CASE("Url::origin: scheme, bracketed host and always the port", "[http][url]") {
  CHECK(must_parse("http://h/").origin() == "http://h:80");
  CHECK(must_parse("https://h/x").origin() == "https://h:443");
  CHECK(must_parse("https://h:443/x").origin() == "https://h:443");
  CHECK(must_parse("http://h:8080/a?b").origin() == "http://h:8080");
  // The credential boundary: scheme, host and port all matter.
  CHECK(must_parse("http://h/").origin() != must_parse("https://h/").origin());
  CHECK(must_parse("http://h:5000/").origin() != must_parse("http://h:5001/").origin());
  CHECK(must_parse("http://a.h/").origin() != must_parse("http://h/").origin());
  CHECK(must_parse("http://h:5000/v2/x").str() == "http://h:5000/v2/x");
}

TEST_CASE("Url::host_header: the port only when not the scheme's default", "[http][url]") {
  CHECK(must_parse("http://h/").host_header() == "h");
  CHECK(must_parse("http://h:80/").host_header() == "h");
  CHECK(must_parse("https://h:443/").host_header() == "h");
  CHECK(must_parse("https://h:80/").host_header() == "h:80");
  CHECK(must_parse("http://h:443/").host_header() == "h:443");
  CHECK(must_parse("http://127.0.0.1:5000/").host_header() == "127.0.0.1:5000");
}

TEST_CASE("Url::resolve: absolute Locations replace everything", "[http][url]") {
  Url base = must_parse("https://reg.example/v2/lib/blobs/sha256:aa");
  auto r = base.resolve("http://storage.example:9000/bucket/obj?X-Sig=abc");
  REQUIRE(r.ok());
  CHECK_FALSE(r->tls);
  CHECK(r->host == "storage.example");
  CHECK(r->port == 9000);
  CHECK(r->target == "/bucket/obj?X-Sig=abc");

  auto bad = base.resolve("http://user@evil/");
  CHECK_FALSE(bad.ok());
}

TEST_CASE("Url::resolve: scheme-relative Locations keep the scheme", "[http][url]") {
  Url https = must_parse("https://reg.example/v2/x");
  auto r = https.resolve("//cdn.example/blob");
  REQUIRE(r.ok());
  CHECK(r->tls);
  CHECK(r->host == "cdn.example");
  CHECK(r->port == 443);
  CHECK(r->target == "/blob");

  Url http = must_parse("http://reg.example:5000/v2/x");
  auto s = http.resolve("//cdn.example:81/b?q");
  REQUIRE(s.ok());
  CHECK_FALSE(s->tls);
  CHECK(s->port == 81);
  CHECK(s->target == "/b?q");
}

TEST_CASE("Url::resolve: absolute paths keep the origin", "[http][url]") {
  Url base = must_parse("http://reg.example:5000/v2/a/blobs/x?old=1");
  auto r = base.resolve("/v2/b/blobs/y?new=2");
  REQUIRE(r.ok());
  CHECK(r->origin() == base.origin());
  CHECK(r->target == "/v2/b/blobs/y?new=2");
}

TEST_CASE("Url::resolve: relative paths replace the last segment", "[http][url]") {
  Url base = must_parse("http://h/v2/a/blobs/sha256:aa?q=1");
  auto r = base.resolve("other");
  REQUIRE(r.ok());
  CHECK(r->origin() == base.origin());
  CHECK(r->target == "/v2/a/blobs/other");

  Url dir = must_parse("http://h/v2/a/");
  auto s = dir.resolve("tags/list?n=1");
  REQUIRE(s.ok());
  CHECK(s->target == "/v2/a/tags/list?n=1");

  Url root = must_parse("http://h");
  auto t = root.resolve("x");
  REQUIRE(t.ok());
  CHECK(t->target == "/x");
}

// RFC 3986 §5.2.2: a reference that is only a query keeps the base path.
TEST_CASE("Url::resolve: a query-only Location keeps the base path", "[http][url]") {
  Url base = must_parse("http://h/v2/a/blobs/uploads/abc?state=1");
  auto r = base.resolve("?state=2");
  REQUIRE(r.ok());
  CHECK(r->target == "/v2/a/blobs/uploads/abc?state=2");
}

// RFC 9110 §4.1 / RFC 3986 §3.5: a fragment never goes into the request-target.
TEST_CASE("Url::parse: a fragment is not part of the target", "[http][url]") {
  Url u = must_parse("http://h/v2/x?sig=1#frag");
  CHECK(u.target == "/v2/x?sig=1");
}

// RFC 3986 §4.3/§5.2.2: a reference with a scheme is absolute, and schemes
// are case-insensitive (regression: resolve() once knew only lowercase
// "http://"/"https://" and glued anything else onto the base path).
TEST_CASE("Url::resolve: a Location with another scheme is not a relative path", "[http][url]") {
  Url base = must_parse("http://h/v2/a/blobs/x");
  auto ftp = base.resolve("ftp://elsewhere/x");
  CHECK_FALSE(ftp.ok());
  auto upper = base.resolve("HTTP://other:81/y");
  REQUIRE(upper.ok());
  CHECK(upper->host == "other");
  CHECK(upper->port == 81);
  CHECK(upper->target == "/y");
}

// Found by the www_authenticate fuzz target (Location resolution): a host
// with ':' or '[' in it ("http://1:[:]:5000x/...") was accepted, and origin()
// and the Host header then named another host than the one parsed.
TEST_CASE("Url::parse: a host must be a reg-name, an IPv4 or a bracketed IPv6 address", "[http][url]") {
  for (const char* bad : {"http://1:[:]:5000ttp/v2/", "http://a:b:80/", "http://a]b/", "http://a b/",
                          "http://h\xc3\xa9/", "http://[::1x]/", "http://[fe80::1%eth0]/", "http://a\"b/"}) {
    INFO("URL: " << bad);
    CHECK_FALSE(Url::parse(bad).ok());
  }
  Url v6 = must_parse("http://[2001:db8::1]:5000/v2/");
  CHECK(v6.host == "2001:db8::1");
  CHECK(v6.str() == "http://[2001:db8::1]:5000/v2/");
  Url reg = must_parse("https://registry-1.docker.io/v2/");
  CHECK(reg.host == "registry-1.docker.io");
  CHECK(must_parse("http://10.0.0.1:80/").host == "10.0.0.1");
  // What is printed parses back to itself.
  CHECK(must_parse(v6.str()).str() == v6.str());
}

TEST_CASE("Url::resolve: a Location with a space or control character is refused", "[http][url]") {
  auto base = Url::parse("http://registry.example/v2/app/blobs/sha256:1");
  REQUIRE(base.ok());
  for (const char* loc : {"/a b?c d", "/x\r\nHost: evil", "https://storage.example/a b", "rel\x7f"}) {
    INFO("Location: '" << loc << "'");
    auto u = base->resolve(loc);
    REQUIRE_FALSE(u.ok());
  }
  CHECK(base->resolve("/a%20b").ok());
}
