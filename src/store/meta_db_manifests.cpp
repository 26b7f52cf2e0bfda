// MetaDb: manifests, tags, referrers and the paginated listings (catalog,
// tags/list). Repository/blob/upload queries are in meta_db.cpp.
#include <limits>

#include "base/reference.hpp"
#include "store/meta_db.hpp"
#include "store/try.hpp"

namespace outpost::store {

namespace {

// LIMIT for a page: one row more than asked tells whether another page exists
// (the API turns that into a Link header). -1 is SQLite's "no limit".
int64_t sql_limit(const PageRequest& p) {
  if (!p.n) return -1;
  constexpr uint64_t kMax = static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) - 1;
  return static_cast<int64_t>(std::min(*p.n, kMax)) + 1;
}

template <typename T>
bool trim_page(std::vector<T>& items, const PageRequest& p) {
  if (p.n && items.size() > *p.n) {
    items.resize(*p.n);
    return true;
  }
  return false;
}

Result<Page> collect_names(sql::Stmt& st, const PageRequest& p) {
  Page page;
  for (;;) {
    STORE_ASSIGN(bool row, st.step());
    if (!row) break;
    page.items.push_back(st.col_text(0));
  }
  page.has_more = trim_page(page.items, p);
  return page;
}

Status check_tag(std::string_view tag) {
  if (!valid_tag(tag)) return Error(Errc::TagInvalid, "invalid tag");
  return {};
}

constexpr std::string_view kManifestCols =
    "m.digest, m.media_type, m.size, m.subject, m.artifact_type, m.annotations, m.origin, m.created";

Result<ManifestInfo> manifest_from_row(const sql::Stmt& st) {
  ManifestInfo mi;
  STORE_ASSIGN(mi.digest, digest_from_db(st.col_text(0)));
  mi.media_type = st.col_text(1);
  mi.size = static_cast<uint64_t>(st.col_int(2));
  if (!st.col_null(3)) {
    STORE_ASSIGN(auto subject, digest_from_db(st.col_text(3)));
    mi.subject = std::move(subject);
  }
  mi.artifact_type = st.col_opt_text(4);
  mi.annotations = st.col_opt_text(5);
  mi.origin = origin_from(st.col_text(6));
  mi.created_ms = st.col_int(7);
  return mi;
}

}  // namespace

// ---- manifests ------------------------------------------------------------------

