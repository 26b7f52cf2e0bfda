#include "app/app.hpp"

#include <signal.h>
#include <systemd/sd-daemon.h>

#include <filesystem>
#include <memory>
#include <system_error>

#include "app/auth_gate.hpp"
#include "app/ops.hpp"
#include "app/reload.hpp"
#include "app/request_log.hpp"
#include "app/upstream_set.hpp"
#include "app/watchdog.hpp"
#include "app/ops_storage.hpp"
#include "app/bundle_admin.hpp"
#include "app/sync_control.hpp"
#include "auth/instance_id.hpp"
#include "base/log.hpp"
#include "http/router.hpp"
#include "http/server.hpp"
#include "cache/hot_blobs.hpp"
#include "cache/pull_through.hpp"
#include "http/client.hpp"
#include "net/tls.hpp"
#include "net/tls_server.hpp"
#include "store/store.hpp"
#include "storesvc/housekeeper.hpp"
#include "storesvc/store_service.hpp"
#include "sync/keeper.hpp"
#include "sync/sync_service.hpp"
#include "upstream/registry_client.hpp"
#include "uv/loop.hpp"
#include "uv/work.hpp"

namespace outpost::app {

/// Exit status of a start refused by the hierarchy rule (sysexits.h EX_CONFIG:
/// the configuration is wrong; systemd's RestartPreventExitStatus= names it).
constexpr int kExitConfig = 78;

struct App::Impl {
  Config cfg;
  uv::Loop loop;
  http::Router router;
  // Issue #17: per-route counters and recent pulls (fed by every exchange's
  // end, so it outlives the server), SIGHUP reload, systemd watchdog.
  RequestLog requests;
  Reloader reloader;
  ReloadReport reload_report;
  std::unique_ptr<Watchdog> watchdog;
  uv::Signal* sighup = nullptr;
  api::ApiContext api;
  /// Owns the store; the loop reaches it only through jobs (issue #14).
  std::unique_ptr<storesvc::StoreService> store;
  // Upstreams: one TLS config and one connection pool each (their CA and
  // verification settings differ), built as one generation that SIGHUP may
  // replace (issue #17); `upstreams` is the generation routes use now.
  std::shared_ptr<upstream::RequestTimings> upstream_timings = std::make_shared<upstream::RequestTimings>();
  std::unique_ptr<UpstreamGenerations> upstream_gens;
  UpstreamSet upstreams;
  std::unique_ptr<cache::HotManifests> memo;  ///< used by api and pull: freed after both
  std::unique_ptr<cache::HotBlobs> hot_blobs;  ///< blob GET/HEAD fast path (api)
  /// Cache management (issue #18): access times, eviction, scheduled GC,
  /// check. Stopped before the store drains.
  std::unique_ptr<storesvc::Housekeeper> housekeeper;
  std::unique_ptr<cache::PullThrough> pull;
  /// Sync windows and the replay to the parent (issue #15); null without a
  /// parent. Shut down before the cache and the store.
  std::unique_ptr<sync::SyncService> sync;
  /// Kept repositories (sync.keep), a window task of `sync`: freed after
  /// it, before the cache it pulls through.
  std::unique_ptr<sync::Keeper> keeper;
  std::unique_ptr<SyncControl> sync_control;
  OpsSources ops;
  /// Access control (issue #16): the check in front of the router, /token
  /// and the token admin endpoint. Freed after the pending jobs drained.
  std::unique_ptr<AuthGate> auth;
  std::string instance_id;  ///< sent to the parent as Outpost-Instance
  std::unique_ptr<http::Server> server;
  uv::Signal* sigterm = nullptr;
  uv::Signal* sigint = nullptr;
  std::shared_ptr<net::TlsServerContext> tls;  ///< [tls] listeners' certificate (issue #16)
};

App::App(Config cfg) : impl_(std::make_unique<Impl>()) { impl_->cfg = std::move(cfg); }

App::~App() {
  // Order: the server (and its connections) before the store they use.
  // Same order as the end of run(): stop upstream work, cancel calls, let
  // their store jobs deliver, then free the cache and the store.
  impl_->server.reset();
  if (impl_->sync) impl_->sync->shutdown();
  if (impl_->pull) impl_->pull->shutdown();
  if (impl_->upstream_gens) impl_->upstream_gens->shutdown();
  if (impl_->housekeeper) impl_->housekeeper->stop();
  while (uv::pending_work() > 0) uv_run(impl_->loop.get(), UV_RUN_ONCE);
  impl_->auth.reset();
  impl_->ops.sync = nullptr;
  impl_->ops.storage = nullptr;
  impl_->housekeeper.reset();
  impl_->sync_control.reset();
  impl_->sync.reset();
  impl_->keeper.reset();
  impl_->pull.reset();
  impl_->upstreams = {};
  impl_->upstream_gens.reset();  // after every holder of an upstream client
  impl_->memo.reset();
  impl_->hot_blobs.reset();
  impl_->store.reset();  // drains its own jobs, then closes the store
}

namespace {
/// app::SyncControl over sync::SyncService (the endpoint's seam; sync/ knows
/// nothing of app/).
class SyncControlAdapter final : public SyncControl {
 public:
  explicit SyncControlAdapter(sync::SyncService& s) : s_(s) {}
  Trigger trigger() override {
    return s_.trigger() == sync::SyncService::Trigger::Accepted ? Trigger::Accepted : Trigger::AlreadyOpen;
  }
  std::string progress_json() const override { return s_.progress_json().dump(); }
  void refresh(std::function<void()> done) override { s_.refresh(std::move(done)); }
  std::string status_json() const override { return s_.status_json().dump(); }
  std::string metrics_text() const override { return s_.metrics_text(); }

