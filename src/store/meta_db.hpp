// MetaDb: every metadata query of the content store over one SQLite
// connection (schema in meta_schema.cpp). Knows no file paths and no libuv.
#pragma once
#include <limits>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/digest.hpp"
#include "base/result.hpp"
#include "store/layout.hpp"
#include "store/replay_queue.hpp"
#include "store/sqlite.hpp"
#include "store/types.hpp"

namespace outpost::store {

/// A row of the uploads table.
struct UploadRow {
  std::string repo;
  uint64_t size = 0;  ///< durable (acknowledged) bytes
  int64_t created_ms = 0;
  int64_t updated_ms = 0;
};

/// Thread-safe: every public method takes the connection mutex for its whole
/// duration, and every multi-statement change runs in one transaction (so it
/// is all-or-nothing, and durable when the method returns ok).
/// Repository names and tags are validated here too (NameInvalid/TagInvalid):
/// callers may pass raw request values.
class MetaDb {
 public:
  /// `replay` decides which writes enqueue replay entries (replay_queue.hpp).
  static Result<std::unique_ptr<MetaDb>> open(const std::string& path, Clock clock, ReplayPolicy replay = {});

  // ---- repositories -----------------------------------------------------
  /// Whether the repository holds something (a blob link or a manifest). A
  /// row made for an upload session alone does not count.
  Result<bool> repo_exists(std::string_view repo);
  /// Deletes repository rows holding nothing and no upload session (left by
  /// failed or abandoned pushes, or by deleting everything). Returns how many.
  Result<size_t> delete_empty_repos();
  /// Repositories holding at least one manifest, lexically, after `last`.
  Result<Page> catalog(const PageRequest& page);

  // ---- blobs ------------------------------------------------------------
  /// Size of a blob row (any repository), nullopt when unknown.
  Result<std::optional<uint64_t>> blob_size(const Digest& d);
  /// Size when `repo` may read `d` (linked blob or one of its manifests);
  /// BlobUnknown otherwise.
  Result<uint64_t> blob_size_in_repo(std::string_view repo, const Digest& d);
  /// After the file is durable under blobs/: upserts the blob row (touching
  /// it), links it to `repo` when non-empty, and deletes `finished_upload`'s
  /// row, all in one transaction.
  Status record_blob(std::string_view repo, const Descriptor& blob, Origin origin,
                     const std::optional<UploadId>& finished_upload = std::nullopt);
  /// Links an existing blob row to `repo` (BlobUnknown when there is none).
  Status link_blob(std::string_view repo, const Digest& d, Origin origin);
  /// Cross-repository mount: links `d` into `to` when `from` may read it
  /// (BlobUnknown otherwise). Returns the blob's size.
  Result<uint64_t> mount_blob(std::string_view from, std::string_view to, const Digest& d, Origin origin);
  /// Removes the repository's link. BlobUnknown when not linked; Unsupported
  /// (detail: the referencing manifest) while a manifest of the repository
  /// still references the blob.
  Status unlink_blob(std::string_view repo, const Digest& d);

  // ---- manifests, tags, referrers (meta_db_manifests.cpp) ---------------
  /// Records a manifest whose bytes are already a durable blob of
  /// `m.digest` / `size`: blob row, manifest row (re-put replaces its refs and
  /// descriptive fields, origin only promotes), refs, optional tag, one
  /// transaction. ManifestBlobUnknown (detail = digest) when a required ref is
  /// not readable in the repository; TagInvalid for a bad tag.
  Result<ManifestInfo> put_manifest(const ManifestPut& m, uint64_t size);
  /// ManifestUnknown when the repository has no such manifest.
  Result<ManifestInfo> get_manifest(std::string_view repo, const Digest& d);
  /// Deletes the manifest, its refs and every tag naming it. ManifestUnknown
  /// when absent; Unsupported (detail: the index) while another manifest of
  /// the repository (an index) references it. The bytes stay until GC.
  Status delete_manifest(std::string_view repo, const Digest& d);

