#include "http/url.hpp"

#include "http/message.hpp"

#include <cctype>
#include <charconv>

namespace outpost::http {

namespace {
// Scheme of an absolute reference ("HTTP://x" -> "http"), empty when none
// (RFC 3986 §3.1: ALPHA *( ALPHA / DIGIT / "+" / "-" / "." ) ":").
std::string scheme_of(std::string_view s) {
  size_t colon = s.find(':');
  if (colon == std::string_view::npos || colon == 0) return {};
  std::string out;
  for (size_t i = 0; i < colon; ++i) {
    char c = s[i];
    bool ok = std::isalpha(static_cast<unsigned char>(c)) ||
              (i > 0 && (std::isdigit(static_cast<unsigned char>(c)) || c == '+' || c == '-' || c == '.'));
    if (!ok) return {};
    out += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  }
  return out;
}

// RFC 3986 §3.2.2: inside "[...]" an IPv6 address (hex digits, ':' and '.');
// otherwise a reg-name or IPv4 address (unreserved, pct-encoded, sub-delims).
// Anything else (':', '[', spaces, bytes >= 0x80) would make origin() and
// the Host header say something other than what was parsed.
bool valid_host(std::string_view h, bool ip_literal) {
  for (char ch : h) {
    unsigned char c = static_cast<unsigned char>(ch);
    bool ok = ip_literal ? (std::isxdigit(c) || c == ':' || c == '.')
                         : (std::isalnum(c) || std::string_view("-._~%!$&'()*+,;=").find(ch) != std::string_view::npos);
    if (!ok || c >= 0x80) return false;
  }
  return true;
}
}  // namespace

Result<Url> Url::parse(std::string_view s) {
  Url u;
  // The fragment never reaches the server (RFC 3986 §3.5).
  if (size_t hash = s.find('#'); hash != std::string_view::npos) s = s.substr(0, hash);
  std::string lowered;
  if (std::string sch = scheme_of(s); !sch.empty()) {
    lowered = sch + std::string(s.substr(sch.size()));
    s = lowered;
  }
  if (s.substr(0, 8) == "https://") {
    u.tls = true;
    s.remove_prefix(8);
  } else if (s.substr(0, 7) == "http://") {
    s.remove_prefix(7);
  } else {
    return Error(Errc::ConfigInvalid, "URL must start with http:// or https://: '" + std::string(s) + "'");
  }
  size_t slash = s.find_first_of("/?");
  std::string_view authority = s.substr(0, slash);
  u.target = slash == std::string_view::npos ? "/" : std::string(s.substr(slash));
  if (!u.target.empty() && u.target[0] == '?') u.target = "/" + u.target;
  if (has_space_or_control(s)) return Error(Errc::ConfigInvalid, "URL has a space or control character");
  if (authority.find('@') != std::string_view::npos)
    return Error(Errc::ConfigInvalid, "credentials in URLs are not supported; use the token file");
  std::string_view port;
  if (!authority.empty() && authority[0] == '[') {
    size_t close = authority.find(']');
    if (close == std::string_view::npos) return Error(Errc::ConfigInvalid, "bad IPv6 host in URL");
    u.host = std::string(authority.substr(1, close - 1));
    if (close + 1 < authority.size()) {
      if (authority[close + 1] != ':') return Error(Errc::ConfigInvalid, "bad URL authority");
      port = authority.substr(close + 2);
    }
  } else {
    size_t colon = authority.rfind(':');
    u.host = std::string(authority.substr(0, colon));
    if (colon != std::string_view::npos) port = authority.substr(colon + 1);
  }
  if (u.host.empty()) return Error(Errc::ConfigInvalid, "URL has no host");
  if (!valid_host(u.host, !authority.empty() && authority[0] == '['))
    return Error(Errc::ConfigInvalid, "bad host in URL");
  u.port = u.tls ? 443 : 80;
  if (!port.empty()) {
    unsigned p = 0;
    auto [ptr, ec] = std::from_chars(port.data(), port.data() + port.size(), p);
    if (ec != std::errc() || ptr != port.data() + port.size() || p == 0 || p > 65535)
      return Error(Errc::ConfigInvalid, "bad port in URL");
    u.port = static_cast<uint16_t>(p);
  }
  return u;
}

std::string Url::host_header() const {
  std::string h = host.find(':') != std::string::npos ? "[" + host + "]" : host;
  if (port != (tls ? 443 : 80)) h += ":" + std::to_string(port);
  return h;
}

std::string Url::origin() const {
  std::string h = host.find(':') != std::string::npos ? "[" + host + "]" : host;
  return std::string(tls ? "https://" : "http://") + h + ":" + std::to_string(port);
}

Result<Url> Url::resolve(std::string_view loc) const {
  if (size_t hash = loc.find('#'); hash != std::string_view::npos) loc = loc.substr(0, hash);
  // A target goes into a request line as it is: spaces or control bytes
  // from a parent's Location would split or forge that line.
  if (has_space_or_control(loc)) return Error(Errc::UpstreamError, "Location has a space or control character");
  if (!scheme_of(loc).empty()) return parse(loc);  // absolute; parse rejects non-http(s)
  if (loc.substr(0, 2) == "//") return parse(std::string(tls ? "https:" : "http:") + std::string(loc));
  Url u = *this;
  if (!loc.empty() && loc[0] == '/') {
    u.target = std::string(loc);
    return u;
  }
  if (!loc.empty() && loc[0] == '?') {  // query only: same path (RFC 3986 §5.2.2)
    u.target = target.substr(0, target.find('?')) + std::string(loc);
    return u;
  }
  // Relative path: replace the last segment of the current path.
  std::string path = target.substr(0, target.find('?'));
  u.target = path.substr(0, path.rfind('/') + 1) + std::string(loc);
  return u;
}

}  // namespace outpost::http