 private:
  sync::SyncService& s_;
};

cache::PullPolicy pull_policy_of(sync::PullThrough p) {
  switch (p) {
    case sync::PullThrough::Always: return cache::PullPolicy::Always;
    case sync::PullThrough::InWindow: return cache::PullPolicy::InWindow;
    case sync::PullThrough::Never: return cache::PullPolicy::Never;
  }
  return cache::PullPolicy::Always;
}
}  // namespace

namespace {
// Issue #15, the hierarchy rule: a ReadWrite Outpost replays its pushes to
// its parent, so a parent announcing ReadOnly makes the configuration wrong.
// One probe (GET /v2/) before serving, bounded by the probe timeout: an
// unreachable parent does not hold the start (the replayer checks the mode
// again before each run). A ReadOnly one probes too, without waiting, so
// status shows the parent's mode from the start. Returns the reason to
// refuse the start, or "".
std::string check_parent_mode_at_start(uv_loop_t* loop, upstream::RegistryClient& parent, bool read_only) {
  if (parent.options().offline) return {};
  if (read_only) {
    // Nothing to refuse, so nothing to wait for; status shows the mode soon.
    parent.mutable_link().probe_now([](bool) {});
    return {};
  }
  // Shared: when the deadline ends the wait first, the probe still answers
  // later (a resolver that does not answer), after this frame is gone.
  auto answered = std::make_shared<bool>(false);
  parent.mutable_link().probe_now([answered](bool) { *answered = true; });
  if (!*answered) {
    // A ref'd deadline keeps uv_run blocking (the probe timer is unref'd)
    // and bounds the wait even when the resolver does not answer.
    bool expired = false;
    auto* deadline = new uv_timer_t;
    uv_timer_init(loop, deadline);
    deadline->data = &expired;
    uv_timer_start(deadline, [](uv_timer_t* t) { *static_cast<bool*>(t->data) = true; },
                   parent.options().probe_timeout_ms + 250, 0);
    while (!*answered && !expired) uv_run(loop, UV_RUN_ONCE);
    uv_close(reinterpret_cast<uv_handle_t*>(deadline), [](uv_handle_t* h) { delete reinterpret_cast<uv_timer_t*>(h); });
  }
  return parent.replay_blocked_reason(read_only);
}
}  // namespace

namespace {
/// The Keeper of sync.keep and its window task in `svc` (at start, or when a
/// SIGHUP sets sync.keep where it was empty).
std::unique_ptr<sync::Keeper> make_keeper(uv_loop_t* loop, storesvc::StoreService& store, cache::PullThrough& pull,
                                          sync::SyncService& svc, std::vector<sync::KeepPattern> patterns) {
  auto keeper = std::make_unique<sync::Keeper>(loop, store, pull, std::move(patterns));
  sync::Keeper* k = keeper.get();
  sync::WindowTask task;
  task.name = "keep";
  task.start = [k](std::function<void(Status)> done) { k->refresh(std::move(done)); };
  task.cancel = [k] { k->cancel(); };
  task.status = [k] {
    nlohmann::json arr = nlohmann::json::array();
    for (const auto& st : k->status()) {
      arr.push_back({{"pattern", st.pattern},
                     {"last_refresh", st.last_refresh_ms ? nlohmann::json(sync::iso_time(st.last_refresh_ms))
                                                         : nlohmann::json(nullptr)},
                     {"last_refresh_unix", st.last_refresh_ms / 1000},
                     {"tags", st.tags},
                     {"last_error", st.last_error.empty() ? nlohmann::json(nullptr) : nlohmann::json(st.last_error)}});
    }
    return arr;
  };
  svc.add_window_task(std::move(task));
  return keeper;
}
}  // namespace

namespace {
/// The systemd STATUS= line: what `systemctl status outpost` shows.
std::string systemd_status_line(const OpsSources& ops) {
  std::string line = "serving";
  if (ops.pull && ops.pull->parent()) {
    const auto* parent = ops.pull->parent();
    line += "; parent " + std::string(upstream::connectivity_name(parent->health().state()));
  }
  if (ops.sync) {
    auto j = nlohmann::json::parse(ops.sync->status_json(), nullptr, false);
    if (j.is_object() && j.contains("queue") && j["queue"].is_object()) {
      line += "; replay queue " + std::to_string(j["queue"].value("pending", uint64_t{0})) + " pending, " +
              std::to_string(j["queue"].value("failed", uint64_t{0})) + " failed";
    }
    if (j.is_object() && j.contains("window") && j["window"].is_object())
      line += j["window"].value("open", false) ? "; sync window open" : "; sync window closed";
  }
  return line;
}
}  // namespace

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
  // Issue #15: every acknowledged push is queued for the parent in the
  // write's own transaction, whenever a parent is configured and this
  // registry accepts pushes, also while the parent is offline or forced
  // offline (the queue waits for it).
  so.replay = !c.parent.url.empty() && c.registry.mode != "ReadOnly";
  so.replay_deletes = so.replay && c.sync.replay_deletes;
  auto st = store::Store::open(c.storage.root, so);
  if (!st) {
    log::error("cannot open the store", " root=" + log::quote(c.storage.root) + " reason=" +
                                             log::quote(st.error().message()));
    return 1;
  }
  m.store = std::make_unique<storesvc::StoreService>(m.loop.get(), std::move(*st));
  m.api.store = m.store.get();
  // Access control (issue #16): auth.db beside the store, read before serving.
  if (auto gate = AuthGate::open(m.loop.get(), c); gate) {
    m.auth = std::move(*gate);
  } else {
    log::error("cannot start", " reason=" + log::quote(gate.error().message()));
    return 1;
  }
  if (!c.parent.url.empty()) {
    auto id = auth::load_or_create_instance_id(c.storage.root);
    if (!id) {
      log::error("cannot start", " reason=" + log::quote(id.error().message()));
      return 1;
    }
    m.instance_id = std::move(*id);
  }
  m.memo = std::make_unique<cache::HotManifests>(m.store.get());
  m.api.memo = m.memo.get();
  m.hot_blobs = std::make_unique<cache::HotBlobs>(m.store.get());
  m.api.blobs = m.hot_blobs.get();
  {
    // Cache management (issue #18): quota and free-space eviction, GC on a
    // schedule, access times, check. Keys validated by the config loader.
    storesvc::HousekeeperOptions ho;
    ho.evict.max_size = *store::parse_size_limit(c.storage.max_size);
    ho.evict.min_free = *store::parse_size_limit(c.storage.min_free);
    ho.evict.grace_ms = static_cast<int64_t>(c.storage.evict_grace_ms);
    ho.gc.upload_ttl_ms = static_cast<int64_t>(c.storage.upload_ttl_ms);
    ho.gc_interval_ms = static_cast<int64_t>(c.storage.gc_interval_ms);
    ho.check_rate = c.storage.check_rate;
    m.housekeeper = std::make_unique<storesvc::Housekeeper>(m.loop.get(), *m.store, std::move(ho));
    storesvc::Housekeeper* hk = m.housekeeper.get();
    m.api.on_access = [hk](const Digest& d) { hk->touch(d); };
    m.ops.storage = hk;
  }
  if (!c.parent.url.empty() || !c.upstreams.empty()) {
    cache::PullOptions po;
    po.tag_ttl_ms = c.cache.tag_ttl_ms;
    po.revalidate_wait_ms = c.cache.revalidate_wait_ms;
    po.max_manifest_bytes = c.registry.max_manifest_bytes;
    po.read_only = c.registry.mode == "ReadOnly";
    m.pull = std::make_unique<cache::PullThrough>(m.loop.get(), m.store.get(), po);
    m.pull->set_memo(m.memo.get());
    m.upstream_gens = std::make_unique<UpstreamGenerations>(m.loop.get(), m.instance_id, m.upstream_timings);
    auto set = m.upstream_gens->build(c);
    if (!set) {
      log::error("cannot start", " reason=" + log::quote(set.error().message()));
      return 1;
    }
    m.upstreams = std::move(*set);
    m.pull->replace_upstreams(m.upstreams.parent, m.upstreams.named);
    m.api.pull = m.pull.get();
    if (m.auth)
      m.auth->set_repository_of([pull = m.pull.get()](const http::ExchangePtr& ex) {
        // Only manifest and blob reads go through the pull route (and so to
        // "<ns>/<name>", api::pull_route); writes, deletes and listings act
        // on {name} itself, and are checked there.
        const auto m = ex->req().method;
        const std::string_view r = ex->route();
        if ((m != http::Method::Get && m != http::Method::Head) ||
            (r != "/v2/{name}/manifests/{reference}" && r != "/v2/{name}/blobs/{digest}"))
          return ex->params().name;
        auto route = pull->route(ex->params().name, ex->req().query_param("ns"));
        return route ? route->local_repo : ex->params().name;
      });
    if (auto* parent = m.pull->mutable_parent()) {
      const std::string conflict = check_parent_mode_at_start(m.loop.get(), *parent, c.registry.mode == "ReadOnly");
      if (!conflict.empty()) {
        log::error("cannot start", " reason=" + log::quote(conflict));
        return kExitConfig;
      }
      // Sync windows (issue #15): a ReadWrite registry replays its pushes in
      // them; a ReadOnly one still gates background work (and kept
      // repositories) by them.
      auto sched = make_sync_schedule(c);
      if (!sched) {
        log::error("cannot start", " reason=" + log::quote(sched.error().message()));
        return 1;
      }
      sync::SyncServiceOptions so2;
      so2.replay = so.replay;
      so2.self_read_only = c.registry.mode == "ReadOnly";
      so2.message_ttl_ms = c.sync.message_ttl_ms;
      m.sync = std::make_unique<sync::SyncService>(m.loop.get(), *m.store, *parent, std::move(*sched), so2);
      cache::PullThrough* pull = m.pull.get();
      sync::SyncService* svc = m.sync.get();
      pull->set_pull_policy(pull_policy_of(c.sync.pull_through));
      pull->set_in_window([svc] { return svc->is_open(); });
      // Outside a window no background request reaches the parent: no probe.
      m.sync->set_on_window([pull](bool open) { pull->set_background_allowed(open); });
      auto patterns = sync::parse_keep_patterns(c.sync.keep);
      if (!patterns) {
        log::error("cannot start", " reason=" + log::quote(patterns.error().message()));
        return 1;
      }
      // Pins of patterns taken out of sync.keep while stopped go, as a
      // reload's do (issue #17): that content may be evicted again.
      std::vector<std::string> texts;
      for (const auto& p : *patterns) texts.push_back(p.text());
      m.store->run<uint64_t>([texts](store::Store& st) { return st.unpin_patterns_except(texts); },
                             [](Result<uint64_t> n) {
                               if (n && *n) log::info("sync.keep: tags of removed patterns unpinned",
                                                      " tags=" + std::to_string(*n));
                             });
      if (!patterns->empty()) m.keeper = make_keeper(m.loop.get(), *m.store, *m.pull, *m.sync, std::move(*patterns));
      m.sync_control = std::make_unique<SyncControlAdapter>(*m.sync);
      m.ops.sync = m.sync_control.get();
    }
  }
  m.api.options.read_only = c.registry.mode == "ReadOnly";
  m.api.options.max_manifest_bytes = c.registry.max_manifest_bytes;
  // Ops routes first: "/metrics" must not be read as a repository path.
  m.ops.config = &m.cfg;
  m.ops.pull = m.pull.get();
  m.ops.loop = m.loop.get();
  m.ops.requests = &m.requests;
  m.ops.reload = &m.reload_report;
  m.ops.upstream_timings = m.upstream_timings.get();
  uv_timeval64_t tv;
  uv_gettimeofday(&tv);
  m.ops.started_ms = static_cast<uint64_t>(tv.tv_sec) * 1000 + static_cast<uint64_t>(tv.tv_usec) / 1000;
  register_ops_routes(m.router, m.ops);
  m.auth->register_routes(m.router);
  register_storage_routes(m.router, m.housekeeper.get());
  register_bundle_routes(m.router, *m.store, m.cfg);  // /outpost/bundle/ (issue #19)
  api::register_routes(m.router, m.api);

