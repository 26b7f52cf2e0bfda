// A tiny scripted HTTP/1.1 server for client-side tests (STYLE.md "Tests"):
// plain blocking sockets on 127.0.0.1:<ephemeral>, one std::thread per
// accepted connection, so it runs beside a uv loop that the test steps on its
// own thread (or runs on a LoopFixture thread) without sharing anything but
// the mutex below.
//
//   HttpTestServer srv([](ScriptConn& c, const SeenRequest& r) {
//     if (r.target == "/slow") return c.stall();            // never answers
//     c.send(reply(200, "hello", {{"X-A", "1"}}));           // keep-alive
//   });
//
// Every request is recorded (method, target, headers, body, which connection
// and which request on it) before the script runs. After the script returns
// the connection waits for the next request unless the script closed it.
// Canned answers: reply(), chunked_reply(), head_only(), unauthorized(),
// redirect(); scripts may also send bytes in pieces, wait on a named gate the
// test opens, stall, close (FIN) or reset (RST) at any point.
//
// Scripts run on server threads: they must not use Catch2 (not thread-safe).
// Nothing here sleeps to synchronise; waits are on conditions with deadlines.
#pragma once
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <strings.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

namespace outpost::test {

using HeaderList = std::vector<std::pair<std::string, std::string>>;

/// One request as the server read it.
struct SeenRequest {
  int conn = 0;         ///< accepted connection, 0-based in accept order
  int seq_on_conn = 0;  ///< request number on that connection, 0-based
  int seq = 0;          ///< request number on the server, 0-based
  std::string method;
  std::string target;
  std::string version;
  HeaderList headers;
  std::string body;

  std::optional<std::string> header(std::string_view name) const {
    for (const auto& [k, v] : headers)
      if (k.size() == name.size() && strncasecmp(k.data(), name.data(), k.size()) == 0) return v;
    return std::nullopt;
  }
  size_t header_count(std::string_view name) const {
    size_t n = 0;
    for (const auto& [k, v] : headers)
      if (k.size() == name.size() && strncasecmp(k.data(), name.data(), k.size()) == 0) ++n;
    return n;
  }
  /// The path without the query.
  std::string path() const { return target.substr(0, target.find('?')); }
};

// ---- canned responses ---------------------------------------------------------

inline std::string reason_for(int status) {
  switch (status) {
    case 100: return "Continue";
    case 200: return "OK";
    case 204: return "No Content";
    case 206: return "Partial Content";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 303: return "See Other";
    case 307: return "Temporary Redirect";
    case 308: return "Permanent Redirect";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 500: return "Internal Server Error";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    default: return "Status";
  }
}

/// Status line and headers, ending with the blank line; no framing header is added.
inline std::string head_only(int status, const HeaderList& headers = {}, std::string_view version = "HTTP/1.1") {
  std::string s(version);
  s += " " + std::to_string(status) + " " + reason_for(status) + "\r\n";
  for (const auto& [k, v] : headers) s += k + ": " + v + "\r\n";
  s += "\r\n";
  return s;
}

/// A whole response with Content-Length (keep-alive unless a header says otherwise).
inline std::string reply(int status, std::string_view body = {}, HeaderList headers = {}) {
  headers.emplace_back("Content-Length", std::to_string(body.size()));
  std::string s = head_only(status, headers);
  s += body;
  return s;
}

/// A chunked response: one chunk per element (empty elements are skipped), then the last chunk.
inline std::string chunked_reply(int status, const std::vector<std::string>& chunks, HeaderList headers = {},
                                 std::string_view trailers = {}) {
  headers.emplace_back("Transfer-Encoding", "chunked");
  std::string s = head_only(status, headers);
  char size[32];
  for (const auto& c : chunks) {
    if (c.empty()) continue;
    snprintf(size, sizeof size, "%zx\r\n", c.size());
    s += size;
    s += c;
    s += "\r\n";
  }
  s += "0\r\n";
  s += trailers;
  s += "\r\n";
  return s;
}

/// 401 with a WWW-Authenticate challenge and a small JSON error body.
inline std::string unauthorized(std::string_view challenge, HeaderList headers = {}) {
  headers.emplace_back("WWW-Authenticate", std::string(challenge));
  headers.emplace_back("Content-Type", "application/json");
  return reply(401, R"({"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]})", std::move(headers));
}

