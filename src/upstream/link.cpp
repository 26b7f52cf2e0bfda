#include "upstream/link.hpp"

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
  if (probe_call_) probe_call_->cancel();
  uv_close(reinterpret_cast<uv_handle_t*>(probe_timer_), [](uv_handle_t* h) { delete reinterpret_cast<uv_timer_t*>(h); });
}

bool Link::admit() { return closing_ ? false : health_.admit(uv_now(loop_)); }

void Link::record(bool answered, const std::string& reason) {
  if (health_.forced_offline()) return;
  Connectivity before = health_.state();
  if (answered) health_.on_success(wall_ms());
  else health_.on_failure();
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
}

void Link::suspect() {
  if (!probe_call_ && !health_.forced_offline()) schedule_probe(0);
}

void Link::schedule_probe(uint64_t delay_ms) {
  if (probe_call_ || closing_) return;  // one probe at a time; it reschedules when done
  uv_timer_start(probe_timer_, on_probe_timer, delay_ms, 0);
}

void Link::on_probe_timer(uv_timer_t* t) noexcept { static_cast<Link*>(t->data)->probe(); }

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
  probe_call_ = client_.send(
      std::move(req),
      [status](const http::ClientResponse& r) {
        *status = r.status;
        return true;
      },
      nullptr,
      [this, status](Status st) {
        probe_call_.reset();
        // 200, or 401 from a registry that wants auth: either way it answers.
        const bool answered = st.ok() && *status > 0 && *status < 500;
        if (health_.on_probe(answered, wall_ms())) {
          if (answered) log::info("parent back online", " upstream=" + log::quote(names_));
          else log::warn("parent offline", " upstream=" + log::quote(names_) + " reason=" +
                                              log::quote(st.ok() ? "status " + std::to_string(*status) : st.error().message()));
        }
        schedule_probe(health_.next_probe_delay_ms());
      });
}

}  // namespace outpost::upstream
