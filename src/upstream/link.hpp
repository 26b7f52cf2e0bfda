// The link to one parent origin (scheme + host + port): its Health, the
// connectivity probe (GET /v2/ with a short deadline) and the half-open
// breaker's trial gate. Every RegistryClient aimed at the same origin shares
// one Link (issue #13: `[parent]` and an `[[upstream]]` with the same URL
// were marked offline separately), so one outage is learnt once.
// It also keeps what the origin says it is (ParentMode, from the
// `Outpost-Mode` header of the probe and of every answer; issue #15), and
// the sync-window switch that stops background probes outside a window.
// Knows nothing of repositories, auth or the store.
#pragma once
#include <uv.h>

#include <functional>
#include <string>
#include <vector>

#include "http/client.hpp"
#include "http/url.hpp"
#include "upstream/health.hpp"

namespace outpost::upstream {

class Link {
 public:
  /// `client` (not owned) sends the probes and must outlive the Link.
  /// `base` is the registry's base URL (the probe asks base + "/v2/").
  /// A forced-offline Link never probes and never changes state.
  Link(uv_loop_t* loop, http::HttpClient& client, http::Url base, std::string name, uint64_t probe_timeout_ms,
       bool forced_offline);
  ~Link();
  Link(const Link&) = delete;
  Link& operator=(const Link&) = delete;

  const std::string& origin() const { return origin_; }
  /// Upstream names sharing this link ("parent,docker.io"), for logs.
  const std::string& names() const { return names_; }
  void add_name(const std::string& n) { names_ += "," + n; }
  const Health& health() const { return health_; }
  uint64_t probe_timeout_ms() const { return probe_timeout_ms_; }
  /// The last failure (a request's or a probe's) and its wall-clock time
  /// (0: none yet), for status (issue #17).
  const std::string& last_error() const { return last_error_; }
  uint64_t last_error_ms() const { return last_error_ms_; }
  /// Round trip of the last answered probe (0: none yet).
  uint64_t last_probe_rtt_ms() const { return last_probe_rtt_ms_; }

  /// See Health::admit / take_trial (the clock is the loop's).
  bool admit();
  bool take_trial() { return health_.take_trial(); }
  /// A real request's outcome: answered (any status below 500, and not a
  /// 429), or failed with `reason`.
  void record(bool answered, const std::string& reason);
  /// Something took suspiciously long: probe now rather than at the next tick.
  void suspect();
  /// Process shutdown: stop probing. Pending probe_now() callbacks run
  /// (with false) before this returns.
  void shutdown();

  // ---- the parent's mode (issue #15) -----------------------------------------
  /// As last announced by the origin; Unknown until it first answers.
  ParentMode parent_mode() const { return mode_; }
  /// An answer from the origin (status below 500, not 429: a proxy's error
  /// page says nothing about the registry behind it) carried this
  /// `Outpost-Mode` value (nullopt: no header). A change is logged once and
  /// reported to every on_mode_change listener.
  void note_mode(std::optional<std::string_view> header_value);
  /// `fn(new_mode)` runs on the loop thread after each change of mode, for
  /// as long as the Link lives (the replayer stops when it turns ReadOnly).
  void on_mode_change(std::function<void(ParentMode)> fn) { mode_listeners_.push_back(std::move(fn)); }
  /// Sends a probe now, whatever the background switch says (the one check
  /// at start, issue #15), unless the Link is forced offline or shutting
  /// down. `done(answered)` runs exactly once on the loop thread when the
  /// probe ends (bounded by probe_timeout_ms), or at once (false) when no
  /// probe can go. Joins a probe already in flight.
  void probe_now(std::function<void(bool answered)> done);

  // ---- sync windows (issue #15) --------------------------------------------
  /// While false no probe is sent: no periodic one, no "suspect" one, none
  /// after a failed request (outside a sync window no background request
  /// reaches the parent). Health stays as last known; real client requests
  /// still go out as the caller's policy decides. Set back to true, a probe
  /// goes out at once. Default true.
  void set_background_allowed(bool allowed);
  bool background_allowed() const { return background_allowed_; }

 private:
  void schedule_probe(uint64_t delay_ms);
  void probe();
  static void on_probe_timer(uv_timer_t* t) noexcept;

  uv_loop_t* loop_;
  http::HttpClient& client_;
  http::Url base_;
  std::string origin_;
  std::string names_;
  uint64_t probe_timeout_ms_;
  Health health_;
  uv_timer_t* probe_timer_ = nullptr;
  http::ClientCallPtr probe_call_;
  bool closing_ = false;
  bool background_allowed_ = true;
  std::string last_error_;
  uint64_t last_error_ms_ = 0;
  uint64_t last_probe_rtt_ms_ = 0;
  ParentMode mode_ = ParentMode::Unknown;
  std::vector<std::function<void(ParentMode)>> mode_listeners_;
  std::vector<std::function<void(bool)>> probe_waiters_;  ///< probe_now() callers of the probe in flight
};

}  // namespace outpost::upstream
