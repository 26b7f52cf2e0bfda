// Manifest understanding for PUT (src/oci/manifest.cpp, used by the API's
// manifest handler): OCI and Docker manifests and indexes, foreign layers,
// subject, artifactType (with the config.mediaType fallback), the media type
// chosen from Content-Type and the mediaType field, and every way a
// descriptor or the document itself can be malformed.
#include <catch2/catch.hpp>

#include <string>

#include "oci/json_depth.hpp"
#include "oci/manifest.hpp"

using outpost::Digest;
using outpost::Errc;
namespace oci = outpost::oci;

namespace {

const std::string kA = "sha256:" + std::string(64, 'a');
const std::string kB = "sha256:" + std::string(64, 'b');
const std::string kC = "sha256:" + std::string(64, 'c');
const std::string kS = "sha256:" + std::string(64, '5');

const std::string kOciManifest(oci::kOciManifest);
const std::string kOciIndex(oci::kOciIndex);
const std::string kDockerManifest(oci::kDockerManifest);
const std::string kDockerList(oci::kDockerList);
const std::string kOciConfig = "application/vnd.oci.image.config.v1+json";
const std::string kDockerConfig = "application/vnd.docker.container.image.v1+json";
const std::string kLayer = "application/vnd.oci.image.layer.v1.tar+gzip";

std::string desc(const std::string& media_type, const std::string& digest, const std::string& size = "10",
                 const std::string& extra = "") {
  return R"({"mediaType":")" + media_type + R"(","digest":")" + digest + R"(","size":)" + size + extra + "}";
}

// An image manifest; `fields` are extra top-level members (",\"k\":v" form).
std::string image(const std::string& media_type_field = kOciManifest, const std::string& fields = "",
                  const std::string& layers = "") {
  std::string mt = media_type_field.empty() ? "" : R"("mediaType":")" + media_type_field + R"(",)";
  std::string ls = layers.empty() ? desc(kLayer, kB) : layers;
  return R"({"schemaVersion":2,)" + mt + R"("config":)" + desc(kOciConfig, kA) + R"(,"layers":[)" + ls + "]" +
         fields + "}";
}

std::string index(const std::string& media_type_field = kOciIndex, const std::string& fields = "") {
  std::string mt = media_type_field.empty() ? "" : R"("mediaType":")" + media_type_field + R"(",)";
  return R"({"schemaVersion":2,)" + mt + R"("manifests":[)" + desc(kOciManifest, kA) + "," +
         desc(kOciManifest, kB) + "]" + fields + "}";
}

oci::ParsedManifest accepted(const std::string& bytes, const std::string& content_type) {
  auto r = oci::parse_manifest(bytes, content_type);
  INFO(bytes << " as " << content_type << ": " << (r ? "" : r.error().message()));
  REQUIRE(r.ok());
  return std::move(r).value();
}

// The detail of a parse that must fail with MANIFEST_INVALID.
std::string rejected(const std::string& bytes, const std::string& content_type) {
  auto r = oci::parse_manifest(bytes, content_type);
  INFO(bytes << " as " << content_type);
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().code == Errc::ManifestInvalid);
  return r.error().detail;
}

}  // namespace

TEST_CASE("OCI image manifest: refs, artifactType fallback, no subject", "[api][manifest]") {
  auto m = accepted(image(), kOciManifest);
  CHECK(m.media_type == kOciManifest);
  REQUIRE(m.refs.size() == 2);
  CHECK(m.refs[0].digest.str() == kA);  // config first
  CHECK_FALSE(m.refs[0].is_manifest);
  CHECK(m.refs[0].required);
  CHECK(m.refs[1].digest.str() == kB);
  CHECK(m.refs[1].required);
  // No artifactType field: the config's mediaType stands in (image-spec 1.1).
  REQUIRE(m.artifact_type);
  CHECK(*m.artifact_type == kOciConfig);
  CHECK_FALSE(m.subject);
  CHECK_FALSE(m.annotations);
}

