// Router: the OCI distribution route table as data, multi-segment {name},
// 404 versus 405 (with Allow), HEAD falling back to GET, empty segments.
#include <catch2/catch.hpp>

#include <string>
#include <vector>

#include "http/router.hpp"

using outpost::http::ExchangePtr;
using outpost::http::Method;
using outpost::http::Router;

namespace {

// Every handler records its route id when called (with a null exchange: the
// router never looks inside one), so a match can be identified by calling it.
struct OciRoutes {
  Router r;
  std::string last;

  void add(Method m, std::string_view pattern, std::string id) {
    r.add(m, pattern, [this, id](const ExchangePtr&) { last = id; });
  }

  OciRoutes() {
    add(Method::Get, "/v2/", "base");
    add(Method::Get, "/v2/_catalog", "catalog");
    add(Method::Get, "/v2/{name}/manifests/{reference}", "manifest.get");
    add(Method::Head, "/v2/{name}/manifests/{reference}", "manifest.head");
    add(Method::Put, "/v2/{name}/manifests/{reference}", "manifest.put");
    add(Method::Delete, "/v2/{name}/manifests/{reference}", "manifest.delete");
    add(Method::Get, "/v2/{name}/blobs/{digest}", "blob.get");  // HEAD falls back
    add(Method::Delete, "/v2/{name}/blobs/{digest}", "blob.delete");
    add(Method::Post, "/v2/{name}/blobs/uploads/", "upload.start");
    add(Method::Get, "/v2/{name}/blobs/uploads/{uuid}", "upload.status");
    add(Method::Patch, "/v2/{name}/blobs/uploads/{uuid}", "upload.patch");
    add(Method::Put, "/v2/{name}/blobs/uploads/{uuid}", "upload.put");
    add(Method::Delete, "/v2/{name}/blobs/uploads/{uuid}", "upload.cancel");
    add(Method::Get, "/v2/{name}/tags/list", "tags");
    add(Method::Get, "/v2/{name}/referrers/{digest}", "referrers");
  }

  // The id of the handler `m path` dispatches to, or "404"/"405".
  std::string route(Method m, std::string_view path, Router::Match* out = nullptr) {
    Router::Match mt = r.match(m, path);
    std::string id;
    if (mt.handler) {
      last.clear();
      (*mt.handler)(ExchangePtr());
      id = last;
      CHECK(mt.status == 200);
    } else {
      id = std::to_string(mt.status);
    }
    if (out) *out = std::move(mt);
    return id;
  }
};

}  // namespace

TEST_CASE("router: the base endpoint and the catalog", "[http][router]") {
  OciRoutes t;
  Router::Match m;
  CHECK(t.route(Method::Get, "/v2/", &m) == "base");
  CHECK(m.params.name.empty());
  CHECK(t.route(Method::Get, "/v2/_catalog") == "catalog");
  CHECK(t.route(Method::Get, "/v2") == "404");   // only "/v2/" is registered here
  CHECK(t.route(Method::Get, "/v2//") == "404");
  CHECK(t.route(Method::Get, "/") == "404");
  CHECK(t.route(Method::Get, "") == "404");
  CHECK(t.route(Method::Get, "/v1/") == "404");
}

