// GET /v2/: the API version check every client makes first.
#include "api/handlers.hpp"

namespace outpost::api {

// The answer carries `Outpost-Mode: ReadWrite|ReadOnly` (issue #15): a child
// Outpost probes this endpoint and applies the hierarchy rule. The server adds
// it to every answer (app/app.cpp, a default header), so a 401 from a future
// auth layer, or an error, tells the mode as well as this 200.
void handle_base(ApiContext&, const http::ExchangePtr& ex) {
  ex->respond(200, "{}", "application/json");
}

}  // namespace outpost::api
