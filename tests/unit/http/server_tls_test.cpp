// ServerConn over TLS (issue #16): an HTTPS listener on the real loop, a
// blocking client TlsSession. Pipelined requests and file bodies (FilePump,
// no sendfile) arrive byte-exact; a client leaving mid-file frees the file.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include "net/tls.hpp"
#include "net/tls_server.hpp"
#include "server_test_helpers.hpp"

using namespace outpost;
using namespace outpost::test;
using outpost::http::ExchangePtr;

namespace {
const std::string kData = OUTPOST_TLS_TEST_DATA;

void warm_thread_pool() {
  uv_loop_t loop;
  uv_loop_init(&loop);
  uv_work_t w;
  uv_queue_work(&loop, &w, [](uv_work_t*) {}, [](uv_work_t*, int) {});
  uv_run(&loop, UV_RUN_DEFAULT);
  uv_loop_close(&loop);
}

/// A blocking TLS client on 127.0.0.1:port trusting the test CA.
struct TlsClient {
  int fd = -1;
  std::unique_ptr<net::TlsClientConfig> cfg;
  std::unique_ptr<net::TlsSession> s;
  std::string in;

  explicit TlsClient(int port) {
    fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    timeval tv{10, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<uint16_t>(port));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
    net::TlsClientOptions o;
    o.ca_file = kData + "/ca.pem";
    auto c = net::TlsClientConfig::create(o);
    REQUIRE(c);
    cfg = std::move(*c);
    s = std::make_unique<net::TlsSession>(*cfg, fd, "localhost");
    REQUIRE(s->handshake() == net::TlsIo::Done);
  }
  ~TlsClient() {
    s.reset();
    if (fd >= 0) ::close(fd);
  }
  void send(const std::string& b) {
    size_t w = 0;
    REQUIRE(s->write(b.data(), b.size(), &w) == net::TlsIo::Done);
  }
  bool fill() {
    char buf[65536];
    size_t n = 0;
    if (s->read(buf, sizeof buf, &n) != net::TlsIo::Done) return false;
    in.append(buf, n);
    return true;
  }
  /// One response: status and body (Content-Length framing).
  std::pair<int, std::string> response() {
    size_t end;
    while ((end = in.find("\r\n\r\n")) == std::string::npos)
      if (!fill()) return {0, ""};
    std::string head = in.substr(0, end);
    size_t cl = head.find("Content-Length: ");
    size_t len = cl == std::string::npos ? 0 : std::stoull(head.substr(cl + 16));
    while (in.size() < end + 4 + len)
      if (!fill()) return {0, ""};
    std::string body = in.substr(end + 4, len);
    in.erase(0, end + 4 + len);
    return {std::stoi(head.substr(9, 3)), body};
  }
};
}  // namespace

TEST_CASE("server_tls: pipelined requests and file bodies over TLS arrive byte-exact", "[http][tls]") {
  char path[] = "/tmp/outpost-tls-test-XXXXXX";
  int wfd = mkstemp(path);
  REQUIRE(wfd >= 0);
  const uint64_t kSize = 3 * 1024 * 1024 + 4321;  // many pump chunks, a short last one
  const std::string content = pattern(77, kSize);
  REQUIRE(::write(wfd, content.data(), content.size()) == static_cast<ssize_t>(kSize));
  ::close(wfd);
  const std::string file = path;
  warm_thread_pool();  // its first use opens descriptors that stay for the process
  const int fds_before = open_fd_count();
  {
    ServerFixture fx(limits_with(), [file, kSize](ServerFixture&, const ExchangePtr& ex) {
      if (ex->req().path == "/small") {
        ex->respond(200, "small answer");
        return;
      }
      uint64_t off = std::stoull(ex->req().query_param("off").value_or("0"));
      uint64_t len = std::stoull(ex->req().query_param("len").value_or(std::to_string(kSize)));
      int fd = ::open(file.c_str(), O_RDONLY | O_CLOEXEC);
      ex->respond_file(200, fd, off, len);
    });
    auto ctx = net::TlsServerContext::create({kData + "/server.pem", kData + "/server.key", "tls.cert", "tls.key"});
    REQUIRE(ctx);
    int port = 0;
    for (int attempt = 0; attempt < 20 && !port; ++attempt) {
      int p = pick_free_port();
      if (fx.call([&] { return fx.server().listen("127.0.0.1:" + std::to_string(p), *ctx).ok(); })) port = p;
    }
    REQUIRE(port != 0);

    SECTION("file, small and a range pipelined in one write") {
      TlsClient c(port);
      c.send(get_request("/f") + get_request("/small") + get_request("/f?off=65530&len=70000"));
      auto r1 = c.response();
      CHECK(r1.first == 200);
      CHECK(r1.second.size() == kSize);
      CHECK(first_mismatch(r1.second, content) == std::string::npos);
      auto r2 = c.response();
      CHECK(r2.first == 200);
      CHECK(r2.second == "small answer");
      auto r3 = c.response();
      CHECK(first_mismatch(r3.second, content.substr(65530, 70000)) == std::string::npos);
      CHECK(fx.stats().tls_handshakes == 1);
    }
    SECTION("a client leaving mid-file: the connection and the file are freed") {
      {
        TlsClient c(port);
        c.send(get_request("/f"));
        REQUIRE(c.fill());
      }
      CHECK(eventually(fx, [&] { return fx.connection_count() == 0; }));
    }
  }
  CHECK(open_fd_count() == fds_before);  // every pumped file closed
  ::unlink(path);
}
