// Fuzz target: what an upstream registry says about auth (src/upstream):
// WWW-Authenticate challenges and the token endpoint's JSON answer. The same
// bytes go to both parsers. An accepted challenge has a lowercase token
// scheme and lowercase keys; a Bearer realm goes through the URL parser and
// the query building of the token request, as the registry client does; an
// accepted token is non-empty with a bounded lifetime. The bytes are also a
// redirect Location to resolve.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "fuzz_check.hpp"
#include "http/message.hpp"
#include "http/url.hpp"
#include "upstream/www_authenticate.hpp"

using namespace outpost;

namespace {
bool token_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
}

void check_challenge(std::string_view s) {
  auto c = upstream::parse_challenge(s);
  if (!c) return;
  FUZZ_CHECK(!c->scheme.empty());
  for (char ch : c->scheme) FUZZ_CHECK(token_char(ch));
  for (const auto& [k, v] : c->params) {
    FUZZ_CHECK(!k.empty());
    for (char ch : k) FUZZ_CHECK(token_char(ch));
    FUZZ_CHECK(v.size() <= s.size());
  }
  const std::string realm = c->param("realm");
  if (c->scheme != "bearer" || realm.empty()) return;
  // RegistryClient::fetch_token: realm URL + "?service=..&scope=..".
  auto url = http::Url::parse(realm);
  if (!url) return;
  FUZZ_CHECK(!url->host.empty() && !url->target.empty() && url->target.front() == '/');
  for (const std::string& v : {c->param("service"), c->param("scope")}) {
    const std::string enc = http::percent_encode(v);
    for (char ch : enc) FUZZ_CHECK(ch > 0x20 && ch < 0x7f && ch != '&' && ch != '#');
    auto dec = http::percent_decode(enc, false);
    FUZZ_CHECK(dec && *dec == v);
  }
}

void check_token(std::string_view s) {
  auto g = upstream::parse_token_response(s);
  if (!g) {
    FUZZ_CHECK(g.error().code == Errc::UpstreamError && !g.error().detail.empty());
    return;
  }
  FUZZ_CHECK(!g->token.empty());
  FUZZ_CHECK(g->lifetime_ms >= 5'000 && g->lifetime_ms <= (86'400 - 5) * 1000);
}

// A redirect's Location, resolved against the URL it answered.
void check_location(std::string_view s) {
  static const auto base = http::Url::parse("https://registry.example:5000/v2/a/blobs/sha256:00");
  FUZZ_CHECK(base.ok());
  auto u = base->resolve(s);
  if (!u) return;
  FUZZ_CHECK(!u->host.empty() && !u->target.empty() && u->target.front() == '/');
  auto again = http::Url::parse(u->str());
  FUZZ_CHECK(again && again->str() == u->str());
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view s(reinterpret_cast<const char*>(data), size);
  check_challenge(s);
  check_token(s);
  check_location(s);
  return 0;
}
