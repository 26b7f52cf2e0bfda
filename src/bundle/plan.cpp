#include "bundle/plan.hpp"

#include <nlohmann/json.hpp>
#include <unordered_map>

#include "bundle/json_text.hpp"
#include "oci/manifest.hpp"
#include "store/store.hpp"

namespace outpost::bundle {

using nlohmann::json;

Result<Platform> Platform::parse(std::string_view text) {
  Platform p;
  std::vector<std::string> parts;
  size_t start = 0;
  while (true) {
    size_t slash = text.find('/', start);
    parts.emplace_back(text.substr(start, slash == std::string_view::npos ? std::string_view::npos : slash - start));
    if (slash == std::string_view::npos) break;
    start = slash + 1;
  }
  if (parts.size() < 2 || parts.size() > 3 || parts[0].empty() || parts[1].empty() ||
      (parts.size() == 3 && parts[2].empty()))
    return Error(Errc::BadRequest, "platform \"" + std::string(text) + "\" is not os/arch[/variant] (e.g. linux/arm64)");
  p.os = parts[0];
  p.arch = parts[1];
  if (parts.size() == 3) p.variant = parts[2];
  return p;
}

std::string Platform::str() const { return os + "/" + arch + (variant.empty() ? "" : "/" + variant); }

uint64_t Plan::blob_bytes() const {
  uint64_t n = 0;
  for (const auto& b : blobs) n += b.size;
  return n;
}

namespace {

template <typename F>
Status for_each_page(F&& page_fn) {
  store::PageRequest req;
  req.n = 1000;
  for (int guard = 0; guard < 10'000'000; ++guard) {
    auto page = page_fn(req);
    if (!page) return std::move(page).error();
    if (page->items.empty()) return {};
    req.last = page->items.back();
    if (!page->has_more) return {};
  }
  return {};
}

class Walker {
 public:
  Walker(store::Store& s, const Selection& sel) : s_(s), sel_(sel) {}

  Status add_root(const std::string& repo, const std::string& tag) {
    auto info = s_.resolve_manifest(repo, tag);
    if (!info) return Error(info.error().code, repo + ":" + tag + ": " + info.error().message());
    const std::string what = repo + ":" + tag;
    if (!sel_.platforms.empty() && oci::is_index_type(info->media_type)) {
      auto filtered = filter_index(repo, what, *info);
      if (!filtered) return std::move(filtered).error();
      plan_.roots.push_back({repo, tag, filtered->digest, filtered->media_type, filtered->size});
      return {};
    }
    plan_.roots.push_back({repo, tag, info->digest, info->media_type, info->size});
    return visit(repo, what, info->digest, info->media_type, info->size);
  }

  Plan take() { return std::move(plan_); }

 private:
  bool platform_wanted(const json& p) const {
    if (!p.is_object()) return false;
    for (const auto& w : sel_.platforms) {
      if (text_or_empty(p, "os") != w.os || text_or_empty(p, "architecture") != w.arch) continue;
      if (!w.variant.empty() && text_or_empty(p, "variant") != w.variant) continue;
      return true;
    }
    return false;
  }

  /// A new index of the chosen platforms' manifests (their digests, and
  /// everything below them, unchanged), added to the plan.
  Result<PlanManifest> filter_index(const std::string& repo, const std::string& what, const store::ManifestInfo& info) {
    auto bytes = s_.read_manifest(repo, info.digest);
    if (!bytes) return std::move(bytes).error();
    json j = json::parse(*bytes, nullptr, false);
    if (!j.is_object() || !j.contains("manifests") || !j["manifests"].is_array())
      return Error(Errc::ManifestInvalid, what + ": index " + info.digest.str() + " has no manifests list");
    json kept = json::array();
    for (const auto& m : j["manifests"])
      if (m.is_object() && m.contains("platform") && platform_wanted(m["platform"])) kept.push_back(m);
    if (kept.empty()) {
      std::string want;
      for (const auto& p : sel_.platforms) want += (want.empty() ? "" : ", ") + p.str();
      return Error(Errc::NotFound, what + ": the index " + info.digest.str() + " has no manifest for " + want);
    }
    j["manifests"] = kept;
    if (!j.contains("annotations") || !j["annotations"].is_object()) j["annotations"] = json::object();
    j["annotations"][kFilteredFromAnnotation] = info.digest.str();
    PlanManifest pm;
    pm.repo = repo;
    pm.bytes = j.dump();
    pm.digest = Digest::sha256_of(*pm.bytes);
    pm.media_type = info.media_type;
    pm.size = pm.bytes->size();
    plan_.manifests.push_back(pm);
    manifests_seen_.insert(pm.digest.str());
    for (const auto& m : kept) {
      auto d = Digest::parse(text_or_empty(m, "digest"));
      if (!d) return Error(Errc::ManifestInvalid, what + ": " + d.error().message());
      auto child = s_.get_manifest(repo, *d);
      if (!child) return Error(child.error().code, what + ": child " + d->str() + ": " + child.error().message());
      OUTPOST_TRY(visit(repo, what, *d, child->media_type, child->size));
    }
    return pm;
  }

