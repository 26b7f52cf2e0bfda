#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "bundle/export.hpp"
#include "bundle/import.hpp"
#include "bundle/inventory.hpp"
#include "bundle/parts.hpp"
#include "store_fixture.hpp"

using namespace outpost;
using namespace outpost::bundle;
using outpost::store::test::Sandbox;

namespace {

std::string slurp(const std::string& p) {
  std::ifstream f(p, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

struct Image {
  std::string config = R"({"architecture":"amd64","os":"linux"})";
  std::string layer;
  std::string manifest;
  Digest config_d, layer_d, manifest_d;
};

Image make_image(size_t layer_size, uint32_t seed = 12345) {
  Image im;
  im.layer.resize(layer_size);
  uint32_t x = seed;
  for (auto& c : im.layer) {
    x = x * 1103515245u + 12345u;
    c = static_cast<char>(x >> 24);
  }
  im.config_d = Digest::sha256_of(im.config);
  im.layer_d = Digest::sha256_of(im.layer);
  nlohmann::json m = {
      {"schemaVersion", 2},
      {"mediaType", "application/vnd.oci.image.manifest.v1+json"},
      {"config", {{"mediaType", "application/vnd.oci.image.config.v1+json"}, {"digest", im.config_d.str()}, {"size", im.config.size()}}},
      {"layers", {{{"mediaType", "application/vnd.oci.image.layer.v1.tar"}, {"digest", im.layer_d.str()}, {"size", im.layer.size()}}}}};
  im.manifest = m.dump();
  im.manifest_d = Digest::sha256_of(im.manifest);
  return im;
}

void push(store::Store& s, const std::string& repo, const std::string& tag, const Image& im) {
  REQUIRE(s.put_blob(repo, im.config_d, im.config));
  REQUIRE(s.put_blob(repo, im.layer_d, im.layer));
  store::ManifestPut m;
  m.repo = repo;
  m.digest = im.manifest_d;
  m.media_type = "application/vnd.oci.image.manifest.v1+json";
  m.refs = {{im.config_d, true}, {im.layer_d, true}};
  m.tag = tag;
  REQUIRE(s.put_manifest(m, im.manifest));
}

ExportOptions all_to(const std::string& out) {
  ExportOptions o;
  o.output = out;
  o.selection.repos.push_back(*sync::KeepPattern::parse("**"));
  return o;
}

std::unique_ptr<store::Store> open_store(const std::string& root, bool replay = false) {
  store::StoreOptions so;
  so.replay = replay;
  auto s = store::Store::open(root, so);
  REQUIRE(s);
  return std::move(*s);
}

}  // namespace

TEST_CASE("export -> import: tags, manifests and blobs arrive verified; replay is queued like a push", "[bundle]") {
  Sandbox sa, sb;
  const Image im = make_image(3 * 1024 * 1024 + 17);
  const std::string file = sa.dir() + "/b.tar";
  {
    auto a = open_store(sa.root());
    push(*a, "site/app", "v1", im);
    auto rep = export_bundle(*a, all_to(file));
    REQUIRE(rep);
    CHECK(rep->tags == 1);
    CHECK(rep->manifests == 1);
    CHECK(rep->blobs == 2);
    CHECK(rep->blob_bytes == im.config.size() + im.layer.size());
  }
  auto b = open_store(sb.root(), /*replay=*/true);
  auto rep = import_bundle(*b, {file}, {});
  REQUIRE(rep);
  CHECK(rep->passes == 1);  // index.json and manifests first: one pass
  CHECK(rep->blobs_stored == 2);
  CHECK(rep->tags == 1);
  auto got = b->resolve_manifest("site/app", "v1");
  REQUIRE(got);
  CHECK(got->digest == im.manifest_d);
  CHECK(*b->read_manifest("site/app", im.manifest_d) == im.manifest);
  CHECK(*b->stat_blob("site/app", im.layer_d) == im.layer.size());
  auto stats = b->replay_stats();
  REQUIRE(stats);
  CHECK(stats->pending == 4);  // two blobs, the manifest, the tag

  SECTION("importing again reads no blob bytes") {
    auto again = import_bundle(*b, {file}, {});
    REQUIRE(again);
    CHECK(again->blobs_stored == 0);
    CHECK(again->blobs_held == 2);
  }
}

TEST_CASE("import refuses a blob whose bytes do not match, and commits no manifest", "[bundle]") {
  Sandbox sa, sb;
  const Image im = make_image(200'000);
  const std::string file = sa.dir() + "/b.tar";
  {
    auto a = open_store(sa.root());
    push(*a, "site/app", "v1", im);
    REQUIRE(export_bundle(*a, all_to(file)));
  }
  std::string bytes = slurp(file);
  const size_t at = bytes.find(im.layer.substr(1000, 64));
  REQUIRE(at != std::string::npos);
  bytes[at] ^= 1;
  std::ofstream(file, std::ios::binary | std::ios::trunc) << bytes;
  auto b = open_store(sb.root());
  auto rep = import_bundle(*b, {file}, {});
  REQUIRE_FALSE(rep);
  CHECK(rep.error().code == Errc::DigestInvalid);
  CHECK(rep.error().detail.find("blobs/sha256/" + std::string(im.layer_d.hex())) != std::string::npos);
  CHECK_FALSE(b->resolve_manifest("site/app", "v1"));
  CHECK_FALSE(b->stat_blob("site/app", im.layer_d));
}

TEST_CASE("an incremental export leaves out what the inventory lists; import needs it held", "[bundle]") {
  Sandbox sa, sb, sc;
  const Image v1 = make_image(100'000);
  Image v2 = make_image(100'000);  // same layer, new config
  v2.config = R"({"architecture":"amd64","os":"linux","v":2})";
  v2.config_d = Digest::sha256_of(v2.config);
  {
    nlohmann::json m = nlohmann::json::parse(v2.manifest);
    m["config"]["digest"] = v2.config_d.str();
    m["config"]["size"] = v2.config.size();
    v2.manifest = m.dump();
    v2.manifest_d = Digest::sha256_of(v2.manifest);
  }
  auto a = open_store(sa.root());
  auto b = open_store(sb.root());
  push(*a, "site/app", "v1", v1);
  push(*b, "site/app", "v1", v1);
  push(*a, "site/app", "v2", v2);
  auto inv = take_inventory(*b);
  REQUIRE(inv);
  auto have = parse_inventory(inventory_json(*inv, 0), "inv");
  REQUIRE(have);
  CHECK(have->count(v1.layer_d.str()));
  const std::string file = sa.dir() + "/inc.tar";
  ExportOptions o = all_to(file);
  o.selection.have = &*have;
  auto rep = export_bundle(*a, o);
  REQUIRE(rep);
  CHECK(rep->blobs == 1);  // v2's config only
  CHECK(rep->blobs_left_out == 2);
  auto ok = import_bundle(*b, {file}, {});
  REQUIRE(ok);
  CHECK(b->resolve_manifest("site/app", "v2")->digest == v2.manifest_d);

  auto c = open_store(sc.root());  // holds nothing: the bundle is not enough
  auto bad = import_bundle(*c, {file}, {});
  REQUIRE_FALSE(bad);
  CHECK(bad.error().detail.find(v1.layer_d.str()) != std::string::npos);
  CHECK_FALSE(c->resolve_manifest("site/app", "v2"));
}

TEST_CASE("the same export gives the same bytes (gzip, zstd): what --resume relies on", "[bundle]") {
  Sandbox sa;
  auto a = open_store(sa.root());
  push(*a, "site/app", "v1", make_image(300'000));
  for (auto c : {Compression::Gzip, Compression::Zstd}) {
    ExportOptions o1 = all_to(sa.dir() + "/one"), o2 = all_to(sa.dir() + "/two");
    o1.compression = o2.compression = c;
    REQUIRE(export_bundle(*a, o1));
    REQUIRE(export_bundle(*a, o2));
    CHECK(slurp(sa.dir() + "/one") == slurp(sa.dir() + "/two"));
  }
}

TEST_CASE("an export that fails half way leaves a stream --resume continues", "[bundle]") {
  Sandbox sa;
  auto a = open_store(sa.root());
  const Image v1 = make_image(2 * 1024 * 1024 + 5, 1), v2 = make_image(300'000, 2);
  push(*a, "site/app", "v1", v1);
  push(*a, "site/app", "v2", v2);
  ExportOptions whole = all_to(sa.dir() + "/whole");
  whole.max_part = 1024 * 1024;
  REQUIRE(export_bundle(*a, whole));

  ExportOptions o = all_to(sa.dir() + "/cut");
  o.max_part = whole.max_part;
  const std::string blob = a->layout().blob_file(v2.layer_d);
  std::filesystem::rename(blob, blob + ".away");  // v2's layer (the last entry) cannot be read
  auto failed = export_bundle(*a, o);
  REQUIRE_FALSE(failed);
  CHECK(failed.error().detail.find(v2.layer_d.str()) != std::string::npos);
  std::filesystem::rename(blob + ".away", blob);
  o.resume = true;
  auto rep = export_bundle(*a, o);
  REQUIRE(rep);
  CHECK(rep->bytes_verified >= 2 * 1024 * 1024);  // two full parts (v1 layer) were on disk already
  REQUIRE(rep->files.size() == 3);
  for (size_t i = 0; i < rep->files.size(); ++i)
    CHECK(slurp(part_path(sa.dir() + "/cut", i)) == slurp(part_path(sa.dir() + "/whole", i)));
}
