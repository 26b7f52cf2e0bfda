// The HTTP/1.1 server: listeners, the set of live connections, limits and
// graceful shutdown. Knows nothing about registries: it hands every request
// to one Handler (normally the Router's dispatch).
#pragma once
#include <uv.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <unordered_set>
#include <vector>

#include "base/result.hpp"
#include "http/exchange.hpp"
#include "net/tls_server.hpp"

namespace outpost::http {

class Listener;
class ServerConn;

struct ServerLimits {
  uint32_t max_connections = 1024;  ///< at this many, the longest-quiet one is shed for a newcomer
  uint32_t max_header_bytes = 16 * 1024;
  uint64_t header_timeout_ms = 10'000;
  uint64_t idle_timeout_ms = 60'000;
  uint64_t body_timeout_ms = 30'000;
  /// After the grace period, a request body must average at least this many
  /// bytes/s of the time the server was reading it (0: no minimum).
  uint64_t min_body_rate = 1024;
  uint64_t body_rate_grace_ms = 10'000;
  uint64_t write_timeout_ms = 60'000;
};

struct ServerStats {
  uint64_t connections_accepted = 0;
  uint64_t connections_rejected = 0;  ///< over max_connections, none quiet to shed
  uint64_t connections_shed = 0;      ///< quiet connections closed to admit a new one
  uint64_t accept_out_of_fds = 0;     ///< accepts that failed for want of a file descriptor
  uint64_t tls_on_plain = 0;          ///< TLS handshakes closed on a plain-HTTP listener
  uint64_t plain_on_tls = 0;          ///< plain HTTP requests answered 400 on an HTTPS listener
  uint64_t tls_handshakes = 0;        ///< completed on HTTPS listeners
  uint64_t tls_handshake_failures = 0;
  uint64_t requests = 0;
  uint64_t bytes_sent = 0;
};

/// Raises this process's RLIMIT_NOFILE soft limit toward its hard limit
/// (up to 65536: what the systemd unit sets) and returns the soft limit.
uint64_t raise_open_file_limit();
/// The default max_connections for an open-file limit: every connection may
/// hold its socket and one open blob or upload file, and 64 descriptors stay
/// for listeners, the database, upstream sockets and logs.
uint32_t max_connections_for(uint64_t nofile);

class Server {
 public:
  Server(uv_loop_t* loop, ServerLimits limits, Handler handler);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  /// Binds and listens on "host:port" ("[::1]:5000" for IPv6); with `tls`,
  /// the listener speaks HTTPS only, with tls->current() at each accept.
  Status listen(const std::string& addr, std::shared_ptr<net::TlsServerContext> tls = nullptr);
  /// Headers added to every response (e.g. Docker-Distribution-API-Version).
  void add_default_header(std::string name, std::string value);

  /// Stops accepting, closes idle connections, lets in-flight requests finish;
  /// after `deadline_ms` closes whatever is left. `done` fires once when no
  /// connection remains.
  void shutdown(uint64_t deadline_ms, std::function<void()> done);
  bool shutting_down() const { return shutting_down_; }

  size_t connection_count() const { return conns_.size(); }
  const ServerStats& stats() const { return stats_; }

  // ---- for Listener / ServerConn -----------------------------------------
  uv_loop_t* loop() const { return loop_; }
  const ServerLimits& limits() const { return limits_; }
  const Handler& handler() const { return handler_; }
  const std::vector<Header>& default_headers() const { return default_headers_; }
  ServerStats& mutable_stats() { return stats_; }
  void on_accept_(int fd, std::string peer, std::shared_ptr<net::TlsServerConfig> tls = nullptr);
  /// Closes the longest-quiet connection (logging `why`); false when there is none.
  bool shed_quiet_(const char* why);
  /// Writes the canned 503 to a just-accepted socket and closes it.
  void refuse_(int fd, const std::string& peer, bool tls);
  /// The spare descriptor kept open to answer 503 when out of descriptors:
  /// release it just before an accept, take it again right after.
  bool release_reserve_fd_();
  void take_reserve_fd_();
  void note_out_of_fds_(int err);
  void on_conn_closed_(ServerConn* c);
  std::string next_request_id_();
  /// Runs c->process_deferred_() on the next loop turn (outside any callback of c).
  void defer_(ServerConn* c);
  /// A TLS ClientHello reached a plain-HTTP listener: warns once per client address.
  void note_tls_on_plain_(const std::string& peer);
  /// A plain HTTP request reached an HTTPS listener: warns once per client address.
  void note_plain_on_tls_(const std::string& peer);
  /// Quiet connections (ServerConn::quiet()), longest quiet at the front.
  void quiet_add_(ServerConn* c);     ///< at the back: quiet the shortest
  void quiet_remove_(ServerConn* c);  ///< c must be listed

 private:
  void check_shutdown_done();
  void log_pressure(const char* what);
  static void on_idle(uv_idle_t* h) noexcept;
  uv_loop_t* loop_;
  ServerLimits limits_;
  Handler handler_;
  std::vector<Header> default_headers_;
  std::vector<Listener*> listeners_;
  std::unordered_set<ServerConn*> conns_;
  ServerConn* quiet_front_ = nullptr;  ///< longest quiet
  ServerConn* quiet_back_ = nullptr;
  int reserve_fd_ = -1;
  uint64_t pressure_logged_ms_ = 0;   // last "connection limit reached" line (one a second at most)
  uint64_t shed_logged_ = 0, rejected_logged_ = 0;
  ServerStats stats_;
  bool shutting_down_ = false;
  std::function<void()> shutdown_done_;
  uv_timer_t* shutdown_timer_ = nullptr;
  uv_idle_t* idle_ = nullptr;             // runs deferred parsing; active only while pending_ is non-empty
  std::vector<ServerConn*> pending_;
  std::vector<ServerConn*>* running_pending_ = nullptr;
  std::unordered_set<std::string> tls_warned_;  // client addresses told about TLS (bounded)
  std::unordered_set<std::string> plain_warned_;  // client addresses told about plain HTTP (bounded)
  uint32_t rid_prefix_ = 0;
  uint64_t rid_counter_ = 0;
};

}  // namespace outpost::http
