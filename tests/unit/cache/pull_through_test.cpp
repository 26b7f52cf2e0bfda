// The pull-through cache (src/cache/pull_through.cpp, src/cache/fill.cpp)
// with everything real: a Store in a temp dir, a uv loop on a thread
// (LoopFixture), an http::Server for the downstream clients (blocking
// TestClients on the test thread), and a scripted upstream registry on
// loopback (HttpTestServer) reached through HttpClient + RegistryClient.
//
// Blobs: one upstream GET per miss, teeing to every client that asks
// meanwhile, committed as Cached only when the digest matches; a failed
// fill never ends a client response as complete; HEAD asks the parent with
// HEAD. Manifests: fetched once per reference (coalesced), stored with the
// tag, revalidated with HEAD after tag_ttl, served from the cache when the
// parent fails or is slow; every way the parent's answer can be wrong.
// Routing: parent, ?ns= and path-prefix named upstreams.
//
// The cache objects live on the loop thread: the test creates, calls and
// destroys them through fx.call()/post(); results cross back under fx.mu.
#include <catch2/catch.hpp>
#include <atomic>
#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "base/digest.hpp"
#include "cache/blob_response.hpp"
#include "cache/fill.hpp"
#include "cache/hot_manifests.hpp"
#include "cache/pull_through.hpp"
#include "http/client.hpp"
#include "store/store.hpp"
#include "storesvc/store_service.hpp"
#include "support/http_test_server.hpp"
#include "support/loop_fixture.hpp"
#include "unit/store/store_fixture.hpp"
#include "upstream/registry_client.hpp"
#include "uv/work.hpp"

using namespace outpost;
using namespace outpost::test;
using cache::ManifestResult;
using cache::PullThrough;
using cache::Route;
using std::chrono::milliseconds;

namespace {

std::string pattern(size_t n, unsigned seed = 7) { return store::test::pattern_bytes(n, seed); }

std::string blob_path(const std::string& repo, const Digest& d) { return "/v2/" + repo + "/blobs/" + d.str(); }

const char* kOciManifestType = "application/vnd.oci.image.manifest.v1+json";

/// A small valid OCI image manifest (its blobs need not exist: pull-through
/// stores manifests before their blobs).
std::string manifest_json(const std::string& note) {
  const std::string a = "sha256:" + std::string(64, 'a');
  const std::string b = "sha256:" + std::string(64, 'b');
  return R"({"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",)"
         R"("config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":")" + a + R"(","size":2},)"
         R"("layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":")" + b + R"(","size":3}],)"
         R"("annotations":{"note":")" + note + R"("}})";
}

/// The upstream's answer for a manifest: GET gets the bytes, HEAD the head.
std::string manifest_reply(const SeenRequest& r, const std::string& bytes, HeaderList extra = {}) {
  extra.emplace_back("Content-Type", kOciManifestType);
  extra.emplace_back("Docker-Content-Digest", Digest::sha256_of(bytes).str());
  return for_method(r, reply(200, bytes, std::move(extra)));
}

/// Answers /v2/ so that health probes never disturb a script.
bool probe(ScriptConn& c, const SeenRequest& r) {
  if (r.path() != "/v2/") return false;
  c.send(reply(200, "{}"));
  return true;
}

struct ManifestCall {
  bool done = false;
  std::optional<Result<ManifestResult>> result;
};

/// Store + upstream + server + cache, torn down on the loop thread.
class CacheEnv {
 public:
  explicit CacheEnv(Script upstream_script, cache::PullOptions popts = default_popts(),
                    std::function<void(upstream::UpstreamOptions&)> tweak = {})
      : upstream(std::move(upstream_script)) {
    auto st = store::Store::open(box.root());
    REQUIRE(st.ok());
    store = st->get();  // the test thread reads it directly; the cache goes through svc
    server = std::make_unique<ServerFixture>(http::ServerLimits{}, [this](ServerFixture&, const http::ExchangePtr& ex) {
      handle(ex);
    });
    fx().call([&] {
      http = std::make_unique<http::HttpClient>(fx().loop(), nullptr);
      svc = std::make_unique<storesvc::StoreService>(fx().loop(), std::move(*st));
      pull = std::make_unique<PullThrough>(fx().loop(), svc.get(), popts);
      upstream::UpstreamOptions o;
      o.name = "parent";
      o.url = *http::Url::parse(upstream.url());
      if (tweak) tweak(o);
      pull->set_parent(std::make_unique<upstream::RegistryClient>(fx().loop(), *http, o));
    });
  }
  ~CacheEnv() { end(); }

  static cache::PullOptions default_popts() {
    cache::PullOptions p;
    p.revalidate_wait_ms = 2000;
    return p;
  }
  static cache::PullOptions read_only_popts() {
    auto p = default_popts();
    p.read_only = true;
    return p;
  }

  LoopFixture& fx() { return *server; }
  int port() const { return server->port; }

  /// Adds a named upstream (on the loop thread).
  void add_named(const std::string& name, const std::string& url, bool library_prefix = false) {
    fx().call([&] {
      upstream::UpstreamOptions o;
      o.name = name;
      o.url = *http::Url::parse(url);
      o.library_prefix = library_prefix;
      pull->add_upstream(std::make_unique<upstream::RegistryClient>(fx().loop(), *http, o));
    });
  }

  Route route(const std::string& name, std::optional<std::string> ns = std::nullopt) {
    auto r = fx().call([&] { return pull->route(name, ns); });
    if (!r) FAIL("no route for " << name);
    // Tests keep their Route past end(): a non-owning copy, so the client
    // is freed with the cache, before the loop closes (Route shares
    // ownership since issue #17's reload).
    r->upstream = std::shared_ptr<upstream::RegistryClient>(std::shared_ptr<void>(), r->upstream.get());
    return *r;
  }

  /// Starts PullThrough::manifest on the loop; `call` is filled under fx.mu.
  void manifest(const Route& r, const std::string& ref, ManifestCall& call) {
    fx().post([this, r, ref, &call] {
      pull->manifest(r, ref, true, [this, &call](Result<ManifestResult> res) {
        fx().update([&] {
          call.result.emplace(std::move(res));
          call.done = true;
        });
      });
    });
  }
  Result<ManifestResult> manifest_now(const Route& r, const std::string& ref) {
    ManifestCall c;
    manifest(r, ref, c);
    if (!fx().wait([&] { return c.done; })) FAIL("manifest() did not answer in time");
    // A fetched manifest is answered at its verified hash and committed
    // behind; the tests look at the store next, so wait for the commit.
    if (!eventually([&] { return fx().call([&] { return svc->pending(); }) == 0; }))
      FAIL("the store did not settle in time");
    std::lock_guard<std::mutex> g(fx().mu);
    return *c.result;
  }

  /// Memoizes manifests as the daemon does (App sets the memo).
  void enable_memo() {
    fx().call([&] {
      memo = std::make_unique<cache::HotManifests>(svc.get());
      pull->set_memo(memo.get());
    });
  }
  /// PullThrough::hot_manifest on the loop: the bytes it would answer with
  /// at once, or nullopt when it leaves the request to manifest().
  std::optional<std::string> hot(const Route& r, const std::string& ref) {
    return fx().call([&]() -> std::optional<std::string> {
      const cache::HotManifest* h = pull->hot_manifest(r, ref);
      if (!h) return std::nullopt;
      return *h->bytes;
    });
  }

  cache::PullStats stats() { return fx().call([&] { return pull->stats(); }); }
  size_t fills() { return fx().call([&] { return pull->fills_in_flight(); }); }

  /// Polls `pred` (on the test thread; it may call() into the loop) until it
  /// holds or kWait passes.
  bool eventually(const std::function<bool()>& pred) {
    const auto deadline = Clock::now() + kWait;
    while (Clock::now() < deadline) {
      if (pred()) return true;
      fx().wait([] { return false; }, milliseconds(5));
    }
    return false;
  }

  /// Tears down in the daemon's order (App::run): the server and its
  /// connections; shutdown() of the upstreams; the HTTP client (failing what
  /// is still in flight, while the RegistryClients its callbacks capture are
  /// alive); store jobs drained; then the cache. Every handle must be gone.
  void end() {
    if (ended_) return;
    ended_ = true;
    server->stop_server();
    CHECK(fx().call_quietly([&] {
      pull->shutdown();
      http.reset();
    }));
    CHECK(eventually([&] { return fx().call([] { return uv::pending_work() == 0; }); }));
    CHECK(fx().call_quietly([&] {
      pull.reset();
      memo.reset();
      svc.reset();  // nothing pending: drain() returns at once
    }));
    // PullThrough's revalidation timers are not owned by it: let them run out.
    bool quiet = eventually([&] {
      return fx().call([&] {
        int live = 0;
        uv_walk(fx().loop(), [](uv_handle_t* h, void* arg) {
          if (h->type == UV_TIMER && uv_is_active(h) && !uv_is_closing(h)) ++*static_cast<int*>(arg);
        }, &live);
        return live == 0;
      });
    });
    CHECK(quiet);
    server.reset();  // ServerFixture: close-walk, uv_loop_close == 0
    upstream.stop();
  }

  store::test::Sandbox box;
  store::Store* store = nullptr;  ///< owned by svc
  std::unique_ptr<storesvc::StoreService> svc;  // loop thread only
  HttpTestServer upstream;
  std::unique_ptr<ServerFixture> server;
  std::unique_ptr<http::HttpClient> http;  // loop thread only
  std::unique_ptr<PullThrough> pull;       // loop thread only
  std::unique_ptr<cache::HotManifests> memo;  // loop thread only; after enable_memo()

