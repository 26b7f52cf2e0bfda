#include "app/ops.hpp"

#include <arpa/inet.h>
#include <uv.h>

#include <functional>
#include <nlohmann/json.hpp>

#include "app/request_log.hpp"
#include "app/status_page.hpp"
#include "app/ops_storage.hpp"
#include "app/prom_text.hpp"
#include "app/sync_control.hpp"
#include "cache/pull_through.hpp"
#include "http/router.hpp"
#include "http/server.hpp"
#include "outpost_version.h"
#include "sync/sync_service.hpp"
#include "upstream/registry_client.hpp"
#include "upstream/request_timings.hpp"

namespace outpost::app {

namespace {
uint64_t wall_ms() {
  uv_timeval64_t tv;
  uv_gettimeofday(&tv);
  return static_cast<uint64_t>(tv.tv_sec) * 1000 + static_cast<uint64_t>(tv.tv_usec) / 1000;
}

using prom::counter;

struct HitMiss {
  uint64_t hits = 0;
  uint64_t misses = 0;
};

/// Pull-through hits and misses, derived so cache/ needs no new counter: a
/// miss is a pull that had to ask a parent (a manifest fetch or a blob fill)
/// or was refused for want of one (offline or outside a sync window); a
/// hit is a successful manifest or blob GET/HEAD that needed no fetch.
HitMiss hit_miss(const OpsSources& s) {
  HitMiss h;
  if (!s.pull) return h;
  const auto& p = s.pull->stats();
  const uint64_t fetched = p.manifest_fetches + p.fills_started;
  h.misses = fetched + p.offline_misses + p.window_misses;
  const uint64_t ok = s.requests ? s.requests->pulls_answered() : 0;
  h.hits = ok > fetched ? ok - fetched : 0;
  return h;
}

const char* level_name(log::Level l) {
  switch (l) {
    case log::Level::Debug: return "debug";
    case log::Level::Info: return "info";
    case log::Level::Warn: return "warn";
    case log::Level::Error: return "error";
  }
  return "info";
}

std::string iso(uint64_t ms) { return sync::iso_time(static_cast<int64_t>(ms)); }
}  // namespace

namespace {
std::string seconds_text(double v) {
  char buf[32];
  snprintf(buf, sizeof buf, "%.6g", v);
  return buf;
}

/// outpost_upstream_request_seconds (histogram, time to the answer's head
/// after auth and redirects) and outpost_upstream_request_failures_total,
/// by upstream and kind of request (issue #17).
void upstream_timing_metrics(std::string& out, const upstream::RequestTimings& t) {
  using T = upstream::RequestTimings;
  prom::series(out, "outpost_upstream_request_seconds",
               "time from sending a request to an upstream to its answer's head (auth and redirects included)",
               "histogram");
  for (const auto& se : t.series()) {
    const std::string l = "upstream=\"" + prom_label(se.upstream) + "\",kind=\"" + prom_label(se.kind) + "\"";
    uint64_t cum = 0;
    for (size_t i = 0; i < T::kBuckets.size(); ++i) {
      cum += se.buckets[i];
      out += "outpost_upstream_request_seconds_bucket{" + l + ",le=\"" + seconds_text(T::kBuckets[i]) + "\"} " +
             std::to_string(cum) + "\n";
    }
    out += "outpost_upstream_request_seconds_bucket{" + l + ",le=\"+Inf\"} " + std::to_string(se.count) + "\n";
    out += "outpost_upstream_request_seconds_sum{" + l + "} " + seconds_text(se.sum) + "\n";
    out += "outpost_upstream_request_seconds_count{" + l + "} " + std::to_string(se.count) + "\n";
  }
  prom::series(out, "outpost_upstream_request_failures_total",
               "requests to an upstream that ended without an answer (connect error, timeout, reset)", "counter");
  for (const auto& se : t.series())
    prom::sample(out, "outpost_upstream_request_failures_total", se.failures,
                 "upstream=\"" + prom_label(se.upstream) + "\",kind=\"" + prom_label(se.kind) + "\"");
}
}  // namespace

std::string metrics_text(const OpsSources& s, const DiskUsage* disk) {
  std::string out;
  out += "# HELP outpost_build_info the running version (always 1)\n"
         "# TYPE outpost_build_info gauge\n"
         "outpost_build_info{version=\"" + prom_label(OUTPOST_VERSION) + "\"} 1\n";
  counter(out, "outpost_start_time_seconds", "unix time the process started", s.started_ms / 1000, "gauge");
  counter(out, "outpost_ready", "1 when the store is open and every listener bound (/readyz)", s.ready ? 1 : 0,
          "gauge");
  if (s.reload) counter(out, "outpost_config_reloads_total", "SIGHUP reloads attempted", s.reload->count);
  if (disk && disk->known) {
    counter(out, "outpost_storage_fs_size_bytes", "size of the file system holding storage.root", disk->total_bytes,
            "gauge");
    counter(out, "outpost_storage_fs_free_bytes", "bytes available to outpost on that file system", disk->free_bytes,
            "gauge");
  }
  const auto& st = s.server->stats();
  counter(out, "outpost_http_requests_total", "requests received", st.requests);
  counter(out, "outpost_http_connections_accepted_total", "client connections accepted", st.connections_accepted);
  counter(out, "outpost_http_connections_rejected_total", "connections refused over max_connections",
          st.connections_rejected);
  counter(out, "outpost_http_sent_bytes_total", "bytes written to clients", st.bytes_sent);
  counter(out, "outpost_http_connections", "open client connections", s.server->connection_count(), "gauge");
  counter(out, "outpost_http_accept_out_of_fds_total", "accepts that failed for want of a file descriptor",
          st.accept_out_of_fds);
  if (s.requests) out += s.requests->metrics_text();
  out += storage_metrics(s.storage);  // issue #18 (ops_storage.cpp)
  if (s.pull) {
    const auto& p = s.pull->stats();
    counter(out, "outpost_cache_served_offline_total", "answers served from cache without the parent's confirmation",
            p.served_offline);
    counter(out, "outpost_cache_offline_misses_total", "misses refused at once because the parent is offline",
            p.offline_misses);
    const HitMiss hm = hit_miss(s);
    counter(out, "outpost_cache_hits_total", "manifest and blob pulls answered without asking a parent", hm.hits);
    counter(out, "outpost_cache_misses_total",
            "pulls that asked a parent (manifest fetch, blob fill) or were refused for want of one", hm.misses);
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
    out += "# HELP outpost_upstream_last_error_seconds unix time of the last failed request or probe (0: never)\n"
           "# TYPE outpost_upstream_last_error_seconds gauge\n";
    for (const auto* u : s.pull->upstreams())
      out += "outpost_upstream_last_error_seconds{upstream=\"" + prom_label(u->options().name) + "\"} " +
             std::to_string(u->link().last_error_ms() / 1000) + "\n";
    out += "# HELP outpost_upstream_probe_duration_seconds duration of the last answered connectivity probe\n"
           "# TYPE outpost_upstream_probe_duration_seconds gauge\n";
    for (const auto* u : s.pull->upstreams())
      out += "outpost_upstream_probe_duration_seconds{upstream=\"" + prom_label(u->options().name) + "\"} " +
             std::to_string(static_cast<double>(u->link().last_probe_rtt_ms()) / 1000.0) + "\n";
    if (s.upstream_timings) upstream_timing_metrics(out, *s.upstream_timings);
  }
  return out;
}

std::string status_json(const OpsSources& s, const DiskUsage* disk) {
  using nlohmann::json;
  json j;
  j["name"] = s.config->registry.name;
  j["version"] = OUTPOST_VERSION;
  j["mode"] = s.config->registry.mode;
  j["started"] = iso(s.started_ms);
  j["uptime_seconds"] = (wall_ms() - s.started_ms) / 1000;
  j["ready"] = s.ready;
  j["listen"] = s.config->server.listen;
  j["sync_schedule"] = s.config->sync.schedule.empty() ? json(nullptr) : json(s.config->sync.schedule);
  j["sync_window_seconds"] = s.config->sync.window_ms / 1000;
  j["log_level"] = std::string(level_name(s.config->log.level));
  {
    json st;
    st["root"] = s.config->storage.root;
    if (disk && disk->known) {
      st["fs_size_bytes"] = disk->total_bytes;
      st["fs_free_bytes"] = disk->free_bytes;
    }
    j["storage"] = std::move(st);
  }
  if (s.reload && s.reload->count) {
    j["reload"] = {{"count", s.reload->count},
                   {"last", iso(s.reload->last_ms)},
                   {"result", s.reload->result},
                   {"applied", s.reload->applied},
                   {"refused", s.reload->refused}};
  }
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
      one["last_success"] = last ? json(iso(last)) : json(nullptr);
      const auto& link = u->link();
      one["last_error"] = link.last_error().empty() ? json(nullptr) : json(link.last_error());
      one["last_error_at"] = link.last_error_ms() ? json(iso(link.last_error_ms())) : json(nullptr);
      if (s.upstream_timings) {
        // Answered requests and their mean time to the answer's head, all
        // kinds together (the histogram by kind is in /metrics).
        uint64_t n = 0, failed = 0;
        double sum = 0;
        for (const auto& se : s.upstream_timings->series()) {
          if (se.upstream != u->options().name) continue;
          n += se.count;
          sum += se.sum;
          failed += se.failures;
        }
        one["requests"] = n;
        one["request_failures"] = failed;
        one["request_mean_seconds"] = n ? json(sum / static_cast<double>(n)) : json(nullptr);
      }
      ups.push_back(std::move(one));
    }
    const auto& p = s.pull->stats();
    j["cache"] = {{"served_offline", p.served_offline},   {"offline_misses", p.offline_misses},
                  {"fills_in_flight", s.pull->fills_in_flight()}, {"fills_committed", p.fills_committed},
                  {"fills_failed", p.fills_failed},       {"manifest_fetches", p.manifest_fetches},
                  {"window_misses", p.window_misses},     {"revalidations_skipped", p.revalidations_skipped}};
    const HitMiss hm = hit_miss(s);
    j["cache"]["hits"] = hm.hits;
    j["cache"]["misses"] = hm.misses;
    j["cache"]["hit_ratio"] = hm.hits + hm.misses
                                  ? json(static_cast<double>(hm.hits) / static_cast<double>(hm.hits + hm.misses))
                                  : json(nullptr);
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
  // Cache management figures (issue #18, ops_storage.cpp) join the disk's.
  if (auto sj = storage_status_json(s.storage); sj.is_object()) {
    for (auto& [k, v] : sj.items()) j["storage"][k] = v;
  }
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

namespace {
/// Fresh queue numbers (a store job) and the storage file system's usage
/// (uv_fs_statfs on libuv's pool: never a blocking call on the loop), then
/// `done(disk)` on the loop.
void gather(const OpsSources* src, std::function<void(const DiskUsage&)> done) {
  auto after_sync = [src, done = std::move(done)]() mutable {
    if (!src->loop) return done(DiskUsage{});
    struct Req {
      uv_fs_t fs;
      std::function<void(const DiskUsage&)> done;
    };
    auto* rq = new Req{};
    rq->done = std::move(done);
    rq->fs.data = rq;
    const int rc = uv_fs_statfs(src->loop, &rq->fs, src->config->storage.root.c_str(), [](uv_fs_t* f) {
      auto* r = static_cast<Req*>(f->data);
      DiskUsage d;
      if (f->result == 0 && f->ptr) {
        const auto* sf = static_cast<const uv_statfs_t*>(f->ptr);
        d.known = true;
        d.total_bytes = sf->f_blocks * sf->f_bsize;
        d.free_bytes = sf->f_bavail * sf->f_bsize;
      }
      uv_fs_req_cleanup(f);
      auto cb = std::move(r->done);
      delete r;
      cb(d);
    });
    if (rc != 0) {
      auto cb = std::move(rq->done);
      delete rq;
      cb(DiskUsage{});
    }
  };
  if (!src->sync) return after_sync();
  src->sync->refresh(std::move(after_sync));
}
}  // namespace

void register_ops_routes(http::Router& r, const OpsSources& s) {
  const OpsSources* src = &s;
  // The sync numbers live in the store: each of these answers waits for one
  // store job (SyncControl::refresh) so it shows the queue as it is now.
  r.add(http::Method::Get, "/metrics", [src](const http::ExchangePtr& ex) {
    gather(src, [src, ex](const DiskUsage& d) {
      ex->respond(200, metrics_text(*src, &d), "text/plain; version=0.0.4; charset=utf-8");
    });
  });
  r.add(http::Method::Get, "/outpost/status", [src](const http::ExchangePtr& ex) {
    gather(src, [src, ex](const DiskUsage& d) { ex->respond(200, status_json(*src, &d), "application/json"); });
  });
  // The status page (issue #17): the same document rendered as HTML, for
  // anyone with a browser; read-only, so not limited to loopback. With
  // access control on, its recent pulls and pushes (repositories, tags,
  // digests, client addresses) are shown on loopback only: the API would
  // not show them to an anonymous caller either.
  r.add(http::Method::Get, "/outpost/", [src](const http::ExchangePtr& ex) {
    gather(src, [src, ex](const DiskUsage& d) {
      auto j = nlohmann::json::parse(status_json(*src, &d), nullptr, false);
      const bool hidden = src->config && src->config->auth.enabled && !is_loopback_peer(ex->req().peer);
      ex->add_header("Cache-Control", "no-store");
      ex->respond(200, status_page_html(j, src->requests, hidden), "text/html; charset=utf-8");
    });
  });
  r.add(http::Method::Get, "/readyz", [src](const http::ExchangePtr& ex) {
    if (src->ready) return ex->respond(200, "ready\n", "text/plain");
    ex->respond(503, "not ready: store or listeners not up (or shutting down)\n", "text/plain");
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
