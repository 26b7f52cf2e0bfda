// Real-loop test support (the libuv test/task.h idiom, STYLE.md "Tests"):
//
//   LoopFixture   a uv loop either run on a background thread (post/call run
//                 code on it) or stepped on the test thread (run_until), plus
//                 a mutex/condition pair to wait for conditions with deadlines
//                 and named callback counters. finish() ends every test with
//                 a close-walk and CHECK(uv_loop_close() == 0).
//   ServerFixture an http::Server on 127.0.0.1:<free port> on that loop.
//   TestClient    a plain blocking socket that speaks just enough HTTP/1.1 to
//                 drive the server: raw bytes out, framed responses in.
//
// Catch2 is not thread-safe: assert on the test thread only. Code running on
// the loop thread records what it saw under fx.mu (fx.update(...)), and the
// test thread waits for it with fx.wait(pred, deadline). Never sleep to
// synchronise.
#pragma once
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <functional>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#include "http/server.hpp"

namespace outpost::test {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

/// Default deadline for "this will happen": generous, so a loaded machine
/// only makes a failing test slower, never a passing one fail.
inline constexpr milliseconds kWait{10'000};

// ---------------------------------------------------------------------------

class LoopFixture {
 public:
  LoopFixture() {
    if (uv_loop_init(&loop_) != 0) FAIL("uv_loop_init failed");
    if (uv_async_init(&loop_, &async_, on_async) != 0) FAIL("uv_async_init failed");
    async_.data = this;
  }
  virtual ~LoopFixture() { finish(); }
  LoopFixture(const LoopFixture&) = delete;
  LoopFixture& operator=(const LoopFixture&) = delete;

  uv_loop_t* loop() { return &loop_; }

  // ---- background-thread mode ---------------------------------------------
  /// Runs the loop on its own thread until finish(). The async handle keeps it alive.
  void start_thread() {
    if (thread_.joinable()) FAIL("the loop thread is already running");
    thread_ = std::thread([this] {
      while (!stop_requested_.load()) uv_run(&loop_, UV_RUN_DEFAULT);
    });
    loop_thread_ = thread_.get_id();
  }
  bool threaded() const { return thread_.joinable(); }
  bool on_loop_thread() const { return std::this_thread::get_id() == loop_thread_; }

  /// Runs `fn` on the loop thread (soon). Stepping mode: on the next step.
  void post(std::function<void()> fn) {
    {
      std::lock_guard<std::mutex> g(post_mu_);
      posted_.push_back(std::move(fn));
    }
    uv_async_send(&async_);
  }

  /// Runs `fn` on the loop thread and returns its result (FAILs after `timeout`).
  template <typename F>
  auto call(F fn, milliseconds timeout = kWait) -> std::invoke_result_t<F> {
    using R = std::invoke_result_t<F>;
    if (!threaded()) FAIL("call() needs the loop thread (start_thread)");
    if (on_loop_thread()) FAIL("call() from the loop thread would deadlock");
    auto p = std::make_shared<std::promise<R>>();
    auto fut = p->get_future();
    post([p, fn = std::move(fn)]() mutable {
      if constexpr (std::is_void_v<R>) {
        fn();
        p->set_value();
      } else {
        p->set_value(fn());
      }
    });
    if (fut.wait_for(timeout) != std::future_status::ready)
      FAIL("the loop thread did not run a posted call within " << timeout.count() << " ms");
    return fut.get();
  }
  /// call() for teardown paths: never throws; false when it timed out.
  bool call_quietly(std::function<void()> fn, milliseconds timeout = kWait) {
    auto p = std::make_shared<std::promise<void>>();
    auto fut = p->get_future();
    post([p, fn = std::move(fn)] {
      fn();
      p->set_value();
    });
    return fut.wait_for(timeout) == std::future_status::ready;
  }

  // ---- stepping mode (no thread) --------------------------------------------
  /// Steps the loop on this thread until pred() holds or the deadline passes.
  /// A 5 ms tick timer keeps uv_run(ONCE) from blocking past the deadline.
  bool run_until(const std::function<bool()>& pred, milliseconds timeout = kWait) {
    if (threaded()) FAIL("run_until() steps the loop: not while its thread runs");
    const auto deadline = Clock::now() + timeout;
    uv_timer_t tick;
    uv_timer_init(&loop_, &tick);
    uv_timer_start(&tick, [](uv_timer_t*) {}, 5, 5);
    bool ok = false;
    while (true) {
      if (pred()) { ok = true; break; }
      if (Clock::now() >= deadline) break;
      uv_run(&loop_, UV_RUN_ONCE);
    }
    uv_close(reinterpret_cast<uv_handle_t*>(&tick), nullptr);
    uv_run(&loop_, UV_RUN_NOWAIT);  // runs the tick's close
    return ok;
  }

  // ---- conditions shared with the loop thread -------------------------------
  /// Changes shared state under the lock and wakes waiters.
  template <typename F>
  void update(F fn) {
    {
      std::lock_guard<std::mutex> g(mu);
      fn();
    }
    cv.notify_all();
  }
  /// Waits until pred() (evaluated under the lock) holds; false at the deadline.
  template <typename P>
  bool wait(P pred, milliseconds timeout = kWait) {
    std::unique_lock<std::mutex> lk(mu);
    return cv.wait_until(lk, Clock::now() + timeout, pred);
  }
  /// Counts a callback by name (any thread).
  void count(const std::string& name) {
    update([&] { ++counts_[name]; });
  }
  int counted(const std::string& name) {
    std::lock_guard<std::mutex> g(mu);
    auto it = counts_.find(name);
    return it == counts_.end() ? 0 : it->second;
  }
  bool wait_count(const std::string& name, int at_least, milliseconds timeout = kWait) {
    return wait([&] { auto it = counts_.find(name); return it != counts_.end() && it->second >= at_least; },
                timeout);
  }

  std::mutex mu;
  std::condition_variable cv;

  // ---- the end of every test --------------------------------------------------
  /// Stops the loop thread, closes every handle still open (close-walk), runs
  /// the loop until their close callbacks ran, and checks uv_loop_close == 0.
  /// Returns how many handles other than the fixture's own were still open.
  int finish() {
    if (finished_) return leftover_;
    finished_ = true;
    if (thread_.joinable()) {
      post([this] {
        stop_requested_ = true;
        uv_stop(&loop_);
      });
      thread_.join();
    }
    loop_thread_ = std::this_thread::get_id();
    run_posted();  // anything posted after the stop
    leftover_ = 0;
    uv_walk(&loop_, [](uv_handle_t* h, void* arg) {
      auto* self = static_cast<LoopFixture*>(arg);
      if (h != reinterpret_cast<uv_handle_t*>(&self->async_) && !uv_is_closing(h)) ++self->leftover_;
      if (!uv_is_closing(h)) uv_close(h, nullptr);
    }, this);
    uv_run(&loop_, UV_RUN_DEFAULT);
    int rc = uv_loop_close(&loop_);
    CHECK(rc == 0);
    return leftover_;
  }

 private:
  static void on_async(uv_async_t* a) { static_cast<LoopFixture*>(a->data)->run_posted(); }
  void run_posted() {
    std::deque<std::function<void()>> batch;
    {
      std::lock_guard<std::mutex> g(post_mu_);
      batch.swap(posted_);
    }
    for (auto& fn : batch) fn();
  }

  uv_loop_t loop_;
  uv_async_t async_;
  std::thread thread_;
  std::atomic<std::thread::id> loop_thread_{std::this_thread::get_id()};
  std::atomic<bool> stop_requested_{false};
  std::mutex post_mu_;
  std::deque<std::function<void()>> posted_;
  std::map<std::string, int> counts_;
  bool finished_ = false;
  int leftover_ = 0;
};

// ---------------------------------------------------------------------------

/// A TCP port on 127.0.0.1 that was free a moment ago.
inline int pick_free_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) FAIL("socket: " << strerror(errno));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = 0;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) FAIL("bind: " << strerror(errno));
  socklen_t len = sizeof a;
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0) FAIL("getsockname: " << strerror(errno));
  ::close(fd);
  return ntohs(a.sin_port);
}

