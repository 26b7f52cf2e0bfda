#include "sync/keeper.hpp"

#include <nlohmann/json.hpp>

#include <deque>
#include <optional>
#include <unordered_set>

#include "base/log.hpp"
#include "cache/pull_through.hpp"
#include "oci/manifest.hpp"
#include "store/store.hpp"
#include "storesvc/store_service.hpp"
#include "upstream/registry_client.hpp"

namespace outpost::sync {

namespace {

/// Listing bodies larger than this are refused (a page of 100 names is a
/// few KiB; a referrers index of many signatures a few hundred).
constexpr size_t kMaxListingBytes = 8u << 20;

int64_t system_ms() {
  uv_timeval64_t tv;
  uv_gettimeofday(&tv);
  return static_cast<int64_t>(tv.tv_sec) * 1000 + tv.tv_usec / 1000;
}

/// The path of a Link header's rel="next" target (distribution-spec
/// "Listing Tags"/catalog pagination): "</v2/_catalog?last=a&n=100>;
/// rel="next"" -> "/v2/_catalog?last=a&n=100". An absolute URL keeps only
/// its path: the parent's origin is the client's base URL.
std::optional<std::string> next_link(const http::Headers& h) {
  auto link = h.get("Link");
  if (!link) return std::nullopt;
  std::string_view v = *link;
  if (v.find("rel=\"next\"") == std::string_view::npos && v.find("rel=next") == std::string_view::npos)
    return std::nullopt;
  size_t open = v.find('<'), close = v.find('>');
  if (open == std::string_view::npos || close == std::string_view::npos || close < open) return std::nullopt;
  std::string target(v.substr(open + 1, close - open - 1));
  size_t v2 = target.find("/v2/");
  if (v2 == std::string::npos) return std::nullopt;
  return target.substr(v2);
}

struct JsonPage {
  int status = 0;
  nlohmann::json body;              ///< set for a 200
  std::optional<std::string> next;  ///< Link rel="next"
};

}  // namespace

// ---- a pass ----------------------------------------------------------------

struct Keeper::Pass {
  std::function<void(Status)> done;
  bool cancelled = false;
  /// The parent the pass started on: a SIGHUP that changes it lets the pass
  /// finish there (issue #17); the next pass asks the new one.
  std::shared_ptr<upstream::RegistryClient> parent;
  size_t pattern = 0;
  std::vector<std::string> repos;
  size_t repo_i = 0;
  std::vector<std::string> tags;
  size_t tag_i = 0;
  size_t pages = 0;
  /// Names the listing under way already returned (repositories or tags):
  /// a page with nothing new ends it (a parent whose Link names the same
  /// page again would otherwise be walked max_pages times).
  std::unordered_set<std::string> listed;
  bool listing_failed = false;
  std::vector<std::string> errors;  ///< of the current pattern
  std::optional<Error> first_error;
  /// Requests of the Keeper's own (listings, referrers) to cancel on cancel().
  std::vector<std::weak_ptr<upstream::UpstreamOp>> ops;

  void track(const upstream::UpstreamOpPtr& op) {
    if (ops.size() > 64) std::erase_if(ops, [](const auto& w) { return w.expired(); });
    ops.push_back(op);
  }

  /// GET `path` at the parent; a 200's body parsed as JSON.
  void get_json(const std::shared_ptr<Pass>& self, const std::string& path, const std::string& repo,
                std::function<void(Result<JsonPage>)> done) {
    auto page = std::make_shared<JsonPage>();
    auto body = std::make_shared<std::string>();
    auto too_big = std::make_shared<bool>(false);
    auto op = parent->request(
        http::Method::Get, path, repo, {},
        [page](const http::ClientResponse& r) {
          page->status = r.status;
          page->next = next_link(r.headers);
          return true;
        },
        [body, too_big](std::string_view c) {
          if (body->size() + c.size() > kMaxListingBytes) *too_big = true;
          else body->append(c);
        },
        [self, page, body, too_big, path, done = std::move(done)](Status st) {
          if (self->cancelled) return;
          if (!st) return done(st.error());
          if (page->status != 200) return done(std::move(*page));
          if (*too_big) return done(Error(Errc::UpstreamError, path + ": the parent's answer is too large"));
          page->body = nlohmann::json::parse(*body, nullptr, false);
          if (page->body.is_discarded() || !page->body.is_object())
            return done(Error(Errc::UpstreamError, path + ": the parent's answer is not a JSON object"));
          done(std::move(*page));
        });
    if (op) track(op);
  }
};

// ---- one tag: its manifest, children, blobs, referrers -----------------------

struct Keeper::TagJob : std::enable_shared_from_this<Keeper::TagJob> {
  Keeper* k = nullptr;
  std::shared_ptr<Pass> pass;
  cache::Route route;
  std::string tag;
  std::function<void(Result<std::string>)> done;  ///< the tag's digest, once all of it is held

