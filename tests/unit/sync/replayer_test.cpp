// sync::Replayer (issue #15) end to end on one machine: a real Store (replay
// on) behind a real StoreService, a real loop stepped on the test thread, and
// a scripted parent (tests/support/http_test_server.hpp). What is checked is
// what the parent received and what the queue says afterwards: a refusal for
// good fails the entry (and the manifest needing it) after one request; a
// 5xx is retried after the backoff and then delivered; a blob the parent has
// is not uploaded.
#include <catch2/catch.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <functional>
#include <optional>
#include <string>
#include <thread>

#include "http/client.hpp"
#include "store/store.hpp"
#include "storesvc/store_service.hpp"
#include "support/http_test_server.hpp"
#include "sync/replayer.hpp"
#include "unit/store/store_fixture.hpp"
#include "upstream/registry_client.hpp"
#include "uv/loop.hpp"

namespace outpost {
namespace {

using test::HttpTestServer;
using test::ScriptConn;
using test::SeenRequest;

constexpr const char* kManifestType = "application/vnd.oci.image.manifest.v1+json";

struct Env {
  explicit Env(test::Script script) : srv(std::move(script)) {
    store::StoreOptions so;
    so.replay = true;
    auto s = store::Store::open(box.root(), so);
    REQUIRE(s);
    svc.emplace(loop.get(), std::move(*s));
    http.emplace(loop.get(), nullptr);
    upstream::UpstreamOptions o;
    o.name = "parent";
    o.url = *http::Url::parse("http://127.0.0.1:" + std::to_string(srv.port()));
    o.timeouts.connect_ms = 2'000;
    o.timeouts.first_byte_ms = 5'000;
    o.timeouts.progress_ms = 5'000;
    rc.emplace(loop.get(), *http, o);
  }
  ~Env() {
    if (replayer) replayer->shutdown();
    while (uv::pending_work() > 0) uv_run(loop.get(), UV_RUN_ONCE);
    replayer.reset();
    rc.reset();
    http.reset();
    svc.reset();
  }
  bool run_until(const std::function<bool()>& done, std::chrono::milliseconds limit = std::chrono::seconds(10)) {
    const auto deadline = std::chrono::steady_clock::now() + limit;
    while (!done()) {
      if (std::chrono::steady_clock::now() > deadline) return false;
      uv_run(loop.get(), UV_RUN_NOWAIT);
      std::this_thread::yield();
    }
    return true;
  }
  /// Steps the loop for `d` (an observation period: nothing is awaited).
  void run_for(std::chrono::milliseconds d) {
    run_until([] { return false; }, d);
  }
  template <typename T>
  T store_call(std::function<Result<T>(store::Store&)> job) {
    std::optional<Result<T>> out;
    svc->run<T>(std::move(job), [&](Result<T> r) { out.emplace(std::move(r)); });
    REQUIRE(run_until([&] { return out.has_value(); }));
    REQUIRE(out->ok());
    return std::move(out->value());
  }
  /// One blob and a manifest naming it, pushed into repository "app".
  void push_image() {
    blob = Digest::sha256_of("layer bytes");
    manifest_bytes = R"({"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json"})";
    manifest = Digest::sha256_of(manifest_bytes);
    store_call<store::Descriptor>([d = blob](store::Store& s) { return s.put_blob("app", d, "layer bytes"); });
    store_call<store::ManifestInfo>([this](store::Store& s) {
      store::ManifestPut m;
      m.repo = "app";
      m.digest = manifest;
      m.media_type = kManifestType;
      m.refs.push_back({blob, true});
      m.tag = "v1";
      return s.put_manifest(m, manifest_bytes);
    });
  }
  void start(sync::ReplayerOptions o = {}) {
    o.random = [] { return 0.999999; };  // the upper edge of the jitter: delays are exact
    o.idle_poll_ms = 50;
    replayer.emplace(loop.get(), *svc, *rc, o);
    replayer->start();
  }
  store::ReplayStats stats() {
    return store_call<store::ReplayStats>([](store::Store& s) { return s.replay_stats(); });
  }
  size_t count(const std::string& method, const std::string& needle = {}) const {
    size_t n = 0;
    for (const auto& r : srv.requests())
      if (r.method == method && r.target.find(needle) != std::string::npos) ++n;
    return n;
  }

