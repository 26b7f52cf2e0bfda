// Loopback admin endpoints through which `outpost export`, `import` and
// `inventory` work while the server runs (it holds the store's lock):
//
//   POST /outpost/bundle/export     body: ExportRequest JSON (bundle_cli.hpp)
//   POST /outpost/bundle/import     body: ImportRequest JSON
//   GET  /outpost/bundle/inventory  answer: the inventory JSON
//
// Each runs the same code as the offline command (bundle/) as one job on
// the store service's pool, and answers when it is done: 200 with the
// report JSON, or an OCI error naming what is wrong. The server process
// opens the files named in the request, so they must be absolute paths it
// can read (import) or write (export). Loopback peers only (ops.hpp
// is_loopback_peer), like POST /outpost/sync.
#pragma once

namespace outpost::http { class Router; }
namespace outpost::storesvc { class StoreService; }

namespace outpost::app {

struct Config;

/// `store` and `cfg` (read per request: live reload) must outlive the router.
void register_bundle_routes(http::Router& r, storesvc::StoreService& store, const Config& cfg);

}  // namespace outpost::app
