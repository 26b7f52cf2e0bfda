// Pull-through caching in front of the store: decides per request whether
// the local copy answers (content by digest: always; a tag: while it was
// checked within tag_ttl) or the upstream must be asked, coalesces
// concurrent misses (one manifest fetch per reference, one Fill per blob),
// and keeps what it fetched (Origin::Cached). Serves the local copy when the
// upstream fails.
#pragma once
#include <uv.h>

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "base/digest.hpp"
#include "cache/fill.hpp"
#include "cache/hot_manifests.hpp"
#include "cache/route.hpp"
#include "http/exchange.hpp"
#include "store/types.hpp"
#include "upstream/registry_client.hpp"

namespace outpost::storesvc { class StoreService; }

namespace outpost::cache {

/// sync.pull_through (issue #15): may a client's miss (content not held
/// here) be fetched from the parent?
///   Always    yes, in a sync window or not (the default)
///   InWindow  only while a sync window is open; outside one the miss is
///             answered as an offline miss is
///   Never     never on demand (only what the sync window keeps arrives)
/// Whatever the policy, outside a window no cached tag is revalidated: it is
/// served as it is.
enum class PullPolicy { Always, InWindow, Never };

struct PullOptions {
  uint64_t tag_ttl_ms = 60'000;  ///< a tag is revalidated with HEAD at most this often
  uint64_t revalidate_wait_ms = 1'000;  ///< then served from cache; the check goes on
  uint64_t max_manifest_bytes = 4 * 1024 * 1024;
  /// registry.mode = "ReadOnly": nobody pushes here, so a blob HEAD miss may
  /// ask the parent. In ReadWrite mode a HEAD is a pushing client's "do you
  /// have it?", answered from the store alone.
  bool read_only = false;
  PullPolicy pull_policy = PullPolicy::Always;
  /// Whether a sync window is open now (called on the loop thread, on
  /// misses and expired tags only). Null: sync is continuous, always open.
  std::function<bool()> in_window;
};

struct ManifestResult {
  store::ManifestInfo info;
  std::string bytes;
  /// Served from the cache without the parent's confirmation (it is
  /// offline, failing or slow): the API says so in a response header.
  bool offline = false;
  /// Seconds since the parent last confirmed this tag (offline answers).
  std::optional<uint64_t> tag_age_s;
};

struct PullStats {
  uint64_t served_offline = 0;   ///< answers given from cache because the parent could not confirm
  uint64_t offline_misses = 0;   ///< misses refused at once because the parent is offline
  uint64_t fills_started = 0;
  uint64_t fills_committed = 0;
  uint64_t fills_failed = 0;
  uint64_t manifest_fetches = 0;
  uint64_t revalidations = 0;
  uint64_t window_misses = 0;           ///< misses refused by sync.pull_through outside a window (or "never")
  uint64_t revalidations_skipped = 0;   ///< expired tags served unchecked because no window was open
};

class PullThrough {
 public:
  /// `store` and `loop` must outlive this object.
  PullThrough(uv_loop_t* loop, storesvc::StoreService* store, PullOptions opts);
  ~PullThrough();

  /// The parent serves every repository not claimed by a named upstream.
  /// Upstreams aimed at one origin share its health (upstream::Link).
  void set_parent(std::shared_ptr<upstream::RegistryClient> c);
  /// A named mirror, chosen by ?ns=<name> or a "<name>/" path prefix.
  void add_upstream(std::shared_ptr<upstream::RegistryClient> c);
  /// SIGHUP (issue #17): routes from now on go to `parent` and `named`
  /// (either may be empty); work in flight holds its Route, so it finishes
  /// on the upstream it started with.
  void replace_upstreams(std::shared_ptr<upstream::RegistryClient> parent,
                         std::vector<std::shared_ptr<upstream::RegistryClient>> named);
  const PullOptions& options() const { return opts_; }
  bool enabled() const { return parent_ || !named_.empty(); }
  /// Local manifest reads go through `m` (it must outlive this object's
  /// store jobs); without one, each is a store job of its own.
  void set_memo(HotManifests* m) { memo_ = m; }
  /// Process shutdown: no new upstream requests from here on.
  void shutdown();