  std::string top;
  std::deque<Digest> manifests;  ///< to walk, one at a time
  std::deque<Digest> blobs;      ///< to hold, max_parallel_blobs at a time
  std::unordered_set<std::string> seen;
  size_t blobs_in_flight = 0;
  size_t manifests_walked = 0;
  bool manifest_busy = false;
  bool finished = false;
  bool pumping = false, again = false;
  std::optional<Error> error;

  bool dead() const { return pass->cancelled || finished; }
  void fail(Error e) {
    if (!error) error = std::move(e);
  }

  void start() {
    auto self = shared_from_this();
    std::string repo = route.local_repo, t = tag;
    // What was pushed here is authoritative here (issue #13): never
    // replaced by the parent's version; the replay queue carries it up.
    k->store_.run<std::optional<store::ManifestInfo>>(
        [repo, t](store::Store& st) -> Result<std::optional<store::ManifestInfo>> {
          auto info = st.resolve_manifest(repo, t);
          if (info) return std::optional<store::ManifestInfo>(std::move(*info));
          if (info.error().code == Errc::ManifestUnknown || info.error().code == Errc::NameUnknown)
            return std::optional<store::ManifestInfo>();
          return std::move(info).error();
        },
        [self](Result<std::optional<store::ManifestInfo>> local) {
          if (self->dead()) return;
          if (!local) return self->end(local.error());
          if (*local && (*local)->origin == store::Origin::Pushed) {
            log::info("kept tag was pushed here, left as it is",
                      " repo=" + self->route.local_repo + " tag=" + self->tag);
            return self->end((*local)->digest.str());
          }
          self->k->pull_.keep_manifest(self->route, self->tag, [self](Result<cache::ManifestResult> m) {
            if (self->dead()) return;
            if (!m) return self->end(m.error());
            self->top = m->info.digest.str();
            self->seen.insert(self->top);
            self->manifest_busy = true;
            self->walk(m->info.digest, m->bytes, m->info.media_type, true);
          });
        });
  }

  /// Queues what manifest `d` references, then its referrers; clears
  /// manifest_busy when done.
  void walk(const Digest& d, const std::string& bytes, const std::string& media_type, bool want_referrers) {
    if (++manifests_walked > k->opts_.max_manifests_per_tag) {
      fail(Error(Errc::UpstreamError, "more than " + std::to_string(k->opts_.max_manifests_per_tag) +
                                          " manifests under one tag"));
      return manifest_walked();
    }
    auto parsed = oci::parse_manifest(bytes, media_type);
    if (!parsed) {
      fail(Error(Errc::UpstreamError, d.str() + ": " + parsed.error().message()));
      return manifest_walked();
    }
    for (const auto& ref : parsed->refs) {
      if (!ref.required) continue;  // a foreign layer (urls): not distributable, not fetched
      if (!seen.insert(ref.digest.str()).second) continue;
      (ref.is_manifest ? manifests : blobs).push_back(ref.digest);
    }
    if (!want_referrers) return manifest_walked();
    referrers(d, "/v2/" + route.upstream_repo + "/referrers/" + d.str(), 0);
  }

  void manifest_walked() {
    manifest_busy = false;
    pump();
  }