TEST_CASE("router: every OCI pattern with a one-segment name", "[http][router]") {
  OciRoutes t;
  Router::Match m;
  CHECK(t.route(Method::Get, "/v2/alpine/manifests/latest", &m) == "manifest.get");
  CHECK(m.params.name == "alpine");
  CHECK(m.params.reference == "latest");
  CHECK(m.allow.empty());

  CHECK(t.route(Method::Put, "/v2/alpine/manifests/sha256:abc", &m) == "manifest.put");
  CHECK(m.params.reference == "sha256:abc");
  CHECK(t.route(Method::Delete, "/v2/alpine/manifests/v1") == "manifest.delete");

  CHECK(t.route(Method::Get, "/v2/alpine/blobs/sha256:0123", &m) == "blob.get");
  CHECK(m.params.name == "alpine");
  CHECK(m.params.reference == "sha256:0123");

  CHECK(t.route(Method::Post, "/v2/alpine/blobs/uploads/", &m) == "upload.start");
  CHECK(m.params.name == "alpine");
  CHECK(m.params.uuid.empty());

  CHECK(t.route(Method::Patch, "/v2/alpine/blobs/uploads/3f2a-99", &m) == "upload.patch");
  CHECK(m.params.name == "alpine");
  CHECK(m.params.uuid == "3f2a-99");
  CHECK(m.params.reference.empty());
  CHECK(t.route(Method::Put, "/v2/alpine/blobs/uploads/u1") == "upload.put");
  CHECK(t.route(Method::Get, "/v2/alpine/blobs/uploads/u1") == "upload.status");
  CHECK(t.route(Method::Delete, "/v2/alpine/blobs/uploads/u1") == "upload.cancel");

  CHECK(t.route(Method::Get, "/v2/alpine/tags/list", &m) == "tags");
  CHECK(m.params.name == "alpine");

  CHECK(t.route(Method::Get, "/v2/alpine/referrers/sha256:ff", &m) == "referrers");
  CHECK(m.params.name == "alpine");
  CHECK(m.params.reference == "sha256:ff");
}

TEST_CASE("router: {name} spans several segments", "[http][router]") {
  OciRoutes t;
  Router::Match m;
  CHECK(t.route(Method::Get, "/v2/library/alpine/manifests/3.19", &m) == "manifest.get");
  CHECK(m.params.name == "library/alpine");
  CHECK(m.params.reference == "3.19");

  CHECK(t.route(Method::Get, "/v2/a/b/c/d/e/blobs/sha256:1", &m) == "blob.get");
  CHECK(m.params.name == "a/b/c/d/e");

  CHECK(t.route(Method::Post, "/v2/ghcr.io/org/tool/blobs/uploads/", &m) == "upload.start");
  CHECK(m.params.name == "ghcr.io/org/tool");

  CHECK(t.route(Method::Patch, "/v2/org/tool/blobs/uploads/u-7", &m) == "upload.patch");
  CHECK(m.params.name == "org/tool");
  CHECK(m.params.uuid == "u-7");

  CHECK(t.route(Method::Get, "/v2/x/y/tags/list", &m) == "tags");
  CHECK(m.params.name == "x/y");
  CHECK(t.route(Method::Get, "/v2/x/y/referrers/sha256:2", &m) == "referrers");
  CHECK(m.params.name == "x/y");
}

TEST_CASE("router: repository names that contain route words", "[http][router]") {
  OciRoutes t;
  Router::Match m;
  // A repository literally named "a/blobs/uploads".
  CHECK(t.route(Method::Post, "/v2/a/blobs/uploads/blobs/uploads/", &m) == "upload.start");
  CHECK(m.params.name == "a/blobs/uploads");
  CHECK(t.route(Method::Patch, "/v2/a/blobs/uploads/blobs/uploads/u1", &m) == "upload.patch");
  CHECK(m.params.name == "a/blobs/uploads");
  CHECK(m.params.uuid == "u1");
  CHECK(t.route(Method::Get, "/v2/a/blobs/uploads/blobs/sha256:9", &m) == "blob.get");
  CHECK(m.params.name == "a/blobs/uploads");
  CHECK(m.params.reference == "sha256:9");
  CHECK(t.route(Method::Get, "/v2/a/blobs/uploads/manifests/latest", &m) == "manifest.get");
  CHECK(m.params.name == "a/blobs/uploads");
  CHECK(m.params.reference == "latest");
  CHECK(t.route(Method::Get, "/v2/a/blobs/uploads/tags/list", &m) == "tags");
  CHECK(m.params.name == "a/blobs/uploads");

  // Other route words inside names.
  CHECK(t.route(Method::Get, "/v2/manifests/manifests/latest", &m) == "manifest.get");
  CHECK(m.params.name == "manifests");
  CHECK(t.route(Method::Get, "/v2/tags/list/tags/list", &m) == "tags");
  CHECK(m.params.name == "tags/list");
  CHECK(t.route(Method::Get, "/v2/v2/blobs/sha256:1", &m) == "blob.get");
  CHECK(m.params.name == "v2");
  CHECK(t.route(Method::Get, "/v2/_catalog/manifests/x", &m) == "manifest.get");
  CHECK(m.params.name == "_catalog");
}

