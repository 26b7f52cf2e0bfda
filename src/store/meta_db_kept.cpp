// MetaDb: the kept_tags table (sync.keep pins, schema v3 in meta_schema.cpp).
// The Keeper records what it pulled in full; eviction asks is_pinned.
#include <algorithm>

#include "base/reference.hpp"
#include "store/meta_db.hpp"
#include "store/try.hpp"

namespace outpost::store {


Status MetaDb::pin_tag(std::string_view repo, std::string_view tag, const Digest& d, std::string_view pattern) {
  OUTPOST_TRY(check_repo_name(repo));
  if (!valid_tag(tag)) return Error(Errc::TagInvalid, "invalid tag");
  std::lock_guard lk(mu_);
  STORE_ASSIGN(auto st, db_.prepare(
      "INSERT INTO kept_tags(repo, tag, digest, pattern, kept) VALUES(?1, ?2, ?3, ?4, ?5)"
      " ON CONFLICT(repo, tag) DO UPDATE SET digest = excluded.digest, pattern = excluded.pattern,"
      "   kept = excluded.kept"));
  st.bind(1, repo).bind(2, tag).bind(3, d.str()).bind(4, pattern).bind(5, clock_());
  return st.run();
}

Result<std::optional<KeptTag>> MetaDb::kept_tag(std::string_view repo, std::string_view tag) {
  std::lock_guard lk(mu_);
  STORE_ASSIGN(auto st, db_.prepare("SELECT digest, pattern, kept FROM kept_tags WHERE repo = ?1 AND tag = ?2"));
  st.bind(1, repo).bind(2, tag);
  STORE_ASSIGN(bool row, st.step());
  if (!row) return std::optional<KeptTag>();
  STORE_ASSIGN(auto d, digest_from_db(st.col_text(0)));
  return std::optional<KeptTag>(KeptTag{std::string(repo), std::string(tag), std::move(d), st.col_text(1), st.col_int(2)});
}

Result<uint64_t> MetaDb::count_kept(std::string_view pattern) {
  std::lock_guard lk(mu_);
  // Only tags that still exist here: one the operator deleted keeps nothing.
  STORE_ASSIGN(auto st, db_.prepare(
      "SELECT COUNT(*) FROM kept_tags k JOIN repositories r ON r.name = k.repo"
      " JOIN tags t ON t.repo_id = r.id AND t.name = k.tag WHERE k.pattern = ?1"));
  st.bind(1, pattern);
  STORE_ASSIGN(bool row, st.step());
  return row ? static_cast<uint64_t>(st.col_int(0)) : 0;
}

Result<uint64_t> MetaDb::unpin_patterns_except(const std::vector<std::string>& patterns) {
  std::lock_guard lk(mu_);
  // A handful of patterns: read the distinct ones, delete the others one by
  // one (no variable-length IN list to bind).
  std::vector<std::string> gone;
  {
    STORE_ASSIGN(auto st, db_.prepare("SELECT DISTINCT pattern FROM kept_tags"));
    for (;;) {
      STORE_ASSIGN(bool row, st.step());
      if (!row) break;
      std::string p = st.col_text(0);
      if (std::find(patterns.begin(), patterns.end(), p) == patterns.end()) gone.push_back(std::move(p));
    }
  }
  uint64_t dropped = 0;
  for (const auto& p : gone) {
    STORE_ASSIGN(auto del, db_.prepare("DELETE FROM kept_tags WHERE pattern = ?1"));
    del.bind(1, p);
    OUTPOST_TRY(del.run());
    dropped += static_cast<uint64_t>(db_.changes());
  }
  return dropped;
}

Result<bool> MetaDb::is_pinned(std::string_view repo, const Digest& d) {
  std::lock_guard lk(mu_);
  // The closure of the manifests the kept tags name NOW (a tag deleted
  // locally pins nothing): their refs, recursively, and the manifests whose
  // subject is in the set (referrers), with their refs in turn. UNION (not
  // UNION ALL) makes the recursion stop on a cycle.
  STORE_ASSIGN(auto st, db_.prepare(
      "WITH RECURSIVE r(id) AS (SELECT id FROM repositories WHERE name = ?1),"
      " pinned(digest) AS ("
      "   SELECT t.digest FROM kept_tags k JOIN tags t ON t.name = k.tag"
      "     WHERE k.repo = ?1 AND t.repo_id = (SELECT id FROM r)"
      "   UNION"
      "   SELECT mr.digest FROM pinned p"
      "     JOIN manifests m ON m.repo_id = (SELECT id FROM r) AND m.digest = p.digest"
      "     JOIN manifest_refs mr ON mr.manifest_id = m.id"
      "   UNION"
      "   SELECT m.digest FROM pinned p"
      "     JOIN manifests m ON m.repo_id = (SELECT id FROM r) AND m.subject = p.digest)"
      " SELECT 1 FROM pinned WHERE digest = ?2 LIMIT 1"));
  st.bind(1, repo).bind(2, d.str());
  STORE_ASSIGN(bool row, st.step());
  return row;
}

}  // namespace outpost::store
