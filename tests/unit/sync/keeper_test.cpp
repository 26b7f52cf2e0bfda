// sync::Keeper (issue #15, "Kept repositories") with a real Store in a temp
// dir, a real loop (LoopFixture thread), the real pull-through cache and
// registry client, and an in-memory OCI registry on loopback as the parent
// (HttpTestServer + FakeRegistry below): catalog and tags/list with Link
// pagination, manifests by tag and digest, blobs, the referrers API (or its
// absence, for the OCI 1.1 fallback tag), and blobs it serves wrong bytes
// for. What is checked is what the store holds afterwards (bytes, digests,
// tags, referrers, pins) and what the parent was asked.
//
// The Keeper lives on the loop thread: created, called and destroyed
// through fx.call()/post(); results cross back under fx.mu.
#include <catch2/catch.hpp>
#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "base/digest.hpp"
#include "cache/pull_through.hpp"
#include "http/client.hpp"
#include "store/store.hpp"
#include "storesvc/store_service.hpp"
#include "support/http_test_server.hpp"
#include "support/loop_fixture.hpp"
#include "sync/keeper.hpp"
#include "unit/upstream/docker_registry.hpp"
#include "unit/store/store_fixture.hpp"
#include "upstream/registry_client.hpp"
#include "uv/work.hpp"

using namespace outpost;
using namespace outpost::test;
using json = nlohmann::json;
using std::chrono::milliseconds;

namespace {

constexpr const char* kOciManifest = "application/vnd.oci.image.manifest.v1+json";
constexpr const char* kOciIndex = "application/vnd.oci.image.index.v1+json";
constexpr const char* kOciConfig = "application/vnd.oci.image.config.v1+json";
constexpr const char* kOciLayer = "application/vnd.oci.image.layer.v1.tar";
constexpr const char* kEmpty = "application/vnd.oci.empty.v1+json";

std::string sha(const std::string& b) { return Digest::sha256_of(b).str(); }

/// The parent: an in-memory registry. Scripts run on server threads, so
/// every member is guarded by mu.
struct FakeRegistry {
  struct Repo {
    std::map<std::string, std::string> tags;  ///< tag -> digest
    std::map<std::string, std::pair<std::string, std::string>> manifests;  ///< digest -> (media type, bytes)
  };
  std::mutex mu;
  std::map<std::string, Repo> repos;
  std::map<std::string, std::string> blobs;  ///< digest -> bytes (every repository reads every blob)
  std::set<std::string> corrupt;             ///< blobs served with one byte flipped
  bool catalog = true;
  bool tags_link_to_self = false;  ///< every tags/list page's Link names that same page
  bool referrers_api = true;

  // ---- content builders (test thread) ----------------------------------------
  std::string add_blob(const std::string& bytes) {
    std::lock_guard g(mu);
    blobs[sha(bytes)] = bytes;
    return sha(bytes);
  }
  std::string add_manifest(const std::string& repo, const std::string& media_type, const std::string& bytes,
                           const std::string& tag = {}) {
    std::lock_guard g(mu);
    auto& r = repos[repo];
    r.manifests[sha(bytes)] = {media_type, bytes};
    if (!tag.empty()) r.tags[tag] = sha(bytes);
    return sha(bytes);
  }
  /// An image of `layers`; returns (digest, bytes).
  std::pair<std::string, std::string> image(const std::string& repo, const std::vector<std::string>& layers,
                                            const std::string& tag = {}, const std::string& arch = "amd64") {
    std::string config = R"({"architecture":")" + arch + R"(","os":"linux","rootfs":{"type":"layers"}})";
    json m = {{"schemaVersion", 2}, {"mediaType", kOciManifest},
              {"config", {{"mediaType", kOciConfig}, {"digest", add_blob(config)}, {"size", config.size()}}},
              {"layers", json::array()}};
    for (const auto& l : layers)
      m["layers"].push_back({{"mediaType", kOciLayer}, {"digest", add_blob(l)}, {"size", l.size()}});
    std::string bytes = m.dump();
    return {add_manifest(repo, kOciManifest, bytes, tag), bytes};
  }
  std::pair<std::string, std::string> index(const std::string& repo,
                                            const std::vector<std::pair<std::string, std::string>>& children,
                                            const std::string& tag = {}) {
    json idx = {{"schemaVersion", 2}, {"mediaType", kOciIndex}, {"manifests", json::array()}};
    for (const auto& [d, b] : children)
      idx["manifests"].push_back({{"mediaType", kOciManifest}, {"digest", d}, {"size", b.size()}});
    std::string bytes = idx.dump();
    return {add_manifest(repo, kOciIndex, bytes, tag), bytes};
  }
  /// A signature-like OCI 1.1 artifact whose subject is `subject`; returns
  /// (digest, its one blob's digest). Without the referrers API the
  /// fallback tag "sha256-<hex>" lists it (as oras/notation push it).
  std::pair<std::string, std::string> referrer(const std::string& repo, const std::string& subject,
                                               const std::string& subject_type, size_t subject_size,
                                               const std::string& payload) {
    std::string empty = "{}";
    json m = {{"schemaVersion", 2}, {"mediaType", kOciManifest}, {"artifactType", "application/vnd.example.sig"},
              {"config", {{"mediaType", kEmpty}, {"digest", add_blob(empty)}, {"size", 2}}},
              {"layers", {{{"mediaType", "application/vnd.example.sig.payload"}, {"digest", add_blob(payload)},
                           {"size", payload.size()}}}},
              {"subject", {{"mediaType", subject_type}, {"digest", subject}, {"size", subject_size}}}};
    std::string bytes = m.dump();
    std::string d = add_manifest(repo, kOciManifest, bytes);
    json fb = {{"schemaVersion", 2}, {"mediaType", kOciIndex},
               {"manifests", {{{"mediaType", kOciManifest}, {"digest", d}, {"size", bytes.size()},
                               {"artifactType", "application/vnd.example.sig"}}}}};
    add_manifest(repo, kOciIndex, fb.dump(), "sha256-" + subject.substr(7));
    return {d, sha(payload)};
  }
  void delete_tag(const std::string& repo, const std::string& tag) {
    std::lock_guard g(mu);
    repos[repo].tags.erase(tag);
  }