 private:
  /// GET/HEAD /v2/<name>/blobs/<digest>[?ns=]: the local file when held
  /// (through cache::respond_blob, as api/blobs.cpp does), else the
  /// pull-through cache.
  void handle(const http::ExchangePtr& ex) {
    const std::string& path = ex->req().path;
    size_t at = path.find("/blobs/");
    if (path.rfind("/v2/", 0) != 0 || at == std::string::npos) return ex->respond(404, "not a blob path");
    std::string name = path.substr(4, at - 4);
    auto d = Digest::parse(path.substr(at + 7));
    if (!d) return ex->respond_error(Errc::DigestInvalid, "bad digest");
    auto route = pull->route(name, ex->req().query_param("ns"));
    if (!route) return ex->respond_error(Errc::NameUnknown, name);
    auto local = store->open_blob(route->local_repo, *d);
    if (local) {
      ex->add_header("X-Served-By", "store");
      return cache::respond_blob(ex, cache::BlobSource::file(*d, std::move(local->fd), local->size));
    }
    pull->blob(*route, *d, ex);
  }

  bool ended_ = false;
};

/// Scripted blob upstream: GET/HEAD /v2/<repo>/blobs/<digest> answers `bytes`.
Script blob_upstream(std::string bytes) {
  return [bytes](ScriptConn& c, const SeenRequest& r) {
    if (probe(c, r)) return;
    c.send(for_method(r, reply(200, bytes, {{"Content-Type", "application/octet-stream"}})));
  };
}

int status_of(const std::optional<outpost::test::ClientResponse>& r) { return r ? r->status : -1; }

/// A blob GET answered with its first `half` bytes, the rest once the test
/// opens gate "rest": a fill that stays in flight while the test looks.
void send_blob_in_two_halves(ScriptConn& c, std::string_view bytes, size_t half) {
  c.send(head_only(200, {{"Content-Length", std::to_string(bytes.size())}}));
  c.send(bytes.substr(0, half));
  if (!c.wait_gate("rest")) return;
  c.send(bytes.substr(half));
}

}  // namespace

// ---------------------------------------------------------------------------
// Blobs

TEST_CASE("cache: a blob miss is fetched once, served to the client and kept as cached", "[cache][fill]") {
  const std::string bytes = pattern(700 * 1024 + 3);
  const Digest d = Digest::sha256_of(bytes);
  CacheEnv env(blob_upstream(bytes));

  TestClient a(env.port());
  REQUIRE(a.send(get_request(blob_path("lib/app", d))));
  auto r = a.read_response();
  REQUIRE(r);
  CHECK(r->status == 200);
  CHECK(r->complete);
  CHECK(r->body.size() == bytes.size());
  CHECK(store::test::same_bytes(r->body, bytes));
  CHECK(r->header("Docker-Content-Digest") == d.str());
  CHECK(r->header("Content-Length") == std::to_string(bytes.size()));
  CHECK(env.upstream.count_path(blob_path("lib/app", d)) == 1);

  // Committed as cached content of the repository.
  REQUIRE(env.eventually([&] { return env.fills() == 0; }));
  auto size = env.store->stat_blob("lib/app", d);
  REQUIRE(size.ok());
  CHECK(*size == bytes.size());
  CHECK(env.stats().fills_committed == 1);
  CHECK(store::test::files_under(env.box.root() + "/uploads").empty());

  // The next request is the store's; the upstream is not asked again.
  REQUIRE(a.send(get_request(blob_path("lib/app", d))));
  auto again = a.read_response();
  REQUIRE(again);
  CHECK(again->status == 200);
  CHECK(again->header("X-Served-By") == "store");
  CHECK(store::test::same_bytes(again->body, bytes));
  CHECK(env.upstream.count_path(blob_path("lib/app", d)) == 1);
  env.end();
}

TEST_CASE("cache: a repository that joins a fill while it commits holds the blob too", "[cache][fill]") {
  // A second pull of the same layer under another repository can arrive
  // after the fill's bytes were verified (its first client is done) but
  // before the durable commit ended. It is served from the fill, so its
  // repository must hold the blob afterwards: else, once the parent is
  // offline, that repository answers 503 for a layer it was served (seen
  // with dockerd pulling through a mirror, then by name).
  const std::string bytes = pattern(64 * 1024 + 5, 11);
  const Digest d = Digest::sha256_of(bytes);
  CacheEnv env(blob_upstream(bytes));
  const Route r = env.route("lib/app");
  std::shared_ptr<cache::Fill> fill;
  bool finished = false;
  bool joined = false;  // loop thread
  env.fx().call([&] {
    fill = std::make_shared<cache::Fill>(env.svc.get(), r, d, [&](cache::Fill*) {
      env.fx().update([&] { finished = true; });
    });
    fill->watch([&] {
      // Committing: the commit job has taken its list of repositories.
      if (joined || fill->state() != cache::Fill::State::Committing) return;
      fill->add_reader_repo("lib/late");
      joined = true;
    });
    fill->start();
  });
  REQUIRE(env.fx().wait([&] { return finished; }));
  CHECK(env.fx().call([&] { return joined && fill->state() == cache::Fill::State::Done; }));
  CHECK(env.store->stat_blob("lib/app", d).ok());
  auto late = env.store->stat_blob("lib/late", d);
  REQUIRE(late.ok());
  CHECK(*late == bytes.size());
  env.fx().call([&] { fill.reset(); });
  env.end();
}

TEST_CASE("cache: concurrent clients of one blob share one upstream fetch", "[cache][fill]") {
  const std::string bytes = pattern(512 * 1024, 3);
  const Digest d = Digest::sha256_of(bytes);
  const size_t half = bytes.size() / 2;
  CacheEnv env([&](ScriptConn& c, const SeenRequest& r) {
    if (probe(c, r)) return;
    send_blob_in_two_halves(c, bytes, half);
  });

  TestClient a(env.port()), b(env.port()), late(env.port());
  REQUIRE(a.send(get_request(blob_path("r", d))));
  // a is streaming the first half (the fill holds back only the final byte).
  REQUIRE(a.fill_to(half, Clock::now() + kWait));
  REQUIRE(b.send(get_request(blob_path("r", d))));
  REQUIRE(env.fx().wait_count("requests", 2));
  // b joined late and starts from byte 0 of the session file.
  REQUIRE(b.fill_to(half, Clock::now() + kWait));
  CHECK(env.fills() == 1);
  env.upstream.open_gate("rest");
  auto ra = a.read_response();
  auto rb = b.read_response();
  REQUIRE(ra);
  REQUIRE(rb);
  CHECK(ra->complete);
  CHECK(rb->complete);
  CHECK(store::test::same_bytes(ra->body, bytes));
  CHECK(store::test::same_bytes(rb->body, bytes));
  CHECK(env.upstream.count_path(blob_path("r", d)) == 1);

  REQUIRE(env.eventually([&] { return env.fills() == 0; }));
  REQUIRE(late.send(get_request(blob_path("r", d))));
  auto rl = late.read_response();
  REQUIRE(rl);
  CHECK(rl->header("X-Served-By") == "store");
  CHECK(env.upstream.count_path(blob_path("r", d)) == 1);
  env.end();
}

TEST_CASE("cache: a fill for one repository serves another only if the parent holds the blob there",
          "[cache][fill]") {
  // secret/app's layer is being filled. A client of public/app (which the
  // parent does not hold it in) must get the parent's 404, not the bytes;
  // a client of other/app (which holds it too) is served from the same fill
  // and its repository holds the blob afterwards. It failed before: any
  // repository joined a fill in flight without asking.
  const std::string bytes = pattern(512 * 1024, 5);
  const Digest d = Digest::sha256_of(bytes);
  const size_t half = bytes.size() / 2;
  CacheEnv env([&](ScriptConn& c, const SeenRequest& r) {
    if (probe(c, r)) return;
    if (r.path() == blob_path("public/app", d)) return (void)c.send(head_only(404, {{"Content-Length", "0"}}));
    if (r.method == "HEAD")
      return (void)c.send(head_only(200, {{"Content-Length", std::to_string(bytes.size())}}));
    send_blob_in_two_halves(c, bytes, half);
  });

  TestClient a(env.port()), pub(env.port()), other(env.port());
  REQUIRE(a.send(get_request(blob_path("secret/app", d))));
  REQUIRE(a.fill_to(half, Clock::now() + kWait));
  REQUIRE(env.fills() == 1);

  REQUIRE(pub.send(get_request(blob_path("public/app", d))));
  auto rp = pub.read_response();
  REQUIRE(rp);
  CHECK(rp->status == 404);
  CHECK(rp->body.find(std::string_view(bytes).substr(0, 64)) == std::string::npos);
  CHECK_FALSE(rp->header("Docker-Content-Digest"));
  REQUIRE(pub.send(get_request(blob_path("public/app", d), {}, "HEAD")));
  auto hp = pub.read_response(kWait, /*head_only=*/true);
  REQUIRE(hp);
  CHECK(hp->status == 404);

  REQUIRE(other.send(get_request(blob_path("other/app", d))));
  REQUIRE(other.fill_to(half, Clock::now() + kWait));
  env.upstream.open_gate("rest");
  auto ra = a.read_response();
  auto ro = other.read_response();
  REQUIRE(ra);
  REQUIRE(ro);
  CHECK(ro->status == 200);
  CHECK(ro->complete);
  CHECK(store::test::same_bytes(ro->body, bytes));
  CHECK(store::test::same_bytes(ra->body, bytes));
  // One download; public/app's answer came from a HEAD.
  CHECK(env.upstream.count_path(blob_path("secret/app", d)) == 1);
  CHECK(env.upstream.count_path(blob_path("other/app", d)) == 1);
  REQUIRE(env.eventually([&] { return env.fills() == 0; }));
  CHECK(env.store->stat_blob("other/app", d).ok());
  CHECK_FALSE(env.store->stat_blob("public/app", d).ok());
  env.end();
}

