#include "upstream/request_timings.hpp"

namespace outpost::upstream {

std::string_view request_kind(std::string_view path) {
  if (path == "/v2/" || path == "/v2") return "ping";
  if (path.starts_with("/v2/_catalog")) return "catalog";
  if (path.find("/manifests/") != std::string_view::npos) return "manifest";
  if (path.find("/blobs/uploads") != std::string_view::npos) return "upload";
  if (path.find("/blobs/") != std::string_view::npos) return "blob";
  if (path.find("/tags/list") != std::string_view::npos) return "tags";
  if (path.find("/referrers/") != std::string_view::npos) return "referrers";
  return "other";
}

RequestTimings::Series& RequestTimings::at(std::string_view upstream, std::string_view kind) {
  for (auto& s : series_)
    if (s.upstream == upstream && s.kind == kind) return s;
  Series s;
  s.upstream = std::string(upstream);
  s.kind = std::string(kind);
  series_.push_back(std::move(s));
  return series_.back();
}

void RequestTimings::observe(std::string_view upstream, std::string_view kind, double seconds) {
  Series& s = at(upstream, kind);
  size_t b = 0;
  while (b < kBuckets.size() && seconds > kBuckets[b]) ++b;
  if (b < kBuckets.size()) s.buckets[b]++;
  s.count++;
  s.sum += seconds;
}

void RequestTimings::failed(std::string_view upstream, std::string_view kind) { at(upstream, kind).failures++; }

}  // namespace outpost::upstream
