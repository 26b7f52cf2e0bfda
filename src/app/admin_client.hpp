// The one client of the running daemon's loopback admin endpoints under
// /outpost/ (issue #18, #19, ...): every CLI command that talks to a running
// server (`sync now`, `status`, `token`, `gc`, `check`, `export`, `import`,
// `inventory`) sends its requests through admin_call, and asks whether a
// server holds the store through store_in_use.
#pragma once
#include <uv.h>

#include <cstdint>
#include <optional>
#include <string>

#include "app/config.hpp"
#include "base/result.hpp"
#include "http/client.hpp"
#include "http/message.hpp"
#include "http/url.hpp"

namespace outpost::app {

/// The admin URL for `cfg`: "http://<first listen host>:<port>", with a
/// wildcard address (0.0.0.0, ::) replaced by the loopback one.
std::string admin_base_url(const Config& cfg);

struct AdminAnswer {
  int status = 0;
  std::string body;
  Status st;  ///< transport failure (then status is 0)
};

/// One request to the daemon's admin URL `base` + `path_and_query`, run
/// to its end on a loop of its own. `timeout_ms` bounds the wait for the
/// first byte of the answer (and, up to 10 minutes, each later pause).
/// `body` is sent with `content_type` when not empty.
AdminAnswer admin_call(const std::string& base, http::Method m, const std::string& path_and_query,
                       uint64_t timeout_ms, std::string body = {}, const std::string& content_type = {});
/// As above at admin_base_url(cfg).
AdminAnswer admin_call(const Config& cfg, http::Method m, const std::string& path_and_query, uint64_t timeout_ms,
                       std::string body = {}, const std::string& content_type = {});
/// As above on the caller's `loop` and `client` (for a client that polls).
AdminAnswer admin_call(uv_loop_t* loop, http::HttpClient& client, http::Method m, const http::Url& url,
                       uint64_t timeout_ms, std::string body = {}, const std::string& content_type = {});

/// "CODE: detail" (or "CODE: message") of an OCI error body, else the
/// start of the body.
std::string admin_error_text(const AdminAnswer& a);

/// True when another process (a running server) holds the store lock
/// (store.cpp's flock on <root>/LOCK); false when the store is free or
/// does not exist yet. A probe only: it keeps no lock.
bool store_in_use(const std::string& root);

/// The store lock at <root>/LOCK taken exclusively (created if missing),
/// for a command that changes files a server would own: held until
/// destroyed. Empty when a server holds it.
class StoreLock {
 public:
  static Result<std::optional<StoreLock>> try_take(const std::string& root);
  StoreLock(StoreLock&& o) noexcept : fd_(o.fd_) { o.fd_ = -1; }
  StoreLock& operator=(StoreLock&&) = delete;
  StoreLock(const StoreLock&) = delete;
  ~StoreLock();

 private:
  explicit StoreLock(int fd) : fd_(fd) {}
  int fd_ = -1;
};

}  // namespace outpost::app
