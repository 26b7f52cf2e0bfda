#include "upstream/health.hpp"

#include <algorithm>

namespace outpost::upstream {

std::string_view connectivity_name(Connectivity c) {
  switch (c) {
    case Connectivity::Online: return "online";
    case Connectivity::Degraded: return "degraded";
    case Connectivity::Offline: return "offline";
  }
  return "unknown";
}

std::string_view parent_mode_name(ParentMode m) {
  switch (m) {
    case ParentMode::Unknown: return "Unknown";
    case ParentMode::ReadWrite: return "ReadWrite";
    case ParentMode::ReadOnly: return "ReadOnly";
    case ParentMode::NotOutpost: return "NotOutpost";
  }
  return "Unknown";
}

ParentMode parent_mode_from_header(std::optional<std::string_view> value) {
  if (!value) return ParentMode::NotOutpost;
  std::string_view v = *value;
  while (!v.empty() && (v.front() == ' ' || v.front() == '\t')) v.remove_prefix(1);
  while (!v.empty() && (v.back() == ' ' || v.back() == '\t')) v.remove_suffix(1);
  if (v == "ReadOnly") return ParentMode::ReadOnly;
  if (v == "ReadWrite") return ParentMode::ReadWrite;
  return ParentMode::NotOutpost;
}

std::string hierarchy_conflict(bool self_read_only, ParentMode parent, const std::string& parent_url) {
  if (self_read_only || parent != ParentMode::ReadOnly) return {};
  return "parent " + parent_url +
         " is ReadOnly: a ReadWrite outpost cannot replay pushes to it; set registry.mode = \"ReadOnly\" "
         "or point [parent] at a ReadWrite registry";
}

Health::Health(bool forced_offline) : forced_(forced_offline) {
  if (forced_) state_ = Connectivity::Offline;
}

void Health::set(Connectivity s) {
  if (s == state_) return;
  if (s != Connectivity::Offline) {
    trial_granted_ = false;
    last_trial_ms_.reset();
  }
  state_ = s;
  ++transitions_;
}

void Health::on_success(uint64_t now_ms) {
  last_success_ms_ = now_ms;
  if (forced_) return;
  consecutive_failures_ = 0;
  backoff_ms_ = kMinBackoffMs;
  set(Connectivity::Online);
}

void Health::on_failure() {
  if (forced_) return;
  ++consecutive_failures_;
  set(consecutive_failures_ >= kFailuresToOpen ? Connectivity::Offline : Connectivity::Degraded);
}

bool Health::on_probe(bool answered, uint64_t now_ms) {
  if (forced_) return false;
  Connectivity before = state_;
  if (answered) {
    on_success(now_ms);
  } else {
    // The probe is the cheapest request a registry answers; when even that
    // fails, waiting on the parent is pointless: open at once.
    consecutive_failures_ = std::max(consecutive_failures_, kFailuresToOpen);
    // The first retry after opening comes after the minimum; later ones back off.
    if (state_ == Connectivity::Offline) backoff_ms_ = std::min(backoff_ms_ * 2, kMaxBackoffMs);
    set(Connectivity::Offline);
  }
  return before != state_;
}

bool Health::admit(uint64_t now_ms) {
  if (state_ != Connectivity::Offline) return true;
  if (forced_) return false;
  if (trial_granted_) return true;
  // The first ask after the breaker opened starts the cool-down: the outage
  // was just learnt, so nobody waits on the parent again before an interval.
  if (!last_trial_ms_) {
    last_trial_ms_ = now_ms;
    return false;
  }
  if (now_ms - *last_trial_ms_ < kTrialIntervalMs) return false;
  last_trial_ms_ = now_ms;
  trial_granted_ = true;
  return true;
}

bool Health::take_trial() {
  const bool was = trial_granted_;
  trial_granted_ = false;
  return was && state_ == Connectivity::Offline;
}

uint64_t Health::next_probe_delay_ms() const {
  if (state_ == Connectivity::Online) return kIdleProbeMs;
  if (state_ == Connectivity::Degraded) return kMinBackoffMs;
  return backoff_ms_;
}

}  // namespace outpost::upstream
