// Store facade: opening/recovery of the root, and the operations that span
// BlobStore + MetaDb (verified one-shot puts, manifests, repo-scoped reads).
#include "store/store.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>

#include <cerrno>
#include <limits>

#include "base/log.hpp"
#include "base/reference.hpp"
#include "store/try.hpp"

namespace outpost::store {

namespace {

Status check_storable(const Digest& d) {
  if (!is_storable(d)) return Error(Errc::Unsupported, "unsupported digest algorithm: " + d.str());
  return {};
}

// Invariant 1: content is only stored under a digest its bytes hash to.
Status verify_bytes(const Digest& d, std::string_view bytes) {
  OUTPOST_TRY(check_storable(d));
  Digest actual = Digest::sha256_of(bytes);
  if (!(actual == d)) return Error(Errc::DigestInvalid, "expected " + d.str() + ", content is " + actual.str());
  return {};
}

}  // namespace

Store::Store(Layout layout, StoreOptions opts, UniqueFd lock, std::unique_ptr<MetaDb> meta)
    : layout_(layout), opts_(std::move(opts)), lock_(std::move(lock)), meta_(std::move(meta)), blobs_(layout) {
  uploads_ = std::make_unique<Uploads>(layout_, *meta_, blobs_, publish_mu_, opts_.max_open_uploads);
}

Store::~Store() = default;

Result<std::unique_ptr<Store>> Store::open(const std::string& root, StoreOptions opts) {
  if (root.empty()) return Error(Errc::ConfigInvalid, "empty store root");
  if (!opts.clock) opts.clock = system_clock_ms;
  Layout layout(root);
  STORE_ASSIGN(bool root_made, fs::make_dir(layout.root(), 0750));

  // One process per root: two daemons sharing uploads/ and the GC would
  // delete each other's in-flight work. flock is released by the kernel
  // when the process dies, so a kill -9 never leaves a stale lock.
  STORE_ASSIGN(auto lock, fs::open(layout.lock_file(), O_RDWR | O_CREAT | O_NOFOLLOW, 0644));
  if (::flock(lock.get(), LOCK_EX | LOCK_NB) != 0) {
    if (errno == EWOULDBLOCK) return Error(Errc::Io, "store root " + layout.root() + " is in use by another process");
    return fs::errno_error("flock", layout.lock_file(), errno);
  }

  BlobStore blobs(layout);
  OUTPOST_TRY(blobs.init());
  STORE_ASSIGN(bool up_made, fs::make_dir(layout.uploads_dir()));
  STORE_ASSIGN(bool tmp_made, fs::make_dir(layout.tmp_dir()));
  (void)up_made;
  (void)tmp_made;
  OUTPOST_TRY(fs::fsync_dir(layout.root()));
  if (root_made) {
    // The root's own entry lives in its parent.
    const auto slash = layout.root().find_last_of('/');
    const std::string parent = slash == std::string::npos ? "." : slash == 0 ? "/" : layout.root().substr(0, slash);
    OUTPOST_TRY(fs::fsync_dir(parent));
    log::info("store root created", " root=" + log::quote(layout.root()));
  }

  STORE_ASSIGN(auto meta, MetaDb::open(layout.db_file(), opts.clock,
                                       ReplayPolicy{opts.replay, opts.replay && opts.replay_deletes}));
  auto store = std::unique_ptr<Store>(new Store(layout, std::move(opts), std::move(lock), std::move(meta)));

  // Crash recovery. We hold the lock, so nothing is in flight: every temp
  // file is a crashed one-shot write and every upload dir without a row is a
  // crashed create/cancel. Sessions with rows survive (resumable uploads).
  constexpr int64_t kAll = std::numeric_limits<int64_t>::max();
  STORE_ASSIGN(size_t tmp_removed, sweep_temp_dir(layout, kAll));
  // Sessions whose id no client ever held (a monolithic POST, a fill) died
  // with the process that owned them (issue #18).
  STORE_ASSIGN(auto internal, store->meta_->internal_uploads());
  size_t internal_removed = 0;
  for (const auto& id : internal) {
    STORE_ASSIGN(bool gone, store->uploads_->expire(id, kAll));
    if (gone) ++internal_removed;
  }
  STORE_ASSIGN(size_t dirs_removed, store->uploads_->sweep_orphans(kAll));
  // Verified files whose row never committed (a kill between the rename and
  // the commit): nothing is mid-publish while we hold the lock.
  GcReport swept;
  OUTPOST_TRY(sweep_rowless_blobs(store->targets(), kAll, swept));
  if (tmp_removed + dirs_removed + internal_removed + swept.orphan_files_removed > 0)
    log::info("store recovered crash leftovers",
              " temp_files=" + std::to_string(tmp_removed) + " upload_dirs=" + std::to_string(dirs_removed) +
                  " internal_uploads=" + std::to_string(internal_removed) + " rowless_blobs=" +
                  std::to_string(swept.orphan_files_removed) + " rowless_bytes=" +
                  std::to_string(swept.orphan_bytes_removed));
  return store;
}

// ---- blobs --------------------------------------------------------------------------

Result<uint64_t> Store::stat_blob(std::string_view repo, const Digest& d) {
  return meta_->blob_size_in_repo(repo, d);
}

Result<Store::OpenBlob> Store::open_blob(std::string_view repo, const Digest& d) {
  STORE_ASSIGN(uint64_t size, meta_->blob_size_in_repo(repo, d));
  auto fd = blobs_.open_read(d);
  if (!fd) {
    if (fd.error().code == Errc::BlobUnknown)
      log::error("blob row without file", " digest=" + d.str());
    return std::move(fd).error();
  }
  struct stat st {};
  if (::fstat(fd->get(), &st) != 0) return fs::errno_error("fstat", layout_.blob_file(d), errno);
  if (static_cast<uint64_t>(st.st_size) != size)
    return Error(Errc::Io, "blob " + d.str() + " has " + std::to_string(st.st_size) + " bytes, recorded " +
                               std::to_string(size));
  return OpenBlob{std::move(*fd), size};
}

Result<Descriptor> Store::put_blob(std::string_view repo, const Digest& d, std::string_view bytes, Origin origin) {
  OUTPOST_TRY(check_repo_name(repo));
  OUTPOST_TRY(verify_bytes(d, bytes));
  const Descriptor desc{d, bytes.size()};
  std::shared_lock pub(publish_mu_);
  // Files under blobs/ are only ever verified content, so an existing one
  // (even one not yet recorded) can be reused as is.
  // A file a check marked bad is rewritten.
  auto have = blobs_.stat(d);
  if (!have || *have != bytes.size() || blob_bad(d)) OUTPOST_TRY(note_space(blobs_.write_verified(d, bytes)));
  OUTPOST_TRY(note_space(meta_->record_blob(repo, desc, origin)));
  written_.fetch_add(desc.size, std::memory_order_relaxed);
  return desc;
}

Result<uint64_t> Store::mount_blob(std::string_view from, std::string_view to, const Digest& d, Origin origin) {
  return meta_->mount_blob(from, to, d, origin);
}

Status Store::link_blob(std::string_view repo, const Digest& d, Origin origin) {
  return meta_->link_blob(repo, d, origin);
}

Status Store::delete_blob(std::string_view repo, const Digest& d) {
  return bump_blobs(meta_->unlink_blob(repo, d));
}

// ---- uploads --------------------------------------------------------------------------

Result<std::string> Store::start_upload(std::string_view repo, bool internal) {
  auto id = note_space(uploads_->create(repo, internal));
  if (!id) return std::move(id).error();
  return id->str();
}

Result<uint64_t> Store::append_upload(std::string_view repo, std::string_view id, uint64_t offset,
                                      std::string_view bytes) {
  return note_space(uploads_->append(repo, id, offset, bytes));
}

Result<uint64_t> Store::prepare_upload(std::string_view repo, std::string_view id) {
  return uploads_->prepare(repo, id);
}

Result<uint64_t> Store::rewind_upload(std::string_view repo, std::string_view id, uint64_t offset) {
  return uploads_->rewind(repo, id, offset);
}

Result<uint64_t> Store::flush_upload(std::string_view repo, std::string_view id) {
  return note_space(uploads_->flush(repo, id));
}

Result<uint64_t> Store::upload_status(std::string_view repo, std::string_view id) {
  return uploads_->status(repo, id);
}

Result<Digest> Store::upload_digest(std::string_view repo, std::string_view id) {
  return uploads_->digest(repo, id);
}

Result<Descriptor> Store::commit_upload(std::string_view repo, std::string_view id, const Digest& expected,
                                        Origin origin) {
  auto r = note_space(uploads_->commit(repo, id, expected, origin));
  if (r) written_.fetch_add(r->size, std::memory_order_relaxed);
  return r;
}

Status Store::cancel_upload(std::string_view repo, std::string_view id) { return uploads_->cancel(repo, id); }

// ---- manifests ------------------------------------------------------------------------

Result<ManifestInfo> Store::put_manifest(const ManifestPut& m, std::string_view bytes) {
  OUTPOST_TRY(check_repo_name(m.repo));
  if (m.tag && !valid_tag(*m.tag)) return Error(Errc::TagInvalid, "invalid tag");
  OUTPOST_TRY(verify_bytes(m.digest, bytes));
  // Cheap pre-check so a manifest with a missing blob writes nothing at all;
  // MetaDb::put_manifest repeats it inside its transaction authoritatively.
  for (const auto& ref : m.refs) {
    if (!ref.required) continue;
    if (ref.is_manifest) {
      auto child = meta_->get_manifest(m.repo, ref.digest);
      if (!child && child.error().code == Errc::ManifestUnknown) return Error(Errc::ManifestBlobUnknown, ref.digest.str());
      if (!child) return std::move(child).error();
      continue;
    }
    auto sz = meta_->blob_size_in_repo(m.repo, ref.digest);
    if (!sz) {
      if (sz.error().code == Errc::BlobUnknown) return Error(Errc::ManifestBlobUnknown, ref.digest.str());
      return std::move(sz).error();
    }
  }
  std::shared_lock pub(publish_mu_);
  auto have = blobs_.stat(m.digest);
  if (!have || *have != bytes.size() || blob_bad(m.digest))
    OUTPOST_TRY(note_space(blobs_.write_verified(m.digest, bytes)));
  written_.fetch_add(bytes.size(), std::memory_order_relaxed);
  return bump_manifests(note_space(meta_->put_manifest(m, bytes.size())));
}

Result<ManifestInfo> Store::get_manifest(std::string_view repo, const Digest& d) {
  return meta_->get_manifest(repo, d);
}

Result<ManifestInfo> Store::resolve_manifest(std::string_view repo, std::string_view reference) {
  if (looks_like_digest(reference)) {
    STORE_ASSIGN(auto d, Digest::parse(reference));
    return meta_->get_manifest(repo, d);
  }
  STORE_ASSIGN(auto d, meta_->get_tag(repo, reference));
  return meta_->get_manifest(repo, d);
}

Result<std::string> Store::read_manifest(std::string_view repo, const Digest& d) {
  STORE_ASSIGN(auto info, meta_->get_manifest(repo, d));
  if (info.size > opts_.max_manifest_bytes) return Error(Errc::ManifestTooLarge, d.str());
  auto bytes = blobs_.read_all(d, opts_.max_manifest_bytes);
  if (!bytes && bytes.error().code == Errc::BlobUnknown) {
    log::error("manifest row without blob file", " digest=" + d.str());
    return Error(Errc::ManifestUnknown, d.str());
  }
  return bytes;
}

Status Store::delete_manifest(std::string_view repo, const Digest& d) {
  return bump_blobs(bump_manifests(meta_->delete_manifest(repo, d)));
}

// ---- tags and listings ------------------------------------------------------------------

Status Store::put_tag(std::string_view repo, std::string_view tag, const Digest& d, Origin origin) {
  return bump_manifests(meta_->put_tag(repo, tag, d, origin));
}

Result<Digest> Store::get_tag(std::string_view repo, std::string_view tag) { return meta_->get_tag(repo, tag); }

Status Store::delete_tag(std::string_view repo, std::string_view tag) {
  return bump_manifests(meta_->delete_tag(repo, tag));
}

Result<Page> Store::list_tags(std::string_view repo, const PageRequest& page) {
  return meta_->list_tags(repo, page);
}

Result<Page> Store::catalog(const PageRequest& page) { return meta_->catalog(page); }

Result<ReferrerPage> Store::referrers(std::string_view repo, const Digest& subject,
                                      const std::optional<std::string>& artifact_type, const PageRequest& page) {
  return meta_->referrers(repo, subject, artifact_type, page);
}

// ---- replay queue -----------------------------------------------------------------------

Result<std::vector<ReplayEntry>> Store::replay_next(int64_t now_ms, size_t limit) {
  return meta_->replay_next(now_ms, limit);
}
Result<std::optional<ReplayEntry>> Store::replay_get(int64_t id) { return meta_->replay_get(id); }
Result<bool> Store::replay_done(int64_t id) { return meta_->replay_done(id); }
Result<bool> Store::replay_retry(int64_t id, int64_t next_attempt_ms, std::string_view error) {
  return meta_->replay_retry(id, next_attempt_ms, error);
}
Result<bool> Store::replay_failed(int64_t id, std::string_view error) { return meta_->replay_failed(id, error); }
Result<size_t> Store::replay_requeue_refs(int64_t id) { return meta_->replay_requeue_refs(id); }
Result<size_t> Store::replay_expire(int64_t now_ms, int64_t ttl_ms) { return meta_->replay_expire(now_ms, ttl_ms); }
Result<bool> Store::replay_set_upload(int64_t id, std::string_view upload_url, uint64_t offset) {
  return meta_->replay_set_upload(id, upload_url, offset);
}
Result<ReplayStats> Store::replay_stats() { return meta_->replay_stats(); }
Result<std::vector<ReplayEntry>> Store::replay_problems(size_t limit) { return meta_->replay_problems(limit); }
Result<std::optional<std::string>> Store::replay_mount_source(const Digest& d, std::string_view exclude) {
  return meta_->replay_mount_source(d, exclude);
}

// ---- maintenance ------------------------------------------------------------------------

Result<GcReport> Store::gc(const GcOptions& opts) {
  // GC removes repository rows (delete_empty_repos): bump, to be safe.
  // It removes blob rows and files too.
  return bump_blobs(bump_manifests(collect_garbage(targets(), opts)));
}

// ---- cache management (issue #18) ------------------------------------------------------

bool Store::blob_bad(const Digest& d) {
  auto st = meta_->blob_is_bad(d);
  return !st || *st;  // unsure: rewrite (verified bytes are at hand)
}

Result<EvictReport> Store::evict(const EvictOptions& opts) {
  auto r = store::evict(targets(), opts);
  // Manifests, tags, links and blobs may be gone: no memo may serve them.
  if (!r || r->manifests_removed + r->links_removed + r->blobs_removed > 0) {
    manifest_gen_.fetch_add(1, std::memory_order_acq_rel);
    blob_gen_.fetch_add(1, std::memory_order_acq_rel);
  }
  return r;
}

Result<CheckReport> Store::check(const CheckOptions& opts, CheckProgress* progress) {
  auto r = check_store(targets(), opts, progress);
  // Blobs marked bad are no longer readable: drop every memo entry.
  if (!r || r->corrupt + r->missing > 0) {
    manifest_gen_.fetch_add(1, std::memory_order_acq_rel);
    blob_gen_.fetch_add(1, std::memory_order_acq_rel);
  }
  return r;
}

}  // namespace outpost::store
