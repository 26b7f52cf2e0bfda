// `outpost import`: reads a bundle (an OCI layout as a tar, plain or
// compressed, one file or parts; a plain OCI layout directory; a `docker
// save` archive) into the store through the same verified commit as a push:
// every blob streams into an upload session and is published only when its
// bytes hash to its digest (Store::commit_upload); manifests go through
// Store::put_manifest, tags with them. With replay on (ReadWrite with a
// parent) each write queues its replay entries like a push does.
//
// Nothing half-imported is visible: manifests and tags are committed only
// after every blob they need is verified and stored (or already held). A
// failed import may leave verified blobs linked to their repositories, as an
// interrupted push does; no manifest or tag names them.
//
// Passes: the importer reads the entries in order and needs index.json (or
// manifest.json) and the manifests before it can place blobs in
// repositories. An Outpost bundle puts them first, so one pass suffices;
// a foreign layout with index.json at the end is read again (at most
// kMaxPasses times; a directory costs nothing to re-read).
#pragma once
#include <string>
#include <vector>

#include "base/result.hpp"
#include "bundle/progress.hpp"

namespace outpost::store { class Store; }

namespace outpost::bundle {

inline constexpr int kMaxPasses = 5;

struct ImportOptions {
  /// Repository for index.json entries naming none (a plain OCI layout
  /// written by skopeo or another tool), and for docker save images
  /// without RepoTags.
  std::string default_repo;
  ProgressFn progress;
  /// registry.max_manifest_bytes: a bigger manifest is refused (it could
  /// never be served).
  uint64_t max_manifest_bytes = 4 * 1024 * 1024;
};

struct ImportReport {
  std::string format;       ///< "oci" or "docker-save"
  size_t tags = 0;
  size_t manifests = 0;     ///< manifest puts (per repository)
  size_t blobs_stored = 0;  ///< verified and stored from the bundle
  uint64_t bytes_stored = 0;
  size_t blobs_held = 0;    ///< already in the store (not read again)
  int passes = 0;
};

/// `inputs`: the files of one bundle in stream order (parts.hpp
/// bundle_files), or one OCI layout directory. Blocking: bulk reads,
/// hashing and fsyncs. Errors name the entry at fault.
Result<ImportReport> import_bundle(store::Store& s, const std::vector<std::string>& inputs, const ImportOptions& o);

std::string report_json(const ImportReport& r);

}  // namespace outpost::bundle
