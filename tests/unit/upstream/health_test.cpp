// The upstream connectivity state machine (src/upstream/health.hpp), driven
// with a fake clock: Online/Degraded/Offline transitions from request
// outcomes and probes, the probe schedule (backoff doubling up to the cap
// while not online, the idle interval while online) and the operator's
// parent.offline switch.
#include <catch2/catch.hpp>

#include <vector>

#include "upstream/health.hpp"

using outpost::upstream::Connectivity;
using outpost::upstream::connectivity_name;
using outpost::upstream::Health;

namespace {
constexpr uint64_t kT0 = 1'700'000'000'000;  // a wall-clock instant, in ms

// Drives a fresh Health to Offline with failed probes and returns the
// delays it asks for after each one.
std::vector<uint64_t> failed_probe_delays(Health& h, int n) {
  std::vector<uint64_t> out;
  for (int i = 0; i < n; ++i) {
    h.on_probe(false, kT0 + i);
    out.push_back(h.next_probe_delay_ms());
  }
  return out;
}
}  // namespace

TEST_CASE("health: starts online, probing at the idle interval", "[upstream][health]") {
  Health h;
  CHECK(h.state() == Connectivity::Online);
  CHECK_FALSE(h.offline());
  CHECK_FALSE(h.forced_offline());
  CHECK(h.last_success_ms() == 0);
  CHECK(h.transitions() == 0);
  CHECK(h.next_probe_delay_ms() == Health::kIdleProbeMs);
}

TEST_CASE("health: connectivity names", "[upstream][health]") {
  CHECK(connectivity_name(Connectivity::Online) == "online");
  CHECK(connectivity_name(Connectivity::Degraded) == "degraded");
  CHECK(connectivity_name(Connectivity::Offline) == "offline");
  // The /metrics gauge is the enum value: 0 online, 1 degraded, 2 offline.
  CHECK(static_cast<int>(Connectivity::Online) == 0);
  CHECK(static_cast<int>(Connectivity::Degraded) == 1);
  CHECK(static_cast<int>(Connectivity::Offline) == 2);
}

TEST_CASE("health: three failures in a row open the breaker", "[upstream][health]") {
  Health h;
  REQUIRE(Health::kFailuresToOpen == 3);

  h.on_failure();
  CHECK(h.state() == Connectivity::Degraded);
  CHECK_FALSE(h.offline());
  CHECK(h.transitions() == 1);
  // Degraded: probe soon, at the shortest delay.
  CHECK(h.next_probe_delay_ms() == Health::kMinBackoffMs);

  h.on_failure();
  CHECK(h.state() == Connectivity::Degraded);
  CHECK(h.transitions() == 1);  // Degraded -> Degraded is not a transition

  h.on_failure();
  CHECK(h.state() == Connectivity::Offline);
  CHECK(h.offline());
  CHECK(h.transitions() == 2);
  CHECK(h.next_probe_delay_ms() >= Health::kMinBackoffMs);
  CHECK(h.next_probe_delay_ms() < Health::kMaxBackoffMs);

  // More failures keep it offline without counting transitions.
  h.on_failure();
  h.on_failure();
  CHECK(h.state() == Connectivity::Offline);
  CHECK(h.transitions() == 2);
  CHECK(h.last_success_ms() == 0);
}

TEST_CASE("health: a success resets the failure count", "[upstream][health]") {
  Health h;
  h.on_failure();
  h.on_failure();
  REQUIRE(h.state() == Connectivity::Degraded);

  h.on_success(kT0);
  CHECK(h.state() == Connectivity::Online);
  CHECK(h.last_success_ms() == kT0);
  CHECK(h.transitions() == 2);
  CHECK(h.next_probe_delay_ms() == Health::kIdleProbeMs);

  // Not "in a row" any more: two new failures only degrade.
  h.on_failure();
  h.on_failure();
  CHECK(h.state() == Connectivity::Degraded);
  h.on_failure();
  CHECK(h.state() == Connectivity::Offline);
  // Failures never move the last-success time.
  CHECK(h.last_success_ms() == kT0);
}

