// HotManifests: a bounded, loop-thread-owned memo of manifest reads
// (repository, reference) -> info + bytes, so a GET/HEAD of a hot tag is
// answered on the loop thread without a thread-pool round trip, SQLite or
// a file read (issue #14).
//
// Layout: a slot per (repository, reference) points at a content entry per
// (repository, digest), shared by every tag of that manifest. Slots are 64
// bytes in a deque, found through an open-addressing table of slot numbers
// and linked into an LRU list by number; the repository is an interned id,
// so a short tag needs no heap allocation. A store with 100,000 tags on a
// few hundred manifests takes about 8 MB (issue #14); a node-based map took
// about 170 bytes per tag, and before that every tag held its own copy of
// the manifest (about 700 bytes).
//
// Coherence: an entry carries the store's manifest generation read BEFORE
// the pool read that produced it, and is served only while the store's
// generation still equals it. Every write that can change what a reference
// resolves to bumps the generation after its commit, so a write that
// commits during the read makes the entry stale at once: never served stale.
#pragma once
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

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
  /// 16 MiB by default: about 200,000 short tags, or a few thousand distinct
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
    const uint32_t slot = find_current(repo, reference);
    if (slot == kNone || !accept(slots_[slot].content->second.value)) return nullptr;
    stats_.hits++;
    touch(slot);
    return &slots_[slot].content->second.value;
  }

  /// Bytes charged against the bound: keys, manifests and bookkeeping.
  uint64_t bytes() const { return bytes_; }
  /// Memoized references (tags and digests).
  size_t entries() const { return used_; }
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
  /// An interned repository name: slots carry its id, not the name.
  struct Repo {
    uint32_t id = 0;
    uint32_t slots = 0;  ///< freed with the last of them
  };
  using Repos = std::unordered_map<std::string, Repo>;
  static constexpr uint32_t kNone = UINT32_MAX;
  /// One reference of one repository. A free slot has repo == kNone and
  /// `older` links the free list.
  struct Slot {
    std::string reference;
    Contents::value_type* content = nullptr;  ///< node pointers survive a rehash; iterators do not
    uint64_t generation = 0;
    uint32_t repo = kNone;
    uint32_t hash = 0;
    uint32_t newer = kNone;  ///< LRU neighbours, by slot number
    uint32_t older = kNone;
  };

  /// The slot number for the reference if it is current (no write committed
  /// since it was read), else kNone; no allocation.
  uint32_t find_current(const std::string& repo, const std::string& reference) const;
  /// The slot number for (repo id, reference), current or not, else kNone.
  uint32_t find(uint32_t repo, std::string_view reference, uint32_t hash) const;
  static uint32_t hash_of(uint32_t repo, std::string_view reference);

  /// What a slot, a repository or a content entry costs against the bound:
  /// its storage and heap-allocated strings, as the allocator hands them out.
  static uint64_t slot_cost(const std::string& reference);
  static uint64_t repo_cost(const std::string& name);
  static uint64_t content_cost(const std::string& key, const HotManifest& value);

  void insert(const std::string& repo, const std::string& reference, const HotManifest& value, uint64_t generation);
  Repos::value_type& intern(const std::string& repo);
  uint32_t new_slot();
  void table_add(uint32_t slot);
  void table_remove(uint32_t slot);
  void erase(uint32_t slot);
  void touch(uint32_t slot);  ///< makes it the most recently used
  void unlink(uint32_t slot);
  void link_newest(uint32_t slot);

  storesvc::StoreService* store_;
  uint64_t max_bytes_;
  uint64_t max_entry_bytes_;  ///< larger manifests are never memoized
  std::deque<Slot> slots_;       ///< never moves an element; freed slots are reused
  uint32_t free_slots_ = kNone;  ///< head of the free list
  std::vector<uint32_t> table_;  ///< slot number + 1 per position, 0 = empty; linear probing
  size_t used_ = 0;              ///< slots in the table
  uint32_t newest_ = kNone;
  uint32_t oldest_ = kNone;
  Repos repos_;
  std::vector<Repos::value_type*> repo_by_id_;  ///< null: a free id
  std::vector<uint32_t> free_repo_ids_;
  Contents contents_;
  uint64_t bytes_ = 0;
  HotManifestStats stats_;
};

}  // namespace outpost::cache