  // ---- the HTTP side (server threads) -----------------------------------------
  static std::map<std::string, std::string> query(const std::string& target) {
    std::map<std::string, std::string> q;
    size_t at = target.find('?');
    if (at == std::string::npos) return q;
    std::string s = target.substr(at + 1);
    for (size_t i = 0; i < s.size();) {
      size_t amp = s.find('&', i);
      if (amp == std::string::npos) amp = s.size();
      std::string kv = s.substr(i, amp - i);
      size_t eq = kv.find('=');
      if (eq != std::string::npos) q[kv.substr(0, eq)] = kv.substr(eq + 1);
      i = amp + 1;
    }
    return q;
  }
  /// One page of `names` (sorted) after ?last, at most ?n, with a Link to the next.
  static std::string page(ScriptConn&, const SeenRequest& r, const std::string& base, const std::string& key,
                          const std::vector<std::string>& names, const std::string& extra_field = {}) {
    auto q = query(r.target);
    size_t n = q.count("n") ? std::stoul(q["n"]) : 1000;
    json out = json::object();
    if (!extra_field.empty()) out["name"] = extra_field;
    out[key] = json::array();
    std::string last;
    bool more = false;
    for (const auto& name : names) {
      if (q.count("last") && name <= q["last"]) continue;
      if (out[key].size() == n) {
        more = true;
        break;
      }
      out[key].push_back(name);
      last = name;
    }
    HeaderList h{{"Content-Type", "application/json"}};
    if (more) h.emplace_back("Link", "<" + base + "?last=" + last + "&n=" + std::to_string(n) + ">; rel=\"next\"");
    return reply(200, out.dump(), h);
  }

