// Metadata semantics through the Store: tags, pagination, catalog,
// referrers, manifest refs, deletes, origin promotion, name validation.
#include <catch2/catch.hpp>

#include "store_fixture.hpp"

using namespace outpost;
using namespace outpost::store;

namespace {

struct Image {
  Digest config, layer, manifest;
  std::string manifest_bytes;
};

// A minimal image: two blobs pushed, then a manifest naming them.
Image push_image(Store& s, const std::string& repo, const std::string& salt,
                 std::optional<std::string> tag = std::nullopt,
                 std::optional<Digest> subject = std::nullopt,
                 std::optional<std::string> artifact_type = std::nullopt,
                 std::optional<std::string> annotations = std::nullopt, Origin origin = Origin::Pushed) {
  Image img;
  const std::string cfg = "{\"config\":\"" + salt + "\"}";
  const std::string lay = "layer-bytes-" + salt;
  img.config = test::digest_of(cfg);
  img.layer = test::digest_of(lay);
  REQUIRE(s.put_blob(repo, img.config, cfg, origin).ok());
  REQUIRE(s.put_blob(repo, img.layer, lay, origin).ok());
  img.manifest_bytes = "{\"schemaVersion\":2,\"config\":\"" + img.config.str() + "\",\"layers\":[\"" +
                       img.layer.str() + "\"],\"salt\":\"" + salt + "\"}";
  img.manifest = test::digest_of(img.manifest_bytes);
  ManifestPut m;
  m.repo = repo;
  m.digest = img.manifest;
  m.media_type = "application/vnd.oci.image.manifest.v1+json";
  m.refs = {{img.config, true}, {img.layer, true}};
  m.subject = subject;
  m.artifact_type = artifact_type;
  m.annotations = annotations;
  m.tag = tag;
  m.origin = origin;
  auto r = s.put_manifest(m, img.manifest_bytes);
  REQUIRE(r.ok());
  return img;
}

std::vector<std::string> names(const Result<Page>& p) {
  REQUIRE(p.ok());
  return p->items;
}

}  // namespace

TEST_CASE("tags: put, get, overwrite, delete", "[store]") {
  test::Sandbox sb;
  auto s = Store::open(sb.root());
  REQUIRE(s.ok());
  auto& st = **s;
  auto a = push_image(st, "lib/app", "a", "v1");
  auto b = push_image(st, "lib/app", "b");

  CHECK(*st.get_tag("lib/app", "v1") == a.manifest);
  REQUIRE(st.put_tag("lib/app", "v1", b.manifest).ok());
  CHECK(*st.get_tag("lib/app", "v1") == b.manifest);
  CHECK(st.resolve_manifest("lib/app", "v1")->digest == b.manifest);
  CHECK(st.resolve_manifest("lib/app", a.manifest.str())->digest == a.manifest);

  // A tag may only name a manifest of its own repository.
  auto other = push_image(st, "lib/other", "o");
  auto bad = st.put_tag("lib/app", "v2", other.manifest);
  REQUIRE_FALSE(bad.ok());
  CHECK(bad.error().code == Errc::ManifestUnknown);

  REQUIRE(st.delete_tag("lib/app", "v1").ok());
  CHECK(st.get_tag("lib/app", "v1").error().code == Errc::ManifestUnknown);
  CHECK(st.delete_tag("lib/app", "v1").error().code == Errc::ManifestUnknown);
  // The manifest stays after its tag is gone.
  CHECK(st.get_manifest("lib/app", b.manifest).ok());
}

TEST_CASE("tags list: lexical order, n and last pagination", "[store]") {
  test::Sandbox sb;
  auto s = Store::open(sb.root());
  REQUIRE(s.ok());
  auto& st = **s;
  auto img = push_image(st, "r", "x");
  for (const char* t : {"b", "a", "c10", "c2", "A", "latest", "_x"}) REQUIRE(st.put_tag("r", t, img.manifest).ok());

  const std::vector<std::string> all = {"A", "_x", "a", "b", "c10", "c2", "latest"};  // byte order
  auto full = st.list_tags("r", {});
  REQUIRE(full.ok());
  CHECK(full->items == all);
  CHECK_FALSE(full->has_more);

  auto p1 = st.list_tags("r", PageRequest{2, ""});
  CHECK(p1->items == std::vector<std::string>{"A", "_x"});
  CHECK(p1->has_more);
  auto p2 = st.list_tags("r", PageRequest{2, p1->items.back()});
  CHECK(p2->items == std::vector<std::string>{"a", "b"});
  CHECK(p2->has_more);
  auto p3 = st.list_tags("r", PageRequest{3, "b"});
  CHECK(p3->items == std::vector<std::string>{"c10", "c2", "latest"});
  CHECK_FALSE(p3->has_more);  // exactly n left: no further page

  // `last` need not exist: entries strictly after it.
  CHECK(names(st.list_tags("r", PageRequest{std::nullopt, "bb"})) == std::vector<std::string>{"c10", "c2", "latest"});
  CHECK(names(st.list_tags("r", PageRequest{5, "zzz"})).empty());
  auto zero = st.list_tags("r", PageRequest{0, ""});
  CHECK(zero->items.empty());
  CHECK_FALSE(zero->has_more);

  CHECK(st.list_tags("nope", {}).error().code == Errc::NameUnknown);
  CHECK(st.list_tags("Bad Name", {}).error().code == Errc::NameInvalid);
}

