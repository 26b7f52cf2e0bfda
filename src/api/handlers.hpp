// Handler entry points, one function per endpoint; grouped in files by
// resource (v2_base.cpp, manifests.cpp, blobs.cpp, uploads.cpp, ...).
#pragma once
#include "api/api.hpp"
#include "http/exchange.hpp"

namespace outpost::api {

void handle_base(ApiContext& ctx, const http::ExchangePtr& ex);

}  // namespace outpost::api
