// The access decisions of one running Outpost, in memory: the token table
// (a snapshot of auth.db, replaced whole after every change), the cache of
// verified Basic credentials, bearer token checks, scope grants and the
// sync-token instance binding. No I/O and no key derivation here: a Basic
// credential missing from the cache is answered "Derive", and the caller
// runs verify_secret() off the loop and reports back with remember().
// Loop thread only (not thread-safe); Principal values may go anywhere.
#pragma once
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "auth/bearer.hpp"
#include "auth/scope.hpp"
#include "auth/token_db.hpp"

namespace outpost::auth {

struct AuthOptions {
  std::string service = "outpost";
  std::vector<ScopeRule> anonymous;  ///< [auth] anonymous_pull, as pull rules
  int64_t token_ttl_s = 300;         ///< bearer token lifetime
  uint64_t cache_ttl_ms = 60'000;    ///< a verified Basic credential is trusted this long
  size_t cache_max = 4096;           ///< entries; bounded so random secrets cannot grow it
};

/// Who is asking. The rules are the owner's: a token's scope map (plus the
/// anonymous rules), or the anonymous rules alone.
struct Principal {
  enum class Kind { Anonymous, Basic, Bearer };
  Kind kind = Kind::Anonymous;
  std::string token;  ///< token name; "" anonymous (also an anonymous bearer grant)
  std::shared_ptr<const std::vector<ScopeRule>> rules;  ///< never null
  std::shared_ptr<const std::vector<ScopeRule>> anon;   ///< the anonymous rules; never null
  std::optional<Claims> claims;                          ///< Bearer only

  bool authenticated() const { return !token.empty(); }
  /// What the owner of the credential may do on `repo` (scope map ∪ anonymous).
  Actions owner_may(std::string_view repo) const { return allowed(*rules, repo); }
  /// What this request may do on `repo`: a bearer token only what it was
  /// granted (plus anonymous pull), Basic and anonymous the owner's rules.
  Actions may(std::string_view repo) const;
};

class Authorizer {
 public:
  Authorizer(AuthOptions o, std::string signing_key);

  const AuthOptions& options() const { return o_; }
  /// SIGHUP (issue #17): new service, token lifetime and anonymous rules for
  /// the next request. Tokens and cached credentials stay; bearer tokens
  /// issued for another service name stop verifying.
  void set_options(AuthOptions o);
  /// Replaces the token table (after a load or any change); every cached
  /// credential is forgotten, so a disable or rotate holds at once.
  void set_tokens(std::vector<TokenRecord> tokens);
  const TokenRecord* find(std::string_view name) const;
  uint64_t generation() const { return generation_; }

  Principal anonymous() const;

  struct BasicCheck {
    enum class Outcome { Ok, Invalid, Derive } outcome = Outcome::Invalid;
    std::string why;     ///< Invalid: what to say (never which of name or secret was wrong)
    Principal principal; ///< Ok
    TokenRecord record;  ///< Derive: what to verify the secret against
  };
  /// Basic credentials: a cache hit is Ok without key derivation; an
  /// unknown, disabled or expired token is Invalid at once; else Derive.
  BasicCheck check_basic(std::string_view name, std::string_view secret, uint64_t now_ms, int64_t now_s) const;
  /// After a successful derivation for `rec` (started at table generation
  /// `gen`): caches the credential unless the table changed meanwhile, and
  /// returns the principal (nullopt when the token changed under it).
  std::optional<Principal> remember(const TokenRecord& rec, uint64_t gen, std::string_view secret, uint64_t now_ms,
                                    int64_t now_s);
  /// A bearer token: signature, service, expiry, and its token still
  /// enabled, unexpired and of the same secret generation.
  Result<Principal> check_bearer(std::string_view token, int64_t now_s) const;
  /// Parses an "Authorization: Basic ..." value into name and secret.
  static bool parse_basic(std::string_view header_value, std::string* name, std::string* secret);

  /// The token service's answer: the asked scopes narrowed to what the
  /// owner may do, signed. `catalog` scopes are granted to any caller.
  std::string issue(const Principal& p, const std::vector<ResourceScope>& asked, int64_t now_s, Claims* out) const;

  enum class Binding { Ok, Other };
  /// Sync-token activation: binds `token` to `instance` if unbound (in
  /// memory now; the caller persists it), Other when bound elsewhere.
  /// `*newly` is set when this call made the binding.
  Binding bind_instance(const std::string& token, const std::string& instance, bool* newly);

 private:
  /// A verified credential, valid while its token keeps the same secret
  /// (hash) and generation: a change to *other* tokens does not drop it, so
  /// creating one token does not send every client back to a derivation.
  struct Cached {
    std::string name;
    uint64_t expires_ms = 0;
    std::string hash;          ///< the token's stored secret hash when verified
    int64_t token_generation = 0;   ///< the token's secret generation (rotate bumps it)
  };
  static std::string cache_key(std::string_view name, std::string_view secret);
  Principal token_principal(const TokenRecord& rec, Principal::Kind kind) const;

  AuthOptions o_;
  std::string key_;
  std::shared_ptr<const std::vector<ScopeRule>> anon_rules_;
  std::unordered_map<std::string, TokenRecord> tokens_;
  std::unordered_map<std::string, std::shared_ptr<const std::vector<ScopeRule>>> rules_;  ///< per token, ∪ anonymous
  mutable std::unordered_map<std::string, Cached> cache_;  ///< SHA-256(name:secret) -> verified
  uint64_t generation_ = 1;
};

}  // namespace outpost::auth
