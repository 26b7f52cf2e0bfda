// Fuzz target: request heads and bodies, as a client sends them, through the
// real connection code (llhttp wrapper and state machine in
// src/http/server_conn.cpp, Exchange, Server) and the registry's route table
// (api::register_routes + http::Router::match). No network: the input is
// written into one end of a socketpair whose other end is handed to
// Server::on_accept_, the way the listener hands over an accepted socket.
//
// The handler stands in for the API handlers (which need a store): it matches
// the route, checks the route parameters and query like the handlers do, and
// exercises each way a handler treats a body: PUT answers before reading it
// (the connection lingers), PATCH reads it with pause/resume on every chunk,
// the others read it whole and answer at its end.
//
// Properties: no crash, leak or UB; after the client half-closes, the server
// closes the connection (no hang); everything the server wrote is a sequence
// of well-formed HTTP/1.1 responses (parsed with llhttp in response mode).
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <llhttp.h>

#include "api/api.hpp"
#include "base/digest.hpp"
#include "base/log.hpp"
#include "base/reference.hpp"
#include "fuzz_check.hpp"
#include "http/range.hpp"
#include "http/router.hpp"
#include "http/server.hpp"

using namespace outpost;

namespace {

/// The loop, server and routes live for the whole process; each input gets a
/// fresh connection.
struct World {
  uv_loop_t loop;
  http::Router router;
  api::ApiContext api;  ///< never used: matched handlers are not called
  std::unique_ptr<http::Server> server;
  uv_check_t resumer;   ///< resumes paused bodies on the next loop turn
  std::vector<http::ExchangePtr> paused;
  std::deque<http::Method> dispatched;  ///< methods answered, in order (HEAD has no body)
};
World* g = nullptr;

void check_params(const http::ExchangePtr& ex) {
  const auto& p = ex->params();
  if (valid_repository_name(p.name)) FUZZ_CHECK(p.name.find("..") == std::string::npos);
  if (looks_like_digest(p.reference)) (void)Digest::parse(p.reference);
  else (void)valid_tag(p.reference);
  const http::Request& r = ex->req();
  for (const char* q : {"n", "last", "digest", "mount", "from", "ns"}) (void)r.query_param(q);
  auto rr = http::evaluate_range(r.headers.get("Range"), 4096);
  if (rr.verdict == http::RangeVerdict::Partial) FUZZ_CHECK(rr.range.offset + rr.range.length <= 4096);
}

void handle(const http::ExchangePtr& ex) {
  g->dispatched.push_back(ex->req().method);
  auto m = g->router.match(ex->req().method, ex->req().path);
  if (!m.handler) {
    // The App's answer (404, or 405 with Allow), whose detail quotes the path.
    if (m.status == 405) ex->add_header("Allow", m.allow);
    return ex->respond_error(m.status == 405 ? Errc::MethodNotAllowed : Errc::NotFound, "on " + ex->req().path);
  }
  ex->params() = std::move(m.params);
  check_params(ex);
  auto bytes = std::make_shared<uint64_t>(0);
  switch (ex->req().method) {
    case http::Method::Put:
      ex->respond_error(Errc::Unsupported, "answered before the body of " + ex->params().reference);
      return;
    case http::Method::Patch: {
      // The callbacks hold the exchange weakly: a strong capture is a cycle
      // (the Exchange stores its own callbacks).
      std::weak_ptr<http::Exchange> weak = ex;
      ex->read_body(
          [weak, bytes](std::string_view c) {
            *bytes += c.size();
            if (auto e = weak.lock()) {
              e->pause_body();
              g->paused.push_back(e);
            }
          },
          [weak, bytes](Status st) {
            auto e = weak.lock();
            if (!e) return;
            if (!st) return e->respond_error(st.error());
            // Like the upload handler: a refusal that quotes the client's
            // header, answered from a callback (outside the dispatch).
            if (auto cr = e->req().headers.get("Content-Range"); cr && !http::parse_content_range(*cr))
              return e->respond_error(Errc::RangeInvalid, "malformed Content-Range '" + std::string(*cr) + "'");
            e->respond(202, "patched " + std::to_string(*bytes), "text/plain");
          });
      return;
    }
    default: {
      std::weak_ptr<http::Exchange> weak = ex;
      ex->read_body([bytes](std::string_view c) { *bytes += c.size(); },
                    [weak, bytes](Status st) {
                      auto e = weak.lock();
                      if (!e) return;
                      if (!st) return e->respond_error(st.error());
                      e->respond(200, "read " + std::to_string(*bytes), "text/plain");
                    });
      return;
    }
  }
}

void init() {
  g = new World;
  uv_loop_init(&g->loop);
  log::set_level(log::Level::Error);
  api::register_routes(g->router, g->api);
  http::ServerLimits lim;
  lim.max_header_bytes = 4096;  // small, so that inputs reach the 431 path
  g->server = std::make_unique<http::Server>(&g->loop, lim, handle);
  g->server->add_default_header("Docker-Distribution-API-Version", "registry/2.0");
  uv_check_init(&g->loop, &g->resumer);
  uv_check_start(&g->resumer, [](uv_check_t*) {
    std::vector<http::ExchangePtr> batch;
    batch.swap(g->paused);
    for (auto& e : batch) e->resume_body();
  });
  uv_unref(reinterpret_cast<uv_handle_t*>(&g->resumer));
}

/// Checks the server's output as a client would read it.
struct ResponseChecker {
  llhttp_t parser;
  llhttp_settings_t settings;
  int responses = 0;

