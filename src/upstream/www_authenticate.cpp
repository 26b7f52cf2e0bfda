#include "upstream/www_authenticate.hpp"

#include <algorithm>
#include <cctype>

#include <nlohmann/json.hpp>

#include "http/message.hpp"

namespace outpost::upstream {

namespace {
bool is_token_char(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) || std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
}
void skip_ws(std::string_view& s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
}
std::string lower(std::string_view s) {
  std::string o(s);
  for (auto& c : o) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return o;
}
}  // namespace

std::optional<Challenge> parse_challenge(std::string_view s) {
  Challenge c;
  skip_ws(s);
  size_t i = 0;
  while (i < s.size() && is_token_char(s[i])) ++i;
  if (i == 0) return std::nullopt;
  c.scheme = lower(s.substr(0, i));
  s.remove_prefix(i);
  while (true) {
    skip_ws(s);
    if (s.empty()) break;
    size_t k = 0;
    while (k < s.size() && is_token_char(s[k])) ++k;
    if (k == 0) return std::nullopt;
    std::string key = lower(s.substr(0, k));
    s.remove_prefix(k);
    skip_ws(s);
    if (s.empty() || s.front() != '=') {
      // token68 form ("Basic abc==") or the start of the next challenge: stop here.
      break;
    }
    s.remove_prefix(1);
    skip_ws(s);
    std::string value;
    if (!s.empty() && s.front() == '"') {
      s.remove_prefix(1);
      bool closed = false;
      while (!s.empty()) {
        char ch = s.front();
        s.remove_prefix(1);
        if (ch == '\\' && !s.empty()) {
          value += s.front();
          s.remove_prefix(1);
        } else if (ch == '"') {
          closed = true;
          break;
        } else {
          value += ch;
        }
      }
      if (!closed) return std::nullopt;
    } else {
      size_t v = 0;
      while (v < s.size() && is_token_char(s[v])) ++v;
      value = std::string(s.substr(0, v));
      s.remove_prefix(v);
    }
    c.params[key] = value;
    skip_ws(s);
    if (!s.empty() && s.front() == ',') s.remove_prefix(1);
  }
  return c;
}

Result<TokenGrant> parse_token_response(std::string_view body) {
  auto j = nlohmann::json::parse(body, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return Error(Errc::UpstreamError, "response is not JSON");
  TokenGrant g;
  auto tok = j.find("token");
  if (tok == j.end() || !tok->is_string()) tok = j.find("access_token");
  if (tok != j.end() && tok->is_string()) g.token = tok->get<std::string>();
  if (g.token.empty()) return Error(Errc::UpstreamError, "no token in response");
  // The token goes into an Authorization header as it is: a space or a
  // control byte (CR LF) from the token server would forge other headers.
  if (http::has_space_or_control(g.token)) return Error(Errc::UpstreamError, "token has a space or control character");
  constexpr int64_t kMinTtl = 10, kMaxTtl = 86'400;
  int64_t ttl = 60;
  auto exp = j.find("expires_in");
  if (exp != j.end() && exp->is_number_integer()) {
    // nlohmann holds non-negative integers as unsigned; a huge one must not
    // wrap to a negative ttl (or wrap the expiry time around).
    ttl = exp->is_number_unsigned() ? static_cast<int64_t>(std::min<uint64_t>(exp->get<uint64_t>(), kMaxTtl))
                                    : exp->get<int64_t>();
  }
  ttl = std::clamp(ttl, kMinTtl, kMaxTtl);
  g.lifetime_ms = static_cast<uint64_t>(ttl - 5) * 1000;
  return g;
}

}  // namespace outpost::upstream
