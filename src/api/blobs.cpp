// GET/HEAD/DELETE /v2/<name>/blobs/<digest>: the store's file when held,
// else the pull-through cache; either way the response is built by
// cache::respond_blob (headers, Range 206/416, HEAD; distribution-spec
// "Pulling Blobs").
#include "api/common.hpp"
#include "api/handlers.hpp"
#include "cache/blob_response.hpp"
#include "cache/pull_through.hpp"
#include "upstream/registry_client.hpp"

namespace outpost::api {

void handle_blob_get(ApiContext& ctx, const http::ExchangePtr& ex) {
  if (!check_name(ex)) return;
  auto d = digest_param(ex, ex->params().reference);
  if (!d) return;
  auto route = pull_route(ctx, ex);
  const std::string name = local_repo(route, ex);
  ApiContext* c = &ctx;
  ctx.store->run<store::Store::OpenBlob>(
      [name, d = *d, pulled = route.has_value()](store::Store& s) -> Result<store::Store::OpenBlob> {
        auto r = s.open_blob(name, d);
        // Held here for another repository: link it rather than fetch the
        // same bytes from the parent again (content by digest is the same).
        if (!r && r.error().code == Errc::BlobUnknown && pulled && s.link_blob(name, d, store::Origin::Cached))
          return s.open_blob(name, d);
        return r;
      },
      [ex, c, route, d = *d](Result<store::Store::OpenBlob> r) {
        if (!r && r.error().code == Errc::BlobUnknown && route) return c->pull->blob(*route, d, ex);
        if (!r) return ex->respond_error(r.error().code == Errc::BlobUnknown
                                             ? Error(Errc::BlobUnknown, d.str())
                                             : r.error());
        const bool offline = route && route->upstream->offline();
        cache::respond_blob(ex, cache::BlobSource::file(d, std::move(r->fd), r->size, offline));
      });
}

void handle_blob_delete(ApiContext& ctx, const http::ExchangePtr& ex) {
  if (!check_name(ex) || !check_writable(ctx, ex)) return;
  auto d = digest_param(ex, ex->params().reference);
  if (!d) return;
  const std::string name = ex->params().name;
  ctx.store->run<bool>(
      [name, d = *d](store::Store& s) -> Result<bool> {
        auto st = s.delete_blob(name, d);
        if (!st) return std::move(st).error();
        return true;
      },
      [ex, d = *d](Result<bool> r) {
        if (!r) {
          if (r.error().code == Errc::BlobUnknown) return ex->respond_error(Errc::BlobUnknown, d.str());
          return ex->respond_error(r.error());
        }
        ex->respond(202);
      });
}

}  // namespace outpost::api
