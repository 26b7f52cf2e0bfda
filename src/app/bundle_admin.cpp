#include "app/bundle_admin.hpp"

#include <filesystem>
#include <memory>

#include "api/common.hpp"
#include "app/bundle_cli.hpp"
#include "app/config.hpp"
#include "app/ops.hpp"
#include "bundle/inventory.hpp"
#include "http/router.hpp"
#include "storesvc/store_service.hpp"

namespace outpost::app {

namespace {

constexpr size_t kMaxRequest = 1 << 20;

/// Reads the JSON request body (bounded), then runs `job` on the pool.
void with_body(const http::ExchangePtr& ex, storesvc::StoreService* svc,
               std::function<Result<std::string>(store::Store&, const std::string&)> job) {
  auto body = std::make_shared<std::string>();
  api::read_body(
      ex,
      [body](const http::ExchangePtr& ex, std::string_view chunk) {
        if (ex->responded()) return;
        if (body->size() + chunk.size() > kMaxRequest) return ex->respond_error(Errc::BodyTooLarge, "request too large");
        body->append(chunk);
      },
      [body, svc, job](const http::ExchangePtr& ex, Status st) {
        if (ex->responded()) return;
        if (!st) return ex->respond_error(st.error());
        // One pool thread for the whole bundle: blocking reads, hashing and
        // fsyncs never touch the loop (issue #19).
        svc->run<std::string>([body, job](store::Store& s) { return job(s, *body); },
                              [ex](Result<std::string> r) {
                                if (!r) return ex->respond_error(r.error());
                                ex->respond(200, std::move(*r), "application/json");
                              });
      });
}

/// Whether `path` (absolute) is `dir` or below it, after resolving what
/// exists of it (symlinks, "..").
bool inside(const std::string& path, const std::string& dir) {
  std::error_code ec;
  auto canon = [&](const std::string& p) {
    auto c = std::filesystem::weakly_canonical(p, ec);
    return ec ? std::filesystem::path(p).lexically_normal() : c;
  };
  const auto d = canon(dir), p = canon(path);
  auto dit = d.begin(), pit = p.begin();
  for (; dit != d.end(); ++dit, ++pit) {
    if (dit->empty() && std::next(dit) == d.end()) break;  // trailing "/"
    if (pit == p.end() || *dit != *pit) return false;
  }
  return true;
}

bool loopback_only(const http::ExchangePtr& ex) {
  if (is_loopback_peer(ex->req().peer)) return true;
  ex->respond_error(Errc::Denied, "/outpost/bundle/ is accepted from loopback clients only");
  return false;
}

}  // namespace

void register_bundle_routes(http::Router& r, storesvc::StoreService& store, const Config& cfg) {
  const Config* config = &cfg;
  storesvc::StoreService* svc = &store;
  r.add(http::Method::Post, "/outpost/bundle/export", [svc](const http::ExchangePtr& ex) {
    if (!loopback_only(ex)) return;
    with_body(ex, svc, [](store::Store& s, const std::string& body) -> Result<std::string> {
      auto req = export_request_from_json(body);
      if (!req) return std::move(req).error();
      // The server writes with its own rights: never over its own store.
      if (inside(req->output, s.layout().root()))
        return Error(Errc::Denied, "the output " + req->output + " is inside the storage root");
      auto rep = run_export(s, *req, {});
      if (!rep) return std::move(rep).error();
      return bundle::report_json(*rep);
    });
  });
  r.add(http::Method::Post, "/outpost/bundle/import", [svc, config](const http::ExchangePtr& ex) {
    if (!loopback_only(ex)) return;
    const uint64_t max_manifest = config->registry.max_manifest_bytes;  // read on the loop
    with_body(ex, svc, [max_manifest](store::Store& s, const std::string& body) -> Result<std::string> {
      auto req = import_request_from_json(body);
      if (!req) return std::move(req).error();
      auto rep = run_import(s, *req, {}, max_manifest);
      if (!rep) return std::move(rep).error();
      return bundle::report_json(*rep);
    });
  });
  r.add(http::Method::Get, "/outpost/bundle/inventory", [svc](const http::ExchangePtr& ex) {
    if (!loopback_only(ex)) return;
    svc->run<std::string>(
        [](store::Store& s) -> Result<std::string> {
          auto inv = bundle::take_inventory(s);
          if (!inv) return std::move(inv).error();
          return bundle::inventory_json(*inv, store::system_clock_ms());
        },
        [ex](Result<std::string> r) {
          if (!r) return ex->respond_error(r.error());
          ex->respond(200, std::move(*r), "application/json");
        });
  });
}

}  // namespace outpost::app
