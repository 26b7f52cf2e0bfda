#include "oci/manifest.hpp"

#include <nlohmann/json.hpp>

#include "oci/json_depth.hpp"

namespace outpost::oci {

using nlohmann::json;

namespace {

Error invalid(std::string detail) { return Error(Errc::ManifestInvalid, std::move(detail)); }

// A descriptor (OCI image-spec descriptor.md): mediaType, digest, size.
Result<Digest> check_descriptor(const json& d, const std::string& where) {
  if (!d.is_object()) return invalid(where + " is not a descriptor object");
  auto mt = d.find("mediaType");
  if (mt == d.end() || !mt->is_string()) return invalid(where + ".mediaType is missing or not a string");
  auto sz = d.find("size");
  if (sz == d.end() || !sz->is_number_integer() || sz->get<int64_t>() < 0)
    return invalid(where + ".size is missing or not a non-negative integer");
  auto dg = d.find("digest");
  if (dg == d.end() || !dg->is_string()) return invalid(where + ".digest is missing or not a string");
  auto digest = Digest::parse(dg->get<std::string>());
  if (!digest) return invalid(where + ".digest: " + digest.error().message());
  return *digest;
}

bool has_urls(const json& d) {
  auto u = d.find("urls");
  return u != d.end() && u->is_array() && !u->empty();
}

}  // namespace

bool is_index_type(std::string_view mt) { return mt == kOciIndex || mt == kDockerList; }
bool is_manifest_type(std::string_view mt) {
  return mt == kOciManifest || mt == kDockerManifest || is_index_type(mt);
}

std::string_view bare_media_type(std::string_view ct) {
  size_t semi = ct.find(';');
  if (semi != std::string_view::npos) ct = ct.substr(0, semi);
  while (!ct.empty() && (ct.back() == ' ' || ct.back() == '\t')) ct.remove_suffix(1);
  while (!ct.empty() && (ct.front() == ' ' || ct.front() == '\t')) ct.remove_prefix(1);
  return ct;
}

Status check_pushed_content_type(const ParsedManifest& m, std::string_view content_type) {
  // Clients send the manifest's own type (containers/image, docker, oras) or
  // nothing; any other type is a client mistake, refused rather than ignored.
  const std::string_view ct = bare_media_type(content_type);
  if (ct.empty() || ct == m.media_type) return {};
  return invalid("Content-Type '" + std::string(ct) + "' is not the manifest's media type '" + m.media_type + "'");
}

Result<ParsedManifest> parse_manifest(std::string_view bytes, std::string_view content_type) {
  if (!json_nesting_within(bytes))
    return invalid("manifest nests deeper than " + std::to_string(kMaxJsonNesting) + " levels");
  json j = json::parse(bytes.begin(), bytes.end(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return invalid("manifest is not valid JSON");
  if (!j.is_object()) return invalid("manifest is not a JSON object");
  auto sv = j.find("schemaVersion");
  if (sv == j.end() || !sv->is_number_integer() || sv->get<int64_t>() != 2)
    return invalid("schemaVersion must be 2");

  std::string ct(bare_media_type(content_type));
  std::string field;
  if (auto mt = j.find("mediaType"); mt != j.end()) {
    if (!mt->is_string()) return invalid("mediaType is not a string");
    field = mt->get<std::string>();
  }
  ParsedManifest out;
  if (!field.empty() && !ct.empty() && field != ct && is_manifest_type(ct))
    return invalid("mediaType '" + field + "' does not match Content-Type '" + ct + "'");
  if (is_manifest_type(ct)) out.media_type = ct;
  else if (is_manifest_type(field)) out.media_type = field;
  else if (field.empty() && j.contains("manifests")) out.media_type = std::string(kOciIndex);
  else if (field.empty() && j.contains("config") && j.contains("layers")) out.media_type = std::string(kOciManifest);
  else
    return invalid("unsupported manifest media type '" + (ct.empty() ? field : ct) + "'");

  // A document that reads as both an index and an image manifest is
  // refused (CVE-2021-41190): clients that sniff the type from the fields
  // would resolve references this registry never checked.
  if (is_index_type(out.media_type)) {
    auto ms = j.find("manifests");
    if (ms == j.end() || !ms->is_array()) return invalid("index has no manifests array");
    if (j.contains("config") || j.contains("layers")) return invalid("an index must not have config or layers");
    for (size_t i = 0; i < ms->size(); ++i) {
      auto d = check_descriptor((*ms)[i], "manifests[" + std::to_string(i) + "]");
      if (!d) return std::move(d).error();
      out.refs.push_back({*d, true, true});
    }
  } else {
    auto cfg = j.find("config");
    if (cfg == j.end()) return invalid("manifest has no config descriptor");
    auto cd = check_descriptor(*cfg, "config");
    if (!cd) return std::move(cd).error();
    out.refs.push_back({*cd, false, true});
    auto layers = j.find("layers");
    if (layers == j.end() || !layers->is_array()) return invalid("manifest has no layers array");
    if (j.contains("manifests")) return invalid("an image manifest must not have a manifests array");
    for (size_t i = 0; i < layers->size(); ++i) {
      const json& l = (*layers)[i];
      auto d = check_descriptor(l, "layers[" + std::to_string(i) + "]");
      if (!d) return std::move(d).error();
      // Foreign (non-distributable) layers live elsewhere, named by `urls`.
      out.refs.push_back({*d, false, !has_urls(l)});
    }
    if (auto mt = cfg->find("mediaType"); mt != cfg->end() && mt->is_string())
      out.artifact_type = mt->get<std::string>();
  }
  if (auto at = j.find("artifactType"); at != j.end()) {
    if (!at->is_string()) return invalid("artifactType is not a string");
    out.artifact_type = at->get<std::string>();
  }
  if (auto s = j.find("subject"); s != j.end()) {
    auto d = check_descriptor(*s, "subject");
    if (!d) return std::move(d).error();
    out.subject = *d;
  }
  if (auto a = j.find("annotations"); a != j.end()) {
    if (!a->is_object()) return invalid("annotations is not an object");
    for (auto& [k, v] : a->items())
      if (!v.is_string()) return invalid("annotation '" + k + "' is not a string");
    out.annotations = a->dump();
  }
  return out;
}

}  // namespace outpost::oci
