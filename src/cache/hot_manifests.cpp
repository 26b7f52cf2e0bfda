#include "cache/hot_manifests.hpp"

#include "store/store.hpp"
#include "storesvc/store_service.hpp"

namespace outpost::cache {

namespace {
// Bookkeeping per entry beyond the bytes (list node, map slot, info strings):
// an estimate, so that many tiny entries still count against the bound.
constexpr uint64_t kEntryOverhead = 256;

// '@' cannot appear in a repository name, so the key is unambiguous.
void memo_key_into(const std::string& repo, const std::string& reference, std::string* out) {
  out->assign(repo);
  *out += '@';
  *out += reference;
}

std::string memo_key(const std::string& repo, const std::string& reference) {
  std::string key;
  memo_key_into(repo, reference, &key);
  return key;
}

struct Read {
  HotManifest value;
  uint64_t generation = 0;
};
}  // namespace

HotManifests::HotManifests(storesvc::StoreService* store, uint64_t max_bytes)
    : store_(store), max_bytes_(max_bytes), max_entry_bytes_(max_bytes / 8) {}

HotManifests::Lru::iterator HotManifests::find_current(const std::string& repo, const std::string& reference) {
  thread_local std::string key;
  memo_key_into(repo, reference, &key);
  auto it = index_.find(key);
  if (it == index_.end() || it->second->generation != store_->manifest_generation()) return lru_.end();
  return it->second;
}

void HotManifests::get(const std::string& repo, const std::string& reference, bool want_bytes, Done done) {
  std::string key = memo_key(repo, reference);
  if (auto it = index_.find(key); it != index_.end()) {
    Entry& e = *it->second;
    if (e.generation == store_->manifest_generation()) {
      stats_.hits++;
      lru_.splice(lru_.begin(), lru_, it->second);  // most recently used
      return done(e.value);
    }
    erase(it->second);  // stale: a write committed since it was read
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
      [this, key = std::move(key), done = std::move(done)](Result<Read> r) mutable {
        if (!r) return done(std::move(r).error());
        if (r->value.bytes && r->value.bytes->size() <= max_entry_bytes_)
          insert(std::move(key), r->value, r->generation);
        done(std::move(r->value));
      });
}

void HotManifests::insert(std::string key, const HotManifest& value, uint64_t generation) {
  if (auto it = index_.find(key); it != index_.end()) {
    // Another read of the same key finished first: keep the newer generation.
    if (it->second->generation > generation) return;
    erase(it->second);
  }
  const auto& i = value.info;
  const uint64_t cost = key.size() + value.bytes->size() + i.media_type.size() +
                        (i.artifact_type ? i.artifact_type->size() : 0) + (i.annotations ? i.annotations->size() : 0) +
                        kEntryOverhead;
  if (cost > max_bytes_) return;
  while (bytes_ + cost > max_bytes_ && !lru_.empty()) {
    erase(std::prev(lru_.end()));
    stats_.evictions++;
  }
  lru_.push_front(Entry{key, value, generation, cost});
  index_.emplace(std::move(key), lru_.begin());
  bytes_ += cost;
}

void HotManifests::erase(Lru::iterator it) {
  bytes_ -= it->cost;
  index_.erase(it->key);
  lru_.erase(it);
}

}  // namespace outpost::cache
