#include "app/request_log.hpp"

#include <cstdio>

#include "http/exchange.hpp"

namespace outpost::app {

namespace {
constexpr std::string_view kManifestRoute = "/v2/{name}/manifests/{reference}";
constexpr std::string_view kBlobRoute = "/v2/{name}/blobs/{digest}";

std::string fmt_double(double v) {
  char buf[32];
  snprintf(buf, sizeof buf, "%.6g", v);
  return buf;
}
}  // namespace

std::string prom_label(std::string_view v) {
  std::string out;
  out.reserve(v.size());
  for (char c : v) {
    if (c == '\\') out += "\\\\";
    else if (c == '"') out += "\\\"";
    else if (c == '\n') out += "\\n";
    else out += c;
  }
  return out;
}

void RequestLog::observe(const http::Exchange& ex, std::string_view route, double elapsed_s, uint64_t now_wall_ms) {
  const std::string_view label = route.empty() ? std::string_view("unmatched") : route;
  if (!last_key_ || *last_key_ != label) {
    auto it = routes_.find(label);
    if (it == routes_.end()) it = routes_.emplace(std::string(label), RouteStats{}).first;
    last_key_ = &it->first;
    last_stats_ = &it->second;
  }
  RouteStats& rs = *last_stats_;
  const http::Method method = ex.req().method;
  if (!rs.last_counter || rs.last_method != method || rs.last_status != ex.status_) {
    rs.last_counter = &rs.by_method_status[{method, ex.status_}];
    rs.last_method = method;
    rs.last_status = ex.status_;
  }
  ++*rs.last_counter;
  rs.bytes += ex.bytes_sent_;
  size_t b = 0;
  while (b < kBuckets.size() && elapsed_s > kBuckets[b]) ++b;
  if (b < kBuckets.size()) rs.buckets[b]++;
  rs.count++;
  rs.sum += elapsed_s;

  const bool get_or_head = ex.req().method == http::Method::Get || ex.req().method == http::Method::Head;
  if (get_or_head && ex.status_ >= 200 && ex.status_ < 300 && (route == kManifestRoute || route == kBlobRoute))
    pulls_answered_++;
  if (route != kManifestRoute) return;
  const bool push = ex.req().method == http::Method::Put;
  if (!push && !get_or_head) return;
  // Every cached manifest GET lands here: once the list is full, the oldest
  // entry's strings are reused (assign keeps their capacity), so recording
  // a pull allocates nothing on the hot path.
  RecentTransfer t;
  if (recent_.size() >= kRecent) {
    t = std::move(recent_.back());
    recent_.pop_back();
  }
  t.time_ms = now_wall_ms;
  t.kind = push ? "push" : "pull";
  t.method = http::method_name(ex.req().method).data();
  t.repo.assign(ex.params().name);
  t.reference.assign(ex.params().reference);
  const auto d = ex.resp_headers().get("Docker-Content-Digest");
  t.digest.assign(d ? *d : std::string_view());
  t.peer.assign(ex.req().peer);
  t.status = ex.status_;
  recent_.push_front(std::move(t));
}

std::string RequestLog::metrics_text() const {
  std::string out;
  out += "# HELP outpost_http_route_requests_total requests answered, by route pattern, method and status\n"
         "# TYPE outpost_http_route_requests_total counter\n";
  for (const auto& [route, rs] : routes_)
    for (const auto& [key, n] : rs.by_method_status)
      out += "outpost_http_route_requests_total{route=\"" + prom_label(route) + "\",method=\"" +
             prom_label(http::method_name(std::get<0>(key))) + "\",status=\"" + std::to_string(std::get<1>(key)) + "\"} " +
             std::to_string(n) + "\n";
  out += "# HELP outpost_http_route_sent_bytes_total bytes written to clients (heads and bodies), by route pattern\n"
         "# TYPE outpost_http_route_sent_bytes_total counter\n";
  for (const auto& [route, rs] : routes_)
    out += "outpost_http_route_sent_bytes_total{route=\"" + prom_label(route) + "\"} " + std::to_string(rs.bytes) + "\n";
  out += "# HELP outpost_http_request_duration_seconds time from dispatch to the end of the answer, by route pattern\n"
         "# TYPE outpost_http_request_duration_seconds histogram\n";
  for (const auto& [route, rs] : routes_) {
    const std::string l = "route=\"" + prom_label(route) + "\"";
    uint64_t cum = 0;
    for (size_t i = 0; i < kBuckets.size(); ++i) {
      cum += rs.buckets[i];
      out += "outpost_http_request_duration_seconds_bucket{" + l + ",le=\"" + fmt_double(kBuckets[i]) + "\"} " +
             std::to_string(cum) + "\n";
    }
    out += "outpost_http_request_duration_seconds_bucket{" + l + ",le=\"+Inf\"} " + std::to_string(rs.count) + "\n";
    out += "outpost_http_request_duration_seconds_sum{" + l + "} " + fmt_double(rs.sum) + "\n";
    out += "outpost_http_request_duration_seconds_count{" + l + "} " + std::to_string(rs.count) + "\n";
  }
  return out;
}

}  // namespace outpost::app
