#include "auth/authorizer.hpp"

#include <cctype>

#include "auth/crypto.hpp"

namespace outpost::auth {

namespace {
/// Longest bearer token kept in the cache (bytes): bounds its memory at
/// bearer_cache_max of these.
constexpr size_t kMaxCachedBearer = 2048;
}  // namespace

Actions Principal::may(std::string_view repo) const {
  if (kind == Kind::Bearer && claims) return claims->actions_on(repo) | allowed(*anon, repo);
  return owner_may(repo);
}

Authorizer::Authorizer(AuthOptions o, std::string signing_key) : o_(std::move(o)), key_(std::move(signing_key)) {
  for (auto& r : o_.anonymous) r.actions = kPull;  // anonymous access is pull only
  anon_rules_ = std::make_shared<const std::vector<ScopeRule>>(o_.anonymous);
  auto anon = std::make_shared<Principal>();
  anon->rules = anon_rules_;
  anon->anon = anon_rules_;
  anon_principal_ = std::move(anon);
  // The dummy an unknown name is derived against: shaped like a real token
  // (16-byte salt, 32-byte hash, today's iteration count) so the derivation
  // costs the same; random, so no secret derives to its hash (and its empty
  // name is never a token: remember() refuses it whatever the result).
  dummy_.name.clear();
  auto salt = random_bytes(16);
  auto hash = random_bytes(32);
  dummy_.salt = salt ? std::move(*salt) : std::string(16, 'x');
  dummy_.hash = hash ? std::move(*hash) : std::string(32, 'y');
  dummy_.iterations = kPbkdf2Iterations;
}

void Authorizer::set_options(AuthOptions o) {
  o_ = std::move(o);
  for (auto& r : o_.anonymous) r.actions = kPull;
  anon_rules_ = std::make_shared<const std::vector<ScopeRule>>(o_.anonymous);
  auto anon = std::make_shared<Principal>();
  anon->rules = anon_rules_;
  anon->anon = anon_rules_;
  anon_principal_ = std::move(anon);
  // Each token's rules include the anonymous ones: rebuilt, without bumping
  // the table generation (a derivation in flight stays valid).
  for (auto& [name, t] : tokens_) {
    auto rules = std::make_shared<std::vector<ScopeRule>>(t.scopes);
    rules->insert(rules->end(), o_.anonymous.begin(), o_.anonymous.end());
    rules_[name] = std::move(rules);
  }
  // Cached principals carry the old anonymous rules, and a cached bearer
  // token may name the old service: both caches start again (a reload is
  // rare; the next Basic use of each credential derives its key once).
  basic_.clear();
  bearer_.clear();
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
  // Cached credentials stay: each is checked against its token's new
  // record at its next use (use()), because its table_gen is now behind.
}

const TokenRecord* Authorizer::find(std::string_view name) const {
  auto it = tokens_.find(name);
  return it == tokens_.end() ? nullptr : &it->second;
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

PrincipalPtr Authorizer::use(Cache& cache, Cache::iterator it, uint64_t now_ms, int64_t now_s) {
  Cached& e = it->second;
  const Principal& p = *e.principal;
  const bool bearer = p.kind == Principal::Kind::Bearer;
  bool ok = bearer ? e.expires_s > now_s : e.expires_ms > now_ms;
  if (ok && e.token_expires_at != 0 && e.token_expires_at <= now_s) ok = false;
  if (ok && e.table_gen != generation_) {
    // The table changed since this entry was last checked: is its token
    // still the one that was verified (same secret, same generation)?
    if (p.authenticated()) {
      const TokenRecord* rec = find(p.token);
      if (!rec || !rec->enabled || rec->expired(now_s) || rec->generation != e.token_generation ||
          (!bearer && rec->hash != e.hash)) {
        ok = false;
      } else {
        auto fresh = std::make_shared<Principal>(token_principal(*rec, p.kind));
        fresh->claims = p.claims;
        e.principal = std::move(fresh);
        e.token_expires_at = rec->expires_at;
      }
    }
    e.table_gen = generation_;
  }
  if (!ok) {
    cache.erase(it);
    return nullptr;
  }
  return e.principal;
}

void Authorizer::make_room(Cache& cache, size_t max, uint64_t now_ms, int64_t now_s) {
  if (cache.size() < max) return;
  for (auto it = cache.begin(); it != cache.end();) {
    const Cached& e = it->second;
    const bool dead = e.principal->kind == Principal::Kind::Bearer ? e.expires_s <= now_s : e.expires_ms <= now_ms;
    if (dead) it = cache.erase(it);
    else ++it;
  }
  if (cache.size() >= max) cache.clear();
}

Authorizer::BasicCheck Authorizer::check_basic(std::string_view credentials, uint64_t now_ms, int64_t now_s) {
  BasicCheck out;
  // One message for every refusal, so a caller cannot tell a wrong name
  // from a wrong secret or a disabled token.
  out.why = "invalid credentials";
  if (auto it = basic_.find(credentials); it != basic_.end()) {
    if (auto p = use(basic_, it, now_ms, now_s)) {
      out.outcome = BasicCheck::Outcome::Ok;
      out.principal = std::move(p);
      return out;
    }
  }
  auto raw = b64_decode(credentials);
  const size_t colon = raw ? raw->find(':') : std::string::npos;
  if (colon == std::string::npos) {
    out.why = "unsupported or malformed Authorization header";
    return out;
  }
  // Entries are made under the canonical base64 only, so one credential
  // has one entry however a client spells it (a client with valid
  // credentials cannot grow the cache by varying padding or bits).
  out.key = b64_encode(*raw);
  if (out.key != credentials) {
    if (auto it = basic_.find(out.key); it != basic_.end()) {
      if (auto p = use(basic_, it, now_ms, now_s)) {
        out.outcome = BasicCheck::Outcome::Ok;
        out.principal = std::move(p);
        return out;
      }
    }
  }
  // Not cached: a derivation, also for a name that is no token (against a
  // dummy) and for a disabled or expired token, so how long a refusal takes
  // does not tell which names exist or are enabled.
  const TokenRecord* rec = find(std::string_view(raw->data(), colon));
  out.record = rec ? *rec : dummy_;
  out.secret = raw->substr(colon + 1);
  out.outcome = BasicCheck::Outcome::Derive;
  return out;
}

PrincipalPtr Authorizer::remember(const BasicCheck& c, uint64_t gen, uint64_t now_ms, int64_t now_s) {
  if (c.record.name.empty()) return nullptr;  // the dummy: never a token
  const TokenRecord* cur = find(c.record.name);
  if (!cur || !cur->enabled || cur->expired(now_s) || cur->generation != c.record.generation ||
      cur->hash != c.record.hash)
    return nullptr;
  PrincipalPtr p = std::make_shared<const Principal>(token_principal(*cur, Principal::Kind::Basic));
  if (gen == generation_ && !c.key.empty()) {
    make_room(basic_, o_.cache_max, now_ms, now_s);
    basic_[c.key] = Cached{p, now_ms + o_.cache_ttl_ms, 0, cur->expires_at, cur->hash, cur->generation, generation_};
  }
  return p;
}

Result<PrincipalPtr> Authorizer::check_bearer(std::string_view token, int64_t now_s) {
  if (auto it = bearer_.find(token); it != bearer_.end()) {
    if (auto p = use(bearer_, it, 0, now_s)) return p;
  }
  auto c = verify_token(token, key_, o_.service, now_s);
  if (!c) return std::move(c).error();
  auto p = std::make_shared<Principal>(*anon_principal_);
  const TokenRecord* rec = nullptr;
  if (!c->subject.empty()) {
    rec = find(c->subject);
    if (!rec || !rec->enabled || rec->expired(now_s) || rec->generation != c->generation)
      return Error(Errc::Unauthorized, "bearer token's credentials are no longer valid");
    *p = token_principal(*rec, Principal::Kind::Bearer);
  }
  p->kind = Principal::Kind::Bearer;
  const int64_t expires_s = c->expires_at, token_generation = c->generation;
  p->claims = std::move(*c);
  // Tokens this server issues are a few hundred bytes; a long one (many
  // scopes asked for) is checked each time rather than kept.
  if (token.size() <= kMaxCachedBearer) {
    make_room(bearer_, o_.bearer_cache_max, 0, now_s);
    bearer_.insert_or_assign(std::string(token), Cached{p, 0, expires_s, rec ? rec->expires_at : 0, std::string(),
                                                        token_generation, generation_});
  }
  return PrincipalPtr(std::move(p));
}

bool Authorizer::has_scheme(std::string_view v, std::string_view scheme) {
  if (v.size() <= scheme.size() || v[scheme.size()] != ' ') return false;
  for (size_t i = 0; i < scheme.size(); ++i)
    if (std::tolower(static_cast<unsigned char>(v[i])) != std::tolower(static_cast<unsigned char>(scheme[i])))
      return false;
  return true;
}

bool Authorizer::parse_basic(std::string_view v, std::string* name, std::string* secret) {
  if (!has_scheme(v, "basic")) return false;
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