  Status visit(const std::string& repo, const std::string& what, const Digest& d, const std::string& media_type,
               uint64_t size) {
    if (!visited_.insert(repo + "@" + d.str()).second) return {};
    if (manifests_seen_.insert(d.str()).second) plan_.manifests.push_back({repo, d, media_type, size, std::nullopt});
    auto bytes = s_.read_manifest(repo, d);
    if (!bytes) return Error(bytes.error().code, what + ": manifest " + d.str() + ": " + bytes.error().message());
    auto parsed = oci::parse_manifest(*bytes, media_type);
    if (!parsed) return Error(parsed.error().code, what + ": manifest " + d.str() + ": " + parsed.error().message());
    for (const auto& r : parsed->refs) {
      if (r.is_manifest) {
        auto child = s_.get_manifest(repo, r.digest);
        if (!child)
          return Error(child.error().code, what + ": child " + r.digest.str() + " of " + d.str() + ": " +
                                               child.error().message() +
                                               " (a pull-through copy holds only the platforms pulled: give --platform)");
        OUTPOST_TRY(visit(repo, what, r.digest, child->media_type, child->size));
        continue;
      }
      if (blobs_seen_.count(r.digest.str())) continue;
      auto sz = s_.stat_blob(repo, r.digest);
      if (!sz) {
        if (!r.required) continue;  // a foreign layer (urls): never carried
        return Error(Errc::BlobUnknown, what + ": blob " + r.digest.str() + " (named by " + d.str() +
                                            ") is not held here (a pull-through copy never pulled in full?)");
      }
      blobs_seen_.insert(r.digest.str());
      if (sel_.have && sel_.have->count(r.digest.str())) {
        ++plan_.blobs_left_out;
        plan_.bytes_left_out += *sz;
        continue;
      }
      plan_.blobs.push_back({repo, r.digest, *sz});
    }
    // Referrers (signatures, SBOMs) travel with their subject.
    auto refs = s_.referrers(repo, d);
    if (!refs) return std::move(refs).error();
    for (const auto& r : refs->items) {
      if (visited_.count(repo + "@" + r.digest.str())) continue;
      plan_.roots.push_back({repo, std::nullopt, r.digest, r.media_type, r.size});
      OUTPOST_TRY(visit(repo, what, r.digest, r.media_type, r.size));
    }
    return {};
  }

  store::Store& s_;
  const Selection& sel_;
  Plan plan_;
  std::unordered_set<std::string> visited_;        ///< repo@digest
  std::unordered_set<std::string> manifests_seen_;  ///< digest
  std::unordered_set<std::string> blobs_seen_;      ///< digest
};

}  // namespace

Result<Plan> plan_selection(store::Store& s, const Selection& sel) {
  Walker w(s, sel);
  std::vector<std::string> repos;
  OUTPOST_TRY(for_each_page([&](const store::PageRequest& req) -> Result<store::Page> {
    auto p = s.catalog(req);
    if (p)
      for (const auto& r : p->items) {
        bool want = sel.repos.empty();
        for (const auto& pat : sel.repos) want = want || pat.matches_repository(r);
        if (want) repos.push_back(r);
      }
    return p;
  }));
  for (const auto& repo : repos) {
    std::vector<std::string> tags;
    OUTPOST_TRY(for_each_page([&](const store::PageRequest& req) -> Result<store::Page> {
      auto p = s.list_tags(repo, req);
      if (p)
        for (const auto& t : p->items) {
          bool want = sel.repos.empty();
          for (const auto& pat : sel.repos) want = want || pat.matches(repo, t);
          if (want) tags.push_back(t);
        }
      return p;
    }));
    for (const auto& t : tags) {
      auto st = w.add_root(repo, t);
      if (!st && !sel.skip_incomplete) return std::move(st).error();
    }
  }
  return w.take();
}

}  // namespace outpost::bundle