  void serve(ScriptConn& c, const SeenRequest& r) {
    std::lock_guard g(mu);
    const std::string path = r.path();
    if (path == "/v2/") return (void)c.send(reply(200, "{}"));
    if (path == "/v2/_catalog") {
      if (!catalog) return (void)c.send(reply(404, "404 page not found\n"));
      std::vector<std::string> names;
      for (const auto& [n, repo] : repos) names.push_back(n);
      return (void)c.send(page(c, r, "/v2/_catalog", "repositories", names));
    }
    auto split = [&](const std::string& mark, std::string& repo, std::string& rest) {
      size_t at = path.rfind(mark);
      if (at == std::string::npos || at < 4) return false;
      repo = path.substr(4, at - 4);
      rest = path.substr(at + mark.size());
      return true;
    };
    std::string repo, rest;
    if (split("/tags/list", repo, rest) && rest.empty()) {
      auto it = repos.find(repo);
      if (it == repos.end()) return (void)c.send(reply(404, R"({"errors":[{"code":"NAME_UNKNOWN"}]})"));
      std::vector<std::string> names;
      for (const auto& [t, d] : it->second.tags) names.push_back(t);
      if (tags_link_to_self) {
        json out = {{"name", repo}, {"tags", names}};
        return (void)c.send(reply(200, out.dump(), {{"Content-Type", "application/json"},
                                                    {"Link", "<" + r.target + ">; rel=\"next\""}}));
      }
      return (void)c.send(page(c, r, "/v2/" + repo + "/tags/list", "tags", names, repo));
    }
    if (split("/manifests/", repo, rest)) {
      auto it = repos.find(repo);
      std::string d = rest;
      if (it != repos.end() && it->second.tags.count(rest)) d = it->second.tags[rest];
      if (it == repos.end() || !it->second.manifests.count(d))
        return (void)c.send(for_method(r, reply(404, R"({"errors":[{"code":"MANIFEST_UNKNOWN"}]})")));
      const auto& [mt, bytes] = it->second.manifests[d];
      return (void)c.send(for_method(r, reply(200, bytes, {{"Content-Type", mt}, {"Docker-Content-Digest", d}})));
    }
    if (split("/blobs/", repo, rest)) {
      auto it = blobs.find(rest);
      if (it == blobs.end()) return (void)c.send(for_method(r, reply(404, R"({"errors":[{"code":"BLOB_UNKNOWN"}]})")));
      std::string bytes = it->second;
      if (corrupt.count(rest)) bytes[bytes.size() / 2] ^= 0x01;
      return (void)c.send(for_method(r, reply(200, bytes, {{"Content-Type", "application/octet-stream"},
                                                           {"Docker-Content-Digest", rest}})));
    }
    if (split("/referrers/", repo, rest)) {
      if (!referrers_api) return (void)c.send(reply(404, "404 page not found\n"));
      json idx = {{"schemaVersion", 2}, {"mediaType", kOciIndex}, {"manifests", json::array()}};
      auto it = repos.find(repo);
      if (it != repos.end())
        for (const auto& [d, m] : it->second.manifests) {
          auto j = json::parse(m.second, nullptr, false);
          if (j.is_object() && j.contains("subject") && j["subject"]["digest"] == rest)
            idx["manifests"].push_back({{"mediaType", m.first}, {"digest", d}, {"size", m.second.size()},
                                        {"artifactType", j.value("artifactType", "")}});
        }
      return (void)c.send(reply(200, idx.dump(), {{"Content-Type", kOciIndex}}));
    }
    c.send(reply(404, "no route"));
  }
};

/// Store + parent + pull-through + Keeper, torn down on the loop thread.
class KeepEnv {
 public:
  /// The parent is the FakeRegistry, or the registry at `parent_url`.
  explicit KeepEnv(std::vector<std::string> patterns, sync::KeeperOptions kopts = small_pages(),
                   std::string parent_url = {})
      : parent([this](ScriptConn& c, const SeenRequest& r) { reg.serve(c, r); }) {
    if (parent_url.empty()) parent_url = parent.url();
    auto st = store::Store::open(box.root());
    REQUIRE(st.ok());
    store = st->get();
    std::vector<sync::KeepPattern> parsed;
    for (const auto& p : patterns) {
      auto kp = sync::KeepPattern::parse(p);
      REQUIRE(kp.ok());
      parsed.push_back(*kp);
    }
    fx.start_thread();
    fx.call([&] {
      http = std::make_unique<http::HttpClient>(fx.loop(), nullptr);
      svc = std::make_unique<storesvc::StoreService>(fx.loop(), std::move(*st));
      cache::PullOptions popts;
      // The Keeper must work whatever sync.pull_through says: it runs in a window.
      popts.pull_policy = cache::PullPolicy::Never;
      popts.in_window = [] { return false; };
      pull = std::make_unique<cache::PullThrough>(fx.loop(), svc.get(), popts);
      upstream::UpstreamOptions o;
      o.name = "parent";
      o.url = *http::Url::parse(parent_url);
      pull->set_parent(std::make_unique<upstream::RegistryClient>(fx.loop(), *http, o));
      keeper = std::make_unique<sync::Keeper>(fx.loop(), *svc, *pull, parsed, kopts);
    });
    patterns_ = std::move(parsed);
    kopts_ = kopts;
  }
  /// A new Keeper on the same store (a restart of the daemon, as far as it knows).
  void new_keeper() {
    fx.call([&] { keeper = std::make_unique<sync::Keeper>(fx.loop(), *svc, *pull, patterns_, kopts_); });
  }
  ~KeepEnv() { end(); }

  static sync::KeeperOptions small_pages() {
    sync::KeeperOptions o;
    o.page_size = 1;  // every listing paginates
    o.max_parallel_blobs = 2;
    return o;
  }

