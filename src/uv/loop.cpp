#include "uv/loop.hpp"

#include "base/log.hpp"

namespace outpost::uv {

Loop::Loop() {
  uv_loop_init(&loop_);
  // Prepare handles run once per iteration, just before the loop polls (and
  // maybe sleeps): held log lines never wait for the next event.
  uv_prepare_init(&loop_, &flush_log_);
  uv_prepare_start(&flush_log_, [](uv_prepare_t*) { log::flush(); });
  uv_unref(reinterpret_cast<uv_handle_t*>(&flush_log_));
}

Loop::~Loop() {
  // Close whatever is left (timers of finished requests, etc.), then let the
  // close callbacks run so their owners free themselves.
  uv_walk(&loop_, [](uv_handle_t* h, void*) {
    if (!uv_is_closing(h)) uv_close(h, nullptr);
  }, nullptr);
  uv_run(&loop_, UV_RUN_DEFAULT);
  if (uv_loop_close(&loop_) != 0) log::warn("event loop closed with handles still open");
}

void Loop::run() {
  log::hold_lines(true);
  uv_run(&loop_, UV_RUN_DEFAULT);
  log::hold_lines(false);
}

Signal* Signal::start(uv_loop_t* loop, int signum, std::function<void(int)> cb) {
  auto* s = new Signal;
  s->cb_ = std::move(cb);
  uv_signal_init(loop, &s->h_);
  s->h_.data = s;
  uv_signal_start(&s->h_, [](uv_signal_t* h, int sig) {
    auto* self = static_cast<Signal*>(h->data);
    self->cb_(sig);
  }, signum);
  return s;
}

void Signal::close() {
  uv_close(reinterpret_cast<uv_handle_t*>(&h_), [](uv_handle_t* h) { delete static_cast<Signal*>(h->data); });
}

}  // namespace outpost::uv
