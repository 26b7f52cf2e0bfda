#include "cache/fill.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>

#include "base/log.hpp"
#include "cache/parent_errors.hpp"
#include "store/store.hpp"
#include "storesvc/store_service.hpp"

namespace outpost::cache {

Fill::Fill(storesvc::StoreService* store, Route route, Digest digest, OnFinished on_finished)
    : store_(store), route_(std::move(route)), digest_(std::move(digest)), on_finished_(std::move(on_finished)) {}

Fill::~Fill() {
  if (read_fd_ >= 0) ::close(read_fd_);
}

/// The fill's upload session and the fd subscribers read it through.
struct Fill::Session {
  std::string id;
  store::UniqueFd fd;
};

void Fill::start() {
  auto self = shared_from_this();
  std::string repo = route_.local_repo;
  state_ = State::Fetching;
  // The parent is asked at once, while the pool creates the session (a
  // directory, a file, two directory fsyncs and a SQLite commit): the first
  // byte does not wait for the disk (issue #14). Bytes that arrive first
  // wait in pending_ (bounded by the parent's pause) for the session.
  // The session's file is opened in the same pool job: an open() is a
  // filesystem call, and the loop makes none.
  store_->run<Session>(
      [repo](store::Store& st) -> Result<Session> {
        auto id = st.start_upload(repo, /*internal=*/true);
        if (!id) return std::move(id).error();
        Session s{*id, {}};
        if (auto uid = store::UploadId::parse(s.id))
          s.fd = store::UniqueFd(::open(st.layout().upload_data(*uid).c_str(), O_RDONLY | O_CLOEXEC));
        if (!s.fd.valid()) {
          (void)st.cancel_upload(repo, s.id);
          return Error(Errc::Io, "cannot open the fill's session file");
        }
        return s;
      },
      [self](Result<Session> s) { self->on_session(std::move(s)); });
  op_ = route_.upstream->request(
      http::Method::Get, "/v2/" + route_.upstream_repo + "/blobs/" + digest_.str(), route_.upstream_repo, {},
      [self](const http::ClientResponse& r) {
        self->on_head(r);
        return self->state_ == State::Fetching;
      },
      [self](std::string_view c) { self->on_data(c); },
      [self](Status st) { self->on_upstream_done(std::move(st)); });
}

void Fill::on_session(Result<Session> s) {
  if (state_ != State::Fetching) {
    // The fill failed while its session was being made: drop the session.
    if (s) {
      std::string repo = route_.local_repo, id = s->id;
      store_->run_serial<void>(
          storesvc::upload_key(id), [repo, id](store::Store& st) { return st.cancel_upload(repo, id); }, [](Status) {});
    }
    return;
  }
  if (!s) return fail(s.error());
  upload_id_ = s->id;
  read_fd_ = s->fd.release();
  if (pending_) return append_pending();
  if (upstream_done_ && received_ == fetched_) commit();  // an empty blob
}

void Fill::on_head(const http::ClientResponse& r) {
  if (r.status == 404) return fail(Error(Errc::BlobUnknown, digest_.str()));
  if (r.status != 200) return fail(parent_status(r.status, r.headers, "blob " + digest_.str()));
  total_ = r.content_length;
  headed_ = true;
  log::info("fill started", " digest=" + digest_.str() + " repo=" + route_.local_repo + " upstream=" +
                                route_.upstream->options().name +
                                (total_ ? " size=" + std::to_string(*total_) : std::string(" size=unknown")));
  notify();
}

void Fill::on_data(std::string_view chunk) {
  if (state_ != State::Fetching) return;
  if (total_ && fetched_ + chunk.size() > *total_)
    return fail(Error(Errc::UpstreamError, "parent sent more bytes than its Content-Length"));
  // pwrite + SHA-256 on the pool, in order; readers learn of the bytes
  // (received_) only once they are in the file they read from. One append
  // at a time: what arrives meanwhile waits in `pending_` and goes as one
  // job when the append in flight delivers. So a pool that keeps up costs
  // no latency, and one that falls behind gets fewer, larger jobs instead
  // of a loop round trip per read (issue #14).
  if (!pending_) {
    pending_at_ = fetched_;
    if (spare_) {
      pending_ = std::move(spare_);
    } else {
      pending_ = std::make_shared<std::string>();
      // All it may hold before the parent is paused, at once: grown by
      // doubling, each copy briefly held old and new buffers (peak RSS in a
      // cold pull, issue #14). Pages not yet written are not resident.
      const uint64_t room = kMaxQueuedBytes + kReadSlackBytes;
      pending_->reserve(total_ ? std::min<uint64_t>(room, *total_ - fetched_) : room);
    }
  }
  pending_->append(chunk);
  fetched_ += chunk.size();
  if (!appending_ && !upload_id_.empty()) append_pending();
  // A disk slower than the parent must not pile the difference up in memory
  // (DESIGN.md invariant 6): stop reading the parent while too much is queued.
  if (op_ && pending_ && pending_->size() > kMaxQueuedBytes) op_->pause();
}

void Fill::append_pending() {
  auto bytes = std::move(pending_);
  pending_.reset();
  if (!bytes || bytes->empty()) return;
  appending_ = true;
  const uint64_t at = pending_at_;
  std::string repo = route_.local_repo, id = upload_id_;
  auto self = shared_from_this();
  store_->run_serial<uint64_t>(
      storesvc::upload_key(id), [repo, id, at, bytes](store::Store& st) { return st.append_upload(repo, id, at, *bytes); },
      [self, bytes](Result<uint64_t> r) mutable { self->on_appended(std::move(r), std::move(bytes)); });
}

void Fill::on_appended(Result<uint64_t> r, std::shared_ptr<std::string> bytes) {
  appending_ = false;
  // The written buffer becomes the next queue: a fresh megabyte per append
  // was a fresh set of pages to fault in and zero on the loop thread, each
  // time (with malloc trimming the heap between them), a third of a cold
  // fill's loop time (issue #14).
  if (bytes.use_count() == 1 && !spare_) {
    bytes->clear();
    spare_ = std::move(bytes);
  }
  if (state_ != State::Fetching) return;
  if (!r) return fail(r.error());
  received_ = *r;
  append_pending();
  if (op_) op_->resume();  // the queue went to the pool: room for the next
  notify();
  if (upstream_done_ && received_ == fetched_) commit();
}

void Fill::on_upstream_done(Status st) {
  op_.reset();
  if (state_ != State::Fetching) return;
  // An auth or redirect failure stays a 502 (the parent answered, wrongly);
  // only a parent that did not answer is a 503.
  if (!st) return fail(request_failed(route_.upstream, st.error()));
  if (total_ && fetched_ != *total_)
    return fail(Error(Errc::UpstreamError, "parent sent " + std::to_string(fetched_) + " of " +
                                               std::to_string(*total_) + " bytes"));
  upstream_done_ = true;
  // Else the last append's delivery commits (or the session's arrival).
  if (received_ == fetched_ && !upload_id_.empty()) commit();
}

void Fill::commit() {
  state_ = State::Committing;
  auto self = shared_from_this();
  std::string repo = route_.local_repo, id = upload_id_;
  Digest d = digest_;
  std::vector<std::string> other_repos = other_repos_;
  // First the hash alone (no I/O): once the bytes are known to be right,
  // readers get their last byte without waiting for the durable publish
  // behind it (fsync, rename, directory fsync, SQLite commit: tens of ms on
  // a busy disk, per blob, on every cold pull's critical path). A mismatch
  // fails the fill here; the commit job queued behind then finds the same
  // and drops the session.
  store_->run_serial<Digest>(
      storesvc::upload_key(id), [repo, id](store::Store& st) { return st.upload_digest(repo, id); },
      [self](Result<Digest> got) {
        if (self->state_ != State::Committing) return;
        if (!got) return self->fail(got.error());
        if (!(*got == self->digest_))
          return self->fail(Error(Errc::UpstreamError, "parent sent bytes that do not hash to " + self->digest_.str()));
        self->verified_ = true;
        self->notify();
      });
  store_->run_serial<store::Descriptor>(
      storesvc::upload_key(id),
      [repo, id, d, other_repos](store::Store& st) -> Result<store::Descriptor> {
        auto r = st.commit_upload(repo, id, d, store::Origin::Cached);
        if (r)
          for (const auto& o : other_repos) (void)st.link_blob(o, d, store::Origin::Cached);
        return r;
      },
      [self](Result<store::Descriptor> r) {
        if (self->state_ != State::Committing) return;  // failed at the verify
        if (!r) {
          self->upload_id_.clear();  // a failed verify already dropped the session
          return self->fail(r.error().code == Errc::DigestInvalid
                                ? Error(Errc::UpstreamError, "parent sent bytes that do not hash to " + self->digest_.str())
                                : r.error());
        }
        log::info("fill committed", " digest=" + self->digest_.str() + " size=" + std::to_string(self->received_));
        self->link_late_repos();
      });
}

void Fill::link_late_repos() {
  // Readers of other repositories that joined after the commit job took its
  // list: linked here, before Done, so a fill never ends with a repository
  // that was served the blob but does not hold it. Any that join meanwhile
  // are taken by the next round (each repository joins once).
  if (!late_repos_.empty()) {
    auto self = shared_from_this();
    std::vector<std::string> repos = std::move(late_repos_);
    late_repos_.clear();
    Digest d = digest_;
    store_->run<void>(
        [repos, d](store::Store& st) -> Status {
          for (const auto& repo : repos) OUTPOST_TRY(st.link_blob(repo, d, store::Origin::Cached));
          return {};
        },
        [self](Status st) {
          if (self->state_ != State::Committing) return;
          // The blob itself is committed and right: a failed link only means
          // that repository asks the parent again next time.
          if (!st) log::warn("linking a filled blob to a reader's repository failed",
                             " digest=" + self->digest_.str() + " error=" + log::quote(st.error().message()));
          self->link_late_repos();
        });
    return;
  }
  state_ = State::Done;
  notify();
  if (on_finished_) {
    auto cb = std::move(on_finished_);
    cb(this);
  }
}

void Fill::fail(Error e) {
  if (state_ == State::Failed || state_ == State::Done) return;
  state_ = State::Failed;
  e = with_reason(std::move(e));
  error_ = e;
  log::warn("fill failed", " digest=" + digest_.str() + " reason=" + log::quote(e.message()));
  if (op_) {
    op_->cancel();
    op_.reset();
  }
  if (!upload_id_.empty()) {
    std::string repo = route_.local_repo, id = upload_id_;
    // Behind the appends still queued, so none of them writes after it.
    store_->run_serial<void>(
        storesvc::upload_key(id), [repo, id](store::Store& st) { return st.cancel_upload(repo, id); }, [](Status) {});
    upload_id_.clear();
  }
  auto self = shared_from_this();
  notify();  // readers end their responses: an error, or broken if started
  if (on_finished_) {
    auto cb = std::move(on_finished_);
    cb(this);
  }
}

uint64_t Fill::watch(Watcher w) {
  const uint64_t id = next_watch_++;
  watchers_.emplace(id, std::move(w));
  return id;
}

void Fill::add_reader_repo(const std::string& repo) {
  if (serves_repo(repo)) return;
  other_repos_.push_back(repo);
  // The commit job copied other_repos_ when it started.
  if (state_ == State::Committing) late_repos_.push_back(repo);
  if (state_ == State::Done) {
    // Joined after the commit (the parent's answer came late): link it now.
    Digest d = digest_;
    store_->run<void>([repo, d](store::Store& st) { return st.link_blob(repo, d, store::Origin::Cached); },
                      [d, repo](Status st) {
                        if (!st) log::warn("linking a filled blob to a reader's repository failed",
                                           " digest=" + d.str() + " repo=" + log::quote(repo) +
                                               " error=" + log::quote(st.error().message()));
                      });
  }
}

bool Fill::serves_repo(const std::string& repo) const {
  return repo == route_.local_repo || std::find(other_repos_.begin(), other_repos_.end(), repo) != other_repos_.end();
}

void Fill::notify() {
  // A watcher may unwatch itself or others while this runs: call a copy,
  // skipping ids gone meanwhile.
  std::vector<uint64_t> ids;
  ids.reserve(watchers_.size());
  for (const auto& [id, w] : watchers_) ids.push_back(id);
  for (uint64_t id : ids) {
    auto it = watchers_.find(id);
    if (it == watchers_.end()) continue;
    Watcher w = it->second;  // keeps the callback alive while it runs
    w();
  }
  // Nothing changes after Done or Failed; readers that still stream hold the
  // Fill themselves. Dropping the watchers breaks their reference cycles.
  if (state_ == State::Done || state_ == State::Failed) watchers_.clear();
}

}  // namespace outpost::cache