/// A redirect (307 unless told) to `location`, with a short body the client must skip.
inline std::string redirect(std::string_view location, int status = 307, HeaderList headers = {}) {
  headers.emplace_back("Location", std::string(location));
  return reply(status, "redirecting", std::move(headers));
}

/// `response` as the answer to `r`: a HEAD gets the head only (framing headers kept).
inline std::string for_method(const SeenRequest& r, std::string response) {
  if (r.method != "HEAD") return response;
  size_t end = response.find("\r\n\r\n");
  if (end != std::string::npos) response.erase(end + 4);
  return response;
}

// ---------------------------------------------------------------------------------

class HttpTestServer;

/// One accepted connection, as a script drives it (server thread only).
class ScriptConn {
 public:
  /// Sends every byte; false when the peer is gone (or the server stops).
  bool send(std::string_view bytes);
  /// Closes the connection now (FIN; RST if unread request bytes are pending).
  void close();
  /// Closes with an RST (SO_LINGER 0): a drop the client sees as a reset.
  void reset();
  /// Holds the connection open without answering: reads and drops whatever
  /// arrives until the peer closes or the server stops. Returns then.
  void stall();
  /// Blocks until the test opens gate `name` (open_gate) or the server stops;
  /// false when the server stopped first.
  bool wait_gate(const std::string& name);
  /// Whether the peer closed its side (non-blocking peek).
  bool peer_closed();
  bool closed() const { return fd_ < 0; }
  int index() const { return index_; }
  HttpTestServer& server() { return *srv_; }

 private:
  friend class HttpTestServer;
  HttpTestServer* srv_ = nullptr;
  int fd_ = -1;
  int index_ = 0;
  std::string in_;  ///< bytes read past the current request (pipelining)
};

using Script = std::function<void(ScriptConn&, const SeenRequest&)>;

