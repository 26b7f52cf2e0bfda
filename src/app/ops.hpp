// Operator endpoints: /metrics (Prometheus text), /outpost/status (JSON),
// the status page /outpost/ (HTML, status_page.hpp), /healthz, /readyz,
// and /outpost/sync (open a sync window now, see its progress), built from
// the live server, cache and upstream state.
#pragma once
#include <string>
#include <string_view>
#include <vector>

#include "app/config.hpp"

typedef struct uv_loop_s uv_loop_t;

namespace outpost::http { class Server; class Router; }
namespace outpost::cache { class PullThrough; }
namespace outpost::storesvc { class Housekeeper; }
namespace outpost::upstream { class RequestTimings; }

namespace outpost::app {

class SyncControl;
class RequestLog;

/// The storage root's file system (uv_fs_statfs on libuv's pool).
struct DiskUsage {
  bool known = false;
  uint64_t total_bytes = 0;
  uint64_t free_bytes = 0;  ///< available to this process
};

/// What the last SIGHUP did (app/reload.hpp), shown by status.
struct ReloadReport {
  uint64_t count = 0;        ///< reloads attempted
  uint64_t last_ms = 0;      ///< wall clock of the last one (0: none)
  std::string result;        ///< "ok", or why the file was not applied
  std::vector<std::string> applied;  ///< keys changed live
  std::vector<std::string> refused;  ///< keys that need a restart (old value kept)
};

struct OpsSources {
  const Config* config = nullptr;
  const http::Server* server = nullptr;
  const cache::PullThrough* pull = nullptr;  ///< null without a parent
  uint64_t started_ms = 0;                   ///< wall clock
  /// What runs sync windows; null until the scheduler exists (POST and GET
  /// /outpost/sync then answer 503). Not owned; loop thread.
  SyncControl* sync = nullptr;
  uv_loop_t* loop = nullptr;               ///< for the disk usage query; null: none
  const RequestLog* requests = nullptr;    ///< per-route counters and recent pulls; may be null
  const ReloadReport* reload = nullptr;    ///< may be null
  /// /readyz: the store is open and every listener bound (set by app once
  /// they are; cleared when shutdown starts).
  bool ready = false;
  /// Cache management figures (issue #18); null in tests.
  const storesvc::Housekeeper* storage = nullptr;
  /// Latency of real upstream requests (issue #17); may be null.
  const upstream::RequestTimings* upstream_timings = nullptr;
};

std::string metrics_text(const OpsSources& s, const DiskUsage* disk = nullptr);
/// The /outpost/status document; `disk` adds "storage" usage when known.
std::string status_json(const OpsSources& s, const DiskUsage* disk = nullptr);
/// Why this registry cannot replay to its parent as the parent announced
/// itself so far (upstream::hierarchy_conflict), empty when it can.
std::string replay_blocked_reason(const OpsSources& s);
/// Whether `peer` ("ip:port" or "[v6]:port", http::Request::peer) is a
/// loopback address: 127.0.0.0/8, ::1, or ::ffff:127.0.0.0/104.
bool is_loopback_peer(std::string_view peer);
/// Adds GET /metrics, /outpost/status, /outpost/, /healthz, /readyz, and POST/GET /outpost/sync
/// (POST from loopback peers only). `s` must outlive the router; s.sync
/// may be set later.
void register_ops_routes(http::Router& r, const OpsSources& s);

}  // namespace outpost::app
