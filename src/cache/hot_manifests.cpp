#include "cache/hot_manifests.hpp"

#include "store/store.hpp"
#include "storesvc/store_service.hpp"

namespace outpost::cache {

namespace {
// '@' cannot appear in a repository name, so the key is unambiguous.
std::string content_key(const std::string& repo, const std::string& digest) {
  std::string key;
  key.reserve(repo.size() + 1 + digest.size());
  key += repo;
  key += '@';
  key += digest;
  return key;
}

// glibc malloc: an 8-byte header, 16-byte granularity, 32 bytes at least.
constexpr uint64_t malloc_chunk(uint64_t n) {
  const uint64_t c = (n + 8 + 15) & ~uint64_t{15};
  return c < 32 ? 32 : c;
}

// What a string holds on the heap (none within libstdc++'s 15-byte inline buffer).
uint64_t heap_bytes(const std::string& s) { return s.size() <= 15 ? 0 : malloc_chunk(s.size() + 1); }
uint64_t heap_bytes(const std::optional<std::string>& s) { return s ? heap_bytes(*s) : 0; }

// An unordered_map node: the value, the next pointer and the cached hash;
// plus its bucket pointer at load factor 1.
template <typename Value>
constexpr uint64_t map_node_cost() {
  return malloc_chunk(sizeof(Value) + 2 * sizeof(void*)) + sizeof(void*);
}

// The table is kept at most 3/4 full, so a slot costs up to 8/3 positions
// of 4 bytes; 8 is the average over a doubling.
constexpr uint64_t kTableBytesPerSlot = 8;

struct Read {
  HotManifest value;
  uint64_t generation = 0;
};
}  // namespace

HotManifests::HotManifests(storesvc::StoreService* store, uint64_t max_bytes)
    : store_(store), max_bytes_(max_bytes), max_entry_bytes_(max_bytes / 8) {}

uint64_t HotManifests::slot_cost(const std::string& reference) {
  static_assert(sizeof(Slot) <= 64, "a slot is meant to fit a cache line");
  return sizeof(Slot) + heap_bytes(reference) + kTableBytesPerSlot;
}

uint64_t HotManifests::repo_cost(const std::string& name) {
  return map_node_cost<Repos::value_type>() + heap_bytes(name) + sizeof(Repos::value_type*);
}

uint64_t HotManifests::content_cost(const std::string& key, const HotManifest& value) {
  const store::ManifestInfo& i = value.info;
  // The bytes live in a make_shared block: control block and string header.
  const uint64_t bytes = value.bytes ? malloc_chunk(2 * sizeof(void*) + sizeof(std::string)) + heap_bytes(*value.bytes) : 0;
  return map_node_cost<Contents::value_type>() + heap_bytes(key) + bytes + heap_bytes(i.digest.str()) +
         heap_bytes(i.media_type) + (i.subject ? heap_bytes(i.subject->str()) : 0) + heap_bytes(i.artifact_type) +
         heap_bytes(i.annotations);
}

uint32_t HotManifests::hash_of(uint32_t repo, std::string_view reference) {
  uint64_t h = std::hash<std::string_view>{}(reference) ^ ((uint64_t{repo} + 1) * 0x9E3779B97F4A7C15ull);
  h ^= h >> 29;
  return static_cast<uint32_t>(h ^ (h >> 32));
}

uint32_t HotManifests::find(uint32_t repo, std::string_view reference, uint32_t hash) const {
  if (table_.empty()) return kNone;
  const size_t mask = table_.size() - 1;
  // Bounded: the table is never more than 3/4 full, so an empty position ends the probe.
  for (size_t i = hash & mask;; i = (i + 1) & mask) {
    const uint32_t at = table_[i];
    if (at == 0) return kNone;
    const Slot& s = slots_[at - 1];
    if (s.hash == hash && s.repo == repo && s.reference == reference) return at - 1;
  }
}

uint32_t HotManifests::find_current(const std::string& repo, const std::string& reference) const {
  auto r = repos_.find(repo);
  if (r == repos_.end()) return kNone;
  const uint32_t id = r->second.id;
  const uint32_t slot = find(id, reference, hash_of(id, reference));
  if (slot == kNone || slots_[slot].generation != store_->manifest_generation()) return kNone;
  return slot;
}

void HotManifests::get(const std::string& repo, const std::string& reference, bool want_bytes, Done done) {
  if (auto r = repos_.find(repo); r != repos_.end()) {
    const uint32_t id = r->second.id;
    if (const uint32_t slot = find(id, reference, hash_of(id, reference)); slot != kNone) {
      if (slots_[slot].generation == store_->manifest_generation()) {
        stats_.hits++;
        touch(slot);
        return done(slots_[slot].content->second.value);
      }
      erase(slot);  // stale: a write committed since it was read
    }
  }
  stats_.pool_reads++;
  const uint64_t entry_limit = max_entry_bytes_;
  store_->run<Read>(
      [repo, reference, want_bytes, entry_limit](store::Store& st) -> Result<Read> {
        // The generation is taken before reading: a write committing during
        // the read bumps it, so what is read here is never served as current
        // after that write.
        Read r;
        r.generation = st.manifest_generation();
        auto info = st.resolve_manifest(repo, reference);
        if (!info) return std::move(info).error();
        r.value.info = std::move(*info);
        if (want_bytes || r.value.info.size <= entry_limit) {
          auto bytes = st.read_manifest(repo, r.value.info.digest);
          if (!bytes) return std::move(bytes).error();
          r.value.bytes = std::make_shared<const std::string>(std::move(*bytes));
        }
        return r;
      },
      [this, repo, reference, done = std::move(done)](Result<Read> r) mutable {
        if (!r) return done(std::move(r).error());
        if (r->value.bytes && r->value.bytes->size() <= max_entry_bytes_) insert(repo, reference, r->value, r->generation);
        done(std::move(r->value));
      });
}

void HotManifests::insert(const std::string& repo, const std::string& reference, const HotManifest& value,
                          uint64_t generation) {
  // A read that a write overtook is stale already; it must not replace the
  // content a current read left (the same digest with another origin).
  if (generation != store_->manifest_generation()) return;
  std::string ckey = content_key(repo, value.info.digest.str());
  if (slot_cost(reference) + repo_cost(repo) + content_cost(ckey, value) > max_bytes_) return;

  Repos::value_type& r = intern(repo);
  const uint32_t hash = hash_of(r.second.id, reference);
  if (const uint32_t old = find(r.second.id, reference, hash); old != kNone) {
    // Another read of it finished first: this one is as new. Keep the repo
    // interned across the erase.
    r.second.slots++;
    erase(old);
    r.second.slots--;
  }

  auto [content, added] = contents_.try_emplace(std::move(ckey));
  if (!added) bytes_ -= content->second.cost;
  content->second.value = value;  // the newest read: origin and times may have changed
  content->second.cost = content_cost(content->first, value);
  content->second.refs++;  // before evicting: this content is not a candidate
  bytes_ += content->second.cost;

  const uint32_t slot = new_slot();
  Slot& s = slots_[slot];
  s.reference = reference;
  s.content = &*content;
  s.generation = generation;
  s.repo = r.second.id;
  s.hash = hash;
  r.second.slots++;
  table_add(slot);
  link_newest(slot);
  bytes_ += slot_cost(s.reference);

  while (bytes_ > max_bytes_ && oldest_ != kNone && oldest_ != slot) {
    erase(oldest_);
    stats_.evictions++;
  }
}

HotManifests::Repos::value_type& HotManifests::intern(const std::string& repo) {
  auto [it, added] = repos_.try_emplace(repo);
  if (added) {
    if (!free_repo_ids_.empty()) {
      it->second.id = free_repo_ids_.back();
      free_repo_ids_.pop_back();
      repo_by_id_[it->second.id] = &*it;
    } else {
      it->second.id = static_cast<uint32_t>(repo_by_id_.size());
      repo_by_id_.push_back(&*it);
    }
    bytes_ += repo_cost(repo);
  }
  return *it;
}

uint32_t HotManifests::new_slot() {
  if (free_slots_ != kNone) {
    const uint32_t slot = free_slots_;
    free_slots_ = slots_[slot].older;
    return slot;
  }
  slots_.emplace_back();
  return static_cast<uint32_t>(slots_.size() - 1);
}

void HotManifests::table_add(uint32_t slot) {
  if ((used_ + 1) * 4 > table_.size() * 3) {
    // Double and place every slot again from its stored hash.
    std::vector<uint32_t> old = std::move(table_);
    table_.assign(old.empty() ? 16 : old.size() * 2, 0);
    const size_t mask = table_.size() - 1;
    for (uint32_t at : old) {
      if (at == 0) continue;
      size_t i = slots_[at - 1].hash & mask;
      while (table_[i] != 0) i = (i + 1) & mask;
      table_[i] = at;
    }
  }
  const size_t mask = table_.size() - 1;
  size_t i = slots_[slot].hash & mask;
  while (table_[i] != 0) i = (i + 1) & mask;
  table_[i] = slot + 1;
  used_++;
}

void HotManifests::table_remove(uint32_t slot) {
  const size_t mask = table_.size() - 1;
  size_t i = slots_[slot].hash & mask;
  while (table_[i] != slot + 1) i = (i + 1) & mask;  // it is there: bounded by the table
  // Backward shift: pull later entries of the probe run into the hole, so
  // lookups never need tombstones.
  for (size_t j = (i + 1) & mask; table_[j] != 0; j = (j + 1) & mask) {
    const size_t home = slots_[table_[j] - 1].hash & mask;
    const bool stays = i <= j ? (i < home && home <= j) : (i < home || home <= j);
    if (!stays) {
      table_[i] = table_[j];
      i = j;
    }
  }
  table_[i] = 0;
  used_--;
}

void HotManifests::erase(uint32_t slot) {
  Slot& s = slots_[slot];
  unlink(slot);
  table_remove(slot);
  bytes_ -= slot_cost(s.reference);
  if (--s.content->second.refs == 0) {
    bytes_ -= s.content->second.cost;
    contents_.erase(contents_.find(s.content->first));
  }
  Repos::value_type* r = repo_by_id_[s.repo];
  if (--r->second.slots == 0) {
    bytes_ -= repo_cost(r->first);
    repo_by_id_[s.repo] = nullptr;
    free_repo_ids_.push_back(s.repo);
    repos_.erase(repos_.find(r->first));
  }
  s = Slot{};  // frees the reference's heap buffer
  s.older = free_slots_;
  free_slots_ = slot;
}

void HotManifests::touch(uint32_t slot) {
  if (slot == newest_) return;
  unlink(slot);
  link_newest(slot);
}

void HotManifests::unlink(uint32_t slot) {
  Slot& s = slots_[slot];
  (s.newer != kNone ? slots_[s.newer].older : newest_) = s.older;
  (s.older != kNone ? slots_[s.older].newer : oldest_) = s.newer;
  s.newer = s.older = kNone;
}

void HotManifests::link_newest(uint32_t slot) {
  Slot& s = slots_[slot];
  s.older = newest_;
  s.newer = kNone;
  (newest_ != kNone ? slots_[newest_].newer : oldest_) = slot;
  newest_ = slot;
}

}  // namespace outpost::cache