  /// One refresh, waited for; its Status.
  Status refresh() {
    bool done = false;
    std::optional<Status> out;
    fx.post([&] {
      keeper->refresh([&](Status st) {
        fx.update([&] {
          out.emplace(std::move(st));
          done = true;
        });
      });
    });
    if (!fx.wait([&] { return done; }, milliseconds(30'000))) FAIL("refresh() did not finish in time");
    std::lock_guard g(fx.mu);
    return *out;
  }
  std::vector<sync::KeepStatus> status() { return fx.call([&] { return keeper->status(); }); }

  /// The bytes of blob `d` as `repo` reads it locally, nullopt when not readable.
  std::optional<std::string> local_blob(const std::string& repo, const std::string& d) {
    auto ob = store->open_blob(repo, *Digest::parse(d));
    if (!ob) return std::nullopt;
    std::string out(ob->size, '\0');
    size_t got = 0;
    while (got < out.size()) {
      ssize_t n = ::pread(ob->fd.get(), out.data() + got, out.size() - got, static_cast<off_t>(got));
      if (n <= 0) return std::nullopt;
      got += static_cast<size_t>(n);
    }
    return out;
  }
  std::string local_tag(const std::string& repo, const std::string& tag) {
    auto d = store->get_tag(repo, tag);
    return d ? d->str() : "";
  }
  /// A request through the env's HTTP client (pushing to a real parent).
  std::pair<int, http::Headers> send(http::Method m, const std::string& url, std::string body = {},
                                     const std::string& content_type = {}) {
    bool done = false;
    int status = 0;
    http::Headers headers;
    fx.post([&] {
      http::ClientRequest req;
      req.method = m;
      req.url = *http::Url::parse(url);
      req.body = std::move(body);
      if (!content_type.empty()) req.headers.add("Content-Type", content_type);
      http->send(
          std::move(req),
          [&](const http::ClientResponse& r) {
            status = r.status;
            headers = r.headers;
            return true;
          },
          [](std::string_view) {}, [&](Status) { fx.update([&] { done = true; }); });
    });
    if (!fx.wait([&] { return done; }, milliseconds(30'000))) FAIL("request to " << url << " did not finish");
    std::lock_guard g(fx.mu);
    return {status, headers};
  }

  size_t parent_asked(const std::string& needle) {
    size_t n = 0;
    for (const auto& r : parent.requests())
      if (r.target.find(needle) != std::string::npos) ++n;
    return n;
  }

  void end() {
    if (ended_) return;
    ended_ = true;
    CHECK(fx.call_quietly([&] {
      keeper.reset();
      pull->shutdown();
      http.reset();
    }));
    const auto deadline = Clock::now() + kWait;
    while (Clock::now() < deadline && !fx.call([] { return uv::pending_work() == 0; }))
      fx.wait([] { return false; }, milliseconds(5));
    CHECK(fx.call_quietly([&] {
      pull.reset();
      svc.reset();
    }));
    CHECK(fx.finish() == 0);
    parent.stop();
  }

  store::test::Sandbox box;
  store::Store* store = nullptr;  ///< owned by svc; thread-safe, read from the test thread
  FakeRegistry reg;
  HttpTestServer parent;
  LoopFixture fx;
  std::unique_ptr<http::HttpClient> http;
  std::unique_ptr<storesvc::StoreService> svc;
  std::unique_ptr<cache::PullThrough> pull;
  std::unique_ptr<sync::Keeper> keeper;

 private:
  bool ended_ = false;
  std::vector<sync::KeepPattern> patterns_;
  sync::KeeperOptions kopts_;
};

std::string layer(size_t n, unsigned seed) { return store::test::pattern_bytes(n, seed); }

}  // namespace

TEST_CASE("keeper: a glob walks the catalog, filters tags, pulls every platform of an index and pins it",
          "[sync][keeper]") {
  KeepEnv env({"factory/*:v*"});
  auto& reg = env.reg;
  const std::string l_amd = layer(300'000, 1), l_arm = layer(200'000, 2), l_common = layer(50'000, 3);
  auto amd = reg.image("factory/app", {l_common, l_amd}, "", "amd64");
  auto arm = reg.image("factory/app", {l_common, l_arm}, "", "arm64");
  auto v1 = reg.index("factory/app", {amd, arm}, "v1");
  auto v2 = reg.image("factory/app", {layer(1000, 4)}, "v2");
  reg.image("factory/app", {layer(1000, 5)}, "dev");                // tag does not match
  reg.image("factory/tool", {layer(1000, 6)}, "v9");                // matches too
  reg.image("factory/sub/deep", {layer(1000, 7)}, "v1");            // "*" is one component
  const std::string other_layer = layer(1000, 8);
  reg.image("other/app", {other_layer}, "v1");                      // repository does not match

  Status st = env.refresh();
  REQUIRE(st.ok());

  CHECK(env.local_tag("factory/app", "v1") == v1.first);
  CHECK(env.local_tag("factory/app", "v2") == v2.first);
  CHECK(!env.local_tag("factory/tool", "v9").empty());
  CHECK(env.local_tag("factory/app", "dev").empty());
  CHECK(env.local_tag("factory/sub/deep", "v1").empty());
  CHECK(env.local_tag("other/app", "v1").empty());
  // Every platform, every blob, with the parent's bytes.
  for (const auto& m : {amd, arm}) CHECK(env.store->get_manifest("factory/app", *Digest::parse(m.first)).ok());
  for (const auto& l : {l_amd, l_arm, l_common}) CHECK(env.local_blob("factory/app", sha(l)) == l);
  CHECK(env.parent_asked("/other/app/") == 0);
  CHECK(env.parent_asked("/factory/sub/deep/manifests") == 0);
  CHECK(env.parent_asked("/blobs/" + sha(l_common)) == 1);  // shared layer fetched once

  auto s = env.status();
  REQUIRE(s.size() == 1);
  CHECK(s[0].pattern == "factory/*:v*");
  CHECK(s[0].tags == 3);
  CHECK(s[0].last_refresh_ms > 0);
  CHECK(s[0].last_error.empty());

  // Pinned: the tag, its children and their layers (never evicted); GC with
  // no grace keeps all of it (it is all referenced).
  auto kept = env.store->kept_tag("factory/app", "v1");
  REQUIRE(kept.ok());
  REQUIRE(kept->has_value());
  CHECK((*kept)->digest.str() == v1.first);
  CHECK((*kept)->pattern == "factory/*:v*");
  CHECK(*env.store->is_pinned("factory/app", *Digest::parse(amd.first)));
  CHECK(*env.store->is_pinned("factory/app", *Digest::parse(sha(l_arm))));
  CHECK_FALSE(*env.store->is_pinned("factory/app", *Digest::parse(sha(other_layer))));
  store::GcOptions gc;
  gc.grace_ms = 0;
  REQUIRE(env.store->gc(gc).ok());
  for (const auto& l : {l_amd, l_arm, l_common}) CHECK(env.local_blob("factory/app", sha(l)) == l);

  // A second pass with nothing new asks for no blob again.
  const size_t blob_gets = env.parent_asked("/blobs/");
  REQUIRE(env.refresh().ok());
  CHECK(env.parent_asked("/blobs/") == blob_gets);
}

TEST_CASE("keeper: a tag moved at the parent moves here; one deleted at the parent stays", "[sync][keeper]") {
  KeepEnv env({"base/alpine"});
  auto& reg = env.reg;
  const std::string old_layer = layer(10'000, 11), new_layer = layer(12'000, 12);
  auto old_img = reg.image("base/alpine", {old_layer}, "3.19");
  auto gone = reg.image("base/alpine", {layer(5'000, 13)}, "3.18");
  REQUIRE(env.refresh().ok());
  CHECK(env.local_tag("base/alpine", "3.19") == old_img.first);
  CHECK(env.local_tag("base/alpine", "3.18") == gone.first);

  auto new_img = reg.image("base/alpine", {new_layer}, "3.19");
  reg.delete_tag("base/alpine", "3.18");
  REQUIRE(env.refresh().ok());
  CHECK(env.local_tag("base/alpine", "3.19") == new_img.first);
  CHECK(env.local_blob("base/alpine", sha(new_layer)) == new_layer);
  CHECK(env.local_tag("base/alpine", "3.18") == gone.first);  // stays until the operator removes it
  CHECK(env.local_blob("base/alpine", sha(old_layer)) == old_layer);
  auto s = env.status();
  CHECK(s[0].tags == 2);
  CHECK(*env.store->is_pinned("base/alpine", *Digest::parse(gone.first)));

  // After a restart the count comes from the store before any pass.
  env.new_keeper();
  const auto deadline = Clock::now() + kWait;
  while (Clock::now() < deadline && env.status()[0].tags != 2) env.fx.wait([] { return false; }, milliseconds(5));
  CHECK(env.status()[0].tags == 2);
  CHECK(env.status()[0].last_refresh_ms == 0);
}

TEST_CASE("keeper: a tags/list whose Link names the same page again is read once", "[sync][keeper]") {
  KeepEnv env({"base/alpine"});
  auto& reg = env.reg;
  reg.tags_link_to_self = true;
  auto img = reg.image("base/alpine", {layer(3'000, 21)}, "3.19");
  REQUIRE(env.refresh().ok());
  CHECK(env.local_tag("base/alpine", "3.19") == img.first);
  // Before: the same page was followed max_pages (1000) times, and the tag
  // fetched once per copy of it.
  CHECK(env.parent_asked("/tags/list") == 2);  // the page, then its repeat: nothing new, the end
  CHECK(env.parent_asked("/manifests/3.19") == 1);
}

TEST_CASE("keeper: referrers come along, through the referrers API or the fallback tag", "[sync][keeper]") {
  const bool api = GENERATE(true, false);
  INFO("referrers API at the parent: " << api);
  KeepEnv env({"factory/signed:v1"});
  auto& reg = env.reg;
  reg.referrers_api = api;
  auto amd = reg.image("factory/signed", {layer(4'000, 21)}, "", "amd64");
  auto v1 = reg.index("factory/signed", {amd}, "v1");
  auto sig = reg.referrer("factory/signed", v1.first, kOciIndex, v1.second.size(), "signature of v1\n");
  auto amd_sig = reg.referrer("factory/signed", amd.first, kOciManifest, amd.second.size(), "sbom of amd64\n");

  REQUIRE(env.refresh().ok());
  for (const auto& [subject, ref] : {std::pair{v1.first, sig}, std::pair{amd.first, amd_sig}}) {
    auto page = env.store->referrers("factory/signed", *Digest::parse(subject));
    REQUIRE(page.ok());
    REQUIRE(page->items.size() == 1);
    CHECK(page->items[0].digest.str() == ref.first);
    CHECK(page->items[0].artifact_type == std::optional<std::string>("application/vnd.example.sig"));
  }
  CHECK(env.local_blob("factory/signed", sig.second) == "signature of v1\n");
  CHECK(env.local_blob("factory/signed", amd_sig.second) == "sbom of amd64\n");
  CHECK(*env.store->is_pinned("factory/signed", *Digest::parse(sig.second)));
  CHECK(env.status()[0].last_error.empty());
}

TEST_CASE("keeper: bytes that do not verify are refused and reported; the next pass heals", "[sync][keeper]") {
  KeepEnv env({"factory/app:v1"});
  auto& reg = env.reg;
  const std::string good = layer(100'000, 31), bad = layer(100'000, 32);
  auto v1 = reg.image("factory/app", {good, bad}, "v1");
  {
    std::lock_guard g(reg.mu);
    reg.corrupt.insert(sha(bad));
  }
  Status st = env.refresh();
  REQUIRE_FALSE(st.ok());
  auto s = env.status();
  CHECK(s[0].last_error.find(sha(bad)) != std::string::npos);
  CHECK(s[0].last_error.find("do not hash") != std::string::npos);
  CHECK(s[0].tags == 0);
  CHECK_FALSE(env.local_blob("factory/app", sha(bad)).has_value());  // never wrong bytes
  CHECK(env.local_blob("factory/app", sha(good)) == good);
  CHECK_FALSE(env.store->kept_tag("factory/app", "v1")->has_value());

  {
    std::lock_guard g(reg.mu);
    reg.corrupt.clear();
  }
  REQUIRE(env.refresh().ok());
  CHECK(env.local_blob("factory/app", sha(bad)) == bad);
  CHECK(env.status()[0].tags == 1);
  CHECK(env.status()[0].last_error.empty());
}

TEST_CASE("keeper: a glob without a catalog at the parent is reported; literal patterns still work",
          "[sync][keeper]") {
  KeepEnv env({"factory/*", "base/alpine:3.*", "missing/repo"});
  auto& reg = env.reg;
  reg.catalog = false;
  reg.image("factory/app", {layer(1000, 41)}, "v1");
  auto alpine = reg.image("base/alpine", {layer(1000, 42)}, "3.20");
  reg.image("base/alpine", {layer(1000, 43)}, "edge");
  CHECK_FALSE(env.refresh().ok());
  auto s = env.status();
  REQUIRE(s.size() == 3);
  CHECK(s[0].last_error.find("no catalog") != std::string::npos);
  CHECK(s[0].last_refresh_ms == 0);
  CHECK(s[1].last_error.empty());
  CHECK(s[1].tags == 1);
  CHECK(s[1].last_refresh_ms > 0);
  CHECK(s[2].last_error.find("no such repository") != std::string::npos);
  CHECK(env.local_tag("base/alpine", "3.20") == alpine.first);
  CHECK(env.local_tag("base/alpine", "edge").empty());
  CHECK(env.local_tag("factory/app", "v1").empty());
}

TEST_CASE("keeper: cancel ends the pass at once with Cancelled; a busy keeper refuses a second pass",
          "[sync][keeper]") {
  KeepEnv env({"factory/app"});
  auto& reg = env.reg;
  reg.image("factory/app", {layer(1000, 51)}, "v1");
  std::vector<Status> got;
  bool busy_after = true;
  env.fx.call([&] {
    env.keeper->refresh([&](Status st) { got.push_back(std::move(st)); });
    env.keeper->refresh([&](Status st) { got.push_back(std::move(st)); });  // refused: busy
    env.keeper->cancel();
    busy_after = env.keeper->busy();
  });
  REQUIRE(got.size() == 2);
  CHECK(got[0].error().code == Errc::Overloaded);
  CHECK(got[1].error().code == Errc::Cancelled);
  CHECK_FALSE(busy_after);
  // Late answers of the cancelled pass change nothing; a new pass works.
  REQUIRE(env.refresh().ok());
  CHECK(env.status()[0].tags == 1);
}

namespace {

/// Pushes what `reg` describes into a real registry: blobs (POST + PUT),
/// then every manifest of `repo` by digest, then its tags.
void push_to(KeepEnv& env, const std::string& base, FakeRegistry& reg, const std::string& repo) {
  std::map<std::string, std::string> blobs;
  FakeRegistry::Repo r;
  {
    std::lock_guard g(reg.mu);
    blobs = reg.blobs;
    r = reg.repos[repo];
  }
  for (const auto& [d, bytes] : blobs) {
    auto head = env.send(http::Method::Head, base + "/v2/" + repo + "/blobs/" + d);
    if (head.first == 200) continue;
    auto post = env.send(http::Method::Post, base + "/v2/" + repo + "/blobs/uploads/");
    REQUIRE(post.first == 202);
    std::string loc(post.second.get("Location").value_or(""));
    if (loc.rfind("http", 0) != 0) loc = base + loc;
    loc += (loc.find('?') == std::string::npos ? "?" : "&") + std::string("digest=") + d;
    REQUIRE(env.send(http::Method::Put, loc, bytes, "application/octet-stream").first == 201);
  }
  // Children before the indexes and referrers that name them: indexes last.
  for (int pass = 0; pass < 2; ++pass)
    for (const auto& [d, m] : r.manifests)
      if ((m.first == kOciIndex) == (pass == 1))
        REQUIRE(env.send(http::Method::Put, base + "/v2/" + repo + "/manifests/" + d, m.second, m.first).first == 201);
  for (const auto& [tag, d] : r.tags) {
    const auto& m = r.manifests[d];
    REQUIRE(env.send(http::Method::Put, base + "/v2/" + repo + "/manifests/" + tag, m.second, m.first).first == 201);
  }
}

}  // namespace

TEST_CASE("keeper: against a real docker-registry (distribution 2.8) parent", "[sync][keeper][registry]") {
  if (!DockerRegistry::available()) {
    WARN("skipped: " << DockerRegistry::kBin << " not installed");
    return;
  }
  DockerRegistry cloud;
  REQUIRE(cloud.start());
  KeepEnv env({"factory/*:v*"}, KeepEnv::small_pages(), cloud.url());
  FakeRegistry content;  // builds the images; pushed to the real registry
  const std::string l_amd = layer(400'000, 61), l_arm = layer(300'000, 62);
  auto amd = content.image("factory/app", {l_amd}, "", "amd64");
  auto arm = content.image("factory/app", {l_arm}, "", "arm64");
  auto v1 = content.index("factory/app", {amd, arm}, "v1");
  auto v2 = content.image("factory/app", {layer(2'000, 63)}, "v2");
  content.image("factory/app", {layer(2'000, 64)}, "dev");
  // distribution 2.8 has no referrers API: the OCI 1.1 fallback tag lists it.
  auto sig = content.referrer("factory/app", v1.first, kOciIndex, v1.second.size(), "signature of v1\n");
  push_to(env, cloud.url(), content, "factory/app");
  FakeRegistry other;
  const std::string other_layer = layer(2'000, 65);
  other.image("other/app", {other_layer}, "v1");
  push_to(env, cloud.url(), other, "other/app");

  const size_t mark = cloud.access_log().size();
  REQUIRE(env.refresh().ok());
  CHECK(env.local_tag("factory/app", "v1") == v1.first);
  CHECK(env.local_tag("factory/app", "v2") == v2.first);
  CHECK(env.local_tag("factory/app", "dev").empty());
  CHECK(env.local_tag("other/app", "v1").empty());
  CHECK(env.local_blob("factory/app", sha(l_amd)) == l_amd);
  CHECK(env.local_blob("factory/app", sha(l_arm)) == l_arm);
  auto refs = env.store->referrers("factory/app", *Digest::parse(v1.first));
  REQUIRE(refs.ok());
  REQUIRE(refs->items.size() == 1);
  CHECK(refs->items[0].digest.str() == sig.first);
  CHECK(env.local_blob("factory/app", sig.second) == "signature of v1\n");
  const std::string during = cloud.access_log().substr(mark);
  CHECK(during.find("GET /v2/factory/app/blobs/" + sha(l_amd)) != std::string::npos);
  CHECK(during.find("/v2/other/app/") == std::string::npos);
  auto s = env.status();
  CHECK(s[0].tags == 2);
  CHECK(s[0].last_error.empty());

  // v1 moves at the parent; v2's manifest is deleted there (its tag goes with it).
  const std::string l_new = layer(100'000, 66);
  FakeRegistry next;
  auto v1b = next.image("factory/app", {l_new}, "v1");
  push_to(env, cloud.url(), next, "factory/app");
  REQUIRE(env.send(http::Method::Delete, cloud.url() + "/v2/factory/app/manifests/" + v2.first).first == 202);
  REQUIRE(env.refresh().ok());
  CHECK(env.local_tag("factory/app", "v1") == v1b.first);
  CHECK(env.local_blob("factory/app", sha(l_new)) == l_new);
  CHECK(env.local_tag("factory/app", "v2") == v2.first);  // stays here
  CHECK(env.status()[0].tags == 2);
}

TEST_CASE("keeper: a parent that is gone fails the pass quickly; what was kept stays", "[sync][keeper]") {
  KeepEnv env({"factory/*:v*", "base/alpine"});
  auto& reg = env.reg;
  auto v1 = reg.image("factory/app", {layer(3'000, 71)}, "v1");
  reg.image("factory/tool", {layer(3'000, 72)}, "v1");
  reg.image("base/alpine", {layer(3'000, 73)}, "3.20");
  REQUIRE(env.refresh().ok());
  const auto before = env.status();
  env.parent.stop();
  Status st = env.refresh();
  REQUIRE_FALSE(st.ok());
  auto s = env.status();
  for (size_t i = 0; i < 2; ++i) {
    CHECK_FALSE(s[i].last_error.empty());
    CHECK(s[i].last_refresh_ms == before[i].last_refresh_ms);  // not refreshed
    CHECK(s[i].tags == before[i].tags);
  }
  CHECK(env.local_tag("factory/app", "v1") == v1.first);
}

TEST_CASE("keeper: a tag pushed here is not replaced by the parent's, and is pinned", "[sync][keeper]") {
  KeepEnv env({"site/app"});
  auto& reg = env.reg;
  auto parents = reg.image("site/app", {layer(2'000, 81)}, "v1");
  reg.image("site/app", {layer(2'000, 82)}, "v2");
  // A local push of site/app:v1 (a different image).
  const std::string l = "pushed layer";
  REQUIRE(env.store->put_blob("site/app", *Digest::parse(sha(l)), l, store::Origin::Pushed).ok());
  json m = {{"schemaVersion", 2}, {"mediaType", kOciManifest},
            {"config", {{"mediaType", kOciConfig}, {"digest", sha(l)}, {"size", l.size()}}},
            {"layers", json::array()}};
  const std::string bytes = m.dump();
  store::ManifestPut put;
  put.repo = "site/app";
  put.digest = *Digest::parse(sha(bytes));
  put.media_type = kOciManifest;
  put.refs.push_back({*Digest::parse(sha(l)), true});
  put.tag = "v1";
  put.origin = store::Origin::Pushed;
  REQUIRE(env.store->put_manifest(put, bytes).ok());

  REQUIRE(env.refresh().ok());
  CHECK(env.local_tag("site/app", "v1") == sha(bytes));
  CHECK(env.local_tag("site/app", "v1") != parents.first);
  CHECK_FALSE(env.local_tag("site/app", "v2").empty());
  CHECK(env.status()[0].tags == 2);
  CHECK(env.parent_asked("/site/app/manifests/v1") == 0);
}

TEST_CASE("keeper: set_patterns (SIGHUP) keeps a new repository on the next pass and unpins a removed one",
          "[sync][keeper]") {
  KeepEnv env({"base/alpine"});
  auto& reg = env.reg;
  auto alpine = reg.image("base/alpine", {layer(6'000, 31)}, "3.19");
  auto app = reg.image("factory/app", {layer(7'000, 32)}, "v1");
  REQUIRE(env.refresh().ok());
  CHECK(*env.store->is_pinned("base/alpine", *Digest::parse(alpine.first)));
  CHECK(env.local_tag("factory/app", "v1").empty());

  auto next = std::vector<sync::KeepPattern>{*sync::KeepPattern::parse("factory/app:v*")};
  env.fx.call([&] { env.keeper->set_patterns(next); });
  // The removed pattern's pin goes (a store job): its content is ordinary
  // cached content again, still held.
  const auto deadline = Clock::now() + kWait;
  while (Clock::now() < deadline && env.store->kept_tag("base/alpine", "3.19")->has_value())
    env.fx.wait([] { return false; }, milliseconds(5));
  CHECK_FALSE(env.store->kept_tag("base/alpine", "3.19")->has_value());
  CHECK_FALSE(*env.store->is_pinned("base/alpine", *Digest::parse(alpine.first)));
  CHECK(env.local_tag("base/alpine", "3.19") == alpine.first);
  auto s = env.status();
  REQUIRE(s.size() == 1);
  CHECK(s[0].pattern == "factory/app:v*");
  CHECK(s[0].last_refresh_ms == 0);

  // The next pass walks the new list only.
  const size_t alpine_asked = env.parent_asked("/v2/base/alpine/");
  REQUIRE(env.refresh().ok());
  CHECK(env.local_tag("factory/app", "v1") == app.first);
  CHECK(*env.store->is_pinned("factory/app", *Digest::parse(app.first)));
  CHECK(env.parent_asked("/v2/base/alpine/") == alpine_asked);
  CHECK(env.status()[0].tags == 1);
}

TEST_CASE("keeper: set_patterns during a pass applies when that pass ends", "[sync][keeper]") {
  KeepEnv env({"factory/app"});
  auto& reg = env.reg;
  reg.image("factory/app", {layer(5'000, 41)}, "v1");
  auto other = reg.image("other/app", {layer(5'000, 42)}, "v1");
  bool done = false;
  const std::string during = env.fx.call([&] {
    env.keeper->refresh([&](Status) { env.fx.update([&] { done = true; }); });
    // Busy now: the new list waits for the end of this pass.
    env.keeper->set_patterns({*sync::KeepPattern::parse("other/app")});
    return env.keeper->status()[0].pattern;
  });
  CHECK(during == "factory/app");
  REQUIRE(env.fx.wait([&] { return done; }, milliseconds(30'000)));
  auto s = env.status();
  REQUIRE(s.size() == 1);
  CHECK(s[0].pattern == "other/app");
  REQUIRE(env.refresh().ok());
  CHECK(env.local_tag("other/app", "v1") == other.first);
}
