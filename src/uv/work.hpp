// run_in_pool: runs a blocking job (SQLite commits, fsync, renames) on
// libuv's thread pool and delivers its result on the loop thread. The job
// gets only what its closure owns; it must not touch loop-owned state.
#pragma once
#include <uv.h>

#include <functional>
#include <optional>
#include <utility>

#include "uv/pool_priority.hpp"

namespace outpost::uv {

namespace detail {
template <typename T>
struct WorkReq {
  uv_work_t req;
  std::function<T()> job;
  std::function<void(T)> done;
  std::optional<T> result;
};
}  // namespace detail

/// Jobs queued and not yet delivered (loop thread only). Shutdown drains
/// them while everything their callbacks touch is still alive.
inline size_t& pending_work() {
  static size_t n = 0;
  return n;
}

/// `job` runs on a pool thread; `done` runs exactly once on the loop thread
/// with its return value (also when the loop is shutting down: libuv runs
/// after_work with UV_ECANCELED only for jobs that never started, in which
/// case `job` runs inline there so `done` still sees a real result).
template <typename T>
void run_in_pool(uv_loop_t* loop, std::function<T()> job, std::function<void(T)> done) {
  auto* w = new detail::WorkReq<T>{};
  w->req.data = w;
  w->job = std::move(job);
  w->done = std::move(done);
  ++pending_work();
  int rc = uv_queue_work(
      loop, &w->req,
      [](uv_work_t* r) {
        lower_pool_thread_priority_once();
        auto* w = static_cast<detail::WorkReq<T>*>(r->data);
        w->result.emplace(w->job());
      },
      [](uv_work_t* r, int) {
        auto* w = static_cast<detail::WorkReq<T>*>(r->data);
        if (!w->result) w->result.emplace(w->job());
        auto done = std::move(w->done);
        T value = std::move(*w->result);
        delete w;
        --pending_work();
        done(std::move(value));
      });
  if (rc != 0) {
    --pending_work();
    T value = w->job();
    auto d = std::move(w->done);
    delete w;
    d(std::move(value));
  }
}

}  // namespace outpost::uv
