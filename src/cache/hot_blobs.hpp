// HotBlobs: a bounded, loop-thread-owned memo of "repository may read blob
// digest, which has size N" (issue #14), so a GET/HEAD of a blob already
// seen is answered on the loop: no thread-pool round trip, no SQLite. Small
// blobs (image configs, at most kMaxInlineBytes) keep their bytes too, under
// a byte bound, so they are answered with no file syscall at all (one
// sendmsg for head and body); for larger ones the API opens the verified
// file itself and sends it with sendfile.
//
// Coherence: an entry carries the store's blob generation read BEFORE the
// pool read that found the blob, and is served only while the store's
// generation still equals it. Every write that can make a blob unreadable
// in a repository (unlink, manifest delete, GC; store.hpp) bumps it after
// its commit, so a positive answer is dropped as soon as anything could
// have revoked it. Publishing and linking never revoke, so pushes and fills
// leave every entry valid.
#pragma once
#include <cstddef>
#include <cstdint>
#include <list>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>

#include "base/digest.hpp"

namespace outpost::storesvc { class StoreService; }

namespace outpost::cache {

struct HotBlobStats {
  uint64_t hits = 0;
  uint64_t misses = 0;  ///< unknown or stale: the caller asks the store
  uint64_t evictions = 0;
};

struct HotBlob {
  uint64_t size = 0;
  /// The verified bytes for a blob of at most kMaxInlineBytes; else null.
  std::shared_ptr<const std::string> bytes;
};

class HotBlobs {
 public:
  /// About 200 bytes each without bytes: 4096 entries stay under 1 MiB.
  static constexpr size_t kDefaultMaxEntries = 4096;
  /// Bytes of small blobs kept, all entries together.
  static constexpr uint64_t kDefaultMaxBytes = 4ull * 1024 * 1024;
  /// Blobs up to this size are kept whole (a config; a manifest read as a blob).
  static constexpr uint64_t kMaxInlineBytes = 16 * 1024;

  /// `store` must outlive this object.
  explicit HotBlobs(const storesvc::StoreService* store, size_t max_entries = kDefaultMaxEntries,
                    uint64_t max_bytes = kDefaultMaxBytes);
  HotBlobs(const HotBlobs&) = delete;
  HotBlobs& operator=(const HotBlobs&) = delete;

  /// What is known of `d` when `repo` may read it and nothing that could
  /// revoke that happened since it was learnt; nullopt: ask the store.
  std::optional<HotBlob> find(const std::string& repo, const Digest& d);
  /// Records a store answer: `repo` may read `d` (`blob.bytes`, when set,
  /// are its verified bytes), as read after the blob generation was
  /// `generation` (take it before the read). Bytes of larger blobs than
  /// kMaxInlineBytes are not kept.
  void insert(const std::string& repo, const Digest& d, HotBlob blob, uint64_t generation);
  /// Drops an entry the caller found wrong (the file could not be opened).
  void forget(const std::string& repo, const Digest& d);

  size_t entries() const { return index_.size(); }
  uint64_t bytes() const { return bytes_; }
  const HotBlobStats& stats() const { return stats_; }

 private:
  struct Entry {
    std::string key;
    HotBlob blob;
    uint64_t generation = 0;
  };
  using Lru = std::list<Entry>;  ///< most recently used first
  static std::string key_of(const std::string& repo, const Digest& d);
  void erase(Lru::iterator it);

  const storesvc::StoreService* store_;
  size_t max_entries_;
  uint64_t max_bytes_;
  uint64_t bytes_ = 0;  ///< kept blob bytes, all entries
  Lru lru_;
  std::unordered_map<std::string, Lru::iterator> index_;
  HotBlobStats stats_;
};

}  // namespace outpost::cache