TEST_CASE("catalog: repositories with manifests, paginated", "[store]") {
  test::Sandbox sb;
  auto s = Store::open(sb.root());
  REQUIRE(s.ok());
  auto& st = **s;
  for (const char* r : {"zeta", "alpha/one", "alpha", "mid/x/y"}) push_image(st, r, r);
  REQUIRE(st.start_upload("only-an-upload").ok());  // not listed: no manifest
  REQUIRE(st.put_blob("only-blobs", test::digest_of("q"), "q").ok());

  CHECK(names(st.catalog({})) == std::vector<std::string>{"alpha", "alpha/one", "mid/x/y", "zeta"});
  auto p = st.catalog(PageRequest{2, ""});
  CHECK(p->items == std::vector<std::string>{"alpha", "alpha/one"});
  CHECK(p->has_more);
  auto q = st.catalog(PageRequest{2, "alpha/one"});
  CHECK(q->items == std::vector<std::string>{"mid/x/y", "zeta"});
  CHECK_FALSE(q->has_more);
}

TEST_CASE("referrers: by subject, artifactType filter, annotations kept", "[store]") {
  test::Sandbox sb;
  auto s = Store::open(sb.root());
  REQUIRE(s.ok());
  auto& st = **s;
  auto subject = push_image(st, "app", "subject");
  auto sig = push_image(st, "app", "sig", std::nullopt, subject.manifest, "application/vnd.dev.cosign",
                        R"({"org.opencontainers.image.created":"2024-01-01"})");
  auto sbom = push_image(st, "app", "sbom", std::nullopt, subject.manifest, "application/spdx+json");
  push_image(st, "app", "unrelated");
  push_image(st, "elsewhere", "sig2", std::nullopt, subject.manifest, "application/vnd.dev.cosign");

  auto all = st.referrers("app", subject.manifest);
  REQUIRE(all.ok());
  REQUIRE(all->items.size() == 2);
  std::vector<Digest> got = {all->items[0].digest, all->items[1].digest};
  std::vector<Digest> want = {sig.manifest, sbom.manifest};
  std::sort(want.begin(), want.end());
  CHECK(got == want);  // ordered by digest, other repositories excluded

  auto only = st.referrers("app", subject.manifest, std::string("application/vnd.dev.cosign"));
  REQUIRE(only.ok());
  REQUIRE(only->items.size() == 1);
  const auto& r = only->items[0];
  CHECK(r.digest == sig.manifest);
  CHECK(r.media_type == "application/vnd.oci.image.manifest.v1+json");
  CHECK(r.size == sig.manifest_bytes.size());
  CHECK(r.artifact_type == std::optional<std::string>("application/vnd.dev.cosign"));
  CHECK(r.annotations == std::optional<std::string>(R"({"org.opencontainers.image.created":"2024-01-01"})"));

  CHECK(st.referrers("app", subject.manifest, std::string("none/such"))->items.empty());
  CHECK(st.referrers("app", test::digest_of("no subject"))->items.empty());
  auto page = st.referrers("app", subject.manifest, std::nullopt, PageRequest{1, ""});
  CHECK(page->items.size() == 1);
  CHECK(page->has_more);
}

