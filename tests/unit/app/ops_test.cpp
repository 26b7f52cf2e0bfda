// Pieces of the operator endpoints (src/app/ops.cpp, src/app/sync_cli.cpp)
// that need no running server: which peers may POST /outpost/sync, and
// which address `outpost sync now` talks to.
#include <catch2/catch.hpp>

#include "app/config.hpp"
#include "app/ops.hpp"
#include "app/sync_cli.hpp"

using namespace outpost;

TEST_CASE("ops: only loopback peers may open a sync window", "[app][sync]") {
  using app::is_loopback_peer;
  CHECK(is_loopback_peer("127.0.0.1:40000"));
  CHECK(is_loopback_peer("127.8.9.10:1"));
  CHECK(is_loopback_peer("[::1]:5000"));
  CHECK(is_loopback_peer("[::ffff:127.0.0.1]:5000"));  // IPv4 client on a dual-stack socket
  CHECK_FALSE(is_loopback_peer("10.0.0.1:5000"));
  CHECK_FALSE(is_loopback_peer("128.0.0.1:5000"));
  CHECK_FALSE(is_loopback_peer("[::ffff:10.0.0.1]:5000"));
  CHECK_FALSE(is_loopback_peer("[fe80::1]:5000"));
  CHECK_FALSE(is_loopback_peer("[::1"));
  CHECK_FALSE(is_loopback_peer(""));
  CHECK_FALSE(is_loopback_peer("?:0"));
}

TEST_CASE("sync now: talks to the first listen address, loopback for a wildcard", "[app][sync]") {
  auto url_for = [](const char* listen) {
    app::Config c;
    c.server.listen = {listen, "10.1.2.3:6000"};
    return app::admin_base_url(c);
  };
  CHECK(url_for("127.0.0.1:5000") == "http://127.0.0.1:5000");
  CHECK(url_for("0.0.0.0:5001") == "http://127.0.0.1:5001");
  CHECK(url_for("192.168.1.7:5002") == "http://192.168.1.7:5002");
  CHECK(url_for("[::]:5003") == "http://[::1]:5003");
  CHECK(url_for("[::1]:5004") == "http://[::1]:5004");
}
