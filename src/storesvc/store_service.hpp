// StoreService: the only door from the event loop to the content store.
// Owns the store::Store; loop code hands it jobs (a function of Store&),
// which run on libuv's pool, and gets their results back on the loop.
// Knows nothing of HTTP, the cache or the upstream.
#pragma once
#include <uv.h>

#include <cassert>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <unordered_map>
#include <utility>

#include "base/result.hpp"
#include "store/gc.hpp"
#include "store/layout.hpp"
#include "uv/serial_queue.hpp"
#include "uv/work.hpp"

namespace outpost::store { class Store; }

namespace outpost::storesvc {

/// The threading rule as a type: every store::Store method blocks (SQLite,
/// fsync, rename, hashing), so a Store is reachable only as the parameter of
/// a job, and a job runs only on a pool thread. Nothing here returns a
/// Store& or Store*, so loop code cannot call a blocking store method; what
/// the loop may read directly (an atomic, fixed paths) has its own accessor.
///
/// Every member is loop-thread only: the thread that constructs the service
/// must be the one that runs `loop` (debug builds assert it on every job).
class StoreService {
 public:
  template <typename T>
  using Job = std::function<Result<T>(store::Store&)>;  ///< pool thread; must not touch loop-owned state
  template <typename T>
  using Done = std::function<void(Result<T>)>;  ///< loop thread, exactly once

  /// `store` must be open; `loop` must outlive the service. Construct it on
  /// the loop thread.
  StoreService(uv_loop_t* loop, std::unique_ptr<store::Store> store);
  /// Drains (drain()) and then closes the store: no job ever sees a closed
  /// store and no done callback is lost. Loop thread, loop not running.
  ~StoreService();
  StoreService(const StoreService&) = delete;
  StoreService& operator=(const StoreService&) = delete;

  /// Runs `job(store)` on the pool, then `done(result)` on the loop. Jobs of
  /// run() may run in parallel with each other and with serial jobs (the
  /// Store is safe from any thread; SQLite serialises its own writes).
  template <typename T>
  void run(Job<T> job, Done<T> done) {
    check_loop_thread();
    ++pending_;
    store::Store* s = store_.get();
    uv::run_in_pool<Result<T>>(
        loop_, [s, job = std::move(job)]() { return job(*s); },
        [this, done = std::move(done)](Result<T> r) {
          --pending_;
          done(std::move(r));
        });
  }

  /// As run(), but jobs sharing `key` run one at a time in call order and
  /// their done callbacks are delivered in that order (uv::SerialQueue); jobs
  /// of different keys run in parallel. Keys: upload_key(id) for an upload
  /// session. A key's queue exists only while it has jobs.
  template <typename T>
  void run_serial(const std::string& key, Job<T> job, Done<T> done) {
    check_loop_thread();
    ++pending_;
    auto& q = queues_[key];
    if (!q) q = uv::SerialQueue::make(loop_);
    store::Store* s = store_.get();
    q->push<Result<T>>([s, job = std::move(job)]() { return job(*s); },
                       [this, key, done = std::move(done)](Result<T> r) {
                         --pending_;
                         done(std::move(r));
                         drop_if_idle(key);
                       });
  }

  /// One GC pass (store/gc.hpp) on the pool; safe while serving.
  void gc(store::GcOptions opts, Done<store::GcReport> done);

  /// Loop-safe, non-blocking: the store's manifest generation (an atomic;
  /// store::Store::manifest_generation()).
  uint64_t manifest_generation() const;
  /// Loop-safe, non-blocking: the store's blob generation (an atomic;
  /// store::Store::blob_generation()).
  uint64_t blob_generation() const;
  /// Loop-safe, non-blocking: blob bytes published since the store opened
  /// (an atomic; store::Store::bytes_written()). The Housekeeper polls it.
  uint64_t bytes_written() const;
  /// Loop-safe, non-blocking: writes refused for a full disk since open.
  uint64_t nospace_errors() const;
  /// Loop-safe: the store's on-disk paths (fixed at open).
  const store::Layout& layout() const;
  uv_loop_t* loop() const { return loop_; }

  /// Jobs handed to the service whose done has not run yet.
  size_t pending() const { return pending_; }
  /// Keys with a live serial queue (drops to 0 once every key is idle).
  size_t serial_queues() const { return queues_.size(); }
  /// Runs the loop until every job delivered (also jobs queued by done
  /// callbacks meanwhile). For shutdown: call with the loop stopped.
  void drain();

 private:
  void drop_if_idle(const std::string& key);
  void check_loop_thread() const {
    assert(loop_thread_ == std::this_thread::get_id() && "StoreService is loop-thread only");
  }

  uv_loop_t* loop_;
  std::unique_ptr<store::Store> store_;
  size_t pending_ = 0;
  std::unordered_map<std::string, uv::SerialQueuePtr> queues_;
  std::thread::id loop_thread_ = std::this_thread::get_id();  ///< checked by assert()
};

/// The serial key of upload session `id` (client pushes and pull-through
/// fills both write through upload sessions).
inline std::string upload_key(const std::string& id) { return "upload/" + id; }

}  // namespace outpost::storesvc