  /// Points `tag` at a manifest of the repository (ManifestUnknown otherwise).
  Status put_tag(std::string_view repo, std::string_view tag, const Digest& d, Origin origin);
  /// ManifestUnknown when the tag does not exist.
  Result<Digest> get_tag(std::string_view repo, std::string_view tag);
  Status delete_tag(std::string_view repo, std::string_view tag);
  /// Tags of the repository; NameUnknown when the repository does not exist.
  Result<Page> list_tags(std::string_view repo, const PageRequest& page);
  /// Manifests of the repository whose subject is `subject`, ordered by digest,
  /// optionally only those whose artifact_type equals `artifact_type`.
  Result<ReferrerPage> referrers(std::string_view repo, const Digest& subject,
                                 const std::optional<std::string>& artifact_type, const PageRequest& page);

  // ---- uploads ----------------------------------------------------------
  /// `internal`: no client ever holds the id (monolithic POST, fill); such
  /// sessions are removed at the next open (schema v4).
  Status insert_upload(const UploadId& id, std::string_view repo, bool internal = false);
  /// BlobUploadUnknown when there is no such session.
  Result<UploadRow> get_upload(const UploadId& id);
  /// Records the durable size and bumps `updated`.
  Status set_upload_size(const UploadId& id, uint64_t size);
  /// True when a row was deleted.
  Result<bool> delete_upload(const UploadId& id);
  /// Sessions not updated since `cutoff_ms`, oldest first, at most `limit`.
  Result<std::vector<UploadId>> stale_uploads(int64_t cutoff_ms, size_t limit);

  // ---- garbage collection (used by gc.cpp) ------------------------------
  /// Blobs with no repo link, no manifest row and no manifest ref, touched at
  /// or before `cutoff_ms`, with digest > `after`, ascending, at most `limit`.
  /// Pushed links do not count once the blob was last touched at or before
  /// `link_cutoff_ms` (GC passes now - upload_ttl; the default: they count).
  Result<std::vector<Descriptor>> gc_candidates(int64_t cutoff_ms, const std::string& after, size_t limit,
                                                int64_t link_cutoff_ms = std::numeric_limits<int64_t>::min());
  /// Re-checks the candidate conditions and deletes the blob row (and the
  /// old pushed links that did not count) in one transaction; true when it
  /// was deleted (the file may then be unlinked).
  Result<bool> gc_delete_blob(const Digest& d, int64_t cutoff_ms,
                              int64_t link_cutoff_ms = std::numeric_limits<int64_t>::min());

  /// Deletes replay_sent rows whose blob is gone (called by GC).
  Result<size_t> prune_replay_sent();

  // ---- replay queue (replay_queue.cpp) -----------------------------------
  // Entries are inserted by the writes above (pushed origin, policy enabled)
  // inside their own transaction; these read and advance them.
  /// Pending entries due at `now_ms` whose dependencies are all done, oldest
  /// first, at most `limit` (rules in README.md "Replay queue").
  Result<std::vector<ReplayEntry>> replay_next(int64_t now_ms, size_t limit);
  /// Any entry by id (nullopt once done or superseded).
  Result<std::optional<ReplayEntry>> replay_get(int64_t id);
  /// The parent acknowledged the entry: deletes it, remembers a blob's or
  /// manifest's (repo, digest) as a mount source, counts it. False when the
  /// entry no longer exists (superseded while in flight).
  Result<bool> replay_done(int64_t id);
  /// A transient failure: attempts++, not ready before `next_attempt_ms`.
  /// False unless the entry is pending.
  Result<bool> replay_retry(int64_t id, int64_t next_attempt_ms, std::string_view error);
  /// A permanent failure: the entry and (transitively) pending entries that
  /// need it become failed. False unless the entry was pending.
  Result<bool> replay_failed(int64_t id, std::string_view error);
  /// Pending entries created more than `ttl_ms` before `now_ms` become
  /// expired (their dependents failed). Returns how many expired.
  Result<size_t> replay_expire(int64_t now_ms, int64_t ttl_ms);
  /// The parent refused manifest or tag entry `id` for something it
  /// references (MANIFEST_BLOB_UNKNOWN): queues every blob and child
  /// manifest of it that this registry holds in the repository again, and
  /// forgets that the parent had them. The entry then waits for them.
  /// Returns how many it queued (0: nothing held, or the entry is gone).
  Result<size_t> replay_requeue_refs(int64_t id);
  /// Remembers the parent's upload session of a blob entry. False unless pending.
  Result<bool> replay_set_upload(int64_t id, std::string_view upload_url, uint64_t offset);
  Result<ReplayStats> replay_stats();
  /// Failed and expired entries, most recent first, at most `limit`.
  Result<std::vector<ReplayEntry>> replay_problems(size_t limit);
  /// A repository other than `exclude` where the parent holds `d` (a replayed
  /// blob/manifest), else the source of a local mount of `d`, else nullopt.
  Result<std::optional<std::string>> replay_mount_source(const Digest& d, std::string_view exclude = {});

