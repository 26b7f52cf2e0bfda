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

#include "app/admin_client.hpp"  // admin_base_url, for the callers that used it from here
#include "app/config.hpp"

namespace outpost::app {

struct SyncNowOptions {
  bool wait = false;
  uint64_t timeout_ms = 3'600'000;  ///< --wait gives up after this (default 1h)
  uint64_t poll_ms = 1'000;         ///< GET /outpost/sync interval while waiting
};

/// Runs the command; lines go to `out`, errors to `err`. Exit status:
/// 0 the window was opened (or was open) and, with --wait, the queue is
/// empty; 1 the daemon refused or could not be reached, replay is blocked,
/// the window closed with entries left, or --timeout passed.
int sync_now(const Config& cfg, const SyncNowOptions& o, FILE* out, FILE* err);

}  // namespace outpost::app
