#include "http/client.hpp"

#include <arpa/inet.h>
#include <llhttp.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "base/log.hpp"
#include "net/tls.hpp"
#include "outpost_version.h"

namespace outpost::http {

// One connection to one origin; runs one call at a time.
class ClientConn {
 public:
  enum class State { Resolving, Connecting, Handshaking, Writing, Reading, Idle, Closing };

  ClientConn(HttpClient* client, const Url& url);
  void run(const ClientCallPtr& call);  // start (or reuse for) a call
  void close(Status why);               // fails the current call with `why`
  const std::string& origin() const { return origin_; }
  bool reused() const { return requests_ > 1; }
  void detach_call() { call_.reset(); }
  /// ClientCall::pause/resume: stop or restart reading (and the deadline).
  void set_paused(bool paused);

 private:
  ~ClientConn();
  void resolve();
  static void on_resolved(uv_getaddrinfo_t* req, int status, addrinfo* res) noexcept;
  void connect_to(const sockaddr* sa, socklen_t len);
  static void on_poll(uv_poll_t* h, int status, int events) noexcept;
  static void on_timer(uv_timer_t* t) noexcept;
  static void on_closed(uv_handle_t* h) noexcept;
  void on_connected();
  void do_handshake();
  void begin_request();
  void do_write();
  void do_read();
  /// FileBody: reads the next chunk (out_ is drained) unless one is in flight.
  void read_body_chunk();
  static void on_body_read(uv_fs_t* req) noexcept;
  bool body_pending() const;
  void feed(const char* p, size_t n);
  void message_done();
  void set_poll(int events);
  void arm(uint64_t ms);
  /// The request went (or its body did): its answer's head is due within
  /// first_byte_ms from now.
  void arm_head_deadline();
  /// Waiting on the parent: what is left of the head's deadline, or
  /// progress_ms once the head is in.
  void arm_waiting();
  void fail(Errc code, std::string detail);
  /// The parent ended the connection (EOF, reset, broken pipe) before the
  /// answer's first byte: the one case where a reused connection is retried.
  void fail_closed(std::string detail);

  static int cb_header_field(llhttp_t* p, const char* at, size_t len) noexcept;
  static int cb_header_value(llhttp_t* p, const char* at, size_t len) noexcept;
  static int cb_header_value_complete(llhttp_t* p) noexcept;
  static int cb_headers_complete(llhttp_t* p) noexcept;
  static int cb_body(llhttp_t* p, const char* at, size_t len) noexcept;
  static int cb_message_complete(llhttp_t* p) noexcept;
  static llhttp_settings_t settings();

  HttpClient* client_;
  Url url_;
  std::string origin_;
  State state_ = State::Resolving;
  int fd_ = -1;
  bool handles_open_ = false;
  uv_poll_t poll_;
  uv_timer_t timer_;
  int poll_events_ = 0;
  int pending_closes_ = 0;
  struct Resolve {
    uv_getaddrinfo_t req;
    ClientConn* conn;
  }* resolve_ = nullptr;
  std::unique_ptr<net::TlsSession> tls_;
  ClientCallPtr call_;
  int requests_ = 0;