  /// The referrers API (paginated); a parent without it: the OCI 1.1
  /// fallback tag "sha256-<hex>" (distribution-spec "Referrers tag schema").
  void referrers(const Digest& subject, const std::string& path, size_t pages) {
    auto self = shared_from_this();
    pass->get_json(pass, path, route.upstream_repo, [self, subject, pages](Result<JsonPage> r) {
      if (self->dead()) return;
      if (!r) {
        self->fail(Error(r.error().code, "referrers of " + subject.str() + ": " + r.error().message()));
        return self->manifest_walked();
      }
      if (r->status == 404 || r->status == 405 || r->status == 501) return self->fallback_tag(subject);
      if (r->status != 200) {
        self->fail(Error(Errc::UpstreamError,
                         "referrers of " + subject.str() + ": the parent answered " + std::to_string(r->status)));
        return self->manifest_walked();
      }
      if (r->body.contains("manifests") && r->body["manifests"].is_array()) {
        for (const auto& m : r->body["manifests"]) {
          if (!m.is_object() || !m.contains("digest") || !m["digest"].is_string()) continue;
          auto d = Digest::parse(m["digest"].get<std::string>());
          if (!d) continue;
          if (self->seen.insert(d->str()).second) self->manifests.push_back(*d);
        }
      }
      if (r->next && pages + 1 < self->k->opts_.max_pages) return self->referrers(subject, *r->next, pages + 1);
      self->manifest_walked();
    });
  }

  void fallback_tag(const Digest& subject) {
    auto self = shared_from_this();
    const std::string ref = "sha256-" + std::string(subject.hex());
    k->pull_.keep_manifest(route, ref, [self](Result<cache::ManifestResult> m) {
      if (self->dead()) return;
      if (!m) {
        // No fallback tag: no referrers. Anything else is a failure.
        if (m.error().code != Errc::ManifestUnknown) self->fail(m.error());
        return self->manifest_walked();
      }
      if (!self->seen.insert(m->info.digest.str()).second) return self->manifest_walked();
      // An index listing the referrers: walk its children (the referrers
      // themselves, stored with their subject), not its own referrers.
      self->walk(m->info.digest, m->bytes, m->info.media_type, false);
    });
  }

  void start_manifest(const Digest& d) {
    manifest_busy = true;
    auto self = shared_from_this();
    std::string repo = route.local_repo;
    struct Held {
      std::string media_type, bytes;
    };
    k->store_.run<std::optional<Held>>(
        [repo, d](store::Store& st) -> Result<std::optional<Held>> {
          auto info = st.get_manifest(repo, d);
          if (!info) {
            if (info.error().code == Errc::ManifestUnknown || info.error().code == Errc::NameUnknown)
              return std::optional<Held>();
            return std::move(info).error();
          }
          auto bytes = st.read_manifest(repo, d);
          if (!bytes) return std::move(bytes).error();
          return std::optional<Held>(Held{info->media_type, std::move(*bytes)});
        },
        [self, d](Result<std::optional<Held>> held) {
          if (self->dead()) return;
          if (!held) {
            self->fail(held.error());
            return self->manifest_walked();
          }
          if (*held) return self->walk(d, (*held)->bytes, (*held)->media_type, true);
          self->k->pull_.keep_manifest(self->route, d.str(), [self, d](Result<cache::ManifestResult> m) {
            if (self->dead()) return;
            if (!m) {
              self->fail(Error(m.error().code, d.str() + ": " + m.error().message()));
              return self->manifest_walked();
            }
            self->walk(m->info.digest, m->bytes, m->info.media_type, true);
          });
        });
  }

  void start_blob(const Digest& d) {
    ++blobs_in_flight;
    auto self = shared_from_this();
    std::string repo = route.local_repo;
    // Held in this repository, or in another one (then linked): no fetch.
    k->store_.run<bool>(
        [repo, d](store::Store& st) -> Result<bool> {
          if (st.stat_blob(repo, d)) return true;
          auto size = st.meta().blob_size(d);
          if (!size) return std::move(size).error();
          if (!*size) return false;
          auto linked = st.link_blob(repo, d, store::Origin::Cached);
          if (!linked) return linked.error().code == Errc::BlobUnknown ? Result<bool>(false) : Result<bool>(linked.error());
          return true;
        },
        [self, d](Result<bool> held) {
          if (self->dead()) return;
          if (!held || *held) {
            if (!held) self->fail(held.error());
            return self->blob_done();
          }
          self->k->pull_.keep_blob(self->route, d, [self, d](Status st) {
            if (self->dead()) return;
            if (!st) self->fail(Error(st.error().code, "blob " + d.str() + ": " + st.error().message()));
            self->blob_done();
          });
        });
  }