  http::ServerLimits lim;
  lim.max_connections = c.server.max_connections;
  lim.max_header_bytes = c.server.max_header_bytes;
  lim.header_timeout_ms = c.server.header_timeout_ms;
  lim.idle_timeout_ms = c.server.idle_timeout_ms;
  lim.body_timeout_ms = c.server.body_timeout_ms;
  lim.min_body_rate = c.server.min_body_rate;
  lim.body_rate_grace_ms = c.server.body_rate_grace_ms;
  lim.write_timeout_ms = c.server.write_timeout_ms;

  http::Router* router = &m.router;
  AuthGate* gate = m.auth.get();  // enabled() asked per request: [auth] reloads live (issue #17)
  RequestLog* requests = &m.requests;
  m.server = std::make_unique<http::Server>(m.loop.get(), lim, [router, gate, requests](const http::ExchangePtr& ex) {
    auto match = router->match(ex->req().method, ex->req().path);
    // Metrics and the status page's recent pulls, when the exchange ends.
    // Two words of capture: the hook fits std::function's own buffer (no
    // allocation per request); the route label travels on the exchange.
    ex->set_route(match.pattern);
    ex->set_on_done([requests, t0 = uv_hrtime()](const http::Exchange& done) {
      uv_timeval64_t tv;
      uv_gettimeofday(&tv);
      requests->observe(done, done.route(), static_cast<double>(uv_hrtime() - t0) / 1e9,
                        static_cast<uint64_t>(tv.tv_sec) * 1000 + static_cast<uint64_t>(tv.tv_usec) / 1000);
    });
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
    // Access control before any store, cache or parent work (issue #16).
    if (gate->enabled() && match.tag != static_cast<int>(api::Access::Open)) {
      const http::Handler* h = match.handler;
      gate->check(ex, static_cast<api::Access>(match.tag), [h, ex] { (*h)(ex); });
      return;
    }
    (*match.handler)(ex);
  });
  m.server->add_default_header("Docker-Distribution-API-Version", "registry/2.0");
  // Children read it to apply the hierarchy rule (issue #15); on every
  // answer, so a 401 or an error carries it as well as GET /v2/.
  m.server->add_default_header("Outpost-Mode", c.registry.mode);
  m.ops.server = m.server.get();

