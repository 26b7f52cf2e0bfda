#include "app/ops.hpp"

#include <arpa/inet.h>
#include <uv.h>

#include <nlohmann/json.hpp>

#include "app/ops_storage.hpp"
#include "app/sync_control.hpp"
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
  out += storage_metrics(s.storage);  // issue #18 (ops_storage.cpp)
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
    counter(out, "outpost_cache_window_misses_total",
            "misses not fetched because of sync.pull_through (outside a sync window, or never)", p.window_misses);
    counter(out, "outpost_cache_revalidations_skipped_total",
            "expired tags served unchecked because no sync window was open", p.revalidations_skipped);
    if (const auto* parent = s.pull->parent()) {
      // One series per mode, 1 for the current one (the Prometheus enum idiom).
      out += "# HELP outpost_parent_mode the mode the parent announces (Outpost-Mode header)\n"
             "# TYPE outpost_parent_mode gauge\n";
      using upstream::ParentMode;
      for (ParentMode m : {ParentMode::Unknown, ParentMode::ReadWrite, ParentMode::ReadOnly, ParentMode::NotOutpost})
        out += "outpost_parent_mode{mode=\"" + std::string(upstream::parent_mode_name(m)) + "\"} " +
               (parent->parent_mode() == m ? "1" : "0") + "\n";
      counter(out, "outpost_replay_blocked", "1 when the parent's mode forbids replaying pushes to it",
              replay_blocked_reason(s).empty() ? 0 : 1, "gauge");
    }
    if (s.sync) out += s.sync->metrics_text();
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
      one["mode"] = std::string(upstream::parent_mode_name(u->parent_mode()));
      one["forced_offline"] = u->health().forced_offline();
      uint64_t last = u->health().last_success_ms();
      one["last_success_unix"] = last / 1000;
      one["last_success_age_seconds"] = last ? json((wall_ms() - last) / 1000) : json(nullptr);
      ups.push_back(std::move(one));
    }
    const auto& p = s.pull->stats();
    j["cache"] = {{"served_offline", p.served_offline},   {"offline_misses", p.offline_misses},
                  {"fills_in_flight", s.pull->fills_in_flight()}, {"fills_committed", p.fills_committed},
                  {"fills_failed", p.fills_failed},       {"manifest_fetches", p.manifest_fetches},
                  {"window_misses", p.window_misses},     {"revalidations_skipped", p.revalidations_skipped}};
  }
  j["upstreams"] = std::move(ups);
  const auto* parent = s.pull ? s.pull->parent() : nullptr;
  j["parent_mode"] = parent ? json(std::string(upstream::parent_mode_name(parent->parent_mode()))) : json(nullptr);
  const std::string blocked = replay_blocked_reason(s);
  j["replay_blocked_reason"] = blocked.empty() ? json(nullptr) : json(blocked);
  if (s.sync) {
    auto sj = json::parse(s.sync->status_json(), nullptr, false);
    if (!sj.is_discarded() && !sj.is_null()) j["sync"] = std::move(sj);
  }
  j["storage"] = storage_status_json(s.storage);  // issue #18 (ops_storage.cpp)
  return j.dump(2) + "\n";
}

std::string replay_blocked_reason(const OpsSources& s) {
  const auto* parent = s.pull ? s.pull->parent() : nullptr;
  if (!parent) return {};
  return parent->replay_blocked_reason(s.config->registry.mode == "ReadOnly");
}

bool is_loopback_peer(std::string_view peer) {
  std::string host(peer);
  if (!host.empty() && host.front() == '[') {
    size_t close = host.find(']');
    if (close == std::string::npos) return false;
    host = host.substr(1, close - 1);
    in6_addr a6{};
    if (inet_pton(AF_INET6, host.c_str(), &a6) != 1) return false;
    if (IN6_IS_ADDR_LOOPBACK(&a6)) return true;
    // An IPv4 client on a dual-stack socket: ::ffff:127.x.y.z.
    return IN6_IS_ADDR_V4MAPPED(&a6) && a6.s6_addr[12] == 127;
  }
  size_t colon = host.rfind(':');
  if (colon != std::string::npos) host.resize(colon);
  in_addr a4{};
  if (inet_pton(AF_INET, host.c_str(), &a4) != 1) return false;
  return (ntohl(a4.s_addr) >> 24) == 127;
}

namespace {
/// 503 in the OCI error shape: the table's UNAVAILABLE messages speak of
/// overload and of the parent, neither of which is the case here.
void respond_no_sync(const http::ExchangePtr& ex) {
  nlohmann::json one = {{"code", "UNAVAILABLE"},
                        {"message", "sync is not available"},
                        {"detail", "this outpost runs no sync scheduler (no replay queue or sync windows yet)"}};
  nlohmann::json body = {{"errors", nlohmann::json::array({one})}};
  ex->respond(503, body.dump() + "\n", "application/json; charset=utf-8");
}

/// The progress object with one more key (the POST answer).
std::string with_key(const std::string& progress, const char* key, bool value) {
  auto j = nlohmann::json::parse(progress, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object()) j = nlohmann::json::object();
  j[key] = value;
  return j.dump(2) + "\n";
}
}  // namespace

void register_ops_routes(http::Router& r, const OpsSources& s) {
  const OpsSources* src = &s;
  // The sync numbers live in the store: each of these answers waits for one
  // store job (SyncControl::refresh) so it shows the queue as it is now.
  r.add(http::Method::Get, "/metrics", [src](const http::ExchangePtr& ex) {
    if (!src->sync) return ex->respond(200, metrics_text(*src), "text/plain; version=0.0.4");
    src->sync->refresh([src, ex] { ex->respond(200, metrics_text(*src), "text/plain; version=0.0.4"); });
  });
  r.add(http::Method::Get, "/outpost/status", [src](const http::ExchangePtr& ex) {
    if (!src->sync) return ex->respond(200, status_json(*src), "application/json");
    src->sync->refresh([src, ex] { ex->respond(200, status_json(*src), "application/json"); });
  });
  r.add(http::Method::Get, "/healthz", [](const http::ExchangePtr& ex) { ex->respond(200, "ok\n", "text/plain"); });
  // `outpost sync now` (issue #15). Loopback only until access control
  // exists: opening a window makes this registry talk to its parent, which
  // a site may pay for by the byte.
  r.add(http::Method::Post, "/outpost/sync", [src](const http::ExchangePtr& ex) {
    if (!is_loopback_peer(ex->req().peer))
      return ex->respond_error(Errc::Denied, "POST /outpost/sync is accepted from loopback clients only");
    if (!src->sync) return respond_no_sync(ex);
    const auto t = src->sync->trigger();
    const bool accepted = t == SyncControl::Trigger::Accepted;
    ex->respond(accepted ? 202 : 200, with_key(src->sync->progress_json(), "accepted", accepted), "application/json");
  });
  r.add(http::Method::Get, "/outpost/sync", [src](const http::ExchangePtr& ex) {
    if (!src->sync) return respond_no_sync(ex);
    src->sync->refresh([src, ex] {
      auto j = nlohmann::json::parse(src->sync->progress_json(), nullptr, false);
      ex->respond(200, (j.is_discarded() ? nlohmann::json::object() : j).dump(2) + "\n", "application/json");
    });
  });
}

}  // namespace outpost::app
