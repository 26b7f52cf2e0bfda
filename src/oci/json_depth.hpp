// A bound on JSON nesting, checked on the text before nlohmann parses it.
//
// Why: nlohmann builds the whole tree, about 40 bytes and an allocation per
// level. A 4 MiB manifest of nothing but '[' (4 MiB is under the default
// registry.max_manifest_bytes) took 3.8 s and 170 MB to refuse; a 16 KB
// bundle's index.json, 700 MB. Real manifests, indexes and configs nest a
// handful of levels.
#pragma once
#include <string_view>

namespace outpost::oci {

inline constexpr int kMaxJsonNesting = 64;

/// False when `text` opens more than `max_depth` arrays/objects at once
/// (outside strings). Says nothing else about validity: the parser decides.
inline bool json_nesting_within(std::string_view text, int max_depth = kMaxJsonNesting) {
  int depth = 0;
  bool in_string = false, escaped = false;
  for (char ch : text) {
    if (in_string) {
      if (escaped) escaped = false;
      else if (ch == '\\') escaped = true;
      else if (ch == '"') in_string = false;
      continue;
    }
    if (ch == '"') in_string = true;
    else if (ch == '[' || ch == '{') {
      if (++depth > max_depth) return false;
    } else if (ch == ']' || ch == '}') --depth;
  }
  return true;
}

}  // namespace outpost::oci
