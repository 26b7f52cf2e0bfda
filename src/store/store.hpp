// Store: the content store facade the API, pull-through cache and sync use.
// Owns the root directory (locked against a second process), MetaDb,
// BlobStore and Uploads. No libuv anywhere below: every method is a plain
// blocking call, safe from any thread. The server never calls it on the event
// loop: storesvc::StoreService owns it and runs every call as a pool job.
#pragma once
#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <vector>

#include "base/digest.hpp"
#include "base/result.hpp"
#include "store/blob_store.hpp"
#include "store/check.hpp"
#include "store/evict.hpp"
#include "store/fs.hpp"
#include "store/gc.hpp"
#include "store/layout.hpp"
#include "store/meta_db.hpp"
#include "store/replay_queue.hpp"
#include "store/types.hpp"
#include "store/upload.hpp"

namespace outpost::store {

struct StoreOptions {
  /// Time source for rows and GC (ms since epoch). File sweeps compare it to
  /// file mtimes, so it must follow real time (tests may add an offset).
  Clock clock = system_clock_ms;
  /// Upload sessions whose hash state is kept in memory (about 200 bytes and
  /// one fd each); beyond it, idle ones are dropped and re-hashed on use.
  size_t max_open_uploads = 256;
  /// read_manifest refuses larger blobs (distribution's default limit is 4 MiB).
  uint64_t max_manifest_bytes = 4 * 1024 * 1024;
  /// Enqueue replay entries for pushed writes (the app sets it when a parent
  /// is configured and the mode is ReadWrite). Cached writes never enqueue.
  bool replay = false;
  /// Also enqueue deletes of pushed manifests, tags and blob links
  /// (sync.replay_deletes; only with `replay`).
  bool replay_deletes = false;
};

/// Cost classes (every one blocks, so in the server all of them run on the
/// work pool, inside storesvc::StoreService jobs; issue #14):
///   [meta]  one SQLite read or a stat/open: sub-millisecond when cached.
///   [sync]  fsyncs and/or a SQLite commit (synchronous=FULL): milliseconds.
///   [bulk]  proportional to data size or store size.
/// Every write returns only after it is durable (DESIGN.md invariant 2).
class Store {
 public:
  /// Opens (creating) the store at `root`: directories, LOCK (flock; a second
  /// process gets Errc::Io), meta.db migrations. Removes crash leftovers:
  /// everything in tmp/ and upload dirs without a session row. A crash
  /// mid-upload therefore never leaves a visible partial blob: blobs/ only
  /// gains files by rename after verification.
  static Result<std::unique_ptr<Store>> open(const std::string& root, StoreOptions opts = {});
  ~Store();
  Store(const Store&) = delete;
  Store& operator=(const Store&) = delete;

  // ---- blobs ------------------------------------------------------------
  /// [meta] Size of `d` when `repo` may read it, else BlobUnknown.
  Result<uint64_t> stat_blob(std::string_view repo, const Digest& d);
  struct OpenBlob {
    UniqueFd fd;  ///< read-only; caller owns (release() to hand it to libuv)
    uint64_t size = 0;
  };
  /// [meta] Opens `d` for reading when `repo` may read it, else BlobUnknown.
  Result<OpenBlob> open_blob(std::string_view repo, const Digest& d);
  /// [sync] Monolithic upload of small content: verifies sha256(bytes) == d
  /// (DigestInvalid, nothing written), stores it durably, links it to `repo`.
  Result<Descriptor> put_blob(std::string_view repo, const Digest& d, std::string_view bytes,
                              Origin origin = Origin::Pushed);
  /// [sync] Cross-repository mount (POST ?mount=&from=): BlobUnknown when
  /// `from` cannot read `d`. Returns the size.
  Result<uint64_t> mount_blob(std::string_view from, std::string_view to, const Digest& d,
                              Origin origin = Origin::Pushed);
  /// [sync] Links an already stored blob (any repository) to `repo`.
  Status link_blob(std::string_view repo, const Digest& d, Origin origin);
  /// [sync] DELETE blob: unlinks it from `repo` (bytes go at GC). BlobUnknown
  /// when not linked; Unsupported (405, detail naming the manifest) while a
  /// manifest of `repo` references it.
  Status delete_blob(std::string_view repo, const Digest& d);

