// Blob uploads (distribution-spec "Pushing Blobs"): POST starts a session
// (or mounts, or takes the whole blob with ?digest=), PATCH appends a chunk
// with offset checks, PUT ?digest= appends the last bytes and commits, GET
// reports progress, DELETE cancels. Bodies stream into the session file
// chunk by chunk: memory stays flat whatever the blob size.
//
// Every store call of a session is a job of the session's serial queue in
// the store service (storesvc::upload_key(id)): appends, flush, commit,
// status, cancel run on the pool one at a time in request order, so the
// loop never waits on the session's lock while a commit fsyncs (issue #14).
#include <memory>
#include <optional>
#include <string>

#include "api/common.hpp"
#include "api/handlers.hpp"
#include "http/range.hpp"

namespace outpost::api {

namespace {

void add_upload_headers(const http::ExchangePtr& ex, const std::string& name, const std::string& id, uint64_t offset) {
  ex->add_header("Location", upload_location(name, id));
  ex->add_header("Range", upload_range(offset));
  ex->add_header("Docker-Upload-UUID", id);
}

void respond_upload_error(const http::ExchangePtr& ex, const Error& e, const std::string& id) {
  if (e.code == Errc::BlobUploadUnknown) return ex->respond_error(Errc::BlobUploadUnknown, "upload " + id + " is not known");
  ex->respond_error(e);
}

/// Runs `job` behind every job already queued for session `id`.
template <typename T>
void session_job(ApiContext& ctx, const std::string& id, storesvc::StoreService::Job<T> job,
                 storesvc::StoreService::Done<T> done) {
  ctx.store->run_serial<T>(storesvc::upload_key(id), std::move(job), std::move(done));
}

// Answers 416 with the session's progress `offset`, so the client can resume.
void respond_bad_offset_at(const http::ExchangePtr& ex, const std::string& name, const std::string& id,
                           uint64_t offset, std::string why) {
  add_upload_headers(ex, name, id, offset);
  ex->respond_error(Errc::RangeInvalid, std::move(why));
}

// As respond_bad_offset_at, reading the session's real progress first (a
// job behind the request's appends, so it sees where they left it).
void respond_bad_offset(ApiContext& ctx, const http::ExchangePtr& ex, const std::string& name, const std::string& id,
                        std::string why) {
  session_job<uint64_t>(
      ctx, id, [name, id](store::Store& s) { return s.upload_status(name, id); },
      [ex, name, id, why = std::move(why)](Result<uint64_t> cur) mutable {
        if (ex->responded()) return;
        if (!cur) return respond_upload_error(ex, cur.error(), id);
        respond_bad_offset_at(ex, name, id, *cur, std::move(why));
      });
}

/// Streams the request body into session `id` from `offset`, then calls
/// `then(new_offset)` once the whole body is in (not yet durable), or
/// `failed()` (when set) after answering an error.
///
/// Body chunks (one socket read each, at most 64 KiB) are copied into a
/// batch; each batch of kBatchBytes (and the rest at the body's end) is
/// appended (pwrite + SHA-256) by a pool job of the session's serial queue,
/// so a big push never holds the loop; jobs run in order, so offsets stay
/// exact. Batching matters because a serial job comes back to the loop
/// before the next one starts: a job per read cost the loop a pool wake-up,
/// an async wake-up and a context switch per 64 KiB, which other clients'
/// requests paid for while a push ran (issue #14). While more than
/// kQueuedHigh bytes wait, the body is paused (TCP pushes back on the
/// client); the end of the body is acted on only once the last append
/// delivered.
using Continue = std::function<void(const http::ExchangePtr&, uint64_t)>;

constexpr uint64_t kBatchBytes = 512 * 1024;
constexpr uint64_t kQueuedHigh = 2 * 1024 * 1024;
constexpr uint64_t kQueuedLow = 512 * 1024;

/// One request body on its way into an upload session.
struct BodyUpload {
  ApiContext* ctx = nullptr;
  bool open = true;  ///< false once the body's outcome was acted on
  std::string name, id;
  uint64_t start = 0;   ///< the session's offset before this request
  uint64_t next = 0;    ///< offset of the next chunk handed to the queue
  uint64_t offset = 0;  ///< offset after the last append that delivered
  uint64_t queued = 0;  ///< bytes handed to the queue and not delivered
  bool paused = false;
  bool failed = false;
  std::shared_ptr<std::string> batch;  ///< chunks not yet handed to the queue
  std::shared_ptr<std::string> spare;  ///< a delivered batch's buffer, for the next one
  uint64_t batch_at = 0;               ///< session offset of batch's first byte
  std::optional<Status> end;  ///< set when the body ended
  Continue then;
  std::function<void()> on_failed;
};

// Runs once the body ended and every append delivered (called after each
// delivery; acts only then).
void finish_body(const std::shared_ptr<BodyUpload>& st, const http::ExchangePtr& ex) {
  if (!st->end || st->queued > 0 || !st->open) return;
  if (!*st->end && st->end->error().code == Errc::BadRequest && !st->failed && !ex->responded() &&
      st->offset != st->start) {
    // A malformed body (bad chunk framing) is not the client's data: the
    // session is left as it was before this request (issue #13), so a retry
    // of the same chunk starts where this one did.
    st->offset = st->start;
    st->queued = 1;  // holds finish_body off until the rewind delivered
    session_job<uint64_t>(
        *st->ctx, st->id,
        [name = st->name, id = st->id, to = st->start](store::Store& s) { return s.rewind_upload(name, id, to); },
        [st, ex](Result<uint64_t>) {
          st->queued = 0;
          finish_body(st, ex);
        });
    return;
  }
  st->open = false;
  Status s = std::move(*st->end);
  if (!st->failed && !ex->responded()) {
    if (s) return st->then(ex, st->offset);
    // The client left or stalled (408): what arrived stays in the session
    // (GET shows the offset) for a resume. A malformed body (400) was
    // rewound above.
    ex->respond_error(s.error());
  }
  if (st->on_failed) st->on_failed();
}

void body_to_upload(ApiContext& ctx, const http::ExchangePtr& ex, std::string name, std::string id, uint64_t offset,
                    Continue then, std::function<void()> failed = {}) {
  auto st = std::make_shared<BodyUpload>();
  st->ctx = &ctx;
  st->name = name;
  st->id = id;
  st->start = st->next = st->offset = offset;
  st->then = std::move(then);
  st->on_failed = std::move(failed);
  ApiContext* c = &ctx;
  auto finish = finish_body;
  ex->answer_body_errors_later();  // finish_body answers a malformed body after the rewind

  // Hands the batch to the session's queue. The done callback holds the
  // exchange only until it runs.
  auto submit = [st, c, name, id, finish](const http::ExchangePtr& ex) {
        if (!st->batch || st->batch->empty()) return;
        auto bytes = std::move(st->batch);
        st->batch.reset();
        const uint64_t at = st->batch_at;
        const size_t n = bytes->size();
        session_job<uint64_t>(
            *c, id, [name, id, at, bytes](store::Store& s) { return s.append_upload(name, id, at, *bytes); },
            [st, c, ex, name, id, n, finish, bytes](Result<uint64_t> r) {
              // The buffer is reused for a later batch: no allocation (and
              // no fresh pages to fault in) per 512 KiB on the loop.
              if (!st->spare) {
                bytes->clear();
                st->spare = bytes;
              }
              st->queued -= n;
              if (!st->failed && !ex->responded()) {
                if (r) {
                  st->offset = *r;
                } else {
                  // Answer once; later chunks are dropped (their appends see
                  // a wrong offset and write nothing).
                  st->failed = true;
                  if (r.error().code == Errc::RangeInvalid)
                    respond_bad_offset(*c, ex, name, id, r.error().message());
                  else
                    respond_upload_error(ex, r.error(), id);
                }
              }
              // Bytes still in the batch wait for more body: only those
              // handed to the queue hold the body back.
              const uint64_t in_queue = st->queued - (st->batch ? st->batch->size() : 0);
              if (st->paused && (st->failed || in_queue <= kQueuedLow)) {
                st->paused = false;
                ex->resume_body();  // a failed upload still reads the rest of the body to drop it
              }
              finish(st, ex);
            });
  };
  read_body(
      ex,
      [st, submit](const http::ExchangePtr& ex, std::string_view chunk) {
        if (st->failed || ex->responded() || !st->open) return;
        if (!st->batch) {
          st->batch = std::move(st->spare);
          st->spare.reset();
          if (!st->batch) {
            st->batch = std::make_shared<std::string>();
            st->batch->reserve(kBatchBytes + 64 * 1024);
          }
          st->batch_at = st->next;
        }
        st->batch->append(chunk);
        st->next += chunk.size();
        st->queued += chunk.size();
        if (st->batch->size() >= kBatchBytes) submit(ex);
        if (!st->paused && st->queued > kQueuedHigh) {
          st->paused = true;
          ex->pause_body();
        }
      },
      [st, submit, finish](const http::ExchangePtr& ex, Status s) {
        // What arrived goes into the session even when the body broke off:
        // a client that left resumes from it (GET shows the offset).
        if (!st->failed && !ex->responded() && st->open) submit(ex);
        else if (st->batch) {
          st->queued -= st->batch->size();
          st->batch.reset();
        }
        st->end = std::move(s);
        finish(st, ex);
      });
}

/// Common start of PATCH and PUT: the session's current offset, checked
/// against Content-Range when the client sent one; calls `then(offset)`
/// unless it answered. Runs on the work pool first: after a restart the
/// session's hash is rebuilt by re-reading its file, which must not stall
/// the loop (the body's appends then hash incrementally, on the pool too).
void start_offset(ApiContext& ctx, const http::ExchangePtr& ex, std::function<void(uint64_t)> then) {
  const std::string name = ex->params().name, id = ex->params().uuid;
  session_job<uint64_t>(
      ctx, id, [name, id](store::Store& s) { return s.prepare_upload(name, id); },
      [ex, name, id, then = std::move(then)](Result<uint64_t> cur) {
        if (!cur) return respond_upload_error(ex, cur.error(), id);
        if (auto cr = ex->req().headers.get("Content-Range")) {
          auto r = http::parse_content_range(*cr);
          if (!r)
            return respond_bad_offset_at(ex, name, id, *cur, "malformed Content-Range '" + std::string(*cr) + "'");
          if (r->start != *cur)
            return respond_bad_offset_at(ex, name, id, *cur,
                                         "chunk starts at " + std::to_string(r->start) + " but the upload has " +
                                             std::to_string(*cur) + " bytes");
          auto len = ex->req().content_length;
          if (len && *len != r->end - r->start + 1)
            return respond_bad_offset_at(ex, name, id, *cur, "Content-Range does not match Content-Length");
        }
        then(*cur);
      });
}

void commit_and_respond(ApiContext& ctx, const http::ExchangePtr& ex, std::string name, std::string id, Digest d) {
  session_job<store::Descriptor>(
      ctx, id, [name, id, d](store::Store& s) { return s.commit_upload(name, id, d); },
      [ex, name, id, d](Result<store::Descriptor> r) {
        if (!r) return respond_upload_error(ex, r.error(), id);
        ex->add_header("Location", blob_location(name, d));
        ex->add_header("Docker-Content-Digest", d.str());
        ex->respond(201);
      });
}

void new_session(ApiContext& ctx, const http::ExchangePtr& ex, std::optional<Digest> monolithic) {
  const std::string name = ex->params().name;
  ApiContext* c = &ctx;
  ctx.store->run<std::string>(
      [name, internal = monolithic.has_value()](store::Store& s) { return s.start_upload(name, internal); },
      [ex, c, name, monolithic](Result<std::string> r) {
        if (!r) return ex->respond_error(r.error());
        const std::string id = *r;
        if (!monolithic) {
          add_upload_headers(ex, name, id, 0);
          return ex->respond(202);
        }
        // The client never learns a monolithic session's id: if its body
        // fails, drop the session now rather than at the upload TTL.
        body_to_upload(
            *c, ex, name, id, 0,
            [c, name, id, d = *monolithic](const http::ExchangePtr& ex, uint64_t) {
              commit_and_respond(*c, ex, name, id, d);
            },
            [c, name, id] {
              session_job<void>(
                  *c, id, [name, id](store::Store& s) { return s.cancel_upload(name, id); }, [](Status) {});
            });
      });
}

}  // namespace

void handle_upload_start(ApiContext& ctx, const http::ExchangePtr& ex) {
  if (!check_name(ex) || !check_writable(ctx, ex)) return;
  const auto& req = ex->req();
  auto mount = req.query_param("mount");
  auto from = req.query_param("from");
  std::optional<Digest> monolithic;
  if (auto d = req.query_param("digest")) {
    auto parsed = digest_param(ex, *d);
    if (!parsed) return;
    monolithic = *parsed;
  }
  // A mount from a repository the caller may not read is a plain upload
  // (as the spec's answer to a mount that cannot happen): whether the blob
  // is there must not leak (issue #16).
  const auto& may_read = ex->params().may_read;
  if (mount && from && !monolithic && may_read && !may_read(*from)) mount.reset();
  if (mount && from && !monolithic) {
    auto d = digest_param(ex, *mount);
    if (!d) return;
    const std::string name = ex->params().name, src = *from;
    ApiContext* c = &ctx;
    ctx.store->run<uint64_t>(
        [name, src, d = *d](store::Store& s) { return s.mount_blob(src, name, d); },
        [ex, c, name, d = *d](Result<uint64_t> r) {
          if (r) {
            ex->add_header("Location", blob_location(name, d));
            ex->add_header("Docker-Content-Digest", d.str());
            return ex->respond(201);
          }
          // Spec: a registry that cannot mount answers as for a plain POST.
          if (r.error().code != Errc::BlobUnknown && r.error().code != Errc::NameInvalid)
            return ex->respond_error(r.error());
          new_session(*c, ex, std::nullopt);
        });
    return;
  }
  new_session(ctx, ex, monolithic);
}

void handle_upload_patch(ApiContext& ctx, const http::ExchangePtr& ex) {
  if (!check_name(ex) || !check_writable(ctx, ex)) return;
  const std::string name = ex->params().name, id = ex->params().uuid;
  ApiContext* c = &ctx;
  start_offset(ctx, ex, [c, ex, name, id](uint64_t offset) {
    body_to_upload(*c, ex, name, id, offset, [c, name, id](const http::ExchangePtr& ex, uint64_t) {
      session_job<uint64_t>(
          *c, id, [name, id](store::Store& s) { return s.flush_upload(name, id); },
          [ex, name, id](Result<uint64_t> r) {
            if (!r) return respond_upload_error(ex, r.error(), id);
            add_upload_headers(ex, name, id, *r);
            ex->respond(202);
          });
    });
  });
}

void handle_upload_put(ApiContext& ctx, const http::ExchangePtr& ex) {
  if (!check_name(ex) || !check_writable(ctx, ex)) return;
  auto dq = ex->req().query_param("digest");
  if (!dq) return ex->respond_error(Errc::DigestInvalid, "the digest query parameter is required to finish an upload");
  auto d = digest_param(ex, *dq);
  if (!d) return;
  const std::string name = ex->params().name, id = ex->params().uuid;
  ApiContext* c = &ctx;
  start_offset(ctx, ex, [c, ex, name, id, d = *d](uint64_t offset) {
    body_to_upload(*c, ex, name, id, offset,
                   [c, name, id, d](const http::ExchangePtr& ex, uint64_t) { commit_and_respond(*c, ex, name, id, d); });
  });
}

void handle_upload_status(ApiContext& ctx, const http::ExchangePtr& ex) {
  if (!check_name(ex)) return;
  const std::string name = ex->params().name, id = ex->params().uuid;
  // Behind the session's pending jobs (a commit's fsyncs included), on the
  // pool: the loop never waits on the session (issue #14).
  session_job<uint64_t>(
      ctx, id, [name, id](store::Store& s) { return s.upload_status(name, id); },
      [ex, name, id](Result<uint64_t> cur) {
        if (!cur) return respond_upload_error(ex, cur.error(), id);
        add_upload_headers(ex, name, id, *cur);
        ex->respond(204);
      });
}

void handle_upload_cancel(ApiContext& ctx, const http::ExchangePtr& ex) {
  if (!check_name(ex) || !check_writable(ctx, ex)) return;
  const std::string name = ex->params().name, id = ex->params().uuid;
  session_job<void>(
      ctx, id, [name, id](store::Store& s) { return s.cancel_upload(name, id); },
      [ex, id](Status r) {
        if (!r) return respond_upload_error(ex, r.error(), id);
        ex->respond(204);
      });
}

}  // namespace outpost::api
