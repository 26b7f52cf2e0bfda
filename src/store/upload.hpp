// Uploads: blob upload sessions (distribution-spec "Pushing Blobs": POST,
// PATCH, PUT, GET status, DELETE). Owns uploads/<id>/data and the in-memory
// incremental SHA-256 of each open session; publishes through BlobStore and
// records through MetaDb. No libuv: callable from any thread; a session's
// mutex serialises its calls. The server calls it only from pool threads
// (storesvc::StoreService jobs, one session's calls in order under its key),
// so a commit holding the mutex across fsyncs never stalls the event loop.
#pragma once
#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <unordered_map>

#include "base/digest.hpp"
#include "base/result.hpp"
#include "store/blob_store.hpp"
#include "store/layout.hpp"
#include "store/meta_db.hpp"
#include "store/types.hpp"

namespace outpost::store {

// Session life:
//
//   create ──▶ OPEN ──append*──▶ OPEN ──flush──▶ OPEN (durable offset = offset)
//                │                                   │
//                ├──commit(ok)──▶ blob published, session gone
//                ├──commit(DigestInvalid / SizeInvalid)──▶ session cancelled (data deleted)
//                ├──commit(Io / Db)──▶ OPEN, retry allowed (see commit())
//                └──cancel / GC TTL──▶ gone
//
// Restart: a session is reloaded from its uploads row on first use; its offset
// is the row's durable size (bytes past it were never acknowledged and are
// cut), and its hash is recomputed from the file with a fixed-size buffer.

class Uploads {
 public:
  /// `publish_mu` is shared with GC (GcTargets::publish_mu): create() holds
  /// it shared from mkdir to row insert, commit() from rename to record.
  Uploads(Layout layout, MetaDb& meta, BlobStore& blobs, std::shared_mutex& publish_mu,
          size_t max_open_sessions);
  ~Uploads();
  Uploads(const Uploads&) = delete;
  Uploads& operator=(const Uploads&) = delete;

  /// Starts a session for `repo` (NameInvalid on a bad name): creates
  /// uploads/<id>/data, fsyncs it and records the row. Durable on return.
  /// `internal`: no client holds the id (MetaDb::insert_upload).
  Result<UploadId> create(std::string_view repo, bool internal = false);

  /// Writes `bytes` at `offset`, which must equal the session's current offset
  /// (RangeInvalid otherwise: distribution-spec answers an out-of-order chunk
  /// with 416). Returns the new offset. Not durable until flush(); feed body
  /// chunks here as they arrive, memory stays constant in the blob size.
  /// BlobUploadUnknown for an unknown id or one belonging to another repo.
  /// Cost independent of what was uploaded before: it never re-reads the
  /// file. A session not in memory (after a restart or eviction) is loaded
  /// (one SQLite read) and, unless prepare() ran, appended to without a hash,
  /// which commit() then rebuilds.
  Result<uint64_t> append(std::string_view repo, std::string_view id, uint64_t offset, std::string_view bytes);

  /// Loads the session and rebuilds its hash from the file when it is not in
  /// memory ([bulk]: run it on the work pool before feeding a request body
  /// to append(), so later appends hash incrementally). Returns the offset.
  Result<uint64_t> prepare(std::string_view repo, std::string_view id);

  /// Bytes re-read from upload files to rebuild hash state (resumed or
  /// evicted sessions), since the store opened.
  uint64_t rehashed_bytes() const;

  /// Makes everything appended so far durable (fsync + row update) and
  /// returns the offset. Call before acknowledging a PATCH.
  Result<uint64_t> flush(std::string_view repo, std::string_view id);

  /// Current offset (bytes received). Cheap: no file I/O for a session not
  /// in memory.
  Result<uint64_t> status(std::string_view repo, std::string_view id);

  /// The digest of the bytes received so far (re-hashing the file first
  /// after a restart), without committing: a pull-through fill learns that
  /// its bytes are right before the durable publish.
  Result<Digest> digest(std::string_view repo, std::string_view id);

  /// Verifies that the received bytes hash to `expected`, then fsyncs, renames
  /// into blobs/, fsyncs the directory and records the blob + repo link (and
  /// drops the session) in one SQLite transaction; only then returns.
  ///
  /// Failed-commit semantics (as CNCF distribution's PutBlobUploadComplete):
  /// - DigestInvalid (bytes hash differently) or BlobUploadInvalid (data
  ///   lost): the session is cancelled and its data deleted; nothing is
  ///   published. The client must start a new upload.
  /// - Unsupported (not a sha256 digest): nothing checked, session unchanged.
  /// - Io/Db before the rename: session unchanged, the commit can be retried.
  /// - Db after the rename: the bytes are a verified but unrecorded file (GC
  ///   reclaims it); the session is gone (BlobUploadUnknown afterwards).
  Result<Descriptor> commit(std::string_view repo, std::string_view id, const Digest& expected, Origin origin);

  /// Deletes the session and its data. BlobUploadUnknown when absent.
  Status cancel(std::string_view repo, std::string_view id);
  /// Drops what was appended past `offset` (a request body that turned out
  /// malformed: the session is left as it was before that request). Never
  /// below the durable offset (RangeInvalid); the hash is rebuilt from the
  /// file by the next prepare() or commit(). Returns the offset.
  Result<uint64_t> rewind(std::string_view repo, std::string_view id, uint64_t offset);

  // ---- used by GC and Store::open --------------------------------------
  /// Cancels the session unless it was used in memory after `cutoff_ms`.
  /// True when removed.
  Result<bool> expire(const UploadId& id, int64_t cutoff_ms);
  /// Removes entries of uploads/ that are not a live session (bad name or no
  /// row) and whose mtime is at or before `cutoff_ms`. Returns how many.
  Result<size_t> sweep_orphans(int64_t cutoff_ms);
  /// Sessions currently held in memory (bounded by max_open_sessions, except
  /// sessions with unflushed bytes, which are never evicted).
  size_t open_sessions() const;

 private:
  struct Session;
  using SessionPtr = std::shared_ptr<Session>;

  Result<SessionPtr> session(std::string_view id);
  Status load_locked(Session& s);
  Status check_repo_locked(Session& s, std::string_view repo);
  Status ensure_hash_locked(Session& s);
  void cancel_locked(Session& s);
  void forget(const UploadId& id);
  void evict_if_full_locked();

  Layout layout_;
  MetaDb& meta_;
  BlobStore& blobs_;
  std::shared_mutex& publish_mu_;
  const size_t max_open_;

  std::atomic<uint64_t> rehashed_bytes_{0};
  mutable std::mutex map_mu_;
  std::unordered_map<std::string, SessionPtr> sessions_;
};

}  // namespace outpost::store
