#include "sync/sync_service.hpp"

#include <algorithm>
#include <ctime>

#include "base/log.hpp"
#include "store/store.hpp"
#include "storesvc/store_service.hpp"
#include "upstream/registry_client.hpp"

namespace outpost::sync {

namespace {
/// Longest sleep of the window timer: a wall-clock jump (NTP step, a VM
/// resumed) is noticed within this, whatever the schedule says.
constexpr int64_t kRecheckMs = 60'000;
constexpr uint64_t kStatsDelayMs = 200;  // coalesces the refreshes a burst of outcomes asks for

struct QueueView {
  store::ReplayStats stats;
  std::vector<store::ReplayEntry> problems;
};
}  // namespace

std::string iso_time(int64_t ms) {
  time_t s = static_cast<time_t>(ms / 1000);
  struct tm tm {};
  gmtime_r(&s, &tm);
  char buf[32];
  strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

SyncService::SyncService(uv_loop_t* loop, storesvc::StoreService& store, upstream::RegistryClient& parent,
                         SyncSchedule schedule, SyncServiceOptions opts)
    : loop_(loop),
      store_(store),
      parent_(&parent),
      schedule_(std::move(schedule)),
      opts_(std::move(opts)),
      window_timer_(loop),
      expire_timer_(loop),
      task_timer_(loop),
      stats_timer_(loop) {
  if (opts_.replay) {
    opts_.replayer.self_read_only = opts_.self_read_only;
    replayer_ = std::make_unique<Replayer>(loop, store, parent, opts_.replayer);
    replayer_->set_on_change([this] { stats_changed(); });
  }
}

SyncService::~SyncService() {
  *alive_ = false;
  shutdown();
}

void SyncService::add_window_task(WindowTask t) {
  auto slot = std::make_unique<TaskSlot>();
  slot->task = std::move(t);
  tasks_.push_back(std::move(slot));
  if (started_ && open_) start_tasks();
}

void SyncService::start() {
  if (started_ || down_) return;
  started_ = true;
  auto alive = alive_;
  // Issue #15: a parent found ReadOnly after the start stops the replay (the
  // pushes in flight are cancelled; entries stay pending); back to a mode
  // that accepts writes, it resumes.
  watch_parent_mode();
  const bool open = schedule_.is_continuous() || schedule_.is_open();
  if (on_window_) on_window_(open);  // the state before anything opens
  evaluate();
  if (opts_.replay) arm_expire_timer();
  refresh([] {});
}

void SyncService::watch_parent_mode() {
  auto alive = alive_;
  upstream::RegistryClient* watched = parent_;
  parent_->mutable_link().on_mode_change([this, alive, watched](upstream::ParentMode) {
    // A listener stays on its Link for the Link's life: one of a parent
    // replaced by SIGHUP (still finishing work) speaks no more.
    if (!*alive || down_ || watched != parent_) return;
    on_mode_change();
  });
}

void SyncService::set_parent(std::shared_ptr<upstream::RegistryClient> parent) {
  if (down_ || !parent || parent.get() == parent_) return;
  parent_hold_ = std::move(parent);
  parent_ = parent_hold_.get();
  if (replayer_) replayer_->set_parent(parent_hold_);
  if (!started_) return;
  watch_parent_mode();
  // The new parent's mode is not known yet: the replayer probes it before
  // its first push; blocked or not is decided again now.
  on_mode_change();
}

void SyncService::shutdown() {
  if (down_) return;
  down_ = true;
  if (replayer_) replayer_->shutdown();
  for (auto& s : tasks_)
    if (s->running && s->task.cancel) s->task.cancel();
  window_timer_.close();
  expire_timer_.close();
  task_timer_.close();
  stats_timer_.close();
}

void SyncService::set_schedule(SyncSchedule next) {
  if (down_) return;
  const int64_t now = schedule_.now();
  if (!schedule_.is_continuous()) {
    if (auto w = schedule_.current_window(now); w && w->manual && open_) next.open_now(w->start_ms);
  }
  schedule_ = std::move(next);
  window_timer_.stop();
  evaluate();
}

void SyncService::evaluate() {
  if (down_) return;
  const bool should = schedule_.is_continuous() || schedule_.is_open();
  if (should && !open_) open_window();
  else if (!should && open_) close_window();
  arm_window_timer();
}

void SyncService::arm_window_timer() {
  if (down_ || schedule_.is_continuous()) return;
  const int64_t now = schedule_.now();
  int64_t wait = kRecheckMs;
  if (open_) {
    if (auto w = schedule_.current_window(now)) wait = w->end_ms - now;
  } else if (auto n = schedule_.next_open(now)) {
    wait = *n - now;
  }
  wait = std::clamp<int64_t>(wait, 1, kRecheckMs);
  window_timer_.start(static_cast<uint64_t>(wait), [this] { evaluate(); });
}

void SyncService::open_window() {
  open_ = true;
  const int64_t now = schedule_.now();
  auto w = schedule_.is_continuous() ? std::nullopt : schedule_.current_window(now);
  last_start_ms_ = w ? w->start_ms : now;
  last_end_ms_.reset();
  log::info("sync window open", schedule_.is_continuous() ? " continuous=true"
                                                          : " until=" + iso_time(w ? w->end_ms : now) +
                                                                (w && w->manual ? " manual=true" : ""));
  if (on_window_) on_window_(true);
  if (replayer_) {
    replayer_->reset_progress();
    replayer_->start();
  }
  start_tasks();
  if (schedule_.is_continuous() && !tasks_.empty())
    task_timer_.start(opts_.continuous_task_interval_ms, [this] {
      if (open_) start_tasks();
    });
}

void SyncService::close_window() {
  open_ = false;
  last_end_ms_ = schedule_.now();
  if (replayer_) replayer_->stop();
  std::string tasks_failed;
  for (auto& s : tasks_) {
    std::string why = s->last_error;
    if (s->running) {
      why = "cut short at the window end";
      if (s->task.cancel) s->task.cancel();
    }
    if (!why.empty()) tasks_failed += (tasks_failed.empty() ? "" : "; ") + s->task.name + ": " + why;
  }
  // The result as the queue stood at the close (the numbers are at most a
  // moment old: every outcome refreshes them).
  std::string r;
  if (replayer_) {
    const auto& p = replayer_->progress();
    r = "sent " + std::to_string(p.sent) + ", " + std::to_string(stats_.pending) + " pending, " +
        std::to_string(p.failed) + " failed";
    const std::string blocked = replayer_->blocked_reason();
    if (!blocked.empty()) r += "; blocked: " + blocked;
    else if (stats_.pending == 0 && p.failed == 0) r = "completed: " + r;
    else r = "incomplete: " + r;
  } else {
    r = "completed";
  }
  if (!tasks_failed.empty()) r += "; " + tasks_failed;
  last_result_ = r;
  log::info("sync window closed", " result=" + log::quote(r));
  if (on_window_) on_window_(false);
  stats_changed();
}

void SyncService::start_tasks() {
  for (auto& up : tasks_) {
    TaskSlot* s = up.get();
    if (s->running || !s->task.start) continue;
    s->running = true;
    auto alive = alive_;
    s->task.start([this, alive, s](Status st) {
      if (!*alive) return;
      s->running = false;
      s->last_error = st.ok() ? std::string() : st.error().message();
      if (!st.ok() && st.error().code != Errc::Cancelled)
        log::warn("sync window task failed", " task=" + s->task.name + " reason=" + log::quote(s->last_error));
    });
  }
}

SyncService::Trigger SyncService::trigger() {
  if (down_) return Trigger::AlreadyOpen;
  if (schedule_.is_continuous() || open_) {
    // "sync now" in an open window: try what waits on its backoff now, and
    // run tasks that are not running.
    if (replayer_) replayer_->retry_now();
    start_tasks();
    return Trigger::AlreadyOpen;
  }
  schedule_.open_now(schedule_.now());
  evaluate();
  return open_ ? Trigger::Accepted : Trigger::AlreadyOpen;
}

void SyncService::on_mode_change() {
  if (!replayer_) return;
  if (!replayer_->blocked_reason().empty()) {
    log::warn("replay blocked", " reason=" + log::quote(replayer_->blocked_reason()));
    replayer_->stop();
  } else if (open_) {
    replayer_->start();
    replayer_->poke();
  }
}

// ---- queue numbers ---------------------------------------------------------

void SyncService::arm_expire_timer() {
  // Often enough that a short TTL (the test knob) is honoured within a
  // quarter of it; at most once a minute otherwise. A local store job: it
  // runs whether a window is open or not (no request reaches the parent).
  const uint64_t every = std::clamp<uint64_t>(opts_.message_ttl_ms / 4, 250, 60'000);
  expire_timer_.start(every, [this] { expire(); });
}

void SyncService::expire() {
  if (down_) return;
  const int64_t now = schedule_.now();
  const int64_t ttl = static_cast<int64_t>(opts_.message_ttl_ms);
  auto alive = alive_;
  store_.run<size_t>([now, ttl](store::Store& s) { return s.replay_expire(now, ttl); },
                     [this, alive](Result<size_t> r) {
                       if (!*alive || down_) return;
                       if (!r) {
                         log::warn("replay: expiring entries failed", " reason=" + log::quote(r.error().message()));
                       } else if (*r > 0) {
                         log::warn("replay: entries expired (message TTL)",
                                   " count=" + std::to_string(*r) + " ttl_ms=" + std::to_string(opts_.message_ttl_ms));
                         stats_changed();
                       }
                       arm_expire_timer();
                     });
}

void SyncService::stats_changed() {
  if (down_ || stats_timer_.active()) return;
  stats_timer_.start(kStatsDelayMs, [this] { refresh([] {}); });
}

void SyncService::refresh(std::function<void()> done) {
  if (!opts_.replay || down_) return done();
  auto alive = alive_;
  const size_t max = opts_.max_problems;
  store_.run<QueueView>(
      [max](store::Store& s) -> Result<QueueView> {
        QueueView v;
        auto st = s.replay_stats();
        if (!st) return std::move(st).error();
        v.stats = *st;
        auto pr = s.replay_problems(max);
        if (!pr) return std::move(pr).error();
        v.problems = std::move(*pr);
        return v;
      },
      [this, alive, done = std::move(done)](Result<QueueView> r) {
        if (*alive && r) {
          stats_ = r->stats;
          problems_ = std::move(r->problems);
          stats_known_ = true;
        }
        done();
      });
}

// ---- views -----------------------------------------------------------------

bool SyncService::busy() const {
  if (replayer_ && replayer_->busy()) return true;
  for (const auto& s : tasks_)
    if (s->running) return true;
  return false;
}

std::string SyncService::state() const {
  if (replayer_ && !replayer_->blocked_reason().empty()) return "blocked";
  if (!open_) return "closed";
  return busy() ? "replaying" : "idle";
}

nlohmann::json SyncService::status_json() const {
  using nlohmann::json;
  json j;
  j["parent_mode"] = std::string(upstream::parent_mode_name(parent_->parent_mode()));
  j["replay"] = opts_.replay;
  j["state"] = state();
  const std::string blocked = replayer_ ? replayer_->blocked_reason() : std::string();
  j["blocked_reason"] = blocked.empty() ? json(nullptr) : json(blocked);
  const int64_t now = schedule_.now();
  json q;
  q["pending"] = stats_.pending;
  q["bytes_pending"] = stats_.bytes_pending;
  q["oldest_age_s"] = stats_.oldest_pending_ms ? json(std::max<int64_t>(0, now - *stats_.oldest_pending_ms) / 1000)
                                               : json(nullptr);
  q["failed"] = stats_.failed;
  q["expired"] = stats_.expired;
  q["done"] = stats_.done;
  q["message_ttl_s"] = opts_.message_ttl_ms / 1000;
  j["queue"] = std::move(q);
  json probs = json::array();
  for (const auto& e : problems_) {
    json p;
    p["id"] = e.id;
    p["kind"] = std::string(store::replay_kind_name(e.kind));
    p["repo"] = e.repo;
    p["reference"] = e.tag ? json(*e.tag) : e.digest ? json(e.digest->str()) : json(nullptr);
    p["state"] = std::string(store::replay_state_name(e.state));
    p["error"] = e.error;
    p["created"] = iso_time(e.created_ms);
    p["updated"] = iso_time(e.updated_ms);
    probs.push_back(std::move(p));
  }
  j["problems"] = std::move(probs);
  json w;
  w["open"] = open_;
  w["continuous"] = schedule_.is_continuous();
  w["last_start"] = last_start_ms_ ? json(iso_time(*last_start_ms_)) : json(nullptr);
  w["last_end"] = last_end_ms_ ? json(iso_time(*last_end_ms_)) : json(nullptr);
  w["last_result"] = last_result_.empty() ? json(nullptr) : json(last_result_);
  auto next = schedule_.is_continuous() ? std::nullopt : schedule_.next_window(now);
  w["next"] = next ? json(iso_time(next->start_ms)) : json(nullptr);
  if (open_ && !schedule_.is_continuous())
    if (auto cw = schedule_.current_window(now)) w["ends"] = iso_time(cw->end_ms);
  j["window"] = std::move(w);
  if (replayer_) {
    const auto& p = replayer_->progress();
    j["window_progress"] = {{"sent", p.sent},
                            {"bytes_sent", p.bytes_sent + replayer_->bytes_in_flight()},
                            {"failed", p.failed},
                            {"retried", p.retried},
                            {"in_flight", replayer_->in_flight()},
                            {"last_error", p.last_error.empty() ? json(nullptr) : json(p.last_error)}};
  }
  json keep = json::array();
  for (const auto& s : tasks_) {
    if (!s->task.status) continue;
    json a = s->task.status();
    if (a.is_array())
      for (auto& x : a) keep.push_back(std::move(x));
  }
  j["keep"] = std::move(keep);
  return j;
}

nlohmann::json SyncService::progress_json() const {
  using nlohmann::json;
  json j;
  j["window_open"] = open_;
  j["busy"] = busy();
  j["state"] = state();
  j["queue_depth"] = stats_.pending;
  j["bytes_pending"] = stats_.bytes_pending;
  const ReplayProgress none;
  const ReplayProgress& p = replayer_ ? replayer_->progress() : none;
  j["sent"] = p.sent;
  j["bytes_sent"] = p.bytes_sent + (replayer_ ? replayer_->bytes_in_flight() : 0);
  j["failed"] = stats_.failed;
  j["expired"] = stats_.expired;
  j["last_error"] = p.last_error.empty() ? json(nullptr) : json(p.last_error);
  const std::string blocked = replayer_ ? replayer_->blocked_reason() : std::string();
  j["blocked_reason"] = blocked.empty() ? json(nullptr) : json(blocked);
  return j;
}

std::string SyncService::metrics_text() const {
  std::string out;
  auto gauge = [&out](const char* name, const char* help, uint64_t v) {
    out += std::string("# HELP ") + name + " " + help + "\n# TYPE " + name + " gauge\n" + name + " " +
           std::to_string(v) + "\n";
  };
  gauge("outpost_sync_window_open", "1 while a sync window is open (always with continuous sync)", open_ ? 1 : 0);
  gauge("outpost_replay_pending", "replay queue entries still to send to the parent", stats_.pending);
  gauge("outpost_replay_bytes_pending", "bytes of the pending blob entries", stats_.bytes_pending);
  gauge("outpost_replay_failed", "entries the parent refused for good (reported, not retried)", stats_.failed);
  gauge("outpost_replay_expired", "entries past their message TTL (local content kept)", stats_.expired);
  const int64_t now = schedule_.now();
  gauge("outpost_replay_oldest_age_seconds", "age of the oldest pending entry (0: none)",
        stats_.oldest_pending_ms ? static_cast<uint64_t>(std::max<int64_t>(0, now - *stats_.oldest_pending_ms) / 1000)
                                 : 0);
  out += "# HELP outpost_replay_sent_total entries the parent acknowledged, ever\n"
         "# TYPE outpost_replay_sent_total counter\noutpost_replay_sent_total " +
         std::to_string(stats_.done) + "\n";
  auto unix_s = [](std::optional<int64_t> ms) { return ms ? static_cast<uint64_t>(std::max<int64_t>(0, *ms) / 1000) : 0; };
  gauge("outpost_sync_last_window_start_seconds", "Unix time the last window opened (0: none yet)", unix_s(last_start_ms_));
  gauge("outpost_sync_last_window_end_seconds", "Unix time the last window closed (0: none yet, or open)",
        unix_s(last_end_ms_));
  gauge("outpost_sync_last_window_completed",
        "1 when the last closed window ended with its work done (status sync.window.last_result)",
        last_result_.rfind("completed", 0) == 0 ? 1 : 0);
  std::optional<int64_t> next_start;
  if (!schedule_.is_continuous())
    if (auto next = schedule_.next_window(now)) next_start = next->start_ms;
  gauge("outpost_sync_next_window_seconds", "Unix time the next scheduled window opens (0: continuous or none)",
        unix_s(next_start));
  // Kept patterns, from the window tasks' status entries.
  std::string tags, refreshed;
  for (const auto& slot : tasks_) {
    if (!slot->task.status) continue;
    const nlohmann::json a = slot->task.status();
    if (!a.is_array()) continue;
    for (const auto& x : a) {
      if (!x.contains("pattern") || !x["pattern"].is_string()) continue;
      const std::string label = "{pattern=\"" + x["pattern"].get<std::string>() + "\"} ";
      tags += "outpost_keep_tags" + label + std::to_string(x.value("tags", uint64_t{0})) + "\n";
      refreshed += "outpost_keep_last_refresh_seconds" + label +
                   std::to_string(x.value("last_refresh_unix", uint64_t{0})) + "\n";
    }
  }
  if (!tags.empty()) {
    out += "# HELP outpost_keep_tags kept tags held here per sync.keep pattern\n# TYPE outpost_keep_tags gauge\n" + tags;
    out += "# HELP outpost_keep_last_refresh_seconds Unix time of the pattern's last complete refresh (0: none)\n"
           "# TYPE outpost_keep_last_refresh_seconds gauge\n" + refreshed;
  }
  return out;
}

}  // namespace outpost::sync
