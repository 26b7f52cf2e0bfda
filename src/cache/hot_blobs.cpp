#include "cache/hot_blobs.hpp"

#include "storesvc/store_service.hpp"

namespace outpost::cache {

HotBlobs::HotBlobs(const storesvc::StoreService* store, size_t max_entries, uint64_t max_bytes)
    : store_(store), max_entries_(max_entries == 0 ? 1 : max_entries), max_bytes_(max_bytes) {}

std::string HotBlobs::key_of(const std::string& repo, const Digest& d) {
  // '@' cannot appear in a repository name, so the key is unambiguous.
  std::string k;
  const std::string ds = d.str();
  k.reserve(repo.size() + 1 + ds.size());
  k += repo;
  k += '@';
  k += ds;
  return k;
}

std::optional<HotBlob> HotBlobs::find(const std::string& repo, const Digest& d) {
  auto it = index_.find(key_of(repo, d));
  if (it == index_.end()) {
    stats_.misses++;
    return std::nullopt;
  }
  if (it->second->generation != store_->blob_generation()) {
    erase(it->second);  // something that could revoke it committed since
    stats_.misses++;
    return std::nullopt;
  }
  stats_.hits++;
  lru_.splice(lru_.begin(), lru_, it->second);
  return it->second->blob;
}

void HotBlobs::insert(const std::string& repo, const Digest& d, HotBlob blob, uint64_t generation) {
  // Already stale: a revoking write committed during the read.
  if (generation != store_->blob_generation()) return;
  if (blob.bytes && (blob.bytes->size() != blob.size || blob.size > kMaxInlineBytes || blob.size > max_bytes_))
    blob.bytes.reset();
  std::string key = key_of(repo, d);
  if (auto it = index_.find(key); it != index_.end()) erase(it->second);
  const uint64_t cost = blob.bytes ? blob.bytes->size() : 0;
  while ((index_.size() >= max_entries_ || bytes_ + cost > max_bytes_) && !lru_.empty()) {
    erase(std::prev(lru_.end()));
    stats_.evictions++;
  }
  bytes_ += cost;
  lru_.push_front(Entry{key, std::move(blob), generation});
  index_.emplace(std::move(key), lru_.begin());
}

void HotBlobs::forget(const std::string& repo, const Digest& d) {
  if (auto it = index_.find(key_of(repo, d)); it != index_.end()) erase(it->second);
}

void HotBlobs::erase(Lru::iterator it) {
  if (it->blob.bytes) bytes_ -= it->blob.bytes->size();
  index_.erase(it->key);
  lru_.erase(it);
}

}  // namespace outpost::cache
