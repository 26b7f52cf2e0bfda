// MetaDb: opening, repositories, blobs and links, upload rows and the GC
// queries. Manifests, tags, referrers and listings are in meta_db_manifests.cpp.
#include "store/meta_db.hpp"

#include "base/reference.hpp"
#include "store/meta_schema.hpp"
#include "store/try.hpp"

namespace outpost::store {

Status check_repo_name(std::string_view repo) {
  if (!valid_repository_name(repo)) return Error(Errc::NameInvalid, "invalid repository name");
  return {};
}

Result<Digest> digest_from_db(const std::string& s) {
  auto d = Digest::parse(s);
  if (!d) return Error(Errc::Db, "corrupt digest in database: " + s);
  return d;
}

Result<std::unique_ptr<MetaDb>> MetaDb::open(const std::string& path, Clock clock, ReplayPolicy replay) {
  STORE_ASSIGN(auto db, sql::Db::open(path));
  OUTPOST_TRY(db.migrate(meta_migrations()));
  return std::unique_ptr<MetaDb>(new MetaDb(std::move(db), std::move(clock), replay));
}

// ---- helpers (mu_ held) -------------------------------------------------------

Result<std::optional<int64_t>> MetaDb::repo_id_locked(std::string_view repo) {
  STORE_ASSIGN(auto st, db_.prepare("SELECT id FROM repositories WHERE name = ?1"));
  st.bind(1, repo);
  STORE_ASSIGN(bool row, st.step());
  if (!row) return std::optional<int64_t>();
  return std::optional<int64_t>(st.col_int(0));
}

Result<int64_t> MetaDb::ensure_repo_locked(std::string_view repo) {
  OUTPOST_TRY(check_repo_name(repo));
  STORE_ASSIGN(auto ins, db_.prepare(
      "INSERT INTO repositories(name, created) VALUES(?1, ?2) ON CONFLICT(name) DO NOTHING"));
  ins.bind(1, repo).bind(2, clock_());
  OUTPOST_TRY(ins.run());
  STORE_ASSIGN(auto id, repo_id_locked(repo));
  if (!id) return Error(Errc::Db, "repository row vanished");
  return *id;
}

Result<bool> MetaDb::readable_locked(int64_t repo_id, const Digest& d) {
  STORE_ASSIGN(auto st, db_.prepare(
      "SELECT EXISTS(SELECT 1 FROM repo_blobs WHERE repo_id = ?1 AND digest = ?2)"
      "    OR EXISTS(SELECT 1 FROM manifests WHERE repo_id = ?1 AND digest = ?2)"));
  st.bind(1, repo_id).bind(2, d.str());
  STORE_ASSIGN(bool row, st.step());
  return row && st.col_int(0) != 0;
}

Result<bool> MetaDb::has_manifest_locked(int64_t repo_id, const Digest& d) {
  STORE_ASSIGN(auto st, db_.prepare("SELECT EXISTS(SELECT 1 FROM manifests WHERE repo_id = ?1 AND digest = ?2)"));
  st.bind(1, repo_id).bind(2, d.str());
  STORE_ASSIGN(bool row, st.step());
  return row && st.col_int(0) != 0;
}

Status MetaDb::link_locked(int64_t repo_id, const Digest& d, Origin origin, int64_t now) {
  // Pushed wins: a cached link re-recorded by a local push becomes 'pushed'
  // (it is then owed to the parent), never the other way round.
  STORE_ASSIGN(auto link, db_.prepare(
      "INSERT INTO repo_blobs(repo_id, digest, origin, created) VALUES(?1, ?2, ?3, ?4)"
      " ON CONFLICT(repo_id, digest) DO UPDATE SET origin ="
      "   CASE WHEN excluded.origin = 'pushed' THEN 'pushed' ELSE repo_blobs.origin END"));
  link.bind(1, repo_id).bind(2, d.str()).bind(3, origin_name(origin)).bind(4, now);
  OUTPOST_TRY(link.run());
  // A fresh link restarts the GC grace period (gc.hpp).
  STORE_ASSIGN(auto touch, db_.prepare("UPDATE blobs SET touched = ?2 WHERE digest = ?1"));
  touch.bind(1, d.str()).bind(2, now);
  return touch.run();
}

Result<std::optional<Origin>> MetaDb::origin_locked(std::string_view sql, int64_t repo_id, std::string_view key) {
  STORE_ASSIGN(auto st, db_.prepare(sql));
  st.bind(1, repo_id).bind(2, key);
  STORE_ASSIGN(bool row, st.step());
  if (!row) return std::optional<Origin>();
  return std::optional<Origin>(origin_from(st.col_text(0)));
}

Result<std::optional<Digest>> MetaDb::referencing_manifest_locked(int64_t repo_id, const Digest& d) {
  STORE_ASSIGN(auto st, db_.prepare(
      "SELECT m.digest FROM manifest_refs f JOIN manifests m ON m.id = f.manifest_id"
      " WHERE f.digest = ?2 AND m.repo_id = ?1 ORDER BY m.digest LIMIT 1"));
  st.bind(1, repo_id).bind(2, d.str());
  STORE_ASSIGN(bool row, st.step());
  if (!row) return std::optional<Digest>();
  STORE_ASSIGN(auto m, digest_from_db(st.col_text(0)));
  return std::optional<Digest>(std::move(m));
}

// ---- repositories ---------------------------------------------------------------

namespace {
// What makes repository row `r` a repository. A row alone is not one: upload
// sessions need a row to hang on (uploads.repo_id), and a push that then
// fails (bad digest, cancelled, expired) must not leave a repository behind.
constexpr std::string_view kRepoHoldsContent =
    " (EXISTS(SELECT 1 FROM repo_blobs x WHERE x.repo_id = r.id)"
    "  OR EXISTS(SELECT 1 FROM manifests m WHERE m.repo_id = r.id))";
}  // namespace

Result<std::optional<int64_t>> MetaDb::existing_repo_locked(std::string_view repo) {
  std::string q = "SELECT r.id FROM repositories r WHERE r.name = ?1 AND";
  q += kRepoHoldsContent;
  STORE_ASSIGN(auto st, db_.prepare(q));
  st.bind(1, repo);
  STORE_ASSIGN(bool row, st.step());
  if (!row) return std::optional<int64_t>();
  return std::optional<int64_t>(st.col_int(0));
}

Result<bool> MetaDb::repo_exists(std::string_view repo) {
  OUTPOST_TRY(check_repo_name(repo));
  std::lock_guard lk(mu_);
  STORE_ASSIGN(auto id, existing_repo_locked(repo));
  return id.has_value();
}

Result<size_t> MetaDb::delete_empty_repos() {
  std::lock_guard lk(mu_);
  std::string q = "DELETE FROM repositories AS r WHERE NOT";
  q += kRepoHoldsContent;
  q += " AND NOT EXISTS(SELECT 1 FROM uploads u WHERE u.repo_id = r.id)";
  STORE_ASSIGN(auto st, db_.prepare(q));
  OUTPOST_TRY(st.run());
  return static_cast<size_t>(db_.changes());
}

// ---- blobs ------------------------------------------------------------------------

Result<std::optional<uint64_t>> MetaDb::blob_size(const Digest& d) {
  std::lock_guard lk(mu_);
  STORE_ASSIGN(auto st, db_.prepare("SELECT size FROM blobs WHERE digest = ?1"));
  st.bind(1, d.str());
  STORE_ASSIGN(bool row, st.step());
  if (!row) return std::optional<uint64_t>();
  return std::optional<uint64_t>(static_cast<uint64_t>(st.col_int(0)));
}

Result<uint64_t> MetaDb::blob_size_in_repo(std::string_view repo, const Digest& d) {
  OUTPOST_TRY(check_repo_name(repo));
  std::lock_guard lk(mu_);
  STORE_ASSIGN(auto st, db_.prepare(
      "SELECT b.size FROM blobs b JOIN repositories r ON r.name = ?1"
      " WHERE b.digest = ?2 AND b.bad = 0"
      "   AND (EXISTS(SELECT 1 FROM repo_blobs x WHERE x.repo_id = r.id AND x.digest = b.digest)"
      "     OR EXISTS(SELECT 1 FROM manifests m WHERE m.repo_id = r.id AND m.digest = b.digest))"));
  st.bind(1, repo).bind(2, d.str());
  STORE_ASSIGN(bool row, st.step());
  if (!row) return Error(Errc::BlobUnknown, d.str());
  return static_cast<uint64_t>(st.col_int(0));
}

Status MetaDb::record_blob(std::string_view repo, const Descriptor& blob, Origin origin,
                           const std::optional<UploadId>& finished_upload) {
  if (!repo.empty()) OUTPOST_TRY(check_repo_name(repo));
  std::lock_guard lk(mu_);
  const int64_t now = clock_();
  STORE_ASSIGN(auto txn, sql::Txn::begin(db_));
  STORE_ASSIGN(auto up, db_.prepare(
      // Verified bytes were just published under this name: a blob a check
      // marked bad is good again (schema v4).
      "INSERT INTO blobs(digest, size, created, touched, accessed) VALUES(?1, ?2, ?3, ?3, ?3)"
      " ON CONFLICT(digest) DO UPDATE SET touched = excluded.touched, bad = 0"));
  up.bind(1, blob.digest.str()).bind(2, static_cast<int64_t>(blob.size)).bind(3, now);
  OUTPOST_TRY(up.run());
  if (!repo.empty()) {
    STORE_ASSIGN(int64_t repo_id, ensure_repo_locked(repo));
    OUTPOST_TRY(link_locked(repo_id, blob.digest, origin, now));
    if (replaying(origin)) OUTPOST_TRY(enqueue_blob_locked(repo, blob.digest, blob.size, std::nullopt, now));
  }
  if (finished_upload) {
    STORE_ASSIGN(auto del, db_.prepare("DELETE FROM uploads WHERE uuid = ?1"));
    del.bind(1, finished_upload->str());
    OUTPOST_TRY(del.run());
  }
  return txn.commit();
}

Status MetaDb::link_blob(std::string_view repo, const Digest& d, Origin origin) {
  OUTPOST_TRY(check_repo_name(repo));
  std::lock_guard lk(mu_);
  STORE_ASSIGN(auto txn, sql::Txn::begin(db_));
  STORE_ASSIGN(auto st, db_.prepare("SELECT size FROM blobs WHERE digest = ?1"));
  st.bind(1, d.str());
  STORE_ASSIGN(bool row, st.step());
  if (!row) return Error(Errc::BlobUnknown, d.str());
  const auto size = static_cast<uint64_t>(st.col_int(0));
  const int64_t now = clock_();
  STORE_ASSIGN(int64_t repo_id, ensure_repo_locked(repo));
  OUTPOST_TRY(link_locked(repo_id, d, origin, now));
  if (replaying(origin)) OUTPOST_TRY(enqueue_blob_locked(repo, d, size, std::nullopt, now));
  return txn.commit();
}

Result<uint64_t> MetaDb::mount_blob(std::string_view from, std::string_view to, const Digest& d, Origin origin) {
  OUTPOST_TRY(check_repo_name(from));
  OUTPOST_TRY(check_repo_name(to));
  std::lock_guard lk(mu_);
  STORE_ASSIGN(auto txn, sql::Txn::begin(db_));
  STORE_ASSIGN(auto from_id, repo_id_locked(from));
  if (!from_id) return Error(Errc::BlobUnknown, d.str());
  STORE_ASSIGN(bool readable, readable_locked(*from_id, d));
  if (!readable) return Error(Errc::BlobUnknown, d.str());
  STORE_ASSIGN(auto st, db_.prepare("SELECT size FROM blobs WHERE digest = ?1"));
  st.bind(1, d.str());
  STORE_ASSIGN(bool row, st.step());
  if (!row) return Error(Errc::BlobUnknown, d.str());
  const auto size = static_cast<uint64_t>(st.col_int(0));
  const int64_t now = clock_();
  STORE_ASSIGN(int64_t to_id, ensure_repo_locked(to));
  OUTPOST_TRY(link_locked(to_id, d, origin, now));
  // The source is a hint for the replayer: the parent may hold `d` in `from`.
  if (replaying(origin)) OUTPOST_TRY(enqueue_blob_locked(to, d, size, std::string(from), now));
  OUTPOST_TRY(txn.commit());
  return size;
}

Status MetaDb::unlink_blob(std::string_view repo, const Digest& d) {
  OUTPOST_TRY(check_repo_name(repo));
  std::lock_guard lk(mu_);
  STORE_ASSIGN(auto txn, sql::Txn::begin(db_));
  STORE_ASSIGN(auto repo_id, repo_id_locked(repo));
  if (!repo_id) return Error(Errc::BlobUnknown, d.str());
  // Deleting a layer out from under a live image would make the image
  // unpullable while it still lists as present: refuse, as zot does. The
  // spec's answer for a delete the registry does not allow is 405
  // UNSUPPORTED (DENIED would claim an authorization failure).
  STORE_ASSIGN(auto user, referencing_manifest_locked(*repo_id, d));
  if (user)
    return Error(Errc::Unsupported, "blob " + d.str() + " is still referenced by manifest " + user->str() +
                                        ": delete the manifest first");
  STORE_ASSIGN(auto origin, origin_locked("SELECT origin FROM repo_blobs WHERE repo_id = ?1 AND digest = ?2",
                                          *repo_id, d.str()));
  if (!origin) return Error(Errc::BlobUnknown, d.str());
  STORE_ASSIGN(auto del, db_.prepare("DELETE FROM repo_blobs WHERE repo_id = ?1 AND digest = ?2"));
  del.bind(1, *repo_id).bind(2, d.str());
  OUTPOST_TRY(del.run());
  if (db_.changes() == 0) return Error(Errc::BlobUnknown, d.str());
  // Only deletes of pushed content are owed to the parent: deleting a cached
  // copy locally must never delete the parent's original.
  if (replaying_deletes() && *origin == Origin::Pushed)
    OUTPOST_TRY(enqueue_delete_locked(ReplayKind::DeleteBlob, repo, d, std::nullopt, clock_()));
  return txn.commit();
}

// ---- uploads ------------------------------------------------------------------------

Status MetaDb::insert_upload(const UploadId& id, std::string_view repo, bool internal) {
  OUTPOST_TRY(check_repo_name(repo));
  std::lock_guard lk(mu_);
  const int64_t now = clock_();
  STORE_ASSIGN(auto txn, sql::Txn::begin(db_));
  STORE_ASSIGN(int64_t repo_id, ensure_repo_locked(repo));
  STORE_ASSIGN(auto st, db_.prepare(
      "INSERT INTO uploads(uuid, repo_id, size, created, updated, internal) VALUES(?1, ?2, 0, ?3, ?3, ?4)"));
  st.bind(1, id.str()).bind(2, repo_id).bind(3, now).bind(4, int64_t{internal ? 1 : 0});
  OUTPOST_TRY(st.run());
  return txn.commit();
}

Result<UploadRow> MetaDb::get_upload(const UploadId& id) {
  std::lock_guard lk(mu_);
  STORE_ASSIGN(auto st, db_.prepare(
      "SELECT r.name, u.size, u.created, u.updated FROM uploads u"
      " JOIN repositories r ON r.id = u.repo_id WHERE u.uuid = ?1"));
  st.bind(1, id.str());
  STORE_ASSIGN(bool row, st.step());
  if (!row) return Error(Errc::BlobUploadUnknown, id.str());
  UploadRow out;
  out.repo = st.col_text(0);
  out.size = static_cast<uint64_t>(st.col_int(1));
  out.created_ms = st.col_int(2);
  out.updated_ms = st.col_int(3);
  return out;
}

Status MetaDb::set_upload_size(const UploadId& id, uint64_t size) {
  std::lock_guard lk(mu_);
  STORE_ASSIGN(auto st, db_.prepare("UPDATE uploads SET size = ?2, updated = ?3 WHERE uuid = ?1"));
  st.bind(1, id.str()).bind(2, static_cast<int64_t>(size)).bind(3, clock_());
  OUTPOST_TRY(st.run());
  if (db_.changes() == 0) return Error(Errc::BlobUploadUnknown, id.str());
  return {};
}

Result<bool> MetaDb::delete_upload(const UploadId& id) {
  std::lock_guard lk(mu_);
  STORE_ASSIGN(auto st, db_.prepare("DELETE FROM uploads WHERE uuid = ?1"));
  st.bind(1, id.str());
  OUTPOST_TRY(st.run());
  return db_.changes() > 0;
}

Result<std::vector<UploadId>> MetaDb::stale_uploads(int64_t cutoff_ms, size_t limit) {
  std::lock_guard lk(mu_);
  STORE_ASSIGN(auto st, db_.prepare(
      "SELECT uuid FROM uploads WHERE updated <= ?1 ORDER BY updated, uuid LIMIT ?2"));
  st.bind(1, cutoff_ms).bind(2, static_cast<int64_t>(limit));
  std::vector<UploadId> out;
  for (;;) {
    STORE_ASSIGN(bool row, st.step());
    if (!row) break;
    auto id = UploadId::parse(st.col_text(0));
    if (!id) return Error(Errc::Db, "corrupt upload id in database");
    out.push_back(std::move(*id));
  }
  return out;
}

// ---- garbage collection -----------------------------------------------------------

namespace {
// The GC rule in one place: a blob is garbage when nothing names it and it
// was not touched within the grace period (gc.hpp). ?9 is the link cutoff:
// a blob only *pushed* links name, not published or linked since then, is
// the layer of a push whose manifest never came (issue #18); its links go
// with it. A read counts as a use too: a client that HEADs a layer, finds
// it and skips its upload must still find it at its manifest PUT. Every
// query using this binds ?9 (unbound, NULL would match).
constexpr std::string_view kUnreferenced =
    "     NOT EXISTS(SELECT 1 FROM repo_blobs x WHERE x.digest = b.digest"
    "                AND (x.origin = 'cached' OR MAX(b.touched, b.accessed) > ?9))"
    " AND NOT EXISTS(SELECT 1 FROM manifests m WHERE m.digest = b.digest)"
    " AND NOT EXISTS(SELECT 1 FROM manifest_refs f WHERE f.digest = b.digest)"
    // Owed to the parent: bytes a pending replay entry will send (a blob, a
    // manifest, the manifest a tag names) or that a pending manifest entry
    // references, even after the local rows naming them were deleted.
    // `+q.state`: probe replay_by_digest, not every pending entry.
    " AND NOT EXISTS(SELECT 1 FROM replay_queue q WHERE q.digest = b.digest AND +q.state = 'pending'"
    "                AND q.kind IN ('blob', 'manifest', 'tag'))"
    " AND NOT EXISTS(SELECT 1 FROM replay_deps rd JOIN replay_queue q ON q.id = rd.entry_id"
    "                WHERE rd.digest = b.digest AND q.state = 'pending' AND q.kind = 'manifest')";
}  // namespace

Result<std::vector<Descriptor>> MetaDb::gc_candidates(int64_t cutoff_ms, const std::string& after, size_t limit,
                                                       int64_t link_cutoff_ms) {
  std::lock_guard lk(mu_);
  std::string q = "SELECT b.digest, b.size FROM blobs b WHERE b.touched <= ?1 AND b.digest > ?2 AND";
  q += kUnreferenced;
  q += " ORDER BY b.digest LIMIT ?3";
  STORE_ASSIGN(auto st, db_.prepare(q));
  st.bind(1, cutoff_ms).bind(2, after).bind(3, static_cast<int64_t>(limit)).bind(9, link_cutoff_ms);
  std::vector<Descriptor> out;
  for (;;) {
    STORE_ASSIGN(bool row, st.step());
    if (!row) break;
    STORE_ASSIGN(auto d, digest_from_db(st.col_text(0)));
    out.push_back(Descriptor{std::move(d), static_cast<uint64_t>(st.col_int(1))});
  }
  return out;
}

Result<size_t> MetaDb::prune_replay_sent() {
  std::lock_guard lk(mu_);
  STORE_ASSIGN(auto st, db_.prepare(
      "DELETE FROM replay_sent AS s WHERE NOT EXISTS(SELECT 1 FROM blobs b WHERE b.digest = s.digest)"));
  OUTPOST_TRY(st.run());
  return static_cast<size_t>(db_.changes());
}

Result<bool> MetaDb::gc_delete_blob(const Digest& d, int64_t cutoff_ms, int64_t link_cutoff_ms) {
  std::lock_guard lk(mu_);
  STORE_ASSIGN(auto txn, sql::Txn::begin(db_));
  {
    std::string q = "SELECT 1 FROM blobs AS b WHERE b.digest = ?1 AND b.touched <= ?2 AND";
    q += kUnreferenced;
    STORE_ASSIGN(auto st, db_.prepare(q));
    st.bind(1, d.str()).bind(2, cutoff_ms).bind(9, link_cutoff_ms);
    STORE_ASSIGN(bool row, st.step());
    if (!row) return false;
  }
  // Only old pushed links can be left (the rule above): an abandoned push's.
  STORE_ASSIGN(auto links, db_.prepare("DELETE FROM repo_blobs WHERE digest = ?1"));
  links.bind(1, d.str());
  OUTPOST_TRY(links.run());
  STORE_ASSIGN(auto blob, db_.prepare("DELETE FROM blobs WHERE digest = ?1"));
  blob.bind(1, d.str());
  OUTPOST_TRY(blob.run());
  OUTPOST_TRY(txn.commit());
  return true;
}

}  // namespace outpost::store
