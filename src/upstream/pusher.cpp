#include "upstream/pusher.hpp"

#include <nlohmann/json.hpp>

#include <cctype>
#include <ctime>

#include "base/digest.hpp"

namespace outpost::upstream {

namespace {

constexpr size_t kMaxErrorBody = 64 * 1024;

/// One HTTP answer, its (error) body collected up to kMaxErrorBody.
struct Reply {
  int status = 0;
  http::Headers headers;
  std::string body;
};
using OnReply = std::function<void(Result<Reply>)>;

// Retry-After is delay-seconds or an HTTP-date (RFC 9110 §10.2.3).
uint64_t retry_after_ms(const http::Headers& h) {
  auto v = h.get("Retry-After");
  if (!v || v->empty() || v->size() > 64) return 0;
  bool digits = true;
  for (char c : *v) digits = digits && std::isdigit(static_cast<unsigned char>(c));
  if (digits) return v->size() > 9 ? 0 : std::stoull(std::string(*v)) * 1000;
  std::tm tm{};
  std::string s(*v);
  if (!strptime(s.c_str(), "%a, %d %b %Y %H:%M:%S GMT", &tm)) return 0;
  const time_t at = timegm(&tm), now = time(nullptr);
  return at > now ? static_cast<uint64_t>(at - now) * 1000 : 0;
}

bool is_success(int s) { return s >= 200 && s < 300; }

std::string join_query(const std::string& target, const std::string& param) {
  return target + (target.find('?') == std::string::npos ? "?" : "&") + param;
}

/// Sends one request through the registry client and collects the answer.
/// The op's req_ holds the UpstreamOp so cancel() reaches it.
void send(RegistryClient& rc, const std::shared_ptr<PushOp>& op, http::Method m, std::string path,
          const std::string& repo, http::Headers h, RequestOptions o, OnReply cb) {
  if (op->cancelled_) return;  // cancelled from a callback (on_location) just before
  auto reply = std::make_shared<Reply>();
  op->req_ = rc.request(
      m, std::move(path), repo, std::move(h), std::move(o),
      [reply](const http::ClientResponse& r) {
        reply->status = r.status;
        reply->headers = r.headers;
        return true;
      },
      [reply](std::string_view chunk) {
        if (reply->body.size() < kMaxErrorBody) reply->body.append(chunk.substr(0, kMaxErrorBody - reply->body.size()));
      },
      [op, reply, cb = std::move(cb)](Status st) {
        if (op->cancelled_) return;
        op->req_.reset();
        if (!st) return cb(std::move(st).error());
        cb(std::move(*reply));
      });
}

RequestOptions write_opts() {
  RequestOptions o;
  o.actions = "pull,push";
  return o;
}

}  // namespace

// ---------------------------------------------------------------------------
// Classification

PushError classify_answer(const std::string& what, int status, const http::Headers& headers, std::string_view body) {
  PushError e;
  e.status = status;
  std::string text;
  try {
    auto j = nlohmann::json::parse(body);
    if (j.is_object() && j.contains("errors") && j["errors"].is_array()) {
      for (const auto& one : j["errors"]) {
        if (!one.is_object()) continue;
        std::string code = one.value("code", "");
        std::string msg = one.value("message", "");
        if (e.oci_code.empty()) e.oci_code = code;
        if (!text.empty()) text += "; ";
        text += code;
        if (!msg.empty()) text += ": " + msg;
        if (one.contains("detail") && !one["detail"].is_null()) {
          std::string d = one["detail"].is_string() ? one["detail"].get<std::string>() : one["detail"].dump();
          if (d.size() > 300) d = d.substr(0, 300) + "...";
          text += " (" + d + ")";
        }
      }
    }
  } catch (const nlohmann::json::exception&) {
    // not an OCI error body: the status says it all
  }
  e.message = what + ": parent answered " + std::to_string(status) + (text.empty() ? "" : " " + text);
  const std::string& c = e.oci_code;
  if (status >= 500 || status == 429 || status == 408) {
    e.kind = PushErrorKind::Retryable;
    e.retry_after_ms = retry_after_ms(headers);
  } else if (c == "MANIFEST_BLOB_UNKNOWN" || c == "BLOB_UNKNOWN") {
    // The blob may arrive later (replay order, a concurrent upload).
    e.kind = PushErrorKind::Retryable;
  } else if (status == 409) {
    e.kind = PushErrorKind::Retryable;  // a conflicting write in progress at the parent
  } else {
    // 400 and every other 4xx (DENIED, UNSUPPORTED, NAME_INVALID,
    // MANIFEST_INVALID, DIGEST_INVALID, SIZE_INVALID, 401 after auth):
    // sending the same request again gets the same answer.
    e.kind = PushErrorKind::Permanent;
  }
  return e;
}

PushError classify_failure(const std::string& what, const Error& err) {
  PushError e;
  e.kind = PushErrorKind::Retryable;
  e.message = what + ": " + err.message();
  return e;
}

// ---------------------------------------------------------------------------

void PushOp::cancel() {
  if (cancelled_) return;
  cancelled_ = true;
  if (req_) req_->cancel();
  req_.reset();
}

uint64_t PushOp::bytes_sent() const {
  uint64_t n = confirmed_;
  if (req_ && req_->call) n += req_->call->body_bytes_sent();
  return n;
}

PushOpPtr Pusher::blob_exists(const std::string& repo, const std::string& digest, Done<BlobPresence> done) {
  auto op = std::make_shared<PushOp>();
  const std::string what = "HEAD blob " + digest + " in " + repo;
  const std::string r = rc_.upstream_repo(repo);
  send(rc_, op, http::Method::Head, "/v2/" + r + "/blobs/" + digest, r, {}, write_opts(),
       [what, done = std::move(done)](Result<Reply> rep) {
         if (!rep) return done(classify_failure(what, rep.error()));
         if (rep->status == 200) {
           BlobPresence p;
           p.exists = true;
           if (auto cl = rep->headers.get("Content-Length")) {
             try { p.size = std::stoull(std::string(*cl)); } catch (...) {}
           }
           return done(p);
         }
         if (rep->status == 404) return done(BlobPresence{});
         done(classify_answer(what, rep->status, rep->headers, rep->body));
       });
  return op;
}

PushOpPtr Pusher::mount_blob(const std::string& repo, const std::string& digest, const std::string& from,
                             Done<MountResult> done) {
  auto op = std::make_shared<PushOp>();
  const std::string what = "mount blob " + digest + " from " + from + " into " + repo;
  const std::string r = rc_.upstream_repo(repo), f = rc_.upstream_repo(from);
  RequestOptions o = write_opts();
  o.also_pull.push_back(f);
  o.retry_if_stale = true;  // a second mount attempt is harmless
  send(rc_, op, http::Method::Post,
       "/v2/" + r + "/blobs/uploads/?mount=" + http::percent_encode(digest) + "&from=" + http::percent_encode(f), r,
       {}, std::move(o), [this, what, done = std::move(done)](Result<Reply> rep) {
         if (!rep) return done(classify_failure(what, rep.error()));
         if (rep->status == 201) return done(MountResult{true, {}});
         if (rep->status == 202) {
           auto loc = rep->headers.get("Location");
           auto url = loc ? rc_.options().url.resolve(*loc) : Result<http::Url>(Errc::UpstreamError, "");
           if (!url) {
             PushError e;
             e.status = 202;
             e.message = what + ": parent answered 202 without a usable Location";
             return done(e);
           }
           return done(MountResult{false, url->str()});
         }
         done(classify_answer(what, rep->status, rep->headers, rep->body));
       });
  return op;
}

// ---------------------------------------------------------------------------
// Blob upload

namespace {

class Upload : public PushOp, public std::enable_shared_from_this<Upload> {
 public:
  Upload(RegistryClient& rc, std::string repo, std::string digest, int fd, uint64_t size, UploadOptions o,
         Pusher::Done<UploadResult> done)
      : rc_(rc), repo_(std::move(repo)), digest_(std::move(digest)), fd_(fd), size_(size), opts_(std::move(o)),
        done_(std::move(done)) {
    what_ = "upload blob " + digest_ + " to " + repo_;
  }