  // ---- uploads (semantics in upload.hpp) --------------------------------
  /// [sync] `internal`: the id is never handed to a client (a monolithic
  /// POST, a pull-through fill), so the next open removes the session.
  Result<std::string> start_upload(std::string_view repo, bool internal = false);
  Result<uint64_t> append_upload(std::string_view repo, std::string_view id,    ///< [meta]-ish: pwrite
                                 uint64_t offset, std::string_view bytes);
  /// [bulk] after a restart or eviction (re-hash); returns the offset.
  Result<uint64_t> prepare_upload(std::string_view repo, std::string_view id);
  Result<uint64_t> flush_upload(std::string_view repo, std::string_view id);    ///< [sync]
  Result<uint64_t> upload_status(std::string_view repo, std::string_view id);   ///< [meta]
  /// [meta], [bulk] after a restart (re-hash): the digest of the bytes so far (Uploads::digest).
  Result<Digest> upload_digest(std::string_view repo, std::string_view id);
  /// [sync], [bulk] after a restart (re-hash). Failed-commit semantics: upload.hpp.
  Result<Descriptor> commit_upload(std::string_view repo, std::string_view id, const Digest& expected,
                                   Origin origin = Origin::Pushed);
  Status cancel_upload(std::string_view repo, std::string_view id);            ///< [sync]
  /// [meta] Upload::rewind: drop bytes past `offset` (a malformed body).
  Result<uint64_t> rewind_upload(std::string_view repo, std::string_view id, uint64_t offset);

  // ---- manifests --------------------------------------------------------
  /// [sync] Verifies sha256(bytes) == m.digest (DigestInvalid), that required
  /// refs are readable in the repository (ManifestBlobUnknown, detail = the
  /// missing digest) and the tag grammar (TagInvalid); stores the bytes as a
  /// blob durably, then records manifest + refs + tag in one transaction.
  /// Parsing the manifest (refs, subject, artifactType) is the caller's job.
  Result<ManifestInfo> put_manifest(const ManifestPut& m, std::string_view bytes);
  /// [meta] ManifestUnknown when absent.
  Result<ManifestInfo> get_manifest(std::string_view repo, const Digest& d);
  /// [meta] `reference` is a tag or a digest string (as in the URL).
  Result<ManifestInfo> resolve_manifest(std::string_view repo, std::string_view reference);
  /// [meta] The manifest's bytes (bounded by max_manifest_bytes).
  Result<std::string> read_manifest(std::string_view repo, const Digest& d);
  /// [sync] Deletes the manifest and every tag naming it; Unsupported (405,
  /// detail naming the index) while an index in the repository lists it. Bytes go at GC.
  Status delete_manifest(std::string_view repo, const Digest& d);

  // ---- tags and listings ------------------------------------------------
  Status put_tag(std::string_view repo, std::string_view tag, const Digest& d,
                 Origin origin = Origin::Pushed);                          ///< [sync]
  Result<Digest> get_tag(std::string_view repo, std::string_view tag);    ///< [meta]
  Status delete_tag(std::string_view repo, std::string_view tag);         ///< [sync]
  Result<Page> list_tags(std::string_view repo, const PageRequest& page);  ///< [meta] NameUnknown
  Result<Page> catalog(const PageRequest& page);                           ///< [meta]
  Result<ReferrerPage> referrers(std::string_view repo, const Digest& subject,
                                 const std::optional<std::string>& artifact_type = std::nullopt,
                                 const PageRequest& page = {});            ///< [meta]

