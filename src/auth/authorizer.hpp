// The access decisions of one running Outpost, in memory: the token table
// (a snapshot of auth.db, replaced whole after every change), the cache of
// verified Basic credentials, bearer token checks, scope grants and the
// sync-token instance binding. No I/O and no key derivation here: a Basic
// credential missing from the cache is answered "Derive", and the caller
// runs verify_secret() off the loop and reports back with remember().
// A credential seen before costs one hash lookup of the header's text
// (the hot path: Basic or a bearer token on every request).
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
  size_t cache_max = 4096;           ///< Basic entries; bounded so random secrets cannot grow it
  size_t bearer_cache_max = 4096;    ///< bearer entries (their own bound: see bearer_)
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
/// Shared, immutable: the credential caches hand out the same one to every
/// request carrying the same credential (no copy, no allocation per request).
using PrincipalPtr = std::shared_ptr<const Principal>;

class Authorizer {
 public:
  Authorizer(AuthOptions o, std::string signing_key);

  const AuthOptions& options() const { return o_; }
  /// SIGHUP (issue #17): new service, token lifetime and anonymous rules for
  /// the next request. Tokens stay; bearer tokens issued for another service
  /// name stop verifying (the bearer cache is emptied).
  void set_options(AuthOptions o);
  /// Replaces the token table (after a load or any change). Cached
  /// credentials stay, and are checked against their token's new record at
  /// their next use, so a disable, delete or rotate holds at once.
  void set_tokens(std::vector<TokenRecord> tokens);
  const TokenRecord* find(std::string_view name) const;
  uint64_t generation() const { return generation_; }

  const PrincipalPtr& anonymous() const { return anon_principal_; }

  struct BasicCheck {
    enum class Outcome { Ok, Invalid, Derive } outcome = Outcome::Invalid;
    std::string why;       ///< Invalid: what to say (never which of name or secret was wrong)
    PrincipalPtr principal;  ///< Ok
    /// Derive: what to verify the secret against. For a name that is not a
    /// token a dummy record (random salt and hash, the same iteration
    /// count), so a refusal takes as long whether the name exists or not.
    TokenRecord record;
    std::string secret;    ///< Derive: the secret to verify
    std::string key;       ///< Derive: the canonical credential, for remember()
  };
  /// Basic credentials, `credentials` being the base64 text after "Basic ".
  /// A cached credential is Ok without decoding anything; a malformed one is
  /// Invalid; everything else is Derive, also an unknown, disabled or
  /// expired token (refused after the derivation, see BasicCheck::record).
  BasicCheck check_basic(std::string_view credentials, uint64_t now_ms, int64_t now_s);
  /// After a successful derivation for `c.record` (started at table
  /// generation `gen`): caches the credential unless the table changed
  /// meanwhile, and returns the principal (null when the token is not one,
  /// or is disabled, expired or changed under it).
  PrincipalPtr remember(const BasicCheck& c, uint64_t gen, uint64_t now_ms, int64_t now_s);
  /// A bearer token: signature, service, expiry, and its token still
  /// enabled, unexpired and of the same secret generation. A token checked
  /// before is found by its text and only re-checked against the table.
  Result<PrincipalPtr> check_bearer(std::string_view token, int64_t now_s);
  /// Parses an "Authorization: Basic ..." value into name and secret.
  static bool parse_basic(std::string_view header_value, std::string* name, std::string* secret);
  /// The Authorization value is `scheme` then a space: scheme names are
  /// case-insensitive (RFC 9110 §11.1), "BASIC x" is Basic.
  static bool has_scheme(std::string_view header_value, std::string_view scheme);

  /// The token service's answer: the asked scopes narrowed to what the
  /// owner may do, signed. `catalog` scopes are granted to any caller.
  std::string issue(const Principal& p, const std::vector<ResourceScope>& asked, int64_t now_s, Claims* out) const;

  enum class Binding { Ok, Other };
  /// Sync-token activation: binds `token` to `instance` if unbound (in
  /// memory now; the caller persists it), Other when bound elsewhere.
  /// `*newly` is set when this call made the binding.
  Binding bind_instance(const std::string& token, const std::string& instance, bool* newly);

  /// Entries in the two credential caches (tests, metrics).
  size_t cached_basic() const { return basic_.size(); }
  size_t cached_bearer() const { return bearer_.size(); }

 private:
  /// A verified credential, keyed by its text as sent (Basic: the base64
  /// after "Basic "; bearer: the token), so a hit costs one hash of the
  /// header and no base64, SHA-256, HMAC or JSON. Valid while its token
  /// keeps the same secret (hash) and generation: when the table changed
  /// since the entry was last checked (`table_gen`), the token's new record
  /// is looked up once and the principal rebuilt (its rules may be new);
  /// a change to *other* tokens therefore keeps every cached login.
  struct Cached {
    PrincipalPtr principal;
    uint64_t expires_ms = 0;      ///< Basic: verified + cache_ttl_ms
    int64_t expires_s = 0;        ///< Bearer: the claims' expiry
    int64_t token_expires_at = 0; ///< the token's own expiry (0 never), checked on every use
    std::string hash;             ///< Basic: the token's secret hash when verified
    int64_t token_generation = 0; ///< the token's secret generation (rotate bumps it)
    uint64_t table_gen = 0;       ///< generation_ when last checked against the table
  };
  /// Heterogeneous lookup: a string_view of the header finds its entry
  /// without making a std::string.
  struct Hash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
  };
  using Cache = std::unordered_map<std::string, Cached, Hash, std::equal_to<>>;

  Principal token_principal(const TokenRecord& rec, Principal::Kind kind) const;
  /// The entry's principal when it is still valid (re-checked against the
  /// table when that changed), else null (and the entry is dropped).
  PrincipalPtr use(Cache& cache, Cache::iterator it, uint64_t now_ms, int64_t now_s);
  /// Room for one more entry: the dead ones go first, then all of them.
  void make_room(Cache& cache, size_t max, uint64_t now_ms, int64_t now_s);

  AuthOptions o_;
  std::string key_;
  std::shared_ptr<const std::vector<ScopeRule>> anon_rules_;
  PrincipalPtr anon_principal_;
  TokenRecord dummy_;  ///< what an unknown name's secret is derived against
  std::unordered_map<std::string, TokenRecord, Hash, std::equal_to<>> tokens_;
  std::unordered_map<std::string, std::shared_ptr<const std::vector<ScopeRule>>> rules_;  ///< per token, ∪ anonymous
  /// Basic and bearer apart: anyone may mint anonymous bearer tokens at
  /// GET /token, and filling the bearer cache must not flush the Basic
  /// entries (each costs a key derivation to make again; a bearer entry an
  /// HMAC).
  Cache basic_;
  Cache bearer_;
  uint64_t generation_ = 1;
};

}  // namespace outpost::auth
