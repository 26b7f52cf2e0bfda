#include "cache/hot_manifests.hpp"

#include "store/store.hpp"
#include "storesvc/store_service.hpp"

namespace outpost::cache {

namespace {
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

struct Read {
  HotManifest value;
  uint64_t generation = 0;
};
}  // namespace

HotManifests::HotManifests(storesvc::StoreService* store, uint64_t max_bytes)
    : store_(store), max_bytes_(max_bytes), max_entry_bytes_(max_bytes / 8) {}

uint64_t HotManifests::slot_cost(const std::string& key) {
  return map_node_cost<std::pair<const std::string, Slot>>() + heap_bytes(key);
}

uint64_t HotManifests::content_cost(const std::string& key, const HotManifest& value) {
  const store::ManifestInfo& i = value.info;
  // The bytes live in a make_shared block: control block and string header.
  const uint64_t bytes = value.bytes ? malloc_chunk(2 * sizeof(void*) + sizeof(std::string)) + heap_bytes(*value.bytes) : 0;
  return map_node_cost<std::pair<const std::string, Content>>() + heap_bytes(key) + bytes + heap_bytes(i.digest.str()) +
         heap_bytes(i.media_type) + (i.subject ? heap_bytes(i.subject->str()) : 0) + heap_bytes(i.artifact_type) +
         heap_bytes(i.annotations);
}

HotManifests::Slot* HotManifests::find_current(const std::string& repo, const std::string& reference) {
  thread_local std::string key;
  memo_key_into(repo, reference, &key);
  auto it = slots_.find(key);
  if (it == slots_.end() || it->second.generation != store_->manifest_generation()) return nullptr;
  return &it->second;
}

void HotManifests::get(const std::string& repo, const std::string& reference, bool want_bytes, Done done) {
  std::string key = memo_key(repo, reference);
  if (auto it = slots_.find(key); it != slots_.end()) {
    Slot* slot = &it->second;
    if (slot->generation == store_->manifest_generation()) {
      stats_.hits++;
      touch(slot);
      return done(slot->content->second.value);
    }
    erase(slot);  // stale: a write committed since it was read
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
      [this, repo, key = std::move(key), done = std::move(done)](Result<Read> r) mutable {
        if (!r) return done(std::move(r).error());
        if (r->value.bytes && r->value.bytes->size() <= max_entry_bytes_)
          insert(repo, std::move(key), r->value, r->generation);
        done(std::move(r->value));
      });
}

void HotManifests::insert(const std::string& repo, std::string key, const HotManifest& value, uint64_t generation) {
  // A read that a write overtook is stale already; it must not replace the
  // content a current read left (the same digest with another origin).
  if (generation != store_->manifest_generation()) return;
  if (auto it = slots_.find(key); it != slots_.end()) erase(&it->second);  // another read of it finished first
  const uint64_t cost_of_slot = slot_cost(key);
  std::string content_key = memo_key(repo, value.info.digest.str());
  if (cost_of_slot + content_cost(content_key, value) > max_bytes_) return;

  auto [content, added] = contents_.try_emplace(std::move(content_key));
  if (!added) bytes_ -= content->second.cost;
  content->second.value = value;  // the newest read: origin and times may have changed
  content->second.cost = content_cost(content->first, value);
  content->second.refs++;  // before evicting: this content is not a candidate
  bytes_ += content->second.cost;

  auto [it, fresh] = slots_.try_emplace(std::move(key));
  (void)fresh;  // erased above if it was there
  Slot* slot = &it->second;
  slot->content = &*content;
  slot->generation = generation;
  slot->key = &it->first;
  link_newest(slot);
  bytes_ += cost_of_slot;

  while (bytes_ > max_bytes_ && oldest_ != nullptr && oldest_ != slot) {
    erase(oldest_);
    stats_.evictions++;
  }
}

void HotManifests::erase(Slot* slot) {
  unlink(slot);
  Contents::value_type* content = slot->content;
  if (--content->second.refs == 0) {
    bytes_ -= content->second.cost;
    contents_.erase(contents_.find(content->first));
  }
  auto it = slots_.find(*slot->key);
  bytes_ -= slot_cost(it->first);
  slots_.erase(it);
}

void HotManifests::touch(Slot* slot) {
  if (slot == newest_) return;
  unlink(slot);
  link_newest(slot);
}

void HotManifests::unlink(Slot* slot) {
  (slot->newer ? slot->newer->older : newest_) = slot->older;
  (slot->older ? slot->older->newer : oldest_) = slot->newer;
  slot->newer = slot->older = nullptr;
}

void HotManifests::link_newest(Slot* slot) {
  slot->older = newest_;
  slot->newer = nullptr;
  (newest_ ? newest_->newer : oldest_) = slot;
  newest_ = slot;
}

}  // namespace outpost::cache