  // ---- sync windows (issue #15); loop thread -------------------------------
  /// Replaces PullOptions::in_window / pull_policy (the scheduler is built
  /// after the cache).
  void set_in_window(std::function<bool()> fn) { opts_.in_window = std::move(fn); }
  void set_pull_policy(PullPolicy p) { opts_.pull_policy = p; }
  /// True when no window gate is set or the gate says a window is open.
  bool in_window() const { return !opts_.in_window || opts_.in_window(); }
  /// Whether a client's miss may be fetched now (pull_policy and in_window()).
  bool may_fetch_miss() const;
  /// Upstream::Link::set_background_allowed on every upstream: no probe
  /// while false.
  void set_background_allowed(bool allowed);

  /// Route for a request's repository name and optional ?ns= value.
  std::optional<Route> route(const std::string& name, const std::optional<std::string>& ns) const;

  using ManifestDone = std::function<void(Result<ManifestResult>)>;
  /// Resolves `reference` (tag or digest) through the cache.
  void manifest(const Route& r, const std::string& reference, bool want_bytes, ManifestDone done);
  /// The cached manifest for `reference` when manifest() would answer it
  /// at once and unchanged (memoized, current, and fresh by the same rules:
  /// pushed, by digest, tag checked within tag_ttl, or outside a window);
  /// null otherwise, and then manifest() decides. No callback, no copy: the
  /// hot path of a cached manifest GET. Valid until the next call into the
  /// cache.
  const HotManifest* hot_manifest(const Route& r, const std::string& reference);

  /// Answers a blob request: the local file when held, else a Fill.
  void blob(const Route& r, const Digest& d, const http::ExchangePtr& ex);

  /// Referrers of `subject` from the upstream (raw index JSON), or an error.
  void referrers(const Route& r, const Digest& subject, const std::string& query,
                 std::function<void(Result<std::string>)> done);

  // ---- background pulls (sync.keep, issue #15); loop thread ---------------
  // For sync::Keeper, which runs inside a sync window: these bypass
  // sync.pull_through, the window gate and the tag TTL (they are not a
  // client's miss), but share everything else with client pulls: the
  // coalescing tables, digest verification, Origin::Cached storage and the
  // parent's health (an offline parent fails them at once).
  /// Fetches `reference` (a tag or a digest) from r.upstream and stores it
  /// in r.local_repo, under the tag when it is one (moving the local tag to
  /// what the parent names now). Coalesced with a client fetch in flight.
  void keep_manifest(const Route& r, const std::string& reference, ManifestDone done);
  /// Pulls blob `d` into r.local_repo through a Fill (streamed into an
  /// upload session, verified, committed), joining one already in flight.
  /// done(Ok) once `d` is readable in r.local_repo; done(error) when the
  /// fill failed (bytes that do not verify are never stored). The caller
  /// checks the store first: this always asks the parent.
  void keep_blob(const Route& r, const Digest& d, std::function<void(Status)> done);

  size_t fills_in_flight() const { return fills_.size(); }
  const PullStats& stats() const { return stats_; }
  PullStats& mutable_stats() { return stats_; }
  /// The [parent] (null when only named upstreams are configured).
  const upstream::RegistryClient* parent() const { return parent_.get(); }
  upstream::RegistryClient* mutable_parent() { return parent_.get(); }
  /// The parent as an owner: background work keeps the one it started on.
  std::shared_ptr<upstream::RegistryClient> parent_shared() const { return parent_; }
  /// Every configured upstream (parent first), for metrics and status.
  std::vector<const upstream::RegistryClient*> upstreams() const;

