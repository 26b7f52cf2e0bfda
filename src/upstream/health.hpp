// Connectivity of one upstream, as seen from real requests and probes:
//
//   Online --failure--> Degraded --3 failures in a row, or a failed probe--> Offline
//     ^                    |                                                   |
//     +----success---------+<-------probe or trial request answers------------+
//
// While Offline (the breaker is open) no request waits on the parent, except
// one trial request at most every kTrialIntervalMs (half-open): a client
// asking for something not held lets one request through, and its answer
// closes the breaker at once. Probes back off from 1 s to kMaxBackoffMs, so
// a parent that comes back is seen within 3 s even when nobody asks.
//
// Pure bookkeeping (no I/O, no timers): upstream::Link feeds it outcomes and
// asks it when to probe; tests drive it with a fake clock.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace outpost::upstream {

enum class Connectivity { Online, Degraded, Offline };
std::string_view connectivity_name(Connectivity c);

/// What the parent says it is, from the `Outpost-Mode` header of its answers
/// (issue #15, "Modes and the hierarchy rule"):
///   Unknown     never answered yet
///   ReadWrite   an Outpost that accepts pushes (so replayed ones too)
///   ReadOnly    an Outpost that refuses every write: a ReadWrite child
///               cannot replay to it
///   NotOutpost  answered without the header (distribution, Harbor, a cloud
///               registry): treated as writable
enum class ParentMode { Unknown, ReadWrite, ReadOnly, NotOutpost };
std::string_view parent_mode_name(ParentMode m);
/// The mode an answer's `Outpost-Mode` header value announces (absent:
/// NotOutpost; a value that is neither mode is read as NotOutpost too, so
/// an unknown future mode never blocks replay by accident).
ParentMode parent_mode_from_header(std::optional<std::string_view> value);
/// The hierarchy rule (DESIGN.md "mode": a ReadOnly parent accepts only
/// ReadOnly children): why a registry in mode `self_read_only` cannot replay
/// pushes to a parent at `parent_url` announcing `parent`, as one line an
/// operator can act on; empty when it can (or the parent's mode is unknown).
std::string hierarchy_conflict(bool self_read_only, ParentMode parent, const std::string& parent_url);

class Health {
 public:
  static constexpr int kFailuresToOpen = 3;
  static constexpr uint64_t kMinBackoffMs = 1'000;
  static constexpr uint64_t kMaxBackoffMs = 3'000;     ///< probe cap while not Online
  static constexpr uint64_t kIdleProbeMs = 30'000;     ///< probe interval while Online
  static constexpr uint64_t kTrialIntervalMs = 2'000;  ///< at most one trial request per interval

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

  /// Whether a request may go to the parent now (`now_ms`: a monotonic clock):
  /// always unless Offline; while Offline (not forced) it grants one trial
  /// per kTrialIntervalMs, the first one an interval after the first ask
  /// (the outage was just learnt). A granted trial stays granted until
  /// take_trial().
  bool admit(uint64_t now_ms);
  /// Called as a request starts: true when it is the granted trial (which
  /// is then used up), false when the parent is not Offline.
  bool take_trial();

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
  bool trial_granted_ = false;
  std::optional<uint64_t> last_trial_ms_;
};

}  // namespace outpost::upstream
