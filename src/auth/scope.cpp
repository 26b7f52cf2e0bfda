#include "auth/scope.hpp"

#include <fnmatch.h>

namespace outpost::auth {

namespace {
std::vector<std::string_view> split_slash(std::string_view s) {
  std::vector<std::string_view> out;
  size_t start = 0;
  for (;;) {
    size_t p = s.find('/', start);
    if (p == std::string_view::npos) {
      out.push_back(s.substr(start));
      return out;
    }
    out.push_back(s.substr(start, p - start));
    start = p + 1;
  }
}

bool match_from(const std::vector<std::string_view>& pat, size_t i, const std::vector<std::string_view>& name,
                size_t j) {
  // Bounded: each "**" tries at most name.size() + 1 suffixes, and patterns
  // are short operator-written strings.
  if (i == pat.size()) return j == name.size();
  if (pat[i] == "**") {
    for (size_t k = j; k <= name.size(); ++k)
      if (match_from(pat, i + 1, name, k)) return true;
    return false;
  }
  if (j == name.size()) return false;
  const std::string p(pat[i]), n(name[j]);
  if (fnmatch(p.c_str(), n.c_str(), 0) != 0) return false;
  return match_from(pat, i + 1, name, j + 1);
}

bool valid_pattern_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-' || c == '*' ||
         c == '?';
}
}  // namespace

std::string actions_str(Actions a) {
  std::string s;
  auto add = [&](Actions bit, const char* w) {
    if (!(a & bit)) return;
    if (!s.empty()) s += ',';
    s += w;
  };
  add(kPull, "pull");
  add(kPush, "push");
  add(kDelete, "delete");
  return s;
}

Result<Actions> parse_actions(std::string_view s) {
  Actions a = 0;
  size_t start = 0;
  while (start <= s.size()) {
    size_t c = s.find(',', start);
    if (c == std::string_view::npos) c = s.size();
    std::string_view w = s.substr(start, c - start);
    if (w == "pull") a |= kPull;
    else if (w == "push") a |= kPush;
    else if (w == "delete") a |= kDelete;
    else if (w == "*") a |= kAllActions;
    else return Error(Errc::ConfigInvalid, "unknown action \"" + std::string(w) + "\" (pull, push, delete or *)");
    start = c + 1;
  }
  return a;
}

Actions parse_requested_actions(std::string_view s) {
  Actions a = 0;
  size_t start = 0;
  while (start <= s.size()) {
    size_t c = s.find(',', start);
    if (c == std::string_view::npos) c = s.size();
    std::string_view w = s.substr(start, c - start);
    if (w == "pull") a |= kPull;
    else if (w == "push") a |= kPush;
    else if (w == "delete") a |= kDelete;
    else if (w == "*") a |= kAllActions;
    start = c + 1;
  }
  return a;
}

bool glob_match(std::string_view pattern, std::string_view repo) {
  return match_from(split_slash(pattern), 0, split_slash(repo), 0);
}

Status check_pattern(std::string_view pattern) {
  if (pattern.empty()) return Error(Errc::ConfigInvalid, "empty repository pattern");
  for (auto comp : split_slash(pattern)) {
    if (comp.empty())
      return Error(Errc::ConfigInvalid, "repository pattern \"" + std::string(pattern) + "\" has an empty component");
    for (char c : comp)
      if (!valid_pattern_char(c))
        return Error(Errc::ConfigInvalid, "repository pattern \"" + std::string(pattern) +
                                              "\" holds '" + std::string(1, c) +
                                              "' (lowercase letters, digits, . _ - and the globs * ? **)");
  }
  return {};
}

Result<ScopeRule> parse_rule(std::string_view s) {
  ScopeRule r;
  size_t colon = s.rfind(':');
  if (colon == std::string_view::npos) {
    r.pattern = std::string(s);
    r.actions = kPull;
  } else {
    r.pattern = std::string(s.substr(0, colon));
    auto a = parse_actions(s.substr(colon + 1));
    if (!a) return Error(Errc::ConfigInvalid, "scope \"" + std::string(s) + "\": " + a.error().detail);
    r.actions = *a;
  }
  if (auto st = check_pattern(r.pattern); !st) return Error(Errc::ConfigInvalid, "scope \"" + std::string(s) + "\": " + st.error().detail);
  return r;
}

std::string rule_str(const ScopeRule& r) { return r.pattern + ":" + actions_str(r.actions); }

Actions allowed(const std::vector<ScopeRule>& rules, std::string_view repo) {
  Actions a = 0;
  for (const auto& r : rules)
    if ((a | r.actions) != a && glob_match(r.pattern, repo)) a |= r.actions;
  return a;
}

std::optional<ResourceScope> parse_resource_scope(std::string_view s) {
  size_t first = s.find(':'), last = s.rfind(':');
  if (first == std::string_view::npos || first == last) return std::nullopt;
  ResourceScope r;
  r.type = std::string(s.substr(0, first));
  r.name = std::string(s.substr(first + 1, last - first - 1));
  if (r.name.empty() || (r.type != "repository" && r.type != "registry")) return std::nullopt;
  r.actions = parse_requested_actions(s.substr(last + 1));
  return r;
}

std::string resource_scope_str(const ResourceScope& s) {
  if (s.type == "registry") return s.type + ":" + s.name + ":*";
  return s.type + ":" + s.name + ":" + actions_str(s.actions);
}

}  // namespace outpost::auth
