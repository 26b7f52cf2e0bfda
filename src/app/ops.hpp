// Operator endpoints: /metrics (Prometheus text), /outpost/status (JSON),
// /healthz, and /outpost/sync (open a sync window now, see its progress),
// built from the live server, cache and upstream state.
#pragma once
#include <string>
#include <string_view>

#include "app/config.hpp"

namespace outpost::http { class Server; class Router; }
namespace outpost::cache { class PullThrough; }
namespace outpost::storesvc { class Housekeeper; }

namespace outpost::app {

class SyncControl;

struct OpsSources {
  const Config* config = nullptr;
  const http::Server* server = nullptr;
  const cache::PullThrough* pull = nullptr;  ///< null without a parent
  uint64_t started_ms = 0;                   ///< wall clock
  /// What runs sync windows; null until the scheduler exists (POST and GET
  /// /outpost/sync then answer 503). Not owned; loop thread.
  SyncControl* sync = nullptr;
  /// Cache management figures (issue #18); null in tests.
  const storesvc::Housekeeper* storage = nullptr;
};

std::string metrics_text(const OpsSources& s);
std::string status_json(const OpsSources& s);
/// Why this registry cannot replay to its parent as the parent announced
/// itself so far (upstream::hierarchy_conflict), empty when it can.
std::string replay_blocked_reason(const OpsSources& s);
/// Whether `peer` ("ip:port" or "[v6]:port", http::Request::peer) is a
/// loopback address: 127.0.0.0/8, ::1, or ::ffff:127.0.0.0/104.
bool is_loopback_peer(std::string_view peer);
/// Adds GET /metrics, /outpost/status, /healthz, and POST/GET /outpost/sync
/// (POST from loopback peers only). `s` must outlive the router; s.sync
/// may be set later.
void register_ops_routes(http::Router& r, const OpsSources& s);

}  // namespace outpost::app
