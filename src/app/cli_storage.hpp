// Shared by `outpost gc` and `outpost check` (issue #18): open the store
// offline, or, when a running server holds its lock, talk to that server's
// loopback admin endpoints; and print reports.
#pragma once
#include <cstdint>
#include <memory>
#include <string>

#include "app/config.hpp"
#include "base/result.hpp"
#include "http/message.hpp"
#include "store/store.hpp"

namespace outpost::app {

/// The store for an offline command, or nullptr with `*running` set when
/// another process (a running server) holds it; other failures are errors.
Result<std::unique_ptr<store::Store>> open_store_offline(const Config& cfg, bool* running);

struct AdminAnswer {
  int status = 0;
  std::string body;
  Status st;  ///< transport failure
};
/// One request to the running server's admin address (admin_base_url),
/// bounded by `timeout_ms`.
AdminAnswer admin_call(const Config& cfg, http::Method m, const std::string& path_and_query, uint64_t timeout_ms);
/// "CODE: detail" of an OCI error body, else the start of the body.
std::string admin_error_text(const AdminAnswer& a);


}  // namespace outpost::app