TEST_CASE("manifests: an index's child must be a manifest of the repository, not only a blob", "[store]") {
  test::Sandbox sb;
  auto s = Store::open(sb.root());
  REQUIRE(s.ok());
  auto& st = **s;
  const std::string child = "{}";  // pushed as a blob, never as a manifest
  REQUIRE(st.put_blob("app", test::digest_of(child), child).ok());
  const std::string bytes = R"({"schemaVersion":2,"manifests":["x"]})";
  ManifestPut m;
  m.repo = "app";
  m.digest = test::digest_of(bytes);
  m.media_type = "application/vnd.oci.image.index.v1+json";
  m.refs = {{test::digest_of(child), true, true}};
  auto r = st.put_manifest(m, bytes);
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().code == Errc::ManifestBlobUnknown);
  CHECK(r.error().detail == test::digest_of(child).str());
  // The same digest as a layer (not a child manifest) is fine.
  m.refs = {{test::digest_of(child), true, false}};
  CHECK(st.put_manifest(m, bytes).ok());
}

TEST_CASE("manifests: required refs must be readable in the repository", "[store]") {
  test::Sandbox sb;
  auto s = Store::open(sb.root());
  REQUIRE(s.ok());
  auto& st = **s;
  const std::string layer = "layer";
  REQUIRE(st.put_blob("other", test::digest_of(layer), layer).ok());  // present, but not in "app"
  const std::string bytes = R"({"schemaVersion":2,"layers":["x"]})";
  ManifestPut m;
  m.repo = "app";
  m.digest = test::digest_of(bytes);
  m.media_type = "application/vnd.oci.image.manifest.v1+json";
  m.refs = {{test::digest_of(layer), true}};
  auto r = st.put_manifest(m, bytes);
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().code == Errc::ManifestBlobUnknown);
  CHECK(r.error().detail == test::digest_of(layer).str());
  CHECK_FALSE(st.blobs().contains(m.digest));  // nothing written

  // A foreign layer (not required) is accepted without its bytes.
  m.refs = {{test::digest_of("foreign layer"), false}};
  m.tag = "win";
  auto ok = st.put_manifest(m, bytes);
  REQUIRE(ok.ok());
  CHECK(*st.get_tag("app", "win") == m.digest);
  CHECK(*st.read_manifest("app", m.digest) == bytes);
  // The manifest's own bytes are readable as a blob of its repository.
  CHECK(*st.stat_blob("app", m.digest) == bytes.size());

  // Wrong bytes for the digest: DigestInvalid.
  m.digest = test::digest_of("something else");
  CHECK(st.put_manifest(m, bytes).error().code == Errc::DigestInvalid);
  m.digest = test::digest_of(bytes);
  m.tag = "bad tag!";
  CHECK(st.put_manifest(m, bytes).error().code == Errc::TagInvalid);
}

TEST_CASE("manifests: delete removes tags; an index keeps its children", "[store]") {
  test::Sandbox sb;
  auto s = Store::open(sb.root());
  REQUIRE(s.ok());
  auto& st = **s;
  auto child = push_image(st, "app", "child", "v1");
  REQUIRE(st.put_tag("app", "also", child.manifest).ok());

  const std::string idx = "{\"manifests\":[\"" + child.manifest.str() + "\"]}";
  ManifestPut m;
  m.repo = "app";
  m.digest = test::digest_of(idx);
  m.media_type = "application/vnd.oci.image.index.v1+json";
  m.refs = {{child.manifest, true}};
  m.tag = "multi";
  REQUIRE(st.put_manifest(m, idx).ok());

  auto denied = st.delete_manifest("app", child.manifest);
  REQUIRE_FALSE(denied.ok());
  CHECK(denied.error().code == Errc::Unsupported);
  CHECK(denied.error().message().find(m.digest.str()) != std::string::npos);

  REQUIRE(st.delete_manifest("app", m.digest).ok());
  CHECK(st.get_tag("app", "multi").error().code == Errc::ManifestUnknown);
  REQUIRE(st.delete_manifest("app", child.manifest).ok());
  CHECK(st.get_tag("app", "v1").error().code == Errc::ManifestUnknown);
  CHECK(st.get_tag("app", "also").error().code == Errc::ManifestUnknown);
  CHECK(st.get_manifest("app", child.manifest).error().code == Errc::ManifestUnknown);
  CHECK(st.delete_manifest("app", child.manifest).error().code == Errc::ManifestUnknown);
  CHECK(names(st.list_tags("app", {})).empty());
}

