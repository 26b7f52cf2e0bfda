// The byte stream of a bundle on disk: one file, or numbered parts
// (FILE.000, FILE.001, ...) of at most max_part bytes each, for media with a
// file size limit. PartWriter cuts the stream and can resume a partly
// written export; PartReader glues parts back into one stream. Knows nothing
// of tar or OCI: libarchive's write and read callbacks call these.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "base/result.hpp"
#include "store/fs.hpp"

namespace outpost::bundle {

/// "<base>.NNN" (three digits at least, more past 999).
std::string part_path(const std::string& base, size_t index);

/// Writes the stream to `base` (max_part == 0) or to its parts.
///
/// Resume (resume == true): an export is deterministic (fixed entry order,
/// zero timestamps, compressors without a time stamp), so writing it again
/// produces the same bytes. Where a file of the output already exists, the
/// new bytes are *compared* with it instead of written, and writing goes on
/// after its end: a part cut short by a full disk or a kill is completed, and
/// a complete part is only read. A byte that differs (the store, the
/// options or the --have file changed) fails with BadRequest naming the part
/// and offset. Without resume, existing files are replaced.
///
/// Each part is fsynced when it is complete, so a crash loses at most the
/// part being written (which resume then completes). Not thread-safe.
class PartWriter {
 public:
  PartWriter(std::string base, uint64_t max_part, bool resume);
  ~PartWriter();
  PartWriter(const PartWriter&) = delete;
  PartWriter& operator=(const PartWriter&) = delete;

  Status write(const void* data, size_t len);
  /// Fsyncs the last part, fails when an existing file holds more bytes than
  /// the stream (resume of a different export), and removes stale parts
  /// numbered past the last one (left by an earlier, longer export).
  Status finish();

  uint64_t bytes() const { return total_; }
  /// Bytes compared with existing files instead of written (resume).
  uint64_t bytes_verified() const { return verified_; }
  const std::vector<std::string>& files() const { return files_; }

 private:
  Status open_part();
  Status close_part();

  std::string base_;
  uint64_t max_part_;
  bool resume_;
  store::UniqueFd fd_;
  size_t index_ = 0;
  uint64_t in_part_ = 0;       ///< bytes of the stream in the current part
  uint64_t existing_ = 0;      ///< size of the current part's file before we started
  uint64_t total_ = 0;
  uint64_t verified_ = 0;
  std::vector<std::string> files_;
  std::vector<char> cmp_;
};

/// Reads files one after the other as one stream.
class PartReader {
 public:
  explicit PartReader(std::vector<std::string> files) : files_(std::move(files)) {}
  /// Next bytes into `buf`; 0 at the end of the last file.
  Result<size_t> read(char* buf, size_t len);
  /// The file being read (for messages).
  const std::string& current() const;

 private:
  std::vector<std::string> files_;
  size_t index_ = 0;
  store::UniqueFd fd_;
};

/// The inputs of one bundle: `path` itself when it is a file, or its parts
/// when `path` is "X.000" or `path` does not exist but "path.000" does
/// (then X.000, X.001, ... while they exist). NotFound when neither exists.
Result<std::vector<std::string>> bundle_files(const std::string& path);

}  // namespace outpost::bundle
