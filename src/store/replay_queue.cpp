// The replay queue's queries (MetaDb methods; types in replay_queue.hpp,
// schema step v2 in meta_schema.cpp, rules in README.md "Replay queue").
#include "store/replay_queue.hpp"

#include <array>
#include <limits>
#include <utility>

#include "store/meta_db.hpp"
#include "store/try.hpp"

namespace outpost::store {

namespace {

constexpr std::array<std::pair<ReplayKind, std::string_view>, 6> kKinds{{
    {ReplayKind::Blob, "blob"},
    {ReplayKind::Manifest, "manifest"},
    {ReplayKind::Tag, "tag"},
    {ReplayKind::DeleteManifest, "delete_manifest"},
    {ReplayKind::DeleteTag, "delete_tag"},
    {ReplayKind::DeleteBlob, "delete_blob"},
}};

// Walked in id order ("+e.state" keeps SQLite off replay_by_state, whose
// order would need a sort of every due entry before LIMIT applies).
// Why an entry `e` must wait for another pending entry `p` of its repository.
// Each clause is its own NOT EXISTS with plain equalities, so SQLite can use
// replay_by_digest / replay_by_tag instead of scanning the queue per entry.
//  - content: a manifest needs its refs and subject (replay_deps) sent first;
//    a tag needs the manifest entry it names (an older one: a tag is always
//    enqueued after its manifest; waiting on a re-push made after a pending
//    delete of that manifest would close a cycle tag -> manifest -> delete
//    -> tag).
//  - same key: a delete waits for older writes of the same digest (or tag),
//    and a write waits for an older delete of the same digest (or tag), so
//    the parent sees them in the order the client made them; a blob delete
//    also waits for older manifest entries (and manifest deletes) that
//    reference the blob, as the local unlink had to.
constexpr std::string_view kReady =
    " +e.state = 'pending' AND e.next_attempt <= ?1"
    " AND (e.kind != 'manifest' OR NOT EXISTS(SELECT 1 FROM replay_deps d WHERE d.entry_id = e.id"
    "      AND EXISTS(SELECT 1 FROM replay_queue p WHERE p.digest = d.digest AND p.repo = e.repo"
    "                 AND p.state = 'pending' AND p.kind IN ('blob', 'manifest') AND p.id != e.id)))"
    " AND (e.kind != 'tag' OR NOT EXISTS(SELECT 1 FROM replay_queue p"
    "      WHERE p.digest = e.digest AND p.repo = e.repo AND p.state = 'pending' AND p.kind = 'manifest'"
    "        AND p.id < e.id))"
    " AND (e.kind NOT IN ('delete_manifest', 'delete_blob') OR NOT EXISTS(SELECT 1 FROM replay_queue p"
    "      WHERE p.digest = e.digest AND p.repo = e.repo AND p.state = 'pending' AND p.id < e.id))"
    " AND (e.kind != 'delete_blob' OR NOT EXISTS(SELECT 1 FROM replay_deps d JOIN replay_queue p"
    "      ON p.id = d.entry_id WHERE d.digest = e.digest AND p.repo = e.repo AND p.state = 'pending'"
    "      AND p.id < e.id))"
    " AND (e.kind != 'delete_tag' OR NOT EXISTS(SELECT 1 FROM replay_queue p"
    "      WHERE p.repo = e.repo AND p.tag = e.tag AND p.state = 'pending' AND p.id < e.id))"
    " AND (e.kind NOT IN ('blob', 'manifest') OR NOT EXISTS(SELECT 1 FROM replay_queue p"
    "      WHERE p.digest = e.digest AND p.repo = e.repo AND p.state = 'pending' AND p.id < e.id"
    "        AND p.kind IN ('delete_manifest', 'delete_blob')))"
    " AND (e.kind != 'tag' OR NOT EXISTS(SELECT 1 FROM replay_queue p"
    "      WHERE p.repo = e.repo AND p.tag = e.tag AND p.state = 'pending' AND p.id < e.id"
    "        AND p.kind = 'delete_tag'))";

// A failed or expired entry `f` that pending entry `e` needs (content rule
// above) and that nothing else will provide: no pending entry of the same
// digest in the repository, and the parent was never sent it. Ordering
// (same-key) dependencies are not fatal: they only order, the later entry
// can still be sent.
constexpr std::string_view kDeadDep =
    " f.repo = e.repo AND +f.state IN ('failed', 'expired') AND f.kind IN ('blob', 'manifest')"
    " AND ((e.kind = 'manifest' AND f.digest IN (SELECT d.digest FROM replay_deps d WHERE d.entry_id = e.id))"
    "   OR (e.kind = 'tag' AND f.kind = 'manifest' AND f.digest = e.digest AND f.id < e.id))"
    " AND NOT EXISTS(SELECT 1 FROM replay_queue a WHERE a.digest = f.digest AND a.repo = f.repo"
    "                AND a.state = 'pending' AND a.kind IN ('blob', 'manifest'))"
    " AND NOT EXISTS(SELECT 1 FROM replay_sent s WHERE s.digest = f.digest AND s.repo = f.repo)";

constexpr std::string_view kCols =
    "e.id, e.kind, e.repo, e.digest, e.tag, e.size, e.media_type, e.mount_from, e.state, e.attempts,"
    " e.next_attempt, e.created, e.updated, e.error, e.upload_url, e.upload_offset";

ReplayState state_from(std::string_view s) {
  if (s == "failed") return ReplayState::Failed;
  if (s == "expired") return ReplayState::Expired;
  return ReplayState::Pending;
}

Result<ReplayEntry> entry_from_row(const sql::Stmt& st) {
  ReplayEntry e;
  e.id = st.col_int(0);
  auto kind = replay_kind_from(st.col_text(1));
  if (!kind) return Error(Errc::Db, "corrupt replay entry kind: " + st.col_text(1));
  e.kind = *kind;
  e.repo = st.col_text(2);
  if (!st.col_null(3)) {
    STORE_ASSIGN(auto d, digest_from_db(st.col_text(3)));
    e.digest = std::move(d);
  }
  e.tag = st.col_opt_text(4);
  e.size = static_cast<uint64_t>(st.col_int(5));
  e.media_type = st.col_opt_text(6).value_or("");
  e.mount_from = st.col_opt_text(7);
  e.state = state_from(st.col_text(8));
  e.attempts = st.col_int(9);
  e.next_attempt_ms = st.col_int(10);
  e.created_ms = st.col_int(11);
  e.updated_ms = st.col_int(12);
  e.error = st.col_opt_text(13).value_or("");
  e.upload_url = st.col_opt_text(14);
  e.upload_offset = static_cast<uint64_t>(st.col_int(15));
  return e;
}

Result<std::vector<ReplayEntry>> collect_entries(sql::Stmt& st) {
  std::vector<ReplayEntry> out;
  for (;;) {
    STORE_ASSIGN(bool row, st.step());
    if (!row) break;
    STORE_ASSIGN(auto e, entry_from_row(st));
    out.push_back(std::move(e));
  }
  return out;
}

int64_t sql_limit(size_t limit) {
  constexpr auto kMax = static_cast<size_t>(std::numeric_limits<int64_t>::max());
  return static_cast<int64_t>(std::min(limit, kMax));
}

}  // namespace

std::string_view replay_kind_name(ReplayKind k) {
  for (const auto& [kind, name] : kKinds)
    if (kind == k) return name;
  return "blob";
}

std::optional<ReplayKind> replay_kind_from(std::string_view s) {
  for (const auto& [kind, name] : kKinds)
    if (name == s) return kind;
  return std::nullopt;
}

std::string_view replay_state_name(ReplayState s) {
  switch (s) {
    case ReplayState::Pending: return "pending";
    case ReplayState::Failed: return "failed";
    case ReplayState::Expired: return "expired";
  }
  return "pending";
}

// ---- enqueueing (mu_ held, inside the write's transaction) --------------------------

Status MetaDb::enqueue_blob_locked(std::string_view repo, const Digest& d, uint64_t size,
                                   const std::optional<std::string>& mount_from, int64_t now) {
  // One pending upload of a blob per repository is enough (a client that
  // pushes a layer twice); unless a delete of it is pending in between, which
  // the parent must see in order. A later mount only adds its hint.
  STORE_ASSIGN(auto dup, db_.prepare(
      "UPDATE replay_queue SET mount_from = coalesce(mount_from, ?3)"
      " WHERE id = (SELECT max(id) FROM replay_queue WHERE digest = ?1 AND repo = ?2 AND state = 'pending'"
      "             AND kind IN ('blob', 'delete_blob', 'delete_manifest'))"
      "   AND kind = 'blob'"));
  dup.bind(1, d.str()).bind(2, repo).bind(3, mount_from);
  OUTPOST_TRY(dup.run());
  if (db_.changes() > 0) return {};
  STORE_ASSIGN(auto ins, db_.prepare(
      "INSERT INTO replay_queue(kind, repo, digest, size, mount_from, next_attempt, created, updated)"
      " VALUES('blob', ?1, ?2, ?3, ?4, ?5, ?5, ?5)"));
  ins.bind(1, repo).bind(2, d.str()).bind(3, static_cast<int64_t>(size)).bind(4, mount_from).bind(5, now);
  return ins.run();
}

Status MetaDb::enqueue_manifest_locked(std::string_view repo, const Digest& d, uint64_t size,
                                       std::string_view media_type, const std::vector<Digest>& deps, int64_t now) {
  // Never superseded: every manifest pushed is owed. An identical entry still
  // pending (the same bytes pushed twice) already covers it.
  STORE_ASSIGN(auto dup, db_.prepare(
      "SELECT kind FROM replay_queue WHERE digest = ?1 AND repo = ?2 AND state = 'pending'"
      " AND kind IN ('manifest', 'delete_manifest', 'delete_blob') ORDER BY id DESC LIMIT 1"));
  dup.bind(1, d.str()).bind(2, repo);
  STORE_ASSIGN(bool have, dup.step());
  if (have && dup.col_text(0) == "manifest") return {};
  STORE_ASSIGN(auto ins, db_.prepare(
      "INSERT INTO replay_queue(kind, repo, digest, size, media_type, next_attempt, created, updated)"
      " VALUES('manifest', ?1, ?2, ?3, ?4, ?5, ?5, ?5) RETURNING id"));
  ins.bind(1, repo).bind(2, d.str()).bind(3, static_cast<int64_t>(size)).bind(4, media_type).bind(5, now);
  STORE_ASSIGN(bool row, ins.step());
  if (!row) return Error(Errc::Db, "replay insert returned no row");
  const int64_t id = ins.col_int(0);
  OUTPOST_TRY(ins.run());
  STORE_ASSIGN(auto dep, db_.prepare(
      "INSERT INTO replay_deps(entry_id, digest) VALUES(?1, ?2) ON CONFLICT DO NOTHING"));
  for (const auto& x : deps) {
    dep.reset();
    dep.bind(1, id).bind(2, x.str());
    OUTPOST_TRY(dep.run());
  }
  return {};
}

Status MetaDb::requeue_owed_blob_locked(int64_t repo_id, std::string_view repo, const Digest& d, int64_t now) {
  // A pushed layer the parent was never sent and that nothing pending will
  // send: its entry failed (the parent refused the repository, since fixed)
  // or expired, or it was pushed while replay was off. The client skipped
  // uploading it because this registry holds it, so without a new entry the
  // manifest pushed now would reach the parent before its layer.
  STORE_ASSIGN(auto owed, db_.prepare(
      "SELECT b.size FROM repo_blobs rb JOIN blobs b ON b.digest = rb.digest"
      " WHERE rb.repo_id = ?1 AND rb.digest = ?2 AND rb.origin = 'pushed'"
      " AND NOT EXISTS(SELECT 1 FROM replay_queue q WHERE q.digest = ?2 AND q.repo = ?3 AND q.state = 'pending'"
      "                AND q.kind = 'blob')"
      " AND NOT EXISTS(SELECT 1 FROM replay_sent s WHERE s.digest = ?2 AND s.repo = ?3)"));
  owed.bind(1, repo_id).bind(2, d.str()).bind(3, repo);
  STORE_ASSIGN(bool row, owed.step());
  if (!row) return {};
  const auto size = static_cast<uint64_t>(owed.col_int(0));
  OUTPOST_TRY(owed.run());
  return enqueue_blob_locked(repo, d, size, std::nullopt, now);
}

Result<size_t> MetaDb::replay_requeue_refs(int64_t id) {
  std::lock_guard lk(mu_);
  const int64_t now = clock_();
  STORE_ASSIGN(auto txn, sql::Txn::begin(db_));
  STORE_ASSIGN(auto entry, db_.prepare(
      "SELECT e.repo, m.id FROM replay_queue e JOIN repositories r ON r.name = e.repo"
      " JOIN manifests m ON m.repo_id = r.id AND m.digest = e.digest"
      " WHERE e.id = ?1 AND e.state = 'pending' AND e.kind IN ('manifest', 'tag')"));
  entry.bind(1, id);
  STORE_ASSIGN(bool row, entry.step());
  if (!row) return size_t{0};
  const std::string repo = entry.col_text(0);
  const int64_t manifest_id = entry.col_int(1);
  OUTPOST_TRY(entry.run());
  // What the manifest references, as this registry holds it in the
  // repository: a layer or config (blob link), or an index's child manifest.
  STORE_ASSIGN(auto refs, db_.prepare(
      "SELECT f.digest, b.size, c.size, c.media_type, c.id FROM manifest_refs f"
      " JOIN manifests m ON m.id = f.manifest_id"
      " LEFT JOIN repo_blobs rb ON rb.repo_id = m.repo_id AND rb.digest = f.digest"
      " LEFT JOIN blobs b ON b.digest = rb.digest"
      " LEFT JOIN manifests c ON c.repo_id = m.repo_id AND c.digest = f.digest"
      " WHERE f.manifest_id = ?1"));
  refs.bind(1, manifest_id);
  struct Ref {
    Digest digest;
    std::optional<uint64_t> blob_size;
    std::optional<uint64_t> manifest_size;
    std::string media_type;
    int64_t manifest_id = 0;
  };
  std::vector<Ref> held;
  for (;;) {
    STORE_ASSIGN(bool more, refs.step());
    if (!more) break;
    STORE_ASSIGN(auto d, digest_from_db(refs.col_text(0)));
    Ref r{std::move(d), {}, {}, {}, 0};
    if (!refs.col_null(1)) r.blob_size = static_cast<uint64_t>(refs.col_int(1));
    if (!refs.col_null(2)) {
      r.manifest_size = static_cast<uint64_t>(refs.col_int(2));
      r.media_type = refs.col_opt_text(3).value_or("");
      r.manifest_id = refs.col_int(4);
    }
    if (r.blob_size || r.manifest_size) held.push_back(std::move(r));
  }
  STORE_ASSIGN(auto forget, db_.prepare("DELETE FROM replay_sent WHERE digest = ?1 AND repo = ?2"));
  STORE_ASSIGN(auto child_refs, db_.prepare(
      "SELECT f.digest FROM manifest_refs f WHERE f.manifest_id = ?1"
      " UNION SELECT m.subject FROM manifests m WHERE m.id = ?1 AND m.subject IS NOT NULL"));
  for (const auto& r : held) {
    // The parent lacks one of them although it may have acknowledged it
    // once (its garbage collector removed it since): send them all again.
    // A blob the parent does have costs one HEAD.
    forget.reset();
    forget.bind(1, r.digest.str()).bind(2, repo);
    OUTPOST_TRY(forget.run());
    if (r.blob_size) {
      OUTPOST_TRY(enqueue_blob_locked(repo, r.digest, *r.blob_size, std::nullopt, now));
      continue;
    }
    std::vector<Digest> deps;
    child_refs.reset();
    child_refs.bind(1, r.manifest_id);
    for (;;) {
      STORE_ASSIGN(bool more, child_refs.step());
      if (!more) break;
      STORE_ASSIGN(auto d, digest_from_db(child_refs.col_text(0)));
      deps.push_back(std::move(d));
    }
    OUTPOST_TRY(enqueue_manifest_locked(repo, r.digest, *r.manifest_size, r.media_type, deps, now));
  }
  OUTPOST_TRY(txn.commit());
  return held.size();
}

Status MetaDb::supersede_tag_locked(std::string_view repo, std::string_view tag) {
  // The parent only needs the final state: an unsent move or delete of the
  // same tag is superseded (deleted in this transaction).
  STORE_ASSIGN(auto sup, db_.prepare(
      "DELETE FROM replay_queue WHERE repo = ?1 AND tag = ?2 AND state = 'pending'"
      " AND kind IN ('tag', 'delete_tag')"));
  sup.bind(1, repo).bind(2, tag);
  return sup.run();
}

Status MetaDb::enqueue_tag_locked(std::string_view repo, std::string_view tag, const Digest& d, int64_t now) {
  OUTPOST_TRY(supersede_tag_locked(repo, tag));
  STORE_ASSIGN(auto ins, db_.prepare(
      "INSERT INTO replay_queue(kind, repo, digest, tag, size, media_type, next_attempt, created, updated)"
      " SELECT 'tag', ?1, ?2, ?3, m.size, m.media_type, ?4, ?4, ?4"
      " FROM manifests m JOIN repositories r ON r.id = m.repo_id WHERE r.name = ?1 AND m.digest = ?2"));
  ins.bind(1, repo).bind(2, d.str()).bind(3, tag).bind(4, now);
  OUTPOST_TRY(ins.run());
  if (db_.changes() != 1) return Error(Errc::Db, "tag names no manifest row: " + d.str());
  return {};
}

Status MetaDb::enqueue_delete_locked(ReplayKind kind, std::string_view repo, const Digest& d,
                                     const std::optional<std::string>& tag, int64_t now) {
  if (kind == ReplayKind::DeleteTag && tag) OUTPOST_TRY(supersede_tag_locked(repo, *tag));
  STORE_ASSIGN(auto ins, db_.prepare(
      "INSERT INTO replay_queue(kind, repo, digest, tag, next_attempt, created, updated)"
      " VALUES(?1, ?2, ?3, ?4, ?5, ?5, ?5) RETURNING id"));
  ins.bind(1, replay_kind_name(kind)).bind(2, repo).bind(3, d.str()).bind(4, tag).bind(5, now);
  STORE_ASSIGN(bool row, ins.step());
  if (!row) return Error(Errc::Db, "replay insert returned no row");
  const int64_t id = ins.col_int(0);
  OUTPOST_TRY(ins.run());
  if (kind == ReplayKind::DeleteManifest) {
    // What the manifest referenced (its rows are about to go): a later
    // delete_blob of one of them waits for this delete, as the local delete
    // of that blob had to.
    STORE_ASSIGN(auto deps, db_.prepare(
        "INSERT INTO replay_deps(entry_id, digest)"
        " SELECT ?1, f.digest FROM manifest_refs f JOIN manifests m ON m.id = f.manifest_id"
        " JOIN repositories r ON r.id = m.repo_id WHERE r.name = ?2 AND m.digest = ?3"
        " ON CONFLICT DO NOTHING"));
    deps.bind(1, id).bind(2, repo).bind(3, d.str());
    OUTPOST_TRY(deps.run());
  }
  return {};
}

Status MetaDb::cascade_failures_locked(int64_t now, const std::optional<std::string>& repo) {
  if (repo) {
    // The common case on a push: nothing failed in the repository, so the
    // write pays one indexed probe, not a pass over its pending entries.
    STORE_ASSIGN(auto any, db_.prepare(
        "SELECT EXISTS(SELECT 1 FROM replay_queue WHERE state IN ('failed', 'expired') AND repo = ?1)"));
    any.bind(1, *repo);
    STORE_ASSIGN(bool row, any.step());
    if (!row || any.col_int(0) == 0) return {};
  }
  std::string q =
      "UPDATE replay_queue AS e SET state = 'failed', updated = ?1, next_attempt = ?1,"
      " error = (SELECT 'depends on ' || f.state || ' entry ' || f.id FROM replay_queue f WHERE";
  q += kDeadDep;
  q += " ORDER BY f.id LIMIT 1)"
       " WHERE e.state = 'pending' AND e.kind IN ('manifest', 'tag') AND (?2 IS NULL OR e.repo = ?2)"
       " AND EXISTS(SELECT 1 FROM replay_queue f WHERE";
  q += kDeadDep;
  q += ")";
  // Each round fails at least one more entry or ends; dependency chains are
  // short (blob -> manifest -> index -> tag, referrers of referrers), and the
  // bound is only a guard.
  for (int round = 0; round < 1000; ++round) {
    STORE_ASSIGN(auto st, db_.prepare(q));
    st.bind(1, now).bind(2, repo);
    OUTPOST_TRY(st.run());
    if (db_.changes() == 0) return {};
  }
  return {};
}

// ---- reading and advancing ------------------------------------------------------------

Result<std::vector<ReplayEntry>> MetaDb::replay_next(int64_t now_ms, size_t limit) {
  std::lock_guard lk(mu_);
  std::string q = "SELECT ";
  q += kCols;
  q += " FROM replay_queue e WHERE";
  q += kReady;
  q += " ORDER BY e.id LIMIT ?2";
  STORE_ASSIGN(auto st, db_.prepare(q));
  st.bind(1, now_ms).bind(2, sql_limit(limit));
  return collect_entries(st);
}

Result<std::optional<ReplayEntry>> MetaDb::replay_get(int64_t id) {
  std::lock_guard lk(mu_);
  std::string q = "SELECT ";
  q += kCols;
  q += " FROM replay_queue e WHERE e.id = ?1";
  STORE_ASSIGN(auto st, db_.prepare(q));
  st.bind(1, id);
  STORE_ASSIGN(auto rows, collect_entries(st));
  if (rows.empty()) return std::optional<ReplayEntry>();
  return std::optional<ReplayEntry>(std::move(rows.front()));
}

Result<bool> MetaDb::replay_done(int64_t id) {
  std::lock_guard lk(mu_);
  const int64_t now = clock_();
  STORE_ASSIGN(auto txn, sql::Txn::begin(db_));
  // Any state: the parent's acknowledgement wins over an expiry that raced it.
  STORE_ASSIGN(auto del, db_.prepare("DELETE FROM replay_queue WHERE id = ?1 RETURNING kind, repo, digest, tag"));
  del.bind(1, id);
  STORE_ASSIGN(bool row, del.step());
  if (!row) return false;
  const std::string kind = del.col_text(0);
  const std::string repo = del.col_text(1);
  const auto digest = del.col_opt_text(2);
  const auto tag = del.col_opt_text(3);
  OUTPOST_TRY(del.run());
  // Older failed or expired entries of the same write are answered by this
  // one (the image was pushed again once the cause was fixed): no longer a
  // problem to report. For a tag, any older value: the parent now has the
  // newest.
  // Two plain forms, so SQLite uses replay_by_tag / replay_by_digest: this
  // runs for every entry the parent acknowledges.
  const bool by_tag = kind == "tag" || kind == "delete_tag";
  STORE_ASSIGN(auto moot, db_.prepare(
      by_tag ? "DELETE FROM replay_queue WHERE repo = ?2 AND tag = ?3 AND kind = ?1 AND state IN ('failed', 'expired')"
             : "DELETE FROM replay_queue WHERE digest = ?3 AND repo = ?2 AND kind = ?1 AND state IN ('failed', 'expired')"));
  moot.bind(1, kind).bind(2, repo).bind(3, by_tag ? tag : digest);
  OUTPOST_TRY(moot.run());
  if ((kind == "blob" || kind == "manifest") && digest) {
    STORE_ASSIGN(auto sent, db_.prepare(
        "INSERT INTO replay_sent(digest, repo, sent) VALUES(?1, ?2, ?3)"
        " ON CONFLICT(digest, repo) DO UPDATE SET sent = excluded.sent"));
    sent.bind(1, *digest).bind(2, repo).bind(3, now);
    OUTPOST_TRY(sent.run());
  } else if (kind == "delete_manifest" || kind == "delete_blob") {
    // Gone at the parent: no longer a mount source there.
    STORE_ASSIGN(auto gone, db_.prepare("DELETE FROM replay_sent WHERE digest = ?1 AND repo = ?2"));
    gone.bind(1, digest).bind(2, repo);
    OUTPOST_TRY(gone.run());
  }
  STORE_ASSIGN(auto count, db_.prepare(
      "INSERT INTO replay_counters(name, value) VALUES('done', 1)"
      " ON CONFLICT(name) DO UPDATE SET value = value + 1"));
  OUTPOST_TRY(count.run());
  OUTPOST_TRY(txn.commit());
  return true;
}

Result<bool> MetaDb::replay_retry(int64_t id, int64_t next_attempt_ms, std::string_view error) {
  std::lock_guard lk(mu_);
  STORE_ASSIGN(auto st, db_.prepare(
      "UPDATE replay_queue SET attempts = attempts + 1, next_attempt = ?2, error = ?3, updated = ?4"
      " WHERE id = ?1 AND state = 'pending'"));
  st.bind(1, id).bind(2, next_attempt_ms).bind(3, error).bind(4, clock_());
  OUTPOST_TRY(st.run());
  return db_.changes() > 0;
}

Result<bool> MetaDb::replay_failed(int64_t id, std::string_view error) {
  std::lock_guard lk(mu_);
  const int64_t now = clock_();
  STORE_ASSIGN(auto txn, sql::Txn::begin(db_));
  STORE_ASSIGN(auto st, db_.prepare(
      "UPDATE replay_queue SET state = 'failed', error = ?2, updated = ?3 WHERE id = ?1 AND state = 'pending'"));
  st.bind(1, id).bind(2, error).bind(3, now);
  OUTPOST_TRY(st.run());
  if (db_.changes() == 0) return false;
  OUTPOST_TRY(cascade_failures_locked(now));
  OUTPOST_TRY(txn.commit());
  return true;
}

Result<size_t> MetaDb::replay_expire(int64_t now_ms, int64_t ttl_ms) {
  std::lock_guard lk(mu_);
  STORE_ASSIGN(auto txn, sql::Txn::begin(db_));
  STORE_ASSIGN(auto st, db_.prepare(
      "UPDATE replay_queue SET state = 'expired', updated = ?1,"
      " error = 'not replayed within the message TTL' || coalesce(' (last error: ' || error || ')', '')"
      " WHERE state = 'pending' AND created < ?1 - ?2"));
  st.bind(1, now_ms).bind(2, ttl_ms);
  OUTPOST_TRY(st.run());
  const auto expired = static_cast<size_t>(db_.changes());
  if (expired > 0) OUTPOST_TRY(cascade_failures_locked(now_ms));
  OUTPOST_TRY(txn.commit());
  return expired;
}

Result<bool> MetaDb::replay_set_upload(int64_t id, std::string_view upload_url, uint64_t offset) {
  std::lock_guard lk(mu_);
  STORE_ASSIGN(auto st, db_.prepare(
      "UPDATE replay_queue SET upload_url = ?2, upload_offset = ?3, updated = ?4"
      " WHERE id = ?1 AND state = 'pending'"));
  st.bind(1, id).bind(3, static_cast<int64_t>(offset)).bind(4, clock_());
  if (upload_url.empty())
    st.bind_null(2);  // forget the session (the parent lost it)
  else
    st.bind(2, upload_url);
  OUTPOST_TRY(st.run());
  return db_.changes() > 0;
}

Result<ReplayStats> MetaDb::replay_stats() {
  std::lock_guard lk(mu_);
  STORE_ASSIGN(auto st, db_.prepare(
      "SELECT"
      "  (SELECT count(*) FROM replay_queue WHERE state = 'pending'),"
      "  (SELECT coalesce(sum(size), 0) FROM replay_queue WHERE state = 'pending' AND kind = 'blob'),"
      "  (SELECT min(created) FROM replay_queue WHERE state = 'pending'),"
      "  (SELECT count(*) FROM replay_queue WHERE state = 'failed'),"
      "  (SELECT count(*) FROM replay_queue WHERE state = 'expired'),"
      "  (SELECT coalesce(max(value), 0) FROM replay_counters WHERE name = 'done')"));
  STORE_ASSIGN(bool row, st.step());
  if (!row) return Error(Errc::Db, "replay stats returned no row");
  ReplayStats s;
  s.pending = static_cast<uint64_t>(st.col_int(0));
  s.bytes_pending = static_cast<uint64_t>(st.col_int(1));
  if (!st.col_null(2)) s.oldest_pending_ms = st.col_int(2);
  s.failed = static_cast<uint64_t>(st.col_int(3));
  s.expired = static_cast<uint64_t>(st.col_int(4));
  s.done = static_cast<uint64_t>(st.col_int(5));
  return s;
}

Result<std::vector<ReplayEntry>> MetaDb::replay_problems(size_t limit) {
  std::lock_guard lk(mu_);
  std::string q = "SELECT ";
  q += kCols;
  q += " FROM replay_queue e WHERE e.state IN ('failed', 'expired') ORDER BY e.updated DESC, e.id DESC LIMIT ?1";
  STORE_ASSIGN(auto st, db_.prepare(q));
  st.bind(1, sql_limit(limit));
  return collect_entries(st);
}

Result<std::optional<std::string>> MetaDb::replay_mount_source(const Digest& d, std::string_view exclude) {
  std::lock_guard lk(mu_);
  STORE_ASSIGN(auto sent, db_.prepare(
      "SELECT repo FROM replay_sent WHERE digest = ?1 AND repo != ?2 ORDER BY sent DESC, repo LIMIT 1"));
  sent.bind(1, d.str()).bind(2, exclude);
  STORE_ASSIGN(bool row, sent.step());
  if (row) return std::optional<std::string>(sent.col_text(0));
  STORE_ASSIGN(auto hint, db_.prepare(
      "SELECT mount_from FROM replay_queue WHERE digest = ?1 AND mount_from IS NOT NULL AND mount_from != ?2"
      " ORDER BY id DESC LIMIT 1"));
  hint.bind(1, d.str()).bind(2, exclude);
  STORE_ASSIGN(row, hint.step());
  if (row) return std::optional<std::string>(hint.col_text(0));
  return std::optional<std::string>();
}

}  // namespace outpost::store
