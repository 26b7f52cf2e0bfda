// The configured upstreams ([parent] and [[upstream]]) as one generation:
// TLS client configs, HTTP connection pools and registry clients built
// together from one Config and never changed afterwards. SIGHUP (issue #17)
// builds a new generation and swaps it in where routes are chosen
// (cache::PullThrough, sync::SyncService); work already routed holds its
// client (cache::Route, a keeper pass, a replay task) and so keeps the old
// generation alive until it ends: nothing in flight is dropped. The last
// holder frees it on a later loop turn, never inside one of its own
// callbacks. Knows nothing of the cache or of sync.
//
// Thread: loop thread only.
#pragma once
#include <uv.h>

#include <memory>
#include <string>
#include <vector>

#include "app/config.hpp"
#include "base/result.hpp"
#include "upstream/registry_client.hpp"
#include "upstream/request_timings.hpp"

namespace outpost::app {

/// One generation's clients. Each pointer shares ownership of the whole
/// generation (its pools and TLS configs, and Links shared between its
/// clients), so any one of them keeps all it needs alive.
struct UpstreamSet {
  std::shared_ptr<upstream::RegistryClient> parent;  ///< null without a [parent] url
  std::vector<std::shared_ptr<upstream::RegistryClient>> named;  ///< [[upstream]], in file order
};

class UpstreamGenerations {
 public:
  /// `instance_id` goes to the parent as Outpost-Instance (issue #16);
  /// `timings` receives every client's request latencies.
  UpstreamGenerations(uv_loop_t* loop, std::string instance_id, std::shared_ptr<upstream::RequestTimings> timings);
  /// Frees the generations whose last holder already left. Destroy it after
  /// everything that may hold a client (cache, keeper, sync service).
  ~UpstreamGenerations();
  UpstreamGenerations(const UpstreamGenerations&) = delete;
  UpstreamGenerations& operator=(const UpstreamGenerations&) = delete;

  /// Builds the clients of cfg.parent (when its url is set) and of every
  /// cfg.upstreams entry, reading their token files now. Errc::ConfigInvalid
  /// naming the upstream when a URL, CA file or token file is unusable.
  Result<UpstreamSet> build(const Config& cfg);
  /// Whether `next` describes the same clients as `running` (same [parent]
  /// and [[upstream]] keys, and token files whose contents equal the
  /// credentials `running` was built with): then a reload keeps them, with
  /// their health and cached tokens.
  static bool same(const UpstreamSet& running, const Config& live, const Config& next);
  /// Process shutdown: every generation still alive stops sending and closes
  /// its connections (calls in flight end Cancelled).
  void shutdown();

 private:
  struct Generation;
  struct Graveyard;
  uv_loop_t* loop_;
  std::string instance_id_;
  std::shared_ptr<upstream::RequestTimings> timings_;
  std::shared_ptr<Graveyard> grave_;
  std::vector<std::weak_ptr<Generation>> all_;
};

/// token_file holds "username:password" (a sync token's name and secret).
/// An empty path is no credentials.
Status read_credentials(const std::string& path, std::string* user, std::string* pass);

}  // namespace outpost::app