TEST_CASE("cache: a chunked upstream blob reaches the client whole", "[cache][fill]") {
  const std::string bytes = pattern(300000, 11);
  const Digest d = Digest::sha256_of(bytes);
  CacheEnv env([&](ScriptConn& c, const SeenRequest& r) {
    if (probe(c, r)) return;
    c.send(chunked_reply(200, {bytes.substr(0, 1000), bytes.substr(1000, 200000), bytes.substr(201000)}));
  });
  TestClient a(env.port());
  REQUIRE(a.send(get_request(blob_path("r", d))));
  auto r = a.read_response();
  REQUIRE(r);
  CHECK(r->status == 200);
  CHECK(r->complete);
  CHECK(r->chunked);
  CHECK(store::test::same_bytes(r->body, bytes));
  REQUIRE(env.eventually([&] { return env.fills() == 0; }));
  CHECK(env.store->stat_blob("r", d).ok());
  env.end();
}

TEST_CASE("cache: bytes that do not hash to the digest never complete a response and are not kept",
          "[cache][fill]") {
  const std::string bytes = pattern(100000, 5);
  const Digest claimed = Digest::sha256_of("something else");
  CacheEnv env(blob_upstream(bytes));
  TestClient a(env.port());
  REQUIRE(a.send(get_request(blob_path("r", claimed))));
  auto r = a.read_response();
  REQUIRE(r);
  CHECK(r->status == 200);
  CHECK_FALSE(r->complete);  // cut before the final byte
  CHECK(r->body.size() < bytes.size());
  REQUIRE(env.eventually([&] { return env.fills() == 0; }));
  CHECK_FALSE(env.store->stat_blob("r", claimed).ok());
  CHECK(env.stats().fills_failed == 1);
  CHECK(env.eventually([&] { return store::test::files_under(env.box.root() + "/uploads").empty(); }));
  CHECK(store::test::blob_files(env.box.root()).empty());
  env.end();
}

TEST_CASE("cache: an upstream that drops mid-body: the client's response is broken; the next miss refetches",
          "[cache][fill]") {
  const std::string bytes = pattern(200000, 9);
  const Digest d = Digest::sha256_of(bytes);
  CacheEnv env([&](ScriptConn& c, const SeenRequest& r) {
    if (probe(c, r)) return;
    if (r.seq_on_conn == 0 && r.conn == 0) {
      c.send(head_only(200, {{"Content-Length", std::to_string(bytes.size())}}) + bytes.substr(0, 50000));
      return c.close();
    }
    c.send(reply(200, bytes));
  });
  {
    TestClient a(env.port());
    REQUIRE(a.send(get_request(blob_path("r", d))));
    auto r = a.read_response();
    REQUIRE(r);
    CHECK(r->status == 200);
    CHECK_FALSE(r->complete);
    CHECK(r->body.size() <= 50000);
  }
  REQUIRE(env.eventually([&] { return env.fills() == 0; }));
  CHECK_FALSE(env.store->stat_blob("r", d).ok());

  TestClient b(env.port());
  REQUIRE(b.send(get_request(blob_path("r", d))));
  auto r2 = b.read_response();
  REQUIRE(r2);
  CHECK(r2->complete);
  CHECK(store::test::same_bytes(r2->body, bytes));
  CHECK(env.upstream.count_path(blob_path("r", d)) == 2);
  env.end();
}

TEST_CASE("cache: an empty blob is filled and kept (the parent may finish before the session exists)",
          "[cache][fill]") {
  const Digest d = Digest::sha256_of("");
  CacheEnv env(blob_upstream(""));
  TestClient a(env.port());
  REQUIRE(a.send(get_request(blob_path("r", d))));
  auto r = a.read_response();
  REQUIRE(r);
  CHECK(r->status == 200);
  CHECK(r->complete);
  CHECK(r->body.empty());
  CHECK(r->header("Content-Length") == "0");
  CHECK(r->header("ETag") == "\"" + d.str() + "\"");
  REQUIRE(env.eventually([&] { return env.fills() == 0; }));
  CHECK(env.stats().fills_committed == 1);
  auto size = env.store->stat_blob("r", d);
  REQUIRE(size.ok());
  CHECK(*size == 0);
  env.end();
}

TEST_CASE("cache: an upstream 404 is BLOB_UNKNOWN; other statuses are UPSTREAM_ERROR", "[cache][fill]") {
  const Digest d = Digest::sha256_of("missing");
  CacheEnv env([&](ScriptConn& c, const SeenRequest& r) {
    if (probe(c, r)) return;
    if (r.path().find("/missing/") != std::string::npos) return (void)c.send(reply(404, R"({"errors":[]})"));
    c.send(reply(403, "forbidden"));
  });
  TestClient a(env.port());
  REQUIRE(a.send(get_request(blob_path("missing", d))));
  auto r = a.read_response();
  REQUIRE(r);
  CHECK(r->status == 404);
  CHECK(r->complete);
  CHECK(r->body.find("BLOB_UNKNOWN") != std::string::npos);

  REQUIRE(a.send(get_request(blob_path("denied", d))));
  auto s = a.read_response();
  REQUIRE(s);
  CHECK(s->status == 502);
  CHECK(s->body.find("UPSTREAM_ERROR") != std::string::npos);

  REQUIRE(env.eventually([&] { return env.fills() == 0; }));
  CHECK(env.eventually([&] { return store::test::files_under(env.box.root() + "/uploads").empty(); }));
  env.end();
}

TEST_CASE("cache: an unreachable upstream answers 503 UNAVAILABLE", "[cache][fill]") {
  const Digest d = Digest::sha256_of("x");
  CacheEnv env(blob_upstream("x"), CacheEnv::default_popts(), [](upstream::UpstreamOptions& o) {
    o.url = *http::Url::parse("http://127.0.0.1:" + std::to_string(pick_free_port()) + "/");
  });
  TestClient a(env.port());
  REQUIRE(a.send(get_request(blob_path("r", d))));
  auto r = a.read_response();
  REQUIRE(r);
  CHECK(r->status == 503);
  CHECK(r->body.find("UNAVAILABLE") != std::string::npos);
  env.end();
}

TEST_CASE("cache: a client that leaves mid-fill does not stop the fill", "[cache][fill]") {
  const std::string bytes = pattern(400000, 21);
  const Digest d = Digest::sha256_of(bytes);
  CacheEnv env([&](ScriptConn& c, const SeenRequest& r) {
    if (probe(c, r)) return;
    c.send(head_only(200, {{"Content-Length", std::to_string(bytes.size())}}) + bytes.substr(0, 1000));
    if (!c.wait_gate("rest")) return;
    c.send(bytes.substr(1000));
  });
  {
    TestClient a(env.port());
    REQUIRE(a.send(get_request(blob_path("r", d))));
    REQUIRE(a.fill_to(1000, Clock::now() + kWait));
  }  // gone
  env.upstream.open_gate("rest");
  REQUIRE(env.eventually([&] { return env.fills() == 0; }));
  CHECK(env.store->stat_blob("r", d).ok());
  CHECK(env.stats().fills_committed == 1);
  env.end();
}

TEST_CASE("cache: ReadOnly: HEAD of an uncached blob asks the parent with HEAD and downloads nothing", "[cache][fill]") {
  const std::string bytes = pattern(123456, 2);
  const Digest d = Digest::sha256_of(bytes);
  CacheEnv env(blob_upstream(bytes), CacheEnv::read_only_popts());
  TestClient a(env.port());
  REQUIRE(a.send(get_request(blob_path("r", d), {}, "HEAD")));
  auto r = a.read_response(kWait, /*head_only=*/true);
  REQUIRE(r);
  CHECK(r->status == 200);
  CHECK(r->header("Content-Length") == std::to_string(bytes.size()));
  CHECK(r->header("Docker-Content-Digest") == d.str());
  auto seen = env.upstream.requests();
  size_t gets = 0, heads = 0;
  for (const auto& s : seen) {
    if (s.path() != blob_path("r", d)) continue;
    if (s.method == "GET") ++gets;
    if (s.method == "HEAD") ++heads;
  }
  CHECK(heads == 1);
  CHECK(gets == 0);
  CHECK(env.fills() == 0);
  CHECK_FALSE(env.store->stat_blob("r", d).ok());
  env.end();
}

TEST_CASE("cache: HEAD during a fill that knows the size is answered by the fill", "[cache][fill]") {
  const std::string bytes = pattern(250000, 31);
  const Digest d = Digest::sha256_of(bytes);
  CacheEnv env([&](ScriptConn& c, const SeenRequest& r) {
    if (probe(c, r)) return;
    if (r.method == "HEAD") return (void)c.send(head_only(500));  // must not be asked
    c.send(head_only(200, {{"Content-Length", std::to_string(bytes.size())}}) + bytes.substr(0, 1000));
    if (!c.wait_gate("rest")) return;
    c.send(bytes.substr(1000));
  });
  TestClient a(env.port()), b(env.port());
  REQUIRE(a.send(get_request(blob_path("r", d))));
  REQUIRE(a.fill_to(1000, Clock::now() + kWait));
  REQUIRE(b.send(get_request(blob_path("r", d), {}, "HEAD")));
  auto h = b.read_response(kWait, /*head_only=*/true);
  REQUIRE(h);
  CHECK(h->status == 200);
  CHECK(h->header("Content-Length") == std::to_string(bytes.size()));
  CHECK(h->header("Docker-Content-Digest") == d.str());
  env.upstream.open_gate("rest");
  auto ra = a.read_response();
  REQUIRE(ra);
  CHECK(ra->complete);
  CHECK(store::test::same_bytes(ra->body, bytes));
  for (const auto& s : env.upstream.requests()) CHECK(s.method != "HEAD");
  env.end();
}

