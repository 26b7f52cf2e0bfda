// WWW-Authenticate challenges (RFC 9110 §11.6.1) as registries send them:
//   Bearer realm="https://auth.example/token",service="reg",scope="repository:a:pull"
//   Basic realm="Registry"
// and the answer of the token endpoint a Bearer challenge points to.
#pragma once
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>

#include "base/result.hpp"

namespace outpost::upstream {

struct Challenge {
  std::string scheme;                        ///< lowercased: "bearer", "basic"
  std::map<std::string, std::string> params; ///< keys lowercased, values unquoted
  std::string param(const std::string& k) const {
    auto it = params.find(k);
    return it == params.end() ? std::string() : it->second;
  }
};

/// Parses the first challenge of a header value; nullopt when malformed.
std::optional<Challenge> parse_challenge(std::string_view header);

/// What a token endpoint granted (distribution's token authentication spec).
struct TokenGrant {
  std::string token;         ///< "token", else "access_token"
  uint64_t lifetime_ms = 0;  ///< how long to use it: expires_in less 5 s, so it never expires mid-request
};

/// Parses a token endpoint's JSON answer. expires_in (default 60 s) is
/// clamped to 10 s .. 1 day. Errc::UpstreamError naming what is wrong:
/// "response is not JSON", "no token in response".
Result<TokenGrant> parse_token_response(std::string_view body);

}  // namespace outpost::upstream
