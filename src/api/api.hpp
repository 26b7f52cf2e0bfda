// The registry API (distribution-spec v1.1) as route handlers over the
// content store. Handlers are thin: parse + validate the request, hand a
// job to the store service, map Result errors to OCI error JSON. They know
// nothing of sockets and never call the (blocking) store on the loop.
#pragma once
#include <cstdint>
#include <functional>
#include <string>

#include "base/digest.hpp"

#include "http/router.hpp"

namespace outpost::storesvc { class StoreService; }
namespace outpost::cache {
class HotBlobs;
class HotManifests;
class PullThrough;
}  // namespace outpost::cache

namespace outpost::api {

struct ApiOptions {
  bool read_only = false;                         ///< ReadOnly mode: every write answers UNSUPPORTED
  uint64_t max_manifest_bytes = 4 * 1024 * 1024;  ///< distribution-spec suggests 4 MiB
};

struct ApiContext {
  ApiOptions options;
  /// The only way to the store: jobs on the pool, results on the loop
  /// (issue #14). Null only in tests of the base route.
  storesvc::StoreService* store = nullptr;
  cache::PullThrough* pull = nullptr;  ///< null: no parent, a standalone registry
  cache::HotManifests* memo = nullptr;  ///< manifest reads; null: a store job each
  cache::HotBlobs* blobs = nullptr;     ///< blob GET/HEAD on the loop; null: a store job each
  /// A read of a blob or manifest (cache management's LRU, issue #18);
  /// loop thread, no I/O. Empty: not recorded.
  std::function<void(const Digest&)> on_access;
};

/// What a route needs when access control is on (issue #16), the tag each
/// /v2/ route carries in the router. Checked in front of the handler, before
/// any store or cache work (app/auth_gate.hpp).
enum class Access : int {
  Open = 0,  ///< no check (ops routes, /token)
  Login,     ///< any valid credential (GET /v2/: Docker's login and ping)
  Catalog,   ///< listed repositories filtered by RouteParams::may_read
  Pull,      ///< pull on {name}
  Push,      ///< push on {name} (challenged as "pull,push", as clients ask)
  Delete,    ///< delete on {name}
};

/// Adds every /v2/ route to `router`. `ctx` must outlive the router.
void register_routes(http::Router& router, ApiContext& ctx);

}  // namespace outpost::api
