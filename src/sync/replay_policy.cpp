#include "sync/replay_policy.hpp"

#include <algorithm>

namespace outpost::sync {

int64_t retry_delay_ms(int64_t attempts, uint64_t retry_after_ms, double unit_random) {
  // 1 s * 2^attempts, computed without overflow: 2^9 s already exceeds 5 min.
  int64_t nominal = kRetryMaxMs;
  if (attempts < 9) nominal = std::min<int64_t>(kRetryMaxMs, kRetryMinMs << std::max<int64_t>(0, attempts));
  if (unit_random < 0) unit_random = 0;
  if (unit_random >= 1) unit_random = 0.999999;
  int64_t d = nominal / 2 + static_cast<int64_t>(unit_random * static_cast<double>(nominal - nominal / 2));
  d = std::clamp<int64_t>(d, kRetryMinMs, kRetryMaxMs);
  const int64_t floor = static_cast<int64_t>(std::min<uint64_t>(retry_after_ms, kRetryAfterCapMs));
  return std::max(d, floor);
}

Outcome outcome_of(const upstream::PushError& e, int64_t attempts, int64_t now_ms, double unit_random) {
  Outcome o;
  o.error = e.message.empty() ? "the parent refused (status " + std::to_string(e.status) + ")" : e.message;
  if (e.permanent()) {
    o.verdict = Verdict::Fail;
    return o;
  }
  o.verdict = Verdict::Retry;
  o.next_attempt_ms = now_ms + retry_delay_ms(attempts, e.retry_after_ms, unit_random);
  return o;
}

Outcome local_failure(const std::string& error, int64_t attempts, int64_t now_ms, double unit_random) {
  Outcome o;
  o.verdict = Verdict::Retry;
  o.error = error;
  o.next_attempt_ms = now_ms + retry_delay_ms(attempts, 0, unit_random);
  return o;
}

}  // namespace outpost::sync
