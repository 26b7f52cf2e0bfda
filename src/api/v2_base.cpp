// GET /v2/: the API version check every client makes first.
#include "api/handlers.hpp"

namespace outpost::api {

void handle_base(ApiContext&, const http::ExchangePtr& ex) {
  ex->respond(200, "{}", "application/json");
}

}  // namespace outpost::api
