// RFC 9112 request rules the server enforces before a handler sees a request
// (Host, request-target forms, field-name syntax, chunk framing), how it
// turns away a TLS client on a plain-HTTP port, and how an error answered
// while a body is still arriving ends the connection (lingering, never an
// abrupt close that could reset the answer away).
#include <catch2/catch.hpp>
#include <initializer_list>
#include <memory>
#include <string>

#include "http/exchange.hpp"
#include "http/server.hpp"
#include "server_test_helpers.hpp"
#include "support/loop_fixture.hpp"

using namespace outpost;
using namespace outpost::test;
using http::ExchangePtr;
using std::chrono::milliseconds;
using Read = TestClient::Read;

namespace {

/// Answers "<path>|<query>|<Host>" so a test sees what routing would see.
void echo_target(ServerFixture&, const ExchangePtr& ex) {
  const auto& r = ex->req();
  ex->respond(200, r.path + "|" + r.query + "|" + std::string(r.headers.get("Host").value_or("-")), "text/plain");
}

/// Sends `request` on a fresh connection; the one response, then EOF expected
/// when it is an error.
std::optional<ClientResponse> one(ServerFixture& fx, const std::string& request) {
  TestClient c(fx.port);
  if (!c.send(request)) return std::nullopt;
  auto r = c.read_response();
  if (r && r->status >= 400) CHECK(c.read_to_eof() == Read::Eof);
  return r;
}

std::string shown(std::string s) {
  for (size_t i; (i = s.find("\r\n")) != std::string::npos;) s.replace(i, 2, "\\r\\n");
  return s;
}

/// Each request gets a 400 with an OCI error body and a close; no handler runs.
void each_gets_400(ServerFixture& fx, std::initializer_list<std::string> requests) {
  for (const std::string& bad : requests) {
    INFO(shown(bad));
    auto r = one(fx, bad);
    REQUIRE(r);
    CHECK(r->status == 400);
    CHECK(r->closes());
    CHECK(r->body.find("BAD_REQUEST") != std::string::npos);
  }
  CHECK(fx.counted("requests") == 0);
}

}  // namespace

// ---------------------------------------------------------------------------
// request-target and Host (RFC 9112 §3.2)

TEST_CASE("server_rfc: an absolute-form target is routed on its path, its authority replaces Host",
          "[http][server_rfc]") {
  ServerFixture fx(limits_with(), echo_target);
  auto r = one(fx, "GET http://registry.test:5000/v2/x/tags/list?n=2 HTTP/1.1\r\nHost: other\r\n\r\n");
  REQUIRE(r);
  CHECK(r->status == 200);
  CHECK(r->body == "/v2/x/tags/list|n=2|registry.test:5000");

  r = one(fx, "GET HTTPS://[::1]:8443 HTTP/1.1\r\nHost: [::1]:8443\r\n\r\n");  // no path: "/"
  REQUIRE(r);
  CHECK(r->status == 200);
  CHECK(r->body == "/||[::1]:8443");

  // The default port is left out, as a client would write Host.
  r = one(fx, "GET http://registry.test:80/v2/ HTTP/1.1\r\nHost: registry.test\r\n\r\n");
  REQUIRE(r);
  CHECK(r->body == "/v2/||registry.test");
  CHECK(fx.counted("requests") == 3);
}

TEST_CASE("server_rfc: a target that is neither a path nor an http(s) URL gets 400", "[http][server_rfc]") {
  ServerFixture fx(limits_with(), echo_target);
  each_gets_400(fx, {"GET ftp://x/v2/ HTTP/1.1\r\nHost: x\r\n\r\n",
                     "GET http://user@x/v2/ HTTP/1.1\r\nHost: x\r\n\r\n",
                     "GET http:///v2/ HTTP/1.1\r\nHost: x\r\n\r\n"});
}