TEST_CASE("cache: HEAD during a chunked (size-less) fill asks the parent", "[cache][fill]") {
  const std::string bytes = pattern(250000, 32);
  const Digest d = Digest::sha256_of(bytes);
  CacheEnv env([&](ScriptConn& c, const SeenRequest& r) {
    if (probe(c, r)) return;
    if (r.method == "HEAD")
      return (void)c.send(head_only(200, {{"Content-Length", std::to_string(bytes.size())}}));
    std::string all = chunked_reply(200, {bytes.substr(0, 1000), bytes.substr(1000)});
    size_t first = all.find(bytes.substr(0, 1000)) + 1000 + 2;  // the head and the first chunk
    c.send(all.substr(0, first));
    if (!c.wait_gate("rest")) return;
    c.send(all.substr(first));
  });
  TestClient a(env.port()), b(env.port());
  REQUIRE(a.send(get_request(blob_path("r", d))));
  REQUIRE(a.fill_to(1000, Clock::now() + kWait));
  REQUIRE(b.send(get_request(blob_path("r", d), {}, "HEAD")));
  auto h = b.read_response(kWait, /*head_only=*/true);
  REQUIRE(h);
  CHECK(h->status == 200);
  CHECK(h->header("Content-Length") == std::to_string(bytes.size()));
  size_t heads = 0;
  for (const auto& s : env.upstream.requests()) heads += s.method == "HEAD";
  CHECK(heads == 1);
  env.upstream.open_gate("rest");
  auto ra = a.read_response();
  REQUIRE(ra);
  CHECK(ra->complete);
  CHECK(store::test::same_bytes(ra->body, bytes));
  env.end();
}

/// The headers a blob answer's client sees, for comparing a fill with a local hit.
std::vector<std::pair<std::string, std::optional<std::string>>> blob_headers(const ClientResponse& r) {
  std::vector<std::pair<std::string, std::optional<std::string>>> out;
  for (const char* h : {"Docker-Content-Digest", "ETag", "Accept-Ranges", "Cache-Control", "Content-Type",
                        "Content-Range", "Content-Length"})
    out.emplace_back(h, r.header(h));
  out.emplace_back("status", std::to_string(r.status));
  return out;
}

std::string range_header(const std::string& spec) { return "Range: " + spec + "\r\n"; }

TEST_CASE("cache: a fill answers Range with 206 and the same headers as a local hit", "[cache][fill][range]") {
  const std::string bytes = pattern(300000, 41);
  const Digest d = Digest::sha256_of(bytes);
  CacheEnv env([&](ScriptConn& c, const SeenRequest& r) {
    if (probe(c, r)) return;
    c.send(head_only(200, {{"Content-Length", std::to_string(bytes.size())}}) + bytes.substr(0, 1000));
    if (!c.wait_gate("rest")) return;
    c.send(bytes.substr(1000));
  });
  TestClient a(env.port()), b(env.port()), h(env.port()), late(env.port());
  REQUIRE(a.send(get_request(blob_path("r", d))));
  REQUIRE(a.fill_to(1000, Clock::now() + kWait));  // the fill is under way, the rest gated
  // A range inside the bytes already there, one past them, and a HEAD.
  REQUIRE(b.send(get_request(blob_path("r", d), range_header("bytes=100-599"))));
  REQUIRE(late.send(get_request(blob_path("r", d), range_header("bytes=200000-"))));
  REQUIRE(h.send(get_request(blob_path("r", d), range_header("bytes=-10"), "HEAD")));
  auto fh = h.read_response(kWait, /*head_only=*/true);
  REQUIRE(fh);
  CHECK(fh->status == 206);
  CHECK(fh->header("Content-Range") == "bytes " + std::to_string(bytes.size() - 10) + "-" +
                                           std::to_string(bytes.size() - 1) + "/" + std::to_string(bytes.size()));
  CHECK(env.fills() == 1);
  env.upstream.open_gate("rest");
  auto fb = b.read_response();
  auto fl = late.read_response();
  auto fa = a.read_response();
  REQUIRE(fb);
  REQUIRE(fl);
  REQUIRE(fa);
  CHECK(fb->status == 206);
  CHECK(fb->complete);
  CHECK(fb->header("Content-Range") == "bytes 100-599/" + std::to_string(bytes.size()));
  CHECK(fb->body == bytes.substr(100, 500));
  CHECK(fl->status == 206);
  CHECK(fl->complete);
  CHECK(store::test::same_bytes(fl->body, bytes.substr(200000)));
  CHECK(fa->status == 200);
  CHECK(store::test::same_bytes(fa->body, bytes));
  CHECK(fa->header("ETag") == "\"" + d.str() + "\"");
  CHECK(fa->header("Cache-Control") == "max-age=31536000");
  CHECK(env.upstream.count_path(blob_path("r", d)) == 1);

  // The same requests once the blob is held: the same answers, header for header.
  REQUIRE(env.eventually([&] { return env.fills() == 0; }));
  TestClient c(env.port());
  REQUIRE(c.send(get_request(blob_path("r", d), range_header("bytes=100-599"))));
  auto lb = c.read_response();
  REQUIRE(c.send(get_request(blob_path("r", d), range_header("bytes=200000-"))));
  auto ll = c.read_response();
  REQUIRE(c.send(get_request(blob_path("r", d), range_header("bytes=-10"), "HEAD")));
  auto lh = c.read_response(kWait, /*head_only=*/true);
  REQUIRE(c.send(get_request(blob_path("r", d))));
  auto la = c.read_response();
  REQUIRE(lb);
  REQUIRE(ll);
  REQUIRE(lh);
  REQUIRE(la);
  CHECK(la->header("X-Served-By") == "store");
  CHECK(blob_headers(*fb) == blob_headers(*lb));
  CHECK(blob_headers(*fl) == blob_headers(*ll));
  CHECK(blob_headers(*fh) == blob_headers(*lh));
  CHECK(blob_headers(*fa) == blob_headers(*la));
  CHECK(lb->body == fb->body);
  CHECK(env.upstream.count_path(blob_path("r", d)) == 1);
  env.end();
}

TEST_CASE("cache: a fill answers an unsatisfiable Range with 416 like a local hit", "[cache][fill][range]") {
  const std::string bytes = pattern(5000, 42);
  const Digest d = Digest::sha256_of(bytes);
  CacheEnv env(blob_upstream(bytes));
  TestClient a(env.port());
  REQUIRE(a.send(get_request(blob_path("r", d), range_header("bytes=9000-"))));
  auto fr = a.read_response();
  REQUIRE(fr);
  CHECK(fr->status == 416);
  CHECK(fr->header("Content-Range") == "bytes */5000");
  CHECK(fr->header("ETag") == "\"" + d.str() + "\"");
  // The fill goes on for the cache although its only client got a 416.
  REQUIRE(env.eventually([&] { return env.fills() == 0; }));
  CHECK(env.stats().fills_committed == 1);
  REQUIRE(a.send(get_request(blob_path("r", d), range_header("bytes=9000-"))));
  auto lr = a.read_response();
  REQUIRE(lr);
  CHECK(lr->header("X-Served-By") == "store");
  CHECK(blob_headers(*fr) == blob_headers(*lr));
  env.end();
}

TEST_CASE("cache: a chunked (size-less) fill answers Range once the blob is verified", "[cache][fill][range]") {
  const std::string bytes = pattern(250000, 43);
  const Digest d = Digest::sha256_of(bytes);
  CacheEnv env([&](ScriptConn& c, const SeenRequest& r) {
    if (probe(c, r)) return;
    std::string all = chunked_reply(200, {bytes.substr(0, 1000), bytes.substr(1000)});
    size_t first = all.find(bytes.substr(0, 1000)) + 1000 + 2;  // the head and the first chunk
    c.send(all.substr(0, first));
    if (!c.wait_gate("rest")) return;
    c.send(all.substr(first));
  });
  TestClient a(env.port()), b(env.port());
  REQUIRE(a.send(get_request(blob_path("r", d))));
  REQUIRE(a.fill_to(1000, Clock::now() + kWait));
  REQUIRE(b.send(get_request(blob_path("r", d), range_header("bytes=10-19"))));
  REQUIRE(env.fx().wait_count("requests", 2));
  env.upstream.open_gate("rest");
  auto rb = b.read_response();
  REQUIRE(rb);
  CHECK(rb->status == 206);
  CHECK(rb->complete);
  CHECK(rb->header("Content-Range") == "bytes 10-19/" + std::to_string(bytes.size()));
  CHECK(rb->header("ETag") == "\"" + d.str() + "\"");
  CHECK(rb->body == bytes.substr(10, 10));
  auto ra = a.read_response();
  REQUIRE(ra);
  CHECK(ra->status == 200);
  CHECK(ra->chunked);
  CHECK(ra->header("ETag") == "\"" + d.str() + "\"");
  CHECK(store::test::same_bytes(ra->body, bytes));
  CHECK(env.upstream.count_path(blob_path("r", d)) == 1);
  env.end();
}

