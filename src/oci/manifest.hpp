// Manifest understanding for PUT: which media types are manifests, what a
// manifest references (blobs, child manifests, subject), its artifactType.
// Pure functions over bytes; knows nothing of HTTP or the store.
#pragma once
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/digest.hpp"
#include "base/result.hpp"

namespace outpost::oci {

inline constexpr std::string_view kOciManifest = "application/vnd.oci.image.manifest.v1+json";
inline constexpr std::string_view kOciIndex = "application/vnd.oci.image.index.v1+json";
inline constexpr std::string_view kDockerManifest = "application/vnd.docker.distribution.manifest.v2+json";
inline constexpr std::string_view kDockerList = "application/vnd.docker.distribution.manifest.list.v2+json";

bool is_index_type(std::string_view media_type);
bool is_manifest_type(std::string_view media_type);

struct ParsedRef {
  Digest digest;
  bool is_manifest = false;  ///< an index's child (must exist as a manifest)
  bool required = true;      ///< false for foreign layers carrying `urls`
};

struct ParsedManifest {
  std::string media_type;                  ///< effective media type
  std::vector<ParsedRef> refs;
  std::optional<Digest> subject;
  std::optional<std::string> artifact_type;
  std::optional<std::string> annotations;  ///< JSON object text
};

/// Validates `bytes` as a manifest sent with `content_type` (may be empty).
/// MANIFEST_INVALID with a precise detail for: bad JSON, schemaVersion != 2,
/// a mediaType field that contradicts the Content-Type, malformed descriptors
/// or digests, unknown manifest media types.
Result<ParsedManifest> parse_manifest(std::string_view bytes, std::string_view content_type);

/// A pushed manifest's Content-Type, when one was sent, must name the type
/// it is stored under: the body's mediaType, or for a body without one a
/// manifest type (parameters such as "; charset=utf-8" are ignored).
/// MANIFEST_INVALID otherwise. parse_manifest alone lets a Content-Type that
/// names no manifest type fall back to the body, which suits fetches from a
/// parent registry but would store a push under a type the client never sent.
Status check_pushed_content_type(const ParsedManifest& m, std::string_view content_type);

/// Strips parameters and whitespace: "application/json; charset=utf-8" -> "application/json".
std::string_view bare_media_type(std::string_view content_type);

}  // namespace outpost::oci
