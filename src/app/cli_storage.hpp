// Shared by `outpost gc` and `outpost check` (issue #18): open the store
// offline, or, when a running server holds its lock, talk to that server's
// loopback admin endpoints; and print reports.
#pragma once
#include <cstdint>
#include <memory>
#include <string>

#include "app/admin_client.hpp"  // admin_call, admin_error_text for gc and check
#include "app/config.hpp"
#include "base/result.hpp"
#include "store/store.hpp"

namespace outpost::app {

/// The store for an offline command, or nullptr with `*running` set when
/// another process (a running server) holds it; other failures are errors.
Result<std::unique_ptr<store::Store>> open_store_offline(const Config& cfg, bool* running);

}  // namespace outpost::app