Result<ManifestInfo> MetaDb::put_manifest(const ManifestPut& m, uint64_t size) {
  OUTPOST_TRY(check_repo_name(m.repo));
  if (m.tag) OUTPOST_TRY(check_tag(*m.tag));
  std::lock_guard lk(mu_);
  const int64_t now = clock_();
  STORE_ASSIGN(auto txn, sql::Txn::begin(db_));

  STORE_ASSIGN(auto blob, db_.prepare(
      "INSERT INTO blobs(digest, size, created, touched, accessed) VALUES(?1, ?2, ?3, ?3, ?3)"
      " ON CONFLICT(digest) DO UPDATE SET touched = excluded.touched, bad = 0"));
  blob.bind(1, m.digest.str()).bind(2, static_cast<int64_t>(size)).bind(3, now);
  OUTPOST_TRY(blob.run());
  STORE_ASSIGN(int64_t repo_id, ensure_repo_locked(m.repo));

  // distribution-spec "Pushing Manifests": every blob/manifest the manifest
  // names must already be in the repository, else MANIFEST_BLOB_UNKNOWN.
  // Checked inside the transaction, so a concurrent unlink cannot slip between.
  for (const auto& ref : m.refs) {
    if (!ref.required) continue;
    STORE_ASSIGN(bool ok, ref.is_manifest ? has_manifest_locked(repo_id, ref.digest) : readable_locked(repo_id, ref.digest));
    if (!ok) return Error(Errc::ManifestBlobUnknown, ref.digest.str());
  }

  std::optional<std::string> subject;
  if (m.subject) subject = m.subject->str();
  STORE_ASSIGN(auto ins, db_.prepare(
      "INSERT INTO manifests(repo_id, digest, media_type, size, subject, artifact_type, annotations,"
      "                      origin, created)"
      " VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"
      " ON CONFLICT(repo_id, digest) DO UPDATE SET"
      "   media_type = excluded.media_type, subject = excluded.subject,"
      "   artifact_type = excluded.artifact_type, annotations = excluded.annotations,"
      "   origin = CASE WHEN excluded.origin = 'pushed' THEN 'pushed' ELSE manifests.origin END"
      " RETURNING id, origin, created"));
  ins.bind(1, repo_id).bind(2, m.digest.str()).bind(3, m.media_type).bind(4, static_cast<int64_t>(size));
  ins.bind(5, subject).bind(6, m.artifact_type).bind(7, m.annotations).bind(8, origin_name(m.origin));
  ins.bind(9, now);
  STORE_ASSIGN(bool row, ins.step());
  if (!row) return Error(Errc::Db, "manifest upsert returned no row");
  const int64_t manifest_id = ins.col_int(0);
  ManifestInfo out;
  out.digest = m.digest;
  out.media_type = m.media_type;
  out.size = size;
  out.subject = m.subject;
  out.artifact_type = m.artifact_type;
  out.annotations = m.annotations;
  out.origin = origin_from(ins.col_text(1));
  out.created_ms = ins.col_int(2);
  OUTPOST_TRY(ins.run());  // finish the statement before the next write

  STORE_ASSIGN(auto clear, db_.prepare("DELETE FROM manifest_refs WHERE manifest_id = ?1"));
  clear.bind(1, manifest_id);
  OUTPOST_TRY(clear.run());
  STORE_ASSIGN(auto ref, db_.prepare(
      "INSERT INTO manifest_refs(manifest_id, digest) VALUES(?1, ?2) ON CONFLICT DO NOTHING"));
  for (const auto& r : m.refs) {
    ref.reset();
    ref.bind(1, manifest_id).bind(2, r.digest.str());
    OUTPOST_TRY(ref.run());
  }

  if (m.tag) {
    STORE_ASSIGN(auto tag, db_.prepare(
        "INSERT INTO tags(repo_id, name, digest, origin, updated) VALUES(?1, ?2, ?3, ?4, ?5)"
        " ON CONFLICT(repo_id, name) DO UPDATE SET digest = excluded.digest,"
        "   origin = excluded.origin, updated = excluded.updated"));
    tag.bind(1, repo_id).bind(2, *m.tag).bind(3, m.digest.str()).bind(4, origin_name(m.origin)).bind(5, now);
    OUTPOST_TRY(tag.run());
  }
  if (replaying(m.origin)) {
    // A layer the pushing client skipped because this registry already held
    // it as pull-through content (a HEAD links a cached blob into the
    // repository, api/blobs.cpp) has no blob entry: the parent may lack it
    // in this repository. Promote such links to pushed and queue the blob
    // before the manifest, with another repository caching it as a mount
    // hint (the parent served it there). Issue #15: the parent must never
    // refuse a replayed manifest for a missing blob.
    STORE_ASSIGN(auto cached, db_.prepare(
        "SELECT b.size, (SELECT r.name FROM repo_blobs o JOIN repositories r ON r.id = o.repo_id"
        "                WHERE o.digest = rb.digest AND o.repo_id <> rb.repo_id AND o.origin = 'cached' LIMIT 1)"
        " FROM repo_blobs rb JOIN blobs b ON b.digest = rb.digest"
        " WHERE rb.repo_id = ?1 AND rb.digest = ?2 AND rb.origin = 'cached'"));
    STORE_ASSIGN(auto promote, db_.prepare(
        "UPDATE repo_blobs SET origin = 'pushed' WHERE repo_id = ?1 AND digest = ?2"));
    for (const auto& r : m.refs) {
      if (!r.required) continue;
      cached.reset();
      cached.bind(1, repo_id).bind(2, r.digest.str());
      STORE_ASSIGN(bool is_cached, cached.step());
      if (!is_cached) {
        OUTPOST_TRY(requeue_owed_blob_locked(repo_id, m.repo, r.digest, now));
        continue;
      }
      const auto bsize = static_cast<uint64_t>(cached.col_int(0));
      std::optional<std::string> hint;
      if (!cached.col_null(1)) hint = cached.col_text(1);
      OUTPOST_TRY(cached.run());
      promote.reset();
      promote.bind(1, repo_id).bind(2, r.digest.str());
      OUTPOST_TRY(promote.run());
      OUTPOST_TRY(enqueue_blob_locked(m.repo, r.digest, bsize, hint, now));
    }
    std::vector<Digest> deps;
    deps.reserve(m.refs.size() + 1);
    // Foreign layers (not required) are deps too: harmless, nothing pending
    // ever has their digest unless they were pushed after all.
    for (const auto& r : m.refs) deps.push_back(r.digest);
    if (m.subject) deps.push_back(*m.subject);
    OUTPOST_TRY(enqueue_manifest_locked(m.repo, m.digest, size, m.media_type, deps, now));
    if (m.tag) OUTPOST_TRY(enqueue_tag_locked(m.repo, *m.tag, m.digest, now));
    OUTPOST_TRY(cascade_failures_locked(now, m.repo));
  }
  OUTPOST_TRY(txn.commit());
  return out;
}

