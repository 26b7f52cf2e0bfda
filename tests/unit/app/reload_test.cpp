// Issue #17, SIGHUP reload of upstreams, kept repositories and [auth]: the
// Reloader's guards (a live key refused for some changes, with the reason),
// the upstream generations (same/different, lifetime while a client is
// held), the upstream request histogram and live [auth] options.
#include <unistd.h>
#include <uv.h>

#include <catch2/catch.hpp>
#include <fstream>

#include "app/config.hpp"
#include "app/reload.hpp"
#include "app/upstream_set.hpp"
#include "auth/authorizer.hpp"
#include "upstream/request_timings.hpp"

using namespace outpost;

namespace {
struct TempFile {
  char path[64] = "/tmp/outpost-reload-test-XXXXXX";
  TempFile() {
    int fd = mkstemp(path);
    REQUIRE(fd >= 0);
    close(fd);
  }
  ~TempFile() { unlink(path); }
  void write(const std::string& text) const {
    std::ofstream f(path, std::ios::trunc);
    f << text;
  }
};

/// A reloader set up as app.cpp sets it for the parent and upstreams.
app::Reloader parent_reloader(bool has_pull_through, std::vector<std::string>* seen_urls) {
  app::Reloader r;
  r.allow_live({"parent.*", "upstream", "sync.keep", "auth.*"});
  r.guard("parent.*", [](const app::Config& live, const app::Config& next) -> std::string {
    if (live.parent.url.empty() == next.parent.url.empty()) return {};
    return live.parent.url.empty() ? "a parent added to a standalone registry needs a restart"
                                   : "removing the parent needs a restart";
  });
  r.guard("upstream", [has_pull_through](const app::Config&, const app::Config&) -> std::string {
    return has_pull_through ? std::string() : "the first upstream of a registry started without any needs a restart";
  });
  r.add("upstreams", [seen_urls](const app::Config&, const app::Config& next) -> Status {
    seen_urls->push_back(next.parent.url);
    return {};
  });
  return r;
}

/// A config file loaded as the running config, and the reloader above
/// (the parent URLs its hook saw go to `seen`). Not movable: the hook
/// holds a pointer to `seen`.
struct ReloadEnv {
  ReloadEnv(const std::string& text, bool has_pull_through) {
    file.write(text);
    auto c = app::load_config_file(file.path);
    REQUIRE(c);
    live = std::move(*c);
    reloader = parent_reloader(has_pull_through, &seen);
  }
  ReloadEnv(const ReloadEnv&) = delete;
  ReloadEnv& operator=(const ReloadEnv&) = delete;
  /// Writes `text` to the file and reloads it, as SIGHUP does.
  app::ReloadReport reload(const std::string& text) {
    file.write(text);
    app::ReloadReport rep;
    reloader.reload(file.path, &live, &rep, 1000);
    return rep;
  }

  TempFile file;
  app::Config live;
  std::vector<std::string> seen;
  app::Reloader reloader;
};
}  // namespace

TEST_CASE("reload: parent URL, timeouts and kept repositories change live", "[app][reload]") {
  ReloadEnv env("[parent]\nurl = \"http://127.0.0.1:5001\"\n", true);
  auto rep = env.reload("[parent]\nurl = \"http://127.0.0.1:5002\"\ntimeout = \"5s\"\n[sync]\nkeep = [\"factory/*\"]\n"
                        "[auth]\nanonymous_pull = [\"pub/*\"]\n");
  CHECK(rep.result == "ok");
  CHECK(rep.refused.empty());
  CHECK(rep.applied == std::vector<std::string>{"parent.url", "parent.timeout", "sync.keep", "auth.anonymous_pull"});
  CHECK(env.live.parent.url == "http://127.0.0.1:5002");
  CHECK(env.live.parent.timeout_ms == 5000);
  CHECK(env.live.sync.keep == std::vector<std::string>{"factory/*"});
  CHECK(env.seen == std::vector<std::string>{"http://127.0.0.1:5002"});
}

