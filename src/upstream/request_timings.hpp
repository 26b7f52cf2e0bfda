// Latency of the real requests Outpost sends to its upstreams (issue #17):
// one histogram per (upstream, kind), fed by RegistryClient when the final
// answer's head arrives (after auth retries and redirects), plus a count of
// requests that got no answer. Outlives the RegistryClients (a SIGHUP that
// changes the upstreams builds new clients; their figures go on here).
// Loop thread only. Knows nothing of Prometheus: app/ops.cpp writes it out.
#pragma once
#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "http/message.hpp"

namespace outpost::upstream {

/// "manifest", "blob", "upload", "tags", "catalog", "referrers", "ping" or
/// "other": what a request under /v2/ asks for (`path` as RegistryClient's).
std::string_view request_kind(std::string_view path);

class RequestTimings {
 public:
  /// Upper bounds in seconds (+Inf implicit). Upstream answers cross WAN
  /// links: coarser and longer than the HTTP server's.
  static constexpr std::array<double, 12> kBuckets = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                                      0.5,   1,    2.5,   5,    10,  30};
  struct Series {
    std::string upstream;  ///< UpstreamOptions::name
    std::string kind;      ///< request_kind()
    std::array<uint64_t, kBuckets.size()> buckets{};  ///< non-cumulative counts
    uint64_t count = 0;     ///< answered requests
    double sum = 0;         ///< seconds, over the answered ones
    uint64_t failures = 0;  ///< requests that ended without an answer (timeouts, resets, refused)
  };

  /// An answer's head arrived `seconds` after the request started.
  void observe(std::string_view upstream, std::string_view kind, double seconds);
  /// A request ended without an answer.
  void failed(std::string_view upstream, std::string_view kind);
  /// In first-seen order.
  const std::vector<Series>& series() const { return series_; }

 private:
  Series& at(std::string_view upstream, std::string_view kind);
  std::vector<Series> series_;  ///< a few upstreams x 8 kinds: a linear scan is cheap
};

}  // namespace outpost::upstream