  store::test::Sandbox box;
  uv::Loop loop;  // destroyed after everything below
  std::optional<storesvc::StoreService> svc;
  std::optional<http::HttpClient> http;
  std::optional<upstream::RegistryClient> rc;
  std::optional<sync::Replayer> replayer;
  HttpTestServer srv;
  Digest blob;
  Digest manifest;
  std::string manifest_bytes;
};

std::string oci_error(const char* code, const char* message) {
  return std::string(R"({"errors":[{"code":")") + code + R"(","message":")" + message + R"("}]})";
}

/// A parent that holds every blob already (HEAD 200, so nothing is
/// uploaded) and accepts manifests; anything else is a 500.
void has_every_blob(ScriptConn& c, const SeenRequest& r) {
  if (r.method == "HEAD" && r.path().find("/blobs/") != std::string::npos)
    return void(c.send(test::head_only(200, {{"Content-Length", "11"}})));
  if (r.method == "PUT" && r.path().find("/manifests/") != std::string::npos)
    return void(c.send(test::reply(201, "", {{"Docker-Content-Digest", Digest::sha256_of(r.body).str()}})));
  c.send(test::reply(500));
}

}  // namespace

TEST_CASE("replayer: a blob refused for good fails at once with the parent's error, and so does its manifest",
          "[sync][replayer]") {
  Env env([](ScriptConn& c, const SeenRequest& r) {
    if (r.method == "GET" && r.path() == "/v2/") return void(c.send(test::reply(200, "{}")));
    if (r.method == "HEAD") return void(c.send(test::reply(404)));
    c.send(test::reply(403, oci_error("DENIED", "this site may not push here"),
                       {{"Content-Type", "application/json"}}));
  });
  env.push_image();
  env.start();
  REQUIRE(env.run_until([&] { return env.replayer->progress().failed == 1 && !env.replayer->busy(); }));
  auto st = env.stats();
  CHECK(st.pending == 0);
  CHECK(st.failed == 3);  // the blob, the manifest needing it, the tag needing that
  CHECK(env.replayer->progress().last_error.find("DENIED") != std::string::npos);
  auto probs = env.store_call<std::vector<store::ReplayEntry>>([](store::Store& s) { return s.replay_problems(10); });
  REQUIRE(!probs.empty());
  bool blob_reported = false;
  for (const auto& p : probs)
    if (p.kind == store::ReplayKind::Blob)
      blob_reported = p.error.find("DENIED") != std::string::npos && p.state == store::ReplayState::Failed;
  CHECK(blob_reported);
  // Not retried: over several idle polls no other write reaches the parent.
  const size_t posts = env.count("POST");
  CHECK(posts == 1);
  env.run_for(std::chrono::milliseconds(300));
  CHECK(env.count("POST") == posts);
  CHECK(env.count("PUT") == 0);
}

TEST_CASE("replayer: a 5xx is retried after the backoff, then the entries are delivered in order",
          "[sync][replayer]") {
  std::atomic<bool> healthy{false};
  Env env([&healthy](ScriptConn& c, const SeenRequest& r) {
    if (r.method == "GET" && r.path() == "/v2/") return void(c.send(test::reply(200, "{}")));
    if (!healthy) return void(c.send(test::reply(503, oci_error("UNAVAILABLE", "busy"))));
    has_every_blob(c, r);
  });
  env.push_image();
  env.start();
  REQUIRE(env.run_until([&] { return env.replayer->progress().retried >= 1 && !env.replayer->busy(); }));
  auto e = env.store_call<std::optional<store::ReplayEntry>>([](store::Store& s) { return s.replay_get(1); });
  REQUIRE(e);
  CHECK(e->kind == store::ReplayKind::Blob);
  CHECK(e->attempts == 1);
  CHECK(e->state == store::ReplayState::Pending);
  CHECK(e->error.find("503") != std::string::npos);
  // First retry 1 s after the failure (upper edge of the jitter).
  CHECK(e->next_attempt_ms - e->updated_ms <= 1'000);
  CHECK(e->next_attempt_ms - e->updated_ms > 800);
  // Not before its time: nothing else went out meanwhile.
  const size_t heads = env.count("HEAD");
  env.run_for(std::chrono::milliseconds(300));
  CHECK(env.count("HEAD") == heads);

  healthy = true;
  REQUIRE(env.run_until([&] { return env.replayer->progress().sent == 3 && !env.replayer->busy(); }));
  auto st = env.stats();
  CHECK(st.pending == 0);
  CHECK(st.failed == 0);
  CHECK(st.done == 3);
  CHECK(env.count("PATCH") == 0);  // found by HEAD, never uploaded
  // The manifest by digest went before the tag.
  std::vector<std::string> puts;
  for (const auto& r : env.srv.requests())
    if (r.method == "PUT") puts.push_back(r.path());
  REQUIRE(puts.size() == 2);
  CHECK(puts[0] == "/v2/app/manifests/" + env.manifest.str());
  CHECK(puts[1] == "/v2/app/manifests/v1");
}

TEST_CASE("replayer: stop() cancels what is in flight and leaves the entries pending", "[sync][replayer]") {
  Env env([](ScriptConn& c, const SeenRequest& r) {
    if (r.method == "GET" && r.path() == "/v2/") return void(c.send(test::reply(200, "{}")));
    c.stall();  // the parent never answers the HEAD
  });
  env.push_image();
  env.start();
  REQUIRE(env.run_until([&] { return env.count("HEAD") >= 1; }));
  CHECK(env.replayer->busy());
  env.replayer->stop();
  CHECK_FALSE(env.replayer->busy());
  CHECK(env.replayer->in_flight() == 0);
  auto st = env.stats();
  CHECK(st.pending == 3);
  CHECK(st.failed == 0);
  auto e = env.store_call<std::optional<store::ReplayEntry>>([](store::Store& s) { return s.replay_get(1); });
  REQUIRE(e);
  CHECK(e->attempts == 0);  // a cancelled attempt is not a failure
}

TEST_CASE("replayer: set_parent (SIGHUP) sends the next entries to the new parent", "[sync][replayer]") {
  // The first parent answers only its probe: every write waits (503) there.
  Env env([](ScriptConn& c, const SeenRequest& r) {
    if (r.method == "GET" && r.path() == "/v2/") return void(c.send(test::reply(200, "{}")));
    c.send(test::reply(503, oci_error("UNAVAILABLE", "busy")));
  });
  HttpTestServer second([](ScriptConn& c, const SeenRequest& r) {
    if (r.method == "GET" && r.path() == "/v2/") return void(c.send(test::reply(200, "{}")));
    has_every_blob(c, r);
  });
  env.push_image();
  env.start();
  REQUIRE(env.run_until([&] { return env.replayer->progress().retried >= 1 && !env.replayer->busy(); }));
  // What the replayer asked of the first parent (its link's own health
  // probes, GET /v2/, are not the replayer's and may come at any time).
  auto replay_requests = [](const HttpTestServer& srv) {
    size_t n = 0;
    for (const auto& r : srv.requests()) n += !(r.method == "GET" && r.path() == "/v2/");
    return n;
  };
  const size_t asked_first = replay_requests(env.srv);

  upstream::UpstreamOptions o;
  o.name = "parent";
  o.url = *http::Url::parse("http://127.0.0.1:" + std::to_string(second.port()));
  auto next = std::make_shared<upstream::RegistryClient>(env.loop.get(), *env.http, o);
  env.replayer->set_parent(next);
  env.replayer->retry_now();
  REQUIRE(env.run_until([&] { return env.replayer->progress().sent == 3 && !env.replayer->busy(); }));
  CHECK(env.stats().pending == 0);
  CHECK(replay_requests(env.srv) == asked_first);  // nothing more to the replaced parent
  size_t puts = 0;
  for (const auto& r : second.requests()) puts += r.method == "PUT";
  CHECK(puts == 2);
  CHECK(env.replayer->blocked_reason().empty());
  env.replayer->shutdown();
  while (uv::pending_work() > 0) uv_run(env.loop.get(), UV_RUN_ONCE);
  env.replayer.reset();
  next.reset();
}

TEST_CASE("replayer: a tag moved while its PUT is in flight is sent after that PUT, and other entries go meanwhile",
          "[sync][replayer]") {
  // The parent holds the first PUT of tag v1 until the test releases it.
  std::atomic<bool> release{false};
  std::atomic<int> tag_puts{0};
  Env env([&](ScriptConn& c, const SeenRequest& r) {
    if (r.method == "GET" && r.path() == "/v2/") return void(c.send(test::reply(200, "{}")));
    if (r.method == "PUT" && r.path() == "/v2/app/manifests/v1" && tag_puts.fetch_add(1) == 0) {
      const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
      while (!release && std::chrono::steady_clock::now() < deadline)
        std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    has_every_blob(c, r);
  });
  env.push_image();
  env.start();
  REQUIRE(env.run_until([&] { return env.count("PUT", "/manifests/v1") == 1; }));
  // v1 moves to another manifest while its old value is on its way.
  const std::string second = R"({"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","x":2})";
  const Digest m2 = Digest::sha256_of(second);
  env.store_call<store::ManifestInfo>([&](store::Store& s) {
    store::ManifestPut m;
    m.repo = "app";
    m.digest = m2;
    m.media_type = kManifestType;
    m.refs.push_back({env.blob, true});
    m.tag = "v1";
    return s.put_manifest(m, second);
  });
  // The new manifest goes while the held PUT waits (free slots are polled),
  // but the tag's new value does not overtake its old one.
  REQUIRE(env.run_until([&] { return env.count("PUT", "/manifests/" + m2.str()) == 1; }));
  env.run_for(std::chrono::milliseconds(200));
  CHECK(env.count("PUT", "/manifests/v1") == 1);
  release = true;
  REQUIRE(env.run_until([&] { return env.stats().pending == 0 && !env.replayer->busy(); }));
  std::vector<std::string> tag_bodies;
  for (const auto& r : env.srv.requests())
    if (r.method == "PUT" && r.path() == "/v2/app/manifests/v1") tag_bodies.push_back(r.body);
  REQUIRE(tag_bodies.size() == 2);
  CHECK(tag_bodies[0] == env.manifest_bytes);
  CHECK(tag_bodies[1] == second);  // the parent ends on the newer value
}

TEST_CASE("replayer: a manifest refused for a missing blob sends the blob again, then the manifest",
          "[sync][replayer]") {
  // The parent lost the layer after it acknowledged it (its GC): the first
  // manifest PUT is refused with MANIFEST_BLOB_UNKNOWN.
  std::atomic<int> manifest_puts{0};
  Env env([&](ScriptConn& c, const SeenRequest& r) {
    if (r.method == "GET" && r.path() == "/v2/") return void(c.send(test::reply(200, "{}")));
    if (r.method == "PUT" && r.path() == "/v2/app/manifests/v1" && manifest_puts.fetch_add(1) == 0)
      return void(c.send(test::reply(400, oci_error("MANIFEST_BLOB_UNKNOWN", "blob unknown to registry"),
                                     {{"Content-Type", "application/json"}})));
    has_every_blob(c, r);
  });
  env.push_image();
  env.start();
  REQUIRE(env.run_until([&] { return env.stats().pending == 0 && !env.replayer->busy(); },
                        std::chrono::seconds(5)));
  // Asked for the blob again after the refusal, then the tag went again.
  std::vector<std::string> seen;
  for (const auto& r : env.srv.requests())
    if (r.method != "GET") seen.push_back(r.method + " " + r.path());
  const std::string head = "HEAD /v2/app/blobs/" + env.blob.str();
  const std::string put_tag = "PUT /v2/app/manifests/v1";
  auto refused = std::find(seen.begin(), seen.end(), put_tag);
  REQUIRE(refused != seen.end());
  CHECK(std::find(refused + 1, seen.end(), head) != seen.end());
  CHECK(std::count(seen.begin(), seen.end(), put_tag) == 2);
  auto st = env.stats();
  CHECK(st.failed == 0);
}

}  // namespace outpost