TEST_CASE("an artifactType field wins over config.mediaType", "[api][manifest]") {
  auto m = accepted(image(kOciManifest, R"(,"artifactType":"application/vnd.example.sbom")"), kOciManifest);
  REQUIRE(m.artifact_type);
  CHECK(*m.artifact_type == "application/vnd.example.sbom");
  CHECK(rejected(image(kOciManifest, R"(,"artifactType":7)"), kOciManifest).find("artifactType") !=
        std::string::npos);
}

TEST_CASE("an artifact with no layers is a manifest", "[api][manifest]") {
  std::string empty = R"({"schemaVersion":2,"mediaType":")" + kOciManifest + R"(","artifactType":"application/x.a",)" +
                      R"("config":)" + desc("application/vnd.oci.empty.v1+json", kA, "2") + R"(,"layers":[]})";
  auto m = accepted(empty, kOciManifest);
  CHECK(m.refs.size() == 1);
  CHECK(*m.artifact_type == "application/x.a");
}

TEST_CASE("subject is parsed as a descriptor", "[api][manifest]") {
  auto m = accepted(image(kOciManifest, R"(,"subject":)" + desc(kOciManifest, kS, "123")), kOciManifest);
  REQUIRE(m.subject);
  CHECK(m.subject->str() == kS);
  // The subject is not a reference that must exist: referrers may come first.
  for (const auto& r : m.refs) CHECK_FALSE(r.digest == *m.subject);

  CHECK(rejected(image(kOciManifest, R"(,"subject":)" + desc(kOciManifest, "sha256:abc")), kOciManifest)
            .find("subject") != std::string::npos);
  CHECK(rejected(image(kOciManifest, R"(,"subject":{"digest":")" + kS + R"(","size":1})"), kOciManifest)
            .find("subject.mediaType") != std::string::npos);
  CHECK(rejected(image(kOciManifest, R"(,"subject":")" + kS + R"(")"), kOciManifest).find("subject") !=
        std::string::npos);
}

TEST_CASE("annotations are kept as JSON object text", "[api][manifest]") {
  auto m = accepted(image(kOciManifest, R"(,"annotations":{"org.example.a":"1","b":"x y"})"), kOciManifest);
  REQUIRE(m.annotations);
  CHECK(*m.annotations == R"({"b":"x y","org.example.a":"1"})");
  CHECK_FALSE(rejected(image(kOciManifest, R"(,"annotations":["a"])"), kOciManifest).empty());
  CHECK(rejected(image(kOciManifest, R"(,"annotations":{"a":1})"), kOciManifest).find("'a'") != std::string::npos);
}

TEST_CASE("OCI index: children are manifests; artifactType only from its field", "[api][manifest]") {
  auto m = accepted(index(), kOciIndex);
  CHECK(m.media_type == kOciIndex);
  REQUIRE(m.refs.size() == 2);
  for (const auto& r : m.refs) {
    CHECK(r.is_manifest);
    CHECK(r.required);
  }
  CHECK_FALSE(m.artifact_type);
  auto a = accepted(index(kOciIndex, R"(,"artifactType":"application/x.bundle","subject":)" +
                                         desc(kOciManifest, kS)),
                    kOciIndex);
  CHECK(*a.artifact_type == "application/x.bundle");
  CHECK(a.subject->str() == kS);
  // an empty index is valid
  auto e = accepted(R"({"schemaVersion":2,"mediaType":")" + kOciIndex + R"(","manifests":[]})", kOciIndex);
  CHECK(e.refs.empty());
}

TEST_CASE("Docker schema 2 manifest and manifest list", "[api][manifest]") {
  std::string dm = R"({"schemaVersion":2,"mediaType":")" + kDockerManifest + R"(","config":)" +
                   desc(kDockerConfig, kA) + R"(,"layers":[)" +
                   desc("application/vnd.docker.image.rootfs.diff.tar.gzip", kB) + "]}";
  auto m = accepted(dm, kDockerManifest);
  CHECK(m.media_type == kDockerManifest);
  CHECK(m.refs.size() == 2);
  CHECK(*m.artifact_type == kDockerConfig);
  auto l = accepted(index(kDockerList), kDockerList);
  CHECK(l.media_type == kDockerList);
  CHECK(l.refs.size() == 2);
  CHECK(l.refs[0].is_manifest);
  // docker pushes with the Content-Type and the field; either alone is enough
  CHECK(accepted(dm, "").media_type == kDockerManifest);
  CHECK(accepted(index(kDockerList), "").media_type == kDockerList);
}

