#include "app/app.hpp"

#include <signal.h>
#include <systemd/sd-daemon.h>

#include <filesystem>
#include <memory>
#include <system_error>

#include "base/log.hpp"
#include "http/router.hpp"
#include "http/server.hpp"
#include "store/store.hpp"
#include "uv/loop.hpp"

namespace outpost::app {

struct App::Impl {
  Config cfg;
  uv::Loop loop;
  http::Router router;
  api::ApiContext api;
  std::unique_ptr<store::Store> store;
  std::unique_ptr<http::Server> server;
  uv::Signal* sigterm = nullptr;
  uv::Signal* sigint = nullptr;
};

App::App(Config cfg) : impl_(std::make_unique<Impl>()) { impl_->cfg = std::move(cfg); }

App::~App() {
  // Order: the server (and its connections) before the store they use.
  impl_->server.reset();
  impl_->store.reset();
}

int App::run() {
  Impl& m = *impl_;
  const Config& c = m.cfg;
  // Writes to a closed socket must return EPIPE, not kill the process.
  signal(SIGPIPE, SIG_IGN);

  // The root's parents are created here (an operator's "var/outpost" in a
  // fresh checkout); the store creates and owns the root itself.
  std::error_code ec;
  std::filesystem::create_directories(std::filesystem::path(c.storage.root).parent_path(), ec);
  store::StoreOptions so;
  so.max_manifest_bytes = c.registry.max_manifest_bytes;
  auto st = store::Store::open(c.storage.root, so);
  if (!st) {
    log::error("cannot open the store", " root=" + log::quote(c.storage.root) + " reason=" +
                                             log::quote(st.error().message()));
    return 1;
  }
  m.store = std::move(*st);
  m.api.store = m.store.get();
  m.api.loop = m.loop.get();
  m.api.options.read_only = c.registry.mode == "ReadOnly";
  m.api.options.max_manifest_bytes = c.registry.max_manifest_bytes;
  api::register_routes(m.router, m.api);

  http::ServerLimits lim;
  lim.max_connections = c.server.max_connections;
  lim.max_header_bytes = c.server.max_header_bytes;
  lim.header_timeout_ms = c.server.header_timeout_ms;
  lim.idle_timeout_ms = c.server.idle_timeout_ms;
  lim.body_timeout_ms = c.server.body_timeout_ms;
  lim.write_timeout_ms = c.server.write_timeout_ms;

  http::Router* router = &m.router;
  m.server = std::make_unique<http::Server>(m.loop.get(), lim, [router](const http::ExchangePtr& ex) {
    auto match = router->match(ex->req().method, ex->req().path);
    if (!match.handler) {
      if (match.status == 405) {
        ex->add_header("Allow", match.allow);
        ex->respond_error(Errc::MethodNotAllowed, "method not allowed on " + ex->req().path);
      } else {
        ex->respond_error(Errc::NotFound, "no route for " + ex->req().path);
      }
      return;
    }
    ex->params() = std::move(match.params);
    (*match.handler)(ex);
  });
  m.server->add_default_header("Docker-Distribution-API-Version", "registry/2.0");

  for (const auto& addr : c.server.listen) {
    if (auto st = m.server->listen(addr); !st) {
      log::error("cannot start", " reason=" + log::quote(st.error().message()));
      return 1;
    }
  }

  bool stopping = false;
  auto on_signal = [&m, &stopping, &c](int sig) {
    if (stopping) {
      log::warn("second signal: exiting now", " signal=" + std::to_string(sig));
      m.server->shutdown(0, [] {});
      return;
    }
    stopping = true;
    sd_notify(0, "STOPPING=1");
    log::info("signal received, shutting down", " signal=" + std::to_string(sig));
    m.server->shutdown(c.server.shutdown_timeout_ms, [&m] {
      m.sigterm->close();
      m.sigint->close();
      m.sigterm = m.sigint = nullptr;
      m.loop.stop();
    });
  };
  m.sigterm = uv::Signal::start(m.loop.get(), SIGTERM, on_signal);
  m.sigint = uv::Signal::start(m.loop.get(), SIGINT, on_signal);

  sd_notify(0, "READY=1");
  log::info("outpost ready", " name=" + c.registry.name + " mode=" + c.registry.mode + " root=" +
                                 log::quote(c.storage.root) + " config=" + log::quote(c.source));
  m.loop.run();
  m.server.reset();
  log::info("stopped");
  return 0;
}

}  // namespace outpost::app
