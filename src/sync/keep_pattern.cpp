// sync.keep pattern parsing and matching (fnmatch(3) per path component, plus
// whole-component "**"). Validation reuses the distribution-spec grammars in
// base/reference so a pattern can only ever name valid repositories and tags.
#include "sync/keep_pattern.hpp"

#include <fnmatch.h>

#include <algorithm>
#include <utility>

#include "base/reference.hpp"

namespace outpost::sync {

namespace {

std::string quoted(std::string_view s) {
  std::string out = "\"";
  out += s;
  out += '"';
  return out;
}

bool has_glob(std::string_view s) { return s.find_first_of("*?") != std::string_view::npos; }

bool glob_name_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-' || c == '*' ||
         c == '?';
}

bool glob_tag_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
         c == '-' || c == '*' || c == '?';
}

std::vector<std::string_view> split(std::string_view s) {
  std::vector<std::string_view> out;
  size_t start = 0;
  for (;;) {
    size_t slash = s.find('/', start);
    out.push_back(s.substr(start, slash == std::string_view::npos ? std::string_view::npos : slash - start));
    if (slash == std::string_view::npos) return out;
    start = slash + 1;
  }
}

bool fn(const std::string& pattern, std::string_view text) {
  const std::string t(text);  // fnmatch wants NUL-terminated strings
  return fnmatch(pattern.c_str(), t.c_str(), 0) == 0;
}

/// Components p[i..] against n[j..]; "**" takes zero or more components.
/// Recursion depth is bounded by the component counts (a name has at most
/// 128 components of 255 characters).
bool match_components(const std::vector<std::string>& p, size_t i, const std::vector<std::string_view>& n,
                      size_t j) {
  for (; i < p.size(); ++i, ++j) {
    if (p[i] == "**") {
      for (size_t k = j; k <= n.size(); ++k) {
        if (match_components(p, i + 1, n, k)) return true;
      }
      return false;
    }
    if (j >= n.size() || !fn(p[i], n[j])) return false;
  }
  return j == n.size();
}

constexpr std::string_view kNameRule =
    "lowercase letters and digits, separated by \".\", \"_\", \"__\" or \"-\"; globs \"*\", \"?\", \"**\"";

}  // namespace

Result<KeepPattern> KeepPattern::parse(std::string_view text) {
  auto bad = [&](std::string why) { return Error(Errc::ConfigInvalid, quoted(text) + ": " + why); };
  if (text.empty()) return bad("is empty");
  if (text.find('@') != std::string_view::npos)
    return bad("digests are not patterns; give a repository and an optional tag glob");
  KeepPattern k;
  k.text_ = std::string(text);
  const size_t colon = text.find(':');
  std::string_view repo = text.substr(0, colon);
  std::string_view tag = colon == std::string_view::npos ? std::string_view("*") : text.substr(colon + 1);

  if (repo.empty()) return bad("the repository part is empty");
  if (repo.size() > 255) return bad("the repository part is longer than 255 characters");
  for (std::string_view comp : split(repo)) {
    if (comp.empty()) return bad("the repository part has an empty path component");
    if (comp == "**") continue;
    const bool ok = has_glob(comp) ? std::all_of(comp.begin(), comp.end(), glob_name_char)
                                   : valid_repository_name(comp);
    if (!ok) return bad("repository part " + quoted(comp) + " is not a valid name component (" + std::string(kNameRule) + ")");
  }
  for (std::string_view comp : split(repo)) k.components_.emplace_back(comp);

  if (tag.empty()) return bad("the tag part after \":\" is empty (leave out \":\" for every tag)");
  if (tag.size() > 128) return bad("the tag part is longer than 128 characters");
  const bool tag_ok = has_glob(tag) ? std::all_of(tag.begin(), tag.end(), glob_tag_char) : valid_tag(tag);
  if (!tag_ok) {
    return bad("tag part " + quoted(tag) +
               " is not a valid tag glob (letters, digits, \".\", \"_\", \"-\", not starting with \".\" or "
               "\"-\"; globs \"*\", \"?\")");
  }
  k.repo_glob_ = std::string(repo);
  k.tag_glob_ = std::string(tag);
  k.literal_repo_ = !has_glob(repo);
  return k;
}

bool KeepPattern::matches_repository(std::string_view repo) const {
  if (literal_repo_) return repo == repo_glob_;
  return match_components(components_, 0, split(repo), 0);
}

bool KeepPattern::matches_tag(std::string_view tag) const {
  if (tag_glob_ == "*") return true;
  return fn(tag_glob_, tag);
}

Result<std::vector<KeepPattern>> parse_keep_patterns(const std::vector<std::string>& texts) {
  std::vector<KeepPattern> out;
  out.reserve(texts.size());
  for (const std::string& t : texts) {
    auto k = KeepPattern::parse(t);
    if (!k) return std::move(k).error();
    out.push_back(std::move(*k));
  }
  return out;
}

}  // namespace outpost::sync
