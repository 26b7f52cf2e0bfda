// One request/response pair as handlers see it. The connection owns the
// socket; an Exchange outlives it safely (calls after the client left are
// no-ops), so handlers may answer later from a pool job or an upstream fill.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "base/error.hpp"
#include "base/result.hpp"
#include "http/message.hpp"

namespace outpost::http {

class ServerConn;

/// Path parameters filled in by the router.
struct RouteParams {
  std::string name;       ///< repository name, may contain '/'
  std::string reference;  ///< tag or digest (manifests), digest (blobs, referrers)
  std::string uuid;       ///< upload session id
  /// Set by access control in front of the router (issue #16): whether the
  /// caller may read repository `name` (catalog entries, a mount's source).
  /// Empty: everything is readable. Safe to call from any thread.
  std::function<bool(std::string_view)> may_read;
};

class Exchange : public std::enable_shared_from_this<Exchange> {
 public:
  using BodyData = std::function<void(std::string_view chunk)>;
  using BodyEnd = std::function<void(Status)>;  ///< ok, or why the body ended early
  using Callback = std::function<void()>;

  Exchange(ServerConn* conn, Request req);
  ~Exchange();
  Exchange(const Exchange&) = delete;
  Exchange& operator=(const Exchange&) = delete;

  const Request& req() const { return req_; }
  RouteParams& params() { return params_; }
  const RouteParams& params() const { return params_; }

  /// False once the client connection is gone; later calls do nothing.
  bool alive() const { return conn_ != nullptr; }
  /// True once a response head was queued.
  bool responded() const { return state_ != RespState::None; }

  // ---- request body -------------------------------------------------------
  /// Starts delivering the request body: `on_data` for every chunk as it is
  /// parsed (the view is valid only during the call), then `on_end` exactly
  /// once (ok at the end of the body; an error when the client left or the
  /// body was malformed or stalled). Sends "100 Continue" when the client
  /// asked for it. A request with no body gets `on_end(ok)` at once.
  void read_body(BodyData on_data, BodyEnd on_end);
  /// Back-pressure: stop and restart parsing the body; pausing stops reading
  /// the socket once the buffered input is used.
  void pause_body();
  void resume_body();
  /// The body reader answers a malformed body itself, possibly later (an
  /// upload first rewinds its session, so the 400 goes out only once the
  /// session is as it was). Without it the server answers 400 at once.
  void answer_body_errors_later() { answers_body_errors_flag_ = true; }
  bool body_done() const { return body_done_; }

  // ---- response -----------------------------------------------------------
  /// Adds a response header (before the head is sent).
  void add_header(std::string name, std::string value);
  /// Whole response with Content-Length; HEAD drops the body but keeps the length.
  void respond(int status, std::string body = {}, std::string_view content_type = {});
  /// As respond(), with a body the caller keeps (copied once, straight into
  /// the buffer that holds the head: a cached manifest's answer).
  void respond_view(int status, std::string_view body);
  /// OCI error JSON with the table's status (base/errc.def); the error's
  /// retry_after becomes a Retry-After header, its reason the status line's
  /// reason phrase (else the standard one).
  void respond_error(const Error& e);
  void respond_error(Errc c, std::string detail = {}) { respond_error(Error(c, std::move(detail))); }
  /// `length` bytes of `fd` from `offset`, sent with sendfile(2). Takes
  /// ownership of `fd` and closes it. HEAD sends the head only.
  void respond_file(int status, int fd, uint64_t offset, uint64_t length);
  /// A HEAD-style answer: headers with Content-Length `length`, no body, for any method.
  void respond_head_only(int status, uint64_t length);

  /// Streaming: a head with Content-Length when `length` is known, else chunked.
  void begin_stream(int status, std::optional<uint64_t> length);
  /// Queues a chunk. Returns false when the output is above its high-water
  /// mark: wait for the drain callback before writing more.
  bool write(std::string_view chunk);
  /// Queues `length` bytes of `fd` from `offset` as the next part of the
  /// stream: sent with sendfile(2) (over TLS, read off the loop), so the
  /// bytes are never copied through this process. Takes ownership of `fd`.
  /// Returns false while the region is still queued: wait for the drain
  /// callback before writing more (one region at a time holds one fd).
  bool write_file(int fd, uint64_t offset, uint64_t length);
  /// Called once each time the queued output falls below the low-water mark
  /// (and no file region is left queued).
  void set_on_drain(Callback cb) { on_drain_ = std::move(cb); }
  /// Ends a streamed response (final chunk for chunked).
  void end_stream();
  /// Ends the response as broken: the connection is closed without the final
  /// chunk or the remaining fixed-length bytes, so no client mistakes a
  /// partial body for a whole one.
  void abort();

  /// Called once if the client connection goes away before the response ended.
  void set_on_abort(Callback cb) { on_abort_ = std::move(cb); }
  /// Called from the destructor, when no handler holds the exchange any more
  /// (the response is over): the metrics and recent-pulls hook (issue #17).
  void set_on_done(std::function<void(const Exchange&)> cb) { on_done_ = std::move(cb); }
  /// The matched route's pattern (the metrics label; the router owns the
  /// storage), set by the server's handler before dispatch.
  void set_route(std::string_view pattern) { route_ = pattern; }
  std::string_view route() const { return route_; }
  /// The response headers set so far (Docker-Content-Digest, for the log).
  const Headers& resp_headers() const { return resp_headers_; }

  // ---- for ServerConn only ------------------------------------------------
  enum class RespState { None, Streaming, Done };
  void detach_();                       ///< connection gone
  void on_body_data_(std::string_view c) { if (on_data_) on_data_(c); }
  void on_body_end_(Status s);
  void on_drained_() { if (on_drain_) { auto cb = on_drain_; cb(); } }
  bool body_reader_set_() const { return body_reader_set_flag_; }
  bool body_paused_() const { return body_paused_flag_; }
  bool answers_body_errors_() const { return answers_body_errors_flag_; }
  RespState state_ = RespState::None;
  uint64_t bytes_sent_ = 0;
  int status_ = 0;

 private:
  ServerConn* conn_;
  Request req_;
  RouteParams params_;
  Headers resp_headers_;
  std::string reason_;  ///< status-line reason phrase when not the standard one
  std::string_view route_;
  BodyData on_data_;
  BodyEnd on_end_;
  Callback on_drain_;
  Callback on_abort_;
  std::function<void(const Exchange&)> on_done_;
  bool body_reader_set_flag_ = false;
  bool body_paused_flag_ = false;
  bool answers_body_errors_flag_ = false;
  bool body_done_ = false;
  Status body_status_;
  /// `extra` more bytes are reserved for a body appended after the head.
  std::string build_head(int status, std::optional<uint64_t> length, size_t extra = 0);
  std::optional<uint64_t> stream_length_;
  uint64_t stream_written_ = 0;
  bool chunked_ = false;
  friend class ServerConn;
};

using ExchangePtr = std::shared_ptr<Exchange>;
using Handler = std::function<void(const ExchangePtr&)>;

}  // namespace outpost::http
