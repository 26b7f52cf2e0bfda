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
};
constexpr RouteRow kRoutes[] = {
    {http::Method::Get, "/v2/", handle_base},
    {http::Method::Get, "/v2", handle_base},
    {http::Method::Get, "/v2/_catalog", handle_catalog},
    {http::Method::Get, "/v2/{name}/tags/list", handle_tags_list},
    {http::Method::Get, "/v2/{name}/manifests/{reference}", handle_manifest_get},
    {http::Method::Put, "/v2/{name}/manifests/{reference}", handle_manifest_put},
    {http::Method::Delete, "/v2/{name}/manifests/{reference}", handle_manifest_delete},
    {http::Method::Post, "/v2/{name}/blobs/uploads/", handle_upload_start},
    {http::Method::Get, "/v2/{name}/blobs/uploads/{uuid}", handle_upload_status},
    {http::Method::Patch, "/v2/{name}/blobs/uploads/{uuid}", handle_upload_patch},
    {http::Method::Put, "/v2/{name}/blobs/uploads/{uuid}", handle_upload_put},
    {http::Method::Delete, "/v2/{name}/blobs/uploads/{uuid}", handle_upload_cancel},
    {http::Method::Get, "/v2/{name}/blobs/{digest}", handle_blob_get},
    {http::Method::Delete, "/v2/{name}/blobs/{digest}", handle_blob_delete},
    {http::Method::Get, "/v2/{name}/referrers/{digest}", handle_referrers},
};
}  // namespace

void register_routes(http::Router& r, ApiContext& ctx) {
  for (const auto& row : kRoutes) {
    HandlerFn fn = row.fn;
    r.add(row.method, row.pattern, [&ctx, fn](const http::ExchangePtr& ex) { fn(ctx, ex); });
  }
}

}  // namespace outpost::api