  void start() {
    if (!opts_.resume_location.empty()) {
      auto u = http::Url::parse(opts_.resume_location);
      if (u) {
        location_ = *u;
        resuming_ = true;
        return query_status();
      }
    }
    open_session();
  }

 private:
  std::shared_ptr<PushOp> self() { return shared_from_this(); }

  void finish(PushResult<UploadResult> r) {
    if (cancelled_) return;
    auto d = std::move(done_);
    if (d) d(std::move(r));
  }
  void fail_answer(const std::string& step, const Reply& rep) {
    finish(classify_answer(what_ + " (" + step + ")", rep.status, rep.headers, rep.body));
  }
  void fail_protocol(const std::string& why, int status) {
    PushError e;
    e.status = status;
    e.message = what_ + ": " + why;
    finish(e);
  }

  /// Gives up on the current session and opens a new one (bounded).
  void restart(const std::string& step, const Reply& rep) {
    if (restarts_ >= Pusher::kMaxRestarts) return fail_answer(step, rep);
    ++restarts_;
    open_session();
  }

  /// Adopts a Location from the parent (relative or absolute, spec §"Pushing
  /// blobs") and tells the caller before any byte is sent to it.
  bool adopt_location(const Reply& rep) {
    auto loc = rep.headers.get("Location");
    if (!loc) return false;
    auto u = location_.host.empty() ? rc_.options().url.resolve(*loc) : location_.resolve(*loc);
    if (!u) return false;
    const bool changed = u->str() != location_.str();
    location_ = *u;
    if (changed && opts_.on_location) opts_.on_location(location_.str());
    return true;
  }

