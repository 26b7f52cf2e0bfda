#include "http/server.hpp"

#include <fcntl.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>

#include "base/log.hpp"
#include "http/listener.hpp"
#include "http/server_conn.hpp"

namespace outpost::http {

uint64_t raise_open_file_limit() {
  rlimit rl{};
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return 1024;
  const rlim_t want = std::min<rlim_t>(rl.rlim_max, std::max<rlim_t>(rl.rlim_cur, 65536));
  if (want > rl.rlim_cur) {
    rlimit raised = rl;
    raised.rlim_cur = want;
    if (setrlimit(RLIMIT_NOFILE, &raised) == 0) rl = raised;
  }
  return rl.rlim_cur == RLIM_INFINITY ? 1u << 20 : static_cast<uint64_t>(rl.rlim_cur);
}

uint32_t max_connections_for(uint64_t nofile) {
  constexpr uint64_t kReserved = 64;
  const uint64_t n = nofile > kReserved + 64 ? (nofile - kReserved) / 2 : 32;
  return static_cast<uint32_t>(std::min<uint64_t>(n, 1'000'000));
}

Server::Server(uv_loop_t* loop, ServerLimits limits, Handler handler)
    : loop_(loop), limits_(limits), handler_(std::move(handler)) {
  if (getrandom(&rid_prefix_, sizeof rid_prefix_, 0) != sizeof rid_prefix_) rid_prefix_ = 0x5eed;
  idle_ = new uv_idle_t;
  uv_idle_init(loop_, idle_);
  idle_->data = this;
  take_reserve_fd_();
}

Server::~Server() {
  for (auto* l : listeners_) l->close();
  listeners_.clear();
  for (auto* c : std::vector<ServerConn*>(conns_.begin(), conns_.end())) c->close();
  if (reserve_fd_ >= 0) ::close(reserve_fd_);
  uv_close(reinterpret_cast<uv_handle_t*>(idle_), [](uv_handle_t* h) { delete reinterpret_cast<uv_idle_t*>(h); });
  if (shutdown_timer_)
    uv_close(reinterpret_cast<uv_handle_t*>(shutdown_timer_), [](uv_handle_t* h) { delete reinterpret_cast<uv_timer_t*>(h); });
}

Status Server::listen(const std::string& addr, std::shared_ptr<net::TlsServerContext> tls) {
  const bool https = tls != nullptr;
  auto l = Listener::start(this, addr, std::move(tls));
  if (!l) return l.error();
  listeners_.push_back(*l);
  log::info("listening", " addr=" + addr + (https ? " scheme=https" : " scheme=http"));
  return {};
}

void Server::add_default_header(std::string name, std::string value) {
  default_headers_.push_back({std::move(name), std::move(value)});
}

std::string Server::next_request_id_() {
  // "%08x%08llx" of prefix and counter, by hand: snprintf showed in the
  // profile of a cached manifest GET.
  static constexpr char kHex[] = "0123456789abcdef";
  const uint64_t n = ++rid_counter_;
  int counter_digits = 8;
  while (counter_digits < 16 && (n >> (4 * counter_digits)) != 0) counter_digits++;
  std::string id(static_cast<size_t>(8 + counter_digits), '0');
  for (int i = 0; i < 8; ++i) id[static_cast<size_t>(7 - i)] = kHex[(rid_prefix_ >> (4 * i)) & 0xf];
  for (int i = 0; i < counter_digits; ++i) id[static_cast<size_t>(7 + counter_digits - i)] = kHex[(n >> (4 * i)) & 0xf];
  return id;
}

void Server::on_accept_(int fd, std::string peer, std::shared_ptr<net::TlsServerConfig> tls) {
  // Full: make room by closing the connection that has been quiet longest
  // (idle between requests, nothing buffered), so that a crowd of silent or
  // idle sockets cannot lock out a real client. One mid-request is never shed.
  if (shutting_down_ || (conns_.size() >= limits_.max_connections && !shed_quiet_("connection limit reached"))) {
    refuse_(fd, peer, tls != nullptr);
    return;
  }
  stats_.connections_accepted++;
  auto* c = new ServerConn(this, fd, std::move(peer), std::move(tls));
  conns_.insert(c);
  c->start();
}

void Server::quiet_add_(ServerConn* c) {
  auto& l = c->quiet_links_();
  l.prev = quiet_back_;
  l.next = nullptr;
  if (quiet_back_) quiet_back_->quiet_links_().next = c;
  else quiet_front_ = c;
  quiet_back_ = c;
}

void Server::quiet_remove_(ServerConn* c) {
  auto& l = c->quiet_links_();
  if (l.prev) l.prev->quiet_links_().next = l.next;
  else quiet_front_ = l.next;
  if (l.next) l.next->quiet_links_().prev = l.prev;
  else quiet_back_ = l.prev;
  l.prev = l.next = nullptr;
}

bool Server::shed_quiet_(const char* why) {
  if (!quiet_front_) return false;
  quiet_front_->close();  // removes it from the quiet list and conns_
  stats_.connections_shed++;
  log_pressure(why);
  return true;
}

void Server::refuse_(int fd, const std::string& peer, bool tls) {
  // Answer rather than drop: a client that sees 503 backs off instead of retrying blind.
  static const std::string kBusy = [] {
    std::string body = "{\"errors\":[{\"code\":\"UNAVAILABLE\",\"message\":\"too many connections, try again later\"}]}";
    return "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nContent-Length: " +
           std::to_string(body.size()) + "\r\nConnection: close\r\nRetry-After: 1\r\n\r\n" + body;
  }();
  // A TLS client cannot read that (it reported "wrong version number", as if
  // the port spoke plain HTTP), and a handshake is what the limit spares: a
  // fatal internal_error alert instead (RFC 8446 §6: alert records may come
  // before any handshake message; "tlsv1 alert internal error" in clients).
  static const std::string kTlsBusy("\x15\x03\x03\x00\x02\x02\x50", 7);
  const std::string& answer = tls ? kTlsBusy : kBusy;
  ssize_t r = ::write(fd, answer.data(), answer.size());
  (void)r;
  ::close(fd);
  stats_.connections_rejected++;
  if (shutting_down_) log::info("connection rejected", " peer=" + peer + " reason=shutting_down");
  else log_pressure("connection limit reached");
}

bool Server::release_reserve_fd_() {
  if (reserve_fd_ < 0) return false;
  ::close(reserve_fd_);
  reserve_fd_ = -1;
  return true;
}

void Server::take_reserve_fd_() {
  if (reserve_fd_ < 0) reserve_fd_ = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
}

void Server::note_out_of_fds_(int err) {
  stats_.accept_out_of_fds++;
  log_pressure(err == ENFILE ? "out of file descriptors (system-wide): accepting paused"
                             : "out of file descriptors (RLIMIT_NOFILE): accepting paused");
}

void Server::log_pressure(const char* what) {
  // Under a flood this runs thousands of times a second: one line a second
  // at most, with the counts since the last one.
  uint64_t now = uv_now(loop_);
  if (pressure_logged_ms_ != 0 && now - pressure_logged_ms_ < 1000) return;
  pressure_logged_ms_ = now;
  log::warn(what, " connections=" + std::to_string(conns_.size()) +
                      " max_connections=" + std::to_string(limits_.max_connections) +
                      " shed=" + std::to_string(stats_.connections_shed - shed_logged_) +
                      " rejected=" + std::to_string(stats_.connections_rejected - rejected_logged_));
  shed_logged_ = stats_.connections_shed;
  rejected_logged_ = stats_.connections_rejected;
}

void Server::on_conn_closed_(ServerConn* c) {
  conns_.erase(c);
  auto it = std::find(pending_.begin(), pending_.end(), c);
  if (it != pending_.end()) *it = nullptr;
  if (running_pending_)
    for (auto& p : *running_pending_)
      if (p == c) p = nullptr;
  if (shutting_down_) check_shutdown_done();
}

void Server::defer_(ServerConn* c) {
  if (std::find(pending_.begin(), pending_.end(), c) != pending_.end()) return;
  pending_.push_back(c);
  if (!uv_is_active(reinterpret_cast<uv_handle_t*>(idle_))) uv_idle_start(idle_, on_idle);
}

void Server::on_idle(uv_idle_t* h) noexcept {
  auto* s = static_cast<Server*>(h->data);
  std::vector<ServerConn*> batch;
  batch.swap(s->pending_);
  uv_idle_stop(h);
  // Entries nulled by on_conn_closed_ were closed after being queued.
  s->running_pending_ = &batch;
  for (size_t i = 0; i < batch.size(); ++i)
    if (batch[i]) batch[i]->process_deferred_();
  s->running_pending_ = nullptr;
}

void Server::note_tls_on_plain_(const std::string& peer) {
  stats_.tls_on_plain++;
  // "ip:port" -> "ip": a client retries from new ports, the operator needs one line.
  std::string host = peer.substr(0, peer.rfind(':'));
  if (tls_warned_.size() >= 4096) tls_warned_.clear();  // bounded; a repeat line now and then is fine
  if (tls_warned_.insert(host).second)
    log::warn("TLS handshake on a plain-HTTP listener; configure the client for http / insecure registry",
              " peer=" + peer);
  else
    log::debug("TLS handshake on a plain-HTTP listener", " peer=" + peer);
}

void Server::note_plain_on_tls_(const std::string& peer) {
  stats_.plain_on_tls++;
  std::string host = peer.substr(0, peer.rfind(':'));
  if (plain_warned_.size() >= 4096) plain_warned_.clear();
  if (plain_warned_.insert(host).second)
    log::warn("plain HTTP request on an HTTPS listener; configure the client for https", " peer=" + peer);
  else
    log::debug("plain HTTP request on an HTTPS listener", " peer=" + peer);
}

void Server::shutdown(uint64_t deadline_ms, std::function<void()> done) {
  if (shutting_down_) {
    // A second request to stop (a second SIGTERM) with no grace: close now.
    if (deadline_ms == 0)
      for (auto* c : std::vector<ServerConn*>(conns_.begin(), conns_.end())) c->close();
    return;
  }
  shutting_down_ = true;
  shutdown_done_ = std::move(done);
  for (auto* l : listeners_) l->close();
  listeners_.clear();
  log::info("shutting down", " connections=" + std::to_string(conns_.size()) +
                                 " deadline_ms=" + std::to_string(deadline_ms));
  for (auto* c : std::vector<ServerConn*>(conns_.begin(), conns_.end())) c->close_when_idle();
  shutdown_timer_ = new uv_timer_t;
  uv_timer_init(loop_, shutdown_timer_);
  shutdown_timer_->data = this;
  uv_timer_start(shutdown_timer_, [](uv_timer_t* t) {
    auto* s = static_cast<Server*>(t->data);
    if (!s->conns_.empty())
      log::warn("shutdown deadline reached, closing connections", " open=" + std::to_string(s->conns_.size()));
    for (auto* c : std::vector<ServerConn*>(s->conns_.begin(), s->conns_.end())) c->close();
  }, deadline_ms, 0);
  check_shutdown_done();
}

void Server::check_shutdown_done() {
  if (!conns_.empty() || !shutdown_done_) return;
  if (shutdown_timer_) uv_timer_stop(shutdown_timer_);
  auto cb = std::move(shutdown_done_);
  shutdown_done_ = nullptr;
  cb();
}

}  // namespace outpost::http
