// One configured upstream registry (the parent, or a named mirror) as an OCI
// client: requests under /v2/ with the registry's auth dance (Basic, or
// 401 + Bearer challenge -> token endpoint -> cached token per scope) and
// redirects followed without the registry's credentials on other hosts.
// Callers see only the final response. Knows nothing of the store.
#pragma once
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "http/client.hpp"
#include "http/url.hpp"
#include "upstream/link.hpp"
#include "upstream/request_timings.hpp"

namespace outpost::upstream {

struct UpstreamOptions {
  std::string name;          ///< "parent" or the [[upstream]] name, e.g. "docker.io"
  http::Url url;             ///< base URL of the registry
  std::string username;      ///< Basic / token-service credentials; empty = anonymous
  std::string password;
  http::ClientTimeouts timeouts;
  /// Docker Hub: single-component names live under "library/".
  bool library_prefix = false;
  /// Operator switch: never contact this upstream (an air-gapped site).
  bool offline = false;
  /// Deadline of the connectivity probe (GET /v2/), kept short on purpose.
  uint64_t probe_timeout_ms = 3'000;
  /// This Outpost's instance id, sent as Outpost-Instance on every request
  /// to this registry (a parent Outpost binds a sync token to one child;
  /// issue #16). Empty: not sent.
  std::string instance_id;
  /// Where the latency of every request's answer goes (issue #17); shared
  /// by the clients of every reload generation. Null: not measured.
  std::shared_ptr<RequestTimings> timings;
};

class RegistryClient;

/// What a write needs beyond a pull (issue #15, pushing to the parent).
struct RequestOptions {
  /// Token scope actions on the request's repository: "pull" or "pull,push".
  std::string actions = "pull";
  /// Further repositories to ask `pull` on in the same token (a mount's `from`).
  std::vector<std::string> also_pull;
  std::string body;                          ///< small bodies (manifests)
  std::optional<http::FileBody> file_body;   ///< blobs, streamed from disk
  bool retry_if_stale = false;               ///< see http::ClientRequest
  /// An absolute URL the parent gave (an upload Location) to send to
  /// instead of the base URL + path. Credentials still go only to the
  /// parent's own origin.
  std::optional<http::Url> url;
};

/// One logical request (possibly several HTTP exchanges). cancel() stops it;
/// no callback fires after.
class UpstreamOp {
 public:
  void cancel();
  /// Body back-pressure (http::ClientCall::pause/resume) on the call in flight.
  void pause() { if (call) call->pause(); }
  void resume() { if (call) call->resume(); }
  // internals
  http::Method method;
  std::string path;   ///< "/v2/<repo>/..."
  std::string repo;   ///< upstream repository name, for the auth scope
  http::Headers extra;
  RequestOptions opts;
  std::string scope;  ///< token scope, "repository:<repo>:<actions>[ repository:<from>:pull]"
  http::ClientCall::OnHead on_head;
  http::ClientCall::OnData on_data;
  http::ClientCall::OnDone on_done;
  http::ClientCallPtr call;
  http::Url url;      ///< current target (changes on redirect)
  int redirects = 0;
  bool auth_retried = false;
  bool intercept = false;
  bool redirecting = false;  ///< the intercepted answer is a redirect (else a 401 challenge)
  bool cancelled = false;
  std::string location;      ///< the redirect's Location, as sent (may be empty: refused)
  uint64_t intercepted_bytes = 0;  ///< body bytes of the intercepted answer drained so far
  std::string challenge;
  int status = 0;      ///< status of the last response seen
  bool trial = false;  ///< the half-open breaker's trial: short connect/first-byte deadlines
  uint64_t started_ns = 0;  ///< uv_hrtime() at request(): RequestTimings
  bool answered = false;    ///< the final answer's head arrived (timed once)
};
using UpstreamOpPtr = std::shared_ptr<UpstreamOp>;

class RegistryClient {
 public:
  RegistryClient(uv_loop_t* loop, http::HttpClient& client, UpstreamOptions o);
  ~RegistryClient();
  RegistryClient(const RegistryClient&) = delete;
  RegistryClient& operator=(const RegistryClient&) = delete;
  const UpstreamOptions& options() const { return opts_; }

