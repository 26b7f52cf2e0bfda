// HTTP/1.1 client for talking to parent registries: plain TCP or TLS
// (mbedTLS), llhttp in response mode, keep-alive connections pooled per
// origin, deadlines on connect, first byte and body progress. Streams
// response bodies to the caller; never buffers one whole.
//
// Call life: send() -> [pool hit | resolve -> connect -> (TLS handshake)]
//            -> write request -> on_head -> on_data* -> on_done (exactly once)
// A call whose reused connection the parent closed (EOF, reset) before any
// response byte is retried once on a new connection when the method is
// idempotent. A deadline is never retried: the caller waits one timeout.
#pragma once
#include <uv.h>

#include <functional>
#include <memory>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "base/result.hpp"
#include "http/message.hpp"
#include "http/url.hpp"

namespace outpost::net { class TlsClientConfig; }

namespace outpost::http {

struct ClientTimeouts {
  uint64_t connect_ms = 10'000;      ///< DNS + TCP + TLS handshake
  uint64_t first_byte_ms = 30'000;   ///< request written -> response head
  uint64_t progress_ms = 30'000;     ///< longest pause inside a response body
};

struct ClientRequest {
  Method method = Method::Get;
  Url url;
  Headers headers;     ///< Host, User-Agent and Content-Length are added
  std::string body;
  ClientTimeouts timeouts;
};

struct ClientResponse {
  int status = 0;
  Headers headers;
  std::optional<uint64_t> content_length;
};

class ClientConn;
class HttpClient;

/// Handle of one request in flight. cancel() stops it: no callback fires after.
class ClientCall {
 public:
  using OnHead = std::function<bool(const ClientResponse&)>;  ///< false: stop (as cancel)
  using OnData = std::function<void(std::string_view)>;
  using OnDone = std::function<void(Status)>;  ///< ok = the whole body arrived

  void cancel();
  bool finished() const { return finished_; }
  /// Back-pressure for a body consumer slower than the parent (a fill whose
  /// disk lags): pause() stops reading the socket after the bytes already
  /// parsed (on_data may still fire for the rest of the current read) and
  /// stops the progress deadline, since the wait is ours, not the parent's;
  /// resume() reads on and re-arms the deadline. No-ops once finished.
  void pause();
  void resume();
  bool paused() const { return paused_; }

  // internals, for ClientConn / HttpClient
  ClientRequest req_;
  OnHead on_head_;
  OnData on_data_;
  OnDone on_done_;
  ClientConn* conn_ = nullptr;
  HttpClient* client_ = nullptr;
  bool finished_ = false;
  bool retried_ = false;
  bool got_response_bytes_ = false;
  bool paused_ = false;
  void finish_(Status s);
};
using ClientCallPtr = std::shared_ptr<ClientCall>;

class HttpClient {
 public:
  /// `tls` may be null: https URLs then fail with a clear error. Not owned.
  HttpClient(uv_loop_t* loop, const net::TlsClientConfig* tls);
  ~HttpClient();
  HttpClient(const HttpClient&) = delete;
  HttpClient& operator=(const HttpClient&) = delete;

  ClientCallPtr send(ClientRequest req, ClientCall::OnHead on_head, ClientCall::OnData on_data,
                     ClientCall::OnDone on_done);

  /// Idle keep-alive connections older than this are closed.
  void set_pool_idle_ms(uint64_t ms) { pool_idle_ms_ = ms; }
  size_t idle_connections() const;

  // ---- for ClientConn ---------------------------------------------------
  uv_loop_t* loop() const { return loop_; }
  const net::TlsClientConfig* tls() const { return tls_; }
  uint64_t pool_idle_ms() const { return pool_idle_ms_; }
  void on_conn_idle_(ClientConn* c);
  void on_conn_closed_(ClientConn* c);
  void start_(const ClientCallPtr& call, bool allow_pool);

 private:
  uv_loop_t* loop_;
  const net::TlsClientConfig* tls_;
  uint64_t pool_idle_ms_ = 30'000;
  std::unordered_map<std::string, std::vector<ClientConn*>> idle_;  // origin -> idle conns
  std::unordered_set<ClientConn*> all_;
};

}  // namespace outpost::http
