// One listening socket watched with uv_poll; accepts in batches with accept4.
// Connections are handed to the Server, which decides whether to keep them.
#pragma once
#include <uv.h>

#include <memory>
#include <string>

#include "base/result.hpp"
#include "net/tls_server.hpp"

namespace outpost::http {

class Server;

class Listener {
 public:
  /// Binds "host:port" and starts accepting. On error nothing is left open.
  /// With `tls` the listener is HTTPS: each accepted connection gets the
  /// certificate current at that moment (a reload affects only new ones).
  static Result<Listener*> start(Server* server, const std::string& addr,
                                 std::shared_ptr<net::TlsServerContext> tls = nullptr);
  /// Stops accepting and frees the listener once libuv has closed its handle.
  void close();
  const std::string& address() const { return addr_; }

 private:
  Listener(Server* s, int fd, std::string addr, std::shared_ptr<net::TlsServerContext> tls);
  void accepted(int fd, const struct sockaddr_storage& ss);
  ~Listener() = default;
  static void on_readable(uv_poll_t* h, int status, int events) noexcept;
  static void on_backoff_done(uv_timer_t* t) noexcept;
  /// Out of file descriptors (EMFILE/ENFILE). True when a client was
  /// admitted anyway (accepting may go on), false when accepting paused.
  bool on_out_of_fds(int err);
  Server* server_;
  int fd_;
  std::string addr_;
  std::shared_ptr<net::TlsServerContext> tls_;
  uv_poll_t poll_;
  uv_timer_t* backoff_ = nullptr;  // own allocation: it may outlive a close() in flight
};

/// Parses "host:port" / "[v6]:port" into a sockaddr_storage.
Status parse_listen_address(const std::string& addr, struct sockaddr_storage* out, unsigned* len);

}  // namespace outpost::http
