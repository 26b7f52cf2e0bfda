// Reading a string member of a bundle's JSON (index.json, manifests) that a
// crafted bundle may have made a number, a list or an object.
#pragma once
#include <nlohmann/json.hpp>
#include <string>

namespace outpost::bundle {

/// `o[key]` when `o` is an object and that member is a string, else "".
/// nlohmann's value(key, "") throws type_error for a member of another type,
/// which ended the process: `outpost import` and the server's import route
/// alike ("digest": 12345 in index.json).
inline std::string text_or_empty(const nlohmann::json& o, const char* key) {
  if (!o.is_object()) return {};
  auto it = o.find(key);
  return it != o.end() && it->is_string() ? it->get<std::string>() : std::string();
}

}  // namespace outpost::bundle