  for (const auto& addr : c.server.listen) {
    if (auto st = m.server->listen(addr); !st) {
      log::error("cannot start", " reason=" + log::quote(st.error().message()));
      return 1;
    }
  }
  // ---- HTTPS listeners and their certificate reload (issue #16) ----
  if (!c.tls.listen.empty()) {
    net::TlsServerOptions to{c.tls.cert, c.tls.key, "tls.cert", "tls.key"};
    auto tls = net::TlsServerContext::create(to);
    if (!tls) {
      log::error("cannot start", " reason=" + log::quote(tls.error().message()));
      return 1;
    }
    m.tls = std::move(*tls);
    const auto& cur = m.tls->current();
    if (!cur->warning().empty()) log::warn("tls certificate", " problem=" + log::quote(cur->warning()));
    log::info("tls certificate loaded", " " + cur->summary());
    for (const auto& addr : c.tls.listen) {
      if (auto st = m.server->listen(addr, m.tls); !st) {
        log::error("cannot start", " reason=" + log::quote(st.error().message()));
        return 1;
      }
    }
    // SIGHUP re-reads the certificate and key (the general reload below runs
    // this hook on every reload, so a file replaced under the same name is
    // picked up); a bad file keeps the old certificate.
    m.reloader.add("tls", [&m](const Config&, const Config&) -> Status {
      if (auto st = m.tls->reload_certificates(); !st) {
        log::error("tls certificate reload failed; keeping the old certificate",
                   " reason=" + log::quote(st.error().message()));
        return st;
      }
      const auto& now = m.tls->current();
      if (!now->warning().empty()) log::warn("tls certificate", " problem=" + log::quote(now->warning()));
      log::info("tls certificate reloaded", " " + now->summary());
      return {};
    });
  }
  // ---- end of HTTPS ----

