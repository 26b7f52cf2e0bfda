// The durable replay queue: what a local push owes the parent registry.
// Value types here; the queries are MetaDb methods (replay_queue.cpp), so an
// entry is inserted by the same SQLite transaction that makes the write
// visible (Decisions in README.md: "Replay queue").
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "base/digest.hpp"

namespace outpost::store {

/// Which local writes enqueue (StoreOptions::replay / replay_deletes).
struct ReplayPolicy {
  bool enabled = false;  ///< pushed writes enqueue; cached ones never do
  bool deletes = false;  ///< deletes of pushed content enqueue too (needs enabled)
};

enum class ReplayKind { Blob, Manifest, Tag, DeleteManifest, DeleteTag, DeleteBlob };
std::string_view replay_kind_name(ReplayKind k);  ///< "blob", "manifest", "tag", "delete_manifest", ...
std::optional<ReplayKind> replay_kind_from(std::string_view s);

/// Done entries are deleted (replay_done), so a row is one of these.
enum class ReplayState { Pending, Failed, Expired };
std::string_view replay_state_name(ReplayState s);  ///< "pending", "failed", "expired"

/// One queue entry. Which fields are set depends on `kind`:
///   Blob            repo, digest, size, mount_from (a mount's source repository)
///   Manifest        repo, digest, size, media_type
///   Tag             repo, tag, digest (the manifest it names), size, media_type
///   DeleteManifest  repo, digest
///   DeleteTag       repo, tag, digest (what it named when deleted)
///   DeleteBlob      repo, digest
struct ReplayEntry {
  int64_t id = 0;  ///< also the order of insertion ("seq")
  ReplayKind kind = ReplayKind::Blob;
  std::string repo;
  std::optional<Digest> digest;
  std::optional<std::string> tag;
  uint64_t size = 0;
  std::string media_type;
  std::optional<std::string> mount_from;
  ReplayState state = ReplayState::Pending;
  int64_t attempts = 0;         ///< replay_retry calls so far
  int64_t next_attempt_ms = 0;  ///< not ready before this time
  int64_t created_ms = 0;       ///< when the local write was acknowledged (TTL counts from here)
  int64_t updated_ms = 0;
  std::string error;  ///< last error (retry), or why it failed/expired
  /// Parent upload session to resume after a restart (replay_set_upload).
  std::optional<std::string> upload_url;
  uint64_t upload_offset = 0;
};

struct ReplayStats {
  uint64_t pending = 0;        ///< queue depth
  uint64_t bytes_pending = 0;  ///< sum of sizes of pending blob entries
  std::optional<int64_t> oldest_pending_ms;  ///< created_ms of the oldest pending entry
  uint64_t failed = 0;
  uint64_t expired = 0;
  uint64_t done = 0;  ///< entries acknowledged by the parent, ever
};

}  // namespace outpost::store
