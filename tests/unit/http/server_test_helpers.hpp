// Helpers shared by the server tests (server_conn_test.cpp, server_rfc_test.cpp,
// server_hostile_test.cpp): limits, deterministic bodies, polling a
// condition with a deadline, a path-echo handler, chunk framing.
#pragma once
#include <dirent.h>
#include <poll.h>
#include <sys/socket.h>

#include <algorithm>
#include <cstdio>
#include <string>
#include <string_view>

#include "http/exchange.hpp"
#include "http/server.hpp"
#include "support/loop_fixture.hpp"

namespace outpost::test {

inline http::ServerLimits limits_with(uint64_t header_ms = 10'000, uint64_t idle_ms = 60'000,
                               uint64_t body_ms = 30'000) {
  http::ServerLimits l;
  l.header_timeout_ms = header_ms;
  l.idle_timeout_ms = idle_ms;
  l.body_timeout_ms = body_ms;
  return l;
}

/// Deterministic bytes whose position is visible in their value.
inline char pattern_at(uint64_t i) { return static_cast<char>((i * 131 + (i >> 16) + 7) & 0xff); }
inline std::string pattern(uint64_t from, uint64_t n) {
  std::string s(n, '\0');
  for (uint64_t k = 0; k < n; ++k) s[k] = pattern_at(from + k);
  return s;
}
/// Index of the first differing byte, or npos when equal.
inline size_t first_mismatch(const std::string& a, const std::string& b) {
  size_t n = std::min(a.size(), b.size());
  for (size_t i = 0; i < n; ++i)
    if (a[i] != b[i]) return i;
  return a.size() == b.size() ? std::string::npos : n;
}

/// Polls `pred` (which may use fx.call) until it holds or the deadline passes.
template <typename P>
bool eventually(LoopFixture& fx, P pred, milliseconds timeout = kWait) {
  const auto deadline = Clock::now() + timeout;
  while (true) {
    if (pred()) return true;
    if (Clock::now() >= deadline) return false;
    std::unique_lock<std::mutex> lk(fx.mu);
    fx.cv.wait_for(lk, milliseconds(5));
  }
}

inline int open_fd_count() {
  int n = 0;
  DIR* d = opendir("/proc/self/fd");
  if (!d) return -1;
  while (readdir(d)) ++n;
  closedir(d);
  return n;
}

/// Answers every request with 200 and "<METHOD> <path>" (whole responses).
inline void echo_path(ServerFixture&, const http::ExchangePtr& ex) {
  ex->respond(200, std::string(http::method_name(ex->req().method)) + " " + ex->req().path, "text/plain");
}

inline std::string chunk(std::string_view data, std::string_view ext = {}) {
  char hex[32];
  snprintf(hex, sizeof hex, "%zx", data.size());
  std::string s = hex;
  s += ext;
  s += "\r\n";
  s += data;
  s += "\r\n";
  return s;
}
/// Pushes up to `max` bytes without blocking; stops once the socket has not
/// taken a byte for `stall` (the peer stopped reading). Returns bytes taken.
/// The bytes are `block` repeated (cut at `max`).
inline uint64_t push_until_stalled(TestClient& c, uint64_t max, milliseconds stall,
                                   const std::string& block = std::string(256 * 1024, 'x')) {
  uint64_t sent = 0;
  while (sent < max) {
    const size_t off = sent % block.size();
    ssize_t n = ::send(c.fd(), block.data() + off, std::min<uint64_t>(block.size() - off, max - sent),
                       MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n > 0) {
      sent += static_cast<uint64_t>(n);
      continue;
    }
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      pollfd p{c.fd(), POLLOUT, 0};
      if (::poll(&p, 1, static_cast<int>(stall.count())) == 0) break;
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    break;
  }
  return sent;
}

/// What a body reader saw: the bytes, and how the body ended.
struct BodyRecord {
  bool ended = false;
  Errc code = Errc::Ok;
  std::string got;
};

/// A handler that reads every request body into `s` (under fx.mu) and does
/// not answer: the server's own answers (timeouts, errors) are under test.
inline ServerFixture::Handler record_body(BodyRecord& s) {
  return [&s](ServerFixture& f, const http::ExchangePtr& ex) {
    ex->read_body([&](std::string_view d) { f.update([&] { s.got.append(d); }); },
                  [&s, &f](Status st) {
                    f.update([&] {
                      s.ended = true;
                      s.code = st.ok() ? Errc::Ok : st.error().code;
                    });
                  });
  };
}

}  // namespace outpost::test
