// GET/HEAD/DELETE /v2/<name>/blobs/<digest>: the store's file when held,
// else the pull-through cache; either way the response is built by
// cache::respond_blob (headers, Range 206/416, HEAD; distribution-spec
// "Pulling Blobs"). Blobs already known readable skip the store job
// (cache::HotBlobs).
#include <fcntl.h>
#include <sys/stat.h>

#include "api/common.hpp"
#include "api/handlers.hpp"
#include "cache/blob_response.hpp"
#include "cache/hot_blobs.hpp"
#include "cache/pull_through.hpp"
#include "upstream/registry_client.hpp"

namespace outpost::api {

namespace {

/// The fast path (issue #14): `name` is known to read `d` (cache::HotBlobs,
/// coherent with the store's blob generation), so the answer needs no pool
/// job and no SQLite. A HEAD needs only the size. A GET opens the verified
/// file on the loop: a path lookup and an inode that recent reads keep in
/// the kernel's caches, no data read (sendfile reads it as it sends), no
/// lock, no fsync. The file must still be the size the store recorded;
/// anything else falls back to the store job, which reports it.
bool serve_known(ApiContext& ctx, const http::ExchangePtr& ex, const std::string& name, const Digest& d,
                 bool offline) {
  auto size = ctx.blobs->find(name, d);
  if (!size) return false;
  if (ex->req().method == http::Method::Head) {
    auto src = cache::BlobSource::head_only(d, *size);
    src.offline = offline;
    cache::respond_blob(ex, std::move(src));
    return true;
  }
  store::UniqueFd fd(::open(ctx.store->layout().blob_file(d).c_str(), O_RDONLY | O_CLOEXEC));
  struct stat st {};
  if (!fd.valid() || ::fstat(fd.get(), &st) != 0 || static_cast<uint64_t>(st.st_size) != *size) {
    ctx.blobs->forget(name, d);
    return false;
  }
  cache::respond_blob(ex, cache::BlobSource::file(d, std::move(fd), *size, offline));
  return true;
}

}  // namespace

void handle_blob_get(ApiContext& ctx, const http::ExchangePtr& ex) {
  if (!check_name(ex)) return;
  auto d = digest_param(ex, ex->params().reference);
  if (!d) return;
  auto route = pull_route(ctx, ex);
  const std::string name = local_repo(route, ex);
  const bool offline = route && route->upstream->offline();
  if (ctx.blobs && serve_known(ctx, ex, name, *d, offline)) return;
  ApiContext* c = &ctx;
  // Taken before the read: a revoking write that commits meanwhile makes
  // the memo entry stale at once (cache/hot_blobs.hpp).
  const uint64_t generation = ctx.store->blob_generation();
  ctx.store->run<store::Store::OpenBlob>(
      [name, d = *d, pulled = route.has_value()](store::Store& s) -> Result<store::Store::OpenBlob> {
        auto r = s.open_blob(name, d);
        // Held here for another repository: link it rather than fetch the
        // same bytes from the parent again (content by digest is the same).
        if (!r && r.error().code == Errc::BlobUnknown && pulled && s.link_blob(name, d, store::Origin::Cached))
          return s.open_blob(name, d);
        return r;
      },
      [ex, c, route, name, generation, d = *d](Result<store::Store::OpenBlob> r) {
        if (!r && r.error().code == Errc::BlobUnknown && route) return c->pull->blob(*route, d, ex);
        if (!r) return ex->respond_error(r.error().code == Errc::BlobUnknown
                                             ? Error(Errc::BlobUnknown, d.str())
                                             : r.error());
        if (c->blobs) c->blobs->insert(name, d, r->size, generation);
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
