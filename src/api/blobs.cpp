// GET/HEAD/DELETE /v2/<name>/blobs/<digest>: the store's file when held,
// else the pull-through cache; either way the response is built by
// cache::respond_blob (headers, Range 206/416, HEAD; distribution-spec
// "Pulling Blobs"). Blobs already known readable skip the store job
// (cache::HotBlobs).
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <memory>

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
/// job and no SQLite. A small blob's bytes are in memory, and a HEAD needs
/// only the size. A larger GET opens the verified file on the loop: a path
/// lookup and an inode that recent reads keep in the kernel's caches, no
/// data read (sendfile reads it as it sends), no lock, no fsync. The file
/// must still be the size the store recorded; anything else falls back to
/// the store job, which reports it.
bool serve_known(ApiContext& ctx, const http::ExchangePtr& ex, const std::string& name, const Digest& d,
                 bool offline) {
  auto known = ctx.blobs->find(name, d);
  if (!known) return false;
  if (known->bytes) {
    cache::respond_blob(ex, cache::BlobSource::memory(d, std::move(known->bytes), offline));
    return true;
  }
  if (ex->req().method == http::Method::Head) {
    cache::respond_blob(ex, cache::BlobSource::head_only(d, known->size, offline));
    return true;
  }
  store::UniqueFd fd(::open(ctx.store->layout().blob_file(d).c_str(), O_RDONLY | O_CLOEXEC));
  struct stat st {};
  if (!fd.valid() || ::fstat(fd.get(), &st) != 0 || static_cast<uint64_t>(st.st_size) != known->size) {
    ctx.blobs->forget(name, d);
    return false;
  }
  cache::respond_blob(ex, cache::BlobSource::file(d, std::move(fd), known->size, offline));
  return true;
}

/// A store read of a blob: the open file, and a small one's bytes for the memo.
struct Found {
  store::Store::OpenBlob blob;
  std::shared_ptr<const std::string> bytes;
};

/// Pool thread: the whole of a small blob, read once so later requests
/// need no file at all. Null when it is larger or the read comes up short.
std::shared_ptr<const std::string> read_small(const store::Store::OpenBlob& b) {
  if (b.size > cache::HotBlobs::kMaxInlineBytes) return nullptr;
  auto out = std::make_shared<std::string>(static_cast<size_t>(b.size), '\0');
  size_t got = 0;
  while (got < out->size()) {
    const ssize_t n = ::pread(b.fd.get(), out->data() + got, out->size() - got, static_cast<off_t>(got));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return nullptr;
    got += static_cast<size_t>(n);
  }
  return out;
}

}  // namespace

void handle_blob_get(ApiContext& ctx, const http::ExchangePtr& ex) {
  if (!check_name(ex)) return;
  auto d = digest_param(ex, ex->params().reference);
  if (!d) return;
  auto route = pull_route(ctx, ex);
  const std::string name = local_repo(route, ex);
  const bool offline = route && route->upstream->offline();
  if (ctx.on_access) ctx.on_access(*d);
  if (ctx.blobs && serve_known(ctx, ex, name, *d, offline)) return;
  ApiContext* c = &ctx;
  // Taken before the read: a revoking write that commits meanwhile makes
  // the memo entry stale at once (cache/hot_blobs.hpp).
  const uint64_t generation = ctx.store->blob_generation();
  const bool keep_small = ctx.blobs != nullptr;
  // With access control on, a caller's right to a repository's blob comes
  // from the parent holding it there, so a blob cached for another
  // repository is not linked in on our own say: the miss asks the parent.
  const bool cross_link = route.has_value() && !ex->params().may_read;
  ctx.store->run<Found>(
      [name, d = *d, pulled = cross_link, keep_small](store::Store& s) -> Result<Found> {
        auto r = s.open_blob(name, d);
        // Held here for another repository: link it rather than fetch the
        // same bytes from the parent again (content by digest is the same).
        if (!r && r.error().code == Errc::BlobUnknown && pulled && s.link_blob(name, d, store::Origin::Cached))
          r = s.open_blob(name, d);
        if (!r) return std::move(r).error();
        Found f{std::move(*r), nullptr};
        if (keep_small) f.bytes = read_small(f.blob);
        return f;
      },
      [ex, c, route, name, generation, d = *d](Result<Found> r) {
        if (!r && r.error().code == Errc::BlobUnknown && route) return c->pull->blob(*route, d, ex);
        if (!r) return ex->respond_error(r.error().code == Errc::BlobUnknown
                                             ? Error(Errc::BlobUnknown, d.str())
                                             : r.error());
        const uint64_t size = r->blob.size;
        if (c->blobs) c->blobs->insert(name, d, cache::HotBlob{size, r->bytes}, generation);
        const bool offline = route && route->upstream->offline();
        if (r->bytes) return cache::respond_blob(ex, cache::BlobSource::memory(d, std::move(r->bytes), offline));
        cache::respond_blob(ex, cache::BlobSource::file(d, std::move(r->blob.fd), size, offline));
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
