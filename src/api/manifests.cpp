// GET/HEAD/PUT/DELETE /v2/<name>/manifests/<reference>: bytes exactly as
// pushed, media type as stored, references checked on PUT
// (distribution-spec "Pulling manifests", "Pushing Manifests", "Deleting").
#include <memory>

#include "api/common.hpp"
#include "api/handlers.hpp"
#include "cache/hot_manifests.hpp"
#include "cache/pull_through.hpp"
#include "oci/manifest.hpp"
#include "base/reference.hpp"

namespace outpost::api {

namespace {
struct Fetched {
  store::ManifestInfo info;
  std::string bytes;
};

bool check_reference(const http::ExchangePtr& ex) {
  const std::string& ref = ex->params().reference;
  if (looks_like_digest(ref)) return digest_param(ex, ref).has_value();
  if (valid_tag(ref)) return true;
  // Reading or deleting a reference that cannot exist is a miss (404, as the
  // conformance suite and distribution answer); pushing to one is TAG_INVALID.
  if (ex->req().method == http::Method::Put) ex->respond_error(Errc::TagInvalid, "invalid tag '" + ref + "'");
  else ex->respond_error(Errc::ManifestUnknown, "manifest unknown: invalid reference '" + ref + "'");
  return false;
}
}  // namespace

namespace {
void respond_manifest(const ApiContext& ctx, const http::ExchangePtr& ex, const store::ManifestInfo& info,
                      std::string_view bytes) {
  if (ctx.on_access) ctx.on_access(info.digest);  // LRU of cache management (issue #18)
  ex->add_header("Docker-Content-Digest", info.digest.str());
  std::string etag;
  etag.reserve(info.digest.str().size() + 2);
  etag += '"'; etag += info.digest.str(); etag += '"';
  ex->add_header("ETag", std::move(etag));
  ex->add_header("Content-Type", info.media_type);
  if (ex->req().method == http::Method::Head) return ex->respond_head_only(200, info.size);
  ex->respond_view(200, bytes);
}

void respond_manifest_error(const http::ExchangePtr& ex, const Error& e, const std::string& ref) {
  if (e.code == Errc::ManifestUnknown || e.code == Errc::NameUnknown)
    return ex->respond_error(Errc::ManifestUnknown, "manifest unknown: " + ref);
  ex->respond_error(e);
}
}  // namespace

void handle_manifest_get(ApiContext& ctx, const http::ExchangePtr& ex) {
  if (!check_name(ex) || !check_reference(ex)) return;
  const std::string ref = ex->params().reference;
  const bool head = ex->req().method == http::Method::Head;
  if (auto route = pull_route(ctx, ex)) {
    // A cached, fresh manifest is answered here, without a callback or a
    // copy of its bytes: the common request of every pull (issue #14).
    if (const cache::HotManifest* hot = ctx.pull->hot_manifest(*route, ref))
      return respond_manifest(ctx, ex, hot->info, *hot->bytes);
    const bool read_write = !ctx.options.read_only;
    ApiContext* c = &ctx;
    ctx.pull->manifest(*route, ref, !head, [c, ex, ref, head, read_write, route](Result<cache::ManifestResult> r) {
      if (!r && head && read_write && r.error().code == Errc::UpstreamUnavailable && route->upstream->offline()) {
        // As for blobs: a HEAD miss while the parent is away is "not here",
        // so a push that checks its tag first (ctr push) goes on (issue #13).
        ex->add_header("Outpost-Cache", "offline");
        return ex->respond_error(Errc::ManifestUnknown, "manifest unknown: " + ref + " (parent offline, not cached here)");
      }
      if (!r) return respond_manifest_error(ex, r.error(), ref);
      if (r->offline) {
        // Served without the parent's confirmation (docs/operations.md, "Offline").
        ex->add_header("Outpost-Cache", "offline");
        if (r->tag_age_s) ex->add_header("Outpost-Tag-Age", std::to_string(*r->tag_age_s));
      }
      respond_manifest(*c, ex, r->info, r->bytes);
    });
    return;
  }
  const std::string name = ex->params().name;
  if (ctx.memo) {
    // Hot tags are answered on the loop thread (issue #14), a current
    // entry without a callback or a copy.
    if (const auto* hot = ctx.memo->peek(name, ref, [](const cache::HotManifest& h) { return h.bytes != nullptr; }))
      return respond_manifest(ctx, ex, hot->info, *hot->bytes);
    ApiContext* c = &ctx;
    ctx.memo->get(name, ref, !head, [c, ex, ref](Result<cache::HotManifest> r) {
      if (!r) return respond_manifest_error(ex, r.error(), ref);
      respond_manifest(*c, ex, r->info, r->bytes ? std::string_view(*r->bytes) : std::string_view());
    });
    return;
  }
  ctx.store->run<Fetched>(
      [name, ref, head](store::Store& s) -> Result<Fetched> {
        auto info = s.resolve_manifest(name, ref);
        if (!info) return std::move(info).error();
        Fetched f{std::move(*info), {}};
        if (!head) {
          auto bytes = s.read_manifest(name, f.info.digest);
          if (!bytes) return std::move(bytes).error();
          f.bytes = std::move(*bytes);
        }
        return f;
      },
      [c = &ctx, ex, ref](Result<Fetched> r) {
        if (!r) return respond_manifest_error(ex, r.error(), ref);
        respond_manifest(*c, ex, r->info, r->bytes);
      });
}

namespace {
struct Pushed {
  Digest digest;
  std::optional<Digest> subject;
};

// Parse, verify and store: on the work pool, since a manifest may be up to
// registry.max_manifest_bytes (64 MiB at most) and parsing is CPU work.
Result<Pushed> push_manifest(store::Store& s, const std::string& name, const std::string& ref,
                             const std::string& bytes, const std::string& content_type) {
  auto parsed = oci::parse_manifest(bytes, content_type);
  if (!parsed) return std::move(parsed).error();
  OUTPOST_TRY(oci::check_pushed_content_type(*parsed, content_type));
  Digest digest = Digest::sha256_of(bytes);
  if (looks_like_digest(ref) && ref != digest.str())
    return Error(Errc::DigestInvalid, "manifest bytes hash to " + digest.str() + ", not " + ref);
  store::ManifestPut m;
  m.repo = name;
  m.digest = digest;
  m.media_type = parsed->media_type;
  for (auto& pr : parsed->refs) m.refs.push_back({pr.digest, pr.required, pr.is_manifest});
  m.subject = parsed->subject;
  m.artifact_type = parsed->artifact_type;
  m.annotations = parsed->annotations;
  if (!looks_like_digest(ref)) m.tag = ref;
  auto info = s.put_manifest(m, bytes);
  if (!info) return std::move(info).error();
  return Pushed{digest, parsed->subject};
}
}  // namespace

void handle_manifest_put(ApiContext& ctx, const http::ExchangePtr& ex) {
  if (!check_name(ex) || !check_writable(ctx, ex) || !check_reference(ex)) return;
  const uint64_t limit = ctx.options.max_manifest_bytes;
  if (auto len = ex->req().content_length; len && *len > limit)
    return ex->respond_error(Errc::ManifestTooLarge, "manifest of " + std::to_string(*len) +
                                                         " bytes exceeds the limit of " + std::to_string(limit));
  auto body = std::make_shared<std::string>();
  ApiContext* c = &ctx;
  read_body(
      ex,
      [body, limit](const http::ExchangePtr& ex, std::string_view chunk) {
        if (ex->responded()) return;
        if (body->size() + chunk.size() > limit) {
          std::string().swap(*body);  // release the buffer now, not when the exchange goes
          return ex->respond_error(Errc::ManifestTooLarge,
                                   "manifest exceeds the limit of " + std::to_string(limit) + " bytes");
        }
        body->append(chunk);
      },
      [body, c](const http::ExchangePtr& ex, Status st) {
        if (ex->responded()) return;
        // The transport's own error: 408 for a stalled body, 400 for a malformed one.
        if (!st) return ex->respond_error(st.error());
        const std::string name = ex->params().name, ref = ex->params().reference;
        const std::string ct(ex->req().headers.get("Content-Type").value_or(""));
        c->store->run<Pushed>(
            [name, ref, body, ct](store::Store& s) { return push_manifest(s, name, ref, *body, ct); },
            [ex, name](Result<Pushed> r) {
              if (!r) return ex->respond_error(r.error());
              ex->add_header("Location", manifest_location(name, r->digest));
              ex->add_header("Docker-Content-Digest", r->digest.str());
              if (r->subject) ex->add_header("OCI-Subject", r->subject->str());
              ex->respond(201);
            });
      });
}

void handle_manifest_delete(ApiContext& ctx, const http::ExchangePtr& ex) {
  if (!check_name(ex) || !check_writable(ctx, ex) || !check_reference(ex)) return;
  const std::string name = ex->params().name, ref = ex->params().reference;
  ctx.store->run<bool>(
      [name, ref](store::Store& s) -> Result<bool> {
        Status st;
        if (looks_like_digest(ref)) {
          auto d = Digest::parse(ref);
          if (!d) return std::move(d).error();
          st = s.delete_manifest(name, *d);
        } else {
          st = s.delete_tag(name, ref);
        }
        if (!st) return std::move(st).error();
        return true;
      },
      [ex, ref](Result<bool> r) {
        if (!r) {
          if (r.error().code == Errc::NameUnknown) return ex->respond_error(Errc::ManifestUnknown, ref);
          return ex->respond_error(r.error());
        }
        ex->respond(202);
      });
}

}  // namespace outpost::api