  void blob_done() {
    --blobs_in_flight;
    pump();
  }

  void pump() {
    if (dead()) return;
    if (pumping) {
      again = true;
      return;
    }
    pumping = true;
    do {
      again = false;
      if (!error) {
        while (blobs_in_flight < k->opts_.max_parallel_blobs && !blobs.empty()) {
          Digest d = blobs.front();
          blobs.pop_front();
          start_blob(d);
        }
        if (!manifest_busy && !manifests.empty()) {
          Digest d = manifests.front();
          manifests.pop_front();
          start_manifest(d);
        }
      }
    } while (again && !dead());
    pumping = false;
    if (dead() || manifest_busy || blobs_in_flight > 0) return;
    if (error) return end(*error);
    if (manifests.empty() && blobs.empty()) end(top);
  }

  void end(Result<std::string> r) {
    if (finished) return;
    finished = true;
    auto fn = std::move(done);
    fn(std::move(r));
  }
};

// ---- the Keeper ----------------------------------------------------------------

Keeper::Keeper(uv_loop_t* loop, storesvc::StoreService& store, cache::PullThrough& pull,
               std::vector<KeepPattern> patterns, KeeperOptions opts)
    : loop_(loop), store_(store), pull_(pull), patterns_(std::move(patterns)), opts_(std::move(opts)) {
  if (opts_.max_parallel_blobs == 0) opts_.max_parallel_blobs = 1;
  if (opts_.page_size == 0) opts_.page_size = 100;
  for (const auto& p : patterns_) status_.push_back(KeepStatus{p.text(), 0, 0, {}});
  count_pins_from_store();
}

void Keeper::count_pins_from_store() {
  // Tags kept by earlier runs count from the start (the pins are durable).
  // Found by pattern text, not index: set_patterns may reorder meanwhile.
  for (const auto& s : status_) {
    if (s.last_refresh_ms != 0 || s.tags != 0) continue;
    std::string pattern = s.pattern;
    store_.run<uint64_t>([pattern](store::Store& st) { return st.count_kept(pattern); },
                         [this, pattern, alive = std::weak_ptr<bool>(alive_)](Result<uint64_t> n) {
                           if (alive.expired() || !n) return;
                           for (auto& s : status_)
                             if (s.pattern == pattern && s.last_refresh_ms == 0) s.tags = *n;
                         });
  }
}

void Keeper::set_patterns(std::vector<KeepPattern> patterns) {
  if (pass_) {
    // The pass in flight walks patterns_ by index: the new list waits for
    // its end (finish or cancel).
    pending_ = std::move(patterns);
    return;
  }
  apply_patterns(std::move(patterns));
}

void Keeper::apply_patterns(std::vector<KeepPattern> patterns) {
  std::vector<KeepStatus> next;
  std::vector<std::string> texts;
  for (const auto& p : patterns) {
    KeepStatus st{p.text(), 0, 0, {}};
    for (const auto& old : status_)
      if (old.pattern == st.pattern) st = old;
    next.push_back(std::move(st));
    texts.push_back(p.text());
  }
  patterns_ = std::move(patterns);
  status_ = std::move(next);
  count_pins_from_store();
  // A pattern no longer listed stops pinning what it kept: cache management
  // may evict it like any cached content (issue #17).
  store_.run<uint64_t>([texts](store::Store& st) { return st.unpin_patterns_except(texts); },
                       [](Result<uint64_t> n) {
                         if (!n) log::warn("sync.keep: unpinning removed patterns failed",
                                           " reason=" + log::quote(n.error().message()));
                         else if (*n) log::info("sync.keep: tags of removed patterns unpinned", " tags=" + std::to_string(*n));
                       });
}

Keeper::~Keeper() { cancel(); }

int64_t Keeper::now_ms() const { return opts_.clock ? opts_.clock() : system_ms(); }

std::vector<KeepStatus> Keeper::status() const { return status_; }

void Keeper::refresh(std::function<void(Status)> done) {
  if (pass_) return done(Error(Errc::Overloaded, "a refresh of the kept repositories is already running"));
  auto p = std::make_shared<Pass>();
  p->done = std::move(done);
  p->parent = pull_.parent_shared();
  pass_ = p;
  next_pattern(p);
}

void Keeper::cancel() {
  if (!pass_) return;
  auto p = std::move(pass_);
  pass_ = nullptr;
  p->cancelled = true;
  for (auto& w : p->ops)
    if (auto op = w.lock()) op->cancel();
  p->ops.clear();
  if (pending_) {
    apply_patterns(std::move(*pending_));
    pending_.reset();
  }
  auto done = std::move(p->done);
  if (done) done(Error(Errc::Cancelled, "the refresh of the kept repositories was cancelled"));
}

void Keeper::next_pattern(const std::shared_ptr<Pass>& p) {
  if (p->cancelled) return;
  if (p->pattern >= patterns_.size()) return finish(p);
  p->repos.clear();
  p->listed.clear();
  p->repo_i = 0;
  p->errors.clear();
  p->listing_failed = false;
  p->pages = 0;
  const KeepPattern& pat = patterns_[p->pattern];
  if (!p->parent) {
    p->errors.push_back("no [parent] is configured");
    p->listing_failed = true;
    return pattern_done(p, false);
  }
  if (pat.is_literal_repository()) {
    p->repos.push_back(pat.repository_glob());
    return next_repository(p);
  }
  list_repositories(p, "/v2/_catalog?n=" + std::to_string(opts_.page_size));
}

namespace {
/// Appends to `out` the names of page `body[key]` that `wanted` accepts and
/// the listing had not returned yet. False when the page named nothing new:
/// the listing ends there (a Link back to a page already read).
template <typename Pass, typename Wanted>
bool take_new_names(Pass& p, const nlohmann::json& body, const char* key, Wanted wanted, std::vector<std::string>& out) {
  bool fresh = false;
  auto it = body.find(key);
  if (it == body.end() || !it->is_array()) return false;
  for (const auto& v : *it) {
    if (!v.is_string() || !p.listed.insert(v.get<std::string>()).second) continue;
    fresh = true;
    if (wanted(v.get<std::string>())) out.push_back(v.get<std::string>());
  }
  return fresh;
}
}  // namespace

void Keeper::list_repositories(const std::shared_ptr<Pass>& p, std::string path) {
  p->get_json(p, path, "", [this, p](Result<JsonPage> r) {
    if (p->cancelled) return;
    const KeepPattern& pat = patterns_[p->pattern];
    if (!r || r->status != 200) {
      std::string why = r ? "the parent has no catalog (GET /v2/_catalog answered " + std::to_string(r->status) +
                                "), which a repository glob needs: list the repositories literally"
                          : "listing the parent's catalog failed: " + r.error().message();
      p->errors.push_back(why);
      p->listing_failed = true;
      return pattern_done(p, false);
    }
    const bool fresh = take_new_names(*p, r->body, "repositories",
                                      [&](const std::string& n) { return pat.matches_repository(n); }, p->repos);
    if (fresh && r->next && ++p->pages < opts_.max_pages) return list_repositories(p, *r->next);
    p->listed.clear();
    next_repository(p);
  });
}

void Keeper::next_repository(const std::shared_ptr<Pass>& p) {
  if (p->cancelled) return;
  if (p->repo_i >= p->repos.size()) return pattern_done(p, !p->listing_failed);
  p->tags.clear();
  p->listed.clear();
  p->tag_i = 0;
  p->pages = 0;
  const std::string& repo = p->repos[p->repo_i];
  list_tags(p, "/v2/" + p->parent->upstream_repo(repo) + "/tags/list?n=" + std::to_string(opts_.page_size));
}

void Keeper::list_tags(const std::shared_ptr<Pass>& p, std::string path) {
  const std::string repo = p->repos[p->repo_i];
  p->get_json(p, path, p->parent->upstream_repo(repo), [this, p, repo](Result<JsonPage> r) {
    if (p->cancelled) return;
    const KeepPattern& pat = patterns_[p->pattern];
    if (!r || r->status != 200) {
      p->errors.push_back(repo + ": " +
                          (r ? (r->status == 404 ? std::string("no such repository at the parent")
                                                 : "listing its tags: the parent answered " + std::to_string(r->status))
                             : "listing its tags failed: " + r.error().message()));
      p->listing_failed = true;
      // A parent that is gone fails every further request at once (and
      // synchronously): give up on this pattern rather than walk the rest.
      if (!r && r.error().code == Errc::UpstreamUnavailable) return pattern_done(p, false);
      ++p->repo_i;
      return next_repository(p);
    }
    const bool fresh =
        take_new_names(*p, r->body, "tags", [&](const std::string& n) { return pat.matches_tag(n); }, p->tags);
    if (fresh && r->next && ++p->pages < opts_.max_pages) return list_tags(p, *r->next);
    p->listed.clear();
    next_tag(p);
  });
}

void Keeper::next_tag(const std::shared_ptr<Pass>& p) {
  if (p->cancelled) return;
  if (p->tag_i >= p->tags.size()) {
    ++p->repo_i;
    return next_repository(p);
  }
  keep_tag(p, p->repos[p->repo_i], p->tags[p->tag_i]);
}

void Keeper::keep_tag(const std::shared_ptr<Pass>& p, const std::string& repo, const std::string& tag) {
  auto job = std::make_shared<TagJob>();
  job->k = this;
  job->pass = p;
  job->route = cache::Route{p->parent, repo, p->parent->upstream_repo(repo)};
  job->tag = tag;
  job->done = [this, p, tag](Result<std::string> digest) { tag_done(p, tag, std::move(digest)); };
  job->start();
}

void Keeper::tag_done(const std::shared_ptr<Pass>& p, const std::string& tag, Result<std::string> digest) {
  if (p->cancelled) return;
  const std::string repo = p->repos[p->repo_i];
  auto advance = [this, p] {
    ++p->tag_i;
    next_tag(p);
  };
  if (!digest) {
    log::warn("kept tag not refreshed", " repo=" + repo + " tag=" + tag + " reason=" + log::quote(digest.error().message()));
    p->errors.push_back(repo + ":" + tag + ": " + digest.error().message());
    if (digest.error().code == Errc::UpstreamUnavailable) {
      // The parent went away: the rest of the pattern waits for the next window.
      p->listing_failed = true;
      return pattern_done(p, false);
    }
    return advance();
  }
  auto d = Digest::parse(*digest);
  if (!d) {
    p->errors.push_back(repo + ":" + tag + ": bad digest " + *digest);
    return advance();
  }
  std::string pattern = patterns_[p->pattern].text();
  store_.run<void>([repo, tag, d = *d, pattern](store::Store& st) { return st.pin_tag(repo, tag, d, pattern); },
                   [p, repo, tag, advance](Status st) {
                     if (p->cancelled) return;
                     if (!st) p->errors.push_back(repo + ":" + tag + ": pinning failed: " + st.error().message());
                     advance();
                   });
}

void Keeper::pattern_done(const std::shared_ptr<Pass>& p, bool listed) {
  std::string pattern = patterns_[p->pattern].text();
  store_.run<uint64_t>([pattern](store::Store& st) { return st.count_kept(pattern); },
                       [this, p, listed](Result<uint64_t> n) {
                         if (p->cancelled) return;
                         KeepStatus& s = status_[p->pattern];
                         if (n) s.tags = *n;
                         if (listed) s.last_refresh_ms = now_ms();
                         std::string err;
                         for (size_t i = 0; i < p->errors.size() && i < 3; ++i) err += (i ? "; " : "") + p->errors[i];
                         if (p->errors.size() > 3) err += " (and " + std::to_string(p->errors.size() - 3) + " more)";
                         s.last_error = err;
                         if (!err.empty() && !p->first_error)
                           p->first_error = Error(Errc::UpstreamError, "sync.keep \"" + s.pattern + "\": " + err);
                         log::info("kept pattern refreshed", " pattern=" + log::quote(s.pattern) + " tags=" +
                                                                 std::to_string(s.tags) + " errors=" +
                                                                 std::to_string(p->errors.size()));
                         ++p->pattern;
                         next_pattern(p);
                       });
}

void Keeper::finish(const std::shared_ptr<Pass>& p) {
  if (pass_ == p) pass_ = nullptr;
  if (!pass_ && pending_) {
    apply_patterns(std::move(*pending_));
    pending_.reset();
  }
  auto done = std::move(p->done);
  if (!done) return;
  if (p->first_error) return done(*p->first_error);
  done(Status{});
}

}  // namespace outpost::sync