/// An http::Server listening on 127.0.0.1:<free port>, its loop on a thread.
/// The handler runs on the loop thread ("requests" counts its calls).
/// Destroying the fixture destroys the server on the loop thread, then
/// finish() checks that no handle was left.
class ServerFixture : public LoopFixture {
 public:
  using Handler = std::function<void(ServerFixture&, const http::ExchangePtr&)>;

  ServerFixture(http::ServerLimits limits, Handler handler) : handler_(std::move(handler)) {
    server_ = std::make_unique<http::Server>(loop(), limits, [this](const http::ExchangePtr& ex) {
      count("requests");
      handler_(*this, ex);
    });
    Status st;
    for (int attempt = 0; attempt < 20; ++attempt) {  // the port can be taken meanwhile
      port = pick_free_port();
      st = server_->listen("127.0.0.1:" + std::to_string(port));
      if (st) break;
    }
    if (!st.ok()) FAIL("listen: " << st.error().message());
    start_thread();
  }
  ~ServerFixture() override {
    stop_server();
    CHECK(finish() == 0);  // the server closed every handle it opened
  }

  /// Loop thread only (inside call()/post() or a handler).
  http::Server& server() { return *server_; }

  /// Destroys the server on the loop thread (idempotent).
  void stop_server() {
    if (!server_) return;
    if (threaded()) {
      bool ran = call_quietly([this] { server_.reset(); });
      CHECK(ran);
    } else {
      server_.reset();
    }
  }