  // ---- kept tags (meta_db_kept.cpp; sync.keep, issue #15) -----------------
  /// Records that the Keeper pulled (repo, tag) -> `d` in full for `pattern`
  /// (upsert). The pin holds whatever the local tag names.
  Status pin_tag(std::string_view repo, std::string_view tag, const Digest& d, std::string_view pattern);
  /// The kept row of (repo, tag), nullopt when the tag is not kept.
  Result<std::optional<KeptTag>> kept_tag(std::string_view repo, std::string_view tag);
  /// How many kept rows `pattern` owns whose tag still exists here.
  Result<uint64_t> count_kept(std::string_view pattern);
  /// Drops the kept rows of every pattern not in `patterns` (sync.keep
  /// changed by a SIGHUP, issue #17): their tags are no longer pinned and
  /// become ordinary cached content. Returns the rows dropped.
  Result<uint64_t> unpin_patterns_except(const std::vector<std::string>& patterns);
  /// Whether `d` is pinned in `repo`: the manifest a kept tag names locally,
  /// anything it references (transitively: index children, config, layers)
  /// or a referrer of any of those (and their content). Never evicted.
  Result<bool> is_pinned(std::string_view repo, const Digest& d);

  // ---- cache management (meta_db_storage.cpp; issue #18) ------------------
  /// Records read times (digest, ms) in one transaction; unknown digests
  /// are ignored. Only ever moves `accessed` forward.
  Status record_access(const std::vector<std::pair<Digest, int64_t>>& batch);
  /// Bytes held by origin (StorageUsage in types.hpp). `by_origin` false:
  /// total, blobs and bad only (one scan of `blobs`; pushed/cached/kept 0),
  /// for callers that need no breakdown (eviction's limits, check).
  Result<StorageUsage> storage_usage(bool by_origin = true);
  /// Cached manifests no other manifest of their repository lists and no
  /// pushed tag names, least recently used first, last used at or before
  /// `cutoff_ms`, after the key (`after_lru`, `after_id`), at most `limit`.
  Result<std::vector<EvictCandidate>> evict_manifest_candidates(int64_t cutoff_ms, int64_t after_lru,
                                                                int64_t after_id, size_t limit);
  /// Re-checks a candidate (still cached, unlisted, not used since `c.lru_ms`)
  /// and deletes it, its tags and the cached links of its refs no manifest of
  /// the repository still names, in one transaction. Returns the digests
  /// whose blobs may now be unreferenced (nullopt: skipped).
  Result<std::optional<std::vector<Digest>>> evict_manifest(const EvictCandidate& c);
  /// Cached blob links no manifest of their repository names, LRU first,
  /// last used at or before `cutoff_ms`, at most `limit`.
  Result<std::vector<EvictCandidate>> evict_link_candidates(int64_t cutoff_ms, size_t limit);
  /// Re-checks and deletes one such link; true when deleted.
  Result<bool> evict_link(const EvictCandidate& c);
  /// Blob rows with digest > `after`, ascending, at most `limit` (check).
  Result<std::vector<BlobRow>> blob_rows(const std::string& after, size_t limit);
  /// Whether `d`'s row is marked bad (false when there is no row).
  Result<bool> blob_is_bad(const Digest& d);
  /// Marks a blob bad (never served) or good again.
  Status set_blob_bad(const Digest& d, bool bad);
  /// Whether any pushed link or pushed manifest holds `d` (check --repair).
  Result<bool> is_pushed(const Digest& d);
  /// (repository, tag) pairs naming a bad manifest, at most `limit`.
  Result<std::vector<std::pair<std::string, std::string>>> tags_on_bad(size_t limit);
  /// Blob rows nothing references (what GC would remove past its grace).
  Result<uint64_t> count_unreferenced();
  /// Sessions whose id no client holds (insert_upload `internal`).
  Result<std::vector<UploadId>> internal_uploads();

