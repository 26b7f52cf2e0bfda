// Access control in front of the router (issue #16): every /v2/ request
// is checked against the route's api::Access before its handler runs, so
// no store, cache or parent work happens for a request that will be
// refused, and the api handlers stay unaware of credentials. Also serves
// GET /token (the Docker registry token flow) and the loopback-only admin
// endpoint POST /outpost/tokens that `outpost token` uses on a running
// server.
//
// Threading: loop thread. The token table lives in memory here
// (auth::Authorizer); auth.db is touched only by jobs on one SerialQueue
// (PBKDF2 derivations, last-used stamps, bindings, admin changes), each
// change answering with the reloaded table.
#pragma once
#include <uv.h>

#include <functional>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "api/api.hpp"
#include "app/config.hpp"
#include "auth/authorizer.hpp"
#include "base/result.hpp"
#include "http/exchange.hpp"
#include "uv/serial_queue.hpp"

namespace outpost::http { class Router; }

namespace outpost::app {

class AuthGate {
 public:
  /// Opens `<storage.root>/auth.db` and loads the tokens (blocking: call
  /// before serving).
  static Result<std::unique_ptr<AuthGate>> open(uv_loop_t* loop, const Config& cfg);

  /// True when [auth] enabled: check() must run before /v2/ handlers.
  bool enabled() const { return cfg_.enabled; }
  /// SIGHUP (issue #17): every [auth] key applies to the next request
  /// (enabled, realm, service, anonymous_pull, token_ttl).
  void apply(const AuthConfig& next);
  /// Runs `next` when the request may go on (after setting
  /// RouteParams::may_read), else answers 401/403/429 itself.
  void check(const http::ExchangePtr& ex, api::Access access, std::function<void()> next);
  /// GET /token and POST /outpost/tokens.
  void register_routes(http::Router& r);
  /// The local repository a request acts on when it is not {name} itself:
  /// `?ns=<upstream>` puts pull-through content under "<ns>/<name>"
  /// (cache::PullThrough::route). Access is checked on that repository.
  /// Unset: {name}.
  using RepositoryOf = std::function<std::string(const http::ExchangePtr&)>;
  void set_repository_of(RepositoryOf fn) { repository_of_ = std::move(fn); }

  /// Header a child sends with its instance id (auth/instance_id.hpp).
  static constexpr const char* kInstanceHeader = "Outpost-Instance";

 private:
  AuthGate(uv_loop_t* loop, AuthConfig cfg, std::shared_ptr<auth::TokenDb> db, auth::AuthOptions o, std::string key);
  using OnPrincipal = std::function<void(const auth::Principal&)>;
  /// Resolves the request's credentials to a principal, or answers the
  /// refusal itself (401 with `access`'s challenge, 429 when too many key
  /// derivations are queued). `next` (void(const auth::Principal&)) runs
  /// at once for a cached credential, a bearer token or none; it is kept
  /// (as an OnPrincipal) only while a key derivation runs.
  template <class Next>
  void authenticate(const http::ExchangePtr& ex, api::Access access, Next&& next);
  void decide(const http::ExchangePtr& ex, api::Access access, const auth::Principal& p, std::function<void()> next);
  /// Sync-token activation; false when it answered 403.
  bool check_instance(const http::ExchangePtr& ex, const auth::Principal& p);
  void challenge(const http::ExchangePtr& ex, api::Access access, Errc code, std::string detail,
                 const char* error = nullptr);
  void handle_token(const http::ExchangePtr& ex);
  void handle_admin(const http::ExchangePtr& ex);
  std::string realm(const http::ExchangePtr& ex) const;

  uv_loop_t* loop_;
  AuthConfig cfg_;
  std::shared_ptr<auth::TokenDb> db_;  ///< used only inside queue_ jobs
  uv::SerialQueuePtr queue_;
  auth::Authorizer authz_;
  size_t deriving_ = 0;  ///< key derivations queued or running
  /// Requests waiting for the derivation of their Basic credential (by its
  /// text as sent) that another request started: one derivation each.
  using Waiter = std::function<void(const auth::PrincipalPtr&)>;
  std::unordered_map<std::string, std::vector<Waiter>> waiting_;
  double bucket_ = 40;   ///< derivations that may start now (refilled over time)
  uint64_t bucket_ms_ = 0;  ///< uv_now of the last refill
  RepositoryOf repository_of_;
};

}  // namespace outpost::app