  /// Calls Server::shutdown on the loop thread; "shutdown_done" is counted when done fires.
  void shutdown(uint64_t deadline_ms) {
    call([this, deadline_ms] { server_->shutdown(deadline_ms, [this] { count("shutdown_done"); }); });
  }
  size_t connection_count() { return call([this] { return server_->connection_count(); }); }
  http::ServerStats stats() { return call([this] { return server_->stats(); }); }

  int port = 0;

 private:
  Handler handler_;
  std::unique_ptr<http::Server> server_;
};

// ---------------------------------------------------------------------------

/// One response as a TestClient read it.
struct ClientResponse {
  int status = 0;
  std::string reason;
  std::string version;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  std::string head;       ///< raw head bytes including the blank line
  bool chunked = false;
  bool complete = false;  ///< the body ended as framed (not cut by EOF or the deadline)

  std::optional<std::string> header(std::string_view name) const {
    for (const auto& [k, v] : headers)
      if (k.size() == name.size() && strncasecmp(k.data(), name.data(), k.size()) == 0) return v;
    return std::nullopt;
  }
  bool closes() const {
    auto c = header("Connection");
    return c && strcasecmp(c->c_str(), "close") == 0;
  }
};

/// A plain blocking client socket with deadlines on every read.
class TestClient {
 public:
  enum class Read { Data, Eof, Reset, Timeout };

  /// rcvbuf > 0 shrinks SO_RCVBUF before connecting (a slow reader's window).
  explicit TestClient(int port, int rcvbuf = 0) {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd_ < 0) FAIL("socket: " << strerror(errno));
    if (rcvbuf > 0) ::setsockopt(fd_, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
    int one = 1;
    ::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(static_cast<uint16_t>(port));
    connect_errno_ = ::connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 ? 0 : errno;
  }
  ~TestClient() { close(); }
  TestClient(const TestClient&) = delete;
  TestClient& operator=(const TestClient&) = delete;

