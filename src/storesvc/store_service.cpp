#include "storesvc/store_service.hpp"

#include "store/store.hpp"

namespace outpost::storesvc {

StoreService::StoreService(uv_loop_t* loop, std::unique_ptr<store::Store> store)
    : loop_(loop), store_(std::move(store)) {}

StoreService::~StoreService() {
  // The store closes only once nothing can reach it any more: a done
  // callback may queue a follow-up job, which drain() also waits for.
  drain();
}

void StoreService::drain() {
  check_loop_thread();
  while (pending_ > 0) uv_run(loop_, UV_RUN_ONCE);
}

void StoreService::gc(store::GcOptions opts, Done<store::GcReport> done) {
  run<store::GcReport>([opts = std::move(opts)](store::Store& s) { return s.gc(opts); }, std::move(done));
}

uint64_t StoreService::manifest_generation() const { return store_->manifest_generation(); }
uint64_t StoreService::blob_generation() const { return store_->blob_generation(); }
uint64_t StoreService::bytes_written() const { return store_->bytes_written(); }
uint64_t StoreService::nospace_errors() const { return store_->nospace_errors(); }

const store::Layout& StoreService::layout() const { return store_->layout(); }

void StoreService::drop_if_idle(const std::string& key) {
  auto it = queues_.find(key);
  if (it != queues_.end() && it->second->size() == 0) queues_.erase(it);
}

}  // namespace outpost::storesvc
