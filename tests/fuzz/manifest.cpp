// Fuzz target: manifest and index parsing (src/oci/manifest). Input:
// "<Content-Type>\n<manifest bytes>"; without a newline the whole input is
// the manifest, sent with no Content-Type. An accepted manifest has a
// manifest media type and well-formed digests; a refusal is MANIFEST_INVALID
// with a detail that fits in an OCI error body.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include <nlohmann/json.hpp>

#include "base/error.hpp"
#include "fuzz_check.hpp"
#include "oci/manifest.hpp"

using namespace outpost;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  std::string_view ct, bytes = in;
  if (size_t nl = in.find('\n'); nl != std::string_view::npos) {
    ct = in.substr(0, nl);
    bytes = in.substr(nl + 1);
  }
  std::string_view bare = oci::bare_media_type(ct);
  FUZZ_CHECK(bare.find(';') == std::string_view::npos);
  FUZZ_CHECK(bare.empty() || (bare.front() != ' ' && bare.back() != ' '));

  auto m = oci::parse_manifest(bytes, ct);
  if (!m) {
    FUZZ_CHECK(m.error().code == Errc::ManifestInvalid);
    FUZZ_CHECK(!m.error().detail.empty());
    // The refusal is answered as an OCI error body: it must be JSON whatever
    // bytes the client sent (the detail quotes its Content-Type).
    auto body = nlohmann::json::parse(error_body(m.error()), nullptr, false);
    FUZZ_CHECK(!body.is_discarded());
    return 0;
  }
  FUZZ_CHECK(oci::is_manifest_type(m->media_type));
  const bool index = oci::is_index_type(m->media_type);
  if (!index) FUZZ_CHECK(!m->refs.empty());  // the config descriptor at least
  for (const auto& r : m->refs) {
    FUZZ_CHECK(r.is_manifest == index);
    auto again = Digest::parse(r.digest.str());
    FUZZ_CHECK(again && *again == r.digest);
  }
  if (m->subject) FUZZ_CHECK(Digest::parse(m->subject->str()).ok());
  if (m->annotations) {
    auto a = nlohmann::json::parse(*m->annotations, nullptr, false);
    FUZZ_CHECK(a.is_object());
  }
  // Parsing is a pure function of its input.
  auto twice = oci::parse_manifest(bytes, ct);
  FUZZ_CHECK(twice && twice->media_type == m->media_type && twice->refs.size() == m->refs.size());
  return 0;
}