TEST_CASE("blob links: mount, delete, referenced blobs are protected", "[store]") {
  test::Sandbox sb;
  auto s = Store::open(sb.root());
  REQUIRE(s.ok());
  auto& st = **s;
  auto img = push_image(st, "src", "m");

  CHECK(st.stat_blob("dst", img.layer).error().code == Errc::BlobUnknown);
  CHECK(st.mount_blob("nowhere", "dst", img.layer).error().code == Errc::BlobUnknown);
  auto mounted = st.mount_blob("src", "dst", img.layer);
  REQUIRE(mounted.ok());
  CHECK(*st.stat_blob("dst", img.layer) == *mounted);

  auto denied = st.delete_blob("src", img.layer);
  REQUIRE_FALSE(denied.ok());
  CHECK(denied.error().code == Errc::Unsupported);
  CHECK(denied.error().message().find(img.manifest.str()) != std::string::npos);
  REQUIRE(st.delete_blob("dst", img.layer).ok());  // no manifest in dst uses it
  CHECK(st.stat_blob("dst", img.layer).error().code == Errc::BlobUnknown);
  CHECK(st.delete_blob("dst", img.layer).error().code == Errc::BlobUnknown);
  CHECK(st.stat_blob("src", img.layer).ok());
}

TEST_CASE("repositories exist once they hold a blob or a manifest", "[store]") {
  // tags/list answers NAME_UNKNOWN for a repository that does not exist: a
  // push that stored nothing (issue 13) must leave it so.
  test::Sandbox sb;
  auto s = Store::open(sb.root());
  REQUIRE(s.ok());
  auto& st = **s;
  auto src = push_image(st, "src", "s");
  auto unknown = [&](const char* label) {
    INFO(label);
    CHECK_FALSE(*st.meta().repo_exists("new"));
    CHECK(st.list_tags("new", {}).error().code == Errc::NameUnknown);
  };
  unknown("never touched");
  auto id = st.start_upload("new");
  REQUIRE(id.ok());
  unknown("open upload session");
  REQUIRE(st.append_upload("new", *id, 0, "wrong").ok());
  CHECK(st.commit_upload("new", *id, src.layer).error().code == Errc::DigestInvalid);
  unknown("failed commit");
  CHECK(st.mount_blob("nowhere", "new", src.layer).error().code == Errc::BlobUnknown);
  unknown("failed mount");
  ManifestPut m;
  m.repo = "new";
  m.digest = src.manifest;
  m.media_type = "application/vnd.oci.image.manifest.v1+json";
  m.refs = {{src.layer, true}};
  m.tag = "v1";
  CHECK(st.put_manifest(m, src.manifest_bytes).error().code == Errc::ManifestBlobUnknown);
  unknown("failed manifest put");

  REQUIRE(st.mount_blob("src", "new", src.layer).ok());
  CHECK(*st.meta().repo_exists("new"));
  CHECK(names(st.list_tags("new", {})).empty());
  REQUIRE(st.delete_blob("new", src.layer).ok());
  unknown("everything deleted");
}

TEST_CASE("origin: pushed wins over cached", "[store]") {
  test::Sandbox sb;
  auto s = Store::open(sb.root());
  REQUIRE(s.ok());
  auto& st = **s;
  auto cached = push_image(st, "mirror", "c", "t", std::nullopt, std::nullopt, std::nullopt, Origin::Cached);
  CHECK(st.get_manifest("mirror", cached.manifest)->origin == Origin::Cached);
  auto again = push_image(st, "mirror", "c", "t", std::nullopt, std::nullopt, std::nullopt, Origin::Pushed);
  CHECK(again.manifest == cached.manifest);
  CHECK(st.get_manifest("mirror", cached.manifest)->origin == Origin::Pushed);
  push_image(st, "mirror", "c", "t", std::nullopt, std::nullopt, std::nullopt, Origin::Cached);
  CHECK(st.get_manifest("mirror", cached.manifest)->origin == Origin::Pushed);
}

TEST_CASE("names: invalid repositories and tags are refused", "[store]") {
  test::Sandbox sb;
  auto s = Store::open(sb.root());
  REQUIRE(s.ok());
  auto& st = **s;
  for (std::string_view bad : {"", "UPPER", "../etc", "a//b", "/abs", "a/", "a/../b", "a b"}) {
    CHECK(st.start_upload(bad).error().code == Errc::NameInvalid);
    CHECK(st.put_blob(bad, test::digest_of("x"), "x").error().code == Errc::NameInvalid);
  }
  auto img = push_image(st, "ok", "n");
  for (const std::string& bad : std::vector<std::string>{"", ".hidden", "-x", "a/b", "a:b", std::string(129, 'a')})
    CHECK(st.put_tag("ok", bad, img.manifest).error().code == Errc::TagInvalid);
}