  // ---- replay queue (replay_queue.hpp, README.md "Replay queue") --------
  // Entries are added by the writes above, in their transaction. The
  // replayer drains them with these. A false result means the entry is no
  // longer in the state the call expects (done, superseded, failed/expired).
  /// [meta] Ready entries (due, every entry they depend on done), oldest first.
  Result<std::vector<ReplayEntry>> replay_next(int64_t now_ms, size_t limit);
  /// [meta] One entry by id; nullopt once done or superseded.
  Result<std::optional<ReplayEntry>> replay_get(int64_t id);
  /// [sync] The parent has it: delete the entry, remember a mount source, count it.
  Result<bool> replay_done(int64_t id);
  /// [sync] Transient failure: attempts++, not ready before `next_attempt_ms`.
  Result<bool> replay_retry(int64_t id, int64_t next_attempt_ms, std::string_view error);
  /// [sync] Permanent failure (DENIED, UNSUPPORTED, NAME_INVALID): the entry
  /// and pending entries that need it (transitively) become failed.
  Result<bool> replay_failed(int64_t id, std::string_view error);
  /// [sync] Pending entries created more than `ttl_ms` before `now_ms` expire
  /// (their dependents fail); local content stays. Returns how many expired.
  Result<size_t> replay_expire(int64_t now_ms, int64_t ttl_ms);
  /// [sync] The parent refused manifest/tag entry `id` for a missing
  /// reference: queue what the manifest references again (MetaDb::replay_requeue_refs).
  Result<size_t> replay_requeue_refs(int64_t id);
  /// [sync] Persist the parent's upload session of a blob entry, to resume
  /// after a restart (an empty url forgets it). Read back in ReplayEntry.
  Result<bool> replay_set_upload(int64_t id, std::string_view upload_url, uint64_t offset);
  Result<ReplayStats> replay_stats();                                   ///< [meta] a few counts over the queue
  Result<std::vector<ReplayEntry>> replay_problems(size_t limit);       ///< [meta] failed/expired, newest first
  /// [meta] A repository other than `exclude` the parent holds `d` in (a
  /// replayed blob/manifest), else a recorded mount source; nullopt if none.
  Result<std::optional<std::string>> replay_mount_source(const Digest& d, std::string_view exclude = {});

  // ---- kept tags (sync.keep, issue #15; README.md "Kept tags") -----------
  // Content the Keeper pulls is pinned: never evicted by cache management
  // (issue #18 must ask is_pinned). GC never removes it either: a kept tag
  // names a manifest, and GC only removes unreferenced blobs.
  /// [sync] (repo, tag) -> `d` was pulled in full for `pattern`.
  Status pin_tag(std::string_view repo, std::string_view tag, const Digest& d, std::string_view pattern) {
    return meta_->pin_tag(repo, tag, d, pattern);
  }
  Result<std::optional<KeptTag>> kept_tag(std::string_view repo, std::string_view tag) {  ///< [meta]
    return meta_->kept_tag(repo, tag);
  }
  Result<uint64_t> count_kept(std::string_view pattern) { return meta_->count_kept(pattern); }  ///< [meta]
  /// [sync] MetaDb::unpin_patterns_except: sync.keep lost these patterns.
  Result<uint64_t> unpin_patterns_except(const std::vector<std::string>& patterns) {
    return meta_->unpin_patterns_except(patterns);
  }
  /// [meta] MetaDb::is_pinned: kept, so never evicted.
  Result<bool> is_pinned(std::string_view repo, const Digest& d) { return meta_->is_pinned(repo, d); }

