#include "app/ops.hpp"

#include <uv.h>

#include <nlohmann/json.hpp>

#include "cache/pull_through.hpp"
#include "http/router.hpp"
#include "http/server.hpp"
#include "outpost_version.h"
#include "upstream/registry_client.hpp"

namespace outpost::app {

namespace {
uint64_t wall_ms() {
  uv_timeval64_t tv;
  uv_gettimeofday(&tv);
  return static_cast<uint64_t>(tv.tv_sec) * 1000 + static_cast<uint64_t>(tv.tv_usec) / 1000;
}

void counter(std::string& out, const char* name, const char* help, uint64_t v, const char* type = "counter") {
  out += "# HELP ";
  out += name;
  out += ' ';
  out += help;
  out += "\n# TYPE ";
  out += name;
  out += ' ';
  out += type;
  out += '\n';
  out += name;
  out += ' ';
  out += std::to_string(v);
  out += '\n';
}
}  // namespace

std::string metrics_text(const OpsSources& s) {
  std::string out;
  const auto& st = s.server->stats();
  counter(out, "outpost_http_requests_total", "requests received", st.requests);
  counter(out, "outpost_http_connections_accepted_total", "client connections accepted", st.connections_accepted);
  counter(out, "outpost_http_connections_rejected_total", "connections refused over max_connections",
          st.connections_rejected);
  counter(out, "outpost_http_sent_bytes_total", "bytes written to clients", st.bytes_sent);
  counter(out, "outpost_http_connections", "open client connections", s.server->connection_count(), "gauge");
  if (s.pull) {
    const auto& p = s.pull->stats();
    counter(out, "outpost_cache_served_offline_total", "answers served from cache without the parent's confirmation",
            p.served_offline);
    counter(out, "outpost_cache_offline_misses_total", "misses refused at once because the parent is offline",
            p.offline_misses);
    counter(out, "outpost_cache_fills_started_total", "blob fills started", p.fills_started);
    counter(out, "outpost_cache_fills_committed_total", "blob fills verified and stored", p.fills_committed);
    counter(out, "outpost_cache_fills_failed_total", "blob fills that failed", p.fills_failed);
    counter(out, "outpost_cache_manifest_fetches_total", "manifests fetched from the parent", p.manifest_fetches);
    counter(out, "outpost_cache_revalidations_total", "tag revalidations sent to the parent", p.revalidations);
    counter(out, "outpost_cache_fills_in_flight", "blob fills in flight", s.pull->fills_in_flight(), "gauge");
    out += "# HELP outpost_upstream_state parent connectivity: 0 online, 1 degraded, 2 offline\n"
           "# TYPE outpost_upstream_state gauge\n";
    for (const auto* u : s.pull->upstreams())
      out += "outpost_upstream_state{upstream=\"" + u->options().name + "\"} " +
             std::to_string(static_cast<int>(u->health().state())) + "\n";
    out += "# HELP outpost_upstream_last_success_seconds unix time of the parent's last answer (0: never)\n"
           "# TYPE outpost_upstream_last_success_seconds gauge\n";
    for (const auto* u : s.pull->upstreams())
      out += "outpost_upstream_last_success_seconds{upstream=\"" + u->options().name + "\"} " +
             std::to_string(u->health().last_success_ms() / 1000) + "\n";
  }
  return out;
}

std::string status_json(const OpsSources& s) {
  using nlohmann::json;
  json j;
  j["name"] = s.config->registry.name;
  j["version"] = OUTPOST_VERSION;
  j["mode"] = s.config->registry.mode;
  j["uptime_seconds"] = (wall_ms() - s.started_ms) / 1000;
  j["connections"] = s.server->connection_count();
  j["requests"] = s.server->stats().requests;
  json ups = json::array();
  if (s.pull) {
    for (const auto* u : s.pull->upstreams()) {
      json one;
      one["name"] = u->options().name;
      one["url"] = u->options().url.str();
      one["state"] = std::string(upstream::connectivity_name(u->health().state()));
      one["forced_offline"] = u->health().forced_offline();
      uint64_t last = u->health().last_success_ms();
      one["last_success_unix"] = last / 1000;
      one["last_success_age_seconds"] = last ? json((wall_ms() - last) / 1000) : json(nullptr);
      ups.push_back(std::move(one));
    }
    const auto& p = s.pull->stats();
    j["cache"] = {{"served_offline", p.served_offline},   {"offline_misses", p.offline_misses},
                  {"fills_in_flight", s.pull->fills_in_flight()}, {"fills_committed", p.fills_committed},
                  {"fills_failed", p.fills_failed},       {"manifest_fetches", p.manifest_fetches}};
  }
  j["upstreams"] = std::move(ups);
  return j.dump(2) + "\n";
}

void register_ops_routes(http::Router& r, const OpsSources& s) {
  const OpsSources* src = &s;
  r.add(http::Method::Get, "/metrics", [src](const http::ExchangePtr& ex) {
    ex->respond(200, metrics_text(*src), "text/plain; version=0.0.4");
  });
  r.add(http::Method::Get, "/outpost/status", [src](const http::ExchangePtr& ex) {
    ex->respond(200, status_json(*src), "application/json");
  });
  r.add(http::Method::Get, "/healthz", [](const http::ExchangePtr& ex) { ex->respond(200, "ok\n", "text/plain"); });
}

}  // namespace outpost::app
