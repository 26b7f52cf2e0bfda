// The link to one parent origin (scheme + host + port): its Health, the
// connectivity probe (GET /v2/ with a short deadline) and the half-open
// breaker's trial gate. Every RegistryClient aimed at the same origin shares
// one Link (issue #13: `[parent]` and an `[[upstream]]` with the same URL
// were marked offline separately), so one outage is learnt once.
// Knows nothing of repositories, auth or the store.
#pragma once
#include <uv.h>

#include <string>

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

  /// See Health::admit / take_trial (the clock is the loop's).
  bool admit();
  bool take_trial() { return health_.take_trial(); }
  /// A real request's outcome: answered (any status below 500, and not a
  /// 429), or failed with `reason`.
  void record(bool answered, const std::string& reason);
  /// Something took suspiciously long: probe now rather than at the next tick.
  void suspect();
  /// Process shutdown: stop probing.
  void shutdown();

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
};

}  // namespace outpost::upstream
