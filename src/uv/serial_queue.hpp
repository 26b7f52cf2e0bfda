// SerialQueue: jobs of one stream (an upload session's body, a fill) run on
// libuv's pool one at a time and in push order, each result delivered on the
// loop thread, so hashing and pwrite leave the loop without reordering the
// bytes of a session. Different queues run in parallel on the pool.
#pragma once
#include <uv.h>

#include <deque>
#include <functional>
#include <memory>
#include <utility>

#include "uv/work.hpp"

namespace outpost::uv {

class SerialQueue : public std::enable_shared_from_this<SerialQueue> {
 public:
  explicit SerialQueue(uv_loop_t* loop) : loop_(loop) {}
  static std::shared_ptr<SerialQueue> make(uv_loop_t* loop) { return std::make_shared<SerialQueue>(loop); }

  /// Queues `job` (pool thread, after every job pushed before it delivered)
  /// and `done` (loop thread, exactly once, in push order). Counted in
  /// pending_work() from now until `done` ran, so shutdown drains it.
  template <typename T>
  void push(std::function<T()> job, std::function<void(T)> done) {
    ++pending_work();
    auto self = shared_from_this();
    queue_.push_back([self, job = std::move(job), done = std::move(done)]() mutable {
      run_in_pool<T>(self->loop_, std::move(job), [self, done = std::move(done)](T v) {
        --pending_work();
        self->running_ = false;
        done(std::move(v));
        self->next();
      });
    });
    next();
  }

  /// Jobs pushed and not yet delivered.
  size_t size() const { return queue_.size() + (running_ ? 1 : 0); }

 private:
  void next() {
    if (running_ || queue_.empty()) return;
    running_ = true;
    auto start = std::move(queue_.front());
    queue_.pop_front();
    start();
  }

  uv_loop_t* loop_;
  bool running_ = false;
  std::deque<std::function<void()>> queue_;
};

using SerialQueuePtr = std::shared_ptr<SerialQueue>;

}  // namespace outpost::uv