  std::string out_;
  size_t out_off_ = 0;
  // FileBody state of the current request. The read request and its buffer
  // live in a heap object that a close() only detaches: the pool still
  // writes into the buffer until on_body_read runs.
  struct BodyRead {
    uv_fs_t req;
    ClientConn* conn;
    std::string buf;
  };
  BodyRead* body_read_ = nullptr;
  uint64_t body_pos_ = 0;  ///< bytes of the file body read so far
  std::string spare_;      ///< the other chunk buffer, reused between reads
  llhttp_t parser_;
  llhttp_settings_t settings_;
  std::string field_, value_;
  ClientResponse resp_;
  uint64_t head_due_ms_ = 0;  ///< loop time the answer's head must be in by
  bool message_complete_ = false;
  bool stop_ = false;
};

// ---------------------------------------------------------------------------

void ClientCall::cancel() {
  if (finished_) return;
  finished_ = true;
  on_head_ = nullptr;
  on_data_ = nullptr;
  on_done_ = nullptr;
  if (conn_) {
    ClientConn* c = conn_;
    conn_ = nullptr;
    c->detach_call();
    c->close(Status());
  }
}

void ClientCall::pause() {
  if (finished_ || paused_) return;
  paused_ = true;
  if (conn_) conn_->set_paused(true);
}

void ClientCall::resume() {
  if (finished_ || !paused_) return;
  paused_ = false;
  if (conn_) conn_->set_paused(false);
}

void ClientCall::finish_(Status s) {
  if (finished_) return;
  finished_ = true;
  conn_ = nullptr;
  auto cb = std::move(on_done_);
  on_head_ = nullptr;
  on_data_ = nullptr;
  if (cb) cb(std::move(s));
}

HttpClient::HttpClient(uv_loop_t* loop, const net::TlsClientConfig* tls) : loop_(loop), tls_(tls) {}

HttpClient::~HttpClient() {
  for (auto* c : std::vector<ClientConn*>(all_.begin(), all_.end()))
    c->close(Error(Errc::Cancelled, "client shutting down"));
}

size_t HttpClient::idle_connections() const {
  size_t n = 0;
  for (auto& [k, v] : idle_) n += v.size();
  return n;
}

ClientCallPtr HttpClient::send(ClientRequest req, ClientCall::OnHead on_head, ClientCall::OnData on_data,
                               ClientCall::OnDone on_done) {
  auto call = std::make_shared<ClientCall>();
  call->req_ = std::move(req);
  call->on_head_ = std::move(on_head);
  call->on_data_ = std::move(on_data);
  call->on_done_ = std::move(on_done);
  call->client_ = this;
  start_(call, true);
  return call;
}

void HttpClient::start_(const ClientCallPtr& call, bool allow_pool) {
  if (call->req_.url.tls && !tls_) {
    call->finish_(Error(Errc::UpstreamUnavailable, "TLS is not configured for " + call->req_.url.origin()));
    return;
  }
  std::string origin = call->req_.url.origin();
  if (allow_pool) {
    auto it = idle_.find(origin);
    if (it != idle_.end() && !it->second.empty()) {
      ClientConn* c = it->second.back();  // most recently used: least likely to be stale
      it->second.pop_back();
      c->run(call);
      return;
    }
  }
  auto* c = new ClientConn(this, call->req_.url);
  all_.insert(c);
  c->run(call);
}

void HttpClient::on_conn_idle_(ClientConn* c) { idle_[c->origin()].push_back(c); }

void HttpClient::on_conn_closed_(ClientConn* c) {
  all_.erase(c);
  auto it = idle_.find(c->origin());
  if (it != idle_.end()) std::erase(it->second, c);
}

// ---------------------------------------------------------------------------

llhttp_settings_t ClientConn::settings() {
  llhttp_settings_t s;
  llhttp_settings_init(&s);
  s.on_header_field = cb_header_field;
  s.on_header_value = cb_header_value;
  s.on_header_value_complete = cb_header_value_complete;
  s.on_headers_complete = cb_headers_complete;
  s.on_body = cb_body;
  s.on_message_complete = cb_message_complete;
  return s;
}

ClientConn::ClientConn(HttpClient* client, const Url& url) : client_(client), url_(url), origin_(url.origin()) {
  settings_ = settings();
  uv_timer_init(client_->loop(), &timer_);
  timer_.data = this;
  pending_closes_ = 1;
}

ClientConn::~ClientConn() = default;

void ClientConn::run(const ClientCallPtr& call) {
  call_ = call;
  call->conn_ = this;
  call->got_response_bytes_ = false;
  ++requests_;
  if (state_ == State::Idle) {
    begin_request();
    return;
  }
  resolve();
}

void ClientConn::arm(uint64_t ms) {
  uv_timer_start(&timer_, on_timer, ms, 0);
}

void ClientConn::arm_head_deadline() {
  head_due_ms_ = uv_now(timer_.loop) + call_->req_.timeouts.first_byte_ms;
  arm(call_->req_.timeouts.first_byte_ms);
}

void ClientConn::arm_waiting() {
  if (resp_.status) return arm(call_->req_.timeouts.progress_ms);
  // The head as a whole is due first_byte_ms after the request went: a
  // parent dripping header bytes, or sending 100 Continue every second, must
  // not hold the client past parent.timeout by restarting the clock.
  const uint64_t now = uv_now(timer_.loop);
  arm(head_due_ms_ > now ? head_due_ms_ - now : 0);
}

void ClientConn::resolve() {
  state_ = State::Resolving;
  arm(call_->req_.timeouts.connect_ms);
  // Numeric hosts skip the resolver (tests, and parents configured by IP).
  sockaddr_in v4{};
  sockaddr_in6 v6{};
  if (inet_pton(AF_INET, url_.host.c_str(), &v4.sin_addr) == 1) {
    v4.sin_family = AF_INET;
    v4.sin_port = htons(url_.port);
    connect_to(reinterpret_cast<sockaddr*>(&v4), sizeof v4);
    return;
  }
  if (inet_pton(AF_INET6, url_.host.c_str(), &v6.sin6_addr) == 1) {
    v6.sin6_family = AF_INET6;
    v6.sin6_port = htons(url_.port);
    connect_to(reinterpret_cast<sockaddr*>(&v6), sizeof v6);
    return;
  }
  resolve_ = new Resolve{};
  resolve_->conn = this;
  resolve_->req.data = resolve_;
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  std::string port = std::to_string(url_.port);
  int rc = uv_getaddrinfo(client_->loop(), &resolve_->req, on_resolved, url_.host.c_str(), port.c_str(), &hints);
  if (rc != 0) {
    delete resolve_;
    resolve_ = nullptr;
    fail(Errc::UpstreamUnavailable, "cannot resolve " + url_.host + ": " + uv_strerror(rc));
  }
}

void ClientConn::on_resolved(uv_getaddrinfo_t* req, int status, addrinfo* res) noexcept {
  auto* r = static_cast<Resolve*>(req->data);
  ClientConn* c = r->conn;
  delete r;
  if (!c) {  // the connection was closed while resolving
    uv_freeaddrinfo(res);
    return;
  }
  c->resolve_ = nullptr;
  if (status != 0 || !res) {
    uv_freeaddrinfo(res);
    c->fail(Errc::UpstreamUnavailable, "cannot resolve " + c->url_.host + ": " + uv_strerror(status));
    return;
  }
  c->connect_to(res->ai_addr, res->ai_addrlen);
  uv_freeaddrinfo(res);
}

void ClientConn::connect_to(const sockaddr* sa, socklen_t len) {
  state_ = State::Connecting;
  fd_ = ::socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd_ < 0) return fail(Errc::UpstreamUnavailable, std::string("socket: ") + strerror(errno));
  int one = 1;
  setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  uv_poll_init_socket(client_->loop(), &poll_, fd_);
  poll_.data = this;
  handles_open_ = true;
  pending_closes_ = 2;
  int rc = ::connect(fd_, sa, len);
  if (rc == 0) return on_connected();
  if (errno != EINPROGRESS) return fail(Errc::UpstreamUnavailable, "connect to " + origin_ + ": " + strerror(errno));
  set_poll(UV_WRITABLE);
}

