// Method + path pattern -> handler. Patterns are data: "/v2/{name}/manifests/{reference}".
// {name} may span several segments (OCI repository names contain '/'); at most
// one such parameter per pattern, matched by fixing the segments around it;
// it may hold empty components ("a//b"), which the handler must refuse.
// Other parameters ({reference}, {digest}, {uuid}) are one non-empty segment.
#pragma once
#include <string>
#include <string_view>
#include <vector>

#include "http/exchange.hpp"
#include "http/message.hpp"

namespace outpost::http {

class Router {
 public:
  /// Registers `h` for `m` on `pattern`. Earlier registrations win on overlap.
  /// `tag` is the caller's attribute of the route (the access it needs,
  /// api::Access), handed back by match(); 0 for none.
  void add(Method m, std::string_view pattern, Handler h, int tag = 0);

  struct Match {
    const Handler* handler = nullptr;  ///< null when no route matched
    RouteParams params;
    int status = 404;                  ///< 404 (no pattern) or 405 (pattern, other method)
    std::string allow;                 ///< methods allowed on a 405, "GET, HEAD"
    int tag = 0;                       ///< the matched route's tag
    std::string_view pattern;          ///< the matched route's pattern (metrics label); empty on 404
  };
  /// HEAD falls back to the GET handler (the Exchange drops the body)
  /// when no HEAD route is registered (none is today).
  Match match(Method m, std::string_view path) const;

 private:
  struct Route {
    Method method;
    std::vector<std::string> segments;
    int greedy = -1;  ///< index of the {name} segment, -1 if none
    Handler handler;
    int tag = 0;
    std::string pattern;
  };
  static bool match_route(const Route& r, const std::vector<std::string_view>& segs, RouteParams* out);
  std::vector<Route> routes_;
  bool has_head_routes_ = false;
};

}  // namespace outpost::http