  void open_session() {
    resuming_ = false;
    location_ = http::Url{};
    const std::string r = rc_.upstream_repo(repo_);
    RequestOptions o = write_opts();
    o.retry_if_stale = true;  // an unused extra session is harmless
    send(rc_, self(), http::Method::Post, "/v2/" + r + "/blobs/uploads/", r, {}, std::move(o),
         [me = shared_from_this()](Result<Reply> rep) {
           if (!rep) return me->finish(classify_failure(me->what_ + " (POST)", rep.error()));
           if (rep->status != 202) return me->fail_answer("POST", *rep);
           if (!me->adopt_location(*rep)) return me->fail_protocol("parent answered 202 without a usable Location", 202);
           me->offset_ = 0;
           me->confirmed_ = 0;
           me->send_more();
         });
  }

  /// GET the session: 204 with Range 0-N means N+1 bytes are held.
  void query_status() {
    RequestOptions o = write_opts();
    o.url = location_;
    const std::string r = rc_.upstream_repo(repo_);
    send(rc_, self(), http::Method::Get, {}, r, {}, std::move(o), [me = shared_from_this()](Result<Reply> rep) {
      if (!rep) return me->finish(classify_failure(me->what_ + " (upload status)", rep.error()));
      if (rep->status == 404 || (rep->status == 400 && rep->body.find("BLOB_UPLOAD_INVALID") != std::string::npos))
        return me->restart("upload status", *rep);
      if (rep->status != 204 && rep->status != 200) return me->fail_answer("upload status", *rep);
      me->adopt_location(*rep);
      uint64_t held = 0;
      if (auto range = rep->headers.get("Range")) {
        // "0-<last>" inclusive; distribution says "0-0" for an empty session too.
        std::string v(*range);
        if (v.rfind("bytes=", 0) == 0) v = v.substr(6);
        auto dash = v.find('-');
        if (dash != std::string::npos && v.substr(0, dash) == "0") {
          try {
            long long last = std::stoll(v.substr(dash + 1));
            held = last > 0 ? static_cast<uint64_t>(last) + 1 : 0;
          } catch (...) {
            held = 0;
          }
        }
      }
      if (held > me->size_) return me->restart("upload status", *rep);
      if (me->first_send_) me->result_.resumed_from = held;
      me->offset_ = held;
      me->confirmed_ = held;
      me->send_more();
    });
  }

