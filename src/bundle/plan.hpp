// What an export carries, decided from the store before a byte is written:
// the selected (repository, tag) roots, every manifest below them (index
// children, referrers) and every blob they name, in a deterministic order.
// inventory uses the same walk over the whole store. Reads the store only
// through store/store.hpp; knows nothing of tar.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <unordered_set>
#include <vector>

#include "base/digest.hpp"
#include "base/result.hpp"
#include "sync/keep_pattern.hpp"

namespace outpost::store { class Store; }

namespace outpost::bundle {

/// Annotation naming an index.json entry's repository (next to
/// org.opencontainers.image.ref.name, which carries the tag).
inline constexpr const char* kRepoAnnotation = "io.outpost.repository";
inline constexpr const char* kRefNameAnnotation = "org.opencontainers.image.ref.name";
/// On an index written by a --platform export: the digest of the original.
inline constexpr const char* kFilteredFromAnnotation = "io.outpost.bundle.filtered-from";

/// "os/arch[/variant]", e.g. "linux/arm64/v8".
struct Platform {
  std::string os, arch, variant;
  static Result<Platform> parse(std::string_view text);
  std::string str() const;
};

struct Selection {
  std::vector<sync::KeepPattern> repos;  ///< empty: every repository and tag
  std::vector<Platform> platforms;       ///< empty: every platform
  /// Digests the receiving site holds (inventory): blobs in it are left out.
  const std::unordered_set<std::string>* have = nullptr;
  /// Inventory: a tag whose content is not all held is walked as far as it
  /// goes instead of failing the plan (what was found is held).
  bool skip_incomplete = false;
};

/// An index.json entry: a tag (or, for a referrer, no tag) of a repository.
struct PlanRoot {
  std::string repo;
  std::optional<std::string> tag;
  Digest digest;
  std::string media_type;
  uint64_t size = 0;
};

struct PlanManifest {
  std::string repo;  ///< a repository that can read it
  Digest digest;
  std::string media_type;
  uint64_t size = 0;
  /// Set for an index written by the export (a --platform filter); else the
  /// bytes are read from the store when written.
  std::optional<std::string> bytes;
};

struct PlanBlob {
  std::string repo;  ///< a repository that can read it
  Digest digest;
  uint64_t size = 0;
};

struct Plan {
  std::vector<PlanRoot> roots;          ///< catalog order, then tag order; referrers after their subject
  std::vector<PlanManifest> manifests;  ///< each digest once, parents before children
  std::vector<PlanBlob> blobs;          ///< each digest once, in first-use order
  size_t blobs_left_out = 0;            ///< held by the receiving site (Selection::have)
  uint64_t bytes_left_out = 0;
  uint64_t blob_bytes() const;
};

/// Walks the store. Fails (naming repository, tag and digest) when a blob a
/// selected manifest requires is not held here, e.g. a pull-through copy
/// whose layers were never pulled, or when a --platform filter leaves an
/// index empty. Memory: a few strings per manifest and blob selected.
Result<Plan> plan_selection(store::Store& s, const Selection& sel);

}  // namespace outpost::bundle
