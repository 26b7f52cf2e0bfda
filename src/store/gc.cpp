// Garbage collection pass (rules in gc.hpp). Order of each removal: delete
// the row (committed) first, then unlink the file, so a crash in between only
// ever leaves a file without a row (swept later), never a row without a file.
#include "store/gc.hpp"

#include <dirent.h>
#include <sys/stat.h>

#include <cerrno>
#include <mutex>
#include <string>
#include <vector>

#include "base/log.hpp"
#include "store/try.hpp"

namespace outpost::store {

namespace {

Status collect_blobs(const GcTargets& t, const GcOptions& o, int64_t cutoff, GcReport& rep) {
  // Pushed links untouched for upload_ttl: a push that never got its manifest.
  const int64_t link_cutoff = t.meta.now_ms() - o.upload_ttl_ms;
  std::string after;
  for (;;) {
    STORE_ASSIGN(auto batch, t.meta.gc_candidates(cutoff, after, o.batch, link_cutoff));
    if (batch.empty()) return {};
    for (const auto& c : batch) {
      after = c.digest.str();
      if (o.dry_run) {
        ++rep.blobs_removed;
        rep.bytes_removed += c.size;
        continue;
      }
      // Exclusive publish lock: no upload commit or manifest put can be
      // between "file renamed" and "row recorded" for this digest right now.
      std::unique_lock pub(t.publish_mu);
      STORE_ASSIGN(bool deleted, t.meta.gc_delete_blob(c.digest, cutoff, link_cutoff));
      if (!deleted) continue;  // referenced or touched since the candidate query
      auto rm = t.blobs.remove(c.digest);
      if (!rm) {
        log::warn("gc: cannot unlink blob", " digest=" + c.digest.str() + " err=" + log::quote(rm.error().message()));
        continue;
      }
      ++rep.blobs_removed;
      rep.bytes_removed += c.size;
    }
  }
}

}  // namespace

Status sweep_rowless_blobs(const GcTargets& t, int64_t cutoff, GcReport& rep, bool dry_run) {
  Status err;
  auto st = t.blobs.scan([&](bool valid, const Digest& d, const std::string& path) {
    auto mt = fs::mtime_ms(path);
    if (!mt || *mt > cutoff) return true;  // young (maybe being published) or gone
    auto sz = fs::file_size(path);
    const uint64_t bytes = sz ? *sz : 0;
    if (valid) {
      // Cheap unlocked look first: almost every file has its row, and taking
      // the exclusive lock per file would queue behind every commit's fsync.
      auto row = t.meta.blob_size(d);
      if (row && *row) return true;
      std::unique_lock pub(t.publish_mu);
      row = t.meta.blob_size(d);  // authoritative: no publish is mid-way now
      if (!row) {
        err = std::move(row).error();
        return false;
      }
      if (*row) return true;  // recorded meanwhile
      if (!dry_run && !fs::remove_file(path).ok()) return true;
    } else {
      // Not a name we ever create in blobs/ (stray copy, editor backup...).
      struct stat lst {};
      if (::lstat(path.c_str(), &lst) != 0 || S_ISDIR(lst.st_mode)) return true;
      if (!dry_run && !fs::remove_file(path).ok()) return true;
    }
    ++rep.orphan_files_removed;
    rep.orphan_bytes_removed += bytes;
    return true;
  });
  if (!st) return st;
  return err;
}

namespace {

Status expire_uploads(const GcTargets& t, const GcOptions& o, int64_t now, GcReport& rep) {
  const int64_t cutoff = now - o.upload_ttl_ms;
  if (o.dry_run) {
    STORE_ASSIGN(auto stale, t.meta.stale_uploads(cutoff, size_t{1} << 20));
    rep.uploads_expired = stale.size();
    return {};
  }
  for (;;) {
    STORE_ASSIGN(auto stale, t.meta.stale_uploads(cutoff, o.batch));
    size_t removed = 0;
    for (const auto& id : stale) {
      STORE_ASSIGN(bool gone, t.uploads.expire(id, cutoff));
      if (gone) ++removed;
    }
    rep.uploads_expired += removed;
    // A batch that removed nothing holds only sessions still in use: stop
    // instead of fetching the same rows again.
    if (stale.size() < o.batch || removed == 0) return {};
  }
}

}  // namespace

Result<size_t> sweep_temp_dir(const Layout& layout, int64_t cutoff_ms) {
  const std::string dir = layout.tmp_dir();
  auto listed = fs::list_dir(dir);
  if (!listed) return std::move(listed).error();
  const std::vector<std::string>& names = *listed;
  size_t removed = 0;
  for (const auto& n : names) {
    const std::string path = dir + "/" + n;
    auto mt = fs::mtime_ms(path);
    if (!mt || *mt > cutoff_ms) continue;
    struct stat st {};
    if (::lstat(path.c_str(), &st) != 0) continue;
    bool ok = S_ISDIR(st.st_mode) ? fs::remove_flat_dir(path).ok() : fs::remove_file(path).ok();
    if (ok) ++removed;
  }
  return removed;
}

Result<GcReport> collect_garbage(const GcTargets& t, const GcOptions& opts) {
  GcOptions o = opts;
  if (o.batch == 0) o.batch = 1;
  GcReport rep;
  const int64_t now = t.meta.now_ms();
  const int64_t cutoff = now - o.grace_ms;
  OUTPOST_TRY(collect_blobs(t, o, cutoff, rep));
  if (o.sweep_blob_files) OUTPOST_TRY(sweep_rowless_blobs(t, cutoff, rep, o.dry_run));
  OUTPOST_TRY(expire_uploads(t, o, now, rep));
  if (o.dry_run) return rep;
  STORE_ASSIGN(rep.upload_dirs_removed, t.uploads.sweep_orphans(cutoff));
  // After the expiries: a repository whose only content was a dead session.
  STORE_ASSIGN(rep.repos_removed, t.meta.delete_empty_repos());
  // Mount sources of blobs that are gone here (a few rows; result unused).
  STORE_ASSIGN(size_t sent_pruned, t.meta.prune_replay_sent());
  (void)sent_pruned;
  {
    // Exclusive: one-shot writers hold the lock shared from creating their
    // temp file to its rename, so nothing found here is mid-write. tmp/ only
    // ever holds a few in-flight files, so one lock for the sweep is fine.
    std::unique_lock pub(t.publish_mu);
    STORE_ASSIGN(rep.temp_files_removed, sweep_temp_dir(t.layout, cutoff));
  }
  log::info("gc done", " blobs=" + std::to_string(rep.blobs_removed) + " bytes=" +
                           std::to_string(rep.bytes_removed) + " orphans=" +
                           std::to_string(rep.orphan_files_removed) + " uploads_expired=" +
                           std::to_string(rep.uploads_expired) + " empty_repos=" + std::to_string(rep.repos_removed));
  return rep;
}

}  // namespace outpost::store
