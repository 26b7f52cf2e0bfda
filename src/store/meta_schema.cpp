// The metadata schema as an append-only list of migrations (PRAGMA
// user_version counts the applied ones). Never edit a shipped step: add one.
#include "store/meta_schema.hpp"

namespace outpost::store {

namespace {

// v1. Times are milliseconds since the epoch. Digests are "sha256:<hex>" text.
// origin: 'pushed' (a local client wrote it; owed to the parent, never evicted)
// or 'cached' (filled from an upstream; evictable). The replay queue and
// eviction bookkeeping arrive as later steps.
constexpr std::string_view kV1 = R"sql(
CREATE TABLE repositories (
  id      INTEGER PRIMARY KEY,
  name    TEXT NOT NULL UNIQUE,
  created INTEGER NOT NULL
);

-- One row per verified file under blobs/. A row exists only after the file was
-- renamed into place and its directory fsynced. `touched` is bumped whenever
-- the blob is published or linked again: GC never removes a blob touched
-- within its grace period.
CREATE TABLE blobs (
  digest  TEXT PRIMARY KEY,
  size    INTEGER NOT NULL CHECK (size >= 0),
  created INTEGER NOT NULL,
  touched INTEGER NOT NULL
) WITHOUT ROWID;

-- Which repository may read which blob (uploads, mounts, pull-through fills).
CREATE TABLE repo_blobs (
  repo_id INTEGER NOT NULL REFERENCES repositories(id) ON DELETE CASCADE,
  digest  TEXT    NOT NULL REFERENCES blobs(digest),
  origin  TEXT    NOT NULL CHECK (origin IN ('pushed', 'cached')),
  created INTEGER NOT NULL,
  PRIMARY KEY (repo_id, digest)
) WITHOUT ROWID;
CREATE INDEX repo_blobs_by_digest ON repo_blobs(digest);

-- A manifest's bytes are the blob `digest`; this row makes it a manifest of
-- `repo_id`. subject/artifact_type/annotations serve the referrers API.
CREATE TABLE manifests (
  id            INTEGER PRIMARY KEY,
  repo_id       INTEGER NOT NULL REFERENCES repositories(id) ON DELETE CASCADE,
  digest        TEXT    NOT NULL REFERENCES blobs(digest),
  media_type    TEXT    NOT NULL,
  size          INTEGER NOT NULL CHECK (size >= 0),
  subject       TEXT,
  artifact_type TEXT,
  annotations   TEXT,
  origin        TEXT    NOT NULL CHECK (origin IN ('pushed', 'cached')),
  created       INTEGER NOT NULL,
  UNIQUE (repo_id, digest)
);
CREATE INDEX manifests_by_digest ON manifests(digest);
CREATE INDEX manifests_by_subject ON manifests(repo_id, subject) WHERE subject IS NOT NULL;

-- Digests a manifest points at (layers, config, index children). No foreign
-- key to blobs: foreign layers are referenced without being stored.
CREATE TABLE manifest_refs (
  manifest_id INTEGER NOT NULL REFERENCES manifests(id) ON DELETE CASCADE,
  digest      TEXT    NOT NULL,
  PRIMARY KEY (manifest_id, digest)
) WITHOUT ROWID;
CREATE INDEX manifest_refs_by_digest ON manifest_refs(digest);

-- A tag can only name a manifest of its own repository; deleting the
-- manifest deletes its tags (distribution-spec: DELETE by digest untags).
CREATE TABLE tags (
  repo_id INTEGER NOT NULL,
  name    TEXT    NOT NULL,
  digest  TEXT    NOT NULL,
  origin  TEXT    NOT NULL CHECK (origin IN ('pushed', 'cached')),
  updated INTEGER NOT NULL,
  PRIMARY KEY (repo_id, name),
  FOREIGN KEY (repo_id, digest) REFERENCES manifests(repo_id, digest) ON DELETE CASCADE
) WITHOUT ROWID;
CREATE INDEX tags_by_manifest ON tags(repo_id, digest);

-- Upload sessions. `size` is the durable (acknowledged, fsynced) length of
-- uploads/<uuid>/data; bytes past it are an unacknowledged tail, cut on resume.
CREATE TABLE uploads (
  uuid    TEXT PRIMARY KEY,
  repo_id INTEGER NOT NULL REFERENCES repositories(id) ON DELETE CASCADE,
  size    INTEGER NOT NULL DEFAULT 0 CHECK (size >= 0),
  created INTEGER NOT NULL,
  updated INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX uploads_by_updated ON uploads(updated);
)sql";

// v2. The replay queue (replay_queue.hpp): local pushed writes owed to the
// parent, inserted in the transaction that makes the write visible.
// Repositories are named by text, not by id: an entry outlives the local
// rows it describes (a pushed manifest deleted before it was sent is still
// owed; GC deletes empty repository rows).
// kind: blob | manifest | tag | delete_manifest | delete_tag | delete_blob.
// state: pending | failed | expired (done entries are deleted; replay_sent
// and the 'done' counter remember them).
constexpr std::string_view kV2 = R"sql(
CREATE TABLE replay_queue (
  id            INTEGER PRIMARY KEY AUTOINCREMENT,
  kind          TEXT    NOT NULL CHECK (kind IN ('blob', 'manifest', 'tag',
                                                 'delete_manifest', 'delete_tag', 'delete_blob')),
  repo          TEXT    NOT NULL,
  digest        TEXT,
  tag           TEXT,
  size          INTEGER NOT NULL DEFAULT 0 CHECK (size >= 0),
  media_type    TEXT,
  mount_from    TEXT,
  state         TEXT    NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'failed', 'expired')),
  attempts      INTEGER NOT NULL DEFAULT 0,
  next_attempt  INTEGER NOT NULL,
  created       INTEGER NOT NULL,
  updated       INTEGER NOT NULL,
  error         TEXT,
  upload_url    TEXT,
  upload_offset INTEGER NOT NULL DEFAULT 0 CHECK (upload_offset >= 0)
);
CREATE INDEX replay_by_state ON replay_queue(state, next_attempt);
CREATE INDEX replay_by_digest ON replay_queue(digest, repo);
CREATE INDEX replay_by_tag ON replay_queue(repo, tag) WHERE tag IS NOT NULL;