  m.ops.ready = true;  // the store is open and every listener bound
  // ---- SIGHUP reload (issue #17; app/reload.hpp) ----
  // What SIGHUP may change live; every other key is refused with a log
  // line naming it and keeps its running value. TLS certificates have their
  // hook above. docs/operations.md "Reloading the configuration" lists both.
  m.reloader.allow_live({"log.level", "registry.name", "sync.schedule", "sync.window", "sync.timezone",
                         "sync.pull_through", "sync.keep", "parent.*", "upstream", "auth.*"});
  // main.cpp derives max_connections from RLIMIT_NOFILE when it is 0: the
  // file's 0 is that same choice, not a change.
  m.reloader.set_normalize([](const Config& live, Config* next) {
    if (next->server.max_connections == 0) next->server.max_connections = live.server.max_connections;
  });
  // Adding or removing the parent starts or stops what only a start builds:
  // the replay queue's recording in the store, the sync service, the
  // instance id. Changing it for another parent is live.
  m.reloader.guard("parent.*", [](const Config& live, const Config& next) -> std::string {
    if (live.parent.url.empty() == next.parent.url.empty()) return {};
    return live.parent.url.empty() ? "a parent added to a standalone registry needs a restart"
                                   : "removing the parent needs a restart";
  });
  m.reloader.guard("upstream", [&m](const Config&, const Config&) -> std::string {
    return m.pull ? std::string() : "the first upstream of a registry started without any needs a restart";
  });
  m.reloader.add("log", [](const Config&, const Config& next) -> Status {
    log::set_level(next.log.level);
    return {};
  });
  m.reloader.add("sync", [&m](const Config& old, const Config& next) -> Status {
    if (m.pull && old.sync.pull_through != next.sync.pull_through)
      m.pull->set_pull_policy(pull_policy_of(next.sync.pull_through));
    if (!m.sync) return {};
    if (old.sync.schedule == next.sync.schedule && old.sync.window_ms == next.sync.window_ms &&
        old.sync.timezone == next.sync.timezone)
      return {};
    auto sched = make_sync_schedule(next);
    if (!sched) return std::move(sched).error();
    m.sync->set_schedule(std::move(*sched));
    return {};
  });
  // Upstreams: a new generation of clients when a key or a token file's
  // contents changed. New requests route to it at once; fills, manifest
  // fetches, keeper passes and replay pushes in flight hold the client
  // they started with and finish there (app/upstream_set.hpp).
  m.reloader.add("upstreams", [&m](const Config& old, const Config& next) -> Status {
    if (!m.pull || UpstreamGenerations::same(m.upstreams, old, next)) return {};
    auto set = m.upstream_gens->build(next);
    if (!set) return std::move(set).error();
    m.upstreams = std::move(*set);
    m.pull->replace_upstreams(m.upstreams.parent, m.upstreams.named);
    if (m.sync && m.upstreams.parent) {
      m.sync->set_parent(m.upstreams.parent);
      // Outside a window the new clients send no background probe either.
      m.pull->set_background_allowed(m.sync->is_open());
    }
    // Status shows the new parent's mode soon (as the probe at start does).
    if (m.upstreams.parent) m.upstreams.parent->mutable_link().probe_now([](bool) {});
    log::info("upstreams reloaded", " parent=" + log::quote(next.parent.url) +
                                        " upstreams=" + std::to_string(next.upstreams.size()));
    return {};
  });
  // Kept repositories: the Keeper walks the new list from its next pass;
  // patterns no longer listed stop pinning. Added while a window is open,
  // the pass starts now rather than at the next window.
  m.reloader.add("keep", [&m](const Config& old, const Config& next) -> Status {
    if (old.sync.keep == next.sync.keep || !m.sync) return {};
    auto patterns = sync::parse_keep_patterns(next.sync.keep);
    if (!patterns) return std::move(patterns).error();
    if (m.keeper) m.keeper->set_patterns(std::move(*patterns));
    else m.keeper = make_keeper(m.loop.get(), *m.store, *m.pull, *m.sync, std::move(*patterns));
    m.sync->run_idle_tasks();
    return {};
  });
  // Access control: every [auth] key applies to the next request (the
  // server's dispatch asks the gate whether it is enabled each time).
  m.reloader.add("auth", [&m](const Config&, const Config& next) -> Status {
    m.auth->apply(next.auth);
    return {};
  });
  m.sighup = uv::Signal::start(m.loop.get(), SIGHUP, [&m](int) {
    std::string path = m.cfg.source;
    if (path == "<embedded default>") path.clear();
    uv_timeval64_t now;
    uv_gettimeofday(&now);
    m.reloader.reload(path, &m.cfg, &m.reload_report,
                      static_cast<uint64_t>(now.tv_sec) * 1000 + static_cast<uint64_t>(now.tv_usec) / 1000);
  });
  // ---- end of SIGHUP reload ----

