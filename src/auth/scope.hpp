// Scope maps: repository patterns -> the actions a credential may take on
// the repositories they match (pull, push, delete), and the Docker token
// spec's resource scopes ("repository:NAME:pull,push", "registry:catalog:*").
// Value types, any thread.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.hpp"

namespace outpost::auth {

using Actions = unsigned;
constexpr Actions kPull = 1, kPush = 2, kDelete = 4, kAllActions = 7;

/// "pull,push" (in that order; "" for none).
std::string actions_str(Actions a);
/// "pull", "pull,push", "delete", "*" (all). Unknown words are refused:
/// a typo must not silently grant less (or more) than meant.
Result<Actions> parse_actions(std::string_view s);
/// Lenient form for client-requested scopes (the token spec lets clients
/// ask for actions a registry does not know, e.g. "metadata_read"): unknown
/// words are ignored, "*" means all.
Actions parse_requested_actions(std::string_view s);

/// Repository glob, the same language as sync.keep's repository part:
/// matched component by component (split on "/"); `*` and `?` stay inside
/// one component (fnmatch(3)), a component that is exactly `**` matches
/// zero or more whole components. "factory/*" matches "factory/app" only;
/// "factory/**" matches "factory", "factory/a", "factory/a/b"; "**" all.
bool glob_match(std::string_view pattern, std::string_view repo);
/// Errc::ConfigInvalid unless `pattern` is non-empty and made of valid name
/// characters plus `*` and `?`, with no empty components.
Status check_pattern(std::string_view pattern);

struct ScopeRule {
  std::string pattern;
  Actions actions = 0;
  bool operator==(const ScopeRule&) const = default;
};
/// "pattern:pull,push" (actions after the LAST ':'); a bare pattern means pull.
Result<ScopeRule> parse_rule(std::string_view s);
std::string rule_str(const ScopeRule& r);

/// Union of the actions of every rule matching `repo`.
Actions allowed(const std::vector<ScopeRule>& rules, std::string_view repo);

/// One resource scope of the token spec.
struct ResourceScope {
  std::string type;  ///< "repository" or "registry"
  std::string name;  ///< repository name, or "catalog"
  Actions actions = 0;
  bool operator==(const ResourceScope&) const = default;
};
/// "repository:NAME:ACTIONS" (NAME may hold ':' for a port-qualified name:
/// type before the first ':', actions after the last). nullopt when malformed.
std::optional<ResourceScope> parse_resource_scope(std::string_view s);
/// "repository:NAME:pull,push"; "registry:catalog:*" for the catalog.
std::string resource_scope_str(const ResourceScope& s);

}  // namespace outpost::auth