  // ---- maintenance ------------------------------------------------------
  /// [bulk] One GC pass (gc.hpp); safe while serving.
  Result<GcReport> gc(const GcOptions& opts = {});
  /// [bulk] One eviction pass (evict.hpp); bumps both generations when it
  /// removed anything. Safe while serving.
  Result<EvictReport> evict(const EvictOptions& opts);
  /// [bulk] Verify every blob (check.hpp); blobs found bad are never served
  /// again (both generations bumped). Safe while serving.
  Result<CheckReport> check(const CheckOptions& opts, CheckProgress* progress = nullptr);
  /// [sync] Batched read times (MetaDb::record_access); a crash loses them.
  Status record_access(const std::vector<std::pair<Digest, int64_t>>& batch) { return meta_->record_access(batch); }
  /// [meta]-ish: a few aggregate queries over blobs.
  Result<StorageUsage> storage_usage() { return meta_->storage_usage(); }
  /// [bulk] Bytes to free now under `opts` (0: within limits); `used`/`quota` out.
  Result<uint64_t> bytes_over(const EvictOptions& opts, uint64_t* used, uint64_t* quota) {
    return store::bytes_over(targets(), opts, used, quota);
  }
  /// Blob bytes published since open (pushes, fills, manifests): an atomic,
  /// so loop code may poll it to decide when to look at the quota.
  uint64_t bytes_written() const { return written_.load(std::memory_order_relaxed); }
  /// Writes refused because the disk is full (Errc::InsufficientStorage)
  /// since open: an atomic; the Housekeeper evicts when it grows.
  uint64_t nospace_errors() const { return nospace_.load(std::memory_order_relaxed); }

  /// Bumped after every write that can change what a (repository,
  /// reference) resolves to: manifest and tag puts/deletes, GC. Blob links
  /// and uploads leave it alone. A reader that took it before reading and
  /// finds it unchanged later knows its read is still current
  /// (cache::HotManifests).
  uint64_t manifest_generation() const { return manifest_gen_.load(std::memory_order_acquire); }
  /// Bumped after every write that can make a blob unreadable in a
  /// repository it was readable in (stat_blob/open_blob): blob unlinks,
  /// manifest deletes (a manifest is readable as a blob of its repository),
  /// GC. Publishing, linking and uploads only add readability and leave it
  /// alone. A positive stat taken with the generation read before it stays
  /// true while the generation is unchanged (cache::HotBlobs). Anything that
  /// later removes blobs or links (eviction) must bump it too.
  uint64_t blob_generation() const { return blob_gen_.load(std::memory_order_acquire); }

  const Layout& layout() const { return layout_; }
  MetaDb& meta() { return *meta_; }
  BlobStore& blobs() { return blobs_; }
  Uploads& uploads() { return *uploads_; }

 private:
  Store(Layout layout, StoreOptions opts, UniqueFd lock, std::unique_ptr<MetaDb> meta);
  GcTargets targets() { return GcTargets{layout_, *meta_, blobs_, *uploads_, publish_mu_}; }
  /// Whether `d`'s row is marked bad (or unknown to be good).
  bool blob_bad(const Digest& d);

  Layout layout_;
  StoreOptions opts_;
  UniqueFd lock_;  ///< flock held for the Store's lifetime
  std::unique_ptr<MetaDb> meta_;
  BlobStore blobs_;
  /// Shared while files are created ahead of their rows, exclusive for GC
  /// removals (GcTargets::publish_mu).
  std::shared_mutex publish_mu_;
  std::unique_ptr<Uploads> uploads_;
  std::atomic<uint64_t> manifest_gen_{0};
  std::atomic<uint64_t> blob_gen_{0};
  std::atomic<uint64_t> written_{0};
  std::atomic<uint64_t> nospace_{0};
  /// Counts a disk-full failure of a write.
  template <typename R>
  R note_space(R r) {
    if (!r && r.error().code == Errc::InsufficientStorage) nospace_.fetch_add(1, std::memory_order_relaxed);
    return r;
  }
  /// After the write's commit (or failure: a harmless extra bump).
  template <typename R>
  R bump_manifests(R r) {
    manifest_gen_.fetch_add(1, std::memory_order_acq_rel);
    return r;
  }
  template <typename R>
  R bump_blobs(R r) {
    blob_gen_.fetch_add(1, std::memory_order_acq_rel);
    return r;
  }
};

}  // namespace outpost::store
