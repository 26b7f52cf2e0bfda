// GET /outpost/: the status document as one HTML page (issue #17) for a
// site operator with a browser: inline CSS, no script, no external asset,
// refreshes itself every 10 s. Every value shown is HTML-escaped. Values the
// tests compare with /outpost/status carry an id ("mode", "queue-pending").
#pragma once
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <string_view>

namespace outpost::app {

class RequestLog;

/// `status` is the /outpost/status document (ops.cpp status_json); keys it
/// lacks show "n/a". `log` (may be null) gives the recent pulls and pushes.
/// `recent_hidden`: the recent pulls and pushes are left out (access
/// control is on and the reader is not on the registry's host).
std::string status_page_html(const nlohmann::json& status, const RequestLog* log, bool recent_hidden = false);

/// &, <, >, " and ' as character references.
std::string html_escape(std::string_view s);

}  // namespace outpost::app