Result<ManifestInfo> MetaDb::get_manifest(std::string_view repo, const Digest& d) {
  OUTPOST_TRY(check_repo_name(repo));
  std::lock_guard lk(mu_);
  std::string q = "SELECT ";
  q += kManifestCols;
  q += " FROM manifests m JOIN repositories r ON r.id = m.repo_id WHERE r.name = ?1 AND m.digest = ?2";
  // A manifest whose bytes failed a check is not served (schema v4 `bad`):
  // unknown here, so pull-through fetches it again from the parent.
  q += " AND NOT EXISTS(SELECT 1 FROM blobs b WHERE b.digest = m.digest AND b.bad != 0)";
  STORE_ASSIGN(auto st, db_.prepare(q));
  st.bind(1, repo).bind(2, d.str());
  STORE_ASSIGN(bool row, st.step());
  if (!row) return Error(Errc::ManifestUnknown, d.str());
  return manifest_from_row(st);
}

Status MetaDb::delete_manifest(std::string_view repo, const Digest& d) {
  OUTPOST_TRY(check_repo_name(repo));
  std::lock_guard lk(mu_);
  STORE_ASSIGN(auto txn, sql::Txn::begin(db_));
  STORE_ASSIGN(auto repo_id, repo_id_locked(repo));
  if (!repo_id) return Error(Errc::ManifestUnknown, d.str());
  // An index that lists this manifest would dangle: refuse until the index
  // itself is deleted (zot does the same), with 405 UNSUPPORTED as for a
  // referenced blob. Referrers (subject) may dangle by spec.
  STORE_ASSIGN(auto user, referencing_manifest_locked(*repo_id, d));
  if (user)
    return Error(Errc::Unsupported, "manifest " + d.str() + " is still referenced by index " + user->str() +
                                        ": delete the index first");
  STORE_ASSIGN(auto origin, origin_locked("SELECT origin FROM manifests WHERE repo_id = ?1 AND digest = ?2",
                                          *repo_id, d.str()));
  if (!origin) return Error(Errc::ManifestUnknown, d.str());
  // Only pushed content: a local delete of a cached copy never reaches the
  // parent. Enqueued before the rows go: the entry copies the manifest's refs.
  if (replaying_deletes() && *origin == Origin::Pushed)
    OUTPOST_TRY(enqueue_delete_locked(ReplayKind::DeleteManifest, repo, d, std::nullopt, clock_()));
  // Tags and refs go with it through ON DELETE CASCADE.
  STORE_ASSIGN(auto del, db_.prepare("DELETE FROM manifests WHERE repo_id = ?1 AND digest = ?2"));
  del.bind(1, *repo_id).bind(2, d.str());
  OUTPOST_TRY(del.run());
  if (db_.changes() == 0) return Error(Errc::ManifestUnknown, d.str());
  return txn.commit();
}

// ---- tags -----------------------------------------------------------------------

Status MetaDb::put_tag(std::string_view repo, std::string_view tag, const Digest& d, Origin origin) {
  OUTPOST_TRY(check_repo_name(repo));
  OUTPOST_TRY(check_tag(tag));
  std::lock_guard lk(mu_);
  STORE_ASSIGN(auto txn, sql::Txn::begin(db_));
  STORE_ASSIGN(auto repo_id, repo_id_locked(repo));
  if (!repo_id) return Error(Errc::ManifestUnknown, d.str());
  STORE_ASSIGN(auto has, db_.prepare("SELECT 1 FROM manifests WHERE repo_id = ?1 AND digest = ?2"));
  has.bind(1, *repo_id).bind(2, d.str());
  STORE_ASSIGN(bool row, has.step());
  if (!row) return Error(Errc::ManifestUnknown, d.str());
  STORE_ASSIGN(auto st, db_.prepare(
      "INSERT INTO tags(repo_id, name, digest, origin, updated) VALUES(?1, ?2, ?3, ?4, ?5)"
      " ON CONFLICT(repo_id, name) DO UPDATE SET digest = excluded.digest,"
      "   origin = excluded.origin, updated = excluded.updated"));
  const int64_t now = clock_();
  st.bind(1, *repo_id).bind(2, tag).bind(3, d.str()).bind(4, origin_name(origin)).bind(5, now);
  OUTPOST_TRY(st.run());
  if (replaying(origin)) {
    OUTPOST_TRY(enqueue_tag_locked(repo, tag, d, now));
    OUTPOST_TRY(cascade_failures_locked(now, std::string(repo)));
  }
  return txn.commit();
}

