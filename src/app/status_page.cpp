#include "app/status_page.hpp"

#include <cstdio>
#include <nlohmann/json.hpp>

#include "app/request_log.hpp"
#include "app/status_text.hpp"
#include "base/size.hpp"
#include "sync/sync_service.hpp"

namespace outpost::app {

using nlohmann::json;

std::string html_escape(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&#39;"; break;
      default: out += c;
    }
  }
  return out;
}

namespace {

using status_text::is_count;
using status_text::kNa;

/// The JSON value at a "/"-separated path as plain text, "n/a" when absent or null.
std::string text_at(const json& j, const char* pointer) {
  return status_text::text_at(j, pointer, status_text::Fraction::Plain);
}

std::string human_bytes(const json& j, const char* pointer) {
  const json::json_pointer p(pointer);
  if (!j.contains(p) || !is_count(j.at(p))) return "";
  return " (" + human_size(j.at(p).get<uint64_t>()) + ")";
}

/// One table row whose value carries `id`; `extra` is trusted markup-free text.
void row(std::string& out, const char* label, const char* id, const std::string& value, const std::string& extra = "") {
  out += "<tr><th>";
  out += label;
  out += "</th><td><span id=\"";
  out += id;
  out += "\">";
  out += html_escape(value);
  out += "</span>";
  out += html_escape(extra);
  out += "</td></tr>\n";
}

const char* state_class(const std::string& s) {
  if (s == "online" || s.starts_with("none")) return "ok";
  if (s == "degraded") return "warn";
  return "bad";
}

std::string time_of(uint64_t ms) { return sync::iso_time(static_cast<int64_t>(ms)); }

}  // namespace

