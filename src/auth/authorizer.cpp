#include "auth/authorizer.hpp"

#include "auth/crypto.hpp"

namespace outpost::auth {

Actions Principal::may(std::string_view repo) const {
  if (kind == Kind::Bearer && claims) return claims->actions_on(repo) | allowed(*anon, repo);
  return owner_may(repo);
}

Authorizer::Authorizer(AuthOptions o, std::string signing_key) : o_(std::move(o)), key_(std::move(signing_key)) {
  for (auto& r : o_.anonymous) r.actions = kPull;  // anonymous access is pull only
  anon_rules_ = std::make_shared<const std::vector<ScopeRule>>(o_.anonymous);
}

void Authorizer::set_options(AuthOptions o) {
  o_ = std::move(o);
  for (auto& r : o_.anonymous) r.actions = kPull;
  anon_rules_ = std::make_shared<const std::vector<ScopeRule>>(o_.anonymous);
  // Each token's rules include the anonymous ones: rebuilt, without bumping
  // the table generation (a derivation in flight stays valid).
  for (auto& [name, t] : tokens_) {
    auto rules = std::make_shared<std::vector<ScopeRule>>(t.scopes);
    rules->insert(rules->end(), o_.anonymous.begin(), o_.anonymous.end());
    rules_[name] = std::move(rules);
  }
}

void Authorizer::set_tokens(std::vector<TokenRecord> tokens) {
  tokens_.clear();
  rules_.clear();
  for (auto& t : tokens) {
    auto rules = std::make_shared<std::vector<ScopeRule>>(t.scopes);
    rules->insert(rules->end(), o_.anonymous.begin(), o_.anonymous.end());
    rules_[t.name] = std::move(rules);
    std::string name = t.name;
    tokens_.emplace(std::move(name), std::move(t));
  }
  ++generation_;
  // Cached credentials stay: each is checked against its token's current
  // record (enabled, expiry, hash, secret generation) on every use.
}

const TokenRecord* Authorizer::find(std::string_view name) const {
  auto it = tokens_.find(std::string(name));
  return it == tokens_.end() ? nullptr : &it->second;
}

Principal Authorizer::anonymous() const {
  Principal p;
  p.rules = anon_rules_;
  p.anon = anon_rules_;
  return p;
}

Principal Authorizer::token_principal(const TokenRecord& rec, Principal::Kind kind) const {
  Principal p;
  p.kind = kind;
  p.token = rec.name;
  auto it = rules_.find(rec.name);
  p.rules = it != rules_.end() ? it->second : anon_rules_;
  p.anon = anon_rules_;
  return p;
}

std::string Authorizer::cache_key(std::string_view name, std::string_view secret) {
  std::string s;
  s.reserve(name.size() + secret.size() + 1);
  s.append(name);
  s += ':';
  s.append(secret);
  return sha256(s);
}

Authorizer::BasicCheck Authorizer::check_basic(std::string_view name, std::string_view secret, uint64_t now_ms,
                                               int64_t now_s) const {
  BasicCheck out;
  const TokenRecord* rec = find(name);
  // One message for every refusal, so a caller cannot tell a wrong name
  // from a wrong secret or a disabled token.
  out.why = "invalid credentials";
  if (!rec || !rec->enabled || rec->expired(now_s)) return out;
  auto it = cache_.find(cache_key(name, secret));
  if (it != cache_.end() && it->second.expires_ms > now_ms && it->second.name == name &&
      it->second.hash == rec->hash && it->second.token_generation == rec->generation) {
    out.outcome = BasicCheck::Outcome::Ok;
    out.principal = token_principal(*rec, Principal::Kind::Basic);
    return out;
  }
  out.outcome = BasicCheck::Outcome::Derive;
  out.record = *rec;
  return out;
}

std::optional<Principal> Authorizer::remember(const TokenRecord& rec, uint64_t gen, std::string_view secret,
                                              uint64_t now_ms, int64_t now_s) {
  const TokenRecord* cur = find(rec.name);
  if (!cur || !cur->enabled || cur->expired(now_s) || cur->generation != rec.generation || cur->hash != rec.hash)
    return std::nullopt;
  if (gen == generation_) {
    if (cache_.size() >= o_.cache_max) {
      for (auto it = cache_.begin(); it != cache_.end();) {
        if (it->second.expires_ms <= now_ms) it = cache_.erase(it);
        else ++it;
      }
      if (cache_.size() >= o_.cache_max) cache_.clear();
    }
    cache_[cache_key(rec.name, secret)] = Cached{rec.name, now_ms + o_.cache_ttl_ms, cur->hash, cur->generation};
  }
  return token_principal(*cur, Principal::Kind::Basic);
}

Result<Principal> Authorizer::check_bearer(std::string_view token, int64_t now_s) const {
  auto c = verify_token(token, key_, o_.service, now_s);
  if (!c) return std::move(c).error();
  Principal p = anonymous();
  if (!c->subject.empty()) {
    const TokenRecord* rec = find(c->subject);
    if (!rec || !rec->enabled || rec->expired(now_s) || rec->generation != c->generation)
      return Error(Errc::Unauthorized, "bearer token's credentials are no longer valid");
    p = token_principal(*rec, Principal::Kind::Bearer);
  }
  p.kind = Principal::Kind::Bearer;
  p.claims = std::move(*c);
  return p;
}

bool Authorizer::parse_basic(std::string_view v, std::string* name, std::string* secret) {
  if (v.size() < 6 || !(v.substr(0, 6) == "Basic " || v.substr(0, 6) == "basic ")) return false;
  v.remove_prefix(6);
  while (!v.empty() && v.front() == ' ') v.remove_prefix(1);
  auto raw = b64_decode(v);
  if (!raw) return false;
  size_t colon = raw->find(':');
  if (colon == std::string::npos) return false;
  *name = raw->substr(0, colon);
  *secret = raw->substr(colon + 1);
  return true;
}

std::string Authorizer::issue(const Principal& p, const std::vector<ResourceScope>& asked, int64_t now_s,
                              Claims* out) const {
  Claims c;
  c.subject = p.token;
  c.service = o_.service;
  c.issued_at = now_s;
  c.expires_at = now_s + o_.token_ttl_s;
  if (const TokenRecord* rec = p.token.empty() ? nullptr : find(p.token)) c.generation = rec->generation;
  for (const auto& s : asked) {
    if (s.type == "registry") {
      if (s.name == "catalog") c.access.push_back(ResourceScope{"registry", "catalog", kAllActions});
      continue;
    }
    Actions granted = s.actions & p.owner_may(s.name);
    if (granted != 0) c.access.push_back(ResourceScope{"repository", s.name, granted});
  }
  std::string t = sign_token(c, key_);
  if (out) *out = std::move(c);
  return t;
}

Authorizer::Binding Authorizer::bind_instance(const std::string& token, const std::string& instance, bool* newly) {
  *newly = false;
  auto it = tokens_.find(token);
  if (it == tokens_.end()) return Binding::Ok;
  if (it->second.instance.empty()) {
    it->second.instance = instance;
    *newly = true;
    return Binding::Ok;
  }
  return it->second.instance == instance ? Binding::Ok : Binding::Other;
}

}  // namespace outpost::auth