void ClientConn::on_connected() {
  if (url_.tls) {
    tls_ = std::make_unique<net::TlsSession>(*client_->tls(), fd_, url_.host);
    if (!tls_->setup_ok()) return fail(Errc::UpstreamUnavailable, "tls setup: " + tls_->last_error());
    state_ = State::Handshaking;
    return do_handshake();
  }
  begin_request();
}

void ClientConn::do_handshake() {
  switch (tls_->handshake()) {
    case net::TlsIo::Done: return begin_request();
    case net::TlsIo::WantRead: return set_poll(UV_READABLE);
    case net::TlsIo::WantWrite: return set_poll(UV_WRITABLE);
    default: return fail(Errc::UpstreamUnavailable, "TLS handshake with " + origin_ + " failed: " + tls_->last_error());
  }
}

void ClientConn::begin_request() {
  const ClientRequest& r = call_->req_;
  out_.clear();
  out_off_ = 0;
  out_ += method_name(r.method);
  out_ += ' ';
  out_ += r.url.target;
  out_ += " HTTP/1.1\r\nHost: ";
  out_ += r.url.host_header();
  out_ += "\r\nUser-Agent: outpost/" OUTPOST_VERSION "\r\n";
  for (const auto& h : r.headers.list()) {
    out_ += h.name; out_ += ": "; out_ += h.value; out_ += "\r\n";
  }
  if (r.file_body) {
    out_ += "Content-Length: " + std::to_string(r.file_body->length) + "\r\n\r\n";
  } else {
    if (!r.body.empty() || r.method == Method::Put || r.method == Method::Post || r.method == Method::Patch)
      out_ += "Content-Length: " + std::to_string(r.body.size()) + "\r\n";
    out_ += "\r\n";
    out_ += r.body;
  }
  body_pos_ = 0;
  call_->body_read_ = 0;
  call_->body_sent_ = 0;
  llhttp_init(&parser_, HTTP_RESPONSE, &settings_);
  parser_.data = this;
  resp_ = ClientResponse{};
  field_.clear();
  value_.clear();
  message_complete_ = false;
  stop_ = false;
  state_ = State::Writing;
  arm_head_deadline();
  do_write();
}