  ResponseChecker() {
    llhttp_settings_init(&settings);
    settings.on_headers_complete = [](llhttp_t* p) -> int {
      auto* self = static_cast<ResponseChecker*>(p->data);
      if (p->status_code < 200) return 0;  // 100 Continue: not the answer yet
      self->responses++;
      bool head = false;
      if (!g->dispatched.empty()) {
        head = g->dispatched.front() == http::Method::Head;
        g->dispatched.pop_front();
      }
      return head ? 1 : 0;  // 1: no body follows
    };
    llhttp_init(&parser, HTTP_RESPONSE, &settings);
    parser.data = this;
  }
  void feed(const char* p, size_t n) {
    llhttp_errno_t err = llhttp_execute(&parser, p, n);
    if (err != HPE_OK) std::fprintf(stderr, "bad response bytes: %s (%s)\n", llhttp_errno_name(err), parser.reason);
    FUZZ_CHECK(err == HPE_OK);
  }
  void finish() {
    llhttp_errno_t err = llhttp_finish(&parser);
    if (err != HPE_OK) std::fprintf(stderr, "response cut short: %s (%s)\n", llhttp_errno_name(err), parser.reason);
    FUZZ_CHECK(err == HPE_OK);
  }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (!g) init();
  int sv[2];
  FUZZ_CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) == 0);
  g->dispatched.clear();
  g->server->on_accept_(sv[0], "fuzz:1");

  ResponseChecker check;
  size_t written = 0;
  bool write_closed = false, read_eof = false;
  char buf[16384];
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(15);
  while (!(read_eof && g->server->connection_count() == 0)) {
    // The client: write what the socket takes, half-close when all is sent,
    // read whatever came back.
    while (!write_closed) {
      if (written == size) {
        ::shutdown(sv[1], SHUT_WR);
        write_closed = true;
        break;
      }
      ssize_t n = ::send(sv[1], data + written, size - written, MSG_NOSIGNAL);
      if (n > 0) written += static_cast<size_t>(n);
      else if (n < 0 && errno == EPIPE) write_closed = true;  // the server closed already
      else break;
    }
    while (!read_eof) {
      ssize_t n = ::read(sv[1], buf, sizeof buf);
      if (n > 0) check.feed(buf, static_cast<size_t>(n));
      else if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)) read_eof = true;
      else break;
    }
    uv_run(&g->loop, UV_RUN_NOWAIT);
    if (std::chrono::steady_clock::now() > deadline) {
      std::fprintf(stderr, "connection still open 15 s after the client sent everything\n");
      std::abort();
    }
  }
  check.finish();
  ::close(sv[1]);
  g->paused.clear();
  // Let closed handles finish (uv_close callbacks free the connection).
  uv_run(&g->loop, UV_RUN_NOWAIT);
  return 0;
}
