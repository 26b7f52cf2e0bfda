#include "bundle/inventory.hpp"

#include <algorithm>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "bundle/plan.hpp"
#include "bundle/json_text.hpp"
#include "store/store.hpp"

namespace outpost::bundle {

using nlohmann::json;

Result<Inventory> take_inventory(store::Store& s) {
  // The export walk over every repository and tag; a layer missing here
  // (a partial pull-through copy) is simply not listed.
  Selection all;
  all.skip_incomplete = true;
  auto plan = plan_selection(s, all);
  if (!plan) return std::move(plan).error();
  Inventory inv;
  std::unordered_set<std::string> m, b;
  for (const auto& x : plan->manifests) m.insert(x.digest.str());
  for (const auto& x : plan->blobs) b.insert(x.digest.str());
  inv.manifests.assign(m.begin(), m.end());
  inv.blobs.assign(b.begin(), b.end());
  std::sort(inv.manifests.begin(), inv.manifests.end());
  std::sort(inv.blobs.begin(), inv.blobs.end());
  return inv;
}

std::string inventory_json(const Inventory& inv, int64_t created_ms) {
  json j = {{"outpost_inventory", 1}, {"created_ms", created_ms}, {"manifests", inv.manifests}, {"blobs", inv.blobs}};
  return j.dump(1) + "\n";
}

Result<std::unordered_set<std::string>> parse_inventory(std::string_view text, const std::string& what) {
  json j = parse_bounded(text);
  if (!j.is_object() || !j.contains("outpost_inventory"))
    return Error(Errc::BadRequest, what + ": not an outpost inventory (run `outpost inventory -o FILE` at the receiving site)");
  std::unordered_set<std::string> out;
  for (const char* key : {"manifests", "blobs"}) {
    if (!j.contains(key)) continue;
    if (!j[key].is_array()) return Error(Errc::BadRequest, what + ": \"" + key + "\" is not a list");
    for (const auto& d : j[key]) {
      if (!d.is_string() || !Digest::parse(d.get<std::string>()))
        return Error(Errc::BadRequest, what + ": \"" + key + "\" holds something that is not a digest");
      out.insert(d.get<std::string>());
    }
  }
  return out;
}

Result<std::unordered_set<std::string>> read_inventory(const std::string& path) {
  std::ifstream f(path);
  if (!f) return Error(Errc::NotFound, path + ": cannot be read");
  std::stringstream ss;
  ss << f.rdbuf();
  return parse_inventory(ss.str(), path);
}

}  // namespace outpost::bundle