  bool stopping = false;
  auto on_signal = [&m, &stopping, &c](int sig) {
    if (stopping) {
      log::warn("second signal: exiting now", " signal=" + std::to_string(sig));
      m.server->shutdown(0, [] {});
      return;
    }
    stopping = true;
    m.ops.ready = false;
    sd_notify(0, "STOPPING=1");
    log::info("signal received, shutting down", " signal=" + std::to_string(sig));
    m.server->shutdown(c.server.shutdown_timeout_ms, [&m] {
      m.sigterm->close();
      m.sigint->close();
      m.sighup->close();
      m.sigterm = m.sigint = m.sighup = nullptr;
      m.watchdog.reset();
      m.loop.stop();
    });
  };
  m.sigterm = uv::Signal::start(m.loop.get(), SIGTERM, on_signal);
  m.sigint = uv::Signal::start(m.loop.get(), SIGINT, on_signal);

  if (m.sync) m.sync->start();
  m.housekeeper->start();
  sd_notify(0, "READY=1");
  m.watchdog = std::make_unique<Watchdog>(m.loop.get(), [&m] { return systemd_status_line(m.ops); });
  m.watchdog->start();
  log::info("outpost ready", " name=" + c.registry.name + " mode=" + c.registry.mode + " root=" +
                                 log::quote(c.storage.root) + " config=" + log::quote(c.source));
  m.loop.run();
  m.watchdog.reset();
  // Ordered teardown: no new upstream work, cancel what is in flight (its
  // callbacks may queue store jobs), let every store job deliver while the
  // cache and the store still exist, then free them.
  m.server.reset();
  if (m.sync) m.sync->shutdown();  // cancels pushes in flight; their entries stay pending
  if (m.pull) m.pull->shutdown();
  if (m.upstream_gens) m.upstream_gens->shutdown();
  if (m.housekeeper) m.housekeeper->stop();  // cancels a check, flushes access times
  while (uv::pending_work() > 0) uv_run(m.loop.get(), UV_RUN_ONCE);
  m.auth.reset();
  m.ops.sync = nullptr;
  m.ops.storage = nullptr;
  m.housekeeper.reset();
  m.sync_control.reset();
  m.sync.reset();
  m.keeper.reset();
  m.pull.reset();
  m.upstreams = {};
  m.upstream_gens.reset();  // after every holder of an upstream client
  m.memo.reset();
  m.hot_blobs.reset();
  m.store.reset();  // drains its own jobs, then closes the store
  log::info("stopped");
  return 0;
}

}  // namespace outpost::app