  const ReplayPolicy& replay_policy() const { return replay_; }
  int64_t now_ms() const { return clock_(); }

 private:
  MetaDb(sql::Db db, Clock clock, ReplayPolicy replay)
      : db_(std::move(db)), clock_(std::move(clock)), replay_(replay) {}
  // Helpers that expect mu_ held (and, for writes, a transaction open).
  Result<int64_t> ensure_repo_locked(std::string_view repo);
  Result<std::optional<int64_t>> repo_id_locked(std::string_view repo);
  /// The id of a repository that exists (repo_exists), else nullopt.
  Result<std::optional<int64_t>> existing_repo_locked(std::string_view repo);
  Result<bool> readable_locked(int64_t repo_id, const Digest& d);
  /// `d` is a manifest of the repository (not only a blob linked there).
  Result<bool> has_manifest_locked(int64_t repo_id, const Digest& d);
  Status link_locked(int64_t repo_id, const Digest& d, Origin origin, int64_t now);
  Result<std::optional<Digest>> referencing_manifest_locked(int64_t repo_id, const Digest& d);
  /// The link's/manifest's/tag's origin, nullopt when absent.
  Result<std::optional<Origin>> origin_locked(std::string_view sql, int64_t repo_id, std::string_view key);

  // Replay enqueueing (replay_queue.cpp): mu_ held, inside the write's
  // transaction; callers check the policy and origin first.
  bool replaying(Origin o) const { return replay_.enabled && o == Origin::Pushed; }
  bool replaying_deletes() const { return replay_.enabled && replay_.deletes; }
  Status enqueue_blob_locked(std::string_view repo, const Digest& d, uint64_t size,
                             const std::optional<std::string>& mount_from, int64_t now);
  /// A manifest entry that waits for `deps` (its refs and subject).
  Status enqueue_manifest_locked(std::string_view repo, const Digest& d, uint64_t size, std::string_view media_type,
                                 const std::vector<Digest>& deps, int64_t now);
  /// Queues blob `d` of `repo` again when it was pushed there but is neither
  /// pending nor known to be at the parent.
  Status requeue_owed_blob_locked(int64_t repo_id, std::string_view repo, const Digest& d, int64_t now);
  /// Deletes unsent tag moves and tag deletes of (repo, tag): a new one supersedes them.
  Status supersede_tag_locked(std::string_view repo, std::string_view tag);
  Status enqueue_tag_locked(std::string_view repo, std::string_view tag, const Digest& d, int64_t now);
  /// DeleteManifest/DeleteBlob (digest) or DeleteTag (tag, digest it named).
  Status enqueue_delete_locked(ReplayKind kind, std::string_view repo, const Digest& d,
                               const std::optional<std::string>& tag, int64_t now);
  /// Fails pending entries that need a failed/expired one (transitively),
  /// only in `repo` when given (dependencies never cross repositories).
  Status cascade_failures_locked(int64_t now, const std::optional<std::string>& repo = std::nullopt);

  std::mutex mu_;
  sql::Db db_;
  Clock clock_;
  ReplayPolicy replay_;
};

/// NameInvalid unless `repo` matches the distribution-spec <name> grammar.
Status check_repo_name(std::string_view repo);

/// Parses a digest read back from the database (Errc::Db if corrupt).
Result<Digest> digest_from_db(const std::string& s);

}  // namespace outpost::store
