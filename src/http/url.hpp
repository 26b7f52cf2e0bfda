// Absolute http(s) URLs as the upstream client needs them: scheme, host,
// port, path+query; and resolving a Location header against a base.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>

#include "base/result.hpp"

namespace outpost::http {

struct Url {
  bool tls = false;
  std::string host;       ///< without brackets for IPv6
  uint16_t port = 0;
  std::string target;     ///< path + query, starts with '/'

  static Result<Url> parse(std::string_view s);
  /// "https://host:port" — the pool key and the credential boundary.
  std::string origin() const;
  std::string str() const { return origin() + target; }
  /// Host header value (port omitted when default).
  std::string host_header() const;
  /// `location` (absolute, scheme-relative, or absolute-path) relative to this URL.
  Result<Url> resolve(std::string_view location) const;
};

}  // namespace outpost::http