  void send_more() {
    first_send_ = false;
    if (offset_ >= size_) return put_final();
    uint64_t end = size_;
    if (opts_.chunk_size > 0 && size_ - offset_ > opts_.chunk_size) end = offset_ + opts_.chunk_size;
    http::Headers h;
    h.set("Content-Type", "application/octet-stream");
    h.set("Content-Range", std::to_string(offset_) + "-" + std::to_string(end - 1));
    RequestOptions o = write_opts();
    o.url = location_;
    o.file_body = http::FileBody{fd_, offset_, end - offset_};
    // A PATCH the parent never saw may be resent: Content-Range makes a
    // second copy of one it did see fail with 416, which resyncs below.
    o.retry_if_stale = true;
    const std::string r = rc_.upstream_repo(repo_);
    send(rc_, self(), http::Method::Patch, {}, r, std::move(h), std::move(o),
         [me = shared_from_this(), end](Result<Reply> rep) {
           if (!rep) return me->finish(classify_failure(me->what_ + " (PATCH)", rep.error()));
           if (rep->status == 416) return me->query_status();
           if (rep->status == 404) return me->restart("PATCH", *rep);
           if (rep->status == 400 && rep->body.find("BLOB_UPLOAD_INVALID") != std::string::npos)
             return me->restart("PATCH", *rep);
           if (rep->status != 202 && rep->status != 204) return me->fail_answer("PATCH", *rep);
           if (auto range = rep->headers.get("Range")) {
             if (*range != "0-" + std::to_string(end - 1)) {  // the parent holds something else: ask
               me->adopt_location(*rep);
               return me->query_status();
             }
           }
           me->offset_ = end;
           me->confirmed_ = end;  // before on_location: the saved location stands for these bytes
           me->adopt_location(*rep);
           me->send_more();
         });
  }

  void put_final() {
    RequestOptions o = write_opts();
    o.url = location_;
    o.url->target = join_query(o.url->target, "digest=" + http::percent_encode(digest_));
    o.retry_if_stale = true;  // PUT by digest is idempotent
    const std::string r = rc_.upstream_repo(repo_);
    send(rc_, self(), http::Method::Put, {}, r, {}, std::move(o), [me = shared_from_this()](Result<Reply> rep) {
      if (!rep) return me->finish(classify_failure(me->what_ + " (PUT)", rep.error()));
      if (rep->status == 404) return me->restart("PUT", *rep);
      if (rep->status == 400 && me->result_.resumed_from > 0 && rep->body.find("DIGEST_INVALID") != std::string::npos &&
          me->restarts_ == 0) {
        // The session held other bytes than it said (a resume at a wrong
        // offset): once more from scratch before calling it permanent.
        return me->restart("PUT", *rep);
      }
      if (rep->status != 201) return me->fail_answer("PUT", *rep);
      if (auto d = rep->headers.get("Docker-Content-Digest"); d && *d != me->digest_)
        return me->fail_protocol("parent stored digest " + std::string(*d), 201);
      me->result_.restarts = me->restarts_;
      me->finish(me->result_);
    });
  }

