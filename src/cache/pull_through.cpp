#include "cache/pull_through.hpp"

#include "base/log.hpp"
#include "base/reference.hpp"
#include "cache/blob_response.hpp"
#include "cache/parent_errors.hpp"
#include "oci/manifest.hpp"
#include "store/store.hpp"
#include "storesvc/store_service.hpp"
#include "uv/work.hpp"

namespace outpost::cache {

namespace {
// Every manifest kind we store; the parent picks (distribution-spec "Pulling manifests").
const char* kManifestAccept =
    "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, "
    "application/vnd.docker.distribution.manifest.list.v2+json, "
    "application/vnd.docker.distribution.manifest.v2+json";

http::Headers accept_manifests() {
  http::Headers h;
  h.add("Accept", kManifestAccept);
  return h;
}

uint64_t wall_ms() {
  uv_timeval64_t tv;
  uv_gettimeofday(&tv);
  return static_cast<uint64_t>(tv.tv_sec) * 1000 + static_cast<uint64_t>(tv.tv_usec) / 1000;
}

}  // namespace

PullThrough::PullThrough(uv_loop_t* loop, storesvc::StoreService* store, PullOptions opts)
    : loop_(loop), store_(store), opts_(opts) {}

PullThrough::~PullThrough() {
  // Revalidation-wait timers still pending at exit: close them so their
  // memory (and the client answers they hold) is released by the loop.
  for (Timer* t : timers_) {
    t->fn = nullptr;
    uv_close(reinterpret_cast<uv_handle_t*>(&t->t), [](uv_handle_t* x) { delete static_cast<Timer*>(x->data); });
  }
}

void PullThrough::after_ms(uint64_t ms, std::function<void()> fn) {
  auto* t = new Timer{{}, std::move(fn), this};
  uv_timer_init(loop_, &t->t);
  t->t.data = t;
  timers_.insert(t);
  uv_timer_start(&t->t, [](uv_timer_t* h) {
    auto* self = static_cast<Timer*>(h->data);
    self->owner->timers_.erase(self);
    auto fn = std::move(self->fn);
    uv_close(reinterpret_cast<uv_handle_t*>(h), [](uv_handle_t* x) { delete static_cast<Timer*>(x->data); });
    if (fn) fn();
  }, ms, 0);
}

std::vector<const upstream::RegistryClient*> PullThrough::upstreams() const {
  std::vector<const upstream::RegistryClient*> out;
  if (parent_) out.push_back(parent_.get());
  for (const auto& u : named_) out.push_back(u.get());
  return out;
}

ManifestResult PullThrough::offline_answer(const Route& r, const std::string& tag, ManifestResult local) {
  stats_.served_offline++;
  local.offline = true;
  if (looks_like_digest(tag)) return local;  // content by digest has no age to report
  uint64_t now = wall_ms();
  auto it = tag_confirmed_.find(tag_key(r, tag));
  uint64_t since = it != tag_confirmed_.end() ? it->second : static_cast<uint64_t>(std::max<int64_t>(0, local.info.created_ms));
  local.tag_age_s = now > since ? (now - since) / 1000 : 0;
  return local;
}

bool PullThrough::may_fetch_miss() const {
  switch (opts_.pull_policy) {
    case PullPolicy::Always: return true;
    case PullPolicy::InWindow: return in_window();
    case PullPolicy::Never: return false;
  }
  return true;
}

void PullThrough::set_background_allowed(bool allowed) {
  if (parent_) parent_->set_background_allowed(allowed);
  for (auto& u : named_) u->set_background_allowed(allowed);
}

Error PullThrough::window_miss(const std::string& what) const {
  // Answered like an offline miss (503, a reason phrase that Go clients
  // print), since to the client it is one: the parent will not be asked now.
  const bool never = opts_.pull_policy == PullPolicy::Never;
  Error e(Errc::UpstreamUnavailable,
          what + " is not cached here, and " +
              (never ? std::string("sync.pull_through = \"never\": only kept repositories are fetched, in sync windows")
                     : std::string("sync.pull_through = \"in_window\": the parent is asked only while a sync window is open")));
  e.reason = never ? "Not Cached, Pull-Through Off" : "Not Cached, Outside Sync Window";
  return e;
}

void PullThrough::shutdown() {
  if (parent_) parent_->shutdown();
  for (auto& u : named_) u->shutdown();
}

void PullThrough::share_link(upstream::RegistryClient& c) {
  // One health state per origin (issue #13): a [parent] and an [[upstream]]
  // with the same URL learn of an outage once, and neither waits for it.
  for (const auto* u : upstreams()) {
    if (u == &c) continue;
    c.share_link_with(*u);
  }
}

void PullThrough::set_parent(std::shared_ptr<upstream::RegistryClient> c) {
  parent_ = std::move(c);
  share_link(*parent_);
}

void PullThrough::add_upstream(std::shared_ptr<upstream::RegistryClient> c) {
  named_.push_back(std::move(c));
  share_link(*named_.back());
}

void PullThrough::replace_upstreams(std::shared_ptr<upstream::RegistryClient> parent,
                                    std::vector<std::shared_ptr<upstream::RegistryClient>> named) {
  parent_ = nullptr;
  named_.clear();
  if (parent) set_parent(std::move(parent));
  for (auto& u : named) add_upstream(std::move(u));
}

std::optional<Route> PullThrough::route(const std::string& name, const std::optional<std::string>& ns) const {
  if (ns && !ns->empty()) {
    // containerd mirrors send ?ns=<registry host>; keep that content under
    // "<host>/<name>" so both addressing styles share one cache.
    for (const auto& u : named_) {
      if (u->options().name != *ns) continue;
      // containerd with override_path = true keeps the host in the path
      // (/v2/docker.io/library/alpine/...?ns=docker.io): the prefix is the
      // ns itself, not part of the upstream's repository name.
      std::string inner = name;
      if (inner.size() > ns->size() + 1 && inner.compare(0, ns->size(), *ns) == 0 && inner[ns->size()] == '/')
        inner = inner.substr(ns->size() + 1);
      return Route{u, *ns + "/" + inner, u->upstream_repo(inner)};
    }
  }
  size_t slash = name.find('/');
  if (slash != std::string::npos) {
    std::string first = name.substr(0, slash);
    for (const auto& u : named_)
      if (u->options().name == first) return Route{u, name, u->upstream_repo(name.substr(slash + 1))};
  }
  if (parent_) return Route{parent_, name, name};
  return std::nullopt;
}

void PullThrough::local_manifest(const Route& r, const std::string& reference, bool,
                                 std::function<void(Result<ManifestResult>)> done) {
  if (!committing_.empty()) {
    // Until its commit ends, a fetched manifest is newer than what the store
    // holds (fetch_manifest); the freshness rules in manifest() still apply.
    if (auto it = committing_.find(fetch_key(r, reference)); it != committing_.end()) return done(it->second.answer);
  }
  if (memo_) {
    // The memo replaces only this store read; every freshness rule stays in manifest().
    return memo_->get(r.local_repo, reference, true, [done = std::move(done)](Result<HotManifest> h) {
      if (!h) return done(std::move(h).error());
      return done(ManifestResult{std::move(h->info), *h->bytes, false, std::nullopt});
    });
  }
  std::string repo = r.local_repo;
  store_->run<ManifestResult>(
      [repo, reference](store::Store& st) -> Result<ManifestResult> {
        auto info = st.resolve_manifest(repo, reference);
        if (!info) return std::move(info).error();
        auto bytes = st.read_manifest(repo, info->digest);
        if (!bytes) return std::move(bytes).error();
        return ManifestResult{std::move(*info), std::move(*bytes), false, std::nullopt};
      },
      std::move(done));
}

std::string PullThrough::fetch_key(const Route& r, const std::string& reference) const {
  return "m:" + r.upstream->options().name + "/" + r.local_repo + "@" + reference;
}

PullThrough::LocalVerdict PullThrough::local_verdict(const Route& r, const std::string& reference,
                                                     store::Origin origin) const {
  // Invariant 5: while the parent is offline nobody waits on it, and
  // every answer says it came from an offline cache.
  if (r.upstream->offline()) return LocalVerdict::Offline;
  // What was pushed here is authoritative here (issue #13): never
  // revalidated against the parent.
  if (origin == store::Origin::Pushed) return LocalVerdict::Serve;
  if (looks_like_digest(reference)) return LocalVerdict::Serve;  // immutable: never revalidated
  thread_local std::string key;  // tag_key(r, reference), without an allocation per request
  key.assign(r.local_repo);
  key += ':';
  key += reference;
  auto it = tag_checked_.find(key);
  if (it != tag_checked_.end() && uv_now(loop_) - it->second < opts_.tag_ttl_ms) return LocalVerdict::Serve;
  // Outside a sync window no background request reaches the parent, and
  // a tag check is one (issue #15): the cached tag answers as it is.
  if (!in_window()) return LocalVerdict::ServeOutsideWindow;
  return LocalVerdict::Revalidate;
}

const HotManifest* PullThrough::hot_manifest(const Route& r, const std::string& reference) {
  if (!memo_) return nullptr;
  // Until its commit ends, a fetched manifest is newer than the store's.
  if (!committing_.empty() && committing_.count(fetch_key(r, reference))) return nullptr;
  bool outside_window = false;
  const HotManifest* hot = memo_->peek(r.local_repo, reference, [&](const HotManifest& h) {
    if (!h.bytes) return false;
    switch (local_verdict(r, reference, h.info.origin)) {
      case LocalVerdict::Serve: return true;
      case LocalVerdict::ServeOutsideWindow: outside_window = true; return true;
      default: return false;
    }
  });
  if (hot && outside_window) stats_.revalidations_skipped++;
  return hot;
}

void PullThrough::manifest(const Route& r, const std::string& reference, bool want_bytes, ManifestDone done) {
  local_manifest(r, reference, want_bytes, [this, r, reference, want_bytes, done](Result<ManifestResult> local) mutable {
    if (local) {
      switch (local_verdict(r, reference, local->info.origin)) {
        case LocalVerdict::Offline: return done(offline_answer(r, reference, std::move(*local)));
        case LocalVerdict::Serve: return done(std::move(local));
        case LocalVerdict::ServeOutsideWindow:
          stats_.revalidations_skipped++;
          return done(std::move(local));
        case LocalVerdict::Revalidate: break;
      }
      return revalidate(r, reference, std::move(*local), want_bytes, std::move(done));
    }
    Errc c = local.error().code;
    if (c != Errc::ManifestUnknown && c != Errc::NameUnknown) return done(std::move(local));
    if (!may_fetch_miss()) {
      stats_.window_misses++;
      // A HEAD in ReadWrite mode is a pushing client's "is it here?" (as
      // for an offline miss, api/manifests.cpp): "no", so the push goes on.
      if (!want_bytes && !opts_.read_only)
        return done(Error(Errc::ManifestUnknown, "manifest unknown: " + reference + " (not cached here)"));
      return done(window_miss("manifest " + reference));
    }
    // Offline: refused at once, but for the breaker's trial every few seconds.
    if (!r.upstream->admit()) {
      stats_.offline_misses++;
      return done(offline_miss(r.upstream));
    }
    fetch_manifest(r, reference, want_bytes, std::move(done));
  });
}

void PullThrough::revalidate(const Route& r, const std::string& tag, ManifestResult local, bool want_bytes,
                             ManifestDone done) {
  const std::string key = "rv:" + r.upstream->options().name + "/" + r.local_repo + ":" + tag;
  // Each waiter is answered once: by the revalidation, or by the cached tag
  // when the parent takes longer than revalidate_wait (the check goes on and
  // its answer serves later requests).
  struct Waiter {
    ManifestDone done;
    ManifestResult local;
    bool answered = false;
  };
  auto w = std::make_shared<Waiter>(Waiter{std::move(done), std::move(local)});
  const uint64_t now_loop = uv_now(loop_);
  if (auto st = reval_started_.find(key);
      st != reval_started_.end() && now_loop - st->second.second > opts_.revalidate_wait_ms) {
    manifest_waiters_.erase(key);  // its waiters were answered by their timers
    reval_started_.erase(st);
  }
  auto& waiters = manifest_waiters_[key];
  waiters.push_back([this, r, tag, w](Result<ManifestResult> fresh) {
    if (w->answered) return;
    w->answered = true;
    if (fresh) return w->done(std::move(fresh));
    if (fresh.error().code == Errc::Ok) return w->done(std::move(w->local));  // confirmed unchanged
    w->done(offline_answer(r, tag, std::move(w->local)));
  });
  after_ms(opts_.revalidate_wait_ms, [this, r, tag, w] {
    if (w->answered) return;
    w->answered = true;
    r.upstream->suspect();
    w->done(offline_answer(r, tag, std::move(w->local)));
  });
  if (waiters.size() > 1) return;  // a HEAD for this tag is already on its way

  const uint64_t gen = ++reval_generation_;
  reval_started_[key] = {gen, now_loop};
  stats_.revalidations++;
  const std::string local_digest = w->local.info.digest.str();
  auto remote_digest = std::make_shared<std::string>();
  auto status = std::make_shared<int>(0);
  r.upstream->request(
      http::Method::Head, "/v2/" + r.upstream_repo + "/manifests/" + tag, r.upstream_repo, accept_manifests(),
      [remote_digest, status](const http::ClientResponse& resp) {
        *status = resp.status;
        if (auto d = resp.headers.get("Docker-Content-Digest")) *remote_digest = std::string(*d);
        return true;
      },
      nullptr,
      [this, r, tag, key, gen, want_bytes, local_digest, remote_digest, status](Status st) {
        auto finish = [this, key, gen](Result<ManifestResult> res) {
          auto started = reval_started_.find(key);
          if (started == reval_started_.end() || started->second.first != gen) return;  // replaced
          reval_started_.erase(started);
          auto list = std::move(manifest_waiters_[key]);
          manifest_waiters_.erase(key);
          for (auto& fn : list) fn(res.ok() ? Result<ManifestResult>(*res) : Result<ManifestResult>(res.error()));
        };
        if (!st || *status >= 500 || *status == 0 || *status == 429) {
          log::info("tag revalidation failed, serving the cached tag",
                    " repo=" + r.local_repo + " tag=" + tag + " reason=" +
                        log::quote(st.ok() ? "status " + std::to_string(*status) : st.error().message()));
          return finish(Error(Errc::UpstreamUnavailable, "not confirmed"));
        }
        tag_checked_[tag_key(r, tag)] = uv_now(loop_);
        if (*status != 200 || remote_digest->empty() || *remote_digest == local_digest) {
          tag_confirmed_[tag_key(r, tag)] = wall_ms();
          return finish(Error(Errc::Ok, "unchanged"));
        }
        log::info("tag moved upstream", " repo=" + r.local_repo + " tag=" + tag + " from=" + local_digest +
                                            " to=" + *remote_digest);
        fetch_manifest(r, tag, want_bytes, [finish](Result<ManifestResult> res) {
          finish(res.ok() ? std::move(res) : Result<ManifestResult>(Error(Errc::UpstreamUnavailable, "refetch failed")));
        });
      });
}

void PullThrough::fetch_manifest(const Route& r, const std::string& reference, bool, ManifestDone done) {
  const std::string key = fetch_key(r, reference);
  auto& waiters = manifest_waiters_[key];
  waiters.push_back(std::move(done));
  if (waiters.size() > 1) return;  // coalesced onto the fetch in flight

  struct Got {
    int status = 0;
    std::string content_type, header_digest, body;
    http::Headers headers;  ///< of a non-200 answer (Retry-After)
    bool too_big = false;
    upstream::UpstreamOpPtr op;  ///< cancelled once the answer is known to be refused
  };
  stats_.manifest_fetches++;
  auto got = std::make_shared<Got>();
  const uint64_t cap = opts_.max_manifest_bytes;
  auto finish = [this, key](Result<ManifestResult> res) {
    if (!res) res = with_reason(std::move(res).error());
    auto list = std::move(manifest_waiters_[key]);
    manifest_waiters_.erase(key);
    for (auto& w : list) w(res.ok() ? Result<ManifestResult>(*res) : Result<ManifestResult>(res.error()));
  };
  // A manifest over the limit is refused as soon as that is known (its
  // Content-Length, or the byte past the limit), not read to its end: a
  // parent streaming one without end held the client until it stopped.
  // It is the parent's fault (502), not the client's (413).
  auto too_big = [got, cap, finish] {
    got->too_big = true;
    if (auto op = std::move(got->op)) op->cancel();
    finish(Error(Errc::UpstreamError, "parent's manifest exceeds registry.max_manifest_bytes (" +
                                          std::to_string(cap) + ")"));
  };
  got->op = r.upstream->request(
      http::Method::Get, "/v2/" + r.upstream_repo + "/manifests/" + reference, r.upstream_repo, accept_manifests(),
      [got, cap, too_big](const http::ClientResponse& resp) {
        got->status = resp.status;
        got->content_type = std::string(resp.headers.get("Content-Type").value_or(""));
        got->header_digest = std::string(resp.headers.get("Docker-Content-Digest").value_or(""));
        if (resp.status != 200) got->headers = resp.headers;
        if (resp.status == 200 && resp.content_length && *resp.content_length > cap) {
          too_big();
          return false;
        }
        return true;
      },
      [got, cap, too_big](std::string_view c) {
        if (got->too_big) return;
        if (got->body.size() + c.size() > cap) return too_big();
        got->body.append(c);
      },
      [this, r, reference, key, got, finish](Status st) {
        got->op.reset();
        if (got->too_big) return;  // answered when it was found out
        if (!st) return finish(request_failed(r.upstream, st.error()));
        if (got->status == 404) return finish(Error(Errc::ManifestUnknown, "manifest unknown upstream: " + reference));
        if (got->status != 200) return finish(parent_status(got->status, got->headers, "manifest " + reference));
        // Invariant 1: stored only under the digest its bytes have.
        Digest digest = Digest::sha256_of(got->body);
        if (!got->header_digest.empty() && got->header_digest != digest.str())
          return finish(Error(Errc::UpstreamError, "parent's manifest bytes hash to " + digest.str() +
                                                       " but it claimed " + got->header_digest));
        if (looks_like_digest(reference) && reference != digest.str())
          return finish(Error(Errc::UpstreamError, "parent sent a manifest hashing to " + digest.str() +
                                                       " for " + reference));
        auto parsed = oci::parse_manifest(got->body, got->content_type);
        if (!parsed) return finish(Error(Errc::UpstreamError, "parent sent an invalid manifest: " + parsed.error().message()));
        store::ManifestPut m;
        m.repo = r.local_repo;
        m.digest = digest;
        m.media_type = parsed->media_type;
        // Pull-through stores a manifest before its blobs: they arrive on demand.
        for (auto& pr : parsed->refs) m.refs.push_back({pr.digest, false});
        m.subject = parsed->subject;
        m.artifact_type = parsed->artifact_type;
        m.annotations = parsed->annotations;
        if (!looks_like_digest(reference)) m.tag = reference;
        m.origin = store::Origin::Cached;
        // Verified: the clients get it now, and the durable commit (blob
        // fsync, rename, directory fsync, SQLite commit: tens of ms on a busy
        // disk, per manifest of a pull) runs behind, as a fill's publish does.
        // Until it ends, manifest() answers this reference from committing_.
        // If it fails, what was sent was still right; the next request
        // fetches again.
        ManifestResult answer;
        answer.info.digest = digest;
        answer.info.media_type = m.media_type;
        answer.info.size = got->body.size();
        answer.info.subject = m.subject;
        answer.info.artifact_type = m.artifact_type;
        answer.info.annotations = m.annotations;
        answer.info.origin = store::Origin::Cached;
        answer.info.created_ms = static_cast<int64_t>(wall_ms());
        answer.bytes = std::move(got->body);
        if (!looks_like_digest(reference)) {
          tag_checked_[tag_key(r, reference)] = uv_now(loop_);
          tag_confirmed_[tag_key(r, reference)] = wall_ms();
        }
        auto body = std::make_shared<const std::string>(answer.bytes);
        const uint64_t commit_id = ++commit_generation_;
        committing_[key] = Committing{commit_id, answer};
        store_->run<store::ManifestInfo>(
            [m, body](store::Store& st) { return st.put_manifest(m, *body); },
            [this, r, key, reference, commit_id](Result<store::ManifestInfo> info) {
              // A newer fetch of the same reference may have replaced it.
              if (auto it = committing_.find(key); it != committing_.end() && it->second.id == commit_id)
                committing_.erase(it);
              if (auto w = commit_waiters_.find(commit_id); w != commit_waiters_.end()) {
                auto list = std::move(w->second);
                commit_waiters_.erase(w);
                for (auto& fn : list) fn(info ? Status() : Status(info.error()));
              }
              if (!info) {
                // The store may still hold an older digest under this tag:
                // the next request asks the parent again rather than serve it.
                tag_checked_.erase(tag_key(r, reference));
                log::warn("storing a fetched manifest failed; it was served, and is fetched again next time",
                          " ref=" + log::quote(reference) + " error=" + log::quote(info.error().message()));
              }
            });
        finish(std::move(answer));
      });
}

void PullThrough::blob(const Route& r, const Digest& d, const http::ExchangePtr& ex) {
  if (ex->req().method == http::Method::Head) {
    auto it = fills_.find(d.str());
    // A fill that knows the size answers the HEAD; one that does not (a
    // chunked parent) leaves the size to a HEAD to the parent: the blob is
    // being pulled from there anyway. Another repository's fill answers
    // nothing here: the blob is not held in this one.
    if (it != fills_.end() && it->second->serves_repo(r.local_repo)) {
      if (it->second->total()) return respond_blob(ex, BlobSource::growing(d, it->second));
      if (!r.upstream->offline() && may_fetch_miss()) return head_blob(r, d, ex);
    }
    // In ReadWrite mode a HEAD is how pushing clients ask "do you have it?":
    // the answer is about this store, and the parent is asked nothing (a 200
    // from it would make the client skip an upload this registry needs).
    // The same "no" lets a push go on while the parent is away.
    if (!opts_.read_only || r.upstream->offline()) {
      if (r.upstream->offline()) {
        stats_.offline_misses++;
        ex->add_header("Outpost-Cache", "offline");
      }
      return ex->respond_error(Errc::BlobUnknown, d.str() + (r.upstream->offline()
                                                                 ? " (parent offline, not cached here)"
                                                                 : " (not held here)"));
    }
    if (!may_fetch_miss()) {
      stats_.window_misses++;
      return ex->respond_error(Errc::BlobUnknown, d.str() + " (not cached here; the parent is not asked now)");
    }
    // ReadOnly: nobody pushes; the parent gives size and digest, no body.
    return head_blob(r, d, ex);
  }
  auto it = fills_.find(d.str());
  if (it != fills_.end() && it->second->serves_repo(r.local_repo))
    return respond_blob(ex, BlobSource::growing(d, it->second));
  if (!may_fetch_miss()) {
    stats_.window_misses++;
    return ex->respond_error(window_miss("blob " + d.str()));
  }
  if (!r.upstream->admit()) {
    stats_.offline_misses++;
    return ex->respond_error(offline_miss(r.upstream));
  }
  if (it != fills_.end()) return join_fill_of_other_repo(r, d, ex, it->second);
  auto fill = new_fill(r, d);
  respond_blob(ex, BlobSource::growing(d, fill));
  fill->start();
}

std::shared_ptr<Fill> PullThrough::new_fill(const Route& r, const Digest& d) {
  stats_.fills_started++;
  auto fill = std::make_shared<Fill>(store_, r, d, [this](Fill* f) {
    if (f->state() == Fill::State::Done) stats_.fills_committed++;
    else stats_.fills_failed++;
    fills_.erase(f->digest().str());
  });
  fills_[d.str()] = fill;
  return fill;
}

void PullThrough::keep_manifest(const Route& r, const std::string& reference, ManifestDone done) {
  if (!r.upstream->admit()) return done(offline_miss(r.upstream));
  // The keeper pins and counts what the store holds: it hears of a fetched
  // manifest once its commit ended, not at the verified hash as clients do.
  fetch_manifest(r, reference, true, [this, key = fetch_key(r, reference), done](Result<ManifestResult> res) {
    auto it = committing_.find(key);
    if (!res || it == committing_.end()) return done(std::move(res));
    commit_waiters_[it->second.id].push_back([res = std::move(res), done](Status st) mutable {
      if (!st) return done(st.error());
      done(std::move(res));
    });
  });
}

void PullThrough::keep_blob(const Route& r, const Digest& d, std::function<void(Status)> done) {
  std::shared_ptr<Fill> fill;
  if (auto it = fills_.find(d.str()); it != fills_.end()) {
    fill = it->second;
  } else {
    if (!r.upstream->admit()) return done(offline_miss(r.upstream));
    fill = new_fill(r, d);
    fill->start();
  }
  // A fill started for another repository (a client's) commits there: link
  // the verified blob here too, once it is committed (a reader repository
  // added after the commit began would be missed).
  const bool link = fill->route().local_repo != r.local_repo;
  auto finish = [this, repo = r.local_repo, d, link, done = std::move(done)](Status st) {
    if (!st || !link) return done(std::move(st));
    store_->run<void>([repo, d](store::Store& s) { return s.link_blob(repo, d, store::Origin::Cached); },
                      [done](Status linked) { done(std::move(linked)); });
  };
  // Takes the fill as an argument: a watcher holding the fill would keep it alive.
  auto check = [finish](Fill& f) mutable -> bool {
    if (f.state() == Fill::State::Done) return finish(Status{}), true;
    if (f.state() == Fill::State::Failed) return finish(f.error()), true;
    return false;
  };
  if (check(*fill)) return;
  auto id = std::make_shared<uint64_t>(0);
  std::weak_ptr<Fill> weak = fill;
  *id = fill->watch([weak, id, check]() mutable {
    auto f = weak.lock();
    if (f && check(*f)) f->unwatch(*id);
  });
}

namespace {
/// HEAD of blob `d` in r's repository at its upstream: done(its size, which
/// a parent may leave out) when it holds the blob there, else done(error):
/// BLOB_UNKNOWN for its 404, what its other answer or the failure means.
void ask_parent_for_blob(const Route& r, const Digest& d,
                         std::function<void(Result<std::optional<uint64_t>>)> done) {
  auto status = std::make_shared<int>(0);
  auto length = std::make_shared<std::optional<uint64_t>>();
  auto headers = std::make_shared<http::Headers>();
  r.upstream->request(
      http::Method::Head, "/v2/" + r.upstream_repo + "/blobs/" + d.str(), r.upstream_repo, {},
      [status, length, headers](const http::ClientResponse& resp) {
        *status = resp.status;
        *length = resp.content_length;
        *headers = resp.headers;
        return true;
      },
      nullptr,
      [d, status, length, headers, u = r.upstream, done = std::move(done)](Status st) {
        if (!st) return done(request_failed(u, st.error()));
        if (*status == 404) return done(Error(Errc::BlobUnknown, d.str()));
        if (*status != 200) return done(parent_status(*status, *headers, "blob HEAD " + d.str()));
        done(*length);
      });
}
}  // namespace

void PullThrough::head_blob(const Route& r, const Digest& d, const http::ExchangePtr& ex) {
  ask_parent_for_blob(r, d, [ex, d](Result<std::optional<uint64_t>> size) {
    if (!size) return ex->respond_error(size.error());
    if (!*size) return ex->respond_error(parent_status(502, {}, "blob HEAD " + d.str() + " (no length)"));
    respond_blob(ex, BlobSource::head_only(d, **size));
  });
}

void PullThrough::join_fill_of_other_repo(const Route& r, const Digest& d, const http::ExchangePtr& ex,
                                          std::shared_ptr<Fill> fill) {
  // Joining without asking served a layer of secret/app to a client of
  // public/app while secret/app's fill ran (the parent answers that client
  // 404). One HEAD decides; the bytes still come once, from the fill.
  ask_parent_for_blob(r, d, [ex, d, fill, repo = r.local_repo](Result<std::optional<uint64_t>> size) {
    if (!size) return ex->respond_error(size.error());
    fill->add_reader_repo(repo);
    respond_blob(ex, BlobSource::growing(d, fill));
  });
}

void PullThrough::referrers(const Route& r, const Digest& subject, const std::string& query,
                            std::function<void(Result<std::string>)> done) {
  if (!may_fetch_miss()) return done(window_miss("the referrers of " + subject.str()));
  auto status = std::make_shared<int>(0);
  auto body = std::make_shared<std::string>();
  r.upstream->request(
      http::Method::Get, "/v2/" + r.upstream_repo + "/referrers/" + subject.str() + (query.empty() ? "" : "?" + query),
      r.upstream_repo, {},
      [status](const http::ClientResponse& resp) {
        *status = resp.status;
        return true;
      },
      [body](std::string_view c) {
        if (body->size() < (4u << 20)) body->append(c);
      },
      [status, body, done, u = r.upstream](Status st) {
        if (!st) return done(request_failed(u, st.error()));
        if (*status != 200) return done(Error(Errc::UpstreamError, "referrers: parent answered " + std::to_string(*status)));
        done(std::move(*body));
      });
}

}  // namespace outpost::cache
