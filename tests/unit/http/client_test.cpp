// The upstream HTTP/1.1 client (src/http/client.cpp) against a scripted
// server on real loopback sockets (tests/support/http_test_server.hpp), with
// a real uv loop stepped on the test thread (LoopFixture::run_until):
// request framing, keep-alive pooling per origin, the pool's idle timeout,
// the one retry of an idempotent request on a stale pooled connection,
// HEAD, chunked / Content-Length / read-until-EOF bodies, broken framing,
// request bodies streamed from a file (back-pressure, restart, deadline),
// interim responses, on_head returning false, cancel(), the connect /
// first-byte / progress deadlines and tearing the client down mid-call.
//
// Every callback runs on the test thread (the loop is stepped here), so
// callbacks may record freely; the scripted server runs on its own threads
// and never touches Catch2. Each test ends with the client destroyed, a
// close-walk and uv_loop_close() == 0.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <stdlib.h>
#include <unistd.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "http/client.hpp"
#include "support/http_test_server.hpp"
#include "support/loop_fixture.hpp"

using namespace outpost;
using namespace outpost::test;
using http::HttpClient;
using http::Method;
using std::chrono::milliseconds;

namespace {

/// What one call saw.
struct Outcome {
  int heads = 0;
  int status = 0;
  http::Headers headers;
  std::optional<uint64_t> content_length;
  std::string body;
  int data_calls = 0;
  int dones = 0;
  std::optional<Status> st;
  bool data_after_done = false;
  bool head_after_done = false;

  bool done() const { return dones > 0; }
  bool ok() const { return st && st->ok(); }
  Errc code() const { return st && !st->ok() ? st->error().code : Errc::Ok; }
  std::string message() const { return st && !st->ok() ? st->error().message() : std::string(); }
};

http::ClientRequest make_req(Method m, const std::string& url, http::ClientTimeouts t = {}) {
  http::ClientRequest r;
  r.method = m;
  auto u = http::Url::parse(url);
  if (!u) FAIL("bad test URL " << url);
  r.url = *u;
  r.timeouts = t;
  return r;
}

/// A client on a stepped loop, plus helpers to send and wait.
class ClientEnv {
 public:
  ClientEnv() : client(std::make_unique<HttpClient>(fx.loop(), nullptr)) {}
  ~ClientEnv() { end(); }

  http::ClientCallPtr send(http::ClientRequest req, Outcome& o, std::function<bool(const http::ClientResponse&)> head_ret = {},
                           std::function<void(std::string_view)> on_data_extra = {}) {
    return client->send(
        std::move(req),
        [&o, head_ret](const http::ClientResponse& r) {
          if (o.done()) o.head_after_done = true;
          ++o.heads;
          o.status = r.status;
          o.headers = r.headers;
          o.content_length = r.content_length;
          return head_ret ? head_ret(r) : true;
        },
        [&o, on_data_extra](std::string_view c) {
          if (o.done()) o.data_after_done = true;
          ++o.data_calls;
          o.body.append(c);
          if (on_data_extra) on_data_extra(c);
        },
        [&o](Status s) {
          ++o.dones;
          o.st = std::move(s);
        });
  }
  /// Sends and steps the loop until on_done (FAILs at the deadline).
  Outcome fetch(http::ClientRequest req) {
    Outcome o;
    send(std::move(req), o);
    wait_done(o);
    return o;
  }
  void wait_done(const Outcome& o, milliseconds timeout = kWait) {
    bool done = fx.run_until([&] { return o.done(); }, timeout);
    if (!done) FAIL("the call did not finish within " << timeout.count() << " ms");
  }
  bool until(const std::function<bool()>& pred, milliseconds timeout = kWait) { return fx.run_until(pred, timeout); }

  /// Destroys the client, lets its connections close, and checks the loop closes clean.
  void end() {
    if (ended_) return;
    ended_ = true;
    client.reset();
    CHECK(fx.finish() == 0);
  }

  LoopFixture fx;
  std::unique_ptr<HttpClient> client;

