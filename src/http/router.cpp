#include "http/router.hpp"

namespace outpost::http {

namespace {
// Fills `out` (cleared first) with the '/'-separated segments of `path`.
void split_into(std::string_view path, std::vector<std::string_view>* out) {
  out->clear();
  size_t start = 0;
  while (true) {
    size_t slash = path.find('/', start);
    if (slash == std::string_view::npos) {
      out->push_back(path.substr(start));
      return;
    }
    out->push_back(path.substr(start, slash - start));
    start = slash + 1;
  }
}

std::vector<std::string_view> split(std::string_view path) {
  std::vector<std::string_view> out;
  split_into(path, &out);
  return out;
}

bool is_param(std::string_view seg) { return seg.size() > 2 && seg.front() == '{' && seg.back() == '}'; }

void assign(RouteParams* p, std::string_view param, std::string_view value) {
  if (param == "{name}") p->name = value;
  else if (param == "{uuid}") p->uuid = value;
  else p->reference = value;  // {reference}, {digest}
}

// Matches one fixed (non-greedy) segment.
bool match_seg(std::string_view pat, std::string_view seg, RouteParams* out) {
  if (is_param(pat)) {
    if (seg.empty()) return false;
    assign(out, pat, seg);
    return true;
  }
  return pat == seg;
}
}  // namespace

void Router::add(Method m, std::string_view pattern, Handler h, int tag) {
  Route r;
  r.method = m;
  r.tag = tag;
  for (auto s : split(pattern)) r.segments.emplace_back(s);
  for (size_t i = 0; i < r.segments.size(); ++i)
    if (r.segments[i] == "{name}") r.greedy = static_cast<int>(i);
  r.handler = std::move(h);
  r.pattern = std::string(pattern);
  if (m == Method::Head) has_head_routes_ = true;
  routes_.push_back(std::move(r));
}

bool Router::match_route(const Route& r, const std::vector<std::string_view>& segs, RouteParams* out) {
  const size_t np = r.segments.size(), ns = segs.size();
  if (r.greedy < 0) {
    if (np != ns) return false;
    for (size_t i = 0; i < np; ++i)
      if (!match_seg(r.segments[i], segs[i], out)) return false;
    return true;
  }
  const size_t g = static_cast<size_t>(r.greedy);
  const size_t after = np - g - 1;
  if (ns < np) return false;
  for (size_t i = 0; i < g; ++i)
    if (!match_seg(r.segments[i], segs[i], out)) return false;
  for (size_t k = 0; k < after; ++k)
    if (!match_seg(r.segments[np - 1 - k], segs[ns - 1 - k], out)) return false;
  // The name is the run of segments between the fixed prefix and suffix.
  // Empty components ("a//b", "a/", "/a", "") are kept: the path does name
  // this endpoint, so the handler's name check answers 400 NAME_INVALID
  // rather than the router a misleading 404 (distribution does the same).
  // The segments are views into one path, so the run is one substring.
  const size_t first = g, last = ns - after;  // [first, last)
  if (first == last) {
    out->name.clear();
  } else {
    const char* begin = segs[first].data();
    const char* end = segs[last - 1].data() + segs[last - 1].size();
    out->name.assign(begin, static_cast<size_t>(end - begin));
  }
  return true;
}

Router::Match Router::match(Method m, std::string_view path) const {
  Match result;
  // Every request is routed: one scratch vector per thread keeps routing
  // free of allocations once it has grown to the deepest path seen.
  thread_local std::vector<std::string_view> segs;
  split_into(path, &segs);
  // First only the routes of the asked method: a request that names an
  // endpoint never pays for the 405 bookkeeping below.
  auto first_of = [&](Method want) {
    for (const auto& r : routes_) {
      if (r.method != want) continue;
      RouteParams p;
      if (!match_route(r, segs, &p)) continue;
      result.handler = &r.handler;
      result.params = std::move(p);
      result.pattern = r.pattern;
      result.status = 200;
      result.tag = r.tag;
      return true;
    }
    return false;
  };
  // HEAD is served by the GET handler where no HEAD route matches.
  if (m == Method::Head) {
    if ((has_head_routes_ && first_of(Method::Head)) || first_of(Method::Get)) return result;
  } else if (first_of(m)) {
    return result;
  }
  // No route of that method: 405 with Allow when the path names an
  // endpoint under other methods, else 404.
  for (const auto& r : routes_) {
    RouteParams p;
    if (!match_route(r, segs, &p)) continue;
    result.status = 405;
    auto allow = [&](std::string_view name) {
      if (result.allow.find(name) != std::string::npos) return;
      if (!result.allow.empty()) result.allow += ", ";
      result.allow += name;
    };
    allow(method_name(r.method));
    if (r.method == Method::Get) allow("HEAD");  // served by the GET handler
  }
  return result;
}

}  // namespace outpost::http
