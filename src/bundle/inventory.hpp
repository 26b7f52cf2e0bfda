// `outpost inventory`: what a site holds, as a small JSON file the sending
// site's `outpost export --have FILE` reads to leave those blobs out.
//
//   {"outpost_inventory": 1, "created_ms": ..., 
//    "manifests": ["sha256:..", ...], "blobs": ["sha256:..", ...]}
//
// "Holds" means reachable from a tag (index children, referrers, configs,
// layers) through store/store.hpp: the content GC keeps. A pull-through
// copy whose layers were never pulled lists only the layers held.
#pragma once
#include <string>
#include <unordered_set>
#include <vector>

#include "base/result.hpp"

namespace outpost::store { class Store; }

namespace outpost::bundle {

struct Inventory {
  std::vector<std::string> manifests;  ///< sorted digests
  std::vector<std::string> blobs;      ///< sorted digests
};

Result<Inventory> take_inventory(store::Store& s);
std::string inventory_json(const Inventory& inv, int64_t created_ms);
/// The digests (manifests and blobs) of an inventory file; BadRequest
/// naming the file when it is not one.
Result<std::unordered_set<std::string>> read_inventory(const std::string& path);
Result<std::unordered_set<std::string>> parse_inventory(std::string_view text, const std::string& what);

}  // namespace outpost::bundle
