#include "http/server_conn.hpp"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <iterator>
#include <cerrno>
#include <cstring>

#include "base/log.hpp"
#include "http/file_pump.hpp"
#include "http/server.hpp"
#include "http/url.hpp"

namespace outpost::http {

namespace {
constexpr size_t kReadChunk = 64 * 1024;
// A request body being consumed (a push) is read in larger steps: a quarter
// of the loop iterations per pushed byte, which leaves the loop thread more
// of its time for other clients (issue #14). Only while the body's reader is
// taking bytes, so at most this much more is buffered per connection.
constexpr size_t kBodyReadChunk = 256 * 1024;
constexpr size_t kKeepInputCapacity = 4 * 1024;  // an idle connection's input buffer beyond this is freed
constexpr uint64_t kLingerMs = 2000;     // how long we drain an unread request body before closing
constexpr size_t kMaxIov = 16;
constexpr uint64_t kSendfileChunk = 8ull << 20;
// A file region at least this long is sent corked (TCP_CORK): the kernel
// then sends only full segments, where TCP_NODELAY pushes a short one at the
// end of every sendfile call and wakes the reader for it. One stream of a
// warm 256 MiB blob: about 1.15 x faster on loopback (issue #14), as nginx's
// tcp_nopush. Smaller regions go out in one call anyway and would only pay
// the two setsockopt calls.
constexpr uint64_t kCorkAtLeast = 256 * 1024;
// Plaintext per mbedtls_ssl_write: one full TLS record.
constexpr size_t kTlsRecord = 16 * 1024;

llhttp_settings_t make_settings();
const llhttp_settings_t kSettings = make_settings();

ServerConn* self(llhttp_t* p) { return static_cast<ServerConn*>(p->data); }
}  // namespace

// ---------------------------------------------------------------------------
// lifetime

ServerConn::ServerConn(Server* server, int fd, std::string peer, std::shared_ptr<net::TlsServerConfig> tls)
    : server_(server), fd_(fd), peer_(std::move(peer)) {
  if (tls) {
    tls_ = std::make_unique<net::TlsSession>(std::move(tls), fd_);
    handshaking_ = true;
  }
  uv_poll_init_socket(server_->loop(), &poll_, fd_);
  uv_timer_init(server_->loop(), &timer_);
  poll_.data = this;
  timer_.data = this;
  open_handles_ = 2;
  llhttp_init(&parser_, HTTP_REQUEST, &kSettings);
  parser_.data = this;
}

ServerConn::~ServerConn() {
  for (auto& it : out_) {
    if (it.pump) it.pump->release();  // closes the file, now or after its read in flight
    else if (it.file_fd >= 0) ::close(it.file_fd);
  }
}

void ServerConn::start() {
  accepted_ms_ = idle_since_ = uv_now(server_->loop());
  if (tls_ && !tls_->setup_ok()) {
    log::error("tls session setup failed", " peer=" + peer_ + " reason=" + log::quote(tls_->last_error()));
    close();
    return;
  }
  update_poll();
  refresh_timer();
}

bool ServerConn::quiet() const {
  return state_ == State::Idle && out_.empty() && in_off_ == in_.size();
}

void ServerConn::update_quiet() {
  const bool q = quiet();
  if (q == quiet_listed_) return;
  if (q) server_->quiet_add_(this);
  else server_->quiet_remove_(this);
  quiet_listed_ = q;
}

void ServerConn::close() {
  if (state_ == State::Closing) return;
  const bool was_handling = cur_ && !response_done_;
  state_ = State::Closing;
  update_quiet();
  if (cur_) {
    ExchangePtr ex = std::move(cur_);
    if (was_handling) log_access(ex.get(), "client_gone");
    if (!message_complete_ && req_.has_body)
      ex->on_body_end_(Error(Errc::Cancelled, "client connection closed before the body ended"));
    ex->detach_();
  }
  uv_poll_stop(&poll_);
  uv_timer_stop(&timer_);
  uv_close(reinterpret_cast<uv_handle_t*>(&poll_), on_handle_closed);
  uv_close(reinterpret_cast<uv_handle_t*>(&timer_), on_handle_closed);
  if (tls_) {
    if (!handshaking_) tls_->close_notify();
    tls_.reset();  // its buffers go now, not when libuv frees the handles
  }
  ::close(fd_);  // the poll handle is stopped: safe to close its fd now
  fd_ = -1;
  server_->on_conn_closed_(this);
}

void ServerConn::on_handle_closed(uv_handle_t* h) noexcept {
  auto* c = static_cast<ServerConn*>(h->data);
  if (--c->open_handles_ == 0) delete c;
}

void ServerConn::close_when_idle() {
  close_when_idle_ = true;
  keep_alive_ = false;
  if (state_ == State::Idle && in_off_ == in_.size()) close();
}

// ---------------------------------------------------------------------------
// reading and parsing

void ServerConn::on_poll(uv_poll_t* h, int status, int events) noexcept {
  auto* c = static_cast<ServerConn*>(h->data);
  if (status < 0) {
    c->close();
    return;
  }
  if (c->handshaking_) {
    c->continue_handshake();
    return;
  }
  if (events & UV_WRITABLE) c->flush();
  if (c->state_ != State::Closing && (events & UV_READABLE)) c->on_readable();
}

void ServerConn::continue_handshake() {
  if (!sniffed_ && refuse_plain_http()) return;
  const net::TlsIo io = tls_->handshake();
  switch (io) {
    case net::TlsIo::Done:
      handshaking_ = hs_want_write_ = false;
      server_->mutable_stats().tls_handshakes++;
      // The first request may already wait in the socket: level-triggered
      // polling reports it on the next turn.
      break;
    case net::TlsIo::WantRead: hs_want_write_ = false; break;
    case net::TlsIo::WantWrite: hs_want_write_ = true; break;
    case net::TlsIo::Closed:
    case net::TlsIo::Failed:
      server_->mutable_stats().tls_handshake_failures++;
      log::debug("tls handshake failed", " peer=" + peer_ + " reason=" + log::quote(tls_->last_error()));
      close();
      return;
  }
  update_poll();
  refresh_timer();
}

bool ServerConn::refuse_plain_http() {
  // A handshake starts with a TLS record (0x16); a request line starts with
  // a method in capitals. Tell the plain client in its own language (as
  // nginx does) instead of a TLS alert it cannot read.
  char first[8];
  ssize_t n = ::recv(fd_, first, sizeof first, MSG_PEEK);
  if (n < 0) return false;  // nothing yet: the handshake reports WantRead
  sniffed_ = true;
  if (n == 0 || first[0] < 'A' || first[0] > 'Z') return false;
  static const std::string kAnswer = [] {
    std::string body =
        "{\"errors\":[{\"code\":\"UNSUPPORTED\",\"message\":\"this port speaks HTTPS: use an https:// URL\"}]}";
    return "HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\nContent-Length: " +
           std::to_string(body.size()) + "\r\nConnection: close\r\n\r\n" + body;
  }();
  // Read what the client sent first: closing on unread input sends RST,
  // which can destroy the answer before the client reads it.
  char sink[4096];
  for (int i = 0; i < 16 && ::recv(fd_, sink, sizeof sink, 0) > 0; ++i) {
  }
  ssize_t w = ::send(fd_, kAnswer.data(), kAnswer.size(), MSG_NOSIGNAL);
  (void)w;
  ::shutdown(fd_, SHUT_WR);
  server_->note_plain_on_tls_(peer_);
  close();
  return true;
}

void ServerConn::on_readable() {
  static thread_local char buf[kBodyReadChunk];
  // Input is bounded: a paused body or requests pipelined behind a slow
  // answer wait in at most want_read()'s limit, then TCP pushes back.
  if (state_ != State::Lingering && !want_read()) {
    update_poll();
    return;
  }
  ssize_t n;
  if (tls_ && state_ != State::Lingering) {
    // One record per call (the buffer holds a whole one, so nothing stays
    // decrypted inside mbedTLS that polling would not report); the next
    // record waits in the socket, which stays readable.
    size_t got = 0;
    switch (tls_->read(buf, sizeof buf, &got)) {
      case net::TlsIo::Done: n = static_cast<ssize_t>(got); break;
      case net::TlsIo::WantRead:
      case net::TlsIo::WantWrite: return;
      case net::TlsIo::Closed: n = 0; break;  // close_notify: the client's EOF
      case net::TlsIo::Failed:
      default:
        log::debug("tls read failed", " peer=" + peer_ + " reason=" + log::quote(tls_->last_error()));
        close();
        return;
    }
  } else {
    n = ::read(fd_, buf, body_active() ? kBodyReadChunk : kReadChunk);  // lingering over TLS: the bytes are discarded unread
    if (n < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return;
      close();
      return;
    }
  }
  if (state_ == State::Lingering) {
    if (n == 0) close();
    return;
  }
  if (n == 0) {
    read_eof_ = true;
    if (cur_ && message_complete_) {
      // The client half-closed after whole requests: answer them all (the
      // pipelined ones wait in the buffer), then close (finish_cycle).
      update_poll();
    } else {
      close();
    }
    return;
  }
  if (state_ == State::Idle && in_off_ == in_.size()) in_.clear(), in_off_ = 0;
  in_.append(buf, static_cast<size_t>(n));
  process_input();
}

bool ServerConn::can_parse() const {
  if (!cur_) return !output_backlogged();  // the next request waits for the output to drain
  if (!message_complete_) {
    if (!req_.has_body) return true;
    return cur_->body_reader_set_() && !cur_->body_paused_();
  }
  return response_done_;  // pipelined: the next request waits for this response
}

void ServerConn::process_deferred_() {
  if (state_ == State::Closing || in_execute_) return;
  if (parser_paused_) {
    if (!can_parse()) return;
    llhttp_resume(&parser_);
    parser_paused_ = false;
    if (in_off_ == in_.size() && cur_ && !message_complete_ && req_.has_body) {
      // Paused on the body's last bytes: llhttp completes the message only
      // when executed again, and there is no more input to run it on.
      in_execute_ = true;
      llhttp_errno_t err = llhttp_execute(&parser_, in_.data() + in_off_, 0);
      in_execute_ = false;
      if (state_ == State::Closing || state_ == State::Lingering) return;
      if (err == HPE_PAUSED) parser_paused_ = !can_parse() || (llhttp_resume(&parser_), false);
      else if (err != HPE_OK) return on_parse_error(err);
    }
  }
  process_input();
}

void ServerConn::process_input() {
  if (in_execute_ || parser_paused_ || state_ == State::Closing || state_ == State::Lingering) return;
  while (in_off_ < in_.size()) {
    const char* base = in_.data() + in_off_;
    const size_t n = in_.size() - in_off_;
    in_execute_ = true;
    llhttp_errno_t err = llhttp_execute(&parser_, base, n);
    in_execute_ = false;
    // Answered early (Lingering) or gone: the rest of the input is not ours to parse.
    if (state_ == State::Closing || state_ == State::Lingering) return;
    if (err == HPE_OK) {
      in_off_ += n;
    } else if (err == HPE_PAUSED) {
      in_off_ += static_cast<size_t>(llhttp_get_error_pos(&parser_) - base);
      parser_paused_ = true;
      if (can_parse()) {  // the reason to pause went away inside the callback
        llhttp_resume(&parser_);
        parser_paused_ = false;
        continue;
      }
      break;
    } else {
      on_parse_error(err);
      return;
    }
  }
  if (in_off_ == in_.size()) {
    in_.clear();
    in_off_ = 0;
    // Between requests, give back a buffer a large read grew: thousands of
    // idle keep-alive connections must not each keep 64+ KiB.
    if (state_ == State::Idle && in_.capacity() > kKeepInputCapacity) std::string().swap(in_);
  }
  if (state_ == State::Idle && (close_when_idle_ || read_eof_) && in_.empty()) {
    close();
    return;
  }
  update_poll();
  refresh_timer();
}

void ServerConn::on_parse_error(llhttp_errno_t err) {
  if (err == HPE_INVALID_METHOD && heads_ == 0 && starts_with_tls_record()) {
    // skopeo, podman and containerd try HTTPS first: an HTTP answer would be
    // garbage to them. Say what it is (once per client address), and close.
    server_->note_tls_on_plain_(peer_);
    close();
    return;
  }
  parse_failed_ = true;
  // An unknown method in a well-formed request line is "not implemented"
  // (RFC 9110 §9.1); anything else there is malformed.
  if (err == HPE_INVALID_METHOD && !reject_status_ && request_line_is_well_formed())
    reject_status_ = 501, reject_reason_ = "unknown method";
  int status = reject_status_ ? reject_status_ : 400;
  std::string why = reject_status_ ? reject_reason_ : std::string(llhttp_errno_name(err)) + ": " +
                                                          (llhttp_get_error_reason(&parser_) ? llhttp_get_error_reason(&parser_) : "");
  if (cur_ && !message_complete_ && req_.has_body) {
    // The body reader hears it first: a malformed body is a bad request, not a
    // stall, and it must leave (e.g.) an upload session as it was.
    ExchangePtr ex = cur_;
    ex->on_body_end_(Error(Errc::BadRequest, "malformed request body: " + why));
    if (ex->answers_body_errors_() && !ex->responded() && !answered_for_good()) {
      // Its reader answers later; the framing is lost, so the connection
      // closes after that answer (ex_close_after_response_).
      keep_alive_ = false;
      return;
    }
  }
  // Already answered (by the body reader just now, or earlier): the
  // connection is lingering or closing on its own; never answer twice.
  if (answered_for_good()) return;
  if (cur_ && cur_->responded()) {
    close();  // a streamed response is under way: it cannot become a 400
    return;
  }
  reject(status, why);
}

bool ServerConn::request_line_is_well_formed() const {
  // token SP target SP HTTP/1.x CRLF, as far as the bytes read so far go.
  const size_t eol = in_.find("\r\n");
  if (eol == std::string::npos) return false;
  const std::string_view line(in_.data(), eol);
  const size_t sp1 = line.find(' '), sp2 = line.rfind(' ');
  if (sp1 == std::string_view::npos || sp1 == 0 || sp2 == sp1 || sp2 == sp1 + 1) return false;
  for (char ch : line.substr(0, sp1))
    if (!std::isalnum(static_cast<unsigned char>(ch)) && !std::strchr("!#$%&'*+-.^_`|~", ch)) return false;
  const std::string_view version = line.substr(sp2 + 1);
  return version == "HTTP/1.1" || version == "HTTP/1.0";
}

bool ServerConn::answered_for_good() const {
  return state_ == State::Closing || state_ == State::Lingering || linger_after_flush_ || close_after_flush_;
}

bool ServerConn::starts_with_tls_record() const {
  // A TLS record header: content type 22 (handshake), then version major 3.
  return in_.size() >= 2 && static_cast<unsigned char>(in_[0]) == 0x16 && static_cast<unsigned char>(in_[1]) == 0x03;
}

int ServerConn::on_message_begin(llhttp_t* p) noexcept {
  auto* c = self(p);
  c->state_ = State::Head;
  c->req_ = Request{};
  // Most clients send 3-10 fields (Docker 9 with its six Accept lines): one
  // allocation here instead of the vector doubling its way up.
  c->req_.headers.reserve(12);
  c->url_.clear();
  c->field_.clear();
  c->value_.clear();
  c->head_bytes_ = 0;
  c->message_complete_ = false;
  c->response_done_ = false;
  c->started_ms_ = uv_now(c->server_->loop());
  c->started_ns_ = uv_hrtime();
  // The first head must be complete header_timeout after the connection was
  // accepted (a client may not hold a connection open by sending nothing,
  // then one byte); a later one, header_timeout after its first byte.
  c->head_deadline_ = (c->heads_ == 0 ? c->accepted_ms_ : c->started_ms_) + c->server_->limits().header_timeout_ms;
  return 0;
}

bool ServerConn::count_head(size_t len) {
  head_bytes_ += len;
  if (head_bytes_ <= server_->limits().max_header_bytes) return true;
  reject_status_ = 431;
  reject_reason_ = "request line and headers exceed " + std::to_string(server_->limits().max_header_bytes) + " bytes";
  return false;
}

int ServerConn::on_url(llhttp_t* p, const char* at, size_t len) noexcept {
  auto* c = self(p);
  if (!c->count_head(len)) return -1;
  c->url_.append(at, len);
  return 0;
}

int ServerConn::on_header_field(llhttp_t* p, const char* at, size_t len) noexcept {
  auto* c = self(p);
  if (!c->count_head(len)) return -1;
  c->field_.append(at, len);
  return 0;
}

int ServerConn::on_header_value(llhttp_t* p, const char* at, size_t len) noexcept {
  auto* c = self(p);
  if (!c->count_head(len)) return -1;
  c->value_.append(at, len);
  return 0;
}

int ServerConn::on_header_value_complete(llhttp_t* p) noexcept {
  auto* c = self(p);
  if (c->req_.headers.size() >= 256) {
    c->reject_status_ = 431;
    c->reject_reason_ = "more than 256 header fields";
    return -1;
  }
  // A field value excludes its trailing whitespace (RFC 9110 §5.5; llhttp
  // drops only the leading): "Content-Range: 0-2 " is the range 0-2.
  while (!c->value_.empty() && (c->value_.back() == ' ' || c->value_.back() == '\t')) c->value_.pop_back();
  c->req_.headers.add(std::move(c->field_), std::move(c->value_));
  c->field_.clear();
  c->value_.clear();
  return 0;
}

bool ServerConn::check_head() {
  // RFC 9112 §3.2: an HTTP/1.1 request has exactly one Host; none is allowed
  // only in HTTP/1.0, and two are an error in any version.
  // The one transfer coding understood is chunked (RFC 9112 §6.1): another
  // (gzip, chunked) would store its coded bytes as the blob; a bad one
  // (Transfer-Encoding: x) llhttp refuses only after the head.
  size_t hosts = 0;
  const Header* coding = nullptr;
  for (const auto& h : req_.headers.list()) {
    if (iequals(h.name, "Host")) ++hosts;
    else if (!coding && iequals(h.name, "Transfer-Encoding") && !iequals(h.value, "chunked")) coding = &h;
  }
  if (hosts > 1) return fail_head(400, "more than one Host header");
  if (parser_.http_major != 1) return fail_head(505, "only HTTP/1.0 and HTTP/1.1 are spoken here");
  if (hosts == 0 && parser_.http_minor >= 1) return fail_head(400, "HTTP/1.1 request without a Host header");
  if (coding) return fail_head(501, "Transfer-Encoding '" + coding->value + "' is not supported; only chunked");
  // Origin-form ("/v2/") is the norm. Absolute-form ("http://host:port/v2/",
  // §3.2.2) must be accepted too: route on its path, and its authority
  // replaces Host. Anything else (authority-form, a bare word) is an error;
  // "*" (asterisk-form) is left to the router.
  if (!url_.empty() && url_[0] != '/' && url_ != "*") {
    auto u = Url::parse(url_);
    if (!u) return fail_head(400, "request-target is neither an absolute path nor an http(s) URL");
    req_.headers.set("Host", u->host_header());
    url_ = std::move(u->target);
  }
  return true;
}

bool ServerConn::fail_head(int status, std::string reason) {
  reject_status_ = status;
  reject_reason_ = std::move(reason);
  return false;
}

int ServerConn::on_headers_complete(llhttp_t* p) noexcept {
  auto* c = self(p);
  c->heads_++;
  if (!c->check_head()) return -1;  // answered by on_parse_error with reject_status_
  Request& r = c->req_;
  r.method = method_from(llhttp_method_name(static_cast<llhttp_method_t>(p->method)));
  r.target = std::move(c->url_);
  size_t q = r.target.find('?');
  r.path = r.target.substr(0, q);
  if (q != std::string::npos) r.query = r.target.substr(q + 1);
  r.chunked = (p->flags & F_CHUNKED) != 0;
  if (p->flags & F_CONTENT_LENGTH) r.content_length = p->content_length;
  r.has_body = r.chunked || (r.content_length && *r.content_length > 0);
  if (auto e = r.headers.get("Expect")) r.expect_continue = iequals(*e, "100-continue");
  r.peer = c->peer_;
  r.tls = c->tls_ != nullptr;
  r.request_id = c->server_->next_request_id_();
  c->http_minor_ = p->http_minor;
  c->keep_alive_ = llhttp_should_keep_alive(p) && !c->close_when_idle_;
  c->state_ = State::Handling;
  c->continue_sent_ = false;
  c->body_bytes_ = c->body_active_ms_ = 0;
  c->body_clock_running_ = false;
  c->last_progress_ = uv_now(c->server_->loop());
  c->server_->mutable_stats().requests++;
  // The Exchange takes the head over (moved, not copied: a copy cost an
  // allocation per header); the flags read later (has_body, expect_continue)
  // are plain values and stay in req_.
  c->cur_ = std::make_shared<Exchange>(c, std::move(r));
  c->dispatch();
  if (c->state_ == State::Closing || c->state_ == State::Lingering) return HPE_PAUSED;
  if (!c->can_parse()) return HPE_PAUSED;
  return 0;
}

void ServerConn::dispatch() {
  ExchangePtr ex = cur_;
  try {
    server_->handler()(ex);
  } catch (const std::exception& e) {
    // Project code does not throw; this guards the C callback boundary.
    log::error("handler threw", " rid=" + ex->req().request_id + " what=" + log::quote(e.what()));
    if (!ex->responded()) ex->respond_error(Errc::Internal);
  } catch (...) {
    if (!ex->responded()) ex->respond_error(Errc::Internal);
  }
}

int ServerConn::on_body(llhttp_t* p, const char* at, size_t len) noexcept {
  auto* c = self(p);
  c->last_progress_ = uv_now(c->server_->loop());
  c->body_bytes_ += len;
  ExchangePtr ex = c->cur_;
  if (ex) ex->on_body_data_(std::string_view(at, len));
  if (c->state_ == State::Closing || c->state_ == State::Lingering) return HPE_PAUSED;
  if (!c->can_parse()) return HPE_PAUSED;
  return 0;
}

int ServerConn::on_message_complete(llhttp_t* p) noexcept {
  auto* c = self(p);
  c->message_complete_ = true;
  if (!llhttp_should_keep_alive(p)) c->keep_alive_ = false;
  ExchangePtr ex = c->cur_;
  if (ex && c->req_.has_body) ex->on_body_end_(Status());
  if (c->state_ == State::Closing || c->state_ == State::Lingering) return HPE_PAUSED;
  if (c->response_done_) {
    c->finish_cycle();
    if (c->state_ != State::Idle) return HPE_PAUSED;  // closing or lingering
    // A client pipelining without reading its answers: stop here until they
    // drain (flush resumes), or its unsent responses grow without bound.
    if (c->output_backlogged()) return HPE_PAUSED;
    return 0;
  }
  return HPE_PAUSED;
}

// ---------------------------------------------------------------------------
// responding

void ServerConn::reject(int status, std::string_view message) {
  Errc code = status == 431 ? Errc::HeadersTooLarge : status == 408 ? Errc::RequestTimeout : Errc::BadRequest;
  keep_alive_ = false;
  if (!cur_) {
    // The head never completed: answer without an Exchange.
    std::string body = error_body(Error(code, std::string(message)));
    std::string head = "HTTP/1.1 " + std::to_string(status) + " " + std::string(status_reason(status)) +
                       "\r\nContent-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) +
                       "\r\nConnection: close\r\n\r\n";
    log::info("request rejected", " peer=" + peer_ + " status=" + std::to_string(status) + " reason=" +
                                      log::quote(message));
    state_ = State::Handling;
    response_done_ = true;
    // Unread input may follow (the rest of a huge head, a body): close by
    // lingering, or the kernel's RST could destroy the answer unread.
    linger_after_flush_ = true;
    ex_send_(head + body);
    return;
  }
  cur_->respond_error(Error(code, std::string(message)));
}

bool ServerConn::ex_close_after_response_() const {
  // A body left unread, or a client that asked for close, ends the connection.
  return !keep_alive_ || (req_.has_body && !message_complete_) || close_when_idle_;
}

void ServerConn::ex_send_(std::string bytes) {
  if (state_ == State::Closing) return;
  out_bytes_ += bytes.size();
  OutItem it;
  it.bytes = std::move(bytes);
  out_.push_back(std::move(it));
  if (!write_blocked_) flush();
}

void ServerConn::ex_send_file_(int fd, uint64_t offset, uint64_t length) {
  if (state_ == State::Closing) {
    ::close(fd);
    return;
  }
  OutItem it;
  it.file_fd = fd;
  it.file_off = offset;
  it.file_left = length;
  out_.push_back(std::move(it));
  out_files_++;
  if (!write_blocked_) flush();
}

void ServerConn::ex_wants_drain_() { drain_wanted_ = true; }

void ServerConn::ex_response_done_() {
  if (state_ == State::Closing) return;
  response_done_ = true;
  if ((req_.has_body && !message_complete_) || parse_failed_) {
    // Answered before the body was read (an error, or a 100-continue refusal),
    // or the request could not be parsed to its end: we will not read the
    // rest, so the connection cannot be reused. Without this a dispatched
    // request whose framing llhttp then refused (Transfer-Encoding: x) kept
    // its connection open with no timer, for ever.
    keep_alive_ = false;
    log_access(cur_.get(), nullptr);
    if (cur_) cur_->detach_();
    cur_.reset();
    linger_after_flush_ = true;
    if (out_.empty()) start_lingering();
    return;
  }
  if (message_complete_ && !in_execute_) {
    finish_cycle();
    if (state_ == State::Idle && parser_paused_) server_->defer_(this);
  }
  // else: on_message_complete (still to come in this parse) finishes the cycle.
}

void ServerConn::ex_abort_() {
  if (state_ == State::Closing) return;
  log_access(cur_.get(), "aborted");
  if (cur_) {
    auto ex = std::move(cur_);
    ex->detach_();
  }
  close();
}

void ServerConn::ex_read_body_() {
  if (state_ == State::Closing) return;
  if (req_.expect_continue && !continue_sent_ && !message_complete_ && !response_done_) {
    continue_sent_ = true;
    ex_send_(http_minor_ >= 1 ? "HTTP/1.1 100 Continue\r\n\r\n" : "");
  }
  last_progress_ = uv_now(server_->loop());
  if (parser_paused_) server_->defer_(this);
  refresh_timer();
}

void ServerConn::ex_resume_body_() {
  if (state_ == State::Closing) return;
  last_progress_ = uv_now(server_->loop());
  if (parser_paused_) server_->defer_(this);
  update_poll();
  refresh_timer();
}

void ServerConn::ex_pause_body_() {
  if (state_ == State::Closing) return;
  refresh_timer();  // stops the body clocks: a paused body is not the client's delay
}

void ServerConn::finish_cycle() {
  log_access(cur_.get(), nullptr);
  if (cur_) {
    auto ex = std::move(cur_);
    ex->detach_();
  }
  state_ = State::Idle;
  idle_since_ = uv_now(server_->loop());
  if (!keep_alive_ || (read_eof_ && in_off_ == in_.size())) {
    if (out_.empty()) close();
    else close_after_flush_ = true;
    return;
  }
  update_poll();
  refresh_timer();
}

void ServerConn::log_access(Exchange* ex, const char* outcome) {
  if (!ex || log::level() > log::Level::Info) return;
  const Request& r = ex->req();
  uint64_t dur_us = (uv_hrtime() - started_ns_) / 1000;
  thread_local std::string f;  // one buffer per thread: a log line per request allocates nothing
  f.clear();
  f += " rid="; f += r.request_id;
  f += " method="; f += method_name(r.method);
  f += " path="; log::append_quoted(f, r.path);
  f += " status="; f += std::to_string(ex->status_);
  f += " bytes="; f += std::to_string(ex->bytes_sent_);
  f += " dur_ms="; f += std::to_string(dur_us / 1000); f += '.';
  const unsigned us = static_cast<unsigned>(dur_us % 1000);
  f += char('0' + us / 100); f += char('0' + us / 10 % 10); f += char('0' + us % 10);
  f += " peer="; f += peer_;
  if (outcome) { f += " outcome="; f += outcome; }
  log::info("request", f);
}

void ServerConn::start_lingering() {
  // Closing with unread input makes the kernel send RST, which can destroy
  // the response before the client reads it; half-close and drain instead.
  state_ = State::Lingering;
  update_quiet();
  if (tls_) tls_->close_notify();
  ::shutdown(fd_, SHUT_WR);
  in_.clear();
  in_off_ = 0;
  uv_timer_start(&timer_, on_timer, kLingerMs, 0);
  armed_deadline_ = UINT64_MAX;
  update_poll();
}

void ServerConn::flush() {
  while (!out_.empty() && state_ != State::Closing) {
    write_blocked_ = false;
    const ssize_t n = write_front();
    if (n < 0) {
      close();
      return;
    }
    if (n == 0) break;
    server_->mutable_stats().bytes_sent += static_cast<uint64_t>(n);
    if (cur_) cur_->bytes_sent_ += static_cast<uint64_t>(n);
    last_progress_ = uv_now(server_->loop());
    // A short plain write means the socket buffer is full: wait for POLLOUT
    // instead of a second call that would only say EAGAIN (as nginx does).
    if (write_blocked_) break;
  }
  if (state_ == State::Closing) return;
  if (drain_wanted_ && out_bytes_ < kLowWater && out_files_ == 0 && cur_) {
    drain_wanted_ = false;
    ExchangePtr ex = cur_;
    ex->on_drained_();
    if (state_ == State::Closing) return;
  }
  if (out_.empty()) {
    if (close_after_flush_) { close(); return; }
    if (linger_after_flush_ && state_ != State::Lingering) { start_lingering(); return; }
  }
  // Pipelined requests held back by a backlog of output: parse them again.
  if (parser_paused_ && !cur_ && state_ == State::Idle && out_bytes_ < kLowWater && out_files_ == 0)
    server_->defer_(this);
  update_poll();
  refresh_timer();
}

ssize_t ServerConn::write_front() {
  // Drop empty items (e.g. a 100-continue that was not needed).
  while (!out_.empty() && out_.front().file_fd < 0 && out_.front().off == out_.front().bytes.size()) out_.pop_front();
  if (out_.empty()) return 0;
  OutItem& front = out_.front();
  if (front.file_fd < 0) {
    ssize_t n;
    if (!tls_) {
      n = send_bytes();
    } else if (front.bytes.size() - front.off >= kTlsRecord || std::next(out_.begin()) == out_.end() ||
               std::next(out_.begin())->file_fd >= 0) {
      n = tls_send(front.bytes.data() + front.off, front.bytes.size() - front.off);
    } else {
      // Several small byte items (a head, then a body): one record, one
      // send, as sendmsg gathers them on a plain connection. The items stay
      // queued until sent, so a retry after WantWrite gathers the same
      // leading bytes (new items only ever go to the back).
      // (mbedTLS copies the bytes into its record: one buffer serves every connection.)
      static thread_local char stage[kTlsRecord];
      size_t len = 0;
      for (auto it = out_.begin(); it != out_.end() && it->file_fd < 0 && len < kTlsRecord; ++it) {
        const size_t take = std::min(it->bytes.size() - it->off, kTlsRecord - len);
        std::memcpy(stage + len, it->bytes.data() + it->off, take);
        len += take;
      }
      n = tls_send(stage, len);
    }
    if (n > 0) consume_bytes(static_cast<size_t>(n));
    return n;
  }
  ssize_t n;
  if (tls_) {
    // sendfile cannot encrypt: read the file in bounded chunks off the loop.
    if (!front.pump)
      front.pump = FilePump::start(server_->loop(), front.file_fd, front.file_off, front.file_left,
                                   [this] { on_file_ready(); });
    if (!front.pump->error().empty()) {
      log::error("cannot read the file being sent", " peer=" + peer_ + " reason=" + log::quote(front.pump->error()));
      return -1;
    }
    const std::string_view ready = front.pump->ready();
    if (ready.empty()) return 0;  // on_file_ready flushes when the read ends
    n = tls_send(ready.data(), ready.size());
    if (n > 0) front.pump->consume(static_cast<size_t>(n));
  } else {
    if (!corked_ && front.file_left >= kCorkAtLeast) set_cork(true);
    off_t off = static_cast<off_t>(front.file_off);
    const uint64_t want = std::min(front.file_left, kSendfileChunk);
    do n = ::sendfile(fd_, front.file_fd, &off, want);
    while (n < 0 && errno == EINTR);
    if (n < 0) {
      if (errno != EAGAIN && errno != EWOULDBLOCK) return -1;
      write_blocked_ = true;
      return 0;
    }
    if (n == 0) {  // the file is shorter than promised: the response is broken
      log::error("file shorter than its response length", " peer=" + peer_);
      return -1;
    }
    if (static_cast<uint64_t>(n) < want) write_blocked_ = true;  // the socket buffer is full
  }
  if (n > 0) {
    front.file_off += static_cast<uint64_t>(n);
    front.file_left -= static_cast<uint64_t>(n);
    if (front.file_left == 0) drop_file_item();
  }
  return n;
}

ssize_t ServerConn::send_bytes() {
  iovec iov[kMaxIov];
  size_t cnt = 0;
  for (auto it = out_.begin(); it != out_.end() && it->file_fd < 0 && cnt < kMaxIov; ++it, ++cnt) {
    iov[cnt].iov_base = it->bytes.data() + it->off;
    iov[cnt].iov_len = it->bytes.size() - it->off;
  }
  // sendmsg rather than writev for MSG_NOSIGNAL: a peer that left must
  // give EPIPE, not kill a process that did not ignore SIGPIPE.
  msghdr mh{};
  mh.msg_iov = iov;
  mh.msg_iovlen = cnt;
  size_t want = 0;
  for (size_t i = 0; i < cnt; ++i) want += iov[i].iov_len;
  ssize_t n;
  do n = ::sendmsg(fd_, &mh, MSG_NOSIGNAL);
  while (n < 0 && errno == EINTR);
  if (n < 0) {
    if (errno != EAGAIN && errno != EWOULDBLOCK) return -1;
    write_blocked_ = true;
    return 0;
  }
  if (static_cast<size_t>(n) < want) write_blocked_ = true;  // the socket buffer is full
  return n;
}

ssize_t ServerConn::tls_send(const char* p, size_t n) {
  // At most one record per call. After WantWrite mbedTLS holds the record
  // and expects the same call again: the front item (or pump buffer) is not
  // consumed meanwhile, so the retry passes the same bytes.
  // (A client may negotiate records shorter than 16 KiB: the length held
  // back is remembered rather than recomputed.)
  const size_t len = tls_retry_len_ ? std::min(tls_retry_len_, n) : std::min(n, kTlsRecord);
  size_t written = 0;
  switch (tls_->write(p, len, &written)) {
    case net::TlsIo::Done: tls_retry_len_ = 0; return static_cast<ssize_t>(written);
    case net::TlsIo::WantWrite:
    case net::TlsIo::WantRead:
      tls_retry_len_ = len - written;
      write_blocked_ = true;
      return static_cast<ssize_t>(written);
    default:
      log::debug("tls write failed", " peer=" + peer_ + " reason=" + log::quote(tls_->last_error()));
      return -1;
  }
}

void ServerConn::consume_bytes(size_t left) {
  out_bytes_ -= left;
  while (left > 0) {
    OutItem& f = out_.front();
    size_t avail = f.bytes.size() - f.off;
    if (left >= avail) { left -= avail; out_.pop_front(); }
    else { f.off += left; left = 0; }
  }
}

void ServerConn::drop_file_item() {
  OutItem& f = out_.front();
  if (f.pump) f.pump->release();
  else ::close(f.file_fd);
  out_.pop_front();
  out_files_--;
  if (corked_) set_cork(false);  // the region's last segment goes now
}

void ServerConn::set_cork(bool on) {
  const int v = on ? 1 : 0;
  // A failure only costs the optimisation: the bytes still go out.
  setsockopt(fd_, IPPROTO_TCP, TCP_CORK, &v, sizeof v);
  corked_ = on;
}

void ServerConn::on_file_ready() {
  if (state_ == State::Closing) return;
  if (!write_blocked_) flush();
}

bool ServerConn::output_backlogged() const {
  // A queued file region is an open fd: one at a time per connection.
  return out_bytes_ >= kHighWater || out_files_ > 0;
}

// ---------------------------------------------------------------------------
// polling and deadlines

bool ServerConn::want_read() const {
  if (state_ == State::Closing || read_eof_) return false;
  if (state_ == State::Lingering) return true;
  // A client that does not read its answers is not read either (a body in
  // progress is: its sender may well read only once it has sent it all).
  if (out_bytes_ >= kHighWater && !(cur_ && req_.has_body && !message_complete_)) return false;
  // Bounded input: pipelined requests and paused bodies wait in at most this much.
  return in_.size() - in_off_ < kReadChunk + server_->limits().max_header_bytes;
}

void ServerConn::update_poll() {
  if (state_ == State::Closing) return;
  int events = handshaking_ ? (hs_want_write_ ? UV_WRITABLE : UV_READABLE)
                            : (want_read() ? UV_READABLE : 0) | (write_blocked_ ? UV_WRITABLE : 0);
  if (events == poll_events_) return;
  poll_events_ = events;
  if (events == 0) uv_poll_stop(&poll_);
  else uv_poll_start(&poll_, events, on_poll);
}

bool ServerConn::body_active() const {
  return state_ == State::Handling && cur_ && req_.has_body && !message_complete_ && cur_->body_reader_set_() &&
         !cur_->body_paused_();
}

void ServerConn::account_body_time(uint64_t now) {
  const bool active = body_active();
  if (active == body_clock_running_) return;
  if (active) body_active_since_ = now;
  else body_active_ms_ += now - body_active_since_;
  body_clock_running_ = active;
}

uint64_t ServerConn::rate_deadline() const {
  // Too slow once the reading time exceeds grace + bytes / rate: each byte
  // buys 1/rate s beyond the grace period (Apache mod_reqtimeout's MinRate).
  const ServerLimits& lim = server_->limits();
  if (lim.min_body_rate == 0 || !body_clock_running_) return UINT64_MAX;
  const uint64_t allowed = lim.body_rate_grace_ms + body_bytes_ * 1000 / lim.min_body_rate;
  return body_active_since_ + (allowed > body_active_ms_ ? allowed - body_active_ms_ : 0);
}

uint64_t ServerConn::deadline() const {
  const ServerLimits& lim = server_->limits();
  if (write_blocked_) return last_progress_ + lim.write_timeout_ms;
  if (state_ == State::Idle && heads_ == 0)  // nothing sent yet: as idle, and as a head not begun
    return accepted_ms_ + std::min(lim.idle_timeout_ms, lim.header_timeout_ms);
  if (state_ == State::Idle) return idle_since_ + lim.idle_timeout_ms;
  if (state_ == State::Head) return head_deadline_;
  if (body_active()) return std::min(last_progress_ + lim.body_timeout_ms, rate_deadline());
  return UINT64_MAX;
}

void ServerConn::refresh_timer() {
  update_quiet();
  account_body_time(uv_now(server_->loop()));
  if (state_ == State::Closing || state_ == State::Lingering) return;
  // Lazy: a timer already armed at or before the deadline stays as it is,
  // and on_timer re-arms it if it fires early. A keep-alive request moves
  // the deadline three times (head, none, idle); stopping and restarting
  // the timer each time was two libuv heap operations per request (about
  // 2 % of a manifest HEAD's CPU, issue #14). Now a busy connection's timer
  // is re-armed about once per header_timeout.
  const uint64_t due = deadline();
  if (due >= armed_deadline_) return;
  armed_deadline_ = due;
  const uint64_t now = uv_now(server_->loop());
  uv_timer_start(&timer_, on_timer, due > now ? due - now : 0, 0);
}

void ServerConn::on_timer(uv_timer_t* t) noexcept {
  auto* c = static_cast<ServerConn*>(t->data);
  c->armed_deadline_ = UINT64_MAX;
  const ServerLimits& lim = c->server_->limits();
  if (c->state_ == State::Closing) return;
  if (c->state_ == State::Lingering) return c->close();
  // Armed for an earlier deadline than the one that holds now (see
  // refresh_timer): wait for the current one.
  c->account_body_time(uv_now(c->server_->loop()));
  if (c->deadline() > uv_now(c->server_->loop())) return c->refresh_timer();
  switch (c->state_) {
    case State::Closing:
    case State::Lingering: return;  // handled above
    case State::Idle:
      if (c->write_blocked_) break;
      c->close();  // keep-alive idle: a silent close is the norm
      return;
    case State::Head:
      c->reject(408, "request head not received within " + std::to_string(lim.header_timeout_ms) + " ms");
      return;
    case State::Handling:
      if (c->write_blocked_) break;
      if (c->body_active()) {
        const uint64_t now = uv_now(c->server_->loop());
        std::string why;
        if (now >= c->rate_deadline())
          why = "request body slower than min_body_rate (" + std::to_string(lim.min_body_rate) + " bytes/s)";
        else if (now >= c->last_progress_ + lim.body_timeout_ms)
          why = "no request body data for " + std::to_string(lim.body_timeout_ms) + " ms";
        else {
          c->refresh_timer();  // progress since the timer was set
          return;
        }
        ExchangePtr ex = c->cur_;
        ex->on_body_end_(Error(Errc::RequestTimeout, why));
        // The body reader may have answered inside on_body_end_: that answer
        // already set the connection lingering (closing now could RST it away).
        if (c->answered_for_good()) return;
        if (!ex->responded()) {
          ex->respond_error(Errc::RequestTimeout, why);
          return;
        }
        c->close();  // a streamed response is under way: it cannot carry the 408
        return;
      }
      c->refresh_timer();
      return;
  }
  log::info("write timeout: client stopped reading", " peer=" + c->peer_);
  c->close();
}

namespace {
llhttp_settings_t make_settings() {
  llhttp_settings_t s;
  llhttp_settings_init(&s);
  s.on_message_begin = ServerConn::on_message_begin;
  s.on_url = ServerConn::on_url;
  s.on_header_field = ServerConn::on_header_field;
  s.on_header_value = ServerConn::on_header_value;
  s.on_header_value_complete = ServerConn::on_header_value_complete;
  s.on_headers_complete = ServerConn::on_headers_complete;
  s.on_body = ServerConn::on_body;
  s.on_message_complete = ServerConn::on_message_complete;
  return s;
}
}  // namespace

}  // namespace outpost::http
