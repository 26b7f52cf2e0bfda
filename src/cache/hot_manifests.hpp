// HotManifests: a bounded, loop-thread-owned memo of manifest reads
// (repository, reference) -> info + bytes, so a GET/HEAD of a hot tag is
// answered on the loop thread without a thread-pool round trip, SQLite or
// a file read (issue #14).
//
// Coherence: an entry carries the store's manifest generation read BEFORE
// the pool read that produced it, and is served only while the store's
// generation still equals it. Every write that can change what a reference
// resolves to bumps the generation after its commit, so a write that
// commits during the read makes the entry stale at once: never served stale.
#pragma once
#include <cstdint>
#include <functional>
#include <list>
#include <memory>
#include <string>
#include <unordered_map>

#include "base/result.hpp"
#include "store/types.hpp"

namespace outpost::storesvc { class StoreService; }

namespace outpost::cache {

struct HotManifest {
  store::ManifestInfo info;
  /// Null only for an answer without bytes (a HEAD of a manifest too large
  /// to memoize).
  std::shared_ptr<const std::string> bytes;
};

struct HotManifestStats {
  uint64_t hits = 0;
  uint64_t pool_reads = 0;  ///< misses answered by a store job
  uint64_t evictions = 0;
};

class HotManifests {
 public:
  /// 16 MiB by default: a few thousand typical manifests.
  static constexpr uint64_t kDefaultMaxBytes = 16ull * 1024 * 1024;

  /// `store` must outlive this object and every get() in flight.
  explicit HotManifests(storesvc::StoreService* store, uint64_t max_bytes = kDefaultMaxBytes);
  HotManifests(const HotManifests&) = delete;
  HotManifests& operator=(const HotManifests&) = delete;

  using Done = std::function<void(Result<HotManifest>)>;
  /// Resolves `reference` (tag or digest string) in `repo`. A current entry
  /// answers inline (done runs before get returns); otherwise a pool job
  /// reads the store and done runs later on the loop thread. Bytes are read
  /// when `want_bytes` or when the manifest is small enough to memoize.
  void get(const std::string& repo, const std::string& reference, bool want_bytes, Done done);
  /// The current entry for `reference` in `repo`, without a callback or a
  /// copy (the hot path of a cached manifest GET), when `accept(entry)`
  /// says it may be served as it is; counted as a hit then. Null when there
  /// is none or it was not accepted (then call get()). The pointer is valid
  /// until the next call of any method of this object.
  template <typename Accept>
  const HotManifest* peek(const std::string& repo, const std::string& reference, Accept&& accept) {
    auto it = find_current(repo, reference);
    if (it == lru_.end() || !accept(it->value)) return nullptr;
    stats_.hits++;
    lru_.splice(lru_.begin(), lru_, it);  // most recently used
    return &it->value;
  }

  uint64_t bytes() const { return bytes_; }
  size_t entries() const { return index_.size(); }
  const HotManifestStats& stats() const { return stats_; }

 private:
  struct Entry {
    std::string key;
    HotManifest value;
    uint64_t generation = 0;
    uint64_t cost = 0;
  };
  using Lru = std::list<Entry>;  ///< most recently used first

  /// The entry for the key if it is current (no write committed since it
  /// was read), else lru_.end(); no allocation once the thread's key
  /// buffer has grown.
  Lru::iterator find_current(const std::string& repo, const std::string& reference);

  void insert(std::string key, const HotManifest& value, uint64_t generation);
  void erase(Lru::iterator it);

  storesvc::StoreService* store_;
  uint64_t max_bytes_;
  uint64_t max_entry_bytes_;  ///< larger manifests are never memoized
  Lru lru_;
  std::unordered_map<std::string, Lru::iterator> index_;
  uint64_t bytes_ = 0;
  HotManifestStats stats_;
};

}  // namespace outpost::cache
