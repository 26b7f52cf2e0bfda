// Reading a string member of a bundle's JSON (index.json, manifests) that a
// crafted bundle may have made a number, a list or an object.
#pragma once
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "oci/json_depth.hpp"

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

/// The parsed document, or a discarded value when it is not JSON or nests
/// deeper than oci::kMaxJsonNesting (checked first: a deep one is refused
/// without building its tree).
inline nlohmann::json parse_bounded(std::string_view text) {
  if (!oci::json_nesting_within(text)) return nlohmann::json(nlohmann::json::value_t::discarded);
  return nlohmann::json::parse(text, nullptr, false);
}

}  // namespace outpost::bundle