  /// Connectivity of the origin as last observed (DESIGN.md invariant 5:
  /// while Offline no request waits on the parent; request() fails at once,
  /// but for one trial request every Health::kTrialIntervalMs).
  const Health& health() const { return link_->health(); }
  bool offline() const { return link_->health().offline(); }
  /// Whether a request sent now would go out (online, or the breaker's
  /// trial is granted to it). False: request() would fail at once.
  bool admit() { return !closing_ && link_->admit(); }
  /// Use `other`'s Link when both aim at the same origin (and neither is
  /// forced offline): one health state per origin, learnt once.
  void share_link_with(const RegistryClient& other);
  const Link& link() const { return *link_; }
  /// Something took suspiciously long: probe now rather than at the next tick.
  void suspect();
  /// What the registry announced itself as (Link::parent_mode): learnt from
  /// the probe and from every answer of its origin (issue #15).
  ParentMode parent_mode() const { return link_->parent_mode(); }
  /// upstream::hierarchy_conflict() for this registry as last seen: why a
  /// registry in mode `self_read_only` cannot replay pushes to it, "" when
  /// it can. The replayer asks before each run.
  std::string replay_blocked_reason(bool self_read_only) const {
    return hierarchy_conflict(self_read_only, parent_mode(), opts_.url.str());
  }
  /// See Link::set_background_allowed: no probe while false (outside a sync
  /// window). Applies to the shared Link, so to every upstream of the origin.
  void set_background_allowed(bool allowed) { link_->set_background_allowed(allowed); }
  Link& mutable_link() { return *link_; }
  /// Process shutdown: stop probing; from now on request() answers Cancelled
  /// at once (the HTTP client is about to go away).
  void shutdown();

  /// Maps a client-facing repository name to the upstream's (library/ rule).
  std::string upstream_repo(const std::string& repo) const;

  /// `path` is relative to the registry root ("/v2/..."); `repo` names the
  /// auth scope. on_head/on_data/on_done as http::ClientCall, final response
  /// only. While offline (and no trial is admitted), on_done(UpstreamUnavailable)
  /// runs before this returns.
  UpstreamOpPtr request(http::Method m, std::string path, std::string repo, http::Headers extra,
                        http::ClientCall::OnHead on_head, http::ClientCall::OnData on_data,
                        http::ClientCall::OnDone on_done);
  /// As above, with a body and the token scope a write needs. A body (file
  /// or string) is sent again from its start on an auth retry or a redirect.
  UpstreamOpPtr request(http::Method m, std::string path, std::string repo, http::Headers extra,
                        RequestOptions opts, http::ClientCall::OnHead on_head, http::ClientCall::OnData on_data,
                        http::ClientCall::OnDone on_done);

 private:
  void step(const UpstreamOpPtr& op);
  void after_intercept(const UpstreamOpPtr& op);
  /// Ends `op` with UpstreamError `why` from inside its call's data
  /// callback (an answer refused before its end).
  void cut_short(UpstreamOpPtr op, const std::string& why);
  void fetch_token(const UpstreamOpPtr& op, const std::string& realm, const std::string& service,
                   const std::string& scope);
  std::string basic_header() const;
  void record(const UpstreamOp& op, const Status& st);

  struct Token {
    std::string value;
    uint64_t expires_ms = 0;
  };
  http::HttpClient& client_;
  UpstreamOptions opts_;
  std::shared_ptr<Link> link_;
  bool closing_ = false;
  bool basic_mode_ = false;              ///< the registry's latest challenge was Basic
  std::map<std::string, Token> tokens_;  ///< scope -> bearer token
};

}  // namespace outpost::upstream
