// HTTP/1.1 client for talking to parent registries: plain TCP or TLS
// (mbedTLS), llhttp in response mode, keep-alive connections pooled per
// origin, deadlines on connect, first byte and body progress. Streams
// response bodies to the caller; never buffers one whole.
//
// Call life: send() -> [pool hit | resolve -> connect -> (TLS handshake)]
//            -> write request -> on_head -> on_data* -> on_done (exactly once)
// A call whose reused connection the parent closed (EOF, reset) before any
// response byte is retried once on a new connection when the method is
// idempotent (or the caller says resending is harmless). A deadline is never
// retried: the caller waits one timeout.
//
// Request bodies are a string (small: manifests, tokens) or a region of an
// open file (blobs pushed to the parent, issue #15): read with uv_fs_read
// into one kFileBodyChunk buffer on the loop's pool and written to the socket
// before the next read starts, so a slow parent holds back the disk reads
// and memory stays at one chunk per call whatever the blob size. While such a
// body is being sent the socket is watched for an early answer (a 401 or 413
// before the body is read): it ends the call and the connection is dropped.
#pragma once
#include <uv.h>

#include <functional>
#include <memory>
#include <optional>
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

/// A request body streamed from `length` bytes of `fd` starting at `offset`
/// (positional reads: the fd's file position is not used, so one fd may
/// serve several calls). The fd is not owned and must stay open until the
/// call's on_done; the bytes must not change meanwhile. Restartable by
/// construction: every attempt (a stale-connection retry, an auth retry by
/// the caller) reads from `offset` again.
struct FileBody {
  int fd = -1;
  uint64_t offset = 0;
  uint64_t length = 0;
};

/// Size of the one buffer a FileBody is read into and sent from.
inline constexpr size_t kFileBodyChunk = 256 * 1024;

struct ClientRequest {
  Method method = Method::Get;
  Url url;
  Headers headers;     ///< Host, User-Agent and Content-Length are added
  std::string body;    ///< small bodies; ignored when file_body is set
  std::optional<FileBody> file_body;  ///< Content-Length = file_body->length
  ClientTimeouts timeouts;            ///< progress_ms also bounds pauses while sending a body
  /// Resend on a stale pooled connection (closed before any answer byte)
  /// even though the method is not GET/HEAD: the caller knows a second copy
  /// is harmless (a PUT by digest, a PATCH with Content-Range).
  bool retry_if_stale = false;
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
  /// FileBody progress of the current attempt: bytes read from the file and
  /// bytes handed to the socket (read - sent <= kFileBodyChunk). Reset when
  /// the request is sent again on a new connection.
  uint64_t body_bytes_read() const { return body_read_; }
  uint64_t body_bytes_sent() const { return body_sent_; }

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
  uint64_t body_read_ = 0;
  uint64_t body_sent_ = 0;
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
