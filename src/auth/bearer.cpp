#include "auth/bearer.hpp"

#include <nlohmann/json.hpp>

#include "auth/crypto.hpp"

namespace outpost::auth {

using nlohmann::json;

Actions Claims::actions_on(std::string_view repo) const {
  Actions a = 0;
  for (const auto& s : access)
    if (s.type == "repository" && s.name == repo) a |= s.actions;
  return a;
}

std::string sign_token(const Claims& c, std::string_view key) {
  json acc = json::array();
  for (const auto& s : c.access) acc.push_back(resource_scope_str(s));
  json j = {{"sub", c.subject}, {"aud", c.service}, {"iat", c.issued_at},
            {"exp", c.expires_at}, {"gen", c.generation}, {"access", acc}};
  std::string body = b64url_encode(j.dump());
  return body + "." + b64url_encode(hmac_sha256(key, body));
}

Result<Claims> verify_token(std::string_view token, std::string_view key, std::string_view service, int64_t now_s) {
  auto bad = [](const char* why) { return Error(Errc::Unauthorized, std::string("bearer token ") + why); };
  size_t dot = token.find('.');
  if (dot == std::string_view::npos || token.size() > 16 * 1024) return bad("is malformed");
  std::string_view body = token.substr(0, dot);
  auto sig = b64url_decode(token.substr(dot + 1));
  if (!sig || !same_bytes(*sig, hmac_sha256(key, body))) return bad("has a bad signature");
  auto raw = b64url_decode(body);
  if (!raw) return bad("is malformed");
  auto j = json::parse(*raw, nullptr, false);
  if (!j.is_object()) return bad("is malformed");
  Claims c;
  try {
    c.subject = j.at("sub").get<std::string>();
    c.service = j.at("aud").get<std::string>();
    c.issued_at = j.at("iat").get<int64_t>();
    c.expires_at = j.at("exp").get<int64_t>();
    c.generation = j.at("gen").get<int64_t>();
    for (const auto& s : j.at("access")) {
      auto r = parse_resource_scope(s.get<std::string>());
      if (r) c.access.push_back(std::move(*r));
    }
  } catch (const json::exception&) {
    return bad("is malformed");
  }
  if (c.service != service) return bad("was issued for another service");
  if (c.expires_at <= now_s) return bad("has expired");
  return c;
}

}  // namespace outpost::auth
