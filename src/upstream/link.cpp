#include "upstream/link.hpp"

#include <algorithm>

#include "base/log.hpp"

namespace outpost::upstream {

namespace {
uint64_t wall_ms() {
  uv_timeval64_t tv;
  uv_gettimeofday(&tv);
  return static_cast<uint64_t>(tv.tv_sec) * 1000 + static_cast<uint64_t>(tv.tv_usec) / 1000;
}
}  // namespace

Link::Link(uv_loop_t* loop, http::HttpClient& client, http::Url base, std::string name, uint64_t probe_timeout_ms,
           bool forced_offline)
    : loop_(loop), client_(client), base_(std::move(base)), origin_(base_.origin()), names_(std::move(name)),
      probe_timeout_ms_(probe_timeout_ms), health_(forced_offline) {
  probe_timer_ = new uv_timer_t;
  uv_timer_init(loop_, probe_timer_);
  probe_timer_->data = this;
  // Not ref'd: a pending probe alone must not keep the loop (and shutdown) alive.
  uv_unref(reinterpret_cast<uv_handle_t*>(probe_timer_));
  if (!health_.forced_offline()) schedule_probe(health_.next_probe_delay_ms());
}

Link::~Link() {
  probe_waiters_.clear();  // shutdown() answered them; a Link dropped without it owes nothing more
  if (probe_call_) probe_call_->cancel();
  uv_close(reinterpret_cast<uv_handle_t*>(probe_timer_), [](uv_handle_t* h) { delete reinterpret_cast<uv_timer_t*>(h); });
}

bool Link::admit() { return closing_ ? false : health_.admit(uv_now(loop_)); }

void Link::record(bool answered, const std::string& reason) {
  if (health_.forced_offline()) return;
  Connectivity before = health_.state();
  if (answered) {
    health_.on_success(wall_ms());
  } else {
    health_.on_failure();
    last_error_ = reason;
    last_error_ms_ = wall_ms();
  }
  if (health_.state() == before) return;
  if (answered) {
    log::info("parent reachable again", " upstream=" + log::quote(names_));
    // Back online: the probe returns to its idle interval.
    uv_timer_stop(probe_timer_);
    schedule_probe(health_.next_probe_delay_ms());
  } else {
    log::warn("parent failing", " upstream=" + log::quote(names_) + " state=" +
                                    std::string(connectivity_name(health_.state())) + " reason=" + log::quote(reason));
    schedule_probe(0);
  }
}

void Link::shutdown() {
  closing_ = true;
  uv_timer_stop(probe_timer_);
  if (probe_call_) probe_call_->cancel();
  probe_call_.reset();
  auto waiters = std::move(probe_waiters_);
  probe_waiters_.clear();
  for (auto& w : waiters) w(false);
}

void Link::suspect() {
  if (!probe_call_ && !health_.forced_offline()) schedule_probe(0);
}

void Link::note_mode(std::optional<std::string_view> header_value) {
  if (health_.forced_offline()) return;
  const ParentMode m = parent_mode_from_header(header_value);
  if (m == mode_) return;
  const ParentMode before = mode_;
  mode_ = m;
  // Logged once per change, not per answer: every answer carries the header.
  const std::string fields = " upstream=" + log::quote(names_) + " url=" + log::quote(base_.str()) +
                             " mode=" + std::string(parent_mode_name(m)) + " was=" +
                             std::string(parent_mode_name(before));
  if (m == ParentMode::ReadOnly) log::warn("parent mode changed", fields);
  else log::info("parent mode changed", fields);
  // Listeners may add listeners; iterate by index over the ones present now.
  const size_t n = mode_listeners_.size();
  for (size_t i = 0; i < n; ++i) {
    auto fn = mode_listeners_[i];
    fn(m);
  }
}

void Link::probe_now(std::function<void(bool)> done) {
  if (closing_ || health_.forced_offline()) return done(false);
  probe_waiters_.push_back(std::move(done));
  if (probe_call_) return;  // joins the probe in flight
  uv_timer_stop(probe_timer_);
  probe();
}

void Link::set_background_allowed(bool allowed) {
  if (allowed == background_allowed_) return;
  background_allowed_ = allowed;
  if (!allowed) {
    // A probe already on the wire finishes (it was sent inside the window);
    // the timer waits until the next window.
    uv_timer_stop(probe_timer_);
    return;
  }
  // A window opened: learn the parent's state now rather than at the next tick.
  if (!health_.forced_offline()) schedule_probe(0);
}

void Link::schedule_probe(uint64_t delay_ms) {
  // One probe at a time (it reschedules when done); none outside a window.
  if (probe_call_ || closing_ || !background_allowed_) return;
  uv_timer_start(probe_timer_, on_probe_timer, delay_ms, 0);
}

void Link::on_probe_timer(uv_timer_t* t) noexcept {
  auto* self = static_cast<Link*>(t->data);
  if (!self->background_allowed_) return;
  self->probe();
}

void Link::probe() {
  if (probe_call_ || health_.forced_offline() || closing_) return;
  http::ClientRequest req;
  req.url = base_;
  std::string base = base_.target;
  while (!base.empty() && base.back() == '/') base.pop_back();
  req.url.target = base + "/v2/";
  req.timeouts.connect_ms = probe_timeout_ms_;
  req.timeouts.first_byte_ms = probe_timeout_ms_;
  req.timeouts.progress_ms = probe_timeout_ms_;
  auto status = std::make_shared<int>(0);
  const uint64_t sent_ms = uv_now(loop_);
  probe_call_ = client_.send(
      std::move(req),
      [this, status](const http::ClientResponse& r) {
        *status = r.status;
        // The base endpoint answers 200 or 401 with the mode (issue #15).
        if (r.status > 0 && r.status < 500 && r.status != 429) note_mode(r.headers.get("Outpost-Mode"));
        return true;
      },
      nullptr,
      [this, status, sent_ms](Status st) {
        probe_call_.reset();
        // 200, or 401 from a registry that wants auth: either way it answers.
        const bool answered = st.ok() && *status > 0 && *status < 500;
        auto waiters = std::move(probe_waiters_);
        probe_waiters_.clear();
        if (answered) {
          last_probe_rtt_ms_ = std::max<uint64_t>(1, uv_now(loop_) - sent_ms);
        } else {
          last_error_ = st.ok() ? "status " + std::to_string(*status) : st.error().message();
          last_error_ms_ = wall_ms();
        }
        if (health_.on_probe(answered, wall_ms())) {
          if (answered) log::info("parent back online", " upstream=" + log::quote(names_));
          else log::warn("parent offline", " upstream=" + log::quote(names_) + " reason=" +
                                              log::quote(st.ok() ? "status " + std::to_string(*status) : st.error().message()));
        }
        schedule_probe(health_.next_probe_delay_ms());
        for (auto& w : waiters) w(answered);
      });
}

}  // namespace outpost::upstream
