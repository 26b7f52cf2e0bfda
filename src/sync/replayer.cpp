#include "sync/replayer.hpp"

#include <unistd.h>

#include <algorithm>
#include <limits>

#include "base/log.hpp"
#include "store/store.hpp"
#include "storesvc/store_service.hpp"
#include "sync/replay_policy.hpp"

namespace outpost::sync {

// Callbacks, in the order they fire for one entry:
//   fetch -> on_fetched -> launch -> blob_head | put_manifest | remove
//   blob_head -> blob_mount_or_upload -> blob_upload -> finish_* -> settle -> fetch

namespace {
constexpr size_t kProblemManifestMax = 4 * 1024 * 1024;  // manifest bytes read from a file the rows no longer name
}  // namespace

struct Replayer::Task {
  /// The parent this entry is pushed to: a SIGHUP that changes the parent
  /// lets the push in flight finish there (issue #17); later entries go to
  /// the new one.
  std::shared_ptr<upstream::RegistryClient> hold;
  std::unique_ptr<upstream::Pusher> pusher;
  store::ReplayEntry e;
  uint64_t gen = 0;
  upstream::PushOpPtr op;
  int fd = -1;  ///< a blob being uploaded; closed when the task ends
  uint64_t size = 0;
  void close_fd() {
    // A cancelled upload may still have one read of this fd queued on the
    // pool; it reads into a buffer its request pins and is then dropped, so
    // closing now is safe (at worst that pread sees EBADF).
    if (fd >= 0) ::close(fd);
    fd = -1;
  }
  ~Task() { close_fd(); }
};

Replayer::Replayer(uv_loop_t* loop, storesvc::StoreService& store, upstream::RegistryClient& parent,
                   ReplayerOptions opts)
    : loop_(loop), store_(store), parent_(&parent), opts_(std::move(opts)), poll_(loop) {
  if (opts_.max_in_flight == 0) opts_.max_in_flight = 1;
  rng_ = static_cast<uint64_t>(opts_.clock()) ^ reinterpret_cast<uintptr_t>(this) ^ 0x9e3779b97f4a7c15ull;
}

Replayer::~Replayer() {
  *alive_ = false;
  shutdown();
}

double Replayer::draw() {
  if (opts_.random) return opts_.random();
  // xorshift64*: jitter needs spread, not cryptographic quality.
  rng_ ^= rng_ >> 12;
  rng_ ^= rng_ << 25;
  rng_ ^= rng_ >> 27;
  return static_cast<double>((rng_ * 2685821657736338717ull) >> 11) / static_cast<double>(1ull << 53);
}

void Replayer::start() {
  if (down_ || running_) return;
  running_ = true;
  idle_ = false;
  probed_ = false;
  fetch();
}

void Replayer::stop() {
  if (!running_) return;
  running_ = false;
  ++gen_;
  poll_.stop();
  force_ = false;
  forced_.clear();
  // Cancel every push in flight: no callback of theirs fires after this.
  // Their entries stay pending; a blob's saved upload location lets the next
  // window resume where this one stopped.
  for (auto& [id, t] : tasks_) {
    // Dropped as well as cancelled: a blob upload keeps its done callback,
    // which holds the task, so task -> op -> callback -> task would outlive
    // the replayer (LeakSanitizer, shutdown during an upload).
    if (auto op = std::move(t->op)) op->cancel();
    t->close_fd();
  }
  tasks_.clear();
  fetching_ = false;  // an outstanding fetch is ignored (gen changed)
  changed();
}

void Replayer::shutdown() {
  stop();
  down_ = true;
  poll_.close();
}

void Replayer::retry_now() {
  if (!running_) return;
  force_ = true;
  forced_.clear();
  poke();
}

void Replayer::poke() {
  if (!running_) return;
  idle_ = false;
  if (fetching_) {
    again_ = true;
    return;
  }
  fetch();
}

bool Replayer::busy() const { return running_ && (fetching_ || probing_ || !tasks_.empty() || !idle_); }

uint64_t Replayer::bytes_in_flight() const {
  uint64_t n = 0;
  for (const auto& [id, t] : tasks_)
    if (t->op && t->e.kind == store::ReplayKind::Blob) n += t->op->bytes_sent();
  return n;
}

bool Replayer::at_replaced_parent(const std::string& url) const {
  if (replaced_origins_.empty()) return false;
  auto u = http::Url::parse(url);
  if (!u || u->origin() == parent_->options().url.origin()) return false;
  for (const auto& o : replaced_origins_)
    if (o == u->origin()) return true;
  return false;
}

void Replayer::set_parent(std::shared_ptr<upstream::RegistryClient> parent) {
  if (!parent || parent.get() == parent_) return;
  // Upload sessions saved at the parent being replaced are not resumed:
  // the blob would land there, not at the new parent.
  replaced_origins_.push_back(parent_->options().url.origin());
  parent_hold_ = std::move(parent);
  parent_ = parent_hold_.get();
  // Its mode is learnt again before the next push (fetch() probes).
  probed_ = false;
  poke();
}

std::string Replayer::blocked_reason() const { return parent_->replay_blocked_reason(opts_.self_read_only); }

void Replayer::changed() {
  if (on_change_) on_change_();
}

void Replayer::arm_poll() {
  if (!running_) return;
  poll_.start(opts_.idle_poll_ms, [this] { poke(); });
}

bool Replayer::live(const TaskPtr& t) const {
  if (!running_ || t->gen != gen_) return false;
  auto it = tasks_.find(t->e.id);
  return it != tasks_.end() && it->second == t;
}

void Replayer::fetch() {
  if (!running_ || fetching_ || down_) return;
  // The hierarchy rule (issue #15): nothing goes to a ReadOnly parent. The
  // SyncService pokes us again when the parent's mode changes.
  if (!blocked_reason().empty()) {
    idle_ = true;
    arm_poll();
    return;
  }
  if (tasks_.size() >= opts_.max_in_flight) return;
  // A parent not heard from yet may turn out ReadOnly: one probe first, so
  // no write reaches it before its mode is known (issue #15: a parent found
  // ReadOnly after the start blocks the replay, it does not fail entries).
  if (parent_->parent_mode() == upstream::ParentMode::Unknown && !probed_) {
    if (probing_) return;
    probing_ = true;
    auto alive = alive_;
    parent_->mutable_link().probe_now([this, alive](bool) {
      if (!*alive) return;
      probing_ = false;
      probed_ = true;
      fetch();  // does nothing when stopped meanwhile
    });
    return;
  }
  fetching_ = true;
  again_ = false;
  const int64_t now = force_ ? std::numeric_limits<int64_t>::max() / 2 : opts_.clock();
  // Entries in flight are still pending and come back first: ask for enough
  // to fill the free slots past them (and past the ones already forced).
  const size_t limit = tasks_.size() + opts_.max_in_flight + (force_ ? forced_.size() : 0);
  const uint64_t gen = gen_;
  auto alive = alive_;
  store_.run<std::vector<store::ReplayEntry>>(
      [now, limit](store::Store& s) { return s.replay_next(now, limit); },
      [this, alive, gen](Result<std::vector<store::ReplayEntry>> r) {
        if (!*alive) return;
        on_fetched(gen, std::move(r));
      });
}

void Replayer::on_fetched(uint64_t gen, Result<std::vector<store::ReplayEntry>> r) {
  if (gen != gen_ || !running_) return;
  fetching_ = false;
  if (!r) {
    progress_.last_error = "reading the replay queue: " + r.error().message();
    log::warn("replay: cannot read the queue", " reason=" + log::quote(r.error().message()));
    idle_ = true;
    arm_poll();
    return;
  }
  size_t started = 0;
  for (auto& e : *r) {
    if (tasks_.size() >= opts_.max_in_flight) break;
    if (tasks_.count(e.id)) continue;
    if (waits_for_tag_in_flight(e)) continue;
    if (force_ && !forced_.insert(e.id).second) continue;
    launch(std::move(e));
    ++started;
  }
  if (started == 0 && force_) {
    // Every waiting entry had its extra try: back to the backoff times.
    force_ = false;
    forced_.clear();
    if (tasks_.empty()) return fetch();
  }
  if (started == 0 && tasks_.empty()) {
    idle_ = true;
    changed();
    arm_poll();
    return;
  }
  idle_ = false;
  if (again_ || (started > 0 && tasks_.size() < opts_.max_in_flight)) return fetch();
  // Free slots while a long upload runs: new pushes and due retries must
  // not wait for it to end (operations.md: a push made while a window is
  // open is sent within about a second).
  if (tasks_.size() < opts_.max_in_flight) arm_poll();
}

bool Replayer::waits_for_tag_in_flight(const store::ReplayEntry& e) const {
  using K = store::ReplayKind;
  if ((e.kind != K::Tag && e.kind != K::DeleteTag) || !e.tag) return false;
  // A newer move or delete of a tag supersedes the older entry in the queue,
  // but not the request already on its way to the parent: sent in parallel,
  // the older one could land last and leave the parent on the old value.
  for (const auto& [id, t] : tasks_)
    if ((t->e.kind == K::Tag || t->e.kind == K::DeleteTag) && t->e.repo == e.repo && t->e.tag == e.tag) return true;
  return false;
}

void Replayer::launch(store::ReplayEntry e) {
  auto t = std::make_shared<Task>();
  t->hold = parent_hold_;
  t->pusher = std::make_unique<upstream::Pusher>(*parent_);
  t->gen = gen_;
  t->e = std::move(e);
  tasks_[t->e.id] = t;
  using K = store::ReplayKind;
  switch (t->e.kind) {
    case K::Blob: return blob_head(t);
    case K::Manifest:
    case K::Tag: return put_manifest(t);
    case K::DeleteManifest:
    case K::DeleteTag:
    case K::DeleteBlob: return remove(t);
  }
}

// ---- blobs ------------------------------------------------------------------

void Replayer::blob_head(const TaskPtr& t) {
  if (!t->e.digest) return finish_failed(t, "blob entry without a digest");
  t->op = t->pusher->blob_exists(t->e.repo, t->e.digest->str(), [this, t](upstream::PushResult<upstream::BlobPresence> r) {
    if (!live(t)) return;
    if (!r) return finish_error(t, r.error());
    if (r->exists) return finish_done(t);  // idempotent: the parent has it already
    blob_mount_or_upload(t);
  });
}

void Replayer::blob_mount_or_upload(const TaskPtr& t) {
  // A session saved in an earlier window (or before a crash) goes first:
  // resuming it sends only the missing bytes.
  if (t->e.upload_url && !t->e.upload_url->empty() && !at_replaced_parent(*t->e.upload_url))
    return blob_upload(t, *t->e.upload_url);
  auto alive = alive_;
  const Digest d = *t->e.digest;
  const std::string repo = t->e.repo;
  store_.run<std::optional<std::string>>(
      [d, repo](store::Store& s) { return s.replay_mount_source(d, repo); },
      [this, alive, t](Result<std::optional<std::string>> r) {
        if (!*alive || !live(t)) return;
        std::string from;
        if (r && *r) from = **r;
        else if (t->e.mount_from && *t->e.mount_from != t->e.repo) from = *t->e.mount_from;
        if (from.empty() || from == t->e.repo) return blob_upload(t, "");
        t->op = t->pusher->mount_blob(t->e.repo, t->e.digest->str(), from,
                                   [this, t](upstream::PushResult<upstream::MountResult> m) {
                                     if (!live(t)) return;
                                     if (m && m->mounted) return finish_done(t);
                                     if (m) return blob_upload(t, m->upload_location);
                                     // A mount is a hint: a refused one (no pull on the
                                     // source) is no reason to fail the blob.
                                     if (m.error().permanent()) return blob_upload(t, "");
                                     finish_error(t, m.error());
                                   });
      });
}

void Replayer::blob_upload(const TaskPtr& t, std::string resume_location) {
  struct Opened {
    int fd = -1;
    uint64_t size = 0;
  };
  auto alive = alive_;
  const Digest d = *t->e.digest;
  const std::string repo = t->e.repo;
  store_.run<Opened>(
      [d, repo](store::Store& s) -> Result<Opened> {
        if (auto ob = s.open_blob(repo, d)) return Opened{ob->fd.release(), ob->size};
        // Unlinked locally after it was queued: GC keeps the bytes of a
        // pending entry (README "Replay queue"), so read them by digest.
        auto fd = s.blobs().open_read(d);
        if (!fd) return std::move(fd).error();
        auto size = s.blobs().stat(d);
        if (!size) return std::move(size).error();
        return Opened{fd->release(), *size};
      },
      [this, alive, t, resume_location = std::move(resume_location)](Result<Opened> r) {
        if (r) t->fd = r->fd, t->size = r->size;  // the task owns it from here, live or not
        if (!*alive || !live(t)) return;
        if (!r) return finish_local_error(t, "cannot read the local blob: " + r.error().message());
        upstream::UploadOptions uo;
        uo.resume_location = resume_location;
        uo.chunk_size = opts_.chunk_size;
        const int64_t id = t->e.id;
        uo.on_location = [this, alive, t, id](const std::string& loc) {
          if (!*alive || !live(t)) return;
          // Saved for a restart; the Pusher calls this before sending more
          // bytes. Not awaited: a crash before it commits only costs a new
          // session (the upload restarts from 0), never a wrong blob.
          store_.run<bool>([id, loc](store::Store& s) { return s.replay_set_upload(id, loc, 0); },
                           [](Result<bool>) {});
        };
        t->op = t->pusher->upload_blob(t->e.repo, t->e.digest->str(), t->fd, t->size, std::move(uo),
                                    [this, t](upstream::PushResult<upstream::UploadResult> u) {
                                      if (!live(t)) return;
                                      t->close_fd();
                                      if (!u) return finish_error(t, u.error());
                                      progress_.bytes_sent += t->size - std::min(t->size, u->resumed_from);
                                      finish_done(t);
                                    });
      });
}

// ---- manifests and tags -------------------------------------------------------

void Replayer::put_manifest(const TaskPtr& t) {
  if (!t->e.digest) return finish_failed(t, "manifest entry without a digest");
  auto alive = alive_;
  const Digest d = *t->e.digest;
  const std::string repo = t->e.repo;
  store_.run<std::string>(
      [d, repo](store::Store& s) -> Result<std::string> {
        auto b = s.read_manifest(repo, d);
        if (b) return b;
        // Deleted locally meanwhile (its delete entry waits behind this one):
        // the bytes are still held for the queue.
        auto raw = s.blobs().read_all(d, kProblemManifestMax);
        if (raw) return raw;
        return b;
      },
      [this, alive, t](Result<std::string> r) {
        if (!*alive || !live(t)) return;
        if (!r) {
          if (r.error().code == Errc::ManifestUnknown || r.error().code == Errc::BlobUnknown)
            return finish_failed(t, "the local manifest is gone: " + r.error().message());
          return finish_local_error(t, "cannot read the local manifest: " + r.error().message());
        }
        // By digest for a manifest entry, by tag for a tag entry: the same
        // bytes, so the parent computes the same digest.
        const std::string ref = t->e.kind == store::ReplayKind::Tag && t->e.tag ? *t->e.tag : t->e.digest->str();
        std::string media_type = t->e.media_type;
        if (media_type.empty()) media_type = "application/vnd.oci.image.manifest.v1+json";
        t->op = t->pusher->put_manifest(t->e.repo, ref, media_type, std::move(*r),
                                     [this, t](upstream::PushResult<std::string> p) {
                                       if (!live(t)) return;
                                       if (!p) return finish_error(t, p.error());
                                       if (p.value() != t->e.digest->str())
                                         return finish_failed(t, "the parent stored it as " + p.value() + ", not " +
                                                                     t->e.digest->str());
                                       finish_done(t);
                                     });
      });
}

// ---- deletes ---------------------------------------------------------------

void Replayer::remove(const TaskPtr& t) {
  using K = store::ReplayKind;
  auto on_done = [this, t](upstream::PushResult<upstream::DeleteOutcome> r) {
    if (!live(t)) return;
    if (!r) return finish_error(t, r.error());
    if (r.value() == upstream::DeleteOutcome::Unsupported)
      return finish_failed(t, "the parent does not support this delete (" +
                                  std::string(store::replay_kind_name(t->e.kind)) + ")");
    finish_done(t);  // deleted, or already gone
  };
  switch (t->e.kind) {
    case K::DeleteManifest:
      if (!t->e.digest) return finish_failed(t, "delete entry without a digest");
      t->op = t->pusher->delete_manifest(t->e.repo, t->e.digest->str(), std::move(on_done));
      return;
    case K::DeleteTag:
      if (!t->e.tag) return finish_failed(t, "tag delete without a tag");
      t->op = t->pusher->delete_tag(t->e.repo, *t->e.tag, std::move(on_done));
      return;
    case K::DeleteBlob:
      if (!t->e.digest) return finish_failed(t, "delete entry without a digest");
      t->op = t->pusher->delete_blob(t->e.repo, t->e.digest->str(), std::move(on_done));
      return;
    default:
      return finish_failed(t, "not a delete");
  }
}

// ---- outcomes ----------------------------------------------------------------

void Replayer::finish_done(const TaskPtr& t) {
  t->op.reset();
  auto alive = alive_;
  const int64_t id = t->e.id;
  store_.run<bool>([id](store::Store& s) { return s.replay_done(id); },
                   [this, alive, t](Result<bool> r) {
                     if (!*alive) return;
                     if (r) {
                       ++progress_.sent;
                     } else {
                       // The parent has it; only our bookkeeping failed. The
                       // entry is sent again (a HEAD finds it) next time.
                       progress_.last_error = "recording a sent entry: " + r.error().message();
                     }
                     settle(t);
                   });
}

void Replayer::finish_error(const TaskPtr& t, const upstream::PushError& e) {
  if (!blocked_reason().empty()) {
    // The parent turned ReadOnly while this push was under way: its refusal
    // says nothing about the entry, which waits, unchanged, for a parent
    // that accepts it.
    t->op.reset();
    return settle(t);
  }
  Outcome o = outcome_of(e, t->e.attempts, opts_.clock(), draw());
  progress_.last_error = o.error;
  if (refused_for_missing_reference(t->e, e)) return requeue_refs_then_retry(t, std::move(o));
  if (o.verdict == Verdict::Fail) return finish_failed(t, o.error);
  ++progress_.retried;
  log::info("replay: will retry", " id=" + std::to_string(t->e.id) + " kind=" +
                                      std::string(store::replay_kind_name(t->e.kind)) + " repo=" + t->e.repo +
                                      " in_ms=" + std::to_string(o.next_attempt_ms - opts_.clock()) +
                                      " reason=" + log::quote(o.error));
  t->op.reset();
  record_retry(t, o);
}

bool Replayer::refused_for_missing_reference(const store::ReplayEntry& entry, const upstream::PushError& e) {
  using K = store::ReplayKind;
  if (entry.kind != K::Manifest && entry.kind != K::Tag) return false;
  const std::string& c = e.oci_code;
  return c == "MANIFEST_BLOB_UNKNOWN" || c == "BLOB_UNKNOWN" || c == "MANIFEST_UNKNOWN";
}

void Replayer::requeue_refs_then_retry(const TaskPtr& t, Outcome o) {
  // The parent lacks something the manifest references although this side
  // believed it sent (its GC removed it since, or an entry failed before a
  // fix). Waiting and asking again would never help: queue the references
  // again, and the manifest waits for them (replay_next's rules).
  t->op.reset();
  auto alive = alive_;
  const int64_t id = t->e.id;
  const int64_t attempts = t->e.attempts;
  store_.run<size_t>([id](store::Store& s) { return s.replay_requeue_refs(id); },
                     [this, alive, t, o = std::move(o), attempts](Result<size_t> r) mutable {
                       if (!*alive) return;
                       if (r && *r > 0) {
                         log::info("replay: the parent lacks what a manifest references; sending it again",
                                   " id=" + std::to_string(t->e.id) + " repo=" + t->e.repo +
                                       " queued=" + std::to_string(*r));
                         // Right after the references; a parent that keeps
                         // refusing gets the usual backoff from the third time.
                         o.verdict = Verdict::Retry;
                         if (attempts < 3) o.next_attempt_ms = opts_.clock();
                         else if (o.next_attempt_ms == 0)
                           o.next_attempt_ms = opts_.clock() + retry_delay_ms(attempts, 0, draw());
                       }
                       if (o.verdict == Verdict::Fail) return finish_failed(t, o.error);
                       ++progress_.retried;
                       record_retry(t, o);
                     });
}

void Replayer::finish_local_error(const TaskPtr& t, const std::string& why) {
  const Outcome o = local_failure(why, t->e.attempts, opts_.clock(), draw());
  progress_.last_error = why;
  ++progress_.retried;
  log::warn("replay: local error, will retry", " id=" + std::to_string(t->e.id) + " reason=" + log::quote(why));
  record_retry(t, o);
}

void Replayer::record_retry(const TaskPtr& t, const Outcome& o) {
  auto alive = alive_;
  const int64_t id = t->e.id;
  store_.run<bool>([id, o](store::Store& s) { return s.replay_retry(id, o.next_attempt_ms, o.error); },
                   [this, alive, t](Result<bool>) {
                     if (!*alive) return;
                     settle(t);
                   });
}

void Replayer::finish_failed(const TaskPtr& t, const std::string& why) {
  t->op.reset();
  progress_.last_error = why;
  log::warn("replay: entry failed for good", " id=" + std::to_string(t->e.id) + " kind=" +
                                                 std::string(store::replay_kind_name(t->e.kind)) + " repo=" +
                                                 t->e.repo + " reason=" + log::quote(why));
  auto alive = alive_;
  const int64_t id = t->e.id;
  store_.run<bool>([id, why](store::Store& s) { return s.replay_failed(id, why); },
                   [this, alive, t](Result<bool> r) {
                     if (!*alive) return;
                     if (r && *r) ++progress_.failed;
                     settle(t);
                   });
}

void Replayer::settle(const TaskPtr& t) {
  t->close_fd();
  auto it = tasks_.find(t->e.id);
  if (it != tasks_.end() && it->second == t) tasks_.erase(it);
  changed();
  if (running_) {
    idle_ = false;
    fetch();
  }
}

}  // namespace outpost::sync
