// HotBlobs: a bounded, loop-thread-owned memo of "repository may read blob
// digest, which has size N" (issue #14), so a GET/HEAD of a blob already
// seen is answered on the loop: no thread-pool round trip, no SQLite. The
// bytes are not kept; the API opens the verified file itself.
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

class HotBlobs {
 public:
  /// About 200 bytes each: 4096 entries stay under 1 MiB.
  static constexpr size_t kDefaultMaxEntries = 4096;

  /// `store` must outlive this object.
  explicit HotBlobs(const storesvc::StoreService* store, size_t max_entries = kDefaultMaxEntries);
  HotBlobs(const HotBlobs&) = delete;
  HotBlobs& operator=(const HotBlobs&) = delete;

  /// The size of `d` when `repo` may read it and nothing that could revoke
  /// that happened since it was learnt; nullopt: ask the store.
  std::optional<uint64_t> find(const std::string& repo, const Digest& d);
  /// Records a store answer: `repo` may read `d` of `size` bytes, as read
  /// after the blob generation was `generation` (take it before the read).
  void insert(const std::string& repo, const Digest& d, uint64_t size, uint64_t generation);
  /// Drops an entry the caller found wrong (the file could not be opened).
  void forget(const std::string& repo, const Digest& d);

  size_t entries() const { return index_.size(); }
  const HotBlobStats& stats() const { return stats_; }

 private:
  struct Entry {
    std::string key;
    uint64_t size = 0;
    uint64_t generation = 0;
  };
  using Lru = std::list<Entry>;  ///< most recently used first
  static std::string key_of(const std::string& repo, const Digest& d);
  void erase(Lru::iterator it);

  const storesvc::StoreService* store_;
  size_t max_entries_;
  Lru lru_;
  std::unordered_map<std::string, Lru::iterator> index_;
  HotBlobStats stats_;
};

}  // namespace outpost::cache
