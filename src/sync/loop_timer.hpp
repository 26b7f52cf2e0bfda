// A one-shot, restartable libuv timer owned by one object (the replayer, the
// sync service). The uv_timer_t lives in a heap holder freed in its close
// callback (libuv handle.rst), so the owner may go away at any time after
// close(). Loop thread only.
#pragma once
#include <uv.h>

#include <cstdint>
#include <functional>

namespace outpost::sync {

class LoopTimer {
 public:
  explicit LoopTimer(uv_loop_t* loop) : h_(new Holder) {
    uv_timer_init(loop, &h_->t);
    h_->t.data = h_;
  }
  ~LoopTimer() { close(); }
  LoopTimer(const LoopTimer&) = delete;
  LoopTimer& operator=(const LoopTimer&) = delete;

  /// (Re)arms: `fn` runs once, `ms` from now, unless stopped or re-armed.
  void start(uint64_t ms, std::function<void()> fn) {
    if (!h_) return;
    h_->fn = std::move(fn);
    uv_timer_start(&h_->t, &LoopTimer::on_timer, ms, 0);
  }
  void stop() {
    if (h_) uv_timer_stop(&h_->t);
  }
  bool active() const { return h_ && uv_is_active(reinterpret_cast<const uv_handle_t*>(&h_->t)); }
  /// Ms until it fires (0 when not armed).
  uint64_t due_in() const { return active() ? uv_timer_get_due_in(&h_->t) : 0; }
  /// Stops for good; the handle is freed by the loop. Idempotent.
  void close() {
    if (!h_) return;
    uv_timer_stop(&h_->t);
    h_->fn = nullptr;
    uv_close(reinterpret_cast<uv_handle_t*>(&h_->t),
             [](uv_handle_t* x) { delete static_cast<Holder*>(x->data); });
    h_ = nullptr;
  }

 private:
  struct Holder {
    uv_timer_t t;
    std::function<void()> fn;
  };
  static void on_timer(uv_timer_t* t) noexcept {
    // A copy: the callback may re-arm (replacing fn) or close the timer.
    auto fn = static_cast<Holder*>(t->data)->fn;
    if (fn) fn();
  }
  Holder* h_;
};

}  // namespace outpost::sync
