#include "storesvc/housekeeper.hpp"

#include <utility>
#include <vector>

#include "base/log.hpp"
#include "store/store.hpp"

namespace outpost::storesvc {

namespace {
int64_t wall_ms() {
  uv_timeval64_t tv;
  uv_gettimeofday(&tv);
  return static_cast<int64_t>(tv.tv_sec) * 1000 + tv.tv_usec / 1000;
}
}  // namespace

struct Housekeeper::Timer {
  uv_timer_t h;
  std::function<void()> fn;
};

Housekeeper::Housekeeper(uv_loop_t* loop, StoreService& store, HousekeeperOptions opts)
    : loop_(loop), store_(store), opts_(std::move(opts)),
      wall_offset_ms_(wall_ms() - static_cast<int64_t>(uv_now(loop))) {}

Housekeeper::~Housekeeper() { stop(); }

Housekeeper::Timer* Housekeeper::make_timer(std::function<void()> fn) {
  auto* t = new Timer;
  t->fn = std::move(fn);
  uv_timer_init(loop_, &t->h);
  t->h.data = t;
  uv_unref(reinterpret_cast<uv_handle_t*>(&t->h));
  return t;
}

void Housekeeper::start() {
  auto cb = [](uv_timer_t* h) { static_cast<Timer*>(h->data)->fn(); };
  const auto rep = [](int64_t ms) { return static_cast<uint64_t>(ms > 0 ? ms : 1); };
  flush_timer_ = make_timer([this] { flush_access(); });
  uv_timer_start(&flush_timer_->h, cb, rep(opts_.access_flush_ms), rep(opts_.access_flush_ms));
  seen_written_ = store_.bytes_written();
  poll_timer_ = make_timer([this] { poll_writes(); });
  uv_timer_start(&poll_timer_->h, cb, rep(opts_.write_poll_ms), rep(opts_.write_poll_ms));
  // The first pass at once: a store already over its limits (a smaller
  // max_size after a restart) is brought back without waiting; it also
  // measures the usage status shows.
  evict_timer_ = make_timer([this] { evict_now(); });
  uv_timer_start(&evict_timer_->h, cb, 0, rep(opts_.evict_interval_ms));
  if (opts_.gc_interval_ms > 0) {
    gc_timer_ = make_timer([this] {
      gc_now(false, [](Result<store::GcReport>) {});
    });
    uv_timer_start(&gc_timer_->h, cb, rep(std::min(opts_.first_gc_ms, opts_.gc_interval_ms)),
                   rep(opts_.gc_interval_ms));
  }
}

void Housekeeper::stop() {
  if (stopped_) return;
  stopped_ = true;
  for (Timer** t : {&flush_timer_, &poll_timer_, &evict_timer_, &gc_timer_}) {
    if (!*t) continue;
    uv_timer_stop(&(*t)->h);
    uv_close(reinterpret_cast<uv_handle_t*>(&(*t)->h),
             [](uv_handle_t* h) { delete static_cast<Timer*>(h->data); });
    *t = nullptr;
  }
  if (check_progress_) check_progress_->cancel = true;
  flush_access();
}

void Housekeeper::touch(const Digest& d) {
  // The loop's cached time (no clock read per GET), as wall-clock ms.
  access_[d.str()] = static_cast<int64_t>(uv_now(loop_)) + wall_offset_ms_;
  if (access_.size() >= opts_.access_max_pending) flush_access();
}

void Housekeeper::flush_access() {
  if (access_.empty()) return;
  std::vector<std::pair<Digest, int64_t>> batch;
  batch.reserve(access_.size());
  for (auto& [k, ms] : access_) {
    if (auto d = Digest::parse(k)) batch.emplace_back(std::move(*d), ms);
  }
  access_.clear();
  store_.run<bool>(
      [batch = std::move(batch)](store::Store& s) -> Result<bool> {
        auto st = s.record_access(batch);
        if (!st) return std::move(st).error();
        return true;
      },
      [](Result<bool> r) {
        // Lost recency only: the next reads record it again.
        if (!r) log::warn("access times not recorded", " err=" + log::quote(r.error().message()));
      });
}

void Housekeeper::poll_writes() {
  // Disk full: evict first (the refused write's retry then finds room).
  if (const uint64_t n = store_.nospace_errors(); n != seen_nospace_) {
    seen_nospace_ = n;
    evict_now(true);
  }
  const uint64_t w = store_.bytes_written();
  if (w == seen_written_) return;
  const uint64_t added = w - seen_written_;
  seen_written_ = w;
  // Only the limits can make a write matter; a free-space limit is checked
  // on every change (other processes fill the filesystem too).
  if (!opts_.evict.max_size.set() && !opts_.evict.min_free.set()) return;
  if (opts_.evict.min_free.set() || !stats_.usage || stats_.quota == 0 ||
      stats_.usage->total + added > stats_.quota) {
    evict_now();
  } else if (stats_.usage) {
    stats_.usage->total += added;  // estimate until the next measurement
  }
}

void Housekeeper::evict_now(bool disk_full) {
  if (stopped_) return;
  if (evicting_) {
    evict_again_ = true;
    evict_again_disk_full_ = evict_again_disk_full_ || disk_full;
    return;
  }
  evicting_ = true;
  struct Out {
    store::EvictReport rep;
    store::StorageUsage usage;
  };
  store::EvictOptions o = opts_.evict;
  if (disk_full) o.free_at_least = opts_.disk_full_reserve;
  // Reads so far go first, in the same job: the pass orders by them.
  std::vector<std::pair<Digest, int64_t>> reads;
  if (o.max_size.set() || o.min_free.set() || disk_full) {
    reads.reserve(access_.size());
    for (auto& [k, ms] : access_)
      if (auto d = Digest::parse(k)) reads.emplace_back(std::move(*d), ms);
    access_.clear();
  }
  store_.run<Out>(
      [o, reads = std::move(reads)](store::Store& s) -> Result<Out> {
        Out out;
        if (auto st = s.record_access(reads); !st)
          log::warn("access times not recorded", " err=" + log::quote(st.error().message()));
        auto r = s.evict(o);
        if (!r) return std::move(r).error();
        out.rep = *r;
        auto u = s.storage_usage();
        if (!u) return std::move(u).error();
        out.usage = *u;
        return out;
      },
      [this](Result<Out> r) {
        evicting_ = false;
        if (!r) {
          log::warn("eviction failed", " err=" + log::quote(r.error().message()));
        } else {
          stats_.usage = r->usage;
          stats_.usage_ms = wall_ms();
          stats_.quota = r->rep.quota;
          if (r->rep.need > 0) {
            ++stats_.eviction_passes;
            stats_.evicted_bytes += r->rep.freed;
            stats_.evicted_blobs += r->rep.blobs_removed;
            stats_.evicted_manifests += r->rep.manifests_removed;
            stats_.last_evict_short = r->rep.short_of_target;
          }
        }
        if (evict_again_ && !stopped_) {
          const bool full = evict_again_disk_full_;
          evict_again_ = false;
          evict_again_disk_full_ = false;
          evict_now(full);
        }
      });
}

void Housekeeper::gc_now(bool dry_run, StoreService::Done<store::GcReport> done, int64_t grace_ms) {
  store::GcOptions o = opts_.gc;
  o.dry_run = dry_run;
  if (grace_ms >= 0) o.grace_ms = grace_ms;
  const int64_t started = wall_ms();
  // Reads so far go first, in the same job: a layer a client just found
  // (HEAD) and will name in its manifest is not an abandoned push.
  std::vector<std::pair<Digest, int64_t>> reads;
  reads.reserve(access_.size());
  for (auto& [k, ms] : access_)
    if (auto d = Digest::parse(k)) reads.emplace_back(std::move(*d), ms);
  access_.clear();
  auto job = [o, reads = std::move(reads)](store::Store& s) -> Result<store::GcReport> {
    if (auto st = s.record_access(reads); !st)
      log::warn("access times not recorded", " err=" + log::quote(st.error().message()));
    return s.gc(o);
  };
  auto on_done = [this, dry_run, started, done = std::move(done)](Result<store::GcReport> r) {
    if (!dry_run) {
      stats_.last_gc_ms = wall_ms();
      stats_.last_gc_duration_ms = static_cast<uint64_t>(stats_.last_gc_ms - started);
      if (r) {
        stats_.last_gc = *r;
        stats_.last_gc_error.clear();
      } else {
        stats_.last_gc_error = r.error().message();
      }
      if (r && r->blobs_removed + r->orphan_files_removed > 0) evict_now();  // refresh usage
    }
    done(std::move(r));
  };
  store_.run<store::GcReport>(std::move(job), std::move(on_done));
}

bool Housekeeper::start_check(bool repair, uint64_t rate) {
  if (check_progress_ || stopped_) return false;
  check_progress_ = std::make_shared<store::CheckProgress>();
  stats_.check_running = true;
  store::CheckOptions o;
  o.repair = repair;
  o.rate = rate;
  o.grace_ms = opts_.gc.grace_ms;
  auto progress = check_progress_;
  store_.run<store::CheckReport>(
      [o, progress](store::Store& s) { return s.check(o, progress.get()); },
      [this](Result<store::CheckReport> r) {
        stats_.check_running = false;
        check_progress_.reset();
        if (r) {
          stats_.last_check = std::move(*r);
          stats_.last_check_error.clear();
        } else {
          stats_.last_check_error = r.error().message();
        }
      });
  return true;
}

}  // namespace outpost::storesvc