 private:
  void fetch_manifest(const Route& r, const std::string& reference, bool want_bytes, ManifestDone done);
  std::string fetch_key(const Route& r, const std::string& reference) const;
  void revalidate(const Route& r, const std::string& tag, ManifestResult local, bool want_bytes, ManifestDone done);
  void local_manifest(const Route& r, const std::string& reference, bool want_bytes,
                      std::function<void(Result<ManifestResult>)> done);
  void head_blob(const Route& r, const Digest& d, const http::ExchangePtr& ex);
  /// A GET of `d` in r.local_repo while `fill` fetches it for another
  /// repository: served from the fill once the parent confirms (HEAD) that
  /// r's repository holds it; its 404 is the client's. (The caller checked
  /// that the parent may be asked now.)
  void join_fill_of_other_repo(const Route& r, const Digest& d, const http::ExchangePtr& ex, std::shared_ptr<Fill> fill);
  /// A new Fill of `d` in fills_ (started by the caller).
  std::shared_ptr<Fill> new_fill(const Route& r, const Digest& d);
  void share_link(upstream::RegistryClient& c);
  std::string tag_key(const Route& r, const std::string& tag) const { return r.local_repo + ":" + tag; }
  /// What a locally held manifest needs before it is answered (the
  /// freshness rules of manifest(), in one place for manifest_now() too).
  enum class LocalVerdict { Offline, Serve, ServeOutsideWindow, Revalidate };
  LocalVerdict local_verdict(const Route& r, const std::string& reference, store::Origin origin) const;
  ManifestResult offline_answer(const Route& r, const std::string& tag, ManifestResult local);
  /// The error of a miss that sync.pull_through keeps from the parent.
  Error window_miss(const std::string& what) const;
  /// One-shot timer; closed by the destructor if still pending.
  void after_ms(uint64_t ms, std::function<void()> fn);
  struct Timer {
    uv_timer_t t;
    std::function<void()> fn;
    PullThrough* owner;
  };
  std::unordered_set<Timer*> timers_;

  uv_loop_t* loop_;
  storesvc::StoreService* store_;
  PullOptions opts_;
  std::shared_ptr<upstream::RegistryClient> parent_;
  std::vector<std::shared_ptr<upstream::RegistryClient>> named_;
  std::unordered_map<std::string, std::shared_ptr<Fill>> fills_;                 ///< digest -> Fill
  std::unordered_map<std::string, std::vector<ManifestDone>> manifest_waiters_;  ///< coalesced fetches
  /// Fetched and verified manifests whose store commit (fsync, rename,
  /// SQLite) is still running, by fetch key: their clients were answered at
  /// the verified hash, and requests for the same reference until the
  /// commit ends are answered from here, neither from the (older) store nor
  /// by a second fetch (issue #14).
  struct Committing {
    uint64_t id;  ///< which commit erases it (a newer fetch may replace it)
    ManifestResult answer;
  };
  std::unordered_map<std::string, Committing> committing_;
  uint64_t commit_generation_ = 0;
  /// Callers that must see the commit itself (keep_manifest), by commit id.
  std::unordered_map<uint64_t, std::vector<std::function<void(Status)>>> commit_waiters_;
  /// Revalidations in flight: key -> (generation, loop ms started). A HEAD
  /// older than revalidate_wait is not joined: it may be stuck on a parent
  /// that has since come back; a new one replaces it (its own waiters were
  /// all answered by their timers already).
  std::unordered_map<std::string, std::pair<uint64_t, uint64_t>> reval_started_;
  uint64_t reval_generation_ = 0;
  std::unordered_map<std::string, uint64_t> tag_checked_;                       ///< local_repo:tag -> loop ms
  std::unordered_map<std::string, uint64_t> tag_confirmed_;                     ///< local_repo:tag -> wall ms
  PullStats stats_;
  HotManifests* memo_ = nullptr;
};

}  // namespace outpost::cache
