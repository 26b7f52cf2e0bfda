// What the HTTP front end answered, counted per route (issue #17): requests
// by route, method and status, bytes by route, latency histograms per route
// for /metrics, and a bounded ring of the latest manifest pulls and pushes
// for the status page. Fed by one hook per exchange (http::Exchange's
// on_done, set where app.cpp dispatches), so api/ knows nothing of it.
//
// Thread: loop thread only (the hook runs in the exchange's destructor).
#pragma once
#include <array>
#include <cstdint>
#include <deque>
#include <map>
#include <string>
#include <string_view>
#include <tuple>

#include "http/message.hpp"

namespace outpost::http { class Exchange; }

namespace outpost::app {

/// One manifest pull (GET/HEAD) or push (PUT) as the page lists it.
struct RecentTransfer {
  uint64_t time_ms = 0;    ///< wall clock, when the answer ended
  const char* kind = "";   ///< "pull" or "push"
  const char* method = ""; ///< GET, HEAD, PUT
  std::string repo;
  std::string reference;   ///< tag or digest as the client asked
  std::string digest;      ///< Docker-Content-Digest answered, "" if none
  std::string peer;        ///< client "ip:port"
  int status = 0;          ///< HTTP status answered (0: the client left first)
};

class RequestLog {
 public:
  static constexpr size_t kRecent = 50;
  /// Histogram upper bounds in seconds (+Inf is implicit).
  static constexpr std::array<double, 12> kBuckets = {0.001, 0.005, 0.01, 0.025, 0.05, 0.1,
                                                      0.25,  0.5,   1,    2.5,   10,   60};
  /// `route` is the matched pattern ("" when none matched); `elapsed_s` the
  /// time from dispatch to the end of the exchange.
  void observe(const http::Exchange& ex, std::string_view route, double elapsed_s, uint64_t now_wall_ms);

  /// outpost_http_requests_by_route_total, outpost_http_route_sent_bytes_total,
  /// outpost_http_request_duration_seconds (histogram).
  std::string metrics_text() const;
  /// Newest first, at most kRecent.
  const std::deque<RecentTransfer>& recent() const { return recent_; }
  /// Successful (2xx) GET/HEAD answers on manifest and blob routes: the
  /// pulls the hit ratio is computed over (ops.cpp).
  uint64_t pulls_answered() const { return pulls_answered_; }

 private:
  struct RouteStats {
    /// Keyed by the method itself: counting a request allocates nothing.
    std::map<std::tuple<http::Method, int>, uint64_t> by_method_status;
    uint64_t bytes = 0;
    std::array<uint64_t, kBuckets.size()> buckets{};  ///< non-cumulative counts
    uint64_t count = 0;
    double sum = 0;
    /// The counter the previous request of this route landed on (map nodes
    /// do not move): a run of one kind of request skips the lookup.
    uint64_t* last_counter = nullptr;
    http::Method last_method = http::Method::Get;
    int last_status = 0;
  };
  std::map<std::string, RouteStats, std::less<>> routes_;
  /// The previous request's entry: most requests repeat its route, and a
  /// map lookup per request showed in the manifest HEAD profile (issue #14).
  const std::string* last_key_ = nullptr;
  RouteStats* last_stats_ = nullptr;
  std::deque<RecentTransfer> recent_;
  uint64_t pulls_answered_ = 0;
};

/// Escapes a Prometheus label value (backslash, quote, newline).
std::string prom_label(std::string_view v);

}  // namespace outpost::app
