#include "cache/parent_errors.hpp"

#include "upstream/registry_client.hpp"

namespace outpost::cache {

namespace {
// Retry-After is delay-seconds or an HTTP-date (RFC 9110 §10.2.3): relay
// only something of that shape, never arbitrary header bytes.
std::string retry_after_of(const http::Headers& h) {
  auto v = h.get("Retry-After");
  if (!v || v->empty() || v->size() > 64) return {};
  for (char c : *v)
    if (c < 0x20 || c > 0x7e) return {};
  return std::string(*v);
}
}  // namespace

Error offline_miss(const upstream::RegistryClient* u) {
  Error e(Errc::UpstreamUnavailable,
          "parent registry '" + u->options().name + "' is unreachable and this content is not cached here");
  e.reason = kReasonOffline;
  return e;
}

Error request_failed(const upstream::RegistryClient* u, const Error& e) {
  if (e.code == Errc::Cancelled) return e;
  if (e.code == Errc::UpstreamError) {
    Error out = e;
    if (out.reason.empty()) out.reason = kReasonBadAnswer;
    return out;
  }
  if (u->offline()) {
    Error out = offline_miss(u);
    out.detail += ": " + e.message();
    return out;
  }
  Error out(Errc::UpstreamUnavailable, e.code == Errc::UpstreamUnavailable
                                           ? e.message()
                                           : "parent registry '" + u->options().name + "' unreachable: " + e.message());
  out.reason = kReasonUnreachable;
  return out;
}

Error with_reason(Error e) {
  if (!e.reason.empty()) return e;
  if (e.code == Errc::UpstreamError) e.reason = kReasonBadAnswer;
  else if (e.code == Errc::UpstreamUnavailable) e.reason = kReasonUnreachable;
  return e;
}

Error parent_status(int status, const http::Headers& h, const std::string& what) {
  const std::string detail = "parent answered " + std::to_string(status) + " for " + what;
  if (status == 429) {
    // Rate limited: the client should back off and come again, not give up.
    Error e(Errc::TooManyRequests, detail);
    e.retry_after = retry_after_of(h);
    return e;
  }
  if (status == 503) {
    Error e(Errc::UpstreamUnavailable, detail);
    e.retry_after = retry_after_of(h);
    e.reason = "Parent Unavailable";
    return e;
  }
  Error e(Errc::UpstreamError, detail);
  e.reason = kReasonBadAnswer;
  return e;
}

}  // namespace outpost::cache