bool ClientConn::body_pending() const {
  return call_ && call_->req_.file_body && body_pos_ < call_->req_.file_body->length;
}

void ClientConn::do_write() {
  // With a file body the socket is also watched for an early answer.
  const int watch = call_ && call_->req_.file_body ? UV_READABLE : 0;
  while (out_off_ < out_.size()) {
    size_t n = 0;
    if (tls_) {
      auto io = tls_->write(out_.data() + out_off_, out_.size() - out_off_, &n);
      out_off_ += n;
      if (io == net::TlsIo::WantWrite) return set_poll(UV_WRITABLE | watch);
      if (io == net::TlsIo::WantRead) return set_poll(UV_READABLE);
      if (io != net::TlsIo::Done) return fail(Errc::UpstreamUnavailable, "write to " + origin_ + ": " + tls_->last_error());
    } else {
      ssize_t w = ::send(fd_, out_.data() + out_off_, out_.size() - out_off_, MSG_NOSIGNAL);
      if (w < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return set_poll(UV_WRITABLE | watch);
        if (errno == EPIPE || errno == ECONNRESET) return fail_closed("write to " + origin_ + ": " + strerror(errno));
        return fail(Errc::UpstreamUnavailable, "write to " + origin_ + ": " + strerror(errno));
      }
      n = static_cast<size_t>(w);
      out_off_ += n;
    }
    if (watch && body_pos_ > 0 && n > 0) {
      // Body bytes moved: the parent is reading; the deadline is progress.
      call_->body_sent_ = std::min(call_->body_read_, call_->body_sent_ + n);
      arm(call_->req_.timeouts.progress_ms);
    }
  }
  out_.clear();
  out_off_ = 0;
  if (body_pending()) {
    // Back-pressure: the next chunk is read only now that this one is in
    // the socket; meanwhile only an early answer is of interest.
    set_poll(UV_READABLE);
    return read_body_chunk();
  }
  if (watch) {
    call_->body_sent_ = call_->body_read_;
    arm_head_deadline();  // the parent may verify a digest now
  }
  state_ = State::Reading;
  set_poll(UV_READABLE);
  if (tls_ && tls_->has_pending()) do_read();
}

void ClientConn::read_body_chunk() {
  if (body_read_) return;
  const FileBody& fb = *call_->req_.file_body;
  const uint64_t left = fb.length - body_pos_;
  auto* r = new BodyRead{};
  r->conn = this;
  r->req.data = r;
  r->buf = std::move(spare_);
  r->buf.resize(static_cast<size_t>(std::min<uint64_t>(left, kFileBodyChunk)));
  body_read_ = r;
  uv_buf_t b = uv_buf_init(r->buf.data(), static_cast<unsigned>(r->buf.size()));
  int rc = uv_fs_read(client_->loop(), &r->req, fb.fd, &b, 1, static_cast<int64_t>(fb.offset + body_pos_), on_body_read);
  if (rc < 0) {
    body_read_ = nullptr;
    delete r;
    fail(Errc::Io, std::string("reading the request body: ") + uv_strerror(rc));
  }
}

