// Cache management on the operator endpoints (issue #18): the "storage"
// object of /outpost/status, the outpost_storage_* / eviction / gc / check
// series of /metrics, and the loopback-only POST /outpost/gc, POST and GET
// /outpost/check. The JSON forms of the GC and check reports are shared
// with the offline CLI (cli_gc, cli_check), so both paths print the same.
#pragma once
#include <string>

#include <nlohmann/json.hpp>

#include "store/check.hpp"
#include "store/gc.hpp"

namespace outpost::http { class Router; }
namespace outpost::storesvc { class Housekeeper; }

namespace outpost::app {

nlohmann::json gc_report_json(const store::GcReport& r, bool dry_run);
nlohmann::json check_report_json(const store::CheckReport& r);
/// The "storage" object of /outpost/status (null housekeeper: null).
nlohmann::json storage_status_json(const storesvc::Housekeeper* h);
/// The storage series of /metrics ("" without a housekeeper).
std::string storage_metrics(const storesvc::Housekeeper* h);
/// POST /outpost/gc[?dry_run=1], POST /outpost/check[?repair=1&rate=N],
/// GET /outpost/check. Loopback peers only for the POSTs. `h` must outlive
/// the router.
void register_storage_routes(http::Router& r, storesvc::Housekeeper* h);

}  // namespace outpost::app
