// The process's one libuv loop, owned RAII-style: at destruction every
// handle still open is closed and the loop is run until they are freed
// (libuv docs/src/handle.rst: memory of a handle is only released in its
// close callback), so uv_loop_close succeeds.
#pragma once
#include <uv.h>

#include <functional>

namespace outpost::uv {

class Loop {
 public:
  Loop();
  ~Loop();
  Loop(const Loop&) = delete;
  Loop& operator=(const Loop&) = delete;

  uv_loop_t* get() { return &loop_; }
  /// Runs until no active handle remains or stop() is called. Meanwhile
  /// this thread's info lines are held (log::hold_lines) and written in one
  /// go each time the loop is about to wait for I/O.
  void run();
  void stop() { uv_stop(&loop_); }

 private:
  uv_loop_t loop_;
  uv_prepare_t flush_log_;  ///< runs before each poll: log::flush()
};

/// Watches one signal; `cb` runs on the loop thread each time it arrives.
/// The object frees itself after close().
class Signal {
 public:
  static Signal* start(uv_loop_t* loop, int signum, std::function<void(int)> cb);
  void close();

 private:
  Signal() = default;
  ~Signal() = default;
  uv_signal_t h_;
  std::function<void(int)> cb_;
};

}  // namespace outpost::uv
