// The route table: every OCI endpoint, its method and its handler, as data.
// Order matters where patterns overlap: upload routes come before blob
// routes so "/v2/a/blobs/uploads/" is never read as a blob named "uploads".
#include "api/api.hpp"
#include "api/handlers.hpp"

namespace outpost::api {

namespace {
using HandlerFn = void (*)(ApiContext&, const http::ExchangePtr&);
struct RouteRow {
  http::Method method;
  const char* pattern;
  HandlerFn fn;
  Access access;
};
constexpr RouteRow kRoutes[] = {
    {http::Method::Get, "/v2/", handle_base, Access::Login},
    {http::Method::Get, "/v2", handle_base, Access::Login},
    {http::Method::Get, "/v2/_catalog", handle_catalog, Access::Catalog},
    {http::Method::Get, "/v2/{name}/tags/list", handle_tags_list, Access::Pull},
    {http::Method::Get, "/v2/{name}/manifests/{reference}", handle_manifest_get, Access::Pull},
    {http::Method::Put, "/v2/{name}/manifests/{reference}", handle_manifest_put, Access::Push},
    {http::Method::Delete, "/v2/{name}/manifests/{reference}", handle_manifest_delete, Access::Delete},
    {http::Method::Post, "/v2/{name}/blobs/uploads/", handle_upload_start, Access::Push},
    {http::Method::Get, "/v2/{name}/blobs/uploads/{uuid}", handle_upload_status, Access::Push},
    {http::Method::Patch, "/v2/{name}/blobs/uploads/{uuid}", handle_upload_patch, Access::Push},
    {http::Method::Put, "/v2/{name}/blobs/uploads/{uuid}", handle_upload_put, Access::Push},
    {http::Method::Delete, "/v2/{name}/blobs/uploads/{uuid}", handle_upload_cancel, Access::Push},
    {http::Method::Get, "/v2/{name}/blobs/{digest}", handle_blob_get, Access::Pull},
    {http::Method::Delete, "/v2/{name}/blobs/{digest}", handle_blob_delete, Access::Delete},
    {http::Method::Get, "/v2/{name}/referrers/{digest}", handle_referrers, Access::Pull},
};
}  // namespace

void register_routes(http::Router& r, ApiContext& ctx) {
  for (const auto& row : kRoutes) {
    HandlerFn fn = row.fn;
    r.add(row.method, row.pattern, [&ctx, fn](const http::ExchangePtr& ex) { fn(ctx, ex); },
          static_cast<int>(row.access));
  }
}

}  // namespace outpost::api
