// `outpost sync now [--wait] [--timeout DUR]`: asks the running daemon
// (the first server.listen address of the config) to open a sync window,
// through POST /outpost/sync, and with --wait follows GET /outpost/sync,
// printing a progress line whenever it changes. A client of the admin
// endpoint only: knows nothing of queues or windows (app/sync_control.hpp
// documents the progress keys it reads).
#pragma once
#include <cstdint>
#include <cstdio>
#include <string>

#include "app/config.hpp"

namespace outpost::app {

struct SyncNowOptions {
  bool wait = false;
  uint64_t timeout_ms = 3'600'000;  ///< --wait gives up after this (default 1h)
  uint64_t poll_ms = 1'000;         ///< GET /outpost/sync interval while waiting
};

/// The admin URL for `cfg`: "http://<first listen host>:<port>", with a
/// wildcard address (0.0.0.0, ::) replaced by the loopback one.
std::string admin_base_url(const Config& cfg);

/// One GET of `path` at the running daemon's admin URL `base`, run to its
/// end (bounded by its own deadlines). `error` is set (status 0) when the
/// daemon could not be reached. For `outpost status` and the like.
struct AdminGet {
  int status = 0;
  std::string body;
  std::string error;
};
AdminGet admin_get(const std::string& base, const std::string& path);

/// Runs the command; lines go to `out`, errors to `err`. Exit status:
/// 0 the window was opened (or was open) and, with --wait, the queue is
/// empty; 1 the daemon refused or could not be reached, replay is blocked,
/// the window closed with entries left, or --timeout passed.
int sync_now(const Config& cfg, const SyncNowOptions& o, FILE* out, FILE* err);

}  // namespace outpost::app
