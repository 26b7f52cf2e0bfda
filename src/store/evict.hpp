// Eviction (issue #18): least-recently-used removal of cached content when
// the store is over its quota (storage.max_size) or the filesystem has less
// free space than storage.min_free. Not GC: GC removes only what nothing
// references; eviction removes cached manifests (with their tags) and
// cached blob links, then the blobs that leaves unreferenced.
//
// Never evicted: pushed content (links, manifests, pushed tags), anything a
// pending replay entry still needs (the GC rule, kUnreferenced), anything a
// kept tag pins (MetaDb::is_pinned), and content used within `grace_ms` (a
// fill or a pull in progress). A reader that already holds the file open
// keeps reading it after the unlink (POSIX: the inode lives while an fd is
// open), so a blob streamed while it is evicted finishes byte-identical.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>

#include "base/result.hpp"
#include "store/gc.hpp"

namespace outpost::store {

/// A size limit given as bytes or as a percentage of the filesystem.
struct SizeLimit {
  uint64_t bytes = 0;    ///< when percent == 0; 0 with percent == 0: no limit
  double percent = 0;    ///< of the filesystem's total size, (0, 100]
  bool set() const { return bytes > 0 || percent > 0; }
  /// The limit in bytes for a filesystem of `fs_total` bytes.
  uint64_t resolve(uint64_t fs_total) const {
    return percent > 0 ? static_cast<uint64_t>(static_cast<double>(fs_total) * percent / 100.0) : bytes;
  }
};
/// "10GiB", "500000", "80%" (empty: no limit). ConfigInvalid otherwise.
Result<SizeLimit> parse_size_limit(std::string_view s);

struct EvictOptions {
  SizeLimit max_size;  ///< bytes of blobs held
  SizeLimit min_free;  ///< free space on the store's filesystem
  /// Content read, filled or linked within this window is never evicted:
  /// a pull or a fill is using it right now.
  int64_t grace_ms = 60 * 1000;
  /// Free at least this much whatever the limits say, capped at
  /// `free_at_least_max` bytes (after a write failed on a full disk: the
  /// space the failed write held is back by now, so "within min_free" would
  /// free nothing and the retry would fail again).
  SizeLimit free_at_least;
  uint64_t free_at_least_max = 1ull << 30;
  size_t batch = 64;
};

struct EvictReport {
  uint64_t used_before = 0;  ///< blob bytes at the start
  uint64_t quota = 0;        ///< resolved max_size (0: none)
  uint64_t need = 0;         ///< bytes to free to be within both limits
  uint64_t freed = 0;        ///< blob bytes removed
  size_t blobs_removed = 0;
  size_t manifests_removed = 0;
  size_t links_removed = 0;
  bool short_of_target = false;  ///< nothing more could be evicted
};

/// Filesystem totals of the store root (statvfs).
struct FsSpace {
  uint64_t total = 0;
  uint64_t avail = 0;  ///< for unprivileged users (f_bavail)
};
Result<FsSpace> fs_space(const std::string& path);

/// Bytes to free now to satisfy `o` (0: within limits). `quota` gets the
/// resolved max_size.
Result<uint64_t> bytes_over(const GcTargets& t, const EvictOptions& o, uint64_t* used, uint64_t* quota);

/// One eviction pass: frees at least bytes_over() when it can. Blocking;
/// run on a worker thread. The caller bumps the store's generations.
Result<EvictReport> evict(const GcTargets& t, const EvictOptions& o);

}  // namespace outpost::store
