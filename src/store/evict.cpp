// Eviction: see evict.hpp. Order of a pass: cached manifests least recently
// used first (each takes its tags and the cached links only it named), then
// cached blob links no manifest names; after each step the blobs left
// unreferenced are deleted, row first (the GC rule, re-checked in one
// statement under the exclusive publish lock), file second.
#include "store/evict.hpp"

#include <sys/statvfs.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <limits>
#include <mutex>

#include "base/log.hpp"
#include "base/size.hpp"
#include "store/try.hpp"

namespace outpost::store {

Result<SizeLimit> parse_size_limit(std::string_view s) {
  SizeLimit l;
  if (s.empty()) return l;
  if (s.back() == '%') {
    std::string_view num = s.substr(0, s.size() - 1);
    double v = 0;
    auto [p, ec] = std::from_chars(num.data(), num.data() + num.size(), v);
    if (ec != std::errc() || p != num.data() + num.size() || !(v > 0) || v > 100)
      return Error(Errc::ConfigInvalid, "\"" + std::string(s) + "\" is not a percentage in (0, 100]");
    l.percent = v;
    return l;
  }
  auto b = parse_size(s);
  if (!b) return Error(Errc::ConfigInvalid, "\"" + std::string(s) + "\": " + b.error().detail);
  l.bytes = *b;
  return l;
}

Result<FsSpace> fs_space(const std::string& path) {
  struct statvfs v {};
  if (::statvfs(path.c_str(), &v) != 0) return fs::errno_error("statvfs", path, errno);
  return FsSpace{static_cast<uint64_t>(v.f_blocks) * v.f_frsize, static_cast<uint64_t>(v.f_bavail) * v.f_frsize};
}

Result<uint64_t> bytes_over(const GcTargets& t, const EvictOptions& o, uint64_t* used, uint64_t* quota) {
  STORE_ASSIGN(auto usage, t.meta.storage_usage(false));  // the total is all the limits need
  *used = usage.total;
  *quota = 0;
  uint64_t need = 0;
  if (!o.max_size.set() && !o.min_free.set() && !o.free_at_least.set()) return need;
  STORE_ASSIGN(auto space, fs_space(t.layout.root()));
  if (o.max_size.set()) {
    *quota = o.max_size.resolve(space.total);
    if (usage.total > *quota) need = usage.total - *quota;
  }
  if (o.min_free.set()) {
    const uint64_t want = o.min_free.resolve(space.total);
    if (space.avail < want) need = std::max(need, want - space.avail);
  }
  if (o.free_at_least.set()) need = std::max(need, std::min(o.free_at_least.resolve(space.total), o.free_at_least_max));
  return need;
}

namespace {

/// Deletes blob `d` if nothing references it any more; adds its size.
Status drop_if_unreferenced(const GcTargets& t, const Digest& d, EvictReport& rep) {
  STORE_ASSIGN(auto size, t.meta.blob_size(d));
  if (!size) return {};
  // Exclusive: no publish is between its rename and its row for `d`, so a
  // fill re-creating this blob right now either recorded its row first
  // (the delete below then finds it referenced) or renames after us.
  std::unique_lock pub(t.publish_mu);
  STORE_ASSIGN(bool deleted, t.meta.gc_delete_blob(d, std::numeric_limits<int64_t>::max()));
  if (!deleted) return {};
  auto rm = t.blobs.remove(d);
  if (!rm) log::warn("evict: cannot unlink blob", " digest=" + d.str() + " err=" + log::quote(rm.error().message()));
  ++rep.blobs_removed;
  rep.freed += *size;
  return {};
}

Status evict_manifests(const GcTargets& t, const EvictOptions& o, int64_t cutoff, EvictReport& rep) {
  int64_t after_lru = std::numeric_limits<int64_t>::min();
  int64_t after_id = 0;
  while (rep.freed < rep.need) {
    STORE_ASSIGN(auto batch, t.meta.evict_manifest_candidates(cutoff, after_lru, after_id, o.batch));
    if (batch.empty()) return {};
    for (const auto& c : batch) {
      after_lru = c.lru_ms;
      after_id = c.id;
      if (rep.freed >= rep.need) return {};
      STORE_ASSIGN(bool pinned, t.meta.is_pinned(c.repo, c.digest));
      if (pinned) continue;
      STORE_ASSIGN(auto freed_digests, t.meta.evict_manifest(c));
      if (!freed_digests) continue;
      ++rep.manifests_removed;
      for (const auto& d : *freed_digests) OUTPOST_TRY(drop_if_unreferenced(t, d, rep));
    }
  }
  return {};
}

Status evict_links(const GcTargets& t, const EvictOptions& o, int64_t cutoff, EvictReport& rep) {
  // Bounded: every round deletes at least one link or stops.
  while (rep.freed < rep.need) {
    STORE_ASSIGN(auto batch, t.meta.evict_link_candidates(cutoff, o.batch));
    if (batch.empty()) return {};
    size_t removed = 0;
    for (const auto& c : batch) {
      if (rep.freed >= rep.need) return {};
      STORE_ASSIGN(bool gone, t.meta.evict_link(c));
      if (!gone) continue;
      ++removed;
      ++rep.links_removed;
      OUTPOST_TRY(drop_if_unreferenced(t, c.digest, rep));
    }
    if (removed == 0) return {};
  }
  return {};
}

}  // namespace

Result<EvictReport> evict(const GcTargets& t, const EvictOptions& opts) {
  EvictOptions o = opts;
  if (o.batch == 0) o.batch = 1;
  EvictReport rep;
  STORE_ASSIGN(rep.need, bytes_over(t, o, &rep.used_before, &rep.quota));
  if (rep.need == 0) return rep;
  const int64_t cutoff = t.meta.now_ms() - o.grace_ms;
  OUTPOST_TRY(evict_manifests(t, o, cutoff, rep));
  if (rep.freed < rep.need) OUTPOST_TRY(evict_links(t, o, cutoff, rep));
  rep.short_of_target = rep.freed < rep.need;
  log::info("eviction done", " need=" + std::to_string(rep.need) + " freed=" + std::to_string(rep.freed) +
                                 " blobs=" + std::to_string(rep.blobs_removed) + " manifests=" +
                                 std::to_string(rep.manifests_removed) + " links=" +
                                 std::to_string(rep.links_removed) +
                                 (rep.short_of_target ? " short=true" : ""));
  if (rep.short_of_target)
    log::warn("eviction could not free enough: the rest is pushed, kept or in use",
              " need=" + std::to_string(rep.need) + " freed=" + std::to_string(rep.freed));
  return rep;
}

}  // namespace outpost::store