  RegistryClient& rc_;
  std::string repo_, digest_, what_;
  int fd_;
  uint64_t size_;
  UploadOptions opts_;
  Pusher::Done<UploadResult> done_;
  http::Url location_;
  uint64_t offset_ = 0;
  bool resuming_ = false;
  bool first_send_ = true;
  int restarts_ = 0;
  UploadResult result_;
};

}  // namespace

PushOpPtr Pusher::upload_blob(const std::string& repo, const std::string& digest, int fd, uint64_t size,
                              UploadOptions opts, Done<UploadResult> done) {
  auto up = std::make_shared<Upload>(rc_, repo, digest, fd, size, std::move(opts), std::move(done));
  up->start();
  return up;
}

// ---------------------------------------------------------------------------
// Manifests and deletes

PushOpPtr Pusher::put_manifest(const std::string& repo, const std::string& reference, const std::string& media_type,
                               std::string bytes, Done<std::string> done) {
  auto op = std::make_shared<PushOp>();
  const std::string what = "PUT manifest " + repo + ":" + reference;
  const std::string r = rc_.upstream_repo(repo);
  http::Headers h;
  h.set("Content-Type", media_type);
  RequestOptions o = write_opts();
  std::string own = Digest::sha256_of(bytes).str();
  o.body = std::move(bytes);
  o.retry_if_stale = true;  // PUT is idempotent
  send(rc_, op, http::Method::Put, "/v2/" + r + "/manifests/" + reference, r, std::move(h), std::move(o),
       [what, own, done = std::move(done)](Result<Reply> rep) {
         if (!rep) return done(classify_failure(what, rep.error()));
         if (rep->status != 201 && rep->status != 200 && rep->status != 202)
           return done(classify_answer(what, rep->status, rep->headers, rep->body));
         auto d = rep->headers.get("Docker-Content-Digest");
         done(d && !d->empty() ? std::string(*d) : own);
       });
  return op;
}

PushOpPtr Pusher::remove(const std::string& what, const std::string& repo, std::string path, bool by_tag,
                         Done<DeleteOutcome> done) {
  auto op = std::make_shared<PushOp>();
  RequestOptions o;
  o.actions = "delete";
  o.retry_if_stale = true;  // DELETE is idempotent
  send(rc_, op, http::Method::Delete, std::move(path), repo, {}, std::move(o),
       [what, by_tag, done = std::move(done)](Result<Reply> rep) {
         if (!rep) return done(classify_failure(what, rep.error()));
         if (is_success(rep->status)) return done(DeleteOutcome::Deleted);
         if (rep->status == 404) return done(DeleteOutcome::AlreadyGone);
         if (rep->status == 405) return done(DeleteOutcome::Unsupported);
         // distribution 2.8 parses the reference of a DELETE as a digest
         // only and answers a tag with 400 DIGEST_INVALID: it cannot delete tags.
         if (by_tag && rep->status == 400 && rep->body.find("DIGEST_INVALID") != std::string::npos)
           return done(DeleteOutcome::Unsupported);
         done(classify_answer(what, rep->status, rep->headers, rep->body));
       });
  return op;
}

PushOpPtr Pusher::delete_manifest(const std::string& repo, const std::string& digest, Done<DeleteOutcome> done) {
  const std::string r = rc_.upstream_repo(repo);
  return remove("DELETE manifest " + repo + "@" + digest, r, "/v2/" + r + "/manifests/" + digest, false,
                std::move(done));
}

PushOpPtr Pusher::delete_tag(const std::string& repo, const std::string& tag, Done<DeleteOutcome> done) {
  const std::string r = rc_.upstream_repo(repo);
  return remove("DELETE tag " + repo + ":" + tag, r, "/v2/" + r + "/manifests/" + tag, true, std::move(done));
}

PushOpPtr Pusher::delete_blob(const std::string& repo, const std::string& digest, Done<DeleteOutcome> done) {
  const std::string r = rc_.upstream_repo(repo);
  return remove("DELETE blob " + repo + "@" + digest, r, "/v2/" + r + "/blobs/" + digest, false, std::move(done));
}

}  // namespace outpost::upstream