TEST_CASE("foreign layers with urls are not required", "[api][manifest]") {
  const std::string foreign_mt = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip";
  std::string layers = desc(foreign_mt, kB, "1000", R"(,"urls":["https://mcr.microsoft.com/l/1"])") + "," +
                       desc(kLayer, kC) + "," + desc(foreign_mt, kS, "5", R"(,"urls":[])");
  auto m = accepted(image(kDockerManifest, "", layers), kDockerManifest);
  REQUIRE(m.refs.size() == 4);
  CHECK(m.refs[0].required);         // config
  CHECK_FALSE(m.refs[1].required);   // foreign, with urls
  CHECK(m.refs[2].required);         // ordinary layer
  CHECK(m.refs[3].required);         // empty urls: nothing to fetch it from
  // an OCI non-distributable layer with urls is the same
  auto o = accepted(image(kOciManifest, "",
                          desc("application/vnd.oci.image.layer.nondistributable.v1.tar+gzip", kB, "9",
                               R"(,"urls":["https://example.com/b"])")),
                    kOciManifest);
  CHECK_FALSE(o.refs[1].required);
}

TEST_CASE("media type from Content-Type, the field, or the shape", "[api][manifest]") {
  // Content-Type alone
  CHECK(accepted(image(""), kOciManifest).media_type == kOciManifest);
  CHECK(accepted(index(""), kOciIndex).media_type == kOciIndex);
  // parameters and whitespace are ignored
  CHECK(accepted(image(), " " + kOciManifest + " ; charset=utf-8").media_type == kOciManifest);
  // the field alone, or with a Content-Type that names no manifest type
  CHECK(accepted(image(), "").media_type == kOciManifest);
  CHECK(accepted(index(), "application/json").media_type == kOciIndex);
  CHECK(accepted(image(), "application/octet-stream").media_type == kOciManifest);
  // neither: the OCI type the document's shape says
  CHECK(accepted(image(""), "").media_type == kOciManifest);
  CHECK(accepted(index(""), "application/json").media_type == kOciIndex);
}

TEST_CASE("a document that is both an index and an image manifest is refused", "[api][manifest]") {
  // CVE-2021-41190: whichever way it was read, a client reading it the other
  // way would follow references that were never checked.
  const std::string both = R"({"schemaVersion":2,"manifests":[],"config":)" + desc(kOciConfig, kA) +
                           R"(,"layers":[)" + desc(kLayer, kB) + "]}";
  CHECK(rejected(both, kOciIndex) == "an index must not have config or layers");
  CHECK(rejected(both, kOciManifest) == "an image manifest must not have a manifests array");
  CHECK(rejected(both, "") == "an index must not have config or layers");
  CHECK(rejected(index(kOciIndex, R"(,"config":)" + desc(kOciConfig, kA)), kOciIndex) ==
        "an index must not have config or layers");
  CHECK(rejected(image(kOciManifest, R"(,"manifests":[])"), kOciManifest) ==
        "an image manifest must not have a manifests array");
}

TEST_CASE("a manifest nested deeper than 64 levels is refused before it is parsed", "[api][manifest]") {
  // 4 MiB of '[' took 3.8 s and 170 MB of tree to refuse.
  const std::string deep = std::string(2 * 1024 * 1024, '[') + std::string(2 * 1024 * 1024, ']');
  CHECK(rejected(deep, kOciManifest) == "manifest nests deeper than 64 levels");
  const std::string in_strings = image(kOciManifest, R"(,"annotations":{"a":")" + std::string(1000, '[') + R"("})");
  CHECK(accepted(in_strings, kOciManifest).media_type == kOciManifest);  // brackets in strings do not count
  CHECK(oci::json_nesting_within(std::string(64, '[')));
  CHECK_FALSE(oci::json_nesting_within(std::string(65, '{')));
  CHECK(oci::json_nesting_within(R"(["\"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["])", 2));
}

TEST_CASE("a pushed manifest's Content-Type must be its media type", "[api][manifest]") {
  // parse_manifest falls back to the body for a Content-Type naming no
  // manifest type (a parent's answer); a push was stored that way under a
  // type the client never sent (issue 13): check_pushed_content_type refuses.
  auto check = [](const std::string& bytes, const std::string& ct) {
    return oci::check_pushed_content_type(accepted(bytes, ct), ct);
  };
  for (const std::string ct : {"text/plain", "application/json", "application/octet-stream",
                               "text/plain; charset=utf-8"}) {
    INFO(ct);
    for (const auto& body : {image(), index(), image(""), index(""), image(kDockerManifest)}) {
      auto st = check(body, ct);
      REQUIRE_FALSE(st.ok());
      CHECK(st.error().code == Errc::ManifestInvalid);
      CHECK(st.error().message().find("is not the manifest's media type") != std::string::npos);
    }
  }
  // what clients send: the manifest's own type, with or without parameters, or nothing
  CHECK(check(image(), kOciManifest).ok());
  CHECK(check(image(), kOciManifest + "; charset=utf-8").ok());
  CHECK(check(image(""), kOciManifest).ok());
  CHECK(check(index(""), " " + kOciIndex + " ").ok());
  CHECK(check(image(kDockerManifest), kDockerManifest).ok());
  CHECK(check(image(kDockerManifest), "").ok());
  CHECK(check(index(kDockerList), "").ok());
  CHECK(check(image(""), "").ok());
}

TEST_CASE("a mediaType field that contradicts Content-Type is refused", "[api][manifest]") {
  CHECK(rejected(image(kOciManifest), kOciIndex).find("does not match") != std::string::npos);
  CHECK(rejected(image(kOciManifest), kDockerManifest).find("does not match") != std::string::npos);
  CHECK(rejected(index(kOciIndex), kDockerList).find("does not match") != std::string::npos);
  CHECK(rejected(index(kDockerList), kOciIndex).find("does not match") != std::string::npos);
  // a body of the other kind under a matching type is refused by its shape
  CHECK(rejected(index(""), kOciManifest).find("config") != std::string::npos);
  CHECK(rejected(image(""), kOciIndex).find("manifests") != std::string::npos);
  CHECK_FALSE(rejected(image(kOciIndex), "").empty());
  CHECK_FALSE(rejected(index(kOciManifest), "").empty());
}

TEST_CASE("unknown and unsupported media types are refused", "[api][manifest]") {
  CHECK(rejected(image("application/vnd.example.thing+json"), "").find("unsupported") != std::string::npos);
  CHECK(rejected(image("application/vnd.example.thing+json"), "application/vnd.example.thing+json")
            .find("unsupported") != std::string::npos);
  CHECK(rejected(image(kOciConfig), kOciConfig).find("unsupported") != std::string::npos);
  // schema 1 is not accepted (schemaVersion and type both say so)
  const std::string s1 = "application/vnd.docker.distribution.manifest.v1+prettyjws";
  CHECK_FALSE(rejected(R"({"schemaVersion":1,"name":"a","tag":"b","fsLayers":[]})", s1).empty());
  CHECK(rejected(image(s1), s1).find("unsupported") != std::string::npos);
  // a JSON object with no type and no recognisable shape
  CHECK(rejected(R"({"schemaVersion":2})", "").find("unsupported") != std::string::npos);
  CHECK(rejected(R"({"schemaVersion":2,"mediaType":5})", kOciManifest).find("mediaType") != std::string::npos);
}

TEST_CASE("documents that are not manifests at all", "[api][manifest]") {
  CHECK(rejected("", kOciManifest).find("JSON") != std::string::npos);
  CHECK(rejected("{not json", kOciManifest).find("JSON") != std::string::npos);
  CHECK(rejected(image() + "x", kOciManifest).find("JSON") != std::string::npos);
  CHECK(rejected("[]", kOciManifest).find("object") != std::string::npos);
  CHECK(rejected("\"manifest\"", kOciManifest).find("object") != std::string::npos);
  std::string no_sv = image();
  const std::string sv2 = R"("schemaVersion":2,)";
  no_sv.replace(no_sv.find(sv2), sv2.size(), "");
  CHECK(rejected(no_sv, kOciManifest).find("schemaVersion") != std::string::npos);
  for (const char* sv : {"1", "3", "\"2\"", "2.0", "null"}) {
    std::string b = image();
    b.replace(b.find("2,"), 1, sv);
    CHECK(rejected(b, kOciManifest).find("schemaVersion") != std::string::npos);
  }
}

TEST_CASE("malformed descriptors name the one at fault", "[api][manifest]") {
  struct Case {
    std::string layer;
    std::string where;
  };
  const Case cases[] = {
      {R"("sha256:abc")", "layers[0]"},                                            // not an object
      {R"({"digest":")" + kB + R"(","size":1})", "layers[0].mediaType"},           // no mediaType
      {R"({"mediaType":7,"digest":")" + kB + R"(","size":1})", "layers[0].mediaType"},
      {R"({"mediaType":"x","size":1})", "layers[0].digest"},                       // no digest
      {R"({"mediaType":"x","digest":5,"size":1})", "layers[0].digest"},
      {desc(kLayer, "sha256:abc"), "layers[0].digest"},                            // short
      {desc(kLayer, "sha256:" + std::string(64, 'A')), "layers[0].digest"},        // uppercase hex
      {desc(kLayer, "md5:" + std::string(32, 'a')), "layers[0].digest"},           // unsupported algorithm
      {desc(kLayer, kB.substr(7)), "layers[0].digest"},                            // no algorithm
      {R"({"mediaType":"x","digest":")" + kB + R"("})", "layers[0].size"},         // no size
      {desc(kLayer, kB, "-1"), "layers[0].size"},
      {desc(kLayer, kB, "1.5"), "layers[0].size"},
      {desc(kLayer, kB, "\"10\""), "layers[0].size"},
      {desc(kLayer, kB, "18446744073709551615"), "layers[0].size"},                // beyond int64
  };
  for (const auto& c : cases) {
    INFO(c.layer);
    CHECK(rejected(image(kOciManifest, "", c.layer), kOciManifest).find(c.where) != std::string::npos);
  }
  // the second layer is named as such
  CHECK(rejected(image(kOciManifest, "", desc(kLayer, kB) + "," + desc(kLayer, "sha256:zz")), kOciManifest)
            .find("layers[1].digest") != std::string::npos);
  // config and index children likewise
  std::string bad_config = R"({"schemaVersion":2,"config":)" + desc(kOciConfig, "sha256:x") + R"(,"layers":[]})";
  CHECK(rejected(bad_config, kOciManifest).find("config.digest") != std::string::npos);
  CHECK(rejected(R"({"schemaVersion":2,"layers":[]})", kOciManifest).find("config") != std::string::npos);
  CHECK(rejected(R"({"schemaVersion":2,"config":)" + desc(kOciConfig, kA) + "}", kOciManifest).find("layers") !=
        std::string::npos);
  CHECK(rejected(R"({"schemaVersion":2,"config":)" + desc(kOciConfig, kA) + R"(,"layers":{}})", kOciManifest)
            .find("layers") != std::string::npos);
  CHECK(rejected(R"({"schemaVersion":2,"manifests":[)" + desc(kOciManifest, kA, "-5") + "]}", kOciIndex)
            .find("manifests[0].size") != std::string::npos);
  CHECK(rejected(R"({"schemaVersion":2,"manifests":{}})", kOciIndex).find("manifests") != std::string::npos);
}

TEST_CASE("media type helpers", "[api][manifest]") {
  CHECK(oci::is_index_type(kOciIndex));
  CHECK(oci::is_index_type(kDockerList));
  CHECK_FALSE(oci::is_index_type(kOciManifest));
  CHECK(oci::is_manifest_type(kOciManifest));
  CHECK(oci::is_manifest_type(kDockerManifest));
  CHECK(oci::is_manifest_type(kOciIndex));
  CHECK_FALSE(oci::is_manifest_type(kOciConfig));
  CHECK_FALSE(oci::is_manifest_type(""));
  CHECK(oci::bare_media_type("application/json; charset=utf-8") == "application/json");
  CHECK(oci::bare_media_type("  text/plain\t") == "text/plain");
  CHECK(oci::bare_media_type("") == "");
}
