// SerialQueue: per-session order, once-only delivery on the loop thread.
#include <catch2/catch.hpp>

#include <atomic>
#include <thread>
#include <vector>

#include "uv/loop.hpp"
#include "uv/serial_queue.hpp"

using outpost::uv::Loop;
using outpost::uv::pending_work;
using outpost::uv::SerialQueue;

TEST_CASE("SerialQueue runs jobs one at a time in order, off the loop, delivering each once on the loop", "[uv]") {
  Loop loop;
  const auto loop_thread = std::this_thread::get_id();
  auto q = SerialQueue::make(loop.get());
  auto q2 = SerialQueue::make(loop.get());
  constexpr int kJobs = 200;
  std::vector<int> ran;        // appended by jobs: only one runs at a time per queue
  std::vector<int> delivered;  // loop thread only
  std::atomic<int> concurrent{0};
  std::atomic<bool> overlap{false};
  std::atomic<bool> on_loop_thread{false};
  bool done_off_loop = false;
  int other_done = 0;
  for (int i = 0; i < kJobs; ++i) {
    q->push<int>(
        [&, i] {
          if (++concurrent > 1) overlap = true;
          if (std::this_thread::get_id() == loop_thread) on_loop_thread = true;
          ran.push_back(i);
          --concurrent;
          return i * 2;
        },
        [&](int v) {
          if (std::this_thread::get_id() != loop_thread) done_off_loop = true;
          delivered.push_back(v / 2);
        });
    // Another session's queue runs beside it and does not disturb the order.
    q2->push<int>([] { return 1; }, [&](int v) { other_done += v; });
  }
  CHECK(pending_work() >= 2 * kJobs);  // every queued job keeps shutdown waiting
  uv_run(loop.get(), UV_RUN_DEFAULT);
  CHECK(pending_work() == 0);
  CHECK_FALSE(overlap);
  CHECK_FALSE(on_loop_thread);
  CHECK_FALSE(done_off_loop);
  REQUIRE(ran.size() == kJobs);
  REQUIRE(delivered.size() == kJobs);
  for (int i = 0; i < kJobs; ++i) {
    CHECK(ran[i] == i);
    CHECK(delivered[i] == i);
  }
  CHECK(other_done == kJobs);
  CHECK(q->size() == 0);
}

TEST_CASE("SerialQueue: a job pushed from a done callback runs after the queue drained", "[uv]") {
  Loop loop;
  auto q = SerialQueue::make(loop.get());
  std::vector<int> order;
  q->push<int>([] { return 1; },
               [&](int v) {
                 order.push_back(v);
                 q->push<int>([] { return 3; }, [&](int w) { order.push_back(w); });
               });
  q->push<int>([] { return 2; }, [&](int v) { order.push_back(v); });
  uv_run(loop.get(), UV_RUN_DEFAULT);
  CHECK(order == std::vector<int>{1, 2, 3});
  CHECK(pending_work() == 0);
}