TEST_CASE("health: successes while online change nothing but the last-success time", "[upstream][health]") {
  Health h;
  h.on_success(kT0);
  h.on_success(kT0 + 500);
  CHECK(h.state() == Connectivity::Online);
  CHECK(h.transitions() == 0);
  CHECK(h.last_success_ms() == kT0 + 500);
  CHECK_FALSE(h.on_probe(true, kT0 + 900));  // no state change reported
  CHECK(h.last_success_ms() == kT0 + 900);
  CHECK(h.transitions() == 0);
}

TEST_CASE("health: one failed probe opens the breaker from any state", "[upstream][health]") {
  SECTION("from online") {
    Health h;
    CHECK(h.on_probe(false, kT0));
    CHECK(h.state() == Connectivity::Offline);
    CHECK(h.transitions() == 1);
  }
  SECTION("from degraded") {
    Health h;
    h.on_failure();
    REQUIRE(h.state() == Connectivity::Degraded);
    CHECK(h.on_probe(false, kT0));
    CHECK(h.state() == Connectivity::Offline);
    CHECK(h.transitions() == 2);
  }
  SECTION("already offline: no change reported") {
    Health h;
    REQUIRE(h.on_probe(false, kT0));
    CHECK_FALSE(h.on_probe(false, kT0 + 1));
    CHECK(h.state() == Connectivity::Offline);
    CHECK(h.transitions() == 1);
  }
  SECTION("after a failed probe, one more request failure does not close it") {
    Health h;
    h.on_probe(false, kT0);
    h.on_failure();
    CHECK(h.state() == Connectivity::Offline);
  }
}

TEST_CASE("health: a probe that answers closes the breaker", "[upstream][health]") {
  Health h;
  h.on_failure();
  h.on_failure();
  h.on_failure();
  REQUIRE(h.offline());

  CHECK(h.on_probe(true, kT0 + 42));
  CHECK(h.state() == Connectivity::Online);
  CHECK_FALSE(h.offline());
  CHECK(h.last_success_ms() == kT0 + 42);
  CHECK(h.next_probe_delay_ms() == Health::kIdleProbeMs);
  CHECK(h.transitions() == 3);  // Online->Degraded->Offline->Online

  // The failure count restarted: a single failure only degrades.
  h.on_failure();
  CHECK(h.state() == Connectivity::Degraded);
}

TEST_CASE("health: a probe answering while degraded returns to online", "[upstream][health]") {
  Health h;
  h.on_failure();
  REQUIRE(h.state() == Connectivity::Degraded);
  CHECK(h.on_probe(true, kT0));
  CHECK(h.state() == Connectivity::Online);
  CHECK(h.last_success_ms() == kT0);
}

TEST_CASE("health: a real request answering while offline closes the breaker", "[upstream][health]") {
  Health h;
  h.on_probe(false, kT0);
  REQUIRE(h.offline());
  h.on_success(kT0 + 7);
  CHECK(h.state() == Connectivity::Online);
  CHECK(h.last_success_ms() == kT0 + 7);
}