Result<Digest> MetaDb::get_tag(std::string_view repo, std::string_view tag) {
  OUTPOST_TRY(check_repo_name(repo));
  OUTPOST_TRY(check_tag(tag));
  std::lock_guard lk(mu_);
  STORE_ASSIGN(auto st, db_.prepare(
      "SELECT t.digest FROM tags t JOIN repositories r ON r.id = t.repo_id WHERE r.name = ?1 AND t.name = ?2"));
  st.bind(1, repo).bind(2, tag);
  STORE_ASSIGN(bool row, st.step());
  if (!row) return Error(Errc::ManifestUnknown, "tag " + std::string(tag) + " not found");
  return digest_from_db(st.col_text(0));
}

Status MetaDb::delete_tag(std::string_view repo, std::string_view tag) {
  OUTPOST_TRY(check_repo_name(repo));
  OUTPOST_TRY(check_tag(tag));
  std::lock_guard lk(mu_);
  STORE_ASSIGN(auto txn, sql::Txn::begin(db_));
  STORE_ASSIGN(auto old, db_.prepare(
      "DELETE FROM tags WHERE repo_id = (SELECT id FROM repositories WHERE name = ?1) AND name = ?2"
      " RETURNING digest, origin"));
  old.bind(1, repo).bind(2, tag);
  STORE_ASSIGN(bool row, old.step());
  if (!row) return Error(Errc::ManifestUnknown, "tag " + std::string(tag) + " not found");
  STORE_ASSIGN(auto named, digest_from_db(old.col_text(0)));
  const Origin origin = origin_from(old.col_text(1));
  OUTPOST_TRY(old.run());  // finish the statement before the next write
  // Only pushed tags: a local delete of a cached tag never reaches the parent.
  if (replaying_deletes() && origin == Origin::Pushed)
    OUTPOST_TRY(enqueue_delete_locked(ReplayKind::DeleteTag, repo, named, std::string(tag), clock_()));
  return txn.commit();
}

// ---- listings ---------------------------------------------------------------------

Result<Page> MetaDb::list_tags(std::string_view repo, const PageRequest& page) {
  OUTPOST_TRY(check_repo_name(repo));
  std::lock_guard lk(mu_);
  STORE_ASSIGN(auto repo_id, existing_repo_locked(repo));
  if (!repo_id) return Error(Errc::NameUnknown, std::string(repo));
  if (page.n && *page.n == 0) return Page{};
  // Byte-wise (BINARY) order is the spec's "lexical order" for ASCII tags.
  STORE_ASSIGN(auto st, db_.prepare(
      "SELECT name FROM tags WHERE repo_id = ?1 AND name > ?2 ORDER BY name LIMIT ?3"));
  st.bind(1, *repo_id).bind(2, page.last).bind(3, sql_limit(page));
  return collect_names(st, page);
}

Result<Page> MetaDb::catalog(const PageRequest& page) {
  std::lock_guard lk(mu_);
  if (page.n && *page.n == 0) return Page{};
  // A repository appears once it holds a manifest: rows created by an upload
  // that never became an image are not listed.
  STORE_ASSIGN(auto st, db_.prepare(
      "SELECT name FROM repositories r WHERE name > ?1"
      " AND EXISTS(SELECT 1 FROM manifests m WHERE m.repo_id = r.id) ORDER BY name LIMIT ?2"));
  st.bind(1, page.last).bind(2, sql_limit(page));
  return collect_names(st, page);
}

Result<ReferrerPage> MetaDb::referrers(std::string_view repo, const Digest& subject,
                                       const std::optional<std::string>& artifact_type, const PageRequest& page) {
  OUTPOST_TRY(check_repo_name(repo));
  std::lock_guard lk(mu_);
  ReferrerPage out;
  if (page.n && *page.n == 0) return out;
  STORE_ASSIGN(auto st, db_.prepare(
      "SELECT m.digest, m.media_type, m.size, m.artifact_type, m.annotations"
      " FROM manifests m JOIN repositories r ON r.id = m.repo_id"
      " WHERE r.name = ?1 AND m.subject = ?2 AND (?3 IS NULL OR m.artifact_type = ?3) AND m.digest > ?4"
      " ORDER BY m.digest LIMIT ?5"));
  st.bind(1, repo).bind(2, subject.str()).bind(3, artifact_type).bind(4, page.last).bind(5, sql_limit(page));
  for (;;) {
    STORE_ASSIGN(bool row, st.step());
    if (!row) break;
    Referrer r;
    STORE_ASSIGN(r.digest, digest_from_db(st.col_text(0)));
    r.media_type = st.col_text(1);
    r.size = static_cast<uint64_t>(st.col_int(2));
    r.artifact_type = st.col_opt_text(3);
    r.annotations = st.col_opt_text(4);
    out.items.push_back(std::move(r));
  }
  out.has_more = trim_page(out.items, page);
  return out;
}

}  // namespace outpost::store