 private:
  bool ended_ = false;
};

std::string pattern(size_t n) {
  std::string s(n, '\0');
  uint32_t x = 2463534242u;
  for (auto& c : s) {
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    c = static_cast<char>('a' + x % 26);
  }
  return s;
}

/// A listener whose accept queue is full: new connects hang in SYN_SENT.
class Blackhole {
 public:
  Blackhole() {
    lfd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ::bind(lfd_, reinterpret_cast<sockaddr*>(&a), sizeof a);
    ::listen(lfd_, 0);
    socklen_t len = sizeof a;
    ::getsockname(lfd_, reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
    for (int i = 0; i < 16 && !saturated_; ++i) {
      int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
      fillers_.push_back(fd);
      int rc = ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
      if (rc == 0) continue;
      pollfd p{fd, POLLOUT, 0};
      // A connect still pending after 300 ms: the queue is full.
      if (::poll(&p, 1, 300) == 0) saturated_ = true;
    }
  }
  ~Blackhole() {
    for (int fd : fillers_) ::close(fd);
    ::close(lfd_);
  }
  bool saturated() const { return saturated_; }
  int port() const { return port_; }

 private:
  int lfd_ = -1;
  int port_ = 0;
  bool saturated_ = false;
  std::vector<int> fillers_;
};

}  // namespace

// ---------------------------------------------------------------------------
// Requests and plain responses

TEST_CASE("client: GET sends Host, User-Agent and the caller's headers; gets status, headers, body",
          "[http][client]") {
  HttpTestServer srv([](ScriptConn& c, const SeenRequest&) {
    c.send(reply(200, "hello world", {{"X-Test", "yes"}, {"Content-Type", "text/plain"}}));
  });
  ClientEnv env;
  auto req = make_req(Method::Get, srv.url("/v2/lib/x/manifests/latest?n=1"));
  req.headers.add("Accept", "application/vnd.oci.image.index.v1+json");
  req.headers.add("X-Many", "a");
  req.headers.add("X-Many", "b");
  Outcome o = env.fetch(req);

  CHECK(o.ok());
  CHECK(o.dones == 1);
  CHECK(o.heads == 1);
  CHECK(o.status == 200);
  CHECK(o.headers.get("X-Test") == std::optional<std::string_view>("yes"));
  REQUIRE(o.content_length);
  CHECK(*o.content_length == 11);
  CHECK(o.body == "hello world");

  auto seen = srv.requests();
  REQUIRE(seen.size() == 1);
  CHECK(seen[0].method == "GET");
  CHECK(seen[0].target == "/v2/lib/x/manifests/latest?n=1");
  CHECK(seen[0].version == "HTTP/1.1");
  CHECK(seen[0].header("Host") == "127.0.0.1:" + std::to_string(srv.port()));
  REQUIRE(seen[0].header("User-Agent"));
  CHECK(seen[0].header("User-Agent")->rfind("outpost/", 0) == 0);
  CHECK(seen[0].header("Accept") == "application/vnd.oci.image.index.v1+json");
  CHECK(seen[0].header_count("X-Many") == 2);
  CHECK_FALSE(seen[0].header("Content-Length"));  // a GET without a body has no framing
  env.end();
}

TEST_CASE("client: PUT/POST carry Content-Length (0 for an empty PUT) and the body", "[http][client]") {
  HttpTestServer srv([](ScriptConn& c, const SeenRequest& r) { c.send(reply(201, "got " + r.body)); });
  ClientEnv env;
  auto post = make_req(Method::Post, srv.url("/post"));
  post.body = "payload-bytes";
  Outcome a = env.fetch(post);
  Outcome b = env.fetch(make_req(Method::Put, srv.url("/put")));
  auto del = make_req(Method::Delete, srv.url("/del"));
  Outcome c = env.fetch(del);

  CHECK(a.ok());
  CHECK(a.status == 201);
  CHECK(a.body == "got payload-bytes");
  CHECK(b.ok());
  CHECK(c.ok());
  auto seen = srv.requests();
  REQUIRE(seen.size() == 3);
  CHECK(seen[0].method == "POST");
  CHECK(seen[0].header("Content-Length") == "13");
  CHECK(seen[0].body == "payload-bytes");
  CHECK(seen[1].method == "PUT");
  CHECK(seen[1].header("Content-Length") == "0");
  CHECK(seen[2].method == "DELETE");
  CHECK_FALSE(seen[2].header("Content-Length"));
  env.end();
}

TEST_CASE("client: a big Content-Length body streams in many on_data calls, intact", "[http][client]") {
  const std::string big = pattern(3 * 1024 * 1024 + 17);
  HttpTestServer srv([&](ScriptConn& c, const SeenRequest&) { c.send(reply(200, big)); });
  ClientEnv env;
  Outcome o = env.fetch(make_req(Method::Get, srv.url("/big")));
  CHECK(o.ok());
  CHECK(o.body.size() == big.size());
  CHECK((o.body == big));
  CHECK(o.data_calls > 1);
  CHECK_FALSE(o.data_after_done);
  env.end();
}

// ---------------------------------------------------------------------------
// Keep-alive pool

TEST_CASE("client: sequential requests to one origin share one pooled connection", "[http][client][pool]") {
  HttpTestServer srv([](ScriptConn& c, const SeenRequest& r) { c.send(reply(200, r.target)); });
  ClientEnv env;
  for (int i = 0; i < 3; ++i) {
    Outcome o = env.fetch(make_req(Method::Get, srv.url("/r" + std::to_string(i))));
    CHECK(o.ok());
    CHECK(o.body == "/r" + std::to_string(i));
    CHECK(env.client->idle_connections() == 1);
  }
  CHECK(srv.connections() == 1);
  auto seen = srv.requests();
  REQUIRE(seen.size() == 3);
  CHECK(seen[2].conn == 0);
  CHECK(seen[2].seq_on_conn == 2);
  env.end();
}

TEST_CASE("client: concurrent requests use separate connections, which all return to the pool",
          "[http][client][pool]") {
  HttpTestServer srv([](ScriptConn& c, const SeenRequest& r) {
    if (r.seq < 2 && !c.wait_gate("both")) return;  // hold the first two until both are in
    c.send(reply(200, "ok"));
  });
  ClientEnv env;
  Outcome a, b;
  env.send(make_req(Method::Get, srv.url("/a")), a);
  env.send(make_req(Method::Get, srv.url("/b")), b);
  REQUIRE(env.until([&] { return srv.waiting_at("both") == 2; }));
  srv.open_gate("both");
  REQUIRE(env.until([&] { return a.done() && b.done(); }));
  CHECK(a.ok());
  CHECK(b.ok());
  CHECK(srv.connections() == 2);
  CHECK(env.client->idle_connections() == 2);

  // Both pooled: two more concurrent requests open nothing new.
  Outcome c, d;
  env.send(make_req(Method::Get, srv.url("/c")), c);
  env.send(make_req(Method::Get, srv.url("/d")), d);
  REQUIRE(env.until([&] { return c.done() && d.done(); }));
  CHECK(c.ok());
  CHECK(d.ok());
  CHECK(srv.connections() == 2);
  CHECK(env.client->idle_connections() == 2);
  env.end();
}

TEST_CASE("client: different origins never share a pooled connection", "[http][client][pool]") {
  HttpTestServer one([](ScriptConn& c, const SeenRequest&) { c.send(reply(200, "one")); });
  HttpTestServer two([](ScriptConn& c, const SeenRequest&) { c.send(reply(200, "two")); });
  ClientEnv env;
  CHECK(env.fetch(make_req(Method::Get, one.url("/"))).body == "one");
  CHECK(env.fetch(make_req(Method::Get, two.url("/"))).body == "two");
  CHECK(env.fetch(make_req(Method::Get, one.url("/"))).body == "one");
  CHECK(env.fetch(make_req(Method::Get, two.url("/"))).body == "two");
  CHECK(one.connections() == 1);
  CHECK(two.connections() == 1);
  CHECK(env.client->idle_connections() == 2);
  env.end();
}

TEST_CASE("client: responses that end the connection are not pooled", "[http][client][pool]") {
  SECTION("Connection: close") {
    HttpTestServer srv([](ScriptConn& c, const SeenRequest&) {
      c.send(reply(200, "bye", {{"Connection", "close"}}));
      c.close();
    });
    ClientEnv env;
    CHECK(env.fetch(make_req(Method::Get, srv.url("/1"))).ok());
    CHECK(env.client->idle_connections() == 0);
    CHECK(env.fetch(make_req(Method::Get, srv.url("/2"))).ok());
    CHECK(srv.connections() == 2);
    env.end();
  }
  SECTION("HTTP/1.0 without keep-alive") {
    HttpTestServer srv([](ScriptConn& c, const SeenRequest&) {
      c.send("HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok");
      c.close();
    });
    ClientEnv env;
    Outcome o = env.fetch(make_req(Method::Get, srv.url("/1")));
    CHECK(o.ok());
    CHECK(o.body == "ok");
    CHECK(env.client->idle_connections() == 0);
    env.end();
  }
}

TEST_CASE("client: idle pooled connections close after the pool idle time", "[http][client][pool]") {
  HttpTestServer srv([](ScriptConn& c, const SeenRequest&) { c.send(reply(200, "ok")); });
  ClientEnv env;
  env.client->set_pool_idle_ms(30);
  CHECK(env.fetch(make_req(Method::Get, srv.url("/"))).ok());
  // The server sees the client close the idle connection.
  CHECK(env.until([&] { return env.client->idle_connections() == 0 && srv.peer_closes() == 1; }));
  CHECK(env.client->idle_connections() == 0);
  CHECK(srv.peer_closes() == 1);
  // The next request simply opens a new one.
  CHECK(env.fetch(make_req(Method::Get, srv.url("/"))).ok());
  CHECK(srv.connections() == 2);
  env.end();
}

TEST_CASE("client: a pooled connection the parent closed while idle is never a failure", "[http][client][pool]") {
  // Keep-alive answer, then the parent drops the connection anyway.
  HttpTestServer srv([](ScriptConn& c, const SeenRequest&) {
    c.send(reply(200, "ok"));
    c.close();
  });
  ClientEnv env;
  CHECK(env.fetch(make_req(Method::Get, srv.url("/1"))).ok());
  // The client notices the close while idle (or retries on it): either way the next call works.
  CHECK(env.until([&] { return env.client->idle_connections() == 0; }));
  Outcome o = env.fetch(make_req(Method::Get, srv.url("/2")));
  CHECK(o.ok());
  CHECK(o.body == "ok");
  CHECK(srv.connections() == 2);
  env.end();
}

TEST_CASE("client: bytes arriving on an idle pooled connection drop it", "[http][client][pool]") {
  HttpTestServer srv([](ScriptConn& c, const SeenRequest&) {
    c.send(reply(200, "ok"));
    c.send("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");  // unsolicited
  });
  ClientEnv env;
  Outcome o = env.fetch(make_req(Method::Get, srv.url("/1")));
  CHECK(o.ok());
  CHECK(o.body == "ok");
  CHECK(env.until([&] { return env.client->idle_connections() == 0; }));
  Outcome p = env.fetch(make_req(Method::Get, srv.url("/2")));
  CHECK(p.ok());
  CHECK(p.body == "ok");  // not the stray response
  CHECK(srv.connections() == 2);
  env.end();
}

TEST_CASE("client: on_done may send the next request, which reuses the connection", "[http][client][pool]") {
  HttpTestServer srv([](ScriptConn& c, const SeenRequest& r) { c.send(reply(200, r.target)); });
  ClientEnv env;
  Outcome first, second;
  env.client->send(
      make_req(Method::Get, srv.url("/first")), nullptr, [&](std::string_view c) { first.body.append(c); },
      [&](Status s) {
        ++first.dones;
        first.st = s;
        env.send(make_req(Method::Get, srv.url("/second")), second);
      });
  env.wait_done(second);
  CHECK(first.ok());
  CHECK(first.body == "/first");
  CHECK(second.ok());
  CHECK(second.body == "/second");
  CHECK(srv.connections() == 1);
  env.end();
}

// ---------------------------------------------------------------------------
// Stale pooled connections: one retry for idempotent methods

namespace {
/// Answers the first request on connection 0, then closes connection 0 on its
/// next request without answering (a parent that timed the connection out
/// just as we reused it). Later connections answer normally.
Script stale_after_first() {
  return [](ScriptConn& c, const SeenRequest& r) {
    if (r.conn == 0 && r.seq_on_conn == 1) return c.close();
    c.send(reply(200, "fresh:" + r.target));
  };
}
}  // namespace

TEST_CASE("client: a GET that fails on a stale pooled connection is retried once on a new one",
          "[http][client][retry]") {
  HttpTestServer srv(stale_after_first());
  ClientEnv env;
  CHECK(env.fetch(make_req(Method::Get, srv.url("/warm"))).ok());
  REQUIRE(env.client->idle_connections() == 1);
  Outcome o = env.fetch(make_req(Method::Get, srv.url("/again")));
  CHECK(o.ok());
  CHECK(o.dones == 1);
  CHECK(o.heads == 1);
  CHECK(o.body == "fresh:/again");
  CHECK(srv.connections() == 2);
  auto seen = srv.requests();
  REQUIRE(seen.size() == 3);
  CHECK(seen[1].target == "/again");
  CHECK(seen[2].target == "/again");
  CHECK(seen[2].conn == 1);
  env.end();
}

TEST_CASE("client: a HEAD on a stale pooled connection is retried too", "[http][client][retry]") {
  HttpTestServer srv([](ScriptConn& c, const SeenRequest& r) {
    if (r.conn == 0 && r.seq_on_conn == 1) return c.close();
    c.send(head_only(200, {{"Content-Length", "1234"}}));
  });
  ClientEnv env;
  CHECK(env.fetch(make_req(Method::Head, srv.url("/warm"))).ok());
  Outcome o = env.fetch(make_req(Method::Head, srv.url("/again")));
  CHECK(o.ok());
  CHECK(o.status == 200);
  CHECK(o.content_length == std::optional<uint64_t>(1234));
  CHECK(srv.connections() == 2);
  env.end();
}

TEST_CASE("client: a POST on a stale pooled connection fails instead of being resent", "[http][client][retry]") {
  HttpTestServer srv(stale_after_first());
  ClientEnv env;
  CHECK(env.fetch(make_req(Method::Get, srv.url("/warm"))).ok());
  auto post = make_req(Method::Post, srv.url("/upload"));
  post.body = "once";
  Outcome o = env.fetch(post);
  CHECK_FALSE(o.ok());
  CHECK(o.code() == Errc::UpstreamUnavailable);
  CHECK(o.heads == 0);
  CHECK(o.dones == 1);
  CHECK(srv.request_count() == 2);  // never sent twice
  CHECK(srv.count_path("/upload") == 1);
  env.end();
}

TEST_CASE("client: the retry happens once; a second drop fails the call", "[http][client][retry]") {
  HttpTestServer srv([](ScriptConn& c, const SeenRequest& r) {
    if (r.seq == 0) return (void)c.send(reply(200, "warm"));
    c.close();  // every later request: dropped unanswered
  });
  ClientEnv env;
  CHECK(env.fetch(make_req(Method::Get, srv.url("/warm"))).ok());
  Outcome o = env.fetch(make_req(Method::Get, srv.url("/x")));
  CHECK_FALSE(o.ok());
  CHECK(o.code() == Errc::UpstreamUnavailable);
  CHECK(o.dones == 1);
  CHECK(srv.count_path("/x") == 2);
  CHECK(srv.connections() == 2);
  env.end();
}

TEST_CASE("client: a stale connection that already sent response bytes is not retried", "[http][client][retry]") {
  HttpTestServer srv([](ScriptConn& c, const SeenRequest& r) {
    if (r.seq == 0) return (void)c.send(reply(200, "warm"));
    c.send("HTTP/1.1 200 OK\r\nContent-Le");  // cut inside the head
    c.close();
  });
  ClientEnv env;
  CHECK(env.fetch(make_req(Method::Get, srv.url("/warm"))).ok());
  Outcome o = env.fetch(make_req(Method::Get, srv.url("/x")));
  CHECK_FALSE(o.ok());
  CHECK(o.code() == Errc::UpstreamUnavailable);
  CHECK(srv.count_path("/x") == 1);
  env.end();
}

TEST_CASE("client: a fresh connection dropped before any byte is not retried", "[http][client][retry]") {
  HttpTestServer srv([](ScriptConn& c, const SeenRequest&) { c.close(); });
  ClientEnv env;
  Outcome o = env.fetch(make_req(Method::Get, srv.url("/x")));
  CHECK_FALSE(o.ok());
  CHECK(o.code() == Errc::UpstreamUnavailable);
  CHECK(o.dones == 1);
  CHECK(srv.request_count() == 1);
  env.end();
}

// ---------------------------------------------------------------------------
// Bodies and framing

TEST_CASE("client: a HEAD response has no body even with a Content-Length; the connection is reused",
          "[http][client][framing]") {
  HttpTestServer srv([](ScriptConn& c, const SeenRequest& r) {
    if (r.method == "HEAD") return (void)c.send(head_only(200, {{"Content-Length", "100000"}, {"Docker-Content-Digest", "sha256:x"}}));
    c.send(reply(200, "after-head"));
  });
  ClientEnv env;
  Outcome h = env.fetch(make_req(Method::Head, srv.url("/blob")));
  CHECK(h.ok());
  CHECK(h.status == 200);
  CHECK(h.content_length == std::optional<uint64_t>(100000));
  CHECK(h.body.empty());
  CHECK(h.data_calls == 0);
  CHECK(env.client->idle_connections() == 1);
  Outcome g = env.fetch(make_req(Method::Get, srv.url("/next")));
  CHECK(g.ok());
  CHECK(g.body == "after-head");
  CHECK(srv.connections() == 1);
  env.end();
}

TEST_CASE("client: a HEAD response with Transfer-Encoding: chunked has no body either", "[http][client][framing]") {
  HttpTestServer srv([](ScriptConn& c, const SeenRequest& r) {
    if (r.method == "HEAD") return (void)c.send(head_only(200, {{"Transfer-Encoding", "chunked"}}));
    c.send(reply(200, "next"));
  });
  ClientEnv env;
  Outcome h = env.fetch(make_req(Method::Head, srv.url("/m")));
  CHECK(h.ok());
  CHECK(h.body.empty());
  CHECK(env.fetch(make_req(Method::Get, srv.url("/n"))).body == "next");
  CHECK(srv.connections() == 1);
  env.end();
}

TEST_CASE("client: chunked bodies, sent in pieces, with extensions and trailers", "[http][client][framing]") {
  const std::string whole = chunked_reply(200, {"Hello, ", std::string(70000, 'x'), "world"}, {},
                                          "X-Trailer: t\r\n");
  HttpTestServer srv([&](ScriptConn& c, const SeenRequest& r) {
    if (r.target == "/ext") return (void)c.send("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                                               "3;name=value\r\nabc\r\n0\r\n\r\n");
    // Split at awkward places: inside the head, inside a size line, inside data.
    const size_t cuts[] = {10, 60, 71, 5000, whole.size() - 3};
    size_t at = 0;
    for (size_t cut : cuts) {
      c.send(std::string_view(whole).substr(at, cut - at));
      at = cut;
    }
    c.send(std::string_view(whole).substr(at));
  });
  ClientEnv env;
  Outcome o = env.fetch(make_req(Method::Get, srv.url("/pieces")));
  CHECK(o.ok());
  CHECK_FALSE(o.content_length);
  CHECK(o.body.size() == 7 + 70000 + 5);
  CHECK((o.body == "Hello, " + std::string(70000, 'x') + "world"));
  CHECK(env.client->idle_connections() == 1);  // framed: reusable

  Outcome e = env.fetch(make_req(Method::Get, srv.url("/ext")));
  CHECK(e.ok());
  CHECK(e.body == "abc");
  CHECK(srv.connections() == 1);
  env.end();
}

TEST_CASE("client: a body without length or chunking is read until EOF; the connection is not pooled",
          "[http][client][framing]") {
  const std::string body = pattern(200000);
  HttpTestServer srv([&](ScriptConn& c, const SeenRequest& r) {
    c.send(head_only(200, {{"Content-Type", "application/octet-stream"}}));
    if (r.target == "/data") c.send(body);
    c.close();
  });
  ClientEnv env;
  Outcome o = env.fetch(make_req(Method::Get, srv.url("/data")));
  CHECK(o.ok());
  CHECK_FALSE(o.content_length);
  CHECK(o.body.size() == body.size());
  CHECK((o.body == body));
  CHECK(env.client->idle_connections() == 0);

  Outcome empty = env.fetch(make_req(Method::Get, srv.url("/empty")));
  CHECK(empty.ok());
  CHECK(empty.body.empty());
  env.end();
}

TEST_CASE("client: 204 and 304 have no body and keep the connection", "[http][client][framing]") {
  HttpTestServer srv([](ScriptConn& c, const SeenRequest& r) {
    if (r.target == "/204") return (void)c.send(head_only(204));
    if (r.target == "/304") return (void)c.send(head_only(304, {{"ETag", "\"e\""}}));
    c.send(reply(200, "tail"));
  });
  ClientEnv env;
  Outcome a = env.fetch(make_req(Method::Get, srv.url("/204")));
  CHECK(a.ok());
  CHECK(a.status == 204);
  Outcome b = env.fetch(make_req(Method::Get, srv.url("/304")));
  CHECK(b.ok());
  CHECK(b.status == 304);
  CHECK(env.fetch(make_req(Method::Get, srv.url("/x"))).body == "tail");
  CHECK(srv.connections() == 1);
  env.end();
}

TEST_CASE("client: interim 1xx responses are skipped; on_head sees the final one", "[http][client][framing]") {
  HttpTestServer srv([](ScriptConn& c, const SeenRequest&) {
    c.send("HTTP/1.1 100 Continue\r\n\r\n");
    c.send("HTTP/1.1 103 Early Hints\r\nLink: </x>\r\n\r\n");
    c.send(reply(200, "final", {{"X-Final", "1"}}));
  });
  ClientEnv env;
  Outcome o = env.fetch(make_req(Method::Get, srv.url("/")));
  CHECK(o.ok());
  CHECK(o.heads == 1);
  CHECK(o.status == 200);
  CHECK(o.headers.has("X-Final"));
  CHECK_FALSE(o.headers.has("Link"));
  CHECK(o.body == "final");
  env.end();
}

TEST_CASE("client: a connection closed right after the head fails the call", "[http][client][framing]") {
  HttpTestServer srv([](ScriptConn& c, const SeenRequest& r) {
    if (r.target == "/cl") c.send(head_only(200, {{"Content-Length", "10"}}));
    else c.send(head_only(200, {{"Transfer-Encoding", "chunked"}}));
    c.close();
  });
  ClientEnv env;
  Outcome a = env.fetch(make_req(Method::Get, srv.url("/cl")));
  CHECK(a.heads == 1);
  CHECK_FALSE(a.ok());
  CHECK(a.code() == Errc::UpstreamUnavailable);
  Outcome b = env.fetch(make_req(Method::Get, srv.url("/chunked")));
  CHECK(b.heads == 1);
  CHECK_FALSE(b.ok());
  CHECK(b.code() == Errc::UpstreamUnavailable);
  CHECK(env.client->idle_connections() == 0);
  env.end();
}

TEST_CASE("client: fewer bytes than Content-Length, then EOF: the partial body and an error", "[http][client][framing]") {
  HttpTestServer srv([](ScriptConn& c, const SeenRequest&) {
    c.send(head_only(200, {{"Content-Length", "100"}}) + std::string(50, 'p'));
    c.close();
  });
  ClientEnv env;
  Outcome o = env.fetch(make_req(Method::Get, srv.url("/short")));
  CHECK(o.status == 200);
  CHECK(o.body == std::string(50, 'p'));
  CHECK_FALSE(o.ok());
  CHECK(o.code() == Errc::UpstreamUnavailable);
  CHECK(o.dones == 1);
  env.end();
}

TEST_CASE("client: more bytes than Content-Length: the body stops at the length; the connection is dropped",
          "[http][client][framing]") {
  HttpTestServer srv([](ScriptConn& c, const SeenRequest& r) {
    if (r.target == "/long") return (void)c.send(head_only(200, {{"Content-Length", "5"}}) + "12345EXTRA-BYTES");
    c.send(reply(200, "clean"));
  });
  ClientEnv env;
  Outcome o = env.fetch(make_req(Method::Get, srv.url("/long")));
  CHECK(o.ok());
  CHECK(o.body == "12345");
  CHECK(env.until([&] { return env.client->idle_connections() == 0; }));
  Outcome p = env.fetch(make_req(Method::Get, srv.url("/next")));
  CHECK(p.ok());
  CHECK(p.body == "clean");
  CHECK(srv.connections() == 2);
  env.end();
}

TEST_CASE("client: a chunked body cut short fails the call", "[http][client][framing]") {
  HttpTestServer srv([](ScriptConn& c, const SeenRequest&) {
    c.send("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n10\r\nonly-some");
    c.close();
  });
  ClientEnv env;
  Outcome o = env.fetch(make_req(Method::Get, srv.url("/")));
  CHECK(o.body.rfind("hello", 0) == 0);
  CHECK_FALSE(o.ok());
  CHECK(o.code() == Errc::UpstreamUnavailable);
  env.end();
}

TEST_CASE("client: a malformed response is an UpstreamError", "[http][client][framing]") {
  HttpTestServer srv([](ScriptConn& c, const SeenRequest& r) {
    if (r.target == "/garbage") c.send("SSH-2.0-OpenSSH_9.2\r\n\r\n");
    else c.send("HTTP/1.1 200 OK\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\nabcde");
  });
  ClientEnv env;
  Outcome a = env.fetch(make_req(Method::Get, srv.url("/garbage")));
  CHECK_FALSE(a.ok());
  CHECK(a.code() == Errc::UpstreamError);
  CHECK(a.heads == 0);
  Outcome b = env.fetch(make_req(Method::Get, srv.url("/two-lengths")));
  CHECK_FALSE(b.ok());
  CHECK(b.code() == Errc::UpstreamError);
  CHECK(env.client->idle_connections() == 0);
  env.end();
}

// ---------------------------------------------------------------------------
// Stopping early: on_head false, cancel()

TEST_CASE("client: on_head returning false stops the body; the connection is dropped", "[http][client][cancel]") {
  HttpTestServer srv([](ScriptConn& c, const SeenRequest& r) {
    if (r.target == "/big") {
      c.send(head_only(404, {{"Content-Length", "1000000"}}) + std::string(1000, 'e'));
      return c.stall();  // until the client gives up on the connection
    }
    c.send(reply(200, "ok"));
  });
  ClientEnv env;
  Outcome o;
  env.send(make_req(Method::Get, srv.url("/big")), o, [](const http::ClientResponse& r) { return r.status == 200; });
  // The call ends (as cancelled) without a single body byte, and the parent
  // sees the connection closed rather than reused.
  REQUIRE(env.until([&] { return o.done() && srv.peer_closes() == 1; }));
  CHECK(o.heads == 1);
  CHECK(o.status == 404);
  CHECK(o.data_calls == 0);
  CHECK(o.dones == 1);
  CHECK(o.code() == Errc::Cancelled);
  CHECK(env.client->idle_connections() == 0);
  CHECK(env.fetch(make_req(Method::Get, srv.url("/next"))).ok());
  CHECK(srv.connections() == 2);
  env.end();
}

TEST_CASE("client: cancel() while waiting for the response: no callback, the connection closes",
          "[http][client][cancel]") {
  HttpTestServer srv([](ScriptConn& c, const SeenRequest&) { c.stall(); });
  ClientEnv env;
  Outcome o;
  auto call = env.send(make_req(Method::Get, srv.url("/stall")), o);
  REQUIRE(env.until([&] { return srv.request_count() == 1; }));
  call->cancel();
  CHECK(call->finished());
  call->cancel();  // idempotent
  REQUIRE(env.until([&] { return srv.peer_closes() == 1; }));
  CHECK(o.heads == 0);
  CHECK(o.dones == 0);
  CHECK(env.client->idle_connections() == 0);
  env.end();
  CHECK(o.dones == 0);  // not even when the client goes away
}

TEST_CASE("client: cancel() from inside on_data stops further data", "[http][client][cancel]") {
  HttpTestServer srv([](ScriptConn& c, const SeenRequest&) {
    c.send(head_only(200, {{"Content-Length", "300000"}}) + std::string(1000, 'a'));
    if (!c.wait_gate("rest")) return;
    c.send(std::string(299000, 'b'));
    c.stall();
  });
  ClientEnv env;
  Outcome o;
  http::ClientCallPtr call;
  call = env.send(make_req(Method::Get, srv.url("/")), o, {}, [&](std::string_view) { call->cancel(); });
  REQUIRE(env.until([&] { return o.data_calls >= 1; }));
  srv.open_gate("rest");
  REQUIRE(env.until([&] { return srv.peer_closes() == 1; }));
  CHECK(o.data_calls == 1);
  CHECK(o.dones == 0);
  CHECK(call->finished());
  env.end();
}

// Back-pressure for a fill whose disk is slower than the parent (issue #14):
// a paused call reads nothing more and its progress deadline does not run
// (the wait is ours), and resume() delivers the rest intact.
TEST_CASE("client: pause() from inside on_data stops reading and the deadline; resume() finishes the body",
          "[http][client][pause]") {
  HttpTestServer srv([](ScriptConn& c, const SeenRequest&) {
    c.send(head_only(200, {{"Content-Length", "300000"}}) + std::string(1000, 'a'));
    if (!c.wait_gate("rest")) return;
    c.send(std::string(299000, 'b'));
  });
  ClientEnv env;
  http::ClientTimeouts t;
  t.progress_ms = 100;
  Outcome o;
  http::ClientCallPtr call;
  call = env.send(make_req(Method::Get, srv.url("/"), t), o, {}, [&](std::string_view) {
    if (o.data_calls == 1) call->pause();
  });
  REQUIRE(env.until([&] { return o.data_calls >= 1; }));
  CHECK(call->paused());
  srv.open_gate("rest");
  // Three progress deadlines long: nothing may arrive, and nothing may fail.
  CHECK_FALSE(env.until([&] { return o.data_calls > 1 || o.done(); }, milliseconds(300)));
  CHECK(o.body.size() == 1000);
  call->resume();
  env.wait_done(o);
  CHECK(o.ok());
  CHECK(o.body == std::string(1000, 'a') + std::string(299000, 'b'));
  env.end();
}

TEST_CASE("client: cancel() after on_done is a no-op; the connection stays pooled", "[http][client][cancel]") {
  HttpTestServer srv([](ScriptConn& c, const SeenRequest&) { c.send(reply(200, "ok")); });
  ClientEnv env;
  Outcome o;
  auto call = env.send(make_req(Method::Get, srv.url("/")), o);
  env.wait_done(o);
  call->cancel();
  CHECK(o.dones == 1);
  CHECK(env.client->idle_connections() == 1);
  env.end();
}

TEST_CASE("client: destroying the client fails calls in flight (Cancelled) and closes cleanly",
          "[http][client][cancel]") {
  HttpTestServer srv([](ScriptConn& c, const SeenRequest& r) {
    if (r.target == "/idle") return (void)c.send(reply(200, "ok"));
    c.stall();
  });
  ClientEnv env;
  CHECK(env.fetch(make_req(Method::Get, srv.url("/idle"))).ok());  // one pooled, idle
  Outcome a, b;
  env.send(make_req(Method::Get, srv.url("/s1")), a);
  env.send(make_req(Method::Get, srv.url("/s2")), b);
  REQUIRE(env.until([&] { return srv.count_path("/s1") + srv.count_path("/s2") == 2; }));
  env.client.reset();
  CHECK(a.dones == 1);
  CHECK(b.dones == 1);
  CHECK(a.code() == Errc::Cancelled);
  CHECK(b.code() == Errc::Cancelled);
  REQUIRE(env.until([&] { return srv.peer_closes() == 2; }));
  env.end();
}

// ---------------------------------------------------------------------------
// Deadlines and connect failures

TEST_CASE("client: the first-byte deadline fails a call the parent never answers", "[http][client][deadline]") {
  HttpTestServer srv([](ScriptConn& c, const SeenRequest&) { c.stall(); });
  ClientEnv env;
  http::ClientTimeouts t;
  t.first_byte_ms = 150;
  auto start = Clock::now();
  Outcome o = env.fetch(make_req(Method::Get, srv.url("/"), t));
  auto elapsed = std::chrono::duration_cast<milliseconds>(Clock::now() - start).count();
  CHECK_FALSE(o.ok());
  CHECK(o.code() == Errc::UpstreamUnavailable);
  CHECK(o.message().find("no response") != std::string::npos);
  CHECK(elapsed >= 100);
  CHECK(elapsed < 5000);
  CHECK(env.until([&] { return srv.peer_closes() == 1; }));
  env.end();
}

TEST_CASE("client: a pooled connection that times out is not retried: the caller waits one deadline",
          "[http][client][deadline][retry]") {
  HttpTestServer srv([](ScriptConn& c, const SeenRequest& r) {
    if (r.seq == 0) return (void)c.send(reply(200, "warm"));
    c.stall();
  });
  ClientEnv env;
  CHECK(env.fetch(make_req(Method::Get, srv.url("/warm"))).ok());
  REQUIRE(env.client->idle_connections() == 1);
  http::ClientTimeouts t;
  t.first_byte_ms = 400;
  // Regression (issue #13): the deadline on a reused connection was taken for
  // a stale connection and the request was sent again, so a parent that
  // accepts and never answers made the caller wait 2 x parent.timeout.
  auto start = Clock::now();
  Outcome o = env.fetch(make_req(Method::Get, srv.url("/x"), t));
  auto elapsed = std::chrono::duration_cast<milliseconds>(Clock::now() - start).count();
  CHECK_FALSE(o.ok());
  CHECK(o.code() == Errc::UpstreamUnavailable);
  CHECK(o.message().find("no response") != std::string::npos);
  CHECK(o.dones == 1);
  CHECK(srv.count_path("/x") == 1);
  CHECK(srv.connections() == 1);
  CHECK(elapsed >= 350);
  CHECK(elapsed < 780);  // one deadline, not two
  env.end();
}

TEST_CASE("client: a head that never completes fails at first_byte_ms, however it trickles",
          "[http][client][deadline]") {
  // One parent sends 100 Continue every 50 ms, another drips its head a byte
  // at a time: each byte used to restart the first-byte clock, so neither
  // was ever cut (parent.timeout bounded nothing).
  for (bool interim : {true, false}) {
    INFO((interim ? "100 Continue every 50 ms" : "head dripped a byte every 50 ms"));
    HttpTestServer srv([interim](ScriptConn& c, const SeenRequest&) {
      const std::string head = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Slow: ";
      for (int i = 0; i < 100; ++i) {
        if (!c.send(interim ? std::string("HTTP/1.1 100 Continue\r\n\r\n") : std::string(1, i < 40 ? head[i % head.size()] : 'x')))
          return;
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
      }
    });
    ClientEnv env;
    http::ClientTimeouts t;
    t.first_byte_ms = 300;
    t.progress_ms = 300;
    auto start = Clock::now();
    Outcome o = env.fetch(make_req(Method::Get, srv.url("/"), t));
    auto elapsed = std::chrono::duration_cast<milliseconds>(Clock::now() - start).count();
    INFO("elapsed " << elapsed << " ms; first_byte_ms 300; the parent goes on for 5 s");
    CHECK_FALSE(o.ok());
    CHECK(o.code() == Errc::UpstreamUnavailable);
    CHECK(elapsed < 2000);
    env.end();
  }
}

TEST_CASE("client: the progress deadline fails a body that stops", "[http][client][deadline]") {
  // Head and the first body bytes arrive; then the next pieces only after a gate.
  HttpTestServer srv([](ScriptConn& c, const SeenRequest&) {
    c.send(head_only(200, {{"Content-Length", "1000"}}));
    if (!c.wait_gate("piece")) return;
    c.send(std::string(10, 'x'));
    c.stall();
  });
  ClientEnv env;
  http::ClientTimeouts t;
  t.progress_ms = 150;
  t.first_byte_ms = 150;
  Outcome o;
  env.send(make_req(Method::Get, srv.url("/"), t), o);
  REQUIRE(env.until([&] { return o.heads == 1; }));
  srv.open_gate("piece");
  env.wait_done(o);
  CHECK(o.body == std::string(10, 'x'));
  CHECK_FALSE(o.ok());
  CHECK(o.code() == Errc::UpstreamUnavailable);
  CHECK(o.message().find("stalled") != std::string::npos);
  env.end();
}

// The progress deadline must govern the body from the moment the head has
// been parsed (regression: do_read once armed the timer *before* feeding the
// bytes, with first_byte_ms while no status was known, so a body stalling
// right after a head that arrived in one read waited first_byte_ms).
TEST_CASE("client: a body stalling right after the head fails after progress_ms, not first_byte_ms",
          "[http][client][deadline]") {
  HttpTestServer srv([](ScriptConn& c, const SeenRequest&) {
    c.send(head_only(200, {{"Content-Length", "1000"}}) + std::string(10, 'x'));  // one write
    c.stall();
  });
  ClientEnv env;
  http::ClientTimeouts t;
  t.first_byte_ms = 4000;
  t.progress_ms = 100;
  auto start = Clock::now();
  Outcome o = env.fetch(make_req(Method::Get, srv.url("/"), t));
  auto elapsed = std::chrono::duration_cast<milliseconds>(Clock::now() - start).count();
  CHECK_FALSE(o.ok());
  CHECK(o.message().find("stalled") != std::string::npos);
  INFO("elapsed " << elapsed << " ms; progress_ms 100, first_byte_ms 4000");
  CHECK(elapsed < 2000);
  env.end();
}

TEST_CASE("client: the connect deadline fails a connect that never completes", "[http][client][deadline]") {
  Blackhole hole;
  if (!hole.saturated()) {
    WARN("could not fill a listen queue on this kernel; connect deadline not exercised");
    return;
  }
  ClientEnv env;
  http::ClientTimeouts t;
  t.connect_ms = 150;
  auto start = Clock::now();
  Outcome o = env.fetch(make_req(Method::Get, "http://127.0.0.1:" + std::to_string(hole.port()) + "/", t));
  auto elapsed = std::chrono::duration_cast<milliseconds>(Clock::now() - start).count();
  CHECK_FALSE(o.ok());
  CHECK(o.code() == Errc::UpstreamUnavailable);
  CHECK(o.message().find("timed out") != std::string::npos);
  CHECK(elapsed < 5000);
  env.end();
}

TEST_CASE("client: a refused connection fails with UpstreamUnavailable, once", "[http][client][deadline]") {
  int port = pick_free_port();  // nothing listens there now
  ClientEnv env;
  Outcome o = env.fetch(make_req(Method::Get, "http://127.0.0.1:" + std::to_string(port) + "/"));
  CHECK_FALSE(o.ok());
  CHECK(o.code() == Errc::UpstreamUnavailable);
  CHECK(o.dones == 1);
  CHECK(o.heads == 0);
  env.end();
}

TEST_CASE("client: a host name goes through the resolver", "[http][client]") {
  HttpTestServer srv([](ScriptConn& c, const SeenRequest& r) { c.send(reply(200, r.header("Host").value_or(""))); });
  ClientEnv env;
  Outcome o = env.fetch(make_req(Method::Get, "http://localhost:" + std::to_string(srv.port()) + "/"));
  CHECK(o.ok());
  CHECK(o.body == "localhost:" + std::to_string(srv.port()));
  http::ClientTimeouts t;
  t.connect_ms = 3000;
  Outcome bad = env.fetch(make_req(Method::Get, "http://no-such-host.invalid:1/", t));
  CHECK_FALSE(bad.ok());
  CHECK(bad.code() == Errc::UpstreamUnavailable);
  env.end();
}

TEST_CASE("client: https without a TLS configuration fails at once", "[http][client]") {
  ClientEnv env;
  Outcome o = env.fetch(make_req(Method::Get, "https://127.0.0.1:1/"));
  CHECK_FALSE(o.ok());
  CHECK(o.code() == Errc::UpstreamUnavailable);
  CHECK(o.message().find("TLS") != std::string::npos);
  CHECK(o.dones == 1);
  env.end();
}

// ---------------------------------------------------------------------------
// File bodies (issue #15): streamed from a file region, one chunk at a time

namespace {

/// A temp file holding `bytes`, removed at scope end.
class TempFile {
 public:
  explicit TempFile(const std::string& bytes) {
    char path[] = "/tmp/outpost-client-body-XXXXXX";
    fd_ = ::mkstemp(path);
    if (fd_ < 0) FAIL("mkstemp failed");
    path_ = path;
    size_t off = 0;
    while (off < bytes.size()) {
      ssize_t n = ::write(fd_, bytes.data() + off, bytes.size() - off);
      if (n <= 0) FAIL("write failed");
      off += static_cast<size_t>(n);
    }
  }
  ~TempFile() {
    ::close(fd_);
    ::unlink(path_.c_str());
  }
  int fd() const { return fd_; }

 private:
  int fd_ = -1;
  std::string path_;
};

/// A listener the test drives by hand: nothing is read until drain() (so a
/// client writing to it fills the socket buffers and must stop).
class SilentServer {
 public:
  SilentServer() {
    lfd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int small = 16 * 1024;  // inherited by the accepted socket: a small window
    ::setsockopt(lfd_, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ::bind(lfd_, reinterpret_cast<sockaddr*>(&a), sizeof a);
    ::listen(lfd_, 4);
    socklen_t len = sizeof a;
    ::getsockname(lfd_, reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
  }
  ~SilentServer() {
    if (thread_.joinable()) thread_.join();
    if (cfd_ >= 0) ::close(cfd_);
    ::close(lfd_);
  }
  std::string url(const std::string& path) const { return "http://127.0.0.1:" + std::to_string(port_) + path; }
  /// On a thread: accepts, reads head + `body_len` bytes, answers 201.
  void drain(size_t body_len) {
    thread_ = std::thread([this, body_len] {
      cfd_ = ::accept4(lfd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (cfd_ < 0) return;
      std::string in;
      char buf[65536];
      size_t head_end = std::string::npos;
      while (true) {
        ssize_t n = ::recv(cfd_, buf, sizeof buf, 0);
        if (n <= 0) return;
        in.append(buf, static_cast<size_t>(n));
        if (head_end == std::string::npos) head_end = in.find("\r\n\r\n");
        if (head_end != std::string::npos && in.size() >= head_end + 4 + body_len) break;
      }
      body = in.substr(head_end + 4);
      const std::string r = "HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n";
      (void)!::send(cfd_, r.data(), r.size(), MSG_NOSIGNAL);
    });
  }
  void join() {
    if (thread_.joinable()) thread_.join();
  }
  std::string body;

 private:
  int lfd_ = -1, cfd_ = -1, port_ = 0;
  std::thread thread_;
};

}  // namespace

TEST_CASE("client: a file body larger than the chunk buffer arrives intact, from its offset",
          "[http][client][body]") {
  HttpTestServer srv([](ScriptConn& c, const SeenRequest& r) {
    c.send(reply(201, std::to_string(r.body.size())));
  });
  const std::string data = pattern(3 * http::kFileBodyChunk + 12345);
  TempFile f(data);
  ClientEnv env;
  auto req = make_req(Method::Patch, srv.url("/v2/x/blobs/uploads/1"));
  req.headers.set("Content-Type", "application/octet-stream");
  req.file_body = http::FileBody{f.fd(), 100, data.size() - 100};
  Outcome o;
  auto call = env.send(req, o);
  env.wait_done(o);
  CHECK(o.ok());
  CHECK(o.status == 201);
  CHECK(call->body_bytes_read() == data.size() - 100);
  CHECK(call->body_bytes_sent() == data.size() - 100);
  auto seen = srv.requests();
  REQUIRE(seen.size() == 1);
  CHECK(seen[0].header("Content-Length") == std::optional<std::string>(std::to_string(data.size() - 100)));
  CHECK(seen[0].body == data.substr(100));
  // The connection is pooled after a file body, like after any other.
  CHECK(env.client->idle_connections() == 1);
  env.end();
}

TEST_CASE("client: an empty file body sends Content-Length: 0", "[http][client][body]") {
  HttpTestServer srv([](ScriptConn& c, const SeenRequest&) { c.send(reply(202)); });
  TempFile f("");
  ClientEnv env;
  auto req = make_req(Method::Patch, srv.url("/u"));
  req.file_body = http::FileBody{f.fd(), 0, 0};
  Outcome o = env.fetch(req);
  CHECK(o.ok());
  auto seen = srv.requests();
  REQUIRE(seen.size() == 1);
  CHECK(seen[0].header("Content-Length") == std::optional<std::string>("0"));
  env.end();
}

TEST_CASE("client: a file body is read only as fast as the parent takes it (back-pressure)",
          "[http][client][body]") {
  const std::string data = pattern(32 * 1024 * 1024);
  TempFile f(data);
  SilentServer srv;
  ClientEnv env;
  auto req = make_req(Method::Patch, srv.url("/u"));
  req.file_body = http::FileBody{f.fd(), 0, data.size()};
  Outcome o;
  auto call = env.send(req, o);
  // Nobody reads: once the socket buffers are full the client must stop
  // reading the file, holding at most one chunk beyond what it sent. The
  // stall is measured over a bounded time (the thing tested is an absence).
  env.until([&] { return o.done(); }, milliseconds(800));
  CHECK_FALSE(o.done());
  CHECK(call->body_bytes_read() < data.size() / 2);
  CHECK(call->body_bytes_read() - call->body_bytes_sent() <= http::kFileBodyChunk);
  srv.drain(data.size());
  env.wait_done(o, milliseconds(30'000));
  srv.join();
  CHECK(o.ok());
  CHECK(o.status == 201);
  CHECK(srv.body.size() == data.size());
  CHECK(srv.body == data);
  env.end();
}

TEST_CASE("client: a file body that stops moving fails after progress_ms", "[http][client][body][deadline]") {
  const std::string data = pattern(16 * 1024 * 1024);
  TempFile f(data);
  SilentServer srv;
  ClientEnv env;
  http::ClientTimeouts t;
  t.progress_ms = 300;
  auto req = make_req(Method::Patch, srv.url("/u"), t);
  req.file_body = http::FileBody{f.fd(), 0, data.size()};
  auto start = std::chrono::steady_clock::now();
  Outcome o = env.fetch(req);
  auto took = std::chrono::duration_cast<milliseconds>(std::chrono::steady_clock::now() - start);
  CHECK_FALSE(o.ok());
  CHECK(o.code() == Errc::UpstreamUnavailable);
  CHECK(o.message().find("stalled") != std::string::npos);
  CHECK(took < milliseconds(5'000));
  env.end();
}

TEST_CASE("client: a file body on a stale pooled connection is sent again from its start when allowed",
          "[http][client][body][retry]") {
  HttpTestServer srv(stale_after_first());
  const std::string data = pattern(2 * http::kFileBodyChunk + 7);
  TempFile f(data);
  ClientEnv env;
  CHECK(env.fetch(make_req(Method::Get, srv.url("/warm"))).ok());
  REQUIRE(env.client->idle_connections() == 1);
  auto put = make_req(Method::Put, srv.url("/v2/x/blobs/uploads/1?digest=sha256:0"));
  put.file_body = http::FileBody{f.fd(), 0, data.size()};
  put.retry_if_stale = true;
  Outcome o = env.fetch(put);
  CHECK(o.ok());
  CHECK(o.status == 200);
  auto seen = srv.requests();
  REQUIRE(seen.size() == 3);
  CHECK(seen[2].conn == 1);
  CHECK(seen[2].method == "PUT");
  CHECK(seen[2].body == data);
  env.end();
}

TEST_CASE("client: a file body PATCH on a stale connection is not resent unless the caller allows it",
          "[http][client][body][retry]") {
  HttpTestServer srv(stale_after_first());
  const std::string data = pattern(1000);
  TempFile f(data);
  ClientEnv env;
  CHECK(env.fetch(make_req(Method::Get, srv.url("/warm"))).ok());
  auto patch = make_req(Method::Patch, srv.url("/u"));
  patch.file_body = http::FileBody{f.fd(), 0, data.size()};
  Outcome o = env.fetch(patch);
  CHECK_FALSE(o.ok());
  CHECK(o.code() == Errc::UpstreamUnavailable);
  CHECK(srv.count_path("/u") == 1);
  env.end();
}

TEST_CASE("client: a file body shorter than its length fails the call (Io) and drops the connection",
          "[http][client][body]") {
  HttpTestServer srv([](ScriptConn& c, const SeenRequest&) { c.send(reply(201)); });
  const std::string data = pattern(1000);
  TempFile f(data);
  ClientEnv env;
  auto req = make_req(Method::Patch, srv.url("/u"));
  req.file_body = http::FileBody{f.fd(), 0, 5000};
  Outcome o = env.fetch(req);
  CHECK_FALSE(o.ok());
  CHECK(o.code() == Errc::Io);
  CHECK(o.dones == 1);
  CHECK(env.client->idle_connections() == 0);
  env.end();
}

TEST_CASE("client: cancel() while a file body is being read and sent: no callback, clean close",
          "[http][client][body][cancel]") {
  const std::string data = pattern(8 * 1024 * 1024);
  TempFile f(data);
  SilentServer srv;
  ClientEnv env;
  auto req = make_req(Method::Patch, srv.url("/u"));
  req.file_body = http::FileBody{f.fd(), 0, data.size()};
  Outcome o;
  auto call = env.send(req, o);
  CHECK(env.until([&] { return call->body_bytes_sent() > 0; }));
  call->cancel();
  env.until([] { return false; }, milliseconds(100));
  CHECK(o.dones == 0);
  env.end();
}

TEST_CASE("client: an answer that comes before the file body is sent ends the call; the connection is dropped",
          "[http][client][body]") {
  // A parent refusing a big upload up front (401/413) and draining the rest
  // of the body before it closes, as Go's net/http does.
  int lfd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(::bind(lfd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
  REQUIRE(::listen(lfd, 4) == 0);
  socklen_t len = sizeof a;
  ::getsockname(lfd, reinterpret_cast<sockaddr*>(&a), &len);
  std::atomic<size_t> drained{0};
  std::thread server([lfd, &drained] {
    int fd = ::accept4(lfd, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) return;
    std::string in;
    char buf[65536];
    while (in.find("\r\n\r\n") == std::string::npos) {
      ssize_t n = ::recv(fd, buf, sizeof buf, 0);
      if (n <= 0) break;
      in.append(buf, static_cast<size_t>(n));
    }
    const std::string r = "HTTP/1.1 413 Payload Too Large\r\nContent-Length: 4\r\n\r\nbig!";
    (void)!::send(fd, r.data(), r.size(), MSG_NOSIGNAL);
    while (true) {  // drain until the client closes
      ssize_t n = ::recv(fd, buf, sizeof buf, 0);
      if (n <= 0) break;
      drained += static_cast<size_t>(n);
    }
    ::close(fd);
  });
  const std::string data = pattern(64 * 1024 * 1024);
  TempFile f(data);
  {
    ClientEnv env;
    auto req = make_req(Method::Patch, "http://127.0.0.1:" + std::to_string(ntohs(a.sin_port)) + "/u");
    req.file_body = http::FileBody{f.fd(), 0, data.size()};
    Outcome o;
    auto call = env.send(req, o);
    env.wait_done(o);
    CHECK(o.ok());
    CHECK(o.status == 413);
    CHECK(o.body == "big!");
    CHECK(call->body_bytes_sent() < data.size());
    CHECK(env.client->idle_connections() == 0);
    env.end();
  }
  server.join();
  ::close(lfd);
}
