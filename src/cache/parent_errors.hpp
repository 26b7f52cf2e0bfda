// The errors a pull-through miss answers with when the parent cannot serve
// it, in the words clients show: each carries a status-line reason phrase
// (Go clients print "503 Parent Offline And Not Cached", not the JSON body)
// and, for a parent's 429/503, its Retry-After. Table in docs/operations.md.
#pragma once
#include <memory>
#include <string>

#include "base/error.hpp"
#include "http/message.hpp"

namespace outpost::upstream { class RegistryClient; }

namespace outpost::cache {

inline constexpr const char* kReasonOffline = "Parent Offline And Not Cached";
inline constexpr const char* kReasonUnreachable = "Parent Unreachable And Not Cached";
inline constexpr const char* kReasonBadAnswer = "Bad Answer From Parent";

/// A miss refused at once: the parent is offline (breaker open, or forced).
Error offline_miss(const upstream::RegistryClient* u);
/// A request to the parent that failed without an answer (transport,
/// deadline, auth dance): 503 when unreachable, 502 when it answered wrongly.
Error request_failed(const upstream::RegistryClient* u, const Error& e);
/// The same for Route::upstream (a shared owner since reloads, issue #17).
inline Error offline_miss(const std::shared_ptr<upstream::RegistryClient>& u) { return offline_miss(u.get()); }
inline Error request_failed(const std::shared_ptr<upstream::RegistryClient>& u, const Error& e) {
  return request_failed(u.get(), e);
}
/// `e` with the reason phrase of its kind when it has none yet (a 502 from
/// bytes that do not verify is as much a bad answer as a bad status).
Error with_reason(Error e);
/// The parent answered `status` (not 200/404) for `what`: 429 stays 429 and
/// 503 stays 503, both with the parent's Retry-After; anything else is 502.
Error parent_status(int status, const http::Headers& h, const std::string& what);

}  // namespace outpost::cache
