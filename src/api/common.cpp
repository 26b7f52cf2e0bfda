#include "api/common.hpp"

#include <charconv>

#include "base/reference.hpp"
#include "cache/pull_through.hpp"

namespace outpost::api {

bool check_name(const http::ExchangePtr& ex) {
  if (valid_repository_name(ex->params().name)) return true;
  ex->respond_error(Errc::NameInvalid, "invalid repository name '" + ex->params().name + "'");
  return false;
}

std::optional<Digest> digest_param(const http::ExchangePtr& ex, const std::string& s) {
  auto d = Digest::parse(s);
  if (d) return *d;
  ex->respond_error(Errc::DigestInvalid, d.error().message());
  return std::nullopt;
}

bool check_writable(ApiContext& ctx, const http::ExchangePtr& ex) {
  if (!ctx.options.read_only) return true;
  ex->respond_error(Errc::Unsupported, "this registry is ReadOnly: pushes and deletes are not accepted");
  return false;
}

std::optional<store::PageRequest> page_param(const http::ExchangePtr& ex) {
  store::PageRequest p;
  if (auto n = ex->req().query_param("n")) {
    uint64_t v = 0;
    auto [ptr, ec] = std::from_chars(n->data(), n->data() + n->size(), v);
    if (n->empty() || ec != std::errc() || ptr != n->data() + n->size() || v > 100000) {
      ex->respond_error(Errc::PaginationInvalid, "n must be an integer from 0 to 100000");
      return std::nullopt;
    }
    p.n = v;
  }
  if (auto last = ex->req().query_param("last")) p.last = *last;
  return p;
}

void add_next_link(const http::ExchangePtr& ex, const std::string& path, const store::PageRequest& page,
                   const std::string& last, std::string extra_query) {
  std::string q = "<" + path + "?";
  if (page.n) q += "n=" + std::to_string(*page.n) + "&";
  q += "last=" + http::percent_encode(last);
  if (!extra_query.empty()) q += "&" + extra_query;
  q += ">; rel=\"next\"";
  ex->add_header("Link", std::move(q));
}

std::optional<cache::Route> pull_route(ApiContext& ctx, const http::ExchangePtr& ex) {
  if (!ctx.pull) return std::nullopt;
  return ctx.pull->route(ex->params().name, ex->req().query_param("ns"));
}

std::string local_repo(const std::optional<cache::Route>& route, const http::ExchangePtr& ex) {
  return route ? route->local_repo : ex->params().name;
}

void read_body(const http::ExchangePtr& ex, BodyChunkFn on_data, BodyEndFn on_end) {
  // The connection holds the exchange while it delivers body events.
  std::weak_ptr<http::Exchange> w = ex;
  ex->read_body(
      [w, on_data = std::move(on_data)](std::string_view chunk) {
        if (auto e = w.lock()) on_data(e, chunk);
      },
      [w, on_end = std::move(on_end)](Status s) {
        if (auto e = w.lock()) on_end(e, std::move(s));
      });
}

std::string blob_location(const std::string& name, const Digest& d) { return "/v2/" + name + "/blobs/" + d.str(); }
std::string manifest_location(const std::string& name, const Digest& d) {
  return "/v2/" + name + "/manifests/" + d.str();
}
std::string upload_location(const std::string& name, const std::string& id) {
  return "/v2/" + name + "/blobs/uploads/" + id;
}
std::string upload_range(uint64_t offset) { return "0-" + std::to_string(offset == 0 ? 0 : offset - 1); }

}  // namespace outpost::api
