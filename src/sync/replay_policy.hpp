// What the replayer does with the outcome of one push to the parent (issue
// #15): done, retry later with exponential backoff and jitter, or failed for
// good. Pure functions of their inputs (the random draw is a parameter), so
// the rules are unit-tested without a loop, a store or a parent.
#pragma once
#include <cstdint>
#include <string>

#include "upstream/pusher.hpp"

namespace outpost::sync {

inline constexpr int64_t kRetryMinMs = 1'000;    ///< first retry after about 1 s
inline constexpr int64_t kRetryMaxMs = 300'000;  ///< never more than 5 min between attempts
/// A parent's Retry-After is honoured up to this (a wrong header must not park an entry for days).
inline constexpr int64_t kRetryAfterCapMs = 3'600'000;

/// Delay before the next attempt of an entry that has failed `attempts`
/// times before this failure (ReplayEntry::attempts: 0 on the first failure).
/// The nominal delay doubles from 1 s up to 5 min; "equal jitter" draws the
/// delay in [nominal/2, nominal] (never below 1 s) so entries that failed
/// together (the parent went away) do not come back together. `unit_random`
/// is in [0, 1). A parent's Retry-After (`retry_after_ms`, 0 = none) is a
/// floor, capped at kRetryAfterCapMs.
int64_t retry_delay_ms(int64_t attempts, uint64_t retry_after_ms, double unit_random);

enum class Verdict {
  Retry,  ///< replay_retry(id, next_attempt_ms, error)
  Fail,   ///< replay_failed(id, error): reported, never retried
};

struct Outcome {
  Verdict verdict = Verdict::Retry;
  int64_t next_attempt_ms = 0;  ///< Retry only
  std::string error;            ///< what status shows (the parent's words)
};

/// The outcome of a push that failed with `e` at `now_ms`.
Outcome outcome_of(const upstream::PushError& e, int64_t attempts, int64_t now_ms, double unit_random);

/// A failure on this side (the local bytes could not be read): retried, the
/// local store may recover (disk full, I/O error), with the same backoff.
Outcome local_failure(const std::string& error, int64_t attempts, int64_t now_ms, double unit_random);

}  // namespace outpost::sync