TEST_CASE("router: 404 when no pattern matches", "[http][router]") {
  OciRoutes t;
  Router::Match m;
  CHECK(t.route(Method::Get, "/v2/alpine", &m) == "404");
  CHECK(m.allow.empty());
  CHECK(t.route(Method::Get, "/v2/alpine/") == "404");
  CHECK(t.route(Method::Get, "/v2/alpine/manifests") == "404");
  CHECK(t.route(Method::Get, "/v2/alpine/tags") == "404");
  CHECK(t.route(Method::Get, "/v2/alpine/tags/list/") == "404");
  CHECK(t.route(Method::Get, "/v2/alpine/unknown/x") == "404");
  CHECK(t.route(Method::Get, "/v2/manifests/latest") == "404");  // a name needs one segment
  CHECK(t.route(Method::Get, "/v3/alpine/manifests/latest") == "404");
  CHECK(t.route(Method::Get, "v2/alpine/manifests/latest") == "404");
  CHECK(t.route(Method::Other, "/v2/nope/nope") == "404");
}

TEST_CASE("router: 405 with the Allow list when the path matches", "[http][router]") {
  OciRoutes t;
  Router::Match m;
  CHECK(t.route(Method::Post, "/v2/alpine/manifests/latest", &m) == "405");
  CHECK(m.handler == nullptr);
  CHECK(m.allow == "GET, HEAD, PUT, DELETE");

  CHECK(t.route(Method::Put, "/v2/alpine/blobs/sha256:1", &m) == "405");
  CHECK(m.allow == "GET, HEAD, DELETE");

  CHECK(t.route(Method::Get, "/v2/alpine/blobs/uploads/", &m) == "405");
  CHECK(m.allow == "POST");
  CHECK(t.route(Method::Head, "/v2/alpine/blobs/uploads/", &m) == "405");
  CHECK(m.allow == "POST");

  CHECK(t.route(Method::Post, "/v2/lib/alpine/blobs/uploads/u1", &m) == "405");
  CHECK(m.allow == "GET, HEAD, PATCH, PUT, DELETE");

  CHECK(t.route(Method::Delete, "/v2/_catalog", &m) == "405");
  CHECK(m.allow == "GET, HEAD");
  CHECK(t.route(Method::Options, "/v2/", &m) == "405");
  CHECK(m.allow == "GET, HEAD");
  CHECK(t.route(Method::Other, "/v2/a/tags/list", &m) == "405");
  CHECK(m.allow == "GET, HEAD");
}

TEST_CASE("router: HEAD uses an explicit HEAD route, else falls back to GET", "[http][router]") {
  OciRoutes t;
  Router::Match m;
  CHECK(t.route(Method::Head, "/v2/alpine/manifests/latest", &m) == "manifest.head");
  CHECK(t.route(Method::Head, "/v2/lib/alpine/blobs/sha256:7", &m) == "blob.get");
  CHECK(m.params.name == "lib/alpine");
  CHECK(m.params.reference == "sha256:7");
  CHECK(m.allow.empty());
  CHECK(t.route(Method::Head, "/v2/", &m) == "base");
  CHECK(t.route(Method::Head, "/v2/a/tags/list", &m) == "tags");
  CHECK(t.route(Method::Head, "/v2/alpine/blobs/uploads/u1", &m) == "upload.status");
  CHECK(m.params.uuid == "u1");
  CHECK(t.route(Method::Head, "/v2/nothing/here") == "404");

  // An explicit HEAD route registered after a GET route still wins.
  Router r;
  std::string hit;
  r.add(Method::Get, "/x/{name}/y", [&](const ExchangePtr&) { hit = "get"; });
  r.add(Method::Head, "/x/{name}/y", [&](const ExchangePtr&) { hit = "head"; });
  auto mt = r.match(Method::Head, "/x/a/b/y");
  REQUIRE(mt.handler);
  (*mt.handler)(ExchangePtr());
  CHECK(hit == "head");
  CHECK(mt.params.name == "a/b");
}