void ClientConn::on_body_read(uv_fs_t* req) noexcept {
  auto* r = static_cast<BodyRead*>(req->data);
  ClientConn* c = r->conn;
  const ssize_t n = req->result;
  uv_fs_req_cleanup(req);
  if (!c) {  // the connection closed meanwhile
    delete r;
    return;
  }
  c->body_read_ = nullptr;
  if (n <= 0) {
    delete r;
    return c->fail(Errc::Io, n < 0 ? std::string("reading the request body: ") + uv_strerror(static_cast<int>(n))
                                   : std::string("request body file ended before its length"));
  }
  r->buf.resize(static_cast<size_t>(n));
  c->out_.swap(r->buf);
  c->spare_ = std::move(r->buf);  // the drained buffer, for the next read
  delete r;
  c->out_off_ = 0;
  c->body_pos_ += static_cast<uint64_t>(n);
  c->call_->body_read_ = c->body_pos_;
  if (c->state_ == State::Writing) c->do_write();
}

void ClientConn::do_read() {
  char buf[64 * 1024];
  for (int rounds = 0; rounds < 16 && (state_ == State::Reading || state_ == State::Writing) &&
                       !(call_ && call_->paused_);
       ++rounds) {
    size_t got = 0;
    bool eof = false;
    if (tls_) {
      auto io = tls_->read(buf, sizeof buf, &got);
      if (io == net::TlsIo::WantRead) return;
      if (io == net::TlsIo::WantWrite) return set_poll(UV_WRITABLE | UV_READABLE);
      if (io == net::TlsIo::Closed) eof = true;
      else if (io == net::TlsIo::Failed) return fail(Errc::UpstreamUnavailable, "read from " + origin_ + ": " + tls_->last_error());
    } else {
      ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
      if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return;
        if (errno == ECONNRESET) return fail_closed("read from " + origin_ + ": " + strerror(errno));
        return fail(Errc::UpstreamUnavailable, "read from " + origin_ + ": " + strerror(errno));
      }
      if (n == 0) eof = true;
      got = static_cast<size_t>(n);
    }
    if (eof) {
      // A body delimited by EOF ends here; anything else is cut short.
      llhttp_errno_t e = llhttp_finish(&parser_);
      if (e == HPE_OK && message_complete_) return message_done();
      if (e == HPE_PAUSED && message_complete_) return message_done();
      return fail_closed("connection to " + origin_ + " closed before the response ended");
    }
    if (call_) call_->got_response_bytes_ = true;
    feed(buf, got);
    if ((state_ != State::Reading && state_ != State::Writing) || !call_ || call_->paused_) return;
    // Re-armed after parsing, so the chunk that carried the head already
    // counts against the body's progress deadline.
    arm_waiting();
  }
}

void ClientConn::feed(const char* p, size_t n) {
  llhttp_errno_t e = llhttp_execute(&parser_, p, n);
  if (state_ == State::Closing) return;
  if (stop_) return close(Status());
  if (e == HPE_PAUSED && message_complete_) {
    // Bytes after a complete response on a connection we did not pipeline on:
    // the parent is confused; do not reuse the connection.
    const char* pos = llhttp_get_error_pos(&parser_);
    if (pos != p + n) requests_ = -1000;
    return message_done();
  }
  if (e != HPE_OK)
    return fail(Errc::UpstreamError, std::string("bad HTTP response from ") + origin_ + ": " + llhttp_errno_name(e) +
                                         " " + (llhttp_get_error_reason(&parser_) ? llhttp_get_error_reason(&parser_) : ""));
}

