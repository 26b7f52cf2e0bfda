// upstream::Link's issue #15 parts (src/upstream/link.cpp) against scripted
// registries on loopback, with a real loop stepped on the test thread: the
// parent's mode learnt from the probe and from every answer (Outpost-Mode
// header; NotOutpost without it; a 5xx or 429 says nothing), a change
// reported once, probe_now() answering exactly once, and the sync-window
// switch (no probe at all while background work is not allowed, one at
// once when it is again). Also the mode words and the hierarchy rule.
#include <catch2/catch.hpp>

#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "http/client.hpp"
#include "support/http_test_server.hpp"
#include "support/loop_fixture.hpp"
#include "upstream/link.hpp"
#include "upstream/registry_client.hpp"

using namespace outpost;
using namespace outpost::test;
using std::chrono::milliseconds;
using upstream::Link;
using upstream::ParentMode;

namespace {

/// A registry whose GET /v2/ (and everything else) answers `status` with
/// `Outpost-Mode: <mode>` unless `mode` is empty; switchable under the lock.
struct ModeRegistry {
  std::mutex mu;
  std::string mode = "ReadWrite";
  int status = 200;
  HttpTestServer srv{[this](ScriptConn& c, const SeenRequest& r) {
    std::string m;
    int st;
    {
      std::lock_guard<std::mutex> g(mu);
      m = mode;
      st = status;
    }
    HeaderList h;
    if (!m.empty()) h.emplace_back("Outpost-Mode", m);
    c.send(for_method(r, reply(st, "{}", h)));
  }};
  void set(std::string m, int st = 200) {
    std::lock_guard<std::mutex> g(mu);
    mode = std::move(m);
    status = st;
  }
  size_t probes() const { return srv.count_path("/v2/"); }
};

/// An HttpClient and a Link on a loop stepped by the test thread.
class LinkEnv {
 public:
  explicit LinkEnv(const std::string& url, bool forced_offline = false, uint64_t probe_timeout_ms = 2'000)
      : http(std::make_unique<http::HttpClient>(fx.loop(), nullptr)),
        link(std::make_unique<Link>(fx.loop(), *http, *http::Url::parse(url), "parent", probe_timeout_ms,
                                    forced_offline)) {}
  ~LinkEnv() { end(); }

  /// probe_now() stepped to its end; the answers it gave.
  std::vector<bool> probe() {
    std::vector<bool> got;
    link->probe_now([&got](bool a) { got.push_back(a); });
    if (!fx.run_until([&] { return !got.empty(); })) FAIL("probe_now() did not answer in time");
    return got;
  }
  void end() {
    if (ended_) return;
    ended_ = true;
    link->shutdown();
    link.reset();
    http.reset();
    CHECK(fx.finish() == 0);
  }

  LoopFixture fx;
  std::unique_ptr<http::HttpClient> http;
  std::unique_ptr<Link> link;

 private:
  bool ended_ = false;
};

}  // namespace

TEST_CASE("parent mode: header words, NotOutpost without one, the hierarchy rule", "[upstream][mode]") {
  using upstream::parent_mode_from_header;
  CHECK(parent_mode_from_header("ReadOnly") == ParentMode::ReadOnly);
  CHECK(parent_mode_from_header(" ReadWrite ") == ParentMode::ReadWrite);
  CHECK(parent_mode_from_header(std::nullopt) == ParentMode::NotOutpost);
  // An unknown word never blocks replay by accident: read as "not an Outpost".
  CHECK(parent_mode_from_header("readonly") == ParentMode::NotOutpost);
  CHECK(parent_mode_from_header("") == ParentMode::NotOutpost);
  CHECK(upstream::parent_mode_name(ParentMode::Unknown) == "Unknown");
  CHECK(upstream::parent_mode_name(ParentMode::NotOutpost) == "NotOutpost");

  using upstream::hierarchy_conflict;
  const std::string why = hierarchy_conflict(false, ParentMode::ReadOnly, "http://l5:5000/");
  CHECK(why ==
        "parent http://l5:5000/ is ReadOnly: a ReadWrite outpost cannot replay pushes to it; "
        "set registry.mode = \"ReadOnly\" or point [parent] at a ReadWrite registry");
  CHECK(hierarchy_conflict(true, ParentMode::ReadOnly, "x").empty());  // ReadOnly under ReadOnly: fine
  for (ParentMode m : {ParentMode::Unknown, ParentMode::ReadWrite, ParentMode::NotOutpost})
    CHECK(hierarchy_conflict(false, m, "x").empty());
}

TEST_CASE("link: the probe learns the parent's mode; a change is reported once", "[upstream][mode]") {
  ModeRegistry reg;
  reg.set("ReadOnly");
  LinkEnv env(reg.srv.url("/"));
  std::vector<ParentMode> changes;
  env.link->on_mode_change([&](ParentMode m) { changes.push_back(m); });
  CHECK(env.link->parent_mode() == ParentMode::Unknown);

  CHECK(env.probe() == std::vector<bool>{true});
  CHECK(env.link->parent_mode() == ParentMode::ReadOnly);
  // The same answer again changes nothing and reports nothing.
  CHECK(env.probe() == std::vector<bool>{true});
  CHECK(changes == std::vector<ParentMode>{ParentMode::ReadOnly});

  reg.set("");  // distribution: no header
  env.probe();
  CHECK(env.link->parent_mode() == ParentMode::NotOutpost);
  reg.set("ReadWrite", 401);  // a registry that wants auth still tells its mode
  env.probe();
  CHECK(env.link->parent_mode() == ParentMode::ReadWrite);
  // A proxy's 502 page in front of the registry says nothing about it.
  reg.set("", 502);
  CHECK(env.probe() == std::vector<bool>{false});
  CHECK(env.link->parent_mode() == ParentMode::ReadWrite);
  CHECK(changes == std::vector<ParentMode>{ParentMode::ReadOnly, ParentMode::NotOutpost, ParentMode::ReadWrite});
  env.end();
}

TEST_CASE("link: probe_now answers once per caller, joins a probe in flight, false when none can go",
          "[upstream][mode]") {
  ModeRegistry reg;
  {
    LinkEnv env(reg.srv.url("/"));
    std::vector<bool> a, b;
    env.link->probe_now([&](bool x) { a.push_back(x); });
    env.link->probe_now([&](bool x) { b.push_back(x); });
    REQUIRE(env.fx.run_until([&] { return !a.empty() && !b.empty(); }));
    CHECK(a == std::vector<bool>{true});
    CHECK(b == std::vector<bool>{true});
    CHECK(reg.probes() == 1);
    env.end();
  }
  {
    // Forced offline (parent.offline = true): no probe, an answer at once.
    LinkEnv env(reg.srv.url("/"), /*forced_offline=*/true);
    std::vector<bool> a;
    env.link->probe_now([&](bool x) { a.push_back(x); });
    CHECK(a == std::vector<bool>{false});
    env.end();
  }
  {
    // Nobody listening: answered false within the probe timeout; mode stays Unknown.
    LinkEnv env("http://127.0.0.1:" + std::to_string(pick_free_port()) + "/", false, 500);
    CHECK(env.probe() == std::vector<bool>{false});
    CHECK(env.link->parent_mode() == ParentMode::Unknown);
    CHECK(env.link->health().offline());
    env.end();
  }
  {
    // shutdown() answers a waiting caller (false) before it returns.
    HttpTestServer stall([](ScriptConn& c, const SeenRequest&) { c.stall(); });
    LinkEnv env(stall.url("/"));
    std::vector<bool> a;
    env.link->probe_now([&](bool x) { a.push_back(x); });
    REQUIRE(env.fx.run_until([&] { return stall.request_count() == 1; }));
    env.link->shutdown();
    CHECK(a == std::vector<bool>{false});
    env.end();
    stall.stop();
  }
}

TEST_CASE("link: answers to real requests carry the mode too", "[upstream][mode]") {
  ModeRegistry reg;
  reg.set("ReadOnly");
  LoopFixture fx;
  auto http = std::make_unique<http::HttpClient>(fx.loop(), nullptr);
  upstream::UpstreamOptions o;
  o.name = "parent";
  o.url = *http::Url::parse(reg.srv.url("/"));
  auto rc = std::make_unique<upstream::RegistryClient>(fx.loop(), *http, o);
  bool done = false;
  rc->request(http::Method::Get, "/v2/a/manifests/t", "a", {}, nullptr, nullptr, [&](Status) { done = true; });
  REQUIRE(fx.run_until([&] { return done; }));
  CHECK(rc->parent_mode() == ParentMode::ReadOnly);
  CHECK(reg.probes() == 0);  // learnt from the answer, not from a probe
  CHECK(rc->replay_blocked_reason(false).rfind("parent " + reg.srv.url("/") + " is ReadOnly: ", 0) == 0);
  CHECK(rc->replay_blocked_reason(true).empty());
  rc->shutdown();
  rc.reset();
  http.reset();
  CHECK(fx.finish() == 0);
}

TEST_CASE("link: outside a sync window no probe goes out; one goes at once when it opens", "[upstream][window]") {
  ModeRegistry reg;
  LinkEnv env(reg.srv.url("/"));
  env.link->set_background_allowed(false);
  CHECK_FALSE(env.link->background_allowed());
  // Everything that would probe: a suspicion, failed requests (3 open the breaker).
  env.link->suspect();
  for (int i = 0; i < upstream::Health::kFailuresToOpen; ++i) env.link->record(false, "test failure");
  CHECK(env.link->health().offline());
  // Observed over 1.5 s (beyond the breaker's first 1 s retry): nothing was sent,
  // and the state stays as last known.
  env.fx.run_until([] { return false; }, milliseconds(1'500));
  CHECK(reg.probes() == 0);
  CHECK(env.link->health().offline());

  env.link->set_background_allowed(true);
  REQUIRE(env.fx.run_until([&] { return reg.probes() == 1 && !env.link->health().offline(); }));
  CHECK(env.link->parent_mode() == ParentMode::ReadWrite);

  // probe_now() is the one explicit check (at start) and goes out regardless.
  env.link->set_background_allowed(false);
  CHECK(env.probe() == std::vector<bool>{true});
  CHECK(reg.probes() == 2);
  env.end();
}
