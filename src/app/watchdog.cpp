#include "app/watchdog.hpp"

#include <systemd/sd-daemon.h>

#include <algorithm>
#include <cstdlib>

#include "base/log.hpp"

namespace outpost::app {

namespace {
constexpr uint64_t kStatusEveryMs = 2'000;
}

struct Watchdog::Timer {
  uv_timer_t t;
  std::function<void()> fn;
};

namespace {
Watchdog::Timer* make_timer(uv_loop_t* loop, uint64_t every_ms, std::function<void()> fn) {
  auto* t = new Watchdog::Timer;
  t->fn = std::move(fn);
  uv_timer_init(loop, &t->t);
  t->t.data = t;
  uv_timer_start(&t->t, [](uv_timer_t* h) { static_cast<Watchdog::Timer*>(h->data)->fn(); }, every_ms, every_ms);
  // Never what keeps the loop alive: shutdown ends with the listeners.
  uv_unref(reinterpret_cast<uv_handle_t*>(&t->t));
  return t;
}
}  // namespace

Watchdog::Watchdog(uv_loop_t* loop, std::function<std::string()> status_line)
    : loop_(loop), status_line_(std::move(status_line)) {
  uint64_t usec = 0;
  // 0 leaves WATCHDOG_USEC/WATCHDOG_PID in the environment (children do
  // not inherit it: outpost starts none).
  if (sd_watchdog_enabled(0, &usec) > 0 && usec > 0) interval_ms_ = std::max<uint64_t>(1, usec / 2'000);
}

Watchdog::~Watchdog() {
  for (Timer* t : {ping_, status_}) {
    if (!t) continue;
    uv_timer_stop(&t->t);
    uv_close(reinterpret_cast<uv_handle_t*>(&t->t), [](uv_handle_t* h) { delete static_cast<Timer*>(h->data); });
  }
}


void Watchdog::start() {
  if (!getenv("NOTIFY_SOCKET")) return;
  if (interval_ms_ && !ping_) {
    // The ping runs on the loop: a loop stuck in a callback stops it, which
    // is what WatchdogSec= is there to catch.
    sd_notify(0, "WATCHDOG=1");
    ping_ = make_timer(loop_, interval_ms_, [] { sd_notify(0, "WATCHDOG=1"); });
    log::info("systemd watchdog armed", " ping_every_ms=" + std::to_string(interval_ms_));
  }
  if (status_line_ && !status_) {
    auto send = [this] {
      std::string line = status_line_();
      if (line == last_status_) return;
      last_status_ = line;
      sd_notify(0, ("STATUS=" + line).c_str());
    };
    send();
    status_ = make_timer(loop_, kStatusEveryMs, send);
  }
}

}  // namespace outpost::app
