// Handler entry points, one function per endpoint; grouped in files by
// resource (v2_base.cpp, manifests.cpp, blobs.cpp, uploads.cpp, listing.cpp).
#pragma once
#include "api/api.hpp"
#include "http/exchange.hpp"

namespace outpost::api {

void handle_base(ApiContext& ctx, const http::ExchangePtr& ex);

void handle_manifest_get(ApiContext& ctx, const http::ExchangePtr& ex);  // also HEAD
void handle_manifest_put(ApiContext& ctx, const http::ExchangePtr& ex);
void handle_manifest_delete(ApiContext& ctx, const http::ExchangePtr& ex);

void handle_blob_get(ApiContext& ctx, const http::ExchangePtr& ex);  // also HEAD
void handle_blob_delete(ApiContext& ctx, const http::ExchangePtr& ex);

void handle_upload_start(ApiContext& ctx, const http::ExchangePtr& ex);
void handle_upload_patch(ApiContext& ctx, const http::ExchangePtr& ex);
void handle_upload_put(ApiContext& ctx, const http::ExchangePtr& ex);
void handle_upload_status(ApiContext& ctx, const http::ExchangePtr& ex);
void handle_upload_cancel(ApiContext& ctx, const http::ExchangePtr& ex);

void handle_tags_list(ApiContext& ctx, const http::ExchangePtr& ex);
void handle_catalog(ApiContext& ctx, const http::ExchangePtr& ex);
void handle_referrers(ApiContext& ctx, const http::ExchangePtr& ex);

}  // namespace outpost::api
