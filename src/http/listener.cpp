#include "http/listener.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstring>

#include "base/log.hpp"
#include "http/server.hpp"

namespace outpost::http {

namespace {
constexpr int kAcceptBatch = 64;  // per wake-up, so one busy listener cannot starve the loop
constexpr uint64_t kFdBackoffMs = 100;  // pause in accepting when out of file descriptors

std::string peer_string(const sockaddr_storage& ss) {
  char host[INET6_ADDRSTRLEN] = "?";
  int port = 0;
  if (ss.ss_family == AF_INET) {
    auto* a = reinterpret_cast<const sockaddr_in*>(&ss);
    inet_ntop(AF_INET, &a->sin_addr, host, sizeof host);
    port = ntohs(a->sin_port);
    return std::string(host) + ":" + std::to_string(port);
  }
  auto* a = reinterpret_cast<const sockaddr_in6*>(&ss);
  inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof host);
  port = ntohs(a->sin6_port);
  return "[" + std::string(host) + "]:" + std::to_string(port);
}
}  // namespace

Status parse_listen_address(const std::string& addr, sockaddr_storage* out, unsigned* len) {
  std::string host, port;
  if (!addr.empty() && addr[0] == '[') {
    size_t close = addr.find(']');
    if (close == std::string::npos || close + 1 >= addr.size() || addr[close + 1] != ':')
      return Error(Errc::ConfigInvalid, "bad listen address '" + addr + "' (want [v6]:port)");
    host = addr.substr(1, close - 1);
    port = addr.substr(close + 2);
  } else {
    size_t colon = addr.rfind(':');
    if (colon == std::string::npos) return Error(Errc::ConfigInvalid, "bad listen address '" + addr + "' (want host:port)");
    host = addr.substr(0, colon);
    port = addr.substr(colon + 1);
  }
  unsigned p = 0;
  auto [ptr, ec] = std::from_chars(port.data(), port.data() + port.size(), p);
  if (ec != std::errc() || ptr != port.data() + port.size() || p > 65535)
    return Error(Errc::ConfigInvalid, "bad port in listen address '" + addr + "'");
  std::memset(out, 0, sizeof *out);
  auto* v4 = reinterpret_cast<sockaddr_in*>(out);
  auto* v6 = reinterpret_cast<sockaddr_in6*>(out);
  if (host.empty() || host == "*") host = "0.0.0.0";
  if (inet_pton(AF_INET, host.c_str(), &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons(static_cast<uint16_t>(p));
    *len = sizeof(sockaddr_in);
    return {};
  }
  if (inet_pton(AF_INET6, host.c_str(), &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(static_cast<uint16_t>(p));
    *len = sizeof(sockaddr_in6);
    return {};
  }
  return Error(Errc::ConfigInvalid, "listen address '" + addr + "' is not a numeric IPv4/IPv6 address");
}

Result<Listener*> Listener::start(Server* server, const std::string& addr,
                                  std::shared_ptr<net::TlsServerContext> tls) {
  sockaddr_storage ss;
  unsigned len = 0;
  OUTPOST_TRY(parse_listen_address(addr, &ss, &len));
  int fd = ::socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return Error(Errc::Io, "socket: " + std::string(strerror(errno)));
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (ss.ss_family == AF_INET6) setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&ss), len) != 0 || ::listen(fd, 1024) != 0) {
    int e = errno;
    ::close(fd);
    return Error(Errc::Io, "cannot listen on " + addr + ": " + strerror(e));
  }
  auto* l = new Listener(server, fd, addr, std::move(tls));
  uv_poll_init_socket(server->loop(), &l->poll_, fd);
  l->poll_.data = l;
  uv_poll_start(&l->poll_, UV_READABLE, on_readable);
  return l;
}

Listener::Listener(Server* s, int fd, std::string addr, std::shared_ptr<net::TlsServerContext> tls)
    : server_(s), fd_(fd), addr_(std::move(addr)), tls_(std::move(tls)) {}

void Listener::accepted(int fd, const sockaddr_storage& ss) {
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  server_->on_accept_(fd, peer_string(ss), tls_ ? tls_->current() : nullptr);
}

void Listener::close() {
  uv_poll_stop(&poll_);
  ::close(fd_);
  fd_ = -1;
  if (backoff_) {
    uv_close(reinterpret_cast<uv_handle_t*>(backoff_), [](uv_handle_t* h) { delete reinterpret_cast<uv_timer_t*>(h); });
    backoff_ = nullptr;
  }
  uv_close(reinterpret_cast<uv_handle_t*>(&poll_), [](uv_handle_t* h) { delete static_cast<Listener*>(h->data); });
}

bool Listener::on_out_of_fds(int err) {
  // The waiting client stays in the backlog and the socket stays readable:
  // polling on would spin. Accept it through the server's reserve
  // descriptor (the libuv/nginx trick), then admit it in place of the
  // longest-quiet connection, or else tell it 503 and stop accepting for a
  // moment. (A quiet connection is not shed before the accept: accept4
  // reports EMFILE even with nobody waiting.)
  server_->note_out_of_fds_(err);
  int fd = -1;
  sockaddr_storage ss;
  if (server_->release_reserve_fd_()) {
    socklen_t len = sizeof ss;
    fd = ::accept4(fd_, reinterpret_cast<sockaddr*>(&ss), &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
    const bool nobody = fd < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
    if (fd >= 0 && server_->shed_quiet_("out of file descriptors")) {
      server_->take_reserve_fd_();  // the shed connection's descriptor
      accepted(fd, ss);
      return true;
    }
    if (fd >= 0) server_->refuse_(fd, peer_string(ss), tls_ != nullptr);
    server_->take_reserve_fd_();
    if (nobody) return false;
  }
  uv_poll_stop(&poll_);
  if (!backoff_) {
    backoff_ = new uv_timer_t;
    uv_timer_init(server_->loop(), backoff_);
    backoff_->data = this;
  }
  uv_timer_start(backoff_, on_backoff_done, kFdBackoffMs, 0);
  return false;
}

void Listener::on_backoff_done(uv_timer_t* t) noexcept {
  auto* l = static_cast<Listener*>(t->data);
  uv_poll_start(&l->poll_, UV_READABLE, on_readable);
}

void Listener::on_readable(uv_poll_t* h, int status, int) noexcept {
  auto* l = static_cast<Listener*>(h->data);
  if (status < 0) {
    log::error("listener poll error", " addr=" + l->addr_ + " err=" + uv_strerror(status));
    return;
  }
  for (int i = 0; i < kAcceptBatch; ++i) {
    sockaddr_storage ss;
    socklen_t len = sizeof ss;
    int fd = ::accept4(l->fd_, reinterpret_cast<sockaddr*>(&ss), &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
        if (l->on_out_of_fds(errno)) continue;
        return;
      }
      if (errno != EAGAIN && errno != EWOULDBLOCK)
        log::warn("accept failed", " addr=" + l->addr_ + " err=" + log::quote(strerror(errno)));
      return;
    }
    l->accepted(fd, ss);
  }
}

}  // namespace outpost::http
