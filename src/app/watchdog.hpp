// systemd integration on the event loop (issue #17): WATCHDOG=1 pings from a
// loop timer at half of WATCHDOG_USEC, so a stuck loop stops pinging and
// systemd restarts the service (WatchdogSec= in systemd/outpost.service),
// and STATUS= lines (link state, replay queue) sent when they change.
// Without NOTIFY_SOCKET (not under systemd) it does nothing.
//
// Thread: loop thread only.
#pragma once
#include <uv.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

namespace outpost::app {

class Watchdog {
 public:
  /// `status_line()` is asked every few seconds; a new answer is sent as STATUS=.
  Watchdog(uv_loop_t* loop, std::function<std::string()> status_line);
  ~Watchdog();
  Watchdog(const Watchdog&) = delete;
  Watchdog& operator=(const Watchdog&) = delete;

  /// Arms the timers (after READY=1).
  void start();
  /// The ping interval in ms (0: no watchdog asked for).
  uint64_t interval_ms() const { return interval_ms_; }

  struct Timer;  ///< a repeating loop timer (watchdog.cpp)

 private:
  uv_loop_t* loop_;
  std::function<std::string()> status_line_;
  uint64_t interval_ms_ = 0;
  std::string last_status_;
  Timer* ping_ = nullptr;
  Timer* status_ = nullptr;
};

}  // namespace outpost::app