TEST_CASE("cache: a ranged reader of a fill that fails gets a broken response, never a complete one",
          "[cache][fill][range]") {
  const std::string bytes = pattern(200000, 44);
  std::string wrong = bytes;
  wrong[150000] ^= 1;
  const Digest d = Digest::sha256_of(bytes);
  CacheEnv env([&](ScriptConn& c, const SeenRequest& r) {
    if (probe(c, r)) return;
    c.send(head_only(200, {{"Content-Length", std::to_string(wrong.size())}}) + wrong.substr(0, 1000));
    if (!c.wait_gate("rest")) return;
    c.send(wrong.substr(1000));
  });
  TestClient a(env.port()), b(env.port());
  REQUIRE(a.send(get_request(blob_path("r", d))));
  REQUIRE(a.fill_to(1000, Clock::now() + kWait));
  // Every byte of this range is in the file before the verify fails.
  REQUIRE(b.send(get_request(blob_path("r", d), range_header("bytes=0-99"))));
  REQUIRE(env.fx().wait_count("requests", 2));
  env.upstream.open_gate("rest");
  auto rb = b.read_response();
  REQUIRE(rb);
  CHECK(rb->status == 206);
  CHECK_FALSE(rb->complete);
  CHECK(rb->body.size() < 100);
  REQUIRE(env.eventually([&] { return env.fills() == 0; }));
  CHECK(env.stats().fills_failed == 1);
  env.end();
}

TEST_CASE("cache: a blob behind a Bearer token service is filled", "[cache][fill]") {
  const std::string bytes = pattern(50000, 4);
  const Digest d = Digest::sha256_of(bytes);
  HttpTestServer tokens([](ScriptConn& c, const SeenRequest&) { c.send(reply(200, R"({"token":"tok"})")); });
  CacheEnv env([&](ScriptConn& c, const SeenRequest& r) {
    if (probe(c, r)) return;
    if (r.header("Authorization") != "Bearer tok")
      return (void)c.send(for_method(r, unauthorized(R"(Bearer realm=")" + tokens.url("/token") + R"(",service="t")")));
    c.send(for_method(r, reply(200, bytes)));
  });
  TestClient a(env.port());
  REQUIRE(a.send(get_request(blob_path("r", d))));
  auto r = a.read_response();
  REQUIRE(r);
  CHECK(r->status == 200);
  CHECK(store::test::same_bytes(r->body, bytes));
  CHECK(tokens.request_count() == 1);
  env.end();
}

// ---------------------------------------------------------------------------
// Manifests

TEST_CASE("cache: a manifest miss is fetched once and kept under its tag", "[cache][manifest]") {
  const std::string m1 = manifest_json("one");
  CacheEnv env([&](ScriptConn& c, const SeenRequest& r) {
    if (probe(c, r)) return;
    c.send(manifest_reply(r, m1));
  });
  Route route = env.route("lib/app");
  auto res = env.manifest_now(route, "v1");
  REQUIRE(res.ok());
  CHECK(res->bytes == m1);
  CHECK(res->info.digest == Digest::sha256_of(m1));
  CHECK(res->info.media_type == kOciManifestType);
  CHECK(res->info.origin == store::Origin::Cached);
  CHECK_FALSE(res->offline);
  auto seen = env.upstream.requests();
  REQUIRE(env.upstream.count_path("/v2/lib/app/manifests/v1") == 1);
  for (const auto& s : seen)
    if (s.path() == "/v2/lib/app/manifests/v1") {
      REQUIRE(s.header("Accept"));
      CHECK(s.header("Accept")->find(kOciManifestType) != std::string::npos);
    }
  auto tag = env.store->get_tag("lib/app", "v1");
  REQUIRE(tag.ok());
  CHECK(*tag == Digest::sha256_of(m1));

  // Within tag_ttl the cached tag answers; by digest it is never revalidated.
  auto again = env.manifest_now(route, "v1");
  REQUIRE(again.ok());
  CHECK(again->bytes == m1);
  auto by_digest = env.manifest_now(route, Digest::sha256_of(m1).str());
  REQUIRE(by_digest.ok());
  CHECK(by_digest->bytes == m1);
  CHECK(env.upstream.count_path("/v2/lib/app/manifests/v1") == 1);
  CHECK(env.upstream.count_path("/v2/lib/app/manifests/" + Digest::sha256_of(m1).str()) == 0);
  env.end();
}

TEST_CASE("cache: hot_manifest answers a memoized tag in place only while manifest() would not ask the parent",
          "[cache][manifest]") {
  const std::string m1 = manifest_json("hot");
  const std::string by_digest = Digest::sha256_of(m1).str();
  auto script = [&](ScriptConn& c, const SeenRequest& r) {
    if (probe(c, r)) return;
    c.send(manifest_reply(r, m1));
  };
  SECTION("within tag_ttl: the tag and the digest are answered in place, the parent is asked once") {
    CacheEnv env(script);
    env.enable_memo();
    Route route = env.route("lib/hot");
    CHECK_FALSE(env.hot(route, "v1"));  // a miss goes to manifest()
    REQUIRE(env.manifest_now(route, "v1").ok());
    REQUIRE(env.manifest_now(route, "v1").ok());  // memoizes the stored tag
    REQUIRE(env.manifest_now(route, by_digest).ok());
    auto hot = env.hot(route, "v1");
    REQUIRE(hot);
    CHECK(*hot == m1);
    auto hot_digest = env.hot(route, by_digest);
    REQUIRE(hot_digest);
    CHECK(*hot_digest == m1);
    CHECK(env.upstream.count_path("/v2/lib/hot/manifests/v1") == 1);
    env.end();
  }
  SECTION("tag_ttl passed: the tag is left to manifest() (revalidation); by digest it is still answered") {
    auto p = CacheEnv::default_popts();
    p.tag_ttl_ms = 0;
    CacheEnv env(script, p);
    env.enable_memo();
    Route route = env.route("lib/hot");
    REQUIRE(env.manifest_now(route, "v1").ok());
    REQUIRE(env.manifest_now(route, by_digest).ok());
    REQUIRE(env.manifest_now(route, by_digest).ok());
    CHECK_FALSE(env.hot(route, "v1"));
    auto hot_digest = env.hot(route, by_digest);
    REQUIRE(hot_digest);
    CHECK(*hot_digest == m1);
    env.end();
  }
}

TEST_CASE("cache: concurrent misses of one manifest coalesce onto one upstream GET", "[cache][manifest]") {
  const std::string m1 = manifest_json("co");
  CacheEnv env([&](ScriptConn& c, const SeenRequest& r) {
    if (probe(c, r)) return;
    if (!c.wait_gate("go")) return;
    c.send(manifest_reply(r, m1));
  });
  Route route = env.route("r");
  ManifestCall calls[3];
  for (auto& c : calls) env.manifest(route, "latest", c);
  REQUIRE(env.upstream.wait_for([](const std::vector<SeenRequest>& s) {
    return std::any_of(s.begin(), s.end(), [](const SeenRequest& r) { return r.path() == "/v2/r/manifests/latest"; });
  }));
  env.upstream.open_gate("go");
  REQUIRE(env.fx().wait([&] { return calls[0].done && calls[1].done && calls[2].done; }));
  {
    std::lock_guard<std::mutex> g(env.fx().mu);
    for (auto& c : calls) {
      REQUIRE(c.result->ok());
      CHECK((*c.result)->bytes == m1);
    }
  }
  CHECK(env.upstream.count_path("/v2/r/manifests/latest") == 1);
  CHECK(env.stats().manifest_fetches == 1);
  env.end();
}

TEST_CASE("cache: a fetched manifest is answered before its commit; a request meanwhile gets it, not a 2nd fetch",
          "[cache][manifest]") {
  const std::string m1 = manifest_json("early");
  CacheEnv env([&](ScriptConn& c, const SeenRequest& r) {
    if (probe(c, r)) return;
    c.send(manifest_reply(r, m1));
  });
  Route route = env.route("lib/early");
  ManifestCall second;
  bool committed_when_answered = true;
  bool first_ok = false;
  bool answered = false;
  env.fx().post([&] {
    env.pull->manifest(route, "v1", true, [&](Result<ManifestResult> res) {
      first_ok = res.ok();
      // Still on the loop, inside the first answer: the store commit (a pool
      // job whose result comes back on this thread) cannot have ended yet.
      committed_when_answered = env.svc->pending() == 0;
      env.pull->manifest(route, "v1", true, [&](Result<ManifestResult> r2) {
        env.fx().update([&] {
          second.result.emplace(std::move(r2));
          second.done = true;
        });
      });
      env.fx().update([&] { answered = true; });
    });
  });
  REQUIRE(env.fx().wait([&] { return answered && second.done; }));
  CHECK(first_ok);
  CHECK_FALSE(committed_when_answered);
  {
    std::lock_guard<std::mutex> g(env.fx().mu);
    REQUIRE(second.result->ok());
    CHECK((*second.result)->bytes == m1);
    CHECK((*second.result)->info.digest == Digest::sha256_of(m1));
  }
  CHECK(env.upstream.count_path("/v2/lib/early/manifests/v1") == 1);
  // The commit ends behind the answers: then the store has it under its tag.
  REQUIRE(env.eventually([&] { return env.fx().call([&] { return env.svc->pending(); }) == 0; }));
  auto tag = env.store->get_tag("lib/early", "v1");
  REQUIRE(tag.ok());
  CHECK(*tag == Digest::sha256_of(m1));
  env.end();
}

TEST_CASE("cache: an expired tag is revalidated with HEAD; unchanged means no GET", "[cache][manifest]") {
  const std::string m1 = manifest_json("same");
  CacheEnv env(
      [&](ScriptConn& c, const SeenRequest& r) {
        if (probe(c, r)) return;
        c.send(manifest_reply(r, m1));
      },
      [] {
        auto p = CacheEnv::default_popts();
        p.tag_ttl_ms = 0;
        return p;
      }());
  Route route = env.route("r");
  REQUIRE(env.manifest_now(route, "t").ok());
  auto again = env.manifest_now(route, "t");
  REQUIRE(again.ok());
  CHECK(again->bytes == m1);
  CHECK_FALSE(again->offline);
  size_t gets = 0, heads = 0;
  for (const auto& s : env.upstream.requests()) {
    if (s.path() != "/v2/r/manifests/t") continue;
    if (s.method == "GET") ++gets;
    if (s.method == "HEAD") ++heads;
  }
  CHECK(gets == 1);
  CHECK(heads == 1);
  CHECK(env.stats().revalidations == 1);
  env.end();
}

