#include "app/cli_status.hpp"

#include <nlohmann/json.hpp>

#include "app/admin_client.hpp"
#include "app/status_text.hpp"
#include "base/size.hpp"

namespace outpost::app {

using nlohmann::json;

namespace {

using status_text::is_count;
using status_text::kNa;

std::string text_at(const json& j, const char* pointer) {
  return status_text::text_at(j, pointer, status_text::Fraction::Percent);
}

/// "1.5 GiB (1610612736)" for a byte count, "n/a" when absent.
std::string bytes_at(const json& j, const char* pointer) {
  const json::json_pointer p(pointer);
  if (!j.contains(p) || !is_count(j.at(p))) return kNa;
  return human_size(j.at(p).get<uint64_t>());
}

std::string duration(const json& j, const char* pointer) {
  const json::json_pointer p(pointer);
  if (!j.contains(p) || !is_count(j.at(p))) return kNa;
  uint64_t s = j.at(p).get<uint64_t>();
  char buf[64];
  if (s >= 86'400) snprintf(buf, sizeof buf, "%llud %lluh", (unsigned long long)(s / 86'400), (unsigned long long)(s % 86'400 / 3'600));
  else if (s >= 3'600) snprintf(buf, sizeof buf, "%lluh %llum", (unsigned long long)(s / 3'600), (unsigned long long)(s % 3'600 / 60));
  else if (s >= 60) snprintf(buf, sizeof buf, "%llum %llus", (unsigned long long)(s / 60), (unsigned long long)(s % 60));
  else snprintf(buf, sizeof buf, "%llus", (unsigned long long)s);
  return buf;
}

void line(std::string& out, const char* label, const std::string& value) {
  char buf[32];
  snprintf(buf, sizeof buf, "  %-20s ", label);
  out += buf;
  out += value;
  out += '\n';
}

}  // namespace

std::string status_table(const json& st) {
  std::string out;
  out += text_at(st, "/name") + " (outpost " + text_at(st, "/version") + ")\n";
  line(out, "mode", text_at(st, "/mode"));
  line(out, "uptime", duration(st, "/uptime_seconds") + " (since " + text_at(st, "/started") + ")");
  line(out, "listen", st.contains("listen") && st["listen"].is_array() && !st["listen"].empty()
                          ? [&] {
                              std::string l;
                              for (const auto& a : st["listen"]) l += (l.empty() ? "" : ", ") + a.get<std::string>();
                              return l;
                            }()
                          : std::string(kNa));

  out += "parent link\n";
  json parent = json::object();
  if (st.contains("upstreams") && st["upstreams"].is_array() && !st["upstreams"].empty()) parent = st["upstreams"][0];
  if (parent.empty()) {
    line(out, "state", "none (no parent configured)");
  } else {
    line(out, "state", text_at(parent, "/state") + " (" + text_at(parent, "/url") + ", parent mode " +
                           text_at(parent, "/mode") + ")");
    line(out, "last success", text_at(parent, "/last_success"));
    std::string err = text_at(parent, "/last_error");
    if (err != kNa) err += " (at " + text_at(parent, "/last_error_at") + ")";
    line(out, "last error", err);
  }

  out += "sync\n";
  line(out, "schedule", st.contains("sync_schedule") && st["sync_schedule"].is_null() ? "continuous"
                                                                                      : text_at(st, "/sync_schedule"));
  line(out, "window", text_at(st, "/sync/window/open") == "yes" ? "open" : text_at(st, "/sync/window/open") == "no" ? "closed" : kNa);
  line(out, "next window", text_at(st, "/sync/window/next"));
  line(out, "replay", text_at(st, "/sync/state"));
  if (auto why = text_at(st, "/replay_blocked_reason"); why != kNa) line(out, "replay blocked", why);

  out += "replay queue\n";
  line(out, "depth", text_at(st, "/sync/queue/pending"));
  line(out, "bytes", bytes_at(st, "/sync/queue/bytes_pending"));
  line(out, "oldest", duration(st, "/sync/queue/oldest_age_s"));
  line(out, "failed", text_at(st, "/sync/queue/failed"));
  line(out, "expired", text_at(st, "/sync/queue/expired"));

  out += "cache\n";
  line(out, "bytes used", bytes_at(st, "/storage/bytes/total"));
  line(out, "quota", bytes_at(st, "/storage/quota_bytes"));
  line(out, "hit ratio", text_at(st, "/cache/hit_ratio") + " (" + text_at(st, "/cache/hits") + " hits, " +
                             text_at(st, "/cache/misses") + " misses)");
  line(out, "evictions", text_at(st, "/storage/evicted/blobs"));
  line(out, "disk free", bytes_at(st, "/storage/fs_free_bytes") + " of " + bytes_at(st, "/storage/fs_size_bytes") +
                             " (" + text_at(st, "/storage/root") + ")");

  out += "kept repositories\n";
  const json::json_pointer keep_p("/sync/keep");
  if (st.contains(keep_p) && st.at(keep_p).is_array() && !st.at(keep_p).empty()) {
    for (const auto& k : st.at(keep_p))
      line(out, text_at(k, "/pattern").c_str(), text_at(k, "/tags") + " tags, refreshed " + text_at(k, "/last_refresh") +
                                                   (text_at(k, "/last_error") != kNa ? ", error: " + text_at(k, "/last_error") : ""));
  } else {
    out += "  none\n";
  }

  out += "upstreams\n";
  if (st.contains("upstreams") && st["upstreams"].is_array() && !st["upstreams"].empty()) {
    for (const auto& u : st["upstreams"])
      line(out, text_at(u, "/name").c_str(), text_at(u, "/url") + "  " + text_at(u, "/state"));
  } else {
    out += "  none\n";
  }
  return out;
}

int cli_status(CliArgs& a) {
  const bool as_json = a.take_flag("--json");
  if (a.reject_leftovers("status")) return 2;
  auto cfg = a.load_config();
  if (!cfg) {
    fprintf(stderr, "outpost: %s\n", cfg.error().message().c_str());
    return 2;
  }
  const std::string base = admin_base_url(*cfg);
  AdminAnswer ans = admin_call(base, http::Method::Get, "/outpost/status", 10'000);
  if (!ans.st.ok()) {
    fprintf(stderr, "outpost: no outpost running at %s (%s)\n", base.c_str(), ans.st.error().message().c_str());
    return 1;
  }
  if (ans.status != 200) {
    fprintf(stderr, "outpost: %s answered %d to GET /outpost/status\n", base.c_str(), ans.status);
    return 1;
  }
  auto j = json::parse(ans.body, nullptr, false);
  if (!j.is_object()) {
    fprintf(stderr, "outpost: %s/outpost/status is not a status document (is it an outpost?)\n", base.c_str());
    return 1;
  }
  if (as_json) {
    fputs(ans.body.c_str(), stdout);
  } else {
    printf("outpost at %s\n", base.c_str());
    fputs(status_table(j).c_str(), stdout);
  }
  return 0;
}

}  // namespace outpost::app
