// Listing endpoints with n/last pagination: tags, _catalog, referrers
// (distribution-spec "Listing Tags", "Listing Referrers"; _catalog is the
// Docker registry extension every client tool still uses).
#include <algorithm>
#include <nlohmann/json.hpp>

#include "api/common.hpp"
#include "api/handlers.hpp"
#include "oci/manifest.hpp"

namespace outpost::api {

using nlohmann::json;

void handle_tags_list(ApiContext& ctx, const http::ExchangePtr& ex) {
  if (!check_name(ex)) return;
  auto page = page_param(ex);
  if (!page) return;
  const std::string name = ex->params().name;
  ctx.store->run<store::Page>(
      [name, p = *page](store::Store& s) { return s.list_tags(name, p); },
      [ex, name, p = *page](Result<store::Page> r) {
        if (!r) {
          if (r.error().code == Errc::NameUnknown)
            return ex->respond_error(Errc::NameUnknown, "repository '" + name + "' is not known");
          return ex->respond_error(r.error());
        }
        json j = {{"name", name}, {"tags", r->items}};
        if (r->has_more && !r->items.empty())
          add_next_link(ex, "/v2/" + name + "/tags/list", p, r->items.back());
        ex->respond(200, j.dump(), "application/json");
      });
}

void handle_catalog(ApiContext& ctx, const http::ExchangePtr& ex) {
  auto page = page_param(ex);
  if (!page) return;
  // With access control the page holds only readable repositories: the
  // job reads on past hidden ones (bounded by the catalog's size) so a page
  // is full unless the catalog ends, and no hidden name is ever sent.
  ctx.store->run<store::Page>(
      [p = *page, may_read = ex->params().may_read](store::Store& s) -> Result<store::Page> {
        if (!may_read) return s.catalog(p);
        const uint64_t want = p.n.value_or(100);
        store::Page out;
        store::PageRequest q = p;
        q.n = std::max<uint64_t>(want, 100);
        for (;;) {
          auto r = s.catalog(q);
          if (!r) return r;
          for (const auto& name : r->items) {
            if (!may_read(name)) continue;
            if (out.items.size() == want) {
              out.has_more = true;
              return out;
            }
            out.items.push_back(name);
          }
          if (!r->has_more || r->items.empty()) return out;
          q.last = r->items.back();
        }
      },
      [ex, p = *page](Result<store::Page> r) {
        if (!r) return ex->respond_error(r.error());
        json j = {{"repositories", r->items}};
        if (r->has_more && !r->items.empty()) add_next_link(ex, "/v2/_catalog", p, r->items.back());
        ex->respond(200, j.dump(), "application/json");
      });
}

void handle_referrers(ApiContext& ctx, const http::ExchangePtr& ex) {
  if (!check_name(ex)) return;
  auto subject = digest_param(ex, ex->params().reference);
  if (!subject) return;
  auto page = page_param(ex);
  if (!page) return;
  std::optional<std::string> artifact_type = ex->req().query_param("artifactType");
  if (artifact_type && artifact_type->empty()) artifact_type.reset();
  const std::string name = ex->params().name;
  ctx.store->run<store::ReferrerPage>(
      [name, s = *subject, artifact_type, p = *page](store::Store& st) {
        return st.referrers(name, s, artifact_type, p);
      },
      [ex, name, subject = *subject, artifact_type, p = *page](Result<store::ReferrerPage> r) {
        // An unknown subject or repository has no referrers: an empty index, not 404.
        store::ReferrerPage empty;
        if (!r && r.error().code != Errc::NameUnknown) return ex->respond_error(r.error());
        const store::ReferrerPage& page = r ? *r : empty;
        json manifests = json::array();
        for (const auto& ref : page.items) {
          json d = {{"mediaType", ref.media_type}, {"digest", ref.digest.str()}, {"size", ref.size}};
          if (ref.artifact_type) d["artifactType"] = *ref.artifact_type;
          if (ref.annotations) {
            json a = json::parse(*ref.annotations, nullptr, false);
            if (!a.is_discarded()) d["annotations"] = std::move(a);
          }
          manifests.push_back(std::move(d));
        }
        json j = {{"schemaVersion", 2}, {"mediaType", std::string(oci::kOciIndex)}, {"manifests", std::move(manifests)}};
        if (artifact_type) ex->add_header("OCI-Filters-Applied", "artifactType");
        if (page.has_more && !page.items.empty())
          add_next_link(ex, "/v2/" + name + "/referrers/" + subject.str(), p, page.items.back().digest.str(),
                        artifact_type ? "artifactType=" + http::percent_encode(*artifact_type) : "");
        ex->respond(200, j.dump(), oci::kOciIndex);
      });
}

}  // namespace outpost::api