TEST_CASE("cache: a tag that moved upstream is fetched again and re-pointed", "[cache][manifest]") {
  const std::string m1 = manifest_json("old"), m2 = manifest_json("new");
  std::atomic<int> version{1};
  CacheEnv env(
      [&](ScriptConn& c, const SeenRequest& r) {
        if (probe(c, r)) return;
        c.send(manifest_reply(r, version.load() == 1 ? m1 : m2));
      },
      [] {
        auto p = CacheEnv::default_popts();
        p.tag_ttl_ms = 0;
        return p;
      }());
  Route route = env.route("r");
  auto first = env.manifest_now(route, "latest");
  REQUIRE(first.ok());
  CHECK(first->bytes == m1);
  version = 2;
  auto second = env.manifest_now(route, "latest");
  REQUIRE(second.ok());
  CHECK(second->bytes == m2);
  CHECK(second->info.digest == Digest::sha256_of(m2));
  auto tag = env.store->get_tag("r", "latest");
  REQUIRE(tag.ok());
  CHECK(*tag == Digest::sha256_of(m2));
  // The old manifest stays readable by digest.
  CHECK(env.store->get_manifest("r", Digest::sha256_of(m1)).ok());
  env.end();
}

TEST_CASE("cache: when revalidation fails the cached tag answers, marked as not confirmed", "[cache][manifest]") {
  const std::string m1 = manifest_json("kept");
  std::atomic<bool> broken{false};
  CacheEnv env(
      [&](ScriptConn& c, const SeenRequest& r) {
        if (probe(c, r)) return;
        if (broken) return (void)c.send(for_method(r, reply(503, "down")));
        c.send(manifest_reply(r, m1));
      },
      [] {
        auto p = CacheEnv::default_popts();
        p.tag_ttl_ms = 0;
        return p;
      }());
  Route route = env.route("r");
  REQUIRE(env.manifest_now(route, "t").ok());
  broken = true;
  auto res = env.manifest_now(route, "t");
  REQUIRE(res.ok());
  CHECK(res->bytes == m1);
  CHECK(res->offline);
  CHECK(res->tag_age_s.has_value());
  CHECK(env.stats().served_offline >= 1);
  env.end();
}

TEST_CASE("cache: a slow revalidation answers from the cache after revalidate_wait_ms", "[cache][manifest]") {
  const std::string m1 = manifest_json("slow");
  CacheEnv env(
      [&](ScriptConn& c, const SeenRequest& r) {
        if (probe(c, r)) return;
        if (r.method == "HEAD" && !c.wait_gate("head")) return;
        c.send(manifest_reply(r, m1));
      },
      [] {
        auto p = CacheEnv::default_popts();
        p.tag_ttl_ms = 0;
        p.revalidate_wait_ms = 100;
        return p;
      }());
  Route route = env.route("r");
  REQUIRE(env.manifest_now(route, "t").ok());
  auto start = Clock::now();
  auto res = env.manifest_now(route, "t");
  auto elapsed = std::chrono::duration_cast<milliseconds>(Clock::now() - start).count();
  REQUIRE(res.ok());
  CHECK(res->bytes == m1);
  CHECK(res->offline);
  CHECK(elapsed < 5000);
  // The check goes on (the teardown fails it if it is still out).
  CHECK(env.upstream.count_path("/v2/r/manifests/t") == 2);  // GET, then the HEAD held at the gate
  env.upstream.open_gate("head");
  env.end();
}

TEST_CASE("cache: every way the parent's manifest can be wrong", "[cache][manifest]") {
  const std::string good = manifest_json("g");
  const std::string other = manifest_json("other");
  CacheEnv env(
      [&](ScriptConn& c, const SeenRequest& r) {
        if (probe(c, r)) return;
        const std::string p = r.path();
        if (p == "/v2/r/manifests/missing") return (void)c.send(reply(404, "{}"));
        if (p == "/v2/r/manifests/error") return (void)c.send(reply(500, "oops"));
        if (p == "/v2/r/manifests/lying-header")
          return (void)c.send(reply(200, good, {{"Content-Type", kOciManifestType},
                                                {"Docker-Content-Digest", Digest::sha256_of(other).str()}}));
        if (p == "/v2/r/manifests/" + Digest::sha256_of(other).str())  // asked by digest, sends other bytes
          return (void)c.send(reply(200, good, {{"Content-Type", kOciManifestType}}));
        if (p == "/v2/r/manifests/not-json")
          return (void)c.send(reply(200, "{not json", {{"Content-Type", kOciManifestType}}));
        if (p == "/v2/r/manifests/huge")
          return (void)c.send(reply(200, std::string(4096, ' ') + good, {{"Content-Type", kOciManifestType}}));
        if (p == "/v2/r/manifests/endless") {  // past the limit, then no end in sight
          c.send(head_only(200, {{"Transfer-Encoding", "chunked"}, {"Content-Type", kOciManifestType}}) +
                 "1000\r\n" + std::string(4096, ' ') + "\r\n");
          return c.stall();
        }
        if (p == "/v2/r/manifests/declared-huge") {  // says 1 GiB, sends nothing more
          c.send(head_only(200, {{"Content-Length", "1073741824"}, {"Content-Type", kOciManifestType}}));
          return c.stall();
        }
        if (p == "/v2/r/manifests/cut") {
          c.send(head_only(200, {{"Content-Length", "1000"}, {"Content-Type", kOciManifestType}}) + "{\"schema");
          return c.close();
        }
        c.send(reply(418, "?"));
      },
      [] {
        auto p = CacheEnv::default_popts();
        p.max_manifest_bytes = 2048;
        return p;
      }());
  Route route = env.route("r");
  struct Case {
    std::string ref;
    Errc code;
  };
  const Case cases[] = {
      {"missing", Errc::ManifestUnknown},
      {"error", Errc::UpstreamError},
      {"lying-header", Errc::UpstreamError},
      {Digest::sha256_of(other).str(), Errc::UpstreamError},
      {"not-json", Errc::UpstreamError},
      // The parent's fault (502), not the client's (413); refused as soon
      // as it is known, not when the parent stops sending.
      {"huge", Errc::UpstreamError},
      {"endless", Errc::UpstreamError},
      {"declared-huge", Errc::UpstreamError},
      {"cut", Errc::UpstreamUnavailable},
  };
  for (const auto& k : cases) {
    INFO("reference " << k.ref);
    auto res = env.manifest_now(route, k.ref);
    REQUIRE_FALSE(res.ok());
    CHECK(res.error().code == k.code);
    // Clients print the status line: every 502 says the parent answered wrongly.
    if (k.code == Errc::UpstreamError) CHECK(res.error().reason == "Bad Answer From Parent");
  }
  // Nothing was stored.
  CHECK_FALSE(env.store->resolve_manifest("r", "lying-header").ok());
  CHECK_FALSE(env.store->get_manifest("r", Digest::sha256_of(good)).ok());
  env.end();
}

// ---------------------------------------------------------------------------
// Routing, referrers, offline

TEST_CASE("cache: routes: parent, ?ns= and path-prefix named upstreams, library/ rule", "[cache][route]") {
  CacheEnv env(blob_upstream("x"));
  env.add_named("docker.io", "http://127.0.0.1:1/", /*library_prefix=*/true);
  env.add_named("ghcr.io", "http://127.0.0.1:2/");

  Route parent = env.route("team/app");
  CHECK(parent.upstream->options().name == "parent");
  CHECK(parent.local_repo == "team/app");
  CHECK(parent.upstream_repo == "team/app");

  Route ns = env.route("alpine", std::string("docker.io"));
  CHECK(ns.upstream->options().name == "docker.io");
  CHECK(ns.local_repo == "docker.io/alpine");
  CHECK(ns.upstream_repo == "library/alpine");

  Route prefix = env.route("docker.io/alpine");
  CHECK(prefix.upstream->options().name == "docker.io");
  CHECK(prefix.local_repo == "docker.io/alpine");  // both styles share one cache
  CHECK(prefix.upstream_repo == "library/alpine");

  Route gh = env.route("ghcr.io/owner/tool");
  CHECK(gh.upstream->options().name == "ghcr.io");
  CHECK(gh.upstream_repo == "owner/tool");

  Route unknown_ns = env.route("x/y", std::string("quay.io"));
  CHECK(unknown_ns.upstream->options().name == "parent");

  auto none = env.fx().call([&] {
    PullThrough bare(env.fx().loop(), env.svc.get(), {});
    return std::make_pair(bare.enabled(), bare.route("a", std::nullopt).has_value());
  });
  CHECK_FALSE(none.first);
  CHECK_FALSE(none.second);
  env.end();
}