std::string status_page_html(const json& st, const RequestLog* log, bool recent_hidden) {
  std::string out;
  out.reserve(16 * 1024);
  const std::string name = text_at(st, "/name");
  out += "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n"
         "<meta http-equiv=\"refresh\" content=\"10\">\n"
         "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<title>";
  out += html_escape(name);
  out += " - Outpost status</title>\n<style>\n"
         "body{font-family:system-ui,sans-serif;margin:1.5em;color:#222;background:#fafafa}\n"
         "h1{font-size:1.4em;margin:0 0 .2em}h2{font-size:1.1em;margin:1.4em 0 .4em}\n"
         "table{border-collapse:collapse;margin-bottom:.5em}\n"
         "th,td{text-align:left;padding:.2em .8em .2em 0;vertical-align:top;border-bottom:1px solid #e4e4e4}\n"
         "th{font-weight:600;color:#555}td{font-family:ui-monospace,monospace;font-size:.95em;overflow-wrap:anywhere}\n"
         "#recent td:first-child{white-space:nowrap}#recent{max-width:100%}\n"
         ".ok{color:#17702e;font-weight:bold}.warn{color:#9a6700;font-weight:bold}.bad{color:#b42318;font-weight:bold}\n"
         ".grid{display:flex;flex-wrap:wrap;gap:0 3em}.muted{color:#777}\n"
         "</style></head><body>\n<h1>";
  out += html_escape(name);
  out += "</h1>\n<p class=\"muted\">Outpost <span id=\"version\">" + html_escape(text_at(st, "/version")) +
         "</span>, up <span id=\"uptime\">" + html_escape(text_at(st, "/uptime_seconds")) +
         "</span> s since <span id=\"started\">" + html_escape(text_at(st, "/started")) +
         "</span>. This page refreshes every 10 s.</p>\n";

  // The parent link: the first upstream is the parent when one is configured.
  json parent = json::object();
  if (st.contains("upstreams") && st["upstreams"].is_array() && !st["upstreams"].empty())
    parent = st["upstreams"][0];

  out += "<div class=\"grid\"><div>\n<h2>Registry</h2><table>\n";
  row(out, "Mode", "mode", text_at(st, "/mode"));
  row(out, "Ready", "ready", text_at(st, "/ready"));
  row(out, "Log level", "log-level", text_at(st, "/log_level"));
  row(out, "Open connections", "connections", text_at(st, "/connections"));
  row(out, "Requests", "requests", text_at(st, "/requests"));
  out += "</table>\n<h2>Parent link</h2><table>\n";
  const std::string link_state = parent.empty() ? "none (no parent configured)" : text_at(parent, "/state");
  out += "<tr><th>State</th><td><span id=\"link-state\" class=\"";
  out += state_class(link_state);
  out += "\">" + html_escape(link_state) + "</span></td></tr>\n";
  row(out, "Parent", "link-url", text_at(parent, "/url"));
  row(out, "Parent mode", "link-mode", text_at(parent, "/mode"));
  row(out, "Last success", "link-last-success", text_at(parent, "/last_success"));
  row(out, "Last error", "link-last-error", text_at(parent, "/last_error"));
  row(out, "Last error at", "link-last-error-at", text_at(parent, "/last_error_at"));
  out += "</table>\n</div><div>\n<h2>Sync</h2><table>\n";
  row(out, "Schedule", "sync-schedule", text_at(st, "/sync_schedule"));
  row(out, "Window open", "window-open", text_at(st, "/sync/window/open"));
  row(out, "Next window", "next-window", text_at(st, "/sync/window/next"));
  row(out, "Last window", "last-window", text_at(st, "/sync/window/last_start"));
  row(out, "Replay state", "replay-state", text_at(st, "/sync/state"));
  row(out, "Blocked", "replay-blocked", text_at(st, "/replay_blocked_reason"));
  out += "</table>\n<h2>Replay queue</h2><table>\n";
  row(out, "Pending", "queue-pending", text_at(st, "/sync/queue/pending"));
  row(out, "Bytes pending", "queue-bytes", text_at(st, "/sync/queue/bytes_pending"),
      human_bytes(st, "/sync/queue/bytes_pending"));
  row(out, "Oldest (s)", "queue-oldest", text_at(st, "/sync/queue/oldest_age_s"));
  row(out, "Failed", "queue-failed", text_at(st, "/sync/queue/failed"));
  row(out, "Expired", "queue-expired", text_at(st, "/sync/queue/expired"));
  out += "</table>\n</div><div>\n<h2>Cache and storage</h2><table>\n";
  row(out, "Hit ratio", "cache-hit-ratio", text_at(st, "/cache/hit_ratio"));
  row(out, "Hits", "cache-hits", text_at(st, "/cache/hits"));
  row(out, "Misses", "cache-misses", text_at(st, "/cache/misses"));
  row(out, "Bytes used", "cache-bytes-used", text_at(st, "/storage/bytes/total"), human_bytes(st, "/storage/bytes/total"));
  row(out, "Quota", "cache-quota", text_at(st, "/storage/quota_bytes"), human_bytes(st, "/storage/quota_bytes"));
  row(out, "Evictions", "cache-evictions", text_at(st, "/storage/evicted/blobs"));
  row(out, "Storage root", "storage-root", text_at(st, "/storage/root"));
  row(out, "Disk free", "fs-free", text_at(st, "/storage/fs_free_bytes"), human_bytes(st, "/storage/fs_free_bytes"));
  out += "</table>\n</div></div>\n";

  out += "<h2>Upstreams</h2>\n<table id=\"upstreams\"><tr><th>Name</th><th>URL</th><th>State</th>"
         "<th>Mode</th><th>Last success</th><th>Last error</th></tr>\n";
  if (st.contains("upstreams") && st["upstreams"].is_array()) {
    for (const auto& u : st["upstreams"]) {
      const std::string state = text_at(u, "/state");
      out += "<tr><td>" + html_escape(text_at(u, "/name")) + "</td><td>" + html_escape(text_at(u, "/url")) +
             "</td><td class=\"" + state_class(state) + "\">" + html_escape(state) + "</td><td>" +
             html_escape(text_at(u, "/mode")) + "</td><td>" + html_escape(text_at(u, "/last_success")) + "</td><td>" +
             html_escape(text_at(u, "/last_error")) + "</td></tr>\n";
    }
  }
  out += "</table>\n<h2>Kept repositories</h2>\n<table id=\"kept\"><tr><th>Pattern</th><th>Tags</th>"
         "<th>Last refresh</th><th>Last error</th></tr>\n";
  const json::json_pointer keep_p("/sync/keep");
  if (st.contains(keep_p) && st.at(keep_p).is_array()) {
    for (const auto& k : st.at(keep_p))
      out += "<tr><td>" + html_escape(text_at(k, "/pattern")) + "</td><td>" + html_escape(text_at(k, "/tags")) +
             "</td><td>" + html_escape(text_at(k, "/last_refresh")) + "</td><td>" +
             html_escape(text_at(k, "/last_error")) + "</td></tr>\n";
  }
  out += "</table>\n<h2>Recent pulls and pushes</h2>\n<table id=\"recent\"><tr><th>Time (UTC)</th><th>Kind</th>"
         "<th>Repository</th><th>Reference</th><th>Digest</th><th>Client</th><th>Status</th></tr>\n";
  if (recent_hidden) {
    out += "<tr><td colspan=\"7\" class=\"muted\">Hidden: access control is on, and they name repositories, "
           "tags and clients. Open this page from the registry's host (loopback) to see them.</td></tr>\n";
  } else if (log) {
    for (const auto& t : log->recent()) {
      out += "<tr><td>" + html_escape(time_of(t.time_ms)) + "</td><td>" + html_escape(t.kind) + " (" +
             html_escape(t.method) + ")</td><td>" + html_escape(t.repo) + "</td><td>" + html_escape(t.reference) +
             "</td><td>" + html_escape(t.digest.empty() ? "-" : t.digest) + "</td><td>" + html_escape(t.peer) +
             "</td><td class=\"" + (t.status >= 200 && t.status < 400 ? "ok" : "bad") + "\">" +
             std::to_string(t.status) + "</td></tr>\n";
    }
  }
  out += "</table>\n<p class=\"muted\">Machine-readable: <a href=\"/outpost/status\">/outpost/status</a>, "
         "<a href=\"/metrics\">/metrics</a>.</p>\n</body></html>\n";
  return out;
}

}  // namespace outpost::app
