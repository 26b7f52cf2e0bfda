#include "cache/fill.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>

#include "base/log.hpp"
#include "cache/parent_errors.hpp"
#include "store/store.hpp"
#include "storesvc/store_service.hpp"

namespace outpost::cache {

namespace {
constexpr size_t kPumpChunk = 256 * 1024;
}

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
  // The session's file is opened in the same pool job: an open() is a
  // filesystem call, and the loop makes none (issue #14).
  store_->run<Session>(
      [repo](store::Store& st) -> Result<Session> {
        auto id = st.start_upload(repo);
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
}

void Fill::on_session(Result<Session> s) {
  if (!s) return fail(s.error());
  upload_id_ = s->id;
  read_fd_ = s->fd.release();
  state_ = State::Fetching;
  auto self = shared_from_this();
  op_ = route_.upstream->request(
      http::Method::Get, "/v2/" + route_.upstream_repo + "/blobs/" + digest_.str(), route_.upstream_repo, {},
      [self](const http::ClientResponse& r) {
        self->on_head(r);
        return self->state_ == State::Fetching;
      },
      [self](std::string_view c) { self->on_data(c); },
      [self](Status st) { self->on_upstream_done(std::move(st)); });
}

void Fill::on_head(const http::ClientResponse& r) {
  if (r.status == 404) return fail(Error(Errc::BlobUnknown, digest_.str()));
  if (r.status != 200) return fail(parent_status(r.status, r.headers, "blob " + digest_.str()));
  total_ = r.content_length;
  log::info("fill started", " digest=" + digest_.str() + " repo=" + route_.local_repo + " upstream=" +
                                route_.upstream->options().name +
                                (total_ ? " size=" + std::to_string(*total_) : std::string(" size=unknown")));
  pump_all();
}

void Fill::on_data(std::string_view chunk) {
  if (state_ != State::Fetching) return;
  if (total_ && fetched_ + chunk.size() > *total_)
    return fail(Error(Errc::UpstreamError, "parent sent more bytes than its Content-Length"));
  // pwrite + SHA-256 on the pool, in order; subscribers learn of the bytes
  // (received_) only once they are in the file they read from.
  const uint64_t at = fetched_;
  fetched_ += chunk.size();
  auto bytes = std::make_shared<std::string>(chunk);
  std::string repo = route_.local_repo, id = upload_id_;
  auto self = shared_from_this();
  store_->run_serial<uint64_t>(
      storesvc::upload_key(id), [repo, id, at, bytes](store::Store& st) { return st.append_upload(repo, id, at, *bytes); },
      [self](Result<uint64_t> r) { self->on_appended(std::move(r)); });
  // A disk slower than the parent must not pile the difference up in memory
  // (DESIGN.md invariant 6): stop reading the parent while too much is queued.
  if (op_ && fetched_ - received_ > kMaxQueuedBytes) op_->pause();
}

void Fill::on_appended(Result<uint64_t> r) {
  if (state_ != State::Fetching) return;
  if (!r) return fail(r.error());
  received_ = *r;
  if (op_ && fetched_ - received_ <= kResumeQueuedBytes) op_->resume();
  pump_all();
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
  if (received_ == fetched_) commit();  // else the last append's delivery commits
}

void Fill::commit() {
  state_ = State::Committing;
  auto self = shared_from_this();
  std::string repo = route_.local_repo, id = upload_id_;
  Digest d = digest_;
  std::vector<std::string> other_repos;
  for (auto& s : subs_)
    if (s->repo != repo) other_repos.push_back(s->repo);
  store_->run_serial<store::Descriptor>(
      storesvc::upload_key(id),
      [repo, id, d, other_repos](store::Store& st) -> Result<store::Descriptor> {
        auto r = st.commit_upload(repo, id, d, store::Origin::Cached);
        if (r)
          for (const auto& o : other_repos) (void)st.link_blob(o, d, store::Origin::Cached);
        return r;
      },
      [self](Result<store::Descriptor> r) {
        if (!r) {
          self->upload_id_.clear();  // a failed verify already dropped the session
          return self->fail(r.error().code == Errc::DigestInvalid
                                ? Error(Errc::UpstreamError, "parent sent bytes that do not hash to " + self->digest_.str())
                                : r.error());
        }
        self->state_ = State::Done;
        log::info("fill committed", " digest=" + self->digest_.str() + " size=" + std::to_string(self->received_));
        self->pump_all();
        self->notify_watchers(Status{});
        if (self->on_finished_) {
          auto cb = std::move(self->on_finished_);
          cb(self.get());
        }
      });
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
  auto subs = std::move(subs_);
  subs_.clear();
  for (auto& s : subs) {
    if (s->started) s->ex->abort();  // a short body: never a complete-looking wrong one
    else s->ex->respond_error(e);
  }
  auto self = shared_from_this();
  notify_watchers(e);
  if (on_finished_) {
    auto cb = std::move(on_finished_);
    cb(this);
  }
}

void Fill::watch(std::function<void(Status)> fn) {
  if (state_ == State::Done) return fn(Status{});
  if (state_ == State::Failed) return fn(error_);
  watchers_.push_back(std::move(fn));
}

void Fill::notify_watchers(const Status& st) {
  auto list = std::move(watchers_);
  watchers_.clear();
  for (auto& fn : list) fn(st);
}

void Fill::subscribe(const http::ExchangePtr& ex, const std::string& local_repo) {
  if (state_ == State::Failed) return ex->respond_error(error_);
  auto s = std::make_shared<Sub>();
  s->ex = ex;
  s->repo = local_repo;
  subs_.push_back(s);
  std::weak_ptr<Fill> weak = weak_from_this();
  std::weak_ptr<Sub> ws = s;
  // A client that leaves just stops receiving; the fill goes on for the others
  // and for the cache.
  ex->set_on_abort([weak, ws] {
    auto f = weak.lock();
    auto sub = ws.lock();
    if (f && sub) std::erase(f->subs_, sub);
  });
  if (state_ != State::Starting && (total_ || state_ != State::Fetching || received_ > 0)) pump(s);
}

void Fill::pump_all() {
  auto subs = subs_;  // pump may remove entries
  for (auto& s : subs) pump(s);
}

void Fill::pump(const std::shared_ptr<Sub>& s) {
  if (s->waiting || !s->ex->alive()) return;
  if (!s->started) {
    if (state_ == State::Starting) return;
    s->started = true;
    s->ex->add_header("Docker-Content-Digest", digest_.str());
    s->ex->add_header("Content-Type", "application/octet-stream");
    s->ex->add_header("Accept-Ranges", "bytes");
    s->ex->begin_stream(200, total_);
    if (s->ex->req().method == http::Method::Head) {
      // HEAD: the head is all; no body bytes to wait for.
      s->ex->end_stream();
      std::erase(subs_, s);
      return;
    }
  }
  // Until the digest is verified, hold back the last byte of a fixed-length
  // body (and the final chunk of a chunked one), so a failed fill can only
  // ever look like a broken response.
  uint64_t limit = received_;
  if (state_ != State::Done && total_ && limit == *total_ && limit > 0) limit -= 1;
  std::string buf;
  while (s->sent < limit) {
    size_t n = static_cast<size_t>(std::min<uint64_t>(limit - s->sent, kPumpChunk));
    buf.resize(n);
    ssize_t got = ::pread(read_fd_, buf.data(), n, static_cast<off_t>(s->sent));
    if (got <= 0) {
      s->ex->abort();
      std::erase(subs_, s);
      return;
    }
    buf.resize(static_cast<size_t>(got));
    s->sent += static_cast<uint64_t>(got);
    if (!s->ex->write(buf)) {
      if (!s->ex->alive()) {
        std::erase(subs_, s);
        return;
      }
      s->waiting = true;
      // Strong: a waiting client keeps the Fill (and its fd) alive after the
      // inflight table let go of it; the reference goes with the Exchange.
      std::shared_ptr<Fill> f = shared_from_this();
      std::weak_ptr<Sub> ws = s;
      s->ex->set_on_drain([f, ws] {
        auto sub = ws.lock();
        if (!sub) return;
        sub->waiting = false;
        f->pump(sub);
      });
      return;
    }
  }
  if (state_ == State::Done && s->sent == received_) finish_sub(s);
}

void Fill::finish_sub(const std::shared_ptr<Sub>& s) {
  s->ex->end_stream();
  std::erase(subs_, s);
}

}  // namespace outpost::cache