class HttpTestServer {
 public:
  explicit HttpTestServer(Script script = {}) : script_(std::move(script)) {
    listen_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (listen_fd_ < 0) throw std::runtime_error("socket failed");
    int one = 1;
    ::setsockopt(listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = 0;
    if (::bind(listen_fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) throw std::runtime_error("bind failed");
    if (::listen(listen_fd_, 64) != 0) throw std::runtime_error("listen failed");
    socklen_t len = sizeof a;
    ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
    wake_fd_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (wake_fd_ < 0) throw std::runtime_error("eventfd failed");
    accept_thread_ = std::thread([this] { accept_loop(); });
  }
  ~HttpTestServer() { stop(); }
  HttpTestServer(const HttpTestServer&) = delete;
  HttpTestServer& operator=(const HttpTestServer&) = delete;

  int port() const { return port_; }
  /// "http://127.0.0.1:<port>" (+ `path`).
  std::string url(std::string_view path = {}) const {
    return "http://127.0.0.1:" + std::to_string(port_) + std::string(path);
  }
  /// Replaces the script for requests read from now on.
  void set_script(Script s) {
    std::lock_guard<std::mutex> g(mu_);
    script_ = std::move(s);
  }

  // ---- what happened (any thread) ----------------------------------------------
  std::vector<SeenRequest> requests() const {
    std::lock_guard<std::mutex> g(mu_);
    return seen_;
  }
  size_t request_count() const {
    std::lock_guard<std::mutex> g(mu_);
    return seen_.size();
  }
  /// Requests whose path (without the query) is `path`.
  size_t count_path(std::string_view path) const {
    std::lock_guard<std::mutex> g(mu_);
    return static_cast<size_t>(std::count_if(seen_.begin(), seen_.end(), [&](const SeenRequest& r) {
      return r.path() == path;
    }));
  }
  int connections() const { return accepted_.load(); }
  /// Connections the peer closed (EOF or reset while the server waited on it).
  int peer_closes() const { return peer_closes_.load(); }
  /// Connections currently open on the server side.
  int open_connections() const {
    std::lock_guard<std::mutex> g(mu_);
    int n = 0;
    for (auto& c : conns_)
      if (c->fd_ >= 0) ++n;
    return n;
  }
  /// Blocks the calling thread until pred() (under the lock, given the
  /// requests so far) holds or the deadline passes. For tests whose loop
  /// runs on another thread; a test stepping its own loop uses run_until.
  bool wait_for(const std::function<bool(const std::vector<SeenRequest>&)>& pred,
                std::chrono::milliseconds timeout = std::chrono::milliseconds(10'000)) {
    std::unique_lock<std::mutex> lk(mu_);
    return cv_.wait_for(lk, timeout, [&] { return pred(seen_); });
  }

  // ---- gates ------------------------------------------------------------------------
  void open_gate(const std::string& name) {
    {
      std::lock_guard<std::mutex> g(mu_);
      gates_[name] = true;
    }
    cv_.notify_all();
  }
  /// Scripts waiting on gate `name` right now.
  int waiting_at(const std::string& name) const {
    std::lock_guard<std::mutex> g(mu_);
    auto it = waiting_.find(name);
    return it == waiting_.end() ? 0 : it->second;
  }

  /// Stops accepting, wakes every script (gates, stalls, reads) and joins all threads.
  void stop() {
    if (stopped_.exchange(true)) return;
    {
      std::lock_guard<std::mutex> g(mu_);
      stopping_ = true;
      for (auto& c : conns_)
        if (c->fd_ >= 0) ::shutdown(c->fd_, SHUT_RDWR);
    }
    cv_.notify_all();
    uint64_t one = 1;
    (void)!::write(wake_fd_, &one, sizeof one);
    if (accept_thread_.joinable()) accept_thread_.join();
    // No new connection threads after the accept thread ended.
    for (auto& t : threads_)
      if (t.joinable()) t.join();
    ::close(listen_fd_);
    ::close(wake_fd_);
  }

 private:
  friend class ScriptConn;

  void accept_loop() {
    while (true) {
      pollfd p[2] = {{listen_fd_, POLLIN, 0}, {wake_fd_, POLLIN, 0}};
      int r = ::poll(p, 2, -1);
      if (r < 0 && errno == EINTR) continue;
      if (r < 0 || (p[1].revents & POLLIN)) return;
      if (!(p[0].revents & POLLIN)) continue;
      int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (fd < 0) continue;
      int one = 1;
      ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      auto c = std::make_shared<ScriptConn>();
      c->srv_ = this;
      c->fd_ = fd;
      {
        std::lock_guard<std::mutex> g(mu_);
        if (stopping_) {
          ::close(fd);
          return;
        }
        c->index_ = accepted_++;
        conns_.push_back(c);
      }
      threads_.emplace_back([this, c] { serve(*c); });
    }
  }

  // Reads one request head (+ Content-Length body); false at EOF/error.
  bool read_request(ScriptConn& c, SeenRequest& r) {
    size_t end;
    while ((end = c.in_.find("\r\n\r\n")) == std::string::npos) {
      if (!fill(c)) return false;
    }
    std::string head = c.in_.substr(0, end + 2);
    c.in_.erase(0, end + 4);
    size_t le = head.find("\r\n");
    std::string line = head.substr(0, le);
    size_t s1 = line.find(' '), s2 = line.rfind(' ');
    r.method = line.substr(0, s1);
    r.target = s1 == s2 ? "" : line.substr(s1 + 1, s2 - s1 - 1);
    r.version = line.substr(s2 + 1);
    size_t pos = le + 2;
    while (pos < head.size()) {
      size_t e = head.find("\r\n", pos);
      std::string h = head.substr(pos, e - pos);
      pos = e + 2;
      size_t colon = h.find(':');
      if (colon == std::string::npos) continue;
      std::string v = h.substr(colon + 1);
      while (!v.empty() && (v.front() == ' ' || v.front() == '\t')) v.erase(0, 1);
      while (!v.empty() && (v.back() == ' ' || v.back() == '\t')) v.pop_back();
      r.headers.emplace_back(h.substr(0, colon), v);
    }
    if (auto cl = r.header("Content-Length")) {
      size_t n = std::stoull(*cl);
      while (c.in_.size() < n)
        if (!fill(c)) return false;
      r.body = c.in_.substr(0, n);
      c.in_.erase(0, n);
    }
    return true;
  }

  bool fill(ScriptConn& c) {
    char buf[16384];
    ssize_t n;
    do n = ::recv(c.fd_, buf, sizeof buf, 0);
    while (n < 0 && errno == EINTR);
    if (n <= 0) return false;
    c.in_.append(buf, static_cast<size_t>(n));
    return true;
  }

  void serve(ScriptConn& c) {
    for (int seq = 0;; ++seq) {
      SeenRequest r;
      if (!read_request(c, r)) {
        if (!stopping_now()) ++peer_closes_;
        break;
      }
      Script script;
      {
        std::lock_guard<std::mutex> g(mu_);
        r.conn = c.index_;
        r.seq_on_conn = seq;
        r.seq = static_cast<int>(seen_.size());
        seen_.push_back(r);
        script = script_;
      }
      cv_.notify_all();
      if (script) script(c, r);
      else c.send(reply(404, "no script"));
      if (c.closed()) return;
    }
    c.close();
  }

  bool stopping_now() {
    std::lock_guard<std::mutex> g(mu_);
    return stopping_;
  }

  mutable std::mutex mu_;
  std::condition_variable cv_;
  Script script_;
  std::vector<SeenRequest> seen_;
  std::vector<std::shared_ptr<ScriptConn>> conns_;
  std::map<std::string, bool> gates_;
  std::map<std::string, int> waiting_;
  bool stopping_ = false;
  std::atomic<bool> stopped_{false};
  std::atomic<int> accepted_{0};
  std::atomic<int> peer_closes_{0};
  int listen_fd_ = -1;
  int wake_fd_ = -1;
  int port_ = 0;
  std::thread accept_thread_;
  std::vector<std::thread> threads_;  // touched by the accept thread, then by stop() after joining it
};

// ---- ScriptConn ---------------------------------------------------------------------

inline bool ScriptConn::send(std::string_view data) {
  while (!data.empty()) {
    if (fd_ < 0) return false;
    ssize_t n = ::send(fd_, data.data(), data.size(), MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    data.remove_prefix(static_cast<size_t>(n));
  }
  return true;
}

inline void ScriptConn::close() {
  std::lock_guard<std::mutex> g(srv_->mu_);
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

inline void ScriptConn::reset() {
  std::lock_guard<std::mutex> g(srv_->mu_);
  if (fd_ < 0) return;
  linger l{1, 0};
  ::setsockopt(fd_, SOL_SOCKET, SO_LINGER, &l, sizeof l);
  ::close(fd_);
  fd_ = -1;
}

inline void ScriptConn::stall() {
  char buf[4096];
  while (fd_ >= 0) {
    ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
  }
  if (!srv_->stopping_now()) ++srv_->peer_closes_;
  close();
}

inline bool ScriptConn::wait_gate(const std::string& name) {
  std::unique_lock<std::mutex> lk(srv_->mu_);
  ++srv_->waiting_[name];
  srv_->cv_.notify_all();
  srv_->cv_.wait(lk, [&] { return srv_->stopping_ || srv_->gates_[name]; });
  --srv_->waiting_[name];
  return !srv_->stopping_;
}

inline bool ScriptConn::peer_closed() {
  if (fd_ < 0) return true;
  char c;
  ssize_t n = ::recv(fd_, &c, 1, MSG_PEEK | MSG_DONTWAIT);
  return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK);
}

}  // namespace outpost::test
