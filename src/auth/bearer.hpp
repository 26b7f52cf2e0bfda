// Bearer tokens issued by GET /token: base64url(JSON claims) "." base64url(
// HMAC-SHA256(key, first part)). Not a JWT for other parties to read: only
// the Outpost that signed it verifies it, so the format needs no header or
// algorithm negotiation (and so no "alg: none" class of mistakes).
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "auth/scope.hpp"
#include "base/result.hpp"

namespace outpost::auth {

struct Claims {
  std::string subject;      ///< token name; "" for an anonymous grant
  std::string service;      ///< the service it was issued for
  int64_t issued_at = 0;    ///< unix seconds
  int64_t expires_at = 0;
  int64_t generation = 0;   ///< the token's secret generation when issued
  std::vector<ResourceScope> access;  ///< granted: the intersection of asked and allowed

  /// Actions granted on repository `repo` (exact name, as the spec grants).
  Actions actions_on(std::string_view repo) const;
  bool operator==(const Claims&) const = default;
};

std::string sign_token(const Claims& c, std::string_view key);
/// Errc::Unauthorized naming why: malformed, bad signature, expired,
/// issued for another service.
Result<Claims> verify_token(std::string_view token, std::string_view key, std::string_view service, int64_t now_s);

}  // namespace outpost::auth
