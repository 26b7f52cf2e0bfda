// HotManifests: a bounded, loop-thread-owned memo of manifest reads
// (repository, reference) -> info + bytes, so a GET/HEAD of a hot tag is
// answered on the loop thread without a thread-pool round trip, SQLite or
// a file read (issue #14).
//
// Layout: a slot per (repository, reference) points at a content entry per
// (repository, digest), shared by every tag of that manifest. A slot costs
// about 100 bytes plus its key, so a store with 100,000 tags on a few
// hundred manifests fits in the default bound; before, every tag held its
// own copy of the manifest (about 700 bytes per tag).
//
// Coherence: an entry carries the store's manifest generation read BEFORE
// the pool read that produced it, and is served only while the store's
// generation still equals it. Every write that can change what a reference
// resolves to bumps the generation after its commit, so a write that
// commits during the read makes the entry stale at once: never served stale.
#pragma once
#include <cstdint>
#include <functional>
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
  /// 16 MiB by default: about 100,000 tags, or a few thousand distinct
  /// typical manifests.
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
    Slot* slot = find_current(repo, reference);
    if (slot == nullptr || !accept(slot->content->second.value)) return nullptr;
    stats_.hits++;
    touch(slot);
    return &slot->content->second.value;
  }

  /// Bytes charged against the bound: keys, manifests and bookkeeping.
  uint64_t bytes() const { return bytes_; }
  /// Memoized references (tags and digests).
  size_t entries() const { return slots_.size(); }
  /// Distinct manifests they point at.
  size_t contents() const { return contents_.size(); }
  const HotManifestStats& stats() const { return stats_; }

 private:
  /// One manifest of one repository (key "repo@digest"), shared by every
  /// slot that resolves to it; freed with the last of them.
  struct Content {
    HotManifest value;
    uint64_t cost = 0;
    uint32_t refs = 0;
  };
  using Contents = std::unordered_map<std::string, Content>;
  /// One reference (key "repo@reference"), on an intrusive LRU list: a
  /// std::list node per slot would cost as much as the slot itself.
  struct Slot {
    Contents::value_type* content = nullptr;  ///< node pointers survive a rehash; iterators do not
    uint64_t generation = 0;
    const std::string* key = nullptr;  ///< the map node's own key
    Slot* newer = nullptr;
    Slot* older = nullptr;
  };

  /// The slot for the key if it is current (no write committed since it
  /// was read), else null; no allocation once the thread's key buffer has
  /// grown.
  Slot* find_current(const std::string& repo, const std::string& reference);

  /// What a slot or a content entry costs against the bound: its map node,
  /// bucket and heap-allocated strings, as the allocator hands them out.
  static uint64_t slot_cost(const std::string& key);
  static uint64_t content_cost(const std::string& key, const HotManifest& value);

  void insert(const std::string& repo, std::string key, const HotManifest& value, uint64_t generation);
  void erase(Slot* slot);
  void touch(Slot* slot);  ///< makes it the most recently used
  void unlink(Slot* slot);
  void link_newest(Slot* slot);

  storesvc::StoreService* store_;
  uint64_t max_bytes_;
  uint64_t max_entry_bytes_;  ///< larger manifests are never memoized
  std::unordered_map<std::string, Slot> slots_;
  Contents contents_;
  Slot* newest_ = nullptr;
  Slot* oldest_ = nullptr;
  uint64_t bytes_ = 0;
  HotManifestStats stats_;
};

}  // namespace outpost::cache
