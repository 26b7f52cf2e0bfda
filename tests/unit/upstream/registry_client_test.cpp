// The upstream registry client (src/upstream/registry_client.cpp) against
// scripted registries and token services on loopback
// (tests/support/http_test_server.hpp), with a real uv loop stepped on the
// test thread: the base path and the library/ rule, Basic after a Basic
// challenge (and preemptively afterwards), the Bearer dance (token fetch with
// service and scope, Basic credentials to the token service, token cache per
// scope, token/access_token, failures of the token service), redirects
// (credentials only on the registry's own origin, the redirect limit, bad
// Locations), cancel(), and the operator's offline switch.
//
// Callers only ever see the final response: on_head once, body bytes of the
// final response only, on_done once.
#include <stdlib.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <atomic>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "http/client.hpp"
#include "support/http_test_server.hpp"
#include "support/loop_fixture.hpp"
#include "upstream/registry_client.hpp"

using namespace outpost;
using namespace outpost::test;
using http::Method;
using upstream::RegistryClient;
using upstream::UpstreamOptions;

namespace {

constexpr const char* kAliceBasic = "Basic YWxpY2U6czNjcmV0";  // alice:s3cret

struct Outcome {
  int heads = 0;
  int status = 0;
  http::Headers headers;
  std::string body;
  int dones = 0;
  std::optional<Status> st;
  bool done() const { return dones > 0; }
  bool ok() const { return st && st->ok(); }
  Errc code() const { return st && !st->ok() ? st->error().code : Errc::Ok; }
  std::string message() const { return st && !st->ok() ? st->error().message() : std::string(); }
};

UpstreamOptions options_for(const std::string& url, std::string user = {}, std::string pass = {}) {
  UpstreamOptions o;
  o.name = "parent";
  auto u = http::Url::parse(url);
  if (!u) FAIL("bad test URL " << url);
  o.url = *u;
  o.username = std::move(user);
  o.password = std::move(pass);
  return o;
}

/// A HttpClient and a RegistryClient on a loop stepped by the test thread.
class RegEnv {
 public:
  explicit RegEnv(UpstreamOptions o)
      : http(std::make_unique<http::HttpClient>(fx.loop(), nullptr)),
        reg(std::make_unique<RegistryClient>(fx.loop(), *http, std::move(o))) {}
  ~RegEnv() { end(); }

  upstream::UpstreamOpPtr start(Outcome& o, Method m, std::string path, std::string repo, http::Headers extra = {}) {
    return reg->request(
        m, std::move(path), std::move(repo), std::move(extra),
        [&o](const http::ClientResponse& r) {
          ++o.heads;
          o.status = r.status;
          o.headers = r.headers;
          return true;
        },
        [&o](std::string_view c) { o.body.append(c); },
        [&o](Status s) {
          ++o.dones;
          o.st = std::move(s);
        });
  }
  Outcome get(std::string path, std::string repo, Method m = Method::Get, http::Headers extra = {}) {
    Outcome o;
    start(o, m, std::move(path), std::move(repo), std::move(extra));
    if (!fx.run_until([&] { return o.done(); })) FAIL("the upstream request did not finish in time");
    return o;
  }
  bool until(const std::function<bool()>& pred) { return fx.run_until(pred); }

  void end() {
    if (ended_) return;
    ended_ = true;
    reg.reset();
    http.reset();
    CHECK(fx.finish() == 0);
  }

  LoopFixture fx;
  std::unique_ptr<http::HttpClient> http;
  std::unique_ptr<RegistryClient> reg;

