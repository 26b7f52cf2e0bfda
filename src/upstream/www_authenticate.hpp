// WWW-Authenticate challenges (RFC 9110 §11.6.1) as registries send them:
//   Bearer realm="https://auth.example/token",service="reg",scope="repository:a:pull"
//   Basic realm="Registry"
#pragma once
#include <map>
#include <optional>
#include <string>
#include <string_view>

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

}  // namespace outpost::upstream
