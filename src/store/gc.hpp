// Garbage collection of the content store: unreferenced blobs, blob files
// with no row, stale upload sessions and orphan temp files. Not eviction:
// nothing referenced is ever removed here (LRU eviction of cached content is
// a separate policy that will sit on top of the `origin` columns).
#pragma once
#include <cstddef>
#include <cstdint>
#include <shared_mutex>

#include "base/result.hpp"
#include "store/blob_store.hpp"
#include "store/layout.hpp"
#include "store/meta_db.hpp"
#include "store/upload.hpp"

namespace outpost::store {

struct GcOptions {
  /// A blob published or linked within this window is kept even when nothing
  /// references it yet: the manifest PUT that will name it may be in flight
  /// (clients push layers first, the manifest last; a pull-through fill
  /// records the blob a moment before the manifest). Files and dirs that have
  /// no row yet are protected by the publish lock, not by this window (see
  /// GcTargets::publish_mu); the window is a second, belt-and-braces check
  /// for them (only entries older than it are ever considered orphans).
  int64_t grace_ms = 10 * 60 * 1000;
  /// Upload sessions not flushed (and not used in memory) for this long are
  /// cancelled. distribution's default upload purge age is one week; a day
  /// suits a small edge disk better. The same age ends an abandoned push's
  /// committed layers: a blob that only pushed links name (no manifest
  /// references it, no cached link, nothing owed) and that was not
  /// published, linked or read for this long is removed with its links.
  int64_t upload_ttl_ms = 24 * 60 * 60 * 1000;
  /// Also walk blobs/ for files that have no row (a crash between rename and
  /// record). Costs one directory walk and one indexed lookup per file.
  bool sweep_blob_files = true;
  /// Rows fetched per query; bounds memory independently of store size.
  size_t batch = 256;
  /// Report what would be removed; remove nothing (`outpost gc --dry-run`).
  bool dry_run = false;
};

struct GcReport {
  size_t blobs_removed = 0;       ///< unreferenced blob rows + files
  uint64_t bytes_removed = 0;     ///< their sizes
  size_t orphan_files_removed = 0;  ///< files under blobs/ with no row, or misnamed
  uint64_t orphan_bytes_removed = 0;
  size_t uploads_expired = 0;     ///< sessions past upload_ttl_ms
  size_t upload_dirs_removed = 0;  ///< uploads/ entries with no session row
  size_t temp_files_removed = 0;  ///< tmp/ leftovers
  size_t repos_removed = 0;       ///< repository rows holding nothing and no session
};

/// What GC operates on (all owned by the Store).
struct GcTargets {
  const Layout& layout;
  MetaDb& meta;
  BlobStore& blobs;
  Uploads& uploads;
  /// Held shared by every operation that creates a file or directory before
  /// its row exists (upload create and commit, one-shot blob/manifest
  /// writes), exclusive by GC while it decides that an entry is an orphan or
  /// deletes a blob. So GC never sees a half-done publish, whatever the grace.
  std::shared_mutex& publish_mu;
};

/// One full pass. Blocking (directory walks, unlinks, SQLite commits): run it
/// on a worker thread. Safe to run while the store serves and accepts
/// uploads: each removal re-checks its condition under the publish lock.
Result<GcReport> collect_garbage(const GcTargets& t, const GcOptions& opts);

/// Removes files under blobs/ that have no row (or a name we never create)
/// and an mtime at or before `cutoff_ms`; counts them into `rep`.
Status sweep_rowless_blobs(const GcTargets& t, int64_t cutoff_ms, GcReport& rep, bool dry_run = false);

/// Removes every entry of tmp/ whose mtime is at or before `cutoff_ms`.
Result<size_t> sweep_temp_dir(const Layout& layout, int64_t cutoff_ms);

}  // namespace outpost::store
