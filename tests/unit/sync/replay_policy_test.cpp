// Replay outcome rules (issue #15): backoff 1 s .. 5 min with jitter, the
// parent's Retry-After as a floor, permanent refusals fail at once.
#include <catch2/catch.hpp>

#include "sync/replay_policy.hpp"

using namespace outpost;
using namespace outpost::sync;

namespace {
upstream::PushError retryable(int status = 503, uint64_t retry_after = 0) {
  upstream::PushError e;
  e.kind = upstream::PushErrorKind::Retryable;
  e.status = status;
  e.message = "PUT manifest: parent answered " + std::to_string(status);
  e.retry_after_ms = retry_after;
  return e;
}
upstream::PushError permanent(const char* code) {
  upstream::PushError e;
  e.kind = upstream::PushErrorKind::Permanent;
  e.status = 403;
  e.oci_code = code;
  e.message = std::string("POST upload: parent answered 403 ") + code + ": this site may not push here";
  return e;
}
}  // namespace

TEST_CASE("retry delay doubles from 1 s and stops at 5 min", "[sync]") {
  // Upper edge of the jitter (random close to 1): the nominal delay.
  CHECK(retry_delay_ms(0, 0, 0.999999) == 1'000);
  CHECK(retry_delay_ms(1, 0, 0.999999) == Approx(2'000).margin(1));
  CHECK(retry_delay_ms(2, 0, 0.999999) == Approx(4'000).margin(1));
  CHECK(retry_delay_ms(8, 0, 0.999999) == Approx(256'000).margin(1));
  CHECK(retry_delay_ms(9, 0, 0.999999) == Approx(300'000).margin(1));
  CHECK(retry_delay_ms(1'000'000, 0, 0.999999) == Approx(300'000).margin(1));
  CHECK(retry_delay_ms(63, 0, 0.5) <= kRetryMaxMs);
  CHECK(retry_delay_ms(-5, 0, 0.5) == 1'000);  // a bad count is the first retry
}

TEST_CASE("jitter spreads retries over the upper half of the nominal delay", "[sync]") {
  for (int64_t attempts : {1, 3, 6, 12}) {
    const int64_t lo = retry_delay_ms(attempts, 0, 0.0);
    const int64_t hi = retry_delay_ms(attempts, 0, 0.999999);
    CHECK(lo >= kRetryMinMs);
    CHECK(hi <= kRetryMaxMs);
    CHECK(lo == Approx(hi / 2.0).margin(1));
    const int64_t mid = retry_delay_ms(attempts, 0, 0.5);
    CHECK(lo < mid);
    CHECK(mid < hi);
  }
  // Never below one second, whatever the draw.
  CHECK(retry_delay_ms(0, 0, 0.0) == 1'000);
  // Out-of-range draws are clamped, not trusted.
  CHECK(retry_delay_ms(2, 0, -1.0) == retry_delay_ms(2, 0, 0.0));
  CHECK(retry_delay_ms(2, 0, 7.0) <= 4'000);
}

TEST_CASE("the parent's Retry-After is a floor, capped", "[sync]") {
  CHECK(retry_delay_ms(0, 30'000, 0.5) == 30'000);
  CHECK(retry_delay_ms(9, 30'000, 0.999999) == Approx(300'000).margin(1));  // the backoff is longer already
  CHECK(retry_delay_ms(0, 90ull * 86'400'000, 0.5) == kRetryAfterCapMs);
}

TEST_CASE("a retryable error is retried later, a permanent one fails at once", "[sync]") {
  const int64_t now = 1'800'000'000'000;
  SECTION("503 without Retry-After") {
    Outcome o = outcome_of(retryable(), 0, now, 0.999999);
    CHECK(o.verdict == Verdict::Retry);
    CHECK(o.next_attempt_ms == now + 1'000);
    CHECK(o.error.find("503") != std::string::npos);
  }
  SECTION("429 with Retry-After") {
    Outcome o = outcome_of(retryable(429, 20'000), 2, now, 0.0);
    CHECK(o.verdict == Verdict::Retry);
    CHECK(o.next_attempt_ms == now + 20'000);
  }
  SECTION("no answer at all (status 0) is retryable") {
    upstream::PushError e = retryable(0);
    e.message.clear();
    Outcome o = outcome_of(e, 4, now, 0.999999);
    CHECK(o.verdict == Verdict::Retry);
    CHECK(o.next_attempt_ms == Approx(now + 16'000).margin(1));
    CHECK_FALSE(o.error.empty());  // status shows something even without the parent's words
  }
  for (const char* code : {"DENIED", "UNSUPPORTED", "NAME_INVALID"}) {
    SECTION(std::string("permanent ") + code) {
      Outcome o = outcome_of(permanent(code), 0, now, 0.5);
      CHECK(o.verdict == Verdict::Fail);
      CHECK(o.error.find(code) != std::string::npos);  // reported with the parent's error
    }
  }
}

TEST_CASE("a local read failure is retried with the same backoff", "[sync]") {
  Outcome o = local_failure("cannot read the local blob: I/O error", 3, 1'000, 0.999999);
  CHECK(o.verdict == Verdict::Retry);
  CHECK(o.next_attempt_ms == Approx(1'000 + 8'000).margin(1));
  CHECK(o.error == "cannot read the local blob: I/O error");
}
