#include "base/size.hpp"
#include "app/cli_storage.hpp"

#include <uv.h>

#include <nlohmann/json.hpp>

#include "app/sync_cli.hpp"
#include "http/client.hpp"
#include "http/url.hpp"
#include "uv/loop.hpp"

namespace outpost::app {

Result<std::unique_ptr<store::Store>> open_store_offline(const Config& cfg, bool* running) {
  *running = false;
  store::StoreOptions so;
  so.max_manifest_bytes = cfg.registry.max_manifest_bytes;
  auto s = store::Store::open(cfg.storage.root, so);
  if (!s && s.error().message().find("in use by another process") != std::string::npos) {
    *running = true;
    return std::unique_ptr<store::Store>();
  }
  return s;
}

AdminAnswer admin_call(const Config& cfg, http::Method m, const std::string& path_and_query, uint64_t timeout_ms) {
  AdminAnswer out;
  const std::string base = admin_base_url(cfg);
  auto url = http::Url::parse(base + path_and_query);
  if (!url) {
    out.st = Error(Errc::ConfigInvalid, "bad admin address " + base + ": " + url.error().message());
    return out;
  }
  uv::Loop loop;
  {
    http::HttpClient client(loop.get(), nullptr);
    auto a = std::make_shared<AdminAnswer>();
    auto done = std::make_shared<bool>(false);
    http::ClientRequest req;
    req.method = m;
    req.url = *url;
    req.timeouts.connect_ms = 5'000;
    req.timeouts.first_byte_ms = timeout_ms;
    req.timeouts.progress_ms = timeout_ms;
    auto c = client.send(
        std::move(req),
        [a](const http::ClientResponse& r) {
          a->status = r.status;
          return true;
        },
        [a](std::string_view chunk) {
          if (a->body.size() + chunk.size() <= (1u << 22)) a->body.append(chunk);
        },
        [a, done](Status st) {
          a->st = std::move(st);
          *done = true;
        });
    // The request's own deadlines bound this loop.
    while (!*done) uv_run(loop.get(), UV_RUN_ONCE);
    out = *a;
  }
  return out;
}

std::string admin_error_text(const AdminAnswer& a) {
  auto j = nlohmann::json::parse(a.body, nullptr, false);
  if (j.is_object() && j.contains("errors") && j["errors"].is_array() && !j["errors"].empty()) {
    const auto& e = j["errors"][0];
    std::string out = e.value("code", std::string("ERROR"));
    if (e.contains("detail") && e["detail"].is_string()) return out + ": " + e["detail"].get<std::string>();
    if (e.contains("message") && e["message"].is_string()) return out + ": " + e["message"].get<std::string>();
    return out;
  }
  return a.body.substr(0, 200);
}


}  // namespace outpost::app
