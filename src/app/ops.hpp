// Operator endpoints: /metrics (Prometheus text), /outpost/status (JSON) and
// /healthz, built from the live server, cache and upstream state.
#pragma once
#include <string>

#include "app/config.hpp"

namespace outpost::http { class Server; class Router; }
namespace outpost::cache { class PullThrough; }

namespace outpost::app {

struct OpsSources {
  const Config* config = nullptr;
  const http::Server* server = nullptr;
  const cache::PullThrough* pull = nullptr;  ///< null without a parent
  uint64_t started_ms = 0;                   ///< wall clock
};

std::string metrics_text(const OpsSources& s);
std::string status_json(const OpsSources& s);
/// Adds GET /metrics, /outpost/status and /healthz. `s` must outlive the router.
void register_ops_routes(http::Router& r, const OpsSources& s);

}  // namespace outpost::app
