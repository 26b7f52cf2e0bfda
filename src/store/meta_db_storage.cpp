// MetaDb: cache management queries (issue #18): access times, usage by
// origin, eviction candidates and removals, and what `outpost check` reads
// and marks. Schema v4 (meta_schema.cpp) added blobs.accessed/bad and
// uploads.internal.
#include <cstdint>
#include <limits>

#include "store/meta_db.hpp"
#include "store/try.hpp"

namespace outpost::store {

namespace {
// The LRU key of a blob: its last read, or its last publish/link when later
// (content just filled counts as just used).
constexpr std::string_view kLru = "MAX(b.accessed, b.touched)";

// No manifest of the repository lists `digest` (?1 repo id, ?2 digest).
constexpr std::string_view kUnlistedInRepo =
    " NOT EXISTS(SELECT 1 FROM manifest_refs f JOIN manifests p ON p.id = f.manifest_id"
    "            WHERE p.repo_id = ?1 AND f.digest = ?2)";
}  // namespace

Status MetaDb::record_access(const std::vector<std::pair<Digest, int64_t>>& batch) {
  if (batch.empty()) return {};
  std::lock_guard lk(mu_);
  STORE_ASSIGN(auto txn, sql::Txn::begin(db_));
  STORE_ASSIGN(auto st, db_.prepare("UPDATE blobs SET accessed = ?2 WHERE digest = ?1 AND accessed < ?2"));
  for (const auto& [d, ms] : batch) {
    st.reset();
    st.bind(1, d.str()).bind(2, ms);
    OUTPOST_TRY(st.run());
  }
  return txn.commit();
}

Result<StorageUsage> MetaDb::storage_usage(bool by_origin) {
  std::lock_guard lk(mu_);
  StorageUsage u;
  {
    STORE_ASSIGN(auto st, db_.prepare(
        "SELECT COALESCE(SUM(size), 0), COUNT(*), COALESCE(SUM(bad != 0), 0) FROM blobs"));
    STORE_ASSIGN(bool row, st.step());
    if (row) {
      u.total = static_cast<uint64_t>(st.col_int(0));
      u.blobs = static_cast<uint64_t>(st.col_int(1));
      u.bad = static_cast<uint64_t>(st.col_int(2));
    }
  }
  if (!by_origin) return u;
  {
    STORE_ASSIGN(auto st, db_.prepare(
        "SELECT COALESCE(SUM(b.size), 0) FROM blobs b WHERE"
        "    EXISTS(SELECT 1 FROM repo_blobs x WHERE x.digest = b.digest AND x.origin = 'pushed')"
        " OR EXISTS(SELECT 1 FROM manifests m WHERE m.digest = b.digest AND m.origin = 'pushed')"
        // `+q.state`: without it SQLite probes replay_by_state and walks
        // every pending entry per blob (10 s at 100k blobs and 1,000
        // pending entries; 0.3 s with replay_by_digest).
        " OR EXISTS(SELECT 1 FROM replay_queue q WHERE q.digest = b.digest AND +q.state = 'pending')"));
    STORE_ASSIGN(bool row, st.step());
    if (row) u.pushed = static_cast<uint64_t>(st.col_int(0));
  }
  u.cached = u.total >= u.pushed ? u.total - u.pushed : 0;
  {
    // The same closure as is_pinned, over every kept tag at once.
    STORE_ASSIGN(auto st, db_.prepare(
        "WITH RECURSIVE pinned(repo_id, digest) AS ("
        "   SELECT t.repo_id, t.digest FROM kept_tags k JOIN repositories r ON r.name = k.repo"
        "     JOIN tags t ON t.repo_id = r.id AND t.name = k.tag"
        "   UNION"
        "   SELECT m.repo_id, mr.digest FROM pinned p"
        "     JOIN manifests m ON m.repo_id = p.repo_id AND m.digest = p.digest"
        "     JOIN manifest_refs mr ON mr.manifest_id = m.id"
        "   UNION"
        "   SELECT m.repo_id, m.digest FROM pinned p"
        "     JOIN manifests m ON m.repo_id = p.repo_id AND m.subject = p.digest)"
        " SELECT COALESCE(SUM(b.size), 0) FROM blobs b WHERE b.digest IN (SELECT digest FROM pinned)"));
    STORE_ASSIGN(bool row, st.step());
    if (row) u.kept = static_cast<uint64_t>(st.col_int(0));
  }
  return u;
}

Result<std::vector<EvictCandidate>> MetaDb::evict_manifest_candidates(int64_t cutoff_ms, int64_t after_lru,
                                                                      int64_t after_id, size_t limit) {
  std::lock_guard lk(mu_);
  std::string q = "SELECT r.name, m.repo_id, m.id, m.digest, ";
  q += kLru;
  q += " AS lru, b.size FROM manifests m JOIN repositories r ON r.id = m.repo_id"
       " JOIN blobs b ON b.digest = m.digest"
       " WHERE m.origin = 'cached' AND lru <= ?1 AND (lru > ?2 OR (lru = ?2 AND m.id > ?3))"
       "   AND NOT EXISTS(SELECT 1 FROM manifest_refs f JOIN manifests p ON p.id = f.manifest_id"
       "                  WHERE p.repo_id = m.repo_id AND f.digest = m.digest)"
       "   AND NOT EXISTS(SELECT 1 FROM tags t WHERE t.repo_id = m.repo_id AND t.digest = m.digest"
       "                  AND t.origin = 'pushed')"
       " ORDER BY lru, m.id LIMIT ?4";
  STORE_ASSIGN(auto st, db_.prepare(q));
  st.bind(1, cutoff_ms).bind(2, after_lru).bind(3, after_id).bind(4, static_cast<int64_t>(limit));
  std::vector<EvictCandidate> out;
  for (;;) {
    STORE_ASSIGN(bool row, st.step());
    if (!row) break;
    STORE_ASSIGN(auto d, digest_from_db(st.col_text(3)));
    out.push_back(EvictCandidate{st.col_text(0), st.col_int(1), st.col_int(2), std::move(d), st.col_int(4),
                                 static_cast<uint64_t>(st.col_int(5))});
  }
  return out;
}

Result<std::optional<std::vector<Digest>>> MetaDb::evict_manifest(const EvictCandidate& c) {
  using Out = std::optional<std::vector<Digest>>;
  std::lock_guard lk(mu_);
  STORE_ASSIGN(auto txn, sql::Txn::begin(db_));
  {
    // Still what the candidate query saw: cached, unlisted, no pushed tag,
    // not read since (a GET meanwhile makes it recent again).
    std::string q = "SELECT 1 FROM manifests m JOIN blobs b ON b.digest = m.digest"
                    " WHERE m.id = ?3 AND m.origin = 'cached' AND ";
    q += kLru;
    q += " <= ?4 AND";
    q += kUnlistedInRepo;
    q += " AND NOT EXISTS(SELECT 1 FROM tags t WHERE t.repo_id = ?1 AND t.digest = ?2 AND t.origin = 'pushed')";
    STORE_ASSIGN(auto st, db_.prepare(q));
    st.bind(1, c.repo_id).bind(2, c.digest.str()).bind(3, c.id).bind(4, c.lru_ms);
    STORE_ASSIGN(bool row, st.step());
    if (!row) return Out();
  }
  std::vector<Digest> touched{c.digest};
  {
    STORE_ASSIGN(auto st, db_.prepare("SELECT digest FROM manifest_refs WHERE manifest_id = ?1"));
    st.bind(1, c.id);
    for (;;) {
      STORE_ASSIGN(bool row, st.step());
      if (!row) break;
      STORE_ASSIGN(auto d, digest_from_db(st.col_text(0)));
      touched.push_back(std::move(d));
    }
  }
  {
    // Tags and refs go with it (foreign-key cascades).
    STORE_ASSIGN(auto st, db_.prepare("DELETE FROM manifests WHERE id = ?1"));
    st.bind(1, c.id);
    OUTPOST_TRY(st.run());
  }
  std::string q = "DELETE FROM repo_blobs WHERE repo_id = ?1 AND digest = ?2 AND origin = 'cached' AND";
  q += kUnlistedInRepo;
  q += " AND NOT EXISTS(SELECT 1 FROM manifests m WHERE m.repo_id = ?1 AND m.digest = ?2)";
  STORE_ASSIGN(auto unlink, db_.prepare(q));
  for (size_t i = 1; i < touched.size(); ++i) {
    unlink.reset();
    unlink.bind(1, c.repo_id).bind(2, touched[i].str());
    OUTPOST_TRY(unlink.run());
  }
  OUTPOST_TRY(txn.commit());
  return Out(std::move(touched));
}

Result<std::vector<EvictCandidate>> MetaDb::evict_link_candidates(int64_t cutoff_ms, size_t limit) {
  std::lock_guard lk(mu_);
  std::string q = "SELECT r.name, x.repo_id, x.digest, ";
  q += kLru;
  q += " AS lru, b.size FROM repo_blobs x JOIN repositories r ON r.id = x.repo_id"
       " JOIN blobs b ON b.digest = x.digest"
       " WHERE x.origin = 'cached' AND lru <= ?1"
       "   AND NOT EXISTS(SELECT 1 FROM manifest_refs f JOIN manifests p ON p.id = f.manifest_id"
       "                  WHERE p.repo_id = x.repo_id AND f.digest = x.digest)"
       " ORDER BY lru, x.repo_id, x.digest LIMIT ?2";
  STORE_ASSIGN(auto st, db_.prepare(q));
  st.bind(1, cutoff_ms).bind(2, static_cast<int64_t>(limit));
  std::vector<EvictCandidate> out;
  for (;;) {
    STORE_ASSIGN(bool row, st.step());
    if (!row) break;
    STORE_ASSIGN(auto d, digest_from_db(st.col_text(2)));
    out.push_back(EvictCandidate{st.col_text(0), st.col_int(1), 0, std::move(d), st.col_int(3),
                                 static_cast<uint64_t>(st.col_int(4))});
  }
  return out;
}

Result<bool> MetaDb::evict_link(const EvictCandidate& c) {
  std::lock_guard lk(mu_);
  std::string q = "DELETE FROM repo_blobs WHERE repo_id = ?1 AND digest = ?2 AND origin = 'cached' AND";
  q += kUnlistedInRepo;
  q += " AND (SELECT ";
  q += kLru;
  q += " FROM blobs b WHERE b.digest = ?2) <= ?3";
  STORE_ASSIGN(auto st, db_.prepare(q));
  st.bind(1, c.repo_id).bind(2, c.digest.str()).bind(3, c.lru_ms);
  OUTPOST_TRY(st.run());
  return db_.changes() > 0;
}

Result<std::vector<BlobRow>> MetaDb::blob_rows(const std::string& after, size_t limit) {
  std::lock_guard lk(mu_);
  STORE_ASSIGN(auto st, db_.prepare("SELECT digest, size, bad FROM blobs WHERE digest > ?1 ORDER BY digest LIMIT ?2"));
  st.bind(1, after).bind(2, static_cast<int64_t>(limit));
  std::vector<BlobRow> out;
  for (;;) {
    STORE_ASSIGN(bool row, st.step());
    if (!row) break;
    STORE_ASSIGN(auto d, digest_from_db(st.col_text(0)));
    out.push_back(BlobRow{std::move(d), static_cast<uint64_t>(st.col_int(1)), st.col_int(2) != 0});
  }
  return out;
}

Result<bool> MetaDb::blob_is_bad(const Digest& d) {
  std::lock_guard lk(mu_);
  STORE_ASSIGN(auto st, db_.prepare("SELECT bad FROM blobs WHERE digest = ?1"));
  st.bind(1, d.str());
  STORE_ASSIGN(bool row, st.step());
  return row && st.col_int(0) != 0;
}

Status MetaDb::set_blob_bad(const Digest& d, bool bad) {
  std::lock_guard lk(mu_);
  STORE_ASSIGN(auto st, db_.prepare("UPDATE blobs SET bad = ?2 WHERE digest = ?1"));
  st.bind(1, d.str()).bind(2, int64_t{bad ? 1 : 0});
  return st.run();
}

Result<bool> MetaDb::is_pushed(const Digest& d) {
  std::lock_guard lk(mu_);
  STORE_ASSIGN(auto st, db_.prepare(
      "SELECT EXISTS(SELECT 1 FROM repo_blobs WHERE digest = ?1 AND origin = 'pushed')"
      "    OR EXISTS(SELECT 1 FROM manifests WHERE digest = ?1 AND origin = 'pushed')"
      "    OR EXISTS(SELECT 1 FROM replay_queue WHERE digest = ?1 AND +state = 'pending')"));
  st.bind(1, d.str());
  STORE_ASSIGN(bool row, st.step());
  return row && st.col_int(0) != 0;
}

Result<std::vector<std::pair<std::string, std::string>>> MetaDb::tags_on_bad(size_t limit) {
  std::lock_guard lk(mu_);
  STORE_ASSIGN(auto st, db_.prepare(
      "SELECT r.name, t.name FROM tags t JOIN repositories r ON r.id = t.repo_id"
      " JOIN blobs b ON b.digest = t.digest WHERE b.bad != 0 ORDER BY r.name, t.name LIMIT ?1"));
  st.bind(1, static_cast<int64_t>(limit));
  std::vector<std::pair<std::string, std::string>> out;
  for (;;) {
    STORE_ASSIGN(bool row, st.step());
    if (!row) break;
    out.emplace_back(st.col_text(0), st.col_text(1));
  }
  return out;
}

Result<uint64_t> MetaDb::count_unreferenced() {
  STORE_ASSIGN(auto c, gc_candidates(std::numeric_limits<int64_t>::max(), "", 1u << 20));
  return static_cast<uint64_t>(c.size());
}

Result<std::vector<UploadId>> MetaDb::internal_uploads() {
  std::lock_guard lk(mu_);
  STORE_ASSIGN(auto st, db_.prepare("SELECT uuid FROM uploads WHERE internal != 0"));
  std::vector<UploadId> out;
  for (;;) {
    STORE_ASSIGN(bool row, st.step());
    if (!row) break;
    if (auto id = UploadId::parse(st.col_text(0))) out.push_back(*id);
  }
  return out;
}

}  // namespace outpost::store