void ClientConn::message_done() {
  ClientCallPtr call = std::move(call_);
  // An answer that came before the whole body was sent (State::Writing)
  // leaves the connection mid-request: never reuse it.
  bool reuse = llhttp_should_keep_alive(&parser_) && requests_ > 0 && state_ == State::Reading;
  uv_timer_stop(&timer_);
  if (spare_.capacity() > 0) std::string().swap(spare_);
  if (out_.capacity() > 64 * 1024) std::string().swap(out_);
  if (reuse) {
    state_ = State::Idle;
    set_poll(UV_READABLE);  // notice the parent closing while idle
    arm(client_->pool_idle_ms());
    client_->on_conn_idle_(this);
  }
  if (call) call->finish_(Status());
  if (!reuse) close(Status());
}

int ClientConn::cb_header_field(llhttp_t* p, const char* at, size_t len) noexcept {
  auto* c = static_cast<ClientConn*>(p->data);
  c->field_.append(at, len);
  return c->field_.size() > 8192 ? -1 : 0;
}
int ClientConn::cb_header_value(llhttp_t* p, const char* at, size_t len) noexcept {
  auto* c = static_cast<ClientConn*>(p->data);
  c->value_.append(at, len);
  return c->value_.size() > 65536 ? -1 : 0;
}
int ClientConn::cb_header_value_complete(llhttp_t* p) noexcept {
  auto* c = static_cast<ClientConn*>(p->data);
  if (c->resp_.headers.size() > 256) return -1;
  c->resp_.headers.add(std::move(c->field_), std::move(c->value_));
  c->field_.clear();
  c->value_.clear();
  return 0;
}
int ClientConn::cb_headers_complete(llhttp_t* p) noexcept {
  auto* c = static_cast<ClientConn*>(p->data);
  c->resp_.status = p->status_code;
  if (p->status_code >= 100 && p->status_code < 200) {  // interim: wait for the real one
    c->resp_.headers.clear();
    c->resp_.status = 0;
    return 0;
  }
  if (p->flags & F_CONTENT_LENGTH) c->resp_.content_length = p->content_length;
  ClientCallPtr call = c->call_;
  bool keep_going = true;
  // Call a copy: the callback may cancel its own call, which clears on_head_.
  if (call && call->on_head_) {
    auto cb = call->on_head_;
    keep_going = cb(c->resp_);
  }
  if (!keep_going || !c->call_ || c->call_->finished_) {
    c->stop_ = true;
    return HPE_PAUSED;
  }
  return c->call_->req_.method == Method::Head ? 1 : 0;  // 1: a HEAD response has no body
}
int ClientConn::cb_body(llhttp_t* p, const char* at, size_t len) noexcept {
  auto* c = static_cast<ClientConn*>(p->data);
  ClientCallPtr call = c->call_;
  if (call && call->on_data_) {
    auto cb = call->on_data_;  // a copy: the callback may cancel the call
    cb(std::string_view(at, len));
  }
  if (!c->call_ || c->call_->finished_ || c->state_ == State::Closing) {
    c->stop_ = true;
    return HPE_PAUSED;
  }
  return 0;
}
int ClientConn::cb_message_complete(llhttp_t* p) noexcept {
  auto* c = static_cast<ClientConn*>(p->data);
  if (c->resp_.status == 0) return 0;  // end of an interim response
  c->message_complete_ = true;
  return HPE_PAUSED;
}

void ClientConn::set_paused(bool paused) {
  if (state_ != State::Reading || !handles_open_) return;
  if (paused) {
    uv_timer_stop(&timer_);
    uv_poll_stop(&poll_);
    poll_events_ = 0;
    return;
  }
  set_poll(UV_READABLE);
  arm_waiting();
  // Records mbedTLS already decrypted raise no poll event: read them now.
  if (tls_ && tls_->has_pending()) do_read();
}

void ClientConn::set_poll(int events) {
  if (!handles_open_ || state_ == State::Closing) return;
  if (events == poll_events_) return;
  poll_events_ = events;
  uv_poll_start(&poll_, events, on_poll);
}