TEST_CASE("cache: referrers come from the parent as they are", "[cache][route]") {
  const std::string subject_bytes = "subject";
  const Digest subject = Digest::sha256_of(subject_bytes);
  const std::string index = R"({"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]})";
  CacheEnv env([&](ScriptConn& c, const SeenRequest& r) {
    if (probe(c, r)) return;
    if (r.path() == "/v2/r/referrers/" + subject.str()) return (void)c.send(reply(200, index));
    c.send(reply(500, "no"));
  });
  Route route = env.route("r");
  struct Got {
    bool done = false;
    std::optional<Result<std::string>> res;
  };
  auto ask = [&](const std::string& repo_route_name, const std::string& query) {
    Got g;
    Route rr = env.route(repo_route_name);
    env.fx().post([&, rr, query] {
      env.pull->referrers(rr, subject, query, [&](Result<std::string> res) {
        env.fx().update([&] {
          g.res.emplace(std::move(res));
          g.done = true;
        });
      });
    });
    REQUIRE(env.fx().wait([&] { return g.done; }));
    std::lock_guard<std::mutex> lk(env.fx().mu);
    return *g.res;
  };
  auto ok = ask("r", "artifactType=application%2Fx");
  REQUIRE(ok.ok());
  CHECK(*ok == index);
  auto seen = env.upstream.requests();
  bool with_query = std::any_of(seen.begin(), seen.end(), [&](const SeenRequest& s) {
    return s.target == "/v2/r/referrers/" + subject.str() + "?artifactType=application%2Fx";
  });
  CHECK(with_query);
  auto bad = ask("other", "");
  REQUIRE_FALSE(bad.ok());
  CHECK(bad.error().code == Errc::UpstreamError);
  (void)route;
  env.end();
}

TEST_CASE("cache: with the parent switched offline, misses fail at once and cached tags still answer",
          "[cache][offline]") {
  const std::string m1 = manifest_json("offline");
  const Digest md = Digest::sha256_of(m1);
  CacheEnv env(blob_upstream("never"), CacheEnv::default_popts(),
               [](upstream::UpstreamOptions& o) { o.offline = true; });
  // Seed the store as an earlier pull would have.
  {
    store::ManifestPut m;
    m.repo = "r";
    m.digest = md;
    m.media_type = kOciManifestType;
    m.tag = "t";
    m.origin = store::Origin::Cached;
    REQUIRE(env.store->put_manifest(m, m1).ok());
  }
  Route route = env.route("r");
  auto cached = env.manifest_now(route, "t");
  REQUIRE(cached.ok());
  CHECK(cached->bytes == m1);
  CHECK(cached->offline);

  auto miss = env.manifest_now(route, "other");
  REQUIRE_FALSE(miss.ok());
  CHECK(miss.error().code == Errc::UpstreamUnavailable);

  TestClient a(env.port());
  REQUIRE(a.send(get_request(blob_path("r", Digest::sha256_of("b")))));
  auto r = a.read_response();
  CHECK(status_of(r) == 503);
  // A HEAD miss says "not here" (a pushing client may go on), marked offline.
  REQUIRE(a.send(get_request(blob_path("r", Digest::sha256_of("b")), {}, "HEAD")));
  auto h = a.read_response(kWait, true);
  CHECK(status_of(h) == 404);
  if (h) CHECK(h->header("Outpost-Cache") == "offline");
  CHECK(env.upstream.request_count() == 0);
  CHECK(env.stats().offline_misses >= 2);
  env.end();
}

// ---------------------------------------------------------------------------
// Issue #13

TEST_CASE("cache: ReadWrite: a blob HEAD miss is answered from the store; the parent is asked nothing",
          "[cache][fill][push]") {
  const std::string bytes = pattern(1000, 3);
  const Digest d = Digest::sha256_of(bytes);
  CacheEnv env(blob_upstream(bytes));
  TestClient a(env.port());
  REQUIRE(a.send(get_request(blob_path("r", d), {}, "HEAD")));
  auto r = a.read_response(kWait, /*head_only=*/true);
  REQUIRE(r);
  // A pushing client asks "do you have it?": a 200 relayed from the parent
  // would make it skip an upload this registry needs for the manifest PUT.
  CHECK(r->status == 404);
  CHECK_FALSE(r->header("Outpost-Cache"));
  CHECK(env.upstream.count_path(blob_path("r", d)) == 0);
  env.end();
}

TEST_CASE("cache: a pushed tag is authoritative: never revalidated with the parent", "[cache][manifest][push]") {
  const std::string m1 = manifest_json("pushed");
  CacheEnv env(
      [&](ScriptConn& c, const SeenRequest& r) {
        if (probe(c, r)) return;
        c.send(for_method(r, reply(404, R"({"errors":[]})")));
      },
      [] {
        auto p = CacheEnv::default_popts();
        p.tag_ttl_ms = 0;
        return p;
      }());
  {
    store::ManifestPut m;
    m.repo = "r";
    m.digest = Digest::sha256_of(m1);
    m.media_type = kOciManifestType;
    m.tag = "t";
    m.origin = store::Origin::Pushed;
    REQUIRE(env.store->put_manifest(m, m1).ok());
  }
  Route route = env.route("r");
  for (int i = 0; i < 3; ++i) {
    auto got = env.manifest_now(route, "t");
    REQUIRE(got.ok());
    CHECK(got->bytes == m1);
    CHECK_FALSE(got->offline);
  }
  CHECK(env.upstream.count_path("/v2/r/manifests/t") == 0);
  CHECK(env.stats().revalidations == 0);
  env.end();
}

TEST_CASE("cache: ?ns= with override_path: a path that repeats the ns host is not asked for twice",
          "[cache][route]") {
  CacheEnv env(blob_upstream("x"));
  env.add_named("docker.io", "http://127.0.0.1:1/", /*library_prefix=*/true);
  // containerd, override_path = true: /v2/docker.io/library/alpine/...?ns=docker.io
  Route over = env.route("docker.io/library/alpine", std::string("docker.io"));
  CHECK(over.upstream->options().name == "docker.io");
  CHECK(over.upstream_repo == "library/alpine");
  CHECK(over.local_repo == "docker.io/library/alpine");
  // The same image as the other two addressing styles.
  Route plain = env.route("library/alpine", std::string("docker.io"));
  CHECK(plain.local_repo == over.local_repo);
  CHECK(plain.upstream_repo == over.upstream_repo);
  Route prefix = env.route("docker.io/library/alpine");
  CHECK(prefix.local_repo == over.local_repo);
  CHECK(prefix.upstream_repo == over.upstream_repo);
  env.end();
}

TEST_CASE("cache: a parent and a named upstream with the same URL share one health state",
          "[cache][offline][health]") {
  CacheEnv env([](ScriptConn& c, const SeenRequest&) { c.close(); });
  env.add_named("mirror", env.upstream.url());
  env.add_named("elsewhere", "http://127.0.0.1:" + std::to_string(pick_free_port()) + "/");
  Route parent = env.route("r");
  Route mirror = env.route("mirror/r");
  Route elsewhere = env.route("elsewhere/r");
  REQUIRE(mirror.upstream != parent.upstream);
  for (int i = 0; i < upstream::Health::kFailuresToOpen; ++i) (void)env.manifest_now(parent, "t" + std::to_string(i));
  REQUIRE(env.eventually([&] { return env.fx().call([&] { return parent.upstream->offline(); }); }));
  // Learnt once for the origin: the mirror's misses do not wait for it again.
  CHECK(env.fx().call([&] { return mirror.upstream->offline(); }));
  CHECK(env.fx().call([&] { return &mirror.upstream->link() == &parent.upstream->link(); }));
  CHECK(env.fx().call([&] { return &elsewhere.upstream->link() != &parent.upstream->link(); }));
  env.end();
}

TEST_CASE("cache: a parent's 429 and 503 reach the client with their Retry-After", "[cache][fill][manifest]") {
  const Digest d = Digest::sha256_of("busy");
  CacheEnv env([&](ScriptConn& c, const SeenRequest& r) {
    if (probe(c, r)) return;
    if (r.path().find("/limited/") != std::string::npos)
      return (void)c.send(for_method(r, reply(429, "slow down", {{"Retry-After", "17"}})));
    c.send(for_method(r, reply(503, "maintenance", {{"Retry-After", "120"}})));
  });
  TestClient a(env.port());
  REQUIRE(a.send(get_request(blob_path("limited", d))));
  auto r = a.read_response();
  REQUIRE(r);
  CHECK(r->status == 429);
  CHECK(r->header("Retry-After") == "17");
  CHECK(r->body.find("TOOMANYREQUESTS") != std::string::npos);
  REQUIRE(a.send(get_request(blob_path("down", d))));
  auto s = a.read_response();
  REQUIRE(s);
  CHECK(s->status == 503);
  CHECK(s->header("Retry-After") == "120");

  auto m = env.manifest_now(env.route("limited"), "t");
  REQUIRE_FALSE(m.ok());
  CHECK(m.error().code == Errc::TooManyRequests);
  CHECK(m.error().retry_after == "17");
  // Rate limiting is an answer: the parent stays online through any number.
  Route limited = env.route("limited");
  for (int i = 0; i < upstream::Health::kFailuresToOpen + 1; ++i) (void)env.manifest_now(limited, "x");
  CHECK_FALSE(env.fx().call([&] { return limited.upstream->offline(); }));
  env.end();
}

