// Grammars of distribution-spec v1.1 for repository names and tags,
// hand-written matchers (no regex engine on the request path). Anything that
// passes here is safe to put in a filesystem path or SQL parameter.
#pragma once
#include <string_view>

namespace outpost {

/// <name>: path-component ("/" path-component)*, where path-component is
/// [a-z0-9]+ ((\.|_|__|-+)[a-z0-9]+)*, total length at most 255.
bool valid_repository_name(std::string_view name);

/// <tag>: [a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}
bool valid_tag(std::string_view tag);

/// True when `ref` looks like a digest ("alg:..."), i.e. contains ':'.
inline bool looks_like_digest(std::string_view ref) { return ref.find(':') != std::string_view::npos; }

}  // namespace outpost
