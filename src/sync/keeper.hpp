// sync::Keeper: refreshes the kept repositories (sync.keep, issue #15) in a
// sync window: lists the matching repositories and tags at the parent and
// pulls every matching tag completely (all platforms, every blob, referrers)
// into the store as cached content, pinned. Talks to the parent through the
// pull-through cache's background entry points (one fetch per digest,
// verified, shared with clients). Knows nothing of windows or schedules:
// the window coordinator calls refresh() and cancel().
#pragma once
#include <uv.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "base/result.hpp"
#include "sync/keep_pattern.hpp"

namespace outpost::storesvc { class StoreService; }
namespace outpost::cache { class PullThrough; }

namespace outpost::sync {

struct KeeperOptions {
  /// Blobs pulled at the same time within one tag (each one upstream GET,
  /// streamed into an upload session).
  size_t max_parallel_blobs = 3;
  /// `n` of the parent's paginated listings (catalog, tags/list).
  size_t page_size = 100;
  /// Bounds of one pass, against a parent that never stops paginating:
  /// pages per listing, and manifests walked per tag (index children,
  /// referrers and their children).
  size_t max_pages = 1000;
  size_t max_manifests_per_tag = 1000;
  /// Wall-clock ms for KeepStatus::last_refresh_ms; null = the system clock.
  std::function<int64_t()> clock;
};

/// One sync.keep pattern as the Keeper last saw it.
struct KeepStatus {
  std::string pattern;          ///< the sync.keep entry, as written
  int64_t last_refresh_ms = 0;  ///< wall ms when its last pass reached the end of its listing; 0 = never
  uint64_t tags = 0;            ///< tags kept (pinned) for it in the store, deleted-at-parent ones included
  std::string last_error;       ///< what failed in its last pass ("" = nothing)
};

/// Loop-thread only (construct, call and destroy it on the loop thread).
/// `store` and `pull` must outlive the Keeper; the parent is
/// pull.mutable_parent() (no parent: every pass fails, said in last_error).
///
/// A pass, per pattern in order:
///  1. repositories: a literal repository is taken as it is; a glob walks
///     the parent's /v2/_catalog (paginated) and filters it (a parent
///     without a catalog is reported in last_error);
///  2. tags: /v2/<repo>/tags/list (paginated), filtered by the tag glob;
///  3. per tag: the manifest by tag (stored under the tag: a tag that moved
///     at the parent moves here; a tag gone at the parent is left alone),
///     every child of an index, every blob not held (max_parallel_blobs at
///     once, streamed and verified by cache::Fill), and the referrers of
///     every manifest (/v2/<repo>/referrers/<digest>; a parent without the
///     API is asked for the OCI 1.1 fallback tag "sha256-<hex>"; neither
///     existing means no referrers), with their content;
///  4. the tag is pinned (store::Store::pin_tag) once all of it is held.
/// A tag whose local copy was pushed here is left alone (what was pushed
/// here is authoritative here, as for pull-through) but pinned.
/// A failure of one tag is recorded and the pass goes on with the next.
class Keeper {
 public:
  Keeper(uv_loop_t* loop, storesvc::StoreService& store, cache::PullThrough& pull, std::vector<KeepPattern> patterns,
         KeeperOptions opts = {});
  /// Cancels a pass in flight (its done fires with Cancelled).
  ~Keeper();
  Keeper(const Keeper&) = delete;
  Keeper& operator=(const Keeper&) = delete;

  /// One pass over every pattern. `done` runs once, on the loop: Ok when
  /// every pattern was refreshed without error, else the first error (each
  /// pattern's own is in status()); Cancelled after cancel(); Overloaded at
  /// once when a pass is already running. With no patterns: Ok at once.
  void refresh(std::function<void(Status)> done);
  /// The window closed or the process stops: the pass in flight ends now
  /// (its done(Cancelled) runs before this returns); requests of its own in
  /// flight are cancelled; fills it started go on for the cache. No-op when
  /// idle.
  void cancel();
  bool busy() const { return pass_ != nullptr; }
  /// One entry per pattern, in configuration order. `tags` starts from the
  /// pins earlier runs left in the store (counted right after construction).
  std::vector<KeepStatus> status() const;
  /// SIGHUP changed sync.keep (issue #17): the next pass walks `patterns`
  /// (a pass in flight ends on the old list first). Status entries of
  /// patterns still listed are kept; the pins of patterns no longer listed
  /// are dropped from the store, so that content may be evicted again.
  void set_patterns(std::vector<KeepPattern> patterns);

  struct Pass;
  struct TagJob;

 private:
  friend struct Pass;
  friend struct TagJob;
  void next_pattern(const std::shared_ptr<Pass>& p);
  void list_repositories(const std::shared_ptr<Pass>& p, std::string path);
  void next_repository(const std::shared_ptr<Pass>& p);
  void list_tags(const std::shared_ptr<Pass>& p, std::string path);
  void next_tag(const std::shared_ptr<Pass>& p);
  void keep_tag(const std::shared_ptr<Pass>& p, const std::string& repo, const std::string& tag);
  void tag_done(const std::shared_ptr<Pass>& p, const std::string& tag, Result<std::string> digest);
  void pattern_done(const std::shared_ptr<Pass>& p, bool listed);
  void finish(const std::shared_ptr<Pass>& p);
  int64_t now_ms() const;
  void apply_patterns(std::vector<KeepPattern> patterns);
  /// status_ entries never refreshed get their tag count from the pins.
  void count_pins_from_store();

  uv_loop_t* loop_;
  storesvc::StoreService& store_;
  cache::PullThrough& pull_;
  std::vector<KeepPattern> patterns_;
  std::optional<std::vector<KeepPattern>> pending_;  ///< set_patterns during a pass
  KeeperOptions opts_;
  std::vector<KeepStatus> status_;
  std::shared_ptr<Pass> pass_;
  /// Expires with the Keeper: store jobs of the constructor check it.
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace outpost::sync
