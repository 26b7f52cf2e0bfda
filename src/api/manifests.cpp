// GET/HEAD/PUT/DELETE /v2/<name>/manifests/<reference>: bytes exactly as
// pushed, media type as stored, references checked on PUT
// (distribution-spec "Pulling manifests", "Pushing Manifests", "Deleting").
#include <memory>

#include "api/common.hpp"
#include "api/handlers.hpp"
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
  ex->respond_error(Errc::TagInvalid, "invalid tag '" + ref + "'");
  return false;
}
}  // namespace

void handle_manifest_get(ApiContext& ctx, const http::ExchangePtr& ex) {
  if (!check_name(ex) || !check_reference(ex)) return;
  const std::string name = ex->params().name, ref = ex->params().reference;
  const bool head = ex->req().method == http::Method::Head;
  store_job<Fetched>(
      ctx,
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
      [ex, ref](Result<Fetched> r) {
        if (!r) {
          if (r.error().code == Errc::ManifestUnknown || r.error().code == Errc::NameUnknown)
            return ex->respond_error(Errc::ManifestUnknown, "manifest unknown: " + ref);
          return ex->respond_error(r.error());
        }
        ex->add_header("Docker-Content-Digest", r->info.digest.str());
        ex->add_header("ETag", "\"" + r->info.digest.str() + "\"");
        ex->add_header("Content-Type", r->info.media_type);
        if (ex->req().method == http::Method::Head) return ex->respond_head_only(200, r->info.size);
        ex->respond(200, std::move(r->bytes));
      });
}

void handle_manifest_put(ApiContext& ctx, const http::ExchangePtr& ex) {
  if (!check_name(ex) || !check_writable(ctx, ex) || !check_reference(ex)) return;
  const uint64_t limit = ctx.options.max_manifest_bytes;
  if (auto len = ex->req().content_length; len && *len > limit)
    return ex->respond_error(Errc::ManifestTooLarge, "manifest of " + std::to_string(*len) +
                                                         " bytes exceeds the limit of " + std::to_string(limit));
  auto body = std::make_shared<std::string>();
  ApiContext* c = &ctx;
  ex->read_body(
      [ex, body, limit](std::string_view chunk) {
        if (ex->responded()) return;
        if (body->size() + chunk.size() > limit) {
          body->clear();
          return ex->respond_error(Errc::ManifestTooLarge,
                                   "manifest exceeds the limit of " + std::to_string(limit) + " bytes");
        }
        body->append(chunk);
      },
      [ex, body, c](Status st) {
        if (ex->responded()) return;
        if (!st) return ex->respond_error(Errc::ManifestInvalid, "manifest body incomplete: " + st.error().message());
        const std::string name = ex->params().name, ref = ex->params().reference;
        auto parsed = oci::parse_manifest(*body, ex->req().headers.get("Content-Type").value_or(""));
        if (!parsed) return ex->respond_error(parsed.error());
        Digest digest = Digest::sha256_of(*body);
        if (looks_like_digest(ref) && ref != digest.str())
          return ex->respond_error(Errc::DigestInvalid, "manifest bytes hash to " + digest.str() + ", not " + ref);
        store::ManifestPut m;
        m.repo = name;
        m.digest = digest;
        m.media_type = parsed->media_type;
        for (auto& pr : parsed->refs) m.refs.push_back({pr.digest, pr.required});
        m.subject = parsed->subject;
        m.artifact_type = parsed->artifact_type;
        m.annotations = parsed->annotations;
        if (!looks_like_digest(ref)) m.tag = ref;
        store_job<store::ManifestInfo>(
            *c, [m = std::move(m), body](store::Store& s) { return s.put_manifest(m, *body); },
            [ex, name, digest, subject = parsed->subject](Result<store::ManifestInfo> r) {
              if (!r) return ex->respond_error(r.error());
              ex->add_header("Location", manifest_location(name, digest));
              ex->add_header("Docker-Content-Digest", digest.str());
              if (subject) ex->add_header("OCI-Subject", subject->str());
              ex->respond(201);
            });
      });
}

void handle_manifest_delete(ApiContext& ctx, const http::ExchangePtr& ex) {
  if (!check_name(ex) || !check_writable(ctx, ex) || !check_reference(ex)) return;
  const std::string name = ex->params().name, ref = ex->params().reference;
  store_job<bool>(
      ctx,
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