 private:
  bool ended_ = false;
};

std::string query_param(const std::string& target, const std::string& name) {
  size_t q = target.find('?');
  if (q == std::string::npos) return {};
  std::string query = target.substr(q + 1);
  size_t pos = 0;
  while (pos <= query.size()) {
    size_t amp = query.find('&', pos);
    std::string kv = query.substr(pos, amp == std::string::npos ? std::string::npos : amp - pos);
    size_t eq = kv.find('=');
    if (kv.substr(0, eq) == name) {
      auto v = http::percent_decode(eq == std::string::npos ? "" : kv.substr(eq + 1), true);
      return v ? *v : "<bad escape>";
    }
    if (amp == std::string::npos) break;
    pos = amp + 1;
  }
  return {};
}

/// A token service: "/token" answers {"token": "T:<scope>"}; counts what it saw.
Script token_service(const std::string& field = "token") {
  return [field](ScriptConn& c, const SeenRequest& r) {
    if (r.path() != "/token") return (void)c.send(reply(404, "no"));
    std::string scope = query_param(r.target, "scope");
    c.send(reply(200, R"({")" + field + R"(":"T:)" + scope + R"(","expires_in":300})",
                 {{"Content-Type", "application/json"}}));
  };
}

/// A registry that wants "Bearer T:repository:<repo>:pull" for /v2/<repo>/...;
/// the body echoes the path.
Script bearer_registry(const std::string& realm, const std::string& service = "reg.test") {
  return [realm, service](ScriptConn& c, const SeenRequest& r) {
    if (r.path() == "/v2/") return (void)c.send(reply(200, "{}"));
    std::string path = r.path();
    size_t end = path.find("/blobs/");
    if (end == std::string::npos) end = path.find("/manifests/");
    std::string repo = path.substr(4, end - 4);
    std::string want = "Bearer T:repository:" + repo + ":pull";
    if (r.header("Authorization") == want) return (void)c.send(for_method(r, reply(200, "content of " + path)));
    c.send(for_method(r, unauthorized(R"(Bearer realm=")" + realm + R"(",service=")" + service +
                                      R"(",scope="repository:)" + repo + R"(:pull")")));
  };
}

}  // namespace

// ---------------------------------------------------------------------------

TEST_CASE("registry client: anonymous request under the base URL's path", "[upstream][registry]") {
  HttpTestServer srv([](ScriptConn& c, const SeenRequest& r) { c.send(reply(200, "path=" + r.target)); });
  RegEnv env(options_for(srv.url("/mirror/")));
  http::Headers extra;
  extra.add("Accept", "application/vnd.oci.image.manifest.v1+json");
  Outcome o = env.get("/v2/lib/a/manifests/latest", "lib/a", Method::Get, extra);
  CHECK(o.ok());
  CHECK(o.heads == 1);
  CHECK(o.status == 200);
  CHECK(o.body == "path=/mirror/v2/lib/a/manifests/latest");
  auto seen = srv.requests();
  REQUIRE(seen.size() >= 1);
  CHECK(seen[0].target == "/mirror/v2/lib/a/manifests/latest");
  CHECK_FALSE(seen[0].header("Authorization"));
  CHECK(seen[0].header("Accept") == "application/vnd.oci.image.manifest.v1+json");
  env.end();
}

TEST_CASE("registry client: non-auth error statuses pass through to the caller", "[upstream][registry]") {
  HttpTestServer srv([](ScriptConn& c, const SeenRequest&) {
    c.send(reply(404, R"({"errors":[{"code":"MANIFEST_UNKNOWN"}]})"));
  });
  RegEnv env(options_for(srv.url()));
  Outcome o = env.get("/v2/a/manifests/nope", "a");
  CHECK(o.ok());
  CHECK(o.heads == 1);
  CHECK(o.status == 404);
  CHECK(o.body.find("MANIFEST_UNKNOWN") != std::string::npos);
  env.end();
}

TEST_CASE("registry client: upstream_repo applies the library/ rule only when asked", "[upstream][registry]") {
  LoopFixture fx;
  {
    http::HttpClient http(fx.loop(), nullptr);
    auto o = options_for("http://127.0.0.1:1/");
    o.library_prefix = true;
    RegistryClient hub(fx.loop(), http, o);
    CHECK(hub.upstream_repo("alpine") == "library/alpine");
    CHECK(hub.upstream_repo("bitnami/redis") == "bitnami/redis");
    CHECK(hub.upstream_repo("a/b/c") == "a/b/c");
    o.library_prefix = false;
    RegistryClient plain(fx.loop(), http, o);
    CHECK(plain.upstream_repo("alpine") == "alpine");
    CHECK(plain.options().name == "parent");
  }
  CHECK(fx.finish() == 0);
}

// ---------------------------------------------------------------------------
// Basic

TEST_CASE("registry client: Basic after a Basic challenge, then preemptively", "[upstream][registry][basic]") {
  HttpTestServer srv([](ScriptConn& c, const SeenRequest& r) {
    if (r.header("Authorization") == kAliceBasic) return (void)c.send(reply(200, "secret " + r.path()));
    c.send(unauthorized(R"(Basic realm="Registry Realm")"));
  });
  RegEnv env(options_for(srv.url(), "alice", "s3cret"));
  Outcome o = env.get("/v2/a/manifests/1", "a");
  CHECK(o.ok());
  CHECK(o.heads == 1);  // the 401 never reaches the caller
  CHECK(o.status == 200);
  CHECK(o.body == "secret /v2/a/manifests/1");  // nor its body
  auto seen = srv.requests();
  REQUIRE(seen.size() == 2);
  CHECK_FALSE(seen[0].header("Authorization"));  // anonymous first
  CHECK(seen[1].header("Authorization") == kAliceBasic);

  // From now on Basic goes with the first request.
  Outcome p = env.get("/v2/b/manifests/2", "b");
  CHECK(p.ok());
  CHECK(p.status == 200);
  CHECK(srv.request_count() == 3);
  CHECK(srv.requests()[2].header("Authorization") == kAliceBasic);
  env.end();
}

TEST_CASE("registry client: a Basic challenge without configured credentials is an error", "[upstream][registry][basic]") {
  HttpTestServer srv([](ScriptConn& c, const SeenRequest& r) {
    if (r.path() == "/v2/") return (void)c.send(reply(200, "{}"));
    c.send(unauthorized(R"(Basic realm="r")"));
  });
  RegEnv env(options_for(srv.url()));
  Outcome o = env.get("/v2/a/manifests/1", "a");
  CHECK_FALSE(o.ok());
  CHECK(o.code() == Errc::UpstreamError);
  CHECK(o.message().find("credentials") != std::string::npos);
  CHECK(o.heads == 0);
  CHECK(srv.count_path("/v2/a/manifests/1") == 1);
  env.end();
}

TEST_CASE("registry client: wrong Basic credentials: the second 401 goes to the caller", "[upstream][registry][basic]") {
  HttpTestServer srv([](ScriptConn& c, const SeenRequest&) { c.send(unauthorized(R"(Basic realm="r")")); });
  RegEnv env(options_for(srv.url(), "alice", "wrong"));
  Outcome o = env.get("/v2/a/manifests/1", "a");
  CHECK(o.ok());
  CHECK(o.heads == 1);
  CHECK(o.status == 401);
  CHECK(o.body.find("UNAUTHORIZED") != std::string::npos);
  CHECK(srv.count_path("/v2/a/manifests/1") == 2);  // one retry, no loop
  env.end();
}

// ---------------------------------------------------------------------------
// Bearer

TEST_CASE("registry client: Bearer challenge -> token fetch -> retry with the token", "[upstream][registry][bearer]") {
  HttpTestServer tokens(token_service());
  HttpTestServer srv(bearer_registry(tokens.url("/token")));
  RegEnv env(options_for(srv.url()));
  Outcome o = env.get("/v2/lib/a/blobs/sha256:1", "lib/a");
  CHECK(o.ok());
  CHECK(o.heads == 1);
  CHECK(o.status == 200);
  CHECK(o.body == "content of /v2/lib/a/blobs/sha256:1");

  auto t = tokens.requests();
  REQUIRE(t.size() == 1);
  CHECK(t[0].method == "GET");
  CHECK(query_param(t[0].target, "service") == "reg.test");
  CHECK(query_param(t[0].target, "scope") == "repository:lib/a:pull");
  CHECK_FALSE(t[0].header("Authorization"));  // anonymous token
  auto seen = srv.requests();
  REQUIRE(seen.size() == 2);
  CHECK_FALSE(seen[0].header("Authorization"));
  CHECK(seen[1].header("Authorization") == "Bearer T:repository:lib/a:pull");
  env.end();
}

TEST_CASE("registry client: tokens are cached per scope", "[upstream][registry][bearer]") {
  HttpTestServer tokens(token_service());
  HttpTestServer srv(bearer_registry(tokens.url("/token")));
  RegEnv env(options_for(srv.url()));
  CHECK(env.get("/v2/a/manifests/1", "a").status == 200);
  CHECK(env.get("/v2/a/blobs/sha256:2", "a").status == 200);
  CHECK(env.get("/v2/a/blobs/sha256:3", "a", Method::Head).status == 200);
  CHECK(tokens.count_path("/token") == 1);  // one token for repository:a:pull
  // 1 anonymous + 1 retried + 2 with the cached token, sent first time.
  CHECK(srv.request_count() == 4);
  auto seen = srv.requests();
  CHECK(seen[2].header("Authorization") == "Bearer T:repository:a:pull");
  CHECK(seen[3].method == "HEAD");
  CHECK(seen[3].header("Authorization") == "Bearer T:repository:a:pull");

  // Another repository is another scope: another token.
  CHECK(env.get("/v2/b/manifests/1", "b").status == 200);
  CHECK(tokens.count_path("/token") == 2);
  CHECK(query_param(tokens.requests()[1].target, "scope") == "repository:b:pull");
  env.end();
}

TEST_CASE("registry client: configured credentials go to the token service as Basic", "[upstream][registry][bearer]") {
  HttpTestServer tokens(token_service());
  HttpTestServer srv(bearer_registry(tokens.url("/token")));
  RegEnv env(options_for(srv.url(), "alice", "s3cret"));
  Outcome o = env.get("/v2/a/manifests/1", "a");
  CHECK(o.ok());
  CHECK(o.status == 200);
  auto t = tokens.requests();
  REQUIRE(t.size() == 1);
  CHECK(t[0].header("Authorization") == kAliceBasic);
  // The registry itself never sees the password.
  for (const auto& r : srv.requests()) CHECK(r.header("Authorization") != std::optional<std::string>(kAliceBasic));
  env.end();
}

TEST_CASE("registry client: access_token is accepted as well as token", "[upstream][registry][bearer]") {
  HttpTestServer tokens(token_service("access_token"));
  HttpTestServer srv(bearer_registry(tokens.url("/token")));
  RegEnv env(options_for(srv.url()));
  Outcome o = env.get("/v2/a/manifests/1", "a");
  CHECK(o.ok());
  CHECK(o.status == 200);
  env.end();
}

TEST_CASE("registry client: a realm with a query keeps it; a challenge without scope uses the repository's",
          "[upstream][registry][bearer]") {
  HttpTestServer tokens(token_service());
  HttpTestServer srv([&](ScriptConn& c, const SeenRequest& r) {
    if (r.header("Authorization") == "Bearer T:repository:x/y:pull") return (void)c.send(reply(200, "ok"));
    c.send(unauthorized(R"(Bearer realm=")" + tokens.url("/token?tenant=7") + R"(")"));  // no service, no scope
  });
  RegEnv env(options_for(srv.url()));
  Outcome o = env.get("/v2/x/y/manifests/1", "x/y");
  CHECK(o.ok());
  CHECK(o.status == 200);
  auto t = tokens.requests();
  REQUIRE(t.size() == 1);
  CHECK(t[0].path() == "/token");
  CHECK(query_param(t[0].target, "tenant") == "7");
  CHECK(query_param(t[0].target, "scope") == "repository:x/y:pull");
  CHECK(t[0].target.find("service=") == std::string::npos);
  env.end();
}

TEST_CASE("registry client: a token the registry still refuses: the second 401 goes to the caller",
          "[upstream][registry][bearer]") {
  HttpTestServer tokens(token_service());
  HttpTestServer srv([&](ScriptConn& c, const SeenRequest&) {
    c.send(unauthorized(R"(Bearer realm=")" + tokens.url("/token") + R"(",service="s",scope="repository:a:pull")"));
  });
  RegEnv env(options_for(srv.url()));
  Outcome o = env.get("/v2/a/manifests/1", "a");
  CHECK(o.ok());
  CHECK(o.heads == 1);
  CHECK(o.status == 401);
  CHECK(tokens.count_path("/token") == 1);
  CHECK(srv.count_path("/v2/a/manifests/1") == 2);
  env.end();
}

TEST_CASE("registry client: token service failures are UpstreamErrors", "[upstream][registry][bearer]") {
  struct Case {
    const char* name;
    std::string answer;
    const char* expect;
  };
  const Case cases[] = {
      {"status 500", reply(500, "oops"), "status 500"},
      {"not JSON", reply(200, "<html>"), "not JSON"},
      {"JSON array", reply(200, "[1,2]"), "not JSON"},
      {"no token", reply(200, R"({"expires_in":60})"), "no token"},
      {"token not a string", reply(200, R"({"token":42})"), "no token"},
      {"empty token", reply(200, R"({"token":""})"), "no token"},
  };
  for (const auto& k : cases) {
    DYNAMIC_SECTION(k.name) {
      std::string answer = k.answer;
      HttpTestServer tokens([answer](ScriptConn& c, const SeenRequest&) { c.send(answer); });
      HttpTestServer srv(bearer_registry(tokens.url("/token")));
      RegEnv env(options_for(srv.url()));
      Outcome o = env.get("/v2/a/manifests/1", "a");
      CHECK_FALSE(o.ok());
      CHECK(o.code() == Errc::UpstreamError);
      CHECK(o.message().find(k.expect) != std::string::npos);
      CHECK(o.heads == 0);
      env.end();
    }
  }
}

TEST_CASE("registry client: an unreachable token service is an UpstreamError", "[upstream][registry][bearer]") {
  int dead = pick_free_port();
  HttpTestServer srv(bearer_registry("http://127.0.0.1:" + std::to_string(dead) + "/token"));
  RegEnv env(options_for(srv.url()));
  Outcome o = env.get("/v2/a/manifests/1", "a");
  CHECK_FALSE(o.ok());
  CHECK(o.code() == Errc::UpstreamError);
  CHECK(o.message().find("token request") != std::string::npos);
  env.end();
}

TEST_CASE("registry client: unusable challenges", "[upstream][registry][bearer]") {
  SECTION("a scheme it does not speak") {
    HttpTestServer srv([](ScriptConn& c, const SeenRequest&) { c.send(unauthorized("Negotiate")); });
    RegEnv env(options_for(srv.url(), "alice", "s3cret"));
    Outcome o = env.get("/v2/a/manifests/1", "a");
    CHECK_FALSE(o.ok());
    CHECK(o.code() == Errc::UpstreamError);
    CHECK(o.message().find("unusable auth challenge") != std::string::npos);
    env.end();
  }
  SECTION("Bearer without a realm") {
    HttpTestServer srv([](ScriptConn& c, const SeenRequest&) { c.send(unauthorized(R"(Bearer service="x")")); });
    RegEnv env(options_for(srv.url()));
    Outcome o = env.get("/v2/a/manifests/1", "a");
    CHECK_FALSE(o.ok());
    CHECK(o.code() == Errc::UpstreamError);
    env.end();
  }
  SECTION("a realm that is not an http(s) URL") {
    HttpTestServer srv([](ScriptConn& c, const SeenRequest&) { c.send(unauthorized(R"(Bearer realm="ftp://x/token")")); });
    RegEnv env(options_for(srv.url()));
    Outcome o = env.get("/v2/a/manifests/1", "a");
    CHECK_FALSE(o.ok());
    CHECK(o.code() == Errc::UpstreamError);
    CHECK(o.message().find("realm") != std::string::npos);
    env.end();
  }
  SECTION("a 401 without any challenge goes to the caller") {
    HttpTestServer srv([](ScriptConn& c, const SeenRequest&) { c.send(reply(401, "denied")); });
    RegEnv env(options_for(srv.url()));
    Outcome o = env.get("/v2/a/manifests/1", "a");
    CHECK(o.ok());
    CHECK(o.status == 401);
    CHECK(o.body == "denied");
    env.end();
  }
}

// ---------------------------------------------------------------------------
// Redirects

TEST_CASE("registry client: a redirect to another origin drops Authorization", "[upstream][registry][redirect]") {
  HttpTestServer storage([](ScriptConn& c, const SeenRequest& r) { c.send(reply(200, "blob bytes from " + r.target)); });
  HttpTestServer srv([&](ScriptConn& c, const SeenRequest& r) {
    if (r.header("Authorization") != kAliceBasic) { c.send(unauthorized(R"(Basic realm="r")")); return; }
    c.send(redirect(storage.url("/bucket/obj?X-Amz-Signature=abc")));
  });
  RegEnv env(options_for(srv.url(), "alice", "s3cret"));
  http::Headers extra;
  extra.add("Accept", "*/*");
  Outcome o = env.get("/v2/a/blobs/sha256:1", "a", Method::Get, extra);
  CHECK(o.ok());
  CHECK(o.heads == 1);
  CHECK(o.status == 200);
  CHECK(o.body == "blob bytes from /bucket/obj?X-Amz-Signature=abc");  // not "redirecting"
  auto s = storage.requests();
  REQUIRE(s.size() == 1);
  CHECK(s[0].target == "/bucket/obj?X-Amz-Signature=abc");
  CHECK_FALSE(s[0].header("Authorization"));
  CHECK(s[0].header("Host") == "127.0.0.1:" + std::to_string(storage.port()));
  CHECK(s[0].header("Accept") == "*/*");  // the caller's own headers still go
  env.end();
}

TEST_CASE("registry client: a Bearer token never follows a redirect to another origin",
          "[upstream][registry][redirect]") {
  HttpTestServer tokens(token_service());
  HttpTestServer storage([](ScriptConn& c, const SeenRequest&) { c.send(reply(200, "bytes")); });
  HttpTestServer srv([&](ScriptConn& c, const SeenRequest& r) {
    if (r.header("Authorization") != "Bearer T:repository:a:pull")
      { c.send(unauthorized(R"(Bearer realm=")" + tokens.url("/token") + R"(",scope="repository:a:pull")")); return; }
    c.send(redirect(storage.url("/o"), 302));
  });
  RegEnv env(options_for(srv.url()));
  Outcome o = env.get("/v2/a/blobs/sha256:1", "a");
  CHECK(o.ok());
  CHECK(o.body == "bytes");
  REQUIRE(storage.request_count() == 1);
  CHECK_FALSE(storage.requests()[0].header("Authorization"));
  // The registry keeps getting the token (cached) on the next request.
  Outcome p = env.get("/v2/a/blobs/sha256:2", "a");
  CHECK(p.ok());
  CHECK(tokens.count_path("/token") == 1);
  CHECK(srv.requests().back().header("Authorization") == "Bearer T:repository:a:pull");
  CHECK_FALSE(storage.requests().back().header("Authorization"));
  env.end();
}

TEST_CASE("registry client: a redirect within the registry's origin keeps Authorization",
          "[upstream][registry][redirect]") {
  HttpTestServer srv([](ScriptConn& c, const SeenRequest& r) {
    if (r.header("Authorization") != kAliceBasic) { c.send(unauthorized(R"(Basic realm="r")")); return; }
    if (r.path() == "/v2/a/blobs/sha256:1") { c.send(redirect("/v2/a/blobs/moved", 308)); return; }
    c.send(reply(200, "moved here"));
  });
  RegEnv env(options_for(srv.url(), "alice", "s3cret"));
  Outcome o = env.get("/v2/a/blobs/sha256:1", "a");
  CHECK(o.ok());
  CHECK(o.body == "moved here");
  auto seen = srv.requests();
  REQUIRE(seen.size() == 3);
  CHECK(seen[2].target == "/v2/a/blobs/moved");
  CHECK(seen[2].header("Authorization") == kAliceBasic);
  env.end();
}

TEST_CASE("registry client: HEAD follows redirects too", "[upstream][registry][redirect]") {
  HttpTestServer storage([](ScriptConn& c, const SeenRequest& r) {
    c.send(head_only(r.method == "HEAD" ? 200 : 405, {{"Content-Length", "4242"}}));
  });
  HttpTestServer srv([&](ScriptConn& c, const SeenRequest&) {
    c.send(head_only(307, {{"Location", storage.url("/obj")}, {"Content-Length", "11"}}));
  });
  RegEnv env(options_for(srv.url()));
  Outcome o = env.get("/v2/a/blobs/sha256:1", "a", Method::Head);
  CHECK(o.ok());
  CHECK(o.status == 200);
  CHECK(o.headers.get("Content-Length") == std::optional<std::string_view>("4242"));
  REQUIRE(storage.request_count() == 1);
  CHECK(storage.requests()[0].method == "HEAD");
  env.end();
}

TEST_CASE("registry client: redirects stop after five; the sixth goes to the caller", "[upstream][registry][redirect]") {
  HttpTestServer srv([](ScriptConn& c, const SeenRequest& r) {
    if (r.path() == "/v2/") return (void)c.send(reply(200, "{}"));
    c.send(redirect("/v2/loop/" + std::to_string(r.seq)));
  });
  RegEnv env(options_for(srv.url()));
  Outcome o = env.get("/v2/a/manifests/1", "a");
  CHECK(o.ok());
  CHECK(o.heads == 1);
  CHECK(o.status == 307);
  CHECK(o.body == "redirecting");
  size_t followed = 0;
  for (const auto& r : srv.requests())
    if (r.path() != "/v2/") ++followed;
  CHECK(followed == 6);
  env.end();
}

// (Url::resolve once took "ftp://elsewhere/x" for a relative path: the
// registry then saw /v2/a/blobs/ftp://elsewhere/x and the caller the 6th 307.)
TEST_CASE("registry client: an unusable Location is an UpstreamError", "[upstream][registry][redirect]") {
  HttpTestServer srv([](ScriptConn& c, const SeenRequest&) { c.send(redirect("ftp://elsewhere/x")); });
  RegEnv env(options_for(srv.url()));
  Outcome o = env.get("/v2/a/blobs/sha256:1", "a");
  CHECK_FALSE(o.ok());
  CHECK(o.code() == Errc::UpstreamError);
  CHECK(o.message().find("Location") != std::string::npos);
  CHECK(o.heads == 0);
  env.end();
}

TEST_CASE("registry client: an empty Location after a Bearer challenge is an UpstreamError, not a loop",
          "[upstream][registry][redirect][bearer]") {
  // The authorised GET is redirected to an empty Location. It was taken for
  // an auth answer: token, GET, token... (140,000 requests in 2 s).
  HttpTestServer tokens(token_service());
  const std::string realm = tokens.url("/token");
  HttpTestServer srv([realm](ScriptConn& c, const SeenRequest& r) {
    if (r.path() == "/v2/") return (void)c.send(reply(200, "{}"));
    if (r.header("Authorization")) return (void)c.send(redirect(""));
    c.send(unauthorized(R"(Bearer realm=")" + realm + R"(",service="reg.test",scope="repository:a:pull")"));
  });
  RegEnv env(options_for(srv.url()));
  Outcome o = env.get("/v2/a/blobs/sha256:1", "a");
  CHECK_FALSE(o.ok());
  CHECK(o.code() == Errc::UpstreamError);
  CHECK(o.message().find("bad redirect Location") != std::string::npos);
  CHECK(srv.requests().size() == 2);  // the challenge, then the redirect
  CHECK(tokens.requests().size() == 1);
  env.end();
}

TEST_CASE("registry client: a 401 or a redirect whose body has no end fails at 64 KiB, not when the parent stops",
          "[upstream][registry][redirect]") {
  for (int status : {401, 307}) {
    INFO("status " << status);
    HttpTestServer srv([status](ScriptConn& c, const SeenRequest&) {
      std::string head = "HTTP/1.1 " + std::to_string(status) + " X\r\nTransfer-Encoding: chunked\r\n";
      head += status == 401 ? "WWW-Authenticate: Basic realm=\"r\"\r\n\r\n" : "Location: /elsewhere\r\n\r\n";
      if (!c.send(head)) return;
      const std::string chunk = "1000\r\n" + std::string(4096, 'x') + "\r\n";
      for (int i = 0; i < 5000; ++i)  // 20 MiB, as slowly as the client reads
        if (!c.send(chunk)) return;
    });
    auto o = options_for(srv.url());
    o.username = "u";
    o.password = "p";
    RegEnv env(o);
    Outcome r = env.get("/v2/a/blobs/sha256:1", "a");
    CHECK_FALSE(r.ok());
    CHECK(r.code() == Errc::UpstreamError);
    CHECK(r.message().find("over 64 KiB") != std::string::npos);
    env.end();
  }
}

TEST_CASE("registry client: a redirect without Location goes to the caller", "[upstream][registry][redirect]") {
  HttpTestServer srv([](ScriptConn& c, const SeenRequest&) { c.send(reply(302, "nowhere")); });
  RegEnv env(options_for(srv.url()));
  Outcome o = env.get("/v2/a/blobs/sha256:1", "a");
  CHECK(o.ok());
  CHECK(o.status == 302);
  CHECK(o.body == "nowhere");
  env.end();
}

// ---------------------------------------------------------------------------
// cancel, transport errors, offline

TEST_CASE("registry client: cancel() stops the request; no callback fires", "[upstream][registry]") {
  HttpTestServer srv([](ScriptConn& c, const SeenRequest& r) {
    if (r.path() == "/v2/") return (void)c.send(reply(200, "{}"));
    c.stall();
  });
  RegEnv env(options_for(srv.url()));
  Outcome o;
  auto op = env.start(o, Method::Get, "/v2/a/blobs/sha256:1", "a");
  REQUIRE(env.until([&] { return srv.count_path("/v2/a/blobs/sha256:1") == 1; }));
  op->cancel();
  op->cancel();
  REQUIRE(env.until([&] { return srv.peer_closes() >= 1; }));
  CHECK(o.heads == 0);
  CHECK(o.dones == 0);
  env.end();
  CHECK(o.dones == 0);
}

TEST_CASE("registry client: cancel() during the token fetch stops everything", "[upstream][registry][bearer]") {
  HttpTestServer tokens([](ScriptConn& c, const SeenRequest&) { c.stall(); });
  HttpTestServer srv(bearer_registry(tokens.url("/token")));
  RegEnv env(options_for(srv.url()));
  Outcome o;
  auto op = env.start(o, Method::Get, "/v2/a/blobs/sha256:1", "a");
  REQUIRE(env.until([&] { return tokens.request_count() == 1; }));
  op->cancel();
  REQUIRE(env.until([&] { return tokens.peer_closes() == 1; }));
  CHECK(o.dones == 0);
  CHECK(srv.count_path("/v2/a/blobs/sha256:1") == 1);
  env.end();
}

TEST_CASE("registry client: transport failures reach the caller once", "[upstream][registry]") {
  HttpTestServer srv([](ScriptConn& c, const SeenRequest& r) {
    if (r.path() == "/v2/") return (void)c.send(reply(200, "{}"));
    c.send(head_only(200, {{"Content-Length", "100"}}) + "short");
    c.close();
  });
  RegEnv env(options_for(srv.url()));
  Outcome o = env.get("/v2/a/blobs/sha256:1", "a");
  CHECK_FALSE(o.ok());
  CHECK(o.code() == Errc::UpstreamUnavailable);
  CHECK(o.dones == 1);
  CHECK(o.heads == 1);
  CHECK(o.body == "short");
  env.end();
}

TEST_CASE("registry client: a caller's on_head returning false ends the request as Cancelled",
          "[upstream][registry]") {
  HttpTestServer srv([](ScriptConn& c, const SeenRequest& r) {
    if (r.path() == "/v2/") return (void)c.send(reply(200, "{}"));
    c.send(reply(404, std::string(5000, 'e')));
  });
  RegEnv env(options_for(srv.url()));
  Outcome o;
  bool data = false;
  env.reg->request(
      Method::Get, "/v2/a/blobs/sha256:1", "a", {},
      [&](const http::ClientResponse& r) {
        ++o.heads;
        o.status = r.status;
        return false;
      },
      [&](std::string_view) { data = true; },
      [&](Status s) {
        ++o.dones;
        o.st = std::move(s);
      });
  REQUIRE(env.until([&] { return o.done(); }));
  CHECK(o.heads == 1);
  CHECK(o.status == 404);
  CHECK_FALSE(data);
  CHECK(o.dones == 1);
  CHECK(o.code() == Errc::Cancelled);
  env.end();
}

TEST_CASE("registry client: the request goes on when the caller drops its handle", "[upstream][registry]") {
  HttpTestServer tokens(token_service());
  HttpTestServer srv(bearer_registry(tokens.url("/token")));
  RegEnv env(options_for(srv.url()));
  Outcome o;
  { auto op = env.start(o, Method::Get, "/v2/a/manifests/1", "a"); }
  REQUIRE(env.until([&] { return o.done(); }));
  CHECK(o.ok());
  CHECK(o.status == 200);
  env.end();
}

// Process shutdown (App::run): shutdown() every RegistryClient, destroy the
// HttpClients (which fail what is still in flight), only then the
// RegistryClients, whose request callbacks capture `this`.
TEST_CASE("registry client: shutdown(): new requests end Cancelled at once, in-flight ones when the client goes",
          "[upstream][registry]") {
  HttpTestServer srv([](ScriptConn& c, const SeenRequest& r) {
    if (r.path() == "/v2/") return (void)c.send(reply(200, "{}"));
    c.stall();
  });
  RegEnv env(options_for(srv.url()));
  Outcome inflight;
  env.start(inflight, Method::Get, "/v2/a/blobs/sha256:1", "a");
  REQUIRE(env.until([&] { return srv.count_path("/v2/a/blobs/sha256:1") == 1; }));
  env.reg->shutdown();
  Outcome late;
  env.start(late, Method::Get, "/v2/a/blobs/sha256:2", "a");
  CHECK(late.dones == 1);  // before request() returned
  CHECK(late.code() == Errc::Cancelled);
  CHECK(inflight.dones == 0);
  env.http.reset();
  CHECK(inflight.dones == 1);
  CHECK(inflight.code() == Errc::Cancelled);
  CHECK(inflight.heads == 0);
  env.end();
  CHECK(srv.count_path("/v2/a/blobs/sha256:2") == 0);
}

TEST_CASE("registry client: the offline switch fails requests at once, before any I/O", "[upstream][registry]") {
  HttpTestServer srv([](ScriptConn& c, const SeenRequest&) { c.send(reply(200, "{}")); });
  auto opts = options_for(srv.url());
  opts.offline = true;
  RegEnv env(opts);
  CHECK(env.reg->offline());
  Outcome o;
  env.start(o, Method::Get, "/v2/a/manifests/1", "a");
  CHECK(o.dones == 1);  // before request() returned
  CHECK(o.code() == Errc::UpstreamUnavailable);
  CHECK(o.heads == 0);
  env.end();
  CHECK(srv.request_count() == 0);
}

// ---------------------------------------------------------------------------
// Issue #13: challenges that change, 429, the half-open breaker

namespace {
/// A registry that wants alice's Basic credentials, or (while `bearer`)
/// bearer_registry's tokens from `realm`.
Script switching_registry(std::atomic<bool>& bearer, const std::string& realm) {
  Script bearer_script = bearer_registry(realm);
  return [&bearer, bearer_script](ScriptConn& c, const SeenRequest& r) {
    if (bearer) return bearer_script(c, r);
    if (r.header("Authorization") == kAliceBasic) return (void)c.send(reply(200, "basic " + r.path()));
    c.send(unauthorized(R"(Basic realm="r")"));
  };
}
}  // namespace

TEST_CASE("registry client: a parent that moved from Basic to Bearer gets no more Basic", "[upstream][registry][auth]") {
  HttpTestServer tokens(token_service());
  std::atomic<bool> bearer{false};
  HttpTestServer srv(switching_registry(bearer, tokens.url("/token")));
  RegEnv env(options_for(srv.url(), "alice", "s3cret"));
  REQUIRE(env.get("/v2/a/manifests/1", "a").status == 200);  // learns Basic
  bearer = true;
  Outcome b = env.get("/v2/b/manifests/1", "b");  // Basic, refused with a Bearer challenge, then a token
  CHECK(b.status == 200);
  CHECK(b.body == "content of /v2/b/manifests/1");
  const size_t before = srv.request_count();
  Outcome c = env.get("/v2/c/manifests/1", "c");
  CHECK(c.status == 200);
  auto seen = srv.requests();
  REQUIRE(seen.size() > before);
  // The latest challenge was Bearer: the next repository's first request
  // carries no Basic credentials (they go to the token service only).
  for (size_t i = before; i < seen.size(); ++i) {
    INFO(seen[i].method << " " << seen[i].target << " Authorization=" << seen[i].header("Authorization").value_or("-"));
    CHECK(seen[i].header("Authorization").value_or("").rfind("Basic ", 0) == std::string::npos);
  }
  env.end();
}

TEST_CASE("registry client: a parent back at Basic after Bearer gets Basic, not the old token",
          "[upstream][registry][auth]") {
  HttpTestServer tokens(token_service());
  std::atomic<bool> bearer{true};
  HttpTestServer srv(switching_registry(bearer, tokens.url("/token")));
  RegEnv env(options_for(srv.url(), "alice", "s3cret"));
  REQUIRE(env.get("/v2/a/manifests/1", "a").status == 200);  // token for a
  bearer = false;
  Outcome o = env.get("/v2/a/manifests/1", "a");
  CHECK(o.status == 200);
  CHECK(o.body == "basic /v2/a/manifests/1");
  env.end();
}

TEST_CASE("registry client: 429s reach the caller with Retry-After and never mark the parent offline",
          "[upstream][registry][health]") {
  HttpTestServer srv([](ScriptConn& c, const SeenRequest& r) {
    if (r.path() == "/v2/") return (void)c.send(reply(200, "{}"));
    c.send(for_method(r, reply(429, R"({"errors":[{"code":"TOOMANYREQUESTS"}]})", {{"Retry-After", "7"}})));
  });
  RegEnv env(options_for(srv.url()));
  for (int i = 0; i < 2 * upstream::Health::kFailuresToOpen; ++i) {
    Outcome o = env.get("/v2/a/manifests/" + std::to_string(i), "a");
    CHECK(o.ok());
    CHECK(o.status == 429);
    CHECK(o.headers.get("Retry-After") == std::optional<std::string_view>("7"));
  }
  CHECK_FALSE(env.reg->offline());
  CHECK(env.reg->health().state() == upstream::Connectivity::Online);
  env.end();
}

TEST_CASE("registry client: while offline, a miss is let through as a trial that brings the parent back",
          "[upstream][registry][health]") {
  // The probe (/v2/) keeps failing, so only a trial request can close the
  // breaker: before issue #13 every request was refused until a probe said so.
  std::atomic<bool> down{true};
  HttpTestServer srv([&](ScriptConn& c, const SeenRequest& r) {
    if (r.path() == "/v2/" || down) return c.close();
    c.send(for_method(r, reply(200, "ok " + r.path())));
  });
  RegEnv env(options_for(srv.url()));
  for (int i = 0; i < upstream::Health::kFailuresToOpen && !env.reg->offline(); ++i)
    CHECK_FALSE(env.get("/v2/a/manifests/x", "a").ok());
  REQUIRE(env.until([&] { return env.reg->offline(); }));
  down = false;
  // Misses are refused during the cool-down, then one goes through as the
  // trial, finds the parent answering and closes the breaker.
  Outcome o;
  int refused = 0;
  const auto deadline = Clock::now() + std::chrono::seconds(10);
  while (Clock::now() < deadline) {
    o = env.get("/v2/a/manifests/back", "a");
    if (o.ok()) break;
    CHECK(o.heads == 0);
    ++refused;
    env.fx.run_until([] { return false; }, std::chrono::milliseconds(50));
  }
  CHECK(o.ok());
  CHECK(o.status == 200);
  CHECK(o.body == "ok /v2/a/manifests/back");
  CHECK_FALSE(env.reg->offline());
  CHECK(refused >= 1);
  CHECK(srv.count_path("/v2/a/manifests/back") == 1);  // only the trial reached the parent

  // Down again: at most one trial per interval reaches the parent.
  down = true;
  for (int i = 0; i < upstream::Health::kFailuresToOpen && !env.reg->offline(); ++i)
    (void)env.get("/v2/a/manifests/y", "a");
  REQUIRE(env.until([&] { return env.reg->offline(); }));
  const size_t before = srv.count_path("/v2/a/manifests/z");
  Outcome first, second;
  env.start(first, Method::Get, "/v2/a/manifests/z", "a");
  env.start(second, Method::Get, "/v2/a/manifests/z", "a");
  CHECK(second.dones == 1);  // refused before request() returned
  CHECK(second.code() == Errc::UpstreamUnavailable);
  REQUIRE(env.until([&] { return first.done(); }));
  CHECK(srv.count_path("/v2/a/manifests/z") - before <= 1);
  env.end();
}

// ---------------------------------------------------------------------------
// Writes (issue #15): push scopes and bodies sent again after the auth dance

TEST_CASE("registry client: a write asks pull,push (and pull on a mount's source); its file body is sent again",
          "[upstream][registry][bearer][push]") {
  HttpTestServer tokens([](ScriptConn& c, const SeenRequest& r) {
    c.send(reply(200, R"({"token":"PUSHTOKEN","expires_in":300})", {{"Content-Type", "application/json"}}));
    (void)r;
  });
  const std::string realm = tokens.url("/token");
  HttpTestServer srv([realm](ScriptConn& c, const SeenRequest& r) {
    if (r.header("Authorization") == std::optional<std::string>("Bearer PUSHTOKEN"))
      return (void)c.send(reply(202, "got " + std::to_string(r.body.size())));
    // The challenge names only what this request lacks (pull), as some registries do.
    c.send(unauthorized(R"(Bearer realm=")" + realm + R"(",service="reg.test",scope="repository:site/app:pull")"));
  });
  char path[] = "/tmp/outpost-rc-body-XXXXXX";
  int fd = ::mkstemp(path);
  REQUIRE(fd >= 0);
  ::unlink(path);
  const std::string data(700 * 1024, 'z');
  REQUIRE(::write(fd, data.data(), data.size()) == static_cast<ssize_t>(data.size()));

  RegEnv env(options_for(srv.url()));
  upstream::RequestOptions ro;
  ro.actions = "pull,push";
  ro.also_pull = {"base/alpine"};
  ro.file_body = http::FileBody{fd, 0, data.size()};
  Outcome o;
  env.reg->request(
      Method::Patch, "/v2/site/app/blobs/uploads/u1", "site/app", {}, ro,
      [&o](const http::ClientResponse& r) {
        o.status = r.status;
        return true;
      },
      [&o](std::string_view c) { o.body.append(c); },
      [&o](Status s) {
        ++o.dones;
        o.st = std::move(s);
      });
  REQUIRE(env.until([&] { return o.done(); }));
  CHECK(o.ok());
  CHECK(o.status == 202);
  CHECK(o.body == "got " + std::to_string(data.size()));
  auto t = tokens.requests();
  REQUIRE(t.size() == 1);
  CHECK(t[0].target.find("scope=repository:site/app:pull%2Cpush") != std::string::npos);
  CHECK(t[0].target.find("scope=repository:base/alpine:pull") != std::string::npos);
  auto seen = srv.requests();
  REQUIRE(seen.size() == 2);
  CHECK(seen[0].body == data);
  CHECK(seen[1].body == data);
  ::close(fd);
  env.end();
}
