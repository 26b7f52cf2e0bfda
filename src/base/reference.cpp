// Hand-written matchers for distribution-spec v1.1 "Pulling manifests" name
// and tag grammars. A name that passes has no "..", no empty component, no
// leading '/', nothing but [a-z0-9._/-]: safe as a relative path.
#include "base/reference.hpp"

#include <cstddef>

namespace outpost {

namespace {

constexpr size_t kMaxNameLen = 255;
constexpr size_t kMaxTagLen = 128;

bool is_lower_alnum(char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); }

// path-component ::= [a-z0-9]+ ((\.|_|__|-+)[a-z0-9]+)*
bool valid_component(std::string_view c) {
  size_t i = 0;
  const size_t n = c.size();
  if (n == 0 || !is_lower_alnum(c[0])) return false;
  while (i < n) {
    while (i < n && is_lower_alnum(c[i])) ++i;  // an alnum run
    if (i == n) return true;
    // A separator: ".", "_", "__" or one or more "-".
    if (c[i] == '.') {
      ++i;
    } else if (c[i] == '_') {
      ++i;
      if (i < n && c[i] == '_') ++i;
    } else if (c[i] == '-') {
      while (i < n && c[i] == '-') ++i;
    } else {
      return false;
    }
    // Every separator must be followed by an alnum run.
    if (i == n || !is_lower_alnum(c[i])) return false;
  }
  return true;
}

}  // namespace

bool valid_repository_name(std::string_view name) {
  if (name.empty() || name.size() > kMaxNameLen) return false;
  size_t start = 0;
  for (;;) {
    size_t slash = name.find('/', start);
    std::string_view comp =
        name.substr(start, slash == std::string_view::npos ? std::string_view::npos : slash - start);
    if (!valid_component(comp)) return false;  // also catches "a//b", "/a", "a/"
    if (slash == std::string_view::npos) return true;
    start = slash + 1;
  }
}

bool valid_tag(std::string_view tag) {
  if (tag.empty() || tag.size() > kMaxTagLen) return false;
  auto word = [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
  };
  if (!word(tag[0])) return false;  // no leading '.' or '-'
  for (size_t i = 1; i < tag.size(); ++i) {
    if (!word(tag[i]) && tag[i] != '.' && tag[i] != '-') return false;
  }
  return true;
}

}  // namespace outpost
