#include "http/exchange.hpp"

#include <cinttypes>

#include <unistd.h>

#include <ctime>

#include "http/server.hpp"
#include "http/server_conn.hpp"

namespace outpost::http {

namespace {
// RFC 9110 §6.6.1: an origin server with a clock sends Date. Formatted once a second.
std::string_view http_date() {
  static thread_local time_t last = 0;
  static thread_local char buf[64];
  time_t now = time(nullptr);
  if (now != last) {
    last = now;
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(buf, sizeof buf, "%a, %d %b %Y %H:%M:%S GMT", &tm);
  }
  return buf;
}
}  // namespace

Exchange::Exchange(ServerConn* conn, Request req) : conn_(conn), req_(std::move(req)) {
  resp_headers_.reserve(8);  // one allocation for a handler's few headers
}
Exchange::~Exchange() {
  if (on_done_) on_done_(*this);
}

void Exchange::detach_() {
  if (!conn_) return;
  conn_ = nullptr;
  if (state_ != RespState::Done) {
    state_ = RespState::Done;
    if (on_abort_) {
      auto cb = std::move(on_abort_);
      cb();
    }
  }
  // The body reader hears the end exactly once, even when the response went
  // out before the body did. Dropping every callback also breaks the cycles
  // handlers make by capturing the ExchangePtr in them.
  if (body_reader_set_flag_ && !body_done_) on_body_end_(Error(Errc::Cancelled, "the exchange ended before its body"));
  on_data_ = nullptr;
  on_end_ = nullptr;
  on_drain_ = nullptr;
  on_abort_ = nullptr;
}

void Exchange::on_body_end_(Status s) {
  if (body_done_) return;
  body_done_ = true;
  body_status_ = s;
  if (on_end_) {
    auto cb = std::move(on_end_);
    on_data_ = nullptr;
    cb(std::move(s));
  }
}

void Exchange::read_body(BodyData on_data, BodyEnd on_end) {
  if (body_reader_set_flag_) return;
  body_reader_set_flag_ = true;
  if (!req_.has_body) {
    body_done_ = true;
    on_end(Status());
    return;
  }
  if (body_done_) {
    on_end(body_status_);
    return;
  }
  if (!conn_) {
    body_done_ = true;
    on_end(Error(Errc::Cancelled, "client connection closed"));
    return;
  }
  on_data_ = std::move(on_data);
  on_end_ = std::move(on_end);
  conn_->ex_read_body_();
}

void Exchange::pause_body() {
  if (body_paused_flag_) return;
  body_paused_flag_ = true;
  if (conn_) conn_->ex_pause_body_();
}

void Exchange::resume_body() {
  if (!body_paused_flag_) return;
  body_paused_flag_ = false;
  if (conn_) conn_->ex_resume_body_();
}

void Exchange::add_header(std::string name, std::string value) {
  resp_headers_.add(std::move(name), std::move(value));
}

std::string Exchange::build_head(int status, std::optional<uint64_t> length, size_t extra) {
  status_ = status;
  std::string h;
  h.reserve(512 + extra);  // a manifest answer's head is ~420 bytes
  h += conn_->ex_http_minor_() >= 1 ? "HTTP/1.1 " : "HTTP/1.0 ";
  h += std::to_string(status);
  h += ' ';
  h += reason_.empty() ? status_reason(status) : std::string_view(reason_);
  h += "\r\nDate: ";
  h += http_date();
  h += "\r\n";
  for (const auto& d : conn_->server()->default_headers()) {
    h += d.name; h += ": "; h += d.value; h += "\r\n";
  }
  for (const auto& d : resp_headers_.list()) {
    h += d.name; h += ": "; h += d.value; h += "\r\n";
  }
  if (status != 204 && status != 304 && !(status >= 100 && status < 200)) {
    if (length) {
      h += "Content-Length: ";
      h += std::to_string(*length);
      h += "\r\n";
    } else {
      h += "Transfer-Encoding: chunked\r\n";
    }
  }
  h += "X-Request-Id: ";
  h += req_.request_id;
  h += "\r\n";
  if (conn_->ex_close_after_response_()) h += "Connection: close\r\n";
  else if (conn_->ex_http_minor_() == 0) h += "Connection: keep-alive\r\n";
  h += "\r\n";
  return h;
}

void Exchange::respond(int status, std::string body, std::string_view content_type) {
  if (state_ != RespState::None || !conn_) return;
  if (!content_type.empty()) resp_headers_.add("Content-Type", std::string(content_type));
  respond_view(status, body);
}

void Exchange::respond_view(int status, std::string_view body) {
  if (state_ != RespState::None || !conn_) return;
  const bool with_body = req_.method != Method::Head && status != 204 && status != 304;
  std::string out = build_head(status, body.size(), with_body ? body.size() : 0);
  if (with_body) out += body;
  state_ = RespState::Done;
  ServerConn* c = conn_;
  c->ex_send_(std::move(out));
  c->ex_response_done_();
}

void Exchange::respond_error(const Error& e) {
  if (!e.retry_after.empty()) add_header("Retry-After", e.retry_after);
  // A 405 must say what the resource does allow (RFC 9110 §15.5.6). The
  // router's own 405s list the routes' methods; a handler's (a write to a
  // ReadOnly registry, a delete refused) leaves reading.
  if (http_status(e.code) == 405 && !resp_headers_.get("Allow")) add_header("Allow", "GET, HEAD");
  // A reason phrase is reason-phrase = *( HTAB / SP / VCHAR ) (RFC 9112 §4).
  reason_.clear();
  for (char c : e.reason)
    if (c == '\t' || (c >= 0x20 && c < 0x7f)) reason_ += c;
  respond(http_status(e.code), error_body(e), "application/json; charset=utf-8");
}

void Exchange::respond_head_only(int status, uint64_t length) {
  if (state_ != RespState::None || !conn_) return;
  std::string out = build_head(status, length);
  state_ = RespState::Done;
  ServerConn* c = conn_;
  c->ex_send_(std::move(out));
  c->ex_response_done_();
}

void Exchange::respond_file(int status, int fd, uint64_t offset, uint64_t length) {
  if (state_ != RespState::None || !conn_) {
    ::close(fd);
    return;
  }
  std::string head = build_head(status, length);
  state_ = RespState::Done;
  ServerConn* c = conn_;
  c->ex_send_(std::move(head));
  if (req_.method != Method::Head && length > 0) c->ex_send_file_(fd, offset, length);
  else ::close(fd);
  c->ex_response_done_();
}

void Exchange::begin_stream(int status, std::optional<uint64_t> length) {
  if (state_ != RespState::None || !conn_) return;
  chunked_ = !length.has_value();
  stream_length_ = length;
  stream_written_ = 0;
  std::string head = build_head(status, length);
  state_ = RespState::Streaming;
  conn_->ex_send_(std::move(head));
}

namespace {
/// "<size in hex>\r\n": the line before a chunk of a chunked body.
std::string chunk_size_line(uint64_t n) {
  char line[24];
  const int len = snprintf(line, sizeof line, "%" PRIx64 "\r\n", n);
  return std::string(line, static_cast<size_t>(len));
}
}  // namespace

bool Exchange::write(std::string_view chunk) {
  if (state_ != RespState::Streaming || !conn_) return false;
  if (chunk.empty()) return true;
  if (req_.method == Method::Head) return true;
  stream_written_ += chunk.size();
  if (chunked_) {
    std::string out = chunk_size_line(chunk.size());
    out.reserve(out.size() + chunk.size() + 2);
    out.append(chunk);
    out += "\r\n";
    conn_->ex_send_(std::move(out));
  } else {
    conn_->ex_send_(std::string(chunk));
  }
  if (!conn_) return false;
  if (conn_->ex_queued_bytes_() >= ServerConn::kHighWater) {
    conn_->ex_wants_drain_();
    return false;
  }
  return true;
}

bool Exchange::write_file(int fd, uint64_t offset, uint64_t length) {
  if (state_ != RespState::Streaming || !conn_ || req_.method == Method::Head || length == 0) {
    ::close(fd);
    return state_ == RespState::Streaming && conn_;
  }
  stream_written_ += length;
  if (chunked_) {
    conn_->ex_send_(chunk_size_line(length));
    if (!conn_) {
      ::close(fd);
      return false;
    }
  }
  conn_->ex_send_file_(fd, offset, length);
  if (chunked_ && conn_) conn_->ex_send_("\r\n");
  if (!conn_) return false;
  if (conn_->ex_queued_bytes_() >= ServerConn::kHighWater || conn_->ex_queued_files_() > 0) {
    conn_->ex_wants_drain_();
    return false;
  }
  return true;
}

void Exchange::end_stream() {
  if (state_ != RespState::Streaming || !conn_) return;
  if (stream_length_ && stream_written_ != *stream_length_ && req_.method != Method::Head) {
    abort();  // fewer bytes than promised: never let it look complete
    return;
  }
  state_ = RespState::Done;
  ServerConn* c = conn_;
  if (chunked_ && req_.method != Method::Head) c->ex_send_("0\r\n\r\n");
  c->ex_response_done_();
}

void Exchange::abort() {
  if (!conn_) return;
  state_ = RespState::Done;
  ServerConn* c = conn_;
  c->ex_abort_();
}

}  // namespace outpost::http
