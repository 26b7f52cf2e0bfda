// `outpost export`: writes a selection of the store as an OCI image layout in
// a tar (plain, gzip or zstd, through libarchive), to one file or to parts.
// Reads the store through store/store.hpp only; blobs are copied through a
// fixed buffer, so memory does not grow with the bundle.
//
// Bundle layout (entry order is fixed, which makes --resume possible):
//
//   oci-layout                 {"imageLayoutVersion":"1.0.0"}
//   index.json                 one entry per (repository, tag), annotations
//                              org.opencontainers.image.ref.name = tag and
//                              io.outpost.repository = repository; referrers
//                              as entries without a ref.name
//   blobs/                     directory entries
//   blobs/sha256/
//   blobs/sha256/<manifests>   every manifest, parents before children
//   blobs/sha256/<blobs>       configs and layers, in first-use order, minus
//                              those the --have inventory lists
//
// Every entry has mtime 0, uid/gid 0 and mode 0644; gzip is written without
// a time stamp.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "base/result.hpp"
#include "bundle/plan.hpp"
#include "bundle/progress.hpp"

namespace outpost::store { class Store; }

namespace outpost::bundle {

enum class Compression { None, Gzip, Zstd };
Result<Compression> parse_compression(std::string_view s);  ///< "none" | "gzip" | "zstd"

struct ExportOptions {
  Selection selection;
  std::string output;    ///< FILE (or the base of FILE.000, FILE.001, ...)
  uint64_t max_part = 0; ///< 0: one file
  bool resume = false;   ///< parts.hpp PartWriter
  Compression compression = Compression::None;
  ProgressFn progress;   ///< may be empty
};

struct ExportReport {
  size_t tags = 0;
  size_t referrers = 0;
  size_t manifests = 0;
  size_t blobs = 0;
  uint64_t blob_bytes = 0;
  size_t blobs_left_out = 0;  ///< held by the receiving site (--have)
  uint64_t bytes_left_out = 0;
  uint64_t bytes_written = 0;   ///< size of the (compressed) stream
  uint64_t bytes_verified = 0;  ///< of those, compared with existing files (--resume)
  std::vector<std::string> files;
};

/// Plans (plan_selection), then writes. Blocking: bulk reads and writes.
Result<ExportReport> export_bundle(store::Store& s, const ExportOptions& o);

/// JSON of a report (the CLI prints it; the admin endpoint answers it).
std::string report_json(const ExportReport& r);

}  // namespace outpost::bundle