void ClientConn::on_poll(uv_poll_t* h, int status, int events) noexcept {
  auto* c = static_cast<ClientConn*>(h->data);
  if (status < 0 && c->state_ != State::Connecting) {
    return c->fail_closed(std::string("socket error with ") + c->origin_ + ": " + uv_strerror(status));
  }
  switch (c->state_) {
    case State::Connecting: {
      int err = 0;
      socklen_t len = sizeof err;
      getsockopt(c->fd_, SOL_SOCKET, SO_ERROR, &err, &len);
      if (err != 0) return c->fail(Errc::UpstreamUnavailable, "connect to " + c->origin_ + ": " + strerror(err));
      return c->on_connected();
    }
    case State::Handshaking: return c->do_handshake();
    case State::Writing:
      if ((events & UV_READABLE) && c->call_ && c->call_->req_.file_body) {  // an early answer
        c->do_read();
        if (c->state_ != State::Writing) return;
      }
      if (!c->body_read_) c->do_write();  // else on_body_read writes on
      return;
    case State::Reading:
      if (events & UV_WRITABLE) c->set_poll(UV_READABLE);
      return c->do_read();
    case State::Idle: {
      // Readable while idle: the parent closed (or sent garbage). Either way, drop it.
      (void)events;
      return c->close(Status());
    }
    default: return;
  }
}

void ClientConn::on_timer(uv_timer_t* t) noexcept {
  auto* c = static_cast<ClientConn*>(t->data);
  switch (c->state_) {
    case State::Idle: return c->close(Status());
    case State::Resolving:
    case State::Connecting:
    case State::Handshaking:
      return c->fail(Errc::UpstreamUnavailable, "connecting to " + c->origin_ + " timed out");
    case State::Writing:
      if (c->body_pos_ > 0)
        return c->fail(Errc::UpstreamUnavailable, "sending the request body to " + c->origin_ + " stalled");
      [[fallthrough]];
    case State::Reading:
      return c->fail(Errc::UpstreamUnavailable,
                     c->resp_.status ? "response body from " + c->origin_ + " stalled"
                                     : "no response from " + c->origin_ + " in time");
    default: return;
  }
}

void ClientConn::fail(Errc code, std::string detail) {
  ClientCallPtr call = std::move(call_);
  close(Status());
  if (call && !call->finished_) call->finish_(Error(code, std::move(detail)));
}

void ClientConn::fail_closed(std::string detail) {
  // Only a close says the connection was stale. A deadline on a reused
  // connection is a parent that accepted and never answered: retrying it
  // would double the caller's wait (issue #13: 2 x parent.timeout).
  ClientCallPtr call = std::move(call_);
  const bool retry = call && !call->finished_ && !call->retried_ && reused() && !call->got_response_bytes_ &&
                     (call->req_.method == Method::Get || call->req_.method == Method::Head ||
                      call->req_.retry_if_stale);
  close(Status());
  if (!call || call->finished_) return;
  if (retry) {
    // A pooled connection the parent had already closed: once more, fresh.
    call->retried_ = true;
    call->conn_ = nullptr;
    client_->start_(call, false);
    return;
  }
  call->finish_(Error(Errc::UpstreamUnavailable, std::move(detail)));
}

void ClientConn::close(Status why) {
  if (state_ == State::Closing) return;
  state_ = State::Closing;
  ClientCallPtr call = std::move(call_);
  if (resolve_) {
    resolve_->conn = nullptr;  // on_resolved frees it
    resolve_ = nullptr;
  }
  if (body_read_) {
    body_read_->conn = nullptr;  // on_body_read frees it
    body_read_ = nullptr;
  }
  client_->on_conn_closed_(this);
  tls_.reset();
  if (handles_open_) {
    uv_poll_stop(&poll_);
    uv_close(reinterpret_cast<uv_handle_t*>(&poll_), on_closed);
  }
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
  uv_timer_stop(&timer_);
  uv_close(reinterpret_cast<uv_handle_t*>(&timer_), on_closed);
  if (call && !call->finished_) {
    call->conn_ = nullptr;
    call->finish_(why.ok() ? Error(Errc::Cancelled, "request cancelled") : why);
  }
}

void ClientConn::on_closed(uv_handle_t* h) noexcept {
  auto* c = static_cast<ClientConn*>(h->data);
  if (--c->pending_closes_ == 0) delete c;
}

}  // namespace outpost::http