  bool connected() const { return connect_errno_ == 0; }
  int connect_errno() const { return connect_errno_; }
  int fd() const { return fd_; }
  /// The local port, as the server sees it in "peer".
  int local_port() const {
    sockaddr_in a{};
    socklen_t len = sizeof a;
    ::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len);
    return ntohs(a.sin_port);
  }

  void close() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }
  /// Sends every byte; false if the peer is gone.
  bool send(std::string_view data) {
    while (!data.empty()) {
      ssize_t n = ::send(fd_, data.data(), data.size(), MSG_NOSIGNAL);
      if (n < 0) {
        if (errno == EINTR) continue;
        return false;
      }
      data.remove_prefix(static_cast<size_t>(n));
    }
    return true;
  }
  void shutdown_write() { ::shutdown(fd_, SHUT_WR); }

  /// Reads once into the buffer (up to `max` bytes), waiting at most `timeout`.
  Read read_some(milliseconds timeout = kWait, size_t max = 65536) {
    pollfd p{fd_, POLLIN, 0};
    int r;
    do r = ::poll(&p, 1, static_cast<int>(timeout.count()));
    while (r < 0 && errno == EINTR);
    if (r == 0) return Read::Timeout;
    std::string chunk(max, '\0');
    ssize_t n;
    do n = ::recv(fd_, chunk.data(), chunk.size(), 0);
    while (n < 0 && errno == EINTR);
    if (n < 0) return errno == ECONNRESET ? Read::Reset : Read::Eof;
    if (n == 0) return Read::Eof;
    buf_.append(chunk.data(), static_cast<size_t>(n));
    received_ += static_cast<uint64_t>(n);
    return Read::Data;
  }
  /// True when no byte is waiting right now (nothing was sent to us yet).
  bool nothing_pending() {
    if (!buf_.empty()) return false;
    char c;
    ssize_t n = ::recv(fd_, &c, 1, MSG_PEEK | MSG_DONTWAIT);
    return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
  }
  /// Reads until the peer closes: Eof or Reset; Timeout if it stays open.
  Read read_to_eof(milliseconds timeout = kWait) {
    const auto deadline = Clock::now() + timeout;
    while (true) {
      auto left = std::chrono::duration_cast<milliseconds>(deadline - Clock::now());
      if (left.count() <= 0) return Read::Timeout;
      Read r = read_some(left);
      if (r != Read::Data) return r;
    }
  }
  /// Exactly `n` more bytes into the buffer, or false (EOF/reset/deadline).
  bool fill_to(size_t n, Clock::time_point deadline) {
    while (buf_.size() < n) {
      auto left = std::chrono::duration_cast<milliseconds>(deadline - Clock::now());
      if (left.count() <= 0 || read_some(left) != Read::Data) return false;
    }
    return true;
  }

  /// Reads one response. head_only: the request was HEAD (no body follows).
  /// Returns nullopt when no complete head arrived before EOF or the deadline.
  std::optional<ClientResponse> read_response(milliseconds timeout = kWait, bool head_only = false) {
    const auto deadline = Clock::now() + timeout;
    size_t end;
    while ((end = buf_.find("\r\n\r\n")) == std::string::npos)
      if (!fill_to(buf_.size() + 1, deadline)) return std::nullopt;
    ClientResponse r;
    r.head = buf_.substr(0, end + 4);
    buf_.erase(0, end + 4);
    size_t line_end = r.head.find("\r\n");
    std::string first = r.head.substr(0, line_end);
    size_t sp1 = first.find(' ');
    r.version = first.substr(0, sp1);
    size_t sp2 = first.find(' ', sp1 + 1);
    r.status = std::atoi(first.substr(sp1 + 1, sp2 - sp1 - 1).c_str());
    r.reason = sp2 == std::string::npos ? "" : first.substr(sp2 + 1);
    size_t pos = line_end + 2;
    while (pos < end) {
      size_t e = r.head.find("\r\n", pos);
      std::string line = r.head.substr(pos, e - pos);
      size_t colon = line.find(':');
      std::string v = colon == std::string::npos ? "" : line.substr(colon + 1);
      while (!v.empty() && v.front() == ' ') v.erase(0, 1);
      r.headers.emplace_back(line.substr(0, colon), v);
      pos = e + 2;
    }
    if (head_only || r.status == 204 || r.status == 304 || (r.status >= 100 && r.status < 200)) {
      r.complete = true;
      return r;
    }
    auto te = r.header("Transfer-Encoding");
    auto cl = r.header("Content-Length");
    if (te && te->find("chunked") != std::string::npos) {
      r.chunked = true;
      while (true) {
        size_t le;
        while ((le = buf_.find("\r\n")) == std::string::npos)
          if (!fill_to(buf_.size() + 1, deadline)) return r;
        size_t size = std::stoul(buf_.substr(0, le), nullptr, 16);
        if (!fill_to(le + 2 + size + 2, deadline)) {
          r.body += buf_.substr(std::min(buf_.size(), le + 2));
          buf_.clear();
          return r;
        }
        if (size == 0) {  // no trailers from this server
          buf_.erase(0, le + 4);
          r.complete = true;
          return r;
        }
        r.body += buf_.substr(le + 2, size);
        buf_.erase(0, le + 2 + size + 2);
      }
    }
    if (cl) {
      size_t n = std::stoull(*cl);
      bool ok = fill_to(n, deadline);
      r.body = buf_.substr(0, std::min(n, buf_.size()));
      buf_.erase(0, r.body.size());
      r.complete = ok;
      return r;
    }
    read_to_eof(std::chrono::duration_cast<milliseconds>(deadline - Clock::now()));
    r.body = std::move(buf_);
    buf_.clear();
    r.complete = true;
    return r;
  }

  /// Bytes read but not yet consumed by read_response.
  std::string& buffered() { return buf_; }
  uint64_t received() const { return received_; }

 private:
  int fd_ = -1;
  int connect_errno_ = 0;
  std::string buf_;
  uint64_t received_ = 0;
};

/// "GET <path> HTTP/1.1" with a Host header and `extra` header lines ("K: v\r\n").
inline std::string get_request(std::string_view path, std::string_view extra = {},
                               std::string_view method = "GET") {
  std::string r;
  r += method;
  r += ' ';
  r += path;
  r += " HTTP/1.1\r\nHost: test\r\n";
  r += extra;
  r += "\r\n";
  return r;
}

}  // namespace outpost::test
