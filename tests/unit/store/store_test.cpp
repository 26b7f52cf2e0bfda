// Store facade: open/reopen durability, one-shot puts, repo-scoped reads,
// root locking and path tricks that must never escape the root.
#include <catch2/catch.hpp>

#include <sys/stat.h>

#include "store_fixture.hpp"

using namespace outpost;
using namespace outpost::store;

TEST_CASE("store: open creates the layout", "[store]") {
  test::Sandbox sb;
  auto s = Store::open(sb.root());
  REQUIRE(s.ok());
  for (const char* p : {"/blobs/sha256", "/uploads", "/tmp"})
    CHECK(std::filesystem::is_directory(sb.root() + p));
  CHECK(std::filesystem::exists(sb.root() + "/meta.db"));
  CHECK(std::filesystem::exists(sb.root() + "/LOCK"));
}

TEST_CASE("store: a second open of the same root is refused while the first lives", "[store]") {
  test::Sandbox sb;
  auto first = Store::open(sb.root());
  REQUIRE(first.ok());
  auto second = Store::open(sb.root());
  REQUIRE_FALSE(second.ok());
  CHECK(second.error().code == Errc::Io);
  first->reset();
  CHECK(Store::open(sb.root()).ok());
}

TEST_CASE("store: put_blob stores verified bytes read-only and dedupes", "[store]") {
  test::Sandbox sb;
  auto s = Store::open(sb.root());
  REQUIRE(s.ok());
  auto& st = **s;
  const std::string data = "hello blob";
  const Digest d = test::digest_of(data);
  auto r = st.put_blob("a", d, data);
  REQUIRE(r.ok());
  CHECK(r->size == data.size());
  REQUIRE(st.put_blob("b", d, data).ok());  // same bytes, second repository
  CHECK(test::blob_files(sb.root()).size() == 1);

  struct stat sbuf {};
  REQUIRE(::stat(sb.root().append("/blobs/sha256/").append(d.hex().substr(0, 2)).append("/").append(d.hex()).c_str(),
                 &sbuf) == 0);
  CHECK((sbuf.st_mode & 0777) == 0444);

  auto blob = st.open_blob("b", d);
  REQUIRE(blob.ok());
  CHECK(test::same_bytes(test::read_fd(blob->fd.get()), data));
  // The fd is the caller's: release() hands it over.
  int raw = blob->fd.release();
  CHECK(raw >= 0);
  ::close(raw);
  CHECK(test::files_under(sb.root() + "/tmp").empty());
}

TEST_CASE("store: reopen keeps blobs, links, manifests, tags and referrers", "[store]") {
  test::Sandbox sb;
  const std::string layer = test::pattern_bytes(50000, 5);
  const std::string manifest = R"({"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json"})";
  const std::string referrer = R"({"schemaVersion":2,"subject":"x"})";
  const Digest dl = test::digest_of(layer), dm = test::digest_of(manifest), dr = test::digest_of(referrer);
  {
    auto s = Store::open(sb.root());
    REQUIRE(s.ok());
    auto& st = **s;
    auto id = st.start_upload("app");
    REQUIRE(id.ok());
    REQUIRE(st.append_upload("app", *id, 0, layer).ok());
    REQUIRE(st.commit_upload("app", *id, dl).ok());
    ManifestPut m;
    m.repo = "app";
    m.digest = dm;
    m.media_type = "application/vnd.oci.image.manifest.v1+json";
    m.refs = {{dl, true}};
    m.tag = "v1";
    REQUIRE(st.put_manifest(m, manifest).ok());
    ManifestPut r;
    r.repo = "app";
    r.digest = dr;
    r.media_type = "application/vnd.oci.image.manifest.v1+json";
    r.subject = dm;
    r.artifact_type = "application/example";
    REQUIRE(st.put_manifest(r, referrer).ok());
  }
  auto s = Store::open(sb.root());
  REQUIRE(s.ok());
  auto& st = **s;
  CHECK(*st.stat_blob("app", dl) == layer.size());
  CHECK(test::same_bytes(test::read_fd(st.open_blob("app", dl)->fd.get()), layer));
  auto mi = st.resolve_manifest("app", "v1");
  REQUIRE(mi.ok());
  CHECK(mi->digest == dm);
  CHECK(mi->size == manifest.size());
  CHECK(mi->media_type == "application/vnd.oci.image.manifest.v1+json");
  CHECK(*st.read_manifest("app", dm) == manifest);
  auto refs = st.referrers("app", dm);
  REQUIRE(refs.ok());
  REQUIRE(refs->items.size() == 1);
  CHECK(refs->items[0].digest == dr);
  CHECK(st.catalog({})->items == std::vector<std::string>{"app"});
}

TEST_CASE("store: path tricks never create files outside the root", "[store]") {
  test::Sandbox sb;
  {
    auto s = Store::open(sb.root());
    REQUIRE(s.ok());
    auto& st = **s;
    const std::vector<std::string> repos = {"../escape", "../../tmp/x", "a/../../b", "/etc", "a/./b", "..", ".",
                                            "a\\..\\b", std::string("a\0b", 3), "%2e%2e/x"};
    for (const auto& r : repos) {
      CHECK_FALSE(st.start_upload(r).ok());
      CHECK_FALSE(st.put_blob(r, test::digest_of("x"), "x").ok());
      CHECK_FALSE(st.stat_blob(r, test::digest_of("x")).ok());
      CHECK_FALSE(st.list_tags(r, {}).ok());
    }
    auto id = st.start_upload("ok");
    REQUIRE(id.ok());
    const std::vector<std::string> ids = {"../../../escape", "../" + *id, *id + "/../x", "..", "",
                                          std::string(32, '.'), "0123456789abcdef0123456789abcde/"};
    for (const auto& bad : ids) {
      CHECK(st.append_upload("ok", bad, 0, "data").error().code == Errc::BlobUploadUnknown);
      CHECK(st.upload_status("ok", bad).error().code == Errc::BlobUploadUnknown);
      CHECK(st.cancel_upload("ok", bad).error().code == Errc::BlobUploadUnknown);
      CHECK(st.commit_upload("ok", bad, test::digest_of("data")).error().code == Errc::BlobUploadUnknown);
    }
    for (const char* tag : {"../../x", "a/b", ".."})
      CHECK(st.put_tag("ok", tag, test::digest_of("x")).error().code == Errc::TagInvalid);
  }
  // Only the root itself appeared in the sandbox, and inside it only our layout.
  std::vector<std::string> top;
  for (auto& e : std::filesystem::directory_iterator(sb.dir())) top.push_back(e.path().filename().string());
  CHECK(top == std::vector<std::string>{"root"});
  for (const auto& f : test::files_under(sb.root())) {
    const bool known = f.rfind("meta.db", 0) == 0 || f == "LOCK" || f.rfind("uploads/", 0) == 0;
    CHECK(known);
  }
}

TEST_CASE("store: open_blob detects a blob file that disagrees with its row", "[store]") {
  test::Sandbox sb;
  auto s = Store::open(sb.root());
  REQUIRE(s.ok());
  auto& st = **s;
  const std::string data = "content";
  const Digest d = test::digest_of(data);
  REQUIRE(st.put_blob("app", d, data).ok());
  const std::string path = st.layout().blob_file(d);
  REQUIRE(::chmod(path.c_str(), 0644) == 0);
  { std::ofstream(path, std::ios::app) << "tampered"; }
  auto r = st.open_blob("app", d);
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().code == Errc::Io);
  std::filesystem::remove(path);
  CHECK(st.open_blob("app", d).error().code == Errc::BlobUnknown);
}