TEST_CASE("reload: adding or removing the parent is refused as a whole, with the reason", "[app][reload]") {
  ReloadEnv env("[parent]\nurl = \"http://127.0.0.1:5001\"\ntimeout = \"5s\"\n", true);
  app::Reloader& r = env.reloader;
  CHECK(r.refusal("parent.url", env.live, env.live).empty());

  // Removing [parent]: url and timeout both change; both are refused and
  // keep their running values, the hooks see the running parent.
  auto rep = env.reload("[log]\nlevel = \"info\"\n");
  CHECK(rep.applied.empty());
  CHECK(rep.refused == std::vector<std::string>{"parent.url", "parent.timeout"});
  CHECK(env.live.parent.url == "http://127.0.0.1:5001");
  CHECK(env.live.parent.timeout_ms == 5000);
  CHECK(env.seen == std::vector<std::string>{"http://127.0.0.1:5001"});

  // A standalone registry given a parent: refused too (the file now has no parent).
  auto standalone = app::load_config_file(env.file.path);
  REQUIRE(standalone);
  app::Config with_parent = *standalone;
  with_parent.parent.url = "http://127.0.0.1:5003";
  CHECK(r.refusal("parent.url", *standalone, with_parent) == "a parent added to a standalone registry needs a restart");
  CHECK(r.refusal("parent.url", with_parent, *standalone) == "removing the parent needs a restart");
  // A key no guard names is not refused by one.
  CHECK(r.refusal("sync.keep", *standalone, with_parent).empty());
}

TEST_CASE("reload: a registry started without upstreams refuses the first one", "[app][reload]") {
  ReloadEnv env("[log]\nlevel = \"info\"\n", false);
  auto rep = env.reload("[[upstream]]\nname = \"docker.io\"\nurl = \"https://registry-1.docker.io\"\n");
  CHECK(rep.refused == std::vector<std::string>{"upstream"});
  CHECK(env.live.upstreams.empty());
}

TEST_CASE("upstream generations: kept when nothing changed, rebuilt on a new URL or new credentials",
          "[app][reload]") {
  uv_loop_t loop;
  REQUIRE(uv_loop_init(&loop) == 0);
  {
    TempFile token;
    token.write("child:secret-1\n");
    auto timings = std::make_shared<upstream::RequestTimings>();
    app::UpstreamGenerations gens(&loop, "instance-1", timings);
    app::Config cfg;
    cfg.parent.url = "http://127.0.0.1:5001";
    cfg.parent.token_file = token.path;
    app::UpstreamConfig mirror;
    mirror.name = "docker.io";
    mirror.url = "http://127.0.0.1:5009";
    cfg.upstreams.push_back(mirror);
    auto set = gens.build(cfg);
    REQUIRE(set);
    REQUIRE(set->parent);
    REQUIRE(set->named.size() == 1);
    CHECK(set->parent->options().username == "child");
    CHECK(set->parent->options().password == "secret-1");
    CHECK(set->parent->options().instance_id == "instance-1");
    CHECK(set->named[0]->options().instance_id.empty());
    CHECK(set->parent->options().timings == timings);

    CHECK(app::UpstreamGenerations::same(*set, cfg, cfg));
    app::Config moved = cfg;
    moved.parent.url = "http://127.0.0.1:5002";
    CHECK_FALSE(app::UpstreamGenerations::same(*set, cfg, moved));
    app::Config slower = cfg;
    slower.upstreams[0].timeout_ms = 1000;
    CHECK_FALSE(app::UpstreamGenerations::same(*set, cfg, slower));
    // The same file name with a rotated secret in it: rebuilt.
    token.write("child:secret-2\n");
    CHECK_FALSE(app::UpstreamGenerations::same(*set, cfg, cfg));
    // An unreadable token file: rebuilding reports it.
    app::Config broken = cfg;
    broken.parent.token_file = "/nonexistent/outpost-token";
    CHECK_FALSE(app::UpstreamGenerations::same(*set, cfg, broken));
    auto bad = gens.build(broken);
    REQUIRE_FALSE(bad);
    CHECK(bad.error().message().find("/nonexistent/outpost-token") != std::string::npos);

    // A client held by work in flight keeps its generation (pools, Links)
    // alive after the set that made it was replaced.
    std::shared_ptr<upstream::RegistryClient> held = set->parent;
    auto next = gens.build(moved);
    REQUIRE(next);
    *set = std::move(*next);
    CHECK(held->options().url.str().find("5001") != std::string::npos);
    CHECK(held->upstream_repo("alpine") == "alpine");
    CHECK(set->parent->options().url.str().find("5002") != std::string::npos);
    held.reset();  // the last holder: freed on a later loop turn
    uv_run(&loop, UV_RUN_NOWAIT);
    gens.shutdown();
    *set = {};
  }
  // Every handle closed: the generations and their pools are gone.
  uv_walk(&loop, [](uv_handle_t* h, void*) { if (!uv_is_closing(h)) uv_close(h, nullptr); }, nullptr);
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK(uv_loop_close(&loop) == 0);
}

