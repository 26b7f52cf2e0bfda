// Plain value types shared by the store's modules and its callers (API,
// cache, sync). No behaviour beyond tiny conversions.
#pragma once
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/digest.hpp"

namespace outpost::store {

/// Where content came from. 'pushed' content was written by a local client and
/// is owed to the parent (replay) and never evicted by cache management;
/// 'cached' content was filled from an upstream and may be evicted.
/// Pushed wins: re-recording cached content as pushed promotes it, never back.
enum class Origin { Pushed, Cached };
std::string_view origin_name(Origin o);  ///< "pushed" / "cached"
Origin origin_from(std::string_view s);  ///< unknown text reads as Pushed (the safe side)

/// Milliseconds since the Unix epoch; injectable for tests.
using Clock = std::function<int64_t()>;
int64_t system_clock_ms();

/// A stored blob.
struct Descriptor {
  Digest digest;
  uint64_t size = 0;
};

/// `n`/`last` pagination of the distribution-spec listing endpoints: entries
/// strictly after `last` in byte-wise lexical order, at most `n` (no limit
/// when unset; n == 0 yields an empty page).
struct PageRequest {
  std::optional<uint64_t> n;
  std::string last;
};

struct Page {
  std::vector<std::string> items;
  bool has_more = false;  ///< another page exists: the API sends a Link header
};

/// One digest a manifest points at (layers, config, index children, ...).
struct ManifestRef {
  Digest digest;
  /// Must already be readable in the repository (blob linked or manifest
  /// present) for the put to succeed. False for foreign layers with `urls`,
  /// which are accepted without their bytes (DESIGN.md "client conventions").
  bool required = true;
  /// An index's child: must be a manifest of the repository, not merely a
  /// blob (a client resolving the index would get 404 for it).
  bool is_manifest = false;
};

/// Everything put_manifest records besides the bytes.
struct ManifestPut {
  std::string repo;
  Digest digest;             ///< must equal sha256(bytes); checked by the store
  std::string media_type;    ///< the manifest's mediaType / Content-Type
  std::vector<ManifestRef> refs;
  std::optional<Digest> subject;             ///< OCI 1.1 subject, for referrers
  std::optional<std::string> artifact_type;  ///< effective artifactType (API computes the config.mediaType fallback)
  std::optional<std::string> annotations;    ///< JSON object text, served verbatim in referrers
  std::optional<std::string> tag;            ///< also point this tag at the manifest
  Origin origin = Origin::Pushed;
};

struct ManifestInfo {
  Digest digest;
  std::string media_type;
  uint64_t size = 0;
  std::optional<Digest> subject;
  std::optional<std::string> artifact_type;
  std::optional<std::string> annotations;
  Origin origin = Origin::Pushed;
  int64_t created_ms = 0;
};

/// One entry of a referrers response (an OCI descriptor).
struct Referrer {
  Digest digest;
  std::string media_type;
  uint64_t size = 0;
  std::optional<std::string> artifact_type;
  std::optional<std::string> annotations;  ///< JSON object text
};

/// A tag the Keeper keeps (sync.keep): pinned, never evicted.
struct KeptTag {
  std::string repo;
  std::string tag;
  Digest digest;        ///< what the Keeper last stored under the tag
  std::string pattern;  ///< the sync.keep entry that matched
  int64_t kept_ms = 0;
};

/// Bytes the store holds, by origin (issue #18). A blob counts as pushed
/// when a pushed link or pushed manifest holds it (owed or local work, never
/// evicted), as kept when a kept tag pins it, else as cached.
struct StorageUsage {
  uint64_t total = 0;   ///< every blob row
  uint64_t blobs = 0;   ///< number of blob rows
  uint64_t pushed = 0;
  uint64_t cached = 0;  ///< total - pushed (kept content counts here too, and in `kept`)
  uint64_t kept = 0;    ///< pinned by sync.keep (a subset of cached or pushed)
  uint64_t bad = 0;     ///< blobs marked bad by a check (count)
};

/// A cached manifest or blob link eviction may remove, with its LRU key.
struct EvictCandidate {
  std::string repo;
  int64_t repo_id = 0;
  int64_t id = 0;  ///< manifest id (links: 0)
  Digest digest;
  int64_t lru_ms = 0;  ///< MAX(accessed, touched) of its blob
  uint64_t size = 0;
};

/// A blob row as check reads it.
struct BlobRow {
  Digest digest;
  uint64_t size = 0;
  bool bad = false;
};

struct ReferrerPage {
  std::vector<Referrer> items;  ///< ordered by digest
  bool has_more = false;
};

}  // namespace outpost::store