TEST_CASE("server_rfc: HTTP/1.1 needs exactly one Host; HTTP/1.0 at most one", "[http][server_rfc]") {
  ServerFixture fx(limits_with(), echo_target);
  SECTION("none in HTTP/1.1") {
    auto r = one(fx, "GET /v2/ HTTP/1.1\r\nAccept: */*\r\n\r\n");
    REQUIRE(r);
    CHECK(r->status == 400);
    CHECK(r->body.find("Host") != std::string::npos);
    CHECK(fx.counted("requests") == 0);
  }
  SECTION("two in HTTP/1.1, even when equal") {
    auto r = one(fx, "GET /v2/ HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n");
    REQUIRE(r);
    CHECK(r->status == 400);
    CHECK(fx.counted("requests") == 0);
  }
  SECTION("two in HTTP/1.0") {
    auto r = one(fx, "GET /v2/ HTTP/1.0\r\nHost: a\r\nhost: b\r\n\r\n");
    REQUIRE(r);
    CHECK(r->status == 400);
    CHECK(fx.counted("requests") == 0);
  }
  SECTION("none in HTTP/1.0 is fine") {
    auto r = one(fx, "GET /v2/ HTTP/1.0\r\n\r\n");
    REQUIRE(r);
    CHECK(r->status == 200);
    CHECK(r->body == "/v2/||-");
  }
  SECTION("a request with a body and no Host: 400, and the body is not read as a request") {
    TestClient c(fx.port);
    REQUIRE(c.send("PUT /x HTTP/1.1\r\nContent-Length: 41\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"));
    auto r = c.read_response();
    REQUIRE(r);
    CHECK(r->status == 400);
    CHECK(c.read_to_eof() == Read::Eof);
    CHECK(c.buffered().empty());
    CHECK(fx.counted("requests") == 0);
  }
}

// ---------------------------------------------------------------------------
// field syntax (RFC 9112 §5.1) and chunk framing (§7.1)

TEST_CASE("server_rfc: a field value's surrounding whitespace is not part of it", "[http][server_rfc]") {
  ServerFixture fx(limits_with(), [](ServerFixture&, const http::ExchangePtr& ex) {
    ex->respond(200, "[" + std::string(ex->req().headers.get("Content-Range").value_or("?")) + "]");
  });
  auto r = one(fx, "GET /v2/ HTTP/1.1\r\nHost: x\r\nContent-Range:  \t0-2 \t \r\n\r\n");
  REQUIRE(r);
  CHECK(r->body == "[0-2]");
}

TEST_CASE("server_rfc: unknown methods and transfer codings get 501, other HTTP versions 505",
          "[http][server_rfc]") {
  ServerFixture fx(limits_with(), echo_target);
  struct Case {
    std::string request;
    int status;
  };
  const Case cases[] = {
      {"FOO /v2/ HTTP/1.1\r\nHost: x\r\n\r\n", 501},
      // The coded bytes would have been stored as the blob.
      {"PATCH /v2/a/blobs/uploads/1 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", 501},
      {"GET /v2/ HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: x\r\n\r\n", 501},
      {"GET /v2/ HTTP/2.0\r\nHost: x\r\n\r\n", 505},
  };
  for (const auto& k : cases) {
    INFO(shown(k.request));
    auto r = one(fx, k.request);
    REQUIRE(r);
    CHECK(r->status == k.status);
    CHECK(r->closes());
  }
  CHECK(fx.counted("requests") == 0);  // none reached a handler
  // chunked, in any case and with spaces around it, is fine.
  auto r = one(fx, "POST /v2/ HTTP/1.1\r\nHost: x\r\nTransfer-Encoding:  Chunked \r\n\r\n0\r\n\r\n");
  REQUIRE(r);
  CHECK(r->status == 200);
}

TEST_CASE("server_rfc: a handler's 405 carries Allow", "[http][server_rfc]") {
  ServerFixture fx(limits_with(), [](ServerFixture&, const http::ExchangePtr& ex) {
    ex->respond_error(Error(Errc::Unsupported, "this registry is read-only"));
  });
  TestClient c(fx.port);
  REQUIRE(c.send("PUT /v2/a/manifests/v1 HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"));
  auto r = c.read_response();
  REQUIRE(r);
  CHECK(r->status == 405);
  CHECK(r->header("Allow") == "GET, HEAD");
}

TEST_CASE("server_rfc: whitespace between a field name and its colon gets 400", "[http][server_rfc]") {
  ServerFixture fx(limits_with(), echo_target);
  each_gets_400(fx, {"GET /v2/ HTTP/1.1\r\nHost : x\r\n\r\n",
                     "GET /v2/ HTTP/1.1\r\nHost: x\r\nX-Thing\t: y\r\n\r\n",
                     "GET /v2/ HTTP/1.1\r\nHost: x\r\nContent-Length : 0\r\n\r\n",
                     "GET /v2/ HTTP/1.1\r\nHost: x\r\nX Two: y\r\n\r\n"});
}