TEST_CASE("cache: a fill that fails in the parent's auth dance is a 502, not a 503", "[cache][fill][auth]") {
  const Digest d = Digest::sha256_of("secret");
  const int dead = pick_free_port();
  CacheEnv env([&](ScriptConn& c, const SeenRequest& r) {
    if (probe(c, r)) return;
    c.send(for_method(r, unauthorized(R"(Bearer realm="http://127.0.0.1:)" + std::to_string(dead) +
                                      R"(/token",service="reg")")));
  });
  TestClient a(env.port());
  REQUIRE(a.send(get_request(blob_path("r", d))));
  auto r = a.read_response();
  REQUIRE(r);
  CHECK(r->status == 502);
  CHECK(r->reason == "Bad Answer From Parent");
  CHECK(r->body.find("token") != std::string::npos);
  env.end();
}

TEST_CASE("cache: an offline miss names its reason in the status line", "[cache][offline]") {
  CacheEnv env(blob_upstream("never"), CacheEnv::default_popts(),
               [](upstream::UpstreamOptions& o) { o.offline = true; });
  TestClient a(env.port());
  REQUIRE(a.send(get_request(blob_path("r", Digest::sha256_of("b")))));
  auto r = a.read_response();
  REQUIRE(r);
  CHECK(r->status == 503);
  // Go clients (docker, ctr, podman, skopeo) print the status line only.
  CHECK(r->reason == "Parent Offline And Not Cached");
  CHECK(r->head.rfind("HTTP/1.1 503 Parent Offline And Not Cached\r\n", 0) == 0);
  env.end();
}

TEST_CASE("cache: an unreachable parent's miss says so in the status line", "[cache][fill]") {
  CacheEnv env(blob_upstream("x"), CacheEnv::default_popts(), [](upstream::UpstreamOptions& o) {
    o.url = *http::Url::parse("http://127.0.0.1:" + std::to_string(pick_free_port()) + "/");
  });
  TestClient a(env.port());
  REQUIRE(a.send(get_request(blob_path("r", Digest::sha256_of("x")))));
  auto r = a.read_response();
  REQUIRE(r);
  CHECK(r->status == 503);
  CHECK((r->reason == "Parent Unreachable And Not Cached" || r->reason == "Parent Offline And Not Cached"));
  env.end();
}

// ---------------------------------------------------------------------------
// Issue #15: sync windows. Outside a window no tag revalidation reaches the
// parent (whatever sync.pull_through says); a miss follows the policy.

namespace {
/// A manifest upstream for tag "t" of "r" (and a blob under any digest).
Script window_upstream(const std::string& manifest, const std::string& blob) {
  return [manifest, blob](ScriptConn& c, const SeenRequest& r) {
    if (probe(c, r)) return;
    if (r.path().find("/manifests/") != std::string::npos) return (void)c.send(manifest_reply(r, manifest));
    c.send(for_method(r, reply(200, blob, {{"Content-Type", "application/octet-stream"}})));
  };
}

cache::PullOptions window_popts(cache::PullPolicy policy, std::shared_ptr<std::atomic<bool>> open) {
  auto p = CacheEnv::default_popts();
  p.tag_ttl_ms = 0;  // every cached tag is due for a check
  p.pull_policy = policy;
  p.in_window = [open] { return open->load(); };
  return p;
}

void seed_tag(CacheEnv& env, const std::string& bytes) {
  store::ManifestPut m;
  m.repo = "r";
  m.digest = Digest::sha256_of(bytes);
  m.media_type = kOciManifestType;
  m.tag = "t";
  m.origin = store::Origin::Cached;
  REQUIRE(env.store->put_manifest(m, bytes).ok());
}

size_t manifest_requests(CacheEnv& env) {
  size_t n = 0;
  for (const auto& r : env.upstream.requests())
    if (r.path().find("/manifests/") != std::string::npos) ++n;
  return n;
}
}  // namespace

TEST_CASE("cache: outside a sync window a cached tag is served as it is; no check reaches the parent",
          "[cache][window]") {
  const std::string old_m = manifest_json("old"), new_m = manifest_json("new");
  for (auto policy : {cache::PullPolicy::Always, cache::PullPolicy::InWindow, cache::PullPolicy::Never}) {
    auto open = std::make_shared<std::atomic<bool>>(false);
    CacheEnv env(window_upstream(new_m, "b"), window_popts(policy, open));
    seed_tag(env, old_m);
    Route route = env.route("r");
    auto got = env.manifest_now(route, "t");
    REQUIRE(got.ok());
    CHECK(got->bytes == old_m);  // the tag moved upstream, but nobody asked
    CHECK_FALSE(got->offline);
    CHECK(manifest_requests(env) == 0);
    CHECK(env.stats().revalidations_skipped == 1);
    CHECK(env.stats().revalidations == 0);

    // The window opens: the next request checks the tag and follows the move.
    open->store(true);
    auto fresh = env.manifest_now(route, "t");
    REQUIRE(fresh.ok());
    CHECK(fresh->bytes == new_m);
    CHECK(env.stats().revalidations == 1);
    env.end();
  }
}

TEST_CASE("cache: sync.pull_through = in_window: outside a window a miss is refused at once, inside it is fetched",
          "[cache][window]") {
  const std::string m1 = manifest_json("miss");
  const std::string bytes = pattern(3000, 5);
  const Digest d = Digest::sha256_of(bytes);
  auto open = std::make_shared<std::atomic<bool>>(false);
  CacheEnv env(window_upstream(m1, bytes), window_popts(cache::PullPolicy::InWindow, open));
  Route route = env.route("r");

  auto miss = env.manifest_now(route, "t");
  REQUIRE_FALSE(miss.ok());
  CHECK(miss.error().code == Errc::UpstreamUnavailable);
  CHECK(miss.error().reason == "Not Cached, Outside Sync Window");
  // A manifest HEAD in ReadWrite mode is a pushing client's "is it here?": "no".
  ManifestCall head;
  env.fx().post([&] {
    env.pull->manifest(route, "t", /*want_bytes=*/false, [&](Result<ManifestResult> r) {
      env.fx().update([&] {
        head.result.emplace(std::move(r));
        head.done = true;
      });
    });
  });
  REQUIRE(env.fx().wait([&] { return head.done; }));
  {
    std::lock_guard<std::mutex> g(env.fx().mu);
    REQUIRE_FALSE(head.result->ok());
    CHECK(head.result->error().code == Errc::ManifestUnknown);
  }

  TestClient a(env.port());
  REQUIRE(a.send(get_request(blob_path("r", d))));
  auto r = a.read_response();
  REQUIRE(r);
  CHECK(r->status == 503);
  CHECK(r->reason == "Not Cached, Outside Sync Window");
  CHECK(r->body.find("in_window") != std::string::npos);
  CHECK(env.upstream.request_count() == 0);
  CHECK(env.stats().window_misses == 3);

  open->store(true);
  REQUIRE(a.send(get_request(blob_path("r", d))));
  auto ok = a.read_response();
  REQUIRE(ok);
  CHECK(ok->status == 200);
  CHECK(store::test::same_bytes(ok->body, bytes));
  auto m = env.manifest_now(route, "t");
  REQUIRE(m.ok());
  CHECK(m->bytes == m1);
  env.end();
}

TEST_CASE("cache: sync.pull_through = always fetches a miss outside a window; never refuses one inside",
          "[cache][window]") {
  const std::string m1 = manifest_json("always");
  const std::string bytes = pattern(2000, 9);
  const Digest d = Digest::sha256_of(bytes);
  {
    auto open = std::make_shared<std::atomic<bool>>(false);
    CacheEnv env(window_upstream(m1, bytes), window_popts(cache::PullPolicy::Always, open));
    auto m = env.manifest_now(env.route("r"), "t");
    REQUIRE(m.ok());
    CHECK(m->bytes == m1);
    TestClient a(env.port());
    REQUIRE(a.send(get_request(blob_path("r", d))));
    auto r = a.read_response();
    CHECK(status_of(r) == 200);
    CHECK(env.stats().window_misses == 0);
    env.end();
  }
  {
    auto open = std::make_shared<std::atomic<bool>>(true);
    CacheEnv env(window_upstream(m1, bytes), window_popts(cache::PullPolicy::Never, open));
    auto m = env.manifest_now(env.route("r"), "t");
    REQUIRE_FALSE(m.ok());
    CHECK(m.error().reason == "Not Cached, Pull-Through Off");
    TestClient a(env.port());
    REQUIRE(a.send(get_request(blob_path("r", d))));
    auto r = a.read_response();
    CHECK(status_of(r) == 503);
    CHECK(env.upstream.request_count() == 0);
    env.end();
  }
}

TEST_CASE("cache: the window switch reaches every upstream's link", "[cache][window]") {
  CacheEnv env(blob_upstream("x"));
  env.add_named("docker.io", "http://127.0.0.1:" + std::to_string(pick_free_port()) + "/");
  env.fx().call([&] { env.pull->set_background_allowed(false); });
  auto allowed = env.fx().call([&] {
    std::vector<bool> out;
    for (const auto* u : env.pull->upstreams()) out.push_back(u->link().background_allowed());
    return out;
  });
  CHECK(allowed == std::vector<bool>{false, false});
  env.fx().call([&] { env.pull->set_background_allowed(true); });
  env.end();
}

TEST_CASE("cache: ReadOnly, outside a window with in_window: a blob HEAD miss asks the parent nothing",
          "[cache][window]") {
  const std::string bytes = pattern(1000, 4);
  const Digest d = Digest::sha256_of(bytes);
  auto open = std::make_shared<std::atomic<bool>>(false);
  auto popts = window_popts(cache::PullPolicy::InWindow, open);
  popts.read_only = true;
  CacheEnv env(blob_upstream(bytes), popts);
  TestClient a(env.port());
  REQUIRE(a.send(get_request(blob_path("r", d), {}, "HEAD")));
  auto r = a.read_response(kWait, /*head_only=*/true);
  CHECK(status_of(r) == 404);
  CHECK(env.upstream.request_count() == 0);
  // In a window the same HEAD is the parent's to answer (size, no body).
  open->store(true);
  REQUIRE(a.send(get_request(blob_path("r", d), {}, "HEAD")));
  auto in = a.read_response(kWait, true);
  REQUIRE(in);
  CHECK(in->status == 200);
  CHECK(in->header("Content-Length") == std::to_string(bytes.size()));
  CHECK(env.upstream.count_path(blob_path("r", d)) == 1);
  env.end();
}