TEST_CASE("upstream request timings: kinds, cumulative-ready buckets, failures", "[app][reload]") {
  CHECK(upstream::request_kind("/v2/") == "ping");
  CHECK(upstream::request_kind("/v2/_catalog?n=100") == "catalog");
  CHECK(upstream::request_kind("/v2/lib/app/manifests/v1") == "manifest");
  CHECK(upstream::request_kind("/v2/lib/app/blobs/sha256:ab") == "blob");
  CHECK(upstream::request_kind("/v2/lib/app/blobs/uploads/?mount=x") == "upload");
  CHECK(upstream::request_kind("/v2/lib/app/tags/list?n=10") == "tags");
  CHECK(upstream::request_kind("/v2/lib/app/referrers/sha256:ab") == "referrers");
  upstream::RequestTimings t;
  t.observe("parent", "manifest", 0.002);
  t.observe("parent", "manifest", 0.3);
  t.observe("parent", "manifest", 100);  // past the last bound: only +Inf
  t.failed("parent", "blob");
  REQUIRE(t.series().size() == 2);
  const auto& m = t.series()[0];
  CHECK(m.kind == "manifest");
  CHECK(m.count == 3);
  CHECK(m.buckets[0] == 1);  // <= 5 ms
  CHECK(m.buckets[6] == 1);  // <= 0.5 s
  uint64_t in_buckets = 0;
  for (auto b : m.buckets) in_buckets += b;
  CHECK(in_buckets == 2);
  CHECK(m.sum == Approx(100.302));
  CHECK(t.series()[1].failures == 1);
  CHECK(t.series()[1].count == 0);
}

TEST_CASE("auth options change live: anonymous pull rules, service, token lifetime", "[app][reload]") {
  auth::AuthOptions o;
  o.anonymous.push_back(auth::ScopeRule{"pub/*", auth::kPull});
  auth::Authorizer a(o, std::string(32, 'k'));
  CHECK(a.anonymous()->may("pub/app") == auth::kPull);
  CHECK(a.anonymous()->may("priv/app") == 0);
  auth::AuthOptions next = a.options();
  next.anonymous = {auth::ScopeRule{"priv/*", auth::kAllActions}};
  next.service = "plant-7";
  next.token_ttl_s = 600;
  a.set_options(next);
  CHECK(a.anonymous()->may("pub/app") == 0);
  CHECK(a.anonymous()->may("priv/app") == auth::kPull);  // anonymous access stays pull only
  CHECK(a.options().service == "plant-7");
  CHECK(a.options().token_ttl_s == 600);
}