TEST_CASE("server_rfc: a chunk longer than its size gets 400 at once, and the body reader hears a bad body",
          "[http][server_rfc]") {
  BodyRecord s;
  // A long body_timeout: the answer must not wait for it.
  ServerFixture fx(limits_with(10'000, 60'000, /*body*/ 30'000), record_body(s));
  // "3\r\nabcdef\r\n": a lenient parser skips "de" and reads "f" as the next
  // chunk's size, then waits for 15 bytes that never come.
  TestClient c(fx.port);
  auto t0 = Clock::now();
  REQUIRE(c.send("PATCH /up HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcdef\r\n0\r\n\r\n"));
  auto r = c.read_response(milliseconds(5000));
  auto waited = std::chrono::duration_cast<milliseconds>(Clock::now() - t0);
  REQUIRE(r);
  CHECK(r->status == 400);
  CHECK(r->closes());
  CHECK(r->body.find("BAD_REQUEST") != std::string::npos);
  CHECK(waited.count() < 5000);
  CHECK(c.read_to_eof() == Read::Eof);
  REQUIRE(fx.wait([&] { return s.ended; }));
  std::lock_guard<std::mutex> g(fx.mu);
  CHECK(s.code == Errc::BadRequest);
  CHECK(s.got == "abc");
}

TEST_CASE("server_rfc: a body reader that answers a malformed body itself is not answered twice",
          "[http][server_rfc]") {
  ServerFixture fx(limits_with(), [](ServerFixture&, const ExchangePtr& ex) {
    ex->read_body([](std::string_view) {},
                  [ex](Status st) { ex->respond(st.ok() ? 201 : 422, st.ok() ? "ok" : "bad body"); });
  });
  TestClient c(fx.port);
  REQUIRE(c.send("PUT /up HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nxyz\r\n"));
  auto r = c.read_response();
  REQUIRE(r);
  CHECK(r->status == 422);
  CHECK(r->body == "bad body");
  CHECK(c.read_to_eof() == Read::Eof);
  CHECK(c.buffered().empty());  // no second (400) answer behind it
}

// ---------------------------------------------------------------------------
// TLS on a plain-HTTP listener

TEST_CASE("server_rfc: a TLS ClientHello is closed without an HTTP answer", "[http][server_rfc]") {
  ServerFixture fx(limits_with(), echo_target);
  // The first bytes of a TLS 1.2/1.3 ClientHello record.
  const std::string hello("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 11);
  for (int i = 0; i < 2; ++i) {
    TestClient c(fx.port);
    REQUIRE(c.send(hello + std::string(64, '\x5a')));
    CHECK(c.read_to_eof() == Read::Eof);
    CHECK(c.received() == 0);  // an HTTP 400 would be garbage to a TLS client
  }
  CHECK(fx.stats().tls_on_plain == 2);
  // Plain HTTP still works.
  auto r = one(fx, get_request("/v2/"));
  REQUIRE(r);
  CHECK(r->status == 200);
}

// ---------------------------------------------------------------------------
// answering while the body is still arriving

TEST_CASE("server_rfc: a body reader answering a body timeout itself leaves the connection lingering",
          "[http][server_rfc][regress]") {
  // Regression: on_timer closed at once when the body reader's own answer had
  // already set the connection lingering, so late body bytes could meet a RST.
  ServerFixture fx(limits_with(10'000, 60'000, /*body*/ 300), [](ServerFixture&, const ExchangePtr& ex) {
    ex->read_body([](std::string_view) {},
                  [ex](Status st) { ex->respond(st.ok() ? 201 : 499, st.ok() ? "ok" : st.error().message()); });
  });
  TestClient c(fx.port);
  REQUIRE(c.send("PUT /stall HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\n0123456789"));
  auto r = c.read_response();
  REQUIRE(r);
  CHECK(r->status == 499);
  CHECK(r->body.find("no request body data") != std::string::npos);
  // Lingering: half-closed and still draining (for up to 2 s), not gone.
  CHECK(fx.connection_count() == 1);
  CHECK(c.send(std::string(90, 'x')));  // the rest of the body, late: drained, not reset
  CHECK(c.read_to_eof() == Read::Eof);
  c.close();
  CHECK(eventually(fx, [&] { return fx.connection_count() == 0; }));
}
