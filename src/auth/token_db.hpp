// auth.db: the client and sync tokens of one Outpost, in its own SQLite
// file in the store root (own schema and user_version, so it never meets
// the store's migrations), and the key that signs bearer tokens (kept so
// a restart leaves issued tokens valid). Blocking: a pool job or a CLI.
// Not thread-safe: one owner serializes its calls (the server's auth
// queue, or the offline CLI holding the store lock).
#pragma once
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "auth/scope.hpp"
#include "base/result.hpp"
#include "store/sqlite.hpp"

namespace outpost::auth {

/// PBKDF2 rounds for a new secret (~9 ms with mbedTLS here). Secrets are
/// 256 random bits, not chosen passwords, so stretching is defence in depth
/// (a stolen auth.db cannot be brute-forced either way) and the count is
/// sized for the cost of a derivation per unknown credential instead.
/// Stored per token, so changing it leaves existing tokens verifiable.
constexpr uint32_t kPbkdf2Iterations = 10'000;

struct TokenRecord {
  std::string name;
  std::vector<ScopeRule> scopes;
  int64_t expires_at = 0;  ///< unix seconds; 0: never
  bool enabled = true;
  int64_t created = 0;     ///< unix seconds
  int64_t last_used = 0;   ///< unix seconds of the last key derivation (see docs/operations.md)
  std::string instance;    ///< bound Outpost instance id ("" unbound)
  int64_t bound_at = 0;
  int64_t generation = 1;  ///< bumped by rotate: bearer tokens of an older secret die
  std::string salt;        ///< raw bytes
  std::string hash;        ///< raw PBKDF2 output
  uint32_t iterations = kPbkdf2Iterations;

  bool expired(int64_t now_s) const { return expires_at != 0 && expires_at <= now_s; }
  /// What list/show print: no salt, no hash.
  nlohmann::json to_json() const;
};

/// Token names: what `docker login` takes as a user name and the CLI and
/// URLs carry unquoted: [A-Za-z0-9][A-Za-z0-9._-]{0,63}.
Status check_token_name(std::string_view name);

/// True when `secret` derives to `rec.hash` (a PBKDF2 run: milliseconds).
bool verify_secret(const TokenRecord& rec, std::string_view secret);

class TokenDb {
 public:
  /// Opens (creating) `<root>/auth.db` and migrates its schema.
  static Result<TokenDb> open(const std::string& root);
  static std::string path_in(const std::string& root) { return root + "/auth.db"; }

  Result<std::vector<TokenRecord>> load_all();
  /// The bearer signing key, made (32 random bytes) on first use.
  Result<std::string> signing_key();

  /// One administrative operation, the same for the offline CLI and the
  /// admin endpoint: {"op": "create"|"list"|"show"|"disable"|"enable"|
  /// "delete"|"rotate"|"deactivate", "name": ..., "scopes": ["pat:pull"],
  /// "expires_in": seconds}. Answers {"token": {...}} (plus "secret" on
  /// create and rotate) or {"tokens": [...]}. Errc::NameUnknown for an
  /// unknown token, Errc::BadRequest for a bad operation.
  Result<nlohmann::json> apply(const nlohmann::json& op, int64_t now_s);

  /// Records a use (after a successful key derivation).
  Status touch(const std::string& name, int64_t now_s);
  /// Binds `name` to `instance` when it is unbound; true when bound to it now.
  Result<bool> bind(const std::string& name, const std::string& instance, int64_t now_s);

 private:
  explicit TokenDb(store::sql::Db db) : db_(std::move(db)) {}
  Result<TokenRecord> get(const std::string& name);
  store::sql::Db db_;
};

}  // namespace outpost::auth
