// BlobStore: the content-addressed files under <root>/blobs (layout.hpp).
// Owns the publish step (verified temp file -> fsync -> rename -> fsync dir).
// Knows nothing about repositories or SQLite; callers record metadata after
// publish succeeds. No libuv: every call is a plain blocking syscall sequence.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

#include "base/digest.hpp"
#include "base/result.hpp"
#include "store/fs.hpp"
#include "store/layout.hpp"

namespace outpost::store {

/// Thread-safe (stateless beyond the layout).
class BlobStore {
 public:
  explicit BlobStore(Layout layout) : layout_(std::move(layout)) {}

  /// Creates blobs/sha256 (and the root's other dirs are the Store's job).
  Status init();

  /// Size of the stored blob; BlobUnknown when absent or not storable.
  Result<uint64_t> stat(const Digest& d) const;
  bool contains(const Digest& d) const { return stat(d).ok(); }
  /// Opens the blob read-only. The caller owns the fd (UniqueFd::release()
  /// hands it to e.g. uv_fs_sendfile); the bytes never change under it, and
  /// GC unlinking the name does not disturb an open reader.
  Result<UniqueFd> open_read(const Digest& d) const;
  /// Reads a whole blob of at most `max_bytes` (manifests); ManifestTooLarge
  /// style limits are the caller's: here BodyTooLarge when exceeded.
  Result<std::string> read_all(const Digest& d, uint64_t max_bytes) const;

  /// Publishes `src` (already fsynced, its bytes verified to hash to `d`) as
  /// blob `d`: chmod 0444, rename into its shard, fsync the shard directory
  /// (and blobs/sha256 when the shard was new). When this returns ok the blob
  /// survives power loss. Replacing an existing blob is harmless (same bytes).
  Status publish(const std::string& src, const Digest& d);
  /// Writes `bytes` to a temp file, fsyncs and publishes it as `d`. The caller
  /// has verified sha256(bytes) == d. Memory: no copy of `bytes` is made.
  Status write_verified(const Digest& d, std::string_view bytes);

  /// Unlinks the blob file (GC). True when a file was removed.
  Result<bool> remove(const Digest& d);

  /// Calls `fn(name_is_valid, digest_or_empty, path)` for every regular file
  /// under blobs/sha256/<2 hex>/; names that are not a well-formed digest in
  /// the right shard come with name_is_valid = false. Stops early when `fn`
  /// returns false. Memory is constant in the number of files.
  Status scan(const std::function<bool(bool name_is_valid, const Digest& d, const std::string& path)>& fn) const;

  const Layout& layout() const { return layout_; }

 private:
  Layout layout_;
};

}  // namespace outpost::store
