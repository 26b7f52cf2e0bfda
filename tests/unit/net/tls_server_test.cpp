// net::TlsServerConfig / TlsServerContext: loading and checking the PEM
// files, reloading them, and a server session talking to the client
// TlsSession over a socketpair (TLS 1.2, an ECDHE AEAD suite, bytes both ways).
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <string>

#include "net/tls.hpp"
#include "net/tls_server.hpp"

using namespace outpost;
using namespace outpost::net;

namespace {
const std::string kData = OUTPOST_TLS_TEST_DATA;

TlsServerOptions opts(const std::string& cert, const std::string& key) {
  return TlsServerOptions{kData + "/" + cert, kData + "/" + key, "tls.cert", "tls.key"};
}

/// Steps both ends of a non-blocking pair until `step` says done, bounded by a deadline.
template <typename F>
bool drive(F step) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (std::chrono::steady_clock::now() < deadline) {
    if (step()) return true;
    poll(nullptr, 0, 1);
  }
  return false;
}
}  // namespace

TEST_CASE("tls server config loads a certificate chain and key and names them in errors") {
  auto good = TlsServerConfig::load(opts("server.pem", "server.key"));
  REQUIRE(good);
  CHECK((*good)->summary().find("serial=10:01") != std::string::npos);
  CHECK((*good)->summary().find("CN=localhost") != std::string::npos);
  CHECK((*good)->warning().empty());

  auto missing = TlsServerConfig::load(opts("nope.pem", "server.key"));
  REQUIRE_FALSE(missing);
  CHECK(missing.error().message().find("tls.cert: cannot read") != std::string::npos);
  CHECK(missing.error().message().find("nope.pem") != std::string::npos);

  auto not_pem = TlsServerConfig::load(opts("server.key", "server.key"));
  REQUIRE_FALSE(not_pem);
  CHECK(not_pem.error().message().find("tls.cert") != std::string::npos);

  auto bad_key = TlsServerConfig::load(opts("server.pem", "ca.pem"));
  REQUIRE_FALSE(bad_key);
  CHECK(bad_key.error().message().find("tls.key") != std::string::npos);

  auto mismatch = TlsServerConfig::load(opts("server.pem", "other.key"));
  REQUIRE_FALSE(mismatch);
  CHECK(mismatch.error().message().find("tls.key") != std::string::npos);
  CHECK(mismatch.error().message().find("does not match") != std::string::npos);

  auto unset = TlsServerConfig::load(TlsServerOptions{"", kData + "/server.key", "tls.cert", "tls.key"});
  REQUIRE_FALSE(unset);
  CHECK(unset.error().message() == "tls.cert is not set");
}

TEST_CASE("an expired certificate loads with a warning") {
  auto expired = TlsServerConfig::load(opts("expired.pem", "server.key"));
  REQUIRE(expired);
  CHECK((*expired)->warning().find("expired") != std::string::npos);
  CHECK((*expired)->summary().find("serial=10:02") != std::string::npos);
}

TEST_CASE("a failed reload keeps the certificate in use; a good one replaces it for new sessions") {
  char dir[] = "/tmp/outpost-tls-XXXXXX";
  REQUIRE(mkdtemp(dir));
  const std::string cert = std::string(dir) + "/cert.pem", key = std::string(dir) + "/key.pem";
  auto copy = [](const std::string& from, const std::string& to) {
    std::ifstream in(from, std::ios::binary);
    std::ofstream out(to, std::ios::binary | std::ios::trunc);
    out << in.rdbuf();
  };
  copy(kData + "/server.pem", cert);
  copy(kData + "/server.key", key);
  auto ctx = TlsServerContext::create(TlsServerOptions{cert, key, "tls.cert", "tls.key"});
  REQUIRE(ctx);
  auto first = (*ctx)->current();

  std::ofstream(cert, std::ios::trunc) << "not a certificate\n";
  Status st = (*ctx)->reload_certificates();
  REQUIRE_FALSE(st);
  CHECK(st.error().message().find("tls.cert") != std::string::npos);
  CHECK((*ctx)->current() == first);

  copy(kData + "/expired.pem", cert);
  REQUIRE((*ctx)->reload_certificates());
  CHECK((*ctx)->current() != first);
  CHECK((*ctx)->current()->summary().find("serial=10:02") != std::string::npos);
  CHECK(first->summary().find("serial=10:01") != std::string::npos);  // still alive for its holders
  std::remove(cert.c_str());
  std::remove(key.c_str());
  rmdir(dir);
}

