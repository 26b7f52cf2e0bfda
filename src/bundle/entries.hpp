// The entries of a bundle being imported, read in order: a tar stream
// (plain, gzip, zstd, ...: libarchive detects the filter) over one file or
// its parts, or a plain OCI layout directory. Entry names are checked here
// (no absolute paths, no ".."): nothing past this line sees an unsafe name.
// Knows nothing of OCI beyond the directory layout's file names.
#pragma once
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "base/result.hpp"

namespace outpost::bundle {

struct EntryInfo {
  std::string name;  ///< normalised: no leading "./"
  uint64_t size = 0;
  bool regular = false;  ///< a regular file (directories, links and devices are skipped by callers)
  /// For a symbolic or hard link: its target as a bundle path (a symlink's
  /// resolved against the entry's directory), checked to stay inside.
  std::string link;
};

class EntryReader {
 public:
  virtual ~EntryReader() = default;
  /// The next entry, nullopt at the end. BadRequest naming the entry for an
  /// unsafe name or a damaged/truncated archive.
  virtual Result<std::optional<EntryInfo>> next() = 0;
  /// Data of the current entry; 0 at its end. A short entry (truncated
  /// archive) fails with BadRequest naming it.
  virtual Result<size_t> read(char* buf, size_t len) = 0;
};

/// Opens `inputs` (the files of one bundle, in order; or one directory) from
/// the beginning. Each import pass opens it again.
Result<std::unique_ptr<EntryReader>> open_entries(const std::vector<std::string>& inputs);

/// The name without leading "./", or BadRequest when it is absolute or has
/// a ".." component ("path traversal").
Result<std::string> safe_entry_name(std::string_view name);

/// `target` of a symlink at `name`, as a bundle path; BadRequest naming the
/// entry when it is absolute or climbs out of the bundle.
Result<std::string> resolve_link(const std::string& name, std::string_view target);

}  // namespace outpost::bundle