TEST_CASE("router: empty fixed segments are not routed", "[http][router]") {
  OciRoutes t;
  CHECK(t.route(Method::Get, "//v2/a/manifests/latest") == "404");
  CHECK(t.route(Method::Get, "/v2/a/manifests/") == "404");
  CHECK(t.route(Method::Get, "/v2/a/manifests//") == "404");
  CHECK(t.route(Method::Get, "/v2/a/blobs/") == "404");
  CHECK(t.route(Method::Patch, "/v2/a/blobs/uploads//") == "404");
  CHECK(t.route(Method::Get, "/v2/a/referrers/") == "404");
}

TEST_CASE("router: empty name components reach the handler, which refuses the name", "[http][router]") {
  // A path that names an endpoint with a malformed name must get the
  // handler's 400 NAME_INVALID, not 404: the router keeps the name verbatim.
  OciRoutes t;
  const struct {
    Method m;
    const char* path;
    const char* id;
    const char* name;
  } cases[] = {
      {Method::Get, "/v2//manifests/latest", "manifest.get", ""},
      {Method::Get, "/v2/a//b/manifests/latest", "manifest.get", "a//b"},
      {Method::Get, "/v2/a/b//manifests/latest", "manifest.get", "a/b/"},
      {Method::Post, "/v2//blobs/uploads/", "upload.start", ""},
      {Method::Post, "/v2/a//blobs/uploads/", "upload.start", "a/"},
      {Method::Get, "/v2//tags/list", "tags", ""},
      {Method::Get, "/v2//a/tags/list", "tags", "/a"},
      {Method::Delete, "/v2/a//b/blobs/sha256:x", "blob.delete", "a//b"},
  };
  for (const auto& c : cases) {
    INFO(c.path);
    Router::Match m;
    CHECK(t.route(c.m, c.path, &m) == c.id);
    CHECK(m.params.name == c.name);
  }
}

TEST_CASE("router: earlier registrations win on overlap", "[http][router]") {
  Router r;
  std::string hit;
  r.add(Method::Get, "/v2/{name}/blobs/{digest}", [&](const ExchangePtr&) { hit = "first"; });
  r.add(Method::Get, "/v2/{name}/{reference}/{digest}", [&](const ExchangePtr&) { hit = "second"; });
  auto m = r.match(Method::Get, "/v2/n/blobs/d");
  REQUIRE(m.handler);
  (*m.handler)(ExchangePtr());
  CHECK(hit == "first");
  m = r.match(Method::Get, "/v2/n/other/d");
  REQUIRE(m.handler);
  (*m.handler)(ExchangePtr());
  CHECK(hit == "second");
}

TEST_CASE("router: an empty router answers 404", "[http][router]") {
  Router r;
  auto m = r.match(Method::Get, "/v2/");
  CHECK(m.handler == nullptr);
  CHECK(m.status == 404);
  CHECK(m.allow.empty());
}

TEST_CASE("router: a route's tag comes back with its match, HEAD taking GET's", "[http][router]") {
  // Access control reads the tag (api::Access) before the handler runs.
  Router r;
  r.add(Method::Get, "/v2/{name}/manifests/{reference}", [](const ExchangePtr&) {}, 3);
  r.add(Method::Put, "/v2/{name}/manifests/{reference}", [](const ExchangePtr&) {}, 4);
  r.add(Method::Get, "/healthz", [](const ExchangePtr&) {});
  CHECK(r.match(Method::Get, "/v2/a/b/manifests/1").tag == 3);
  CHECK(r.match(Method::Head, "/v2/a/b/manifests/1").tag == 3);
  CHECK(r.match(Method::Put, "/v2/a/b/manifests/1").tag == 4);
  CHECK(r.match(Method::Get, "/healthz").tag == 0);
  auto none = r.match(Method::Delete, "/v2/a/manifests/1");
  CHECK(none.handler == nullptr);
  CHECK(none.tag == 0);
}