TEST_CASE("server and client sessions handshake TLS 1.2 with an ECDHE AEAD suite and carry bytes") {
  int sv[2];
  REQUIRE(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) == 0);
  auto scfg = TlsServerConfig::load(opts("server.pem", "server.key"));
  REQUIRE(scfg);
  TlsClientOptions co;
  co.ca_file = kData + "/ca.pem";
  auto ccfg = TlsClientConfig::create(co);
  REQUIRE(ccfg);
  {
    TlsSession server(*scfg, sv[0]);
    TlsSession client(**ccfg, sv[1], "localhost");
    REQUIRE(server.setup_ok());
    REQUIRE(client.setup_ok());
    bool s_done = false, c_done = false;
    REQUIRE(drive([&] {
      if (!c_done) {
        TlsIo io = client.handshake();
        REQUIRE(io != TlsIo::Failed);
        c_done = io == TlsIo::Done;
      }
      if (!s_done) {
        TlsIo io = server.handshake();
        REQUIRE(io != TlsIo::Failed);
        s_done = io == TlsIo::Done;
      }
      return s_done && c_done;
    }));

    const std::string msg = "GET /v2/ HTTP/1.1\r\nHost: localhost\r\n\r\n";
    size_t w = 0;
    REQUIRE(client.write(msg.data(), msg.size(), &w) == TlsIo::Done);
    std::string got;
    REQUIRE(drive([&] {
      char buf[256];
      size_t n = 0;
      if (server.read(buf, sizeof buf, &n) == TlsIo::Done) got.append(buf, n);
      return got.size() >= msg.size();
    }));
    CHECK(got == msg);

    // The server's side of a big answer, through records and WantWrite.
    std::string big(200 * 1024, 'x');
    for (size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>('a' + i % 26);
    size_t sent = 0;
    std::string back;
    REQUIRE(drive([&] {
      if (sent < big.size()) {
        size_t n = 0;
        TlsIo io = server.write(big.data() + sent, std::min<size_t>(16384, big.size() - sent), &n);
        REQUIRE((io == TlsIo::Done || io == TlsIo::WantWrite));
        sent += n;
      }
      char buf[65536];
      size_t n = 0;
      while (client.read(buf, sizeof buf, &n) == TlsIo::Done) back.append(buf, n);
      return back.size() == big.size();
    }));
    CHECK(back == big);
  }
  close(sv[0]);
  close(sv[1]);
}

TEST_CASE("a client checking for another name refuses the certificate") {
  int sv[2];
  REQUIRE(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) == 0);
  auto scfg = TlsServerConfig::load(opts("server.pem", "server.key"));
  REQUIRE(scfg);
  TlsClientOptions co;
  co.ca_file = kData + "/ca.pem";
  auto ccfg = TlsClientConfig::create(co);
  REQUIRE(ccfg);
  {
    TlsSession server(*scfg, sv[0]);
    TlsSession client(**ccfg, sv[1], "registry.elsewhere");  // not in the certificate
    TlsIo s = TlsIo::WantRead, c = TlsIo::WantRead;
    REQUIRE(drive([&] {
      if (c != TlsIo::Failed && c != TlsIo::Done) c = client.handshake();
      if (s != TlsIo::Failed && s != TlsIo::Done) s = server.handshake();
      return c == TlsIo::Failed;
    }));
    CHECK(client.last_error().find("CN") != std::string::npos);
  }
  close(sv[0]);
  close(sv[1]);
}
