// sync.keep patterns: which repositories and tags a site keeps (prefetches
// in every window and pins). Parsing and matching only; listing tags at the
// parent and pulling them belong to the Keeper (keeper.hpp).
#pragma once
#include <string>
#include <string_view>
#include <vector>

#include "base/result.hpp"

namespace outpost::sync {

/// "repo-glob[:tag-glob]", e.g. "factory/*:v*", "base/alpine:3.*",
/// "site/**" (no ":" means every tag).
///
/// Repository glob, matched component by component (split on "/"):
///  - `*` matches any run of characters within ONE component, `?` one
///    character: "factory/*" matches "factory/app", not "factory/a/b";
///  - a component that is exactly `**` matches zero or more whole
///    components: "factory/**" matches "factory", "factory/a" and
///    "factory/a/b".
///  - Every other character must be one a repository name may hold
///    (lowercase letters, digits, ".", "_", "-"); components are not empty.
/// Tag glob: `*` matches any run of characters (tags hold no "/"), `?` one;
/// other characters must be valid in a tag ([A-Za-z0-9._-]).
/// Matching uses fnmatch(3) per component. A value type.
class KeepPattern {
 public:
  /// Errc::ConfigInvalid naming the part at fault, e.g.
  /// "\"Factory/*:v*\": repository part \"Factory\" is not a valid name component (...)".
  static Result<KeepPattern> parse(std::string_view text);

  bool matches_repository(std::string_view repo) const;
  bool matches_tag(std::string_view tag) const;
  bool matches(std::string_view repo, std::string_view tag) const {
    return matches_repository(repo) && matches_tag(tag);
  }

  /// True when the repository part has no glob: the Keeper can list its
  /// tags directly instead of walking the parent's catalog.
  bool is_literal_repository() const { return literal_repo_; }

  const std::string& text() const { return text_; }
  const std::string& repository_glob() const { return repo_glob_; }
  const std::string& tag_glob() const { return tag_glob_; }  ///< "*" when the pattern had no ":"

 private:
  std::string text_;
  std::string repo_glob_;
  std::string tag_glob_;
  std::vector<std::string> components_;
  bool literal_repo_ = false;
};

/// Parses every entry (e.g. Config::sync.keep); the first bad one fails.
Result<std::vector<KeepPattern>> parse_keep_patterns(const std::vector<std::string>& texts);

}  // namespace outpost::sync
