// Shared by `outpost gc` and `outpost check` (issue #18): open the store
// offline, or, when a running server holds its lock, talk to that server's
// loopback admin endpoints; and print reports.
#pragma once
#include <cstdint>
#include <memory>
#include <string>

#include "app/admin_client.hpp"  // admin_call, admin_error_text for gc and check
#include "app/cli_args.hpp"
#include "app/config.hpp"
#include "base/result.hpp"
#include "store/store.hpp"

namespace outpost::app {

/// The store for an offline command, or nullptr with `*running` set when
/// another process (a running server) holds it; other failures are errors.
Result<std::unique_ptr<store::Store>> open_store_offline(const Config& cfg, bool* running);

/// What `outpost gc` and `outpost check` work on: the config and, offline,
/// the store (null when a running server holds it: go through its admin URL).
struct StorageTarget {
  Config cfg;
  std::unique_ptr<store::Store> store;
};
/// Rejects leftover arguments, loads the config and opens its store (see
/// open_store_offline) for the command `cmd` ("gc", "check"). 0 on success,
/// else the exit status, the reason printed: 2 usage or config, 1 the store.
int open_storage_target(CliArgs& a, const char* cmd, StorageTarget* out);

}  // namespace outpost::app