TEST_CASE("health: probe backoff doubles while offline and stops at the cap", "[upstream][health]") {
  REQUIRE(Health::kMinBackoffMs == 1'000);
  // Issue #13: a 30 s cap kept misses failing for up to ~33 s after the
  // parent came back. The cap is what bounds noticing it without clients.
  REQUIRE(Health::kMaxBackoffMs == 3'000);
  Health h;
  auto d = failed_probe_delays(h, 10);

  // The first retry comes quickly (within two minimum delays).
  CHECK(d.front() >= Health::kMinBackoffMs);
  CHECK(d.front() <= 2 * Health::kMinBackoffMs);
  // Each failed probe doubles the delay, up to the cap.
  for (size_t i = 1; i < d.size(); ++i) {
    INFO("probe " << i << ": " << d[i - 1] << " ms -> " << d[i] << " ms");
    uint64_t doubled = d[i - 1] * 2;
    CHECK(d[i] == (doubled < Health::kMaxBackoffMs ? doubled : Health::kMaxBackoffMs));
  }
  // Ten failures are well past the cap: it is reached and held.
  CHECK(d.back() == Health::kMaxBackoffMs);
  CHECK(d[d.size() - 2] == Health::kMaxBackoffMs);
  for (auto x : d) CHECK(x <= Health::kMaxBackoffMs);

  // Request failures while offline do not shorten (or lengthen) the schedule.
  h.on_failure();
  CHECK(h.next_probe_delay_ms() == Health::kMaxBackoffMs);
}

TEST_CASE("health: recovery resets the backoff", "[upstream][health]") {
  Health h;
  auto first = failed_probe_delays(h, 8);
  REQUIRE(first.back() == Health::kMaxBackoffMs);

  REQUIRE(h.on_probe(true, kT0 + 100));
  REQUIRE(h.state() == Connectivity::Online);

  // The next outage starts from the short end again.
  auto second = failed_probe_delays(h, 3);
  CHECK(second == std::vector<uint64_t>(first.begin(), first.begin() + 3));

  // Also when recovery came from a real request, not a probe.
  h.on_success(kT0 + 200);
  REQUIRE(h.state() == Connectivity::Online);
  auto third = failed_probe_delays(h, 2);
  CHECK(third == std::vector<uint64_t>(first.begin(), first.begin() + 2));
}

TEST_CASE("health: a breaker opened by request failures backs off from the short end", "[upstream][health]") {
  Health h;
  for (int i = 0; i < Health::kFailuresToOpen; ++i) h.on_failure();
  REQUIRE(h.offline());
  uint64_t before = h.next_probe_delay_ms();
  CHECK(before >= Health::kMinBackoffMs);
  CHECK(before <= 2 * Health::kMinBackoffMs);
  h.on_probe(false, kT0);
  CHECK(h.next_probe_delay_ms() == std::min<uint64_t>(before * 2, Health::kMaxBackoffMs));
}

TEST_CASE("health: forced offline (parent.offline = true) never changes", "[upstream][health]") {
  Health h(true);
  CHECK(h.forced_offline());
  CHECK(h.offline());
  CHECK(h.state() == Connectivity::Offline);

  h.on_success(kT0);
  CHECK(h.state() == Connectivity::Offline);
  for (int i = 0; i < 5; ++i) h.on_failure();
  CHECK(h.state() == Connectivity::Offline);
  CHECK_FALSE(h.on_probe(true, kT0 + 1));
  CHECK(h.state() == Connectivity::Offline);
  CHECK_FALSE(h.on_probe(false, kT0 + 2));
  CHECK(h.state() == Connectivity::Offline);
  CHECK(h.offline());
  CHECK(h.transitions() == 0);
}

TEST_CASE("health: not forced by default", "[upstream][health]") {
  Health h(false);
  CHECK_FALSE(h.forced_offline());
  CHECK(h.state() == Connectivity::Online);
}

TEST_CASE("health: while offline, one trial request per interval (half-open)", "[upstream][health]") {
  Health h;
  const uint64_t t = 5'000'000;
  // Not offline: every request goes, none of them is a trial.
  CHECK(h.admit(t));
  CHECK_FALSE(h.take_trial());
  h.on_probe(false, kT0);
  REQUIRE(h.offline());
  // The first ask after opening starts the cool-down: the outage is news.
  CHECK_FALSE(h.admit(t - Health::kTrialIntervalMs));
  CHECK_FALSE(h.take_trial());
  // An interval later one request is the trial; it stays granted until used.
  CHECK(h.admit(t));
  CHECK(h.admit(t + 1));
  CHECK(h.take_trial());
  // Used: nothing else goes until the interval has passed.
  CHECK_FALSE(h.admit(t + 2));
  CHECK_FALSE(h.take_trial());
  CHECK_FALSE(h.admit(t + Health::kTrialIntervalMs - 1));
  CHECK(h.admit(t + Health::kTrialIntervalMs));
  CHECK(h.take_trial());
  // The trial answered: the breaker closes and requests flow again.
  h.on_success(kT0 + 10);
  CHECK_FALSE(h.offline());
  CHECK(h.admit(t + Health::kTrialIntervalMs + 1));
  CHECK_FALSE(h.take_trial());
  CHECK(h.admit(t + Health::kTrialIntervalMs + 2));
  // The next outage starts with a fresh cool-down.
  h.on_probe(false, kT0 + 20);
  REQUIRE(h.offline());
  CHECK_FALSE(h.admit(t + 10 * Health::kTrialIntervalMs));
  CHECK(h.admit(t + 11 * Health::kTrialIntervalMs));
}

TEST_CASE("health: forced offline grants no trial", "[upstream][health]") {
  Health h(true);
  CHECK_FALSE(h.admit(1));
  CHECK_FALSE(h.admit(1'000'000));
  CHECK_FALSE(h.take_trial());
}
