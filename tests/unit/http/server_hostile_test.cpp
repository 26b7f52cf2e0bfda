// Clients that try to exhaust the server: silent sockets holding connection
// slots, uploads trickling bytes, pipelined requests from a client that never
// reads its answers. Each test proves the server sheds or bounds them and
// that a well-behaved client is still served.
#include <catch2/catch.hpp>
#include <memory>
#include <string>
#include <thread>
#include <vector>

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
/// The request is answered and the connection kept: it is usable.
bool served(TestClient& c, const std::string& path) {
  if (!c.send(get_request(path))) return false;
  auto r = c.read_response();
  return r && r->status == 200 && r->body == "GET " + path;
}
}  // namespace

// ---------------------------------------------------------------------------
// silent connections

TEST_CASE("server_hostile: a connection that never sends a byte is closed after header_timeout",
          "[http][server_hostile]") {
  ServerFixture fx(limits_with(/*header*/ 300, /*idle*/ 60'000), echo_path);
  TestClient c(fx.port);
  auto t0 = Clock::now();
  CHECK(c.read_to_eof() == Read::Eof);
  auto waited = std::chrono::duration_cast<milliseconds>(Clock::now() - t0);
  CHECK(c.received() == 0);  // silently: there was no request to answer
  CHECK(waited.count() >= 150);
  CHECK(waited.count() < 5000);
  CHECK(eventually(fx, [&] { return fx.connection_count() == 0; }));
}

TEST_CASE("server_hostile: the first head is due header_timeout after the accept, not after its first byte",
          "[http][server_hostile]") {
  ServerFixture fx(limits_with(/*header*/ 1000, /*idle*/ 60'000), echo_path);
  TestClient c(fx.port);
  auto t0 = Clock::now();
  // The client under test: silent for most of the allowance, then a head
  // that never ends. Due at 1000 ms from the accept, not at 800 + 1000.
  std::this_thread::sleep_for(milliseconds(800));
  REQUIRE(c.send("GET /late HTTP/1.1\r\nHost: t\r\n"));
  auto r = c.read_response();
  auto waited = std::chrono::duration_cast<milliseconds>(Clock::now() - t0);
  REQUIRE(r);
  CHECK(r->status == 408);
  CHECK(waited.count() < 1500);
}

TEST_CASE("server_hostile: at max_connections the longest-quiet connection is shed for a newcomer",
          "[http][server_hostile]") {
  http::ServerLimits lim = limits_with();
  lim.max_connections = 3;
  ServerFixture fx(lim, echo_path);
  TestClient silent1(fx.port);
  REQUIRE(eventually(fx, [&] { return fx.connection_count() == 1; }));
  TestClient silent2(fx.port);
  REQUIRE(eventually(fx, [&] { return fx.connection_count() == 2; }));
  TestClient used(fx.port);
  REQUIRE(served(used, "/used"));  // quiet again, but since after the two silent ones

  TestClient fresh(fx.port);
  CHECK(served(fresh, "/fresh"));
  CHECK(silent1.read_to_eof() == Read::Eof);  // the longest quiet one went, without a word
  CHECK(silent1.received() == 0);
  CHECK(served(used, "/used-again"));
  CHECK(served(silent2, "/late-starter"));
  auto st = fx.stats();
  CHECK(st.connections_shed == 1);
  CHECK(st.connections_rejected == 0);
  CHECK(fx.connection_count() == 3);
}

TEST_CASE("server_hostile: a connection with a request in progress is never shed", "[http][server_hostile]") {
  http::ServerLimits lim = limits_with();
  lim.max_connections = 2;
  std::vector<ExchangePtr> held;
  ServerFixture fx(lim, [&held](ServerFixture& f, const ExchangePtr& ex) {
    if (ex->req().path == "/hold") f.update([&] { held.push_back(ex); });
    else echo_path(f, ex);
  });
  TestClient busy(fx.port);
  REQUIRE(busy.send(get_request("/hold")));
  REQUIRE(fx.wait([&] { return held.size() == 1; }));
  TestClient silent(fx.port);
  REQUIRE(eventually(fx, [&] { return fx.connection_count() == 2; }));

  TestClient fresh(fx.port);  // sheds `silent`, not `busy`
  CHECK(served(fresh, "/fresh"));
  CHECK(silent.read_to_eof() == Read::Eof);

  TestClient third(fx.port);  // `fresh` is quiet now: it goes, `busy` stays
  CHECK(served(third, "/third"));
  CHECK(fresh.read_to_eof() == Read::Eof);

  fx.call([&] { held[0]->respond(200, "held"); });
  auto r = busy.read_response();
  REQUIRE(r);
  CHECK(r->body == "held");
  CHECK(fx.stats().connections_shed == 2);
}
