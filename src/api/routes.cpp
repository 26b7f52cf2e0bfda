// The route table: every OCI endpoint, its method and its handler, as data.
#include "api/api.hpp"
#include "api/handlers.hpp"

namespace outpost::api {

void register_routes(http::Router& r, ApiContext& ctx) {
  using http::Method;
  auto bind = [&ctx](void (*fn)(ApiContext&, const http::ExchangePtr&)) {
    return [&ctx, fn](const http::ExchangePtr& ex) { fn(ctx, ex); };
  };
  r.add(Method::Get, "/v2/", bind(handle_base));
  r.add(Method::Get, "/v2", bind(handle_base));
}

}  // namespace outpost::api
