// Connectivity of one upstream, as seen from real requests and probes:
//
//   Online --failure--> Degraded --3 failures in a row, or a failed probe--> Offline
//     ^                    |                                                   |
//     +----success---------+<-----------------probe answers--------------------+
//
// Pure bookkeeping (no I/O, no timers): RegistryClient feeds it outcomes and
// asks it when to probe; tests drive it with a fake clock.
#pragma once
#include <cstdint>
#include <string_view>

namespace outpost::upstream {

enum class Connectivity { Online, Degraded, Offline };
std::string_view connectivity_name(Connectivity c);

class Health {
 public:
  static constexpr int kFailuresToOpen = 3;
  static constexpr uint64_t kMinBackoffMs = 1'000;
  static constexpr uint64_t kMaxBackoffMs = 30'000;

  /// `forced_offline`: the operator said so (parent.offline = true); nothing changes it.
  explicit Health(bool forced_offline = false);

  Connectivity state() const { return state_; }
  bool offline() const { return state_ == Connectivity::Offline; }
  bool forced_offline() const { return forced_; }

  /// A real request got an answer (any status below 500). `now_ms` is wall-clock.
  void on_success(uint64_t now_ms);
  /// A real request failed: transport error, deadline, or a 5xx answer.
  void on_failure();
  /// A probe answered (true) or not (false). Returns true when the state changed.
  bool on_probe(bool answered, uint64_t now_ms);

  /// Delay before the next probe: backoff while not Online, else the idle interval.
  uint64_t next_probe_delay_ms() const;
  /// Unix ms of the last answer from the parent (0: never).
  uint64_t last_success_ms() const { return last_success_ms_; }
  uint64_t transitions() const { return transitions_; }

 private:
  void set(Connectivity s);
  Connectivity state_ = Connectivity::Online;
  bool forced_ = false;
  int consecutive_failures_ = 0;
  uint64_t backoff_ms_ = kMinBackoffMs;
  uint64_t last_success_ms_ = 0;
  uint64_t transitions_ = 0;
};

}  // namespace outpost::upstream