-- What a manifest entry needs at the parent first (its refs and subject),
-- copied when it is enqueued: the local manifest rows may be deleted before
-- the entry is sent.
CREATE TABLE replay_deps (
  entry_id INTEGER NOT NULL REFERENCES replay_queue(id) ON DELETE CASCADE,
  digest   TEXT    NOT NULL,
  PRIMARY KEY (entry_id, digest)
) WITHOUT ROWID;
CREATE INDEX replay_deps_by_digest ON replay_deps(digest);

-- (repository, digest) pairs the parent acknowledged: mount sources for
-- later blob entries of the same digest.
CREATE TABLE replay_sent (
  digest TEXT    NOT NULL,
  repo   TEXT    NOT NULL,
  sent   INTEGER NOT NULL,
  PRIMARY KEY (digest, repo)
) WITHOUT ROWID;

-- Monotonic counters ('done': entries the parent acknowledged).
CREATE TABLE replay_counters (
  name  TEXT PRIMARY KEY,
  value INTEGER NOT NULL
) WITHOUT ROWID;
)sql";

// v3. Kept tags (sync.keep, issue #15): the (repository, tag) pairs the
// Keeper pulled in full from the parent. A pin is on the (repo, tag): what
// the local tag names now, everything that manifest references (index
// children, config, layers) and its referrers are never evicted by cache
// management (issue #18). `digest` is what the Keeper last stored under the
// tag (informative); `pattern` is the sync.keep entry that matched (status
// counts). Rows are not removed when the parent deletes the tag: the local
// tag stays until the operator removes it, and a row whose tag is gone pins
// nothing.
constexpr std::string_view kV3 = R"sql(
CREATE TABLE kept_tags (
  repo    TEXT    NOT NULL,
  tag     TEXT    NOT NULL,
  digest  TEXT    NOT NULL,
  pattern TEXT    NOT NULL,
  kept    INTEGER NOT NULL,
  PRIMARY KEY (repo, tag)
) WITHOUT ROWID;
CREATE INDEX kept_tags_by_pattern ON kept_tags(pattern);
)sql";

// v4. Cache management (issue #18).
// blobs.accessed: the last read (GET of the blob, or of the manifest it is),
// flushed in batches from memory (a crash loses recency, never data);
// eviction orders cached content by MAX(accessed, touched).
// blobs.bad: 1 once `outpost check` found the file missing or not hashing to
// its digest: never served again (reads answer BLOB_UNKNOWN / MANIFEST_UNKNOWN,
// so pull-through refetches it), cleared when verified bytes are published
// again (a fill, a re-push).
// uploads.internal: 1 for sessions whose id no client ever holds (a
// monolithic POST, a pull-through fill): a restart removes them at once
// instead of waiting for storage.upload_ttl.
constexpr std::string_view kV4 = R"sql(
ALTER TABLE blobs ADD COLUMN accessed INTEGER NOT NULL DEFAULT 0;
ALTER TABLE blobs ADD COLUMN bad INTEGER NOT NULL DEFAULT 0;
ALTER TABLE uploads ADD COLUMN internal INTEGER NOT NULL DEFAULT 0;
CREATE INDEX blobs_bad ON blobs(bad) WHERE bad != 0;
)sql";

constexpr std::string_view kSteps[] = {kV1, kV2, kV3, kV4};

}  // namespace

std::span<const std::string_view> meta_migrations() { return kSteps; }

}  // namespace outpost::store
