#include "app/ops_storage.hpp"

#include <uv.h>

#include "app/ops.hpp"
#include "app/prom_text.hpp"
#include "base/size.hpp"
#include "http/router.hpp"
#include "http/server.hpp"
#include "storesvc/housekeeper.hpp"

namespace outpost::app {

using nlohmann::json;

namespace {
std::string iso_ms(int64_t ms) {
  if (ms <= 0) return {};
  time_t t = static_cast<time_t>(ms / 1000);
  struct tm tm {};
  gmtime_r(&t, &tm);
  char buf[32];
  strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

json time_or_null(int64_t ms) { return ms > 0 ? json(iso_ms(ms)) : json(nullptr); }

using prom::sample;
using prom::series;

json progress_json(const store::CheckProgress& p) {
  return {{"bytes_done", p.bytes_done.load()},
          {"bytes_total", p.bytes_total.load()},
          {"blobs_done", p.blobs_done.load()},
          {"blobs_total", p.blobs_total.load()}};
}
}  // namespace

json gc_report_json(const store::GcReport& r, bool dry_run) {
  return {{"dry_run", dry_run},
          {"blobs_removed", r.blobs_removed},
          {"bytes_removed", r.bytes_removed},
          {"orphan_files_removed", r.orphan_files_removed},
          {"orphan_bytes_removed", r.orphan_bytes_removed},
          {"uploads_expired", r.uploads_expired},
          {"upload_dirs_removed", r.upload_dirs_removed},
          {"temp_files_removed", r.temp_files_removed},
          {"repos_removed", r.repos_removed}};
}

json check_report_json(const store::CheckReport& r) {
  json problems = json::array();
  for (const auto& p : r.problems)
    problems.push_back({{"digest", p.digest}, {"kind", p.kind}, {"origin", p.origin}, {"action", p.action}});
  return {{"ok", r.ok()},
          {"cancelled", r.cancelled},
          {"blobs_checked", r.blobs_checked},
          {"bytes_checked", r.bytes_checked},
          {"corrupt", r.corrupt},
          {"missing", r.missing},
          {"rowless", r.rowless},
          {"unreferenced", r.unreferenced},
          {"quarantined", r.quarantined},
          {"refetchable", r.refetchable},
          {"dangling_tags", r.dangling_tags},
          {"problems", std::move(problems)},
          {"started", time_or_null(r.started_ms)},
          {"finished", time_or_null(r.finished_ms)},
          {"finished_unix", r.finished_ms / 1000}};
}

json storage_status_json(const storesvc::Housekeeper* h) {
  if (!h) return nullptr;
  const auto& s = h->stats();
  const auto& o = h->options();
  json j;
  if (s.usage) {
    j["bytes"] = {{"total", s.usage->total},
                  {"pushed", s.usage->pushed},
                  {"cached", s.usage->cached},
                  {"kept", s.usage->kept}};
    j["blobs"] = s.usage->blobs;
    j["bad_blobs"] = s.usage->bad;
  } else {
    j["bytes"] = nullptr;
  }
  j["measured"] = time_or_null(s.usage_ms);
  j["quota_bytes"] = s.quota ? json(s.quota) : json(nullptr);
  j["min_free"] = o.evict.min_free.set() ? json(true) : json(false);
  j["evicted"] = {{"bytes", s.evicted_bytes},
                  {"blobs", s.evicted_blobs},
                  {"manifests", s.evicted_manifests},
                  {"passes", s.eviction_passes},
                  {"short_of_target", s.last_evict_short}};
  json gc = {{"last", time_or_null(s.last_gc_ms)},
             {"duration_ms", s.last_gc_duration_ms},
             {"error", s.last_gc_error.empty() ? json(nullptr) : json(s.last_gc_error)},
             {"interval_seconds", o.gc_interval_ms / 1000}};
  if (s.last_gc) gc["result"] = gc_report_json(*s.last_gc, false);
  j["gc"] = std::move(gc);
  json check = {{"running", s.check_running},
                {"error", s.last_check_error.empty() ? json(nullptr) : json(s.last_check_error)}};
  if (const auto* p = h->check_progress()) check["progress"] = progress_json(*p);
  if (s.last_check) check["last"] = check_report_json(*s.last_check);
  j["check"] = std::move(check);
  return j;
}

std::string storage_metrics(const storesvc::Housekeeper* h) {
  if (!h) return {};
  const auto& s = h->stats();
  std::string out;
  if (s.usage) {
    series(out, "outpost_storage_bytes", "blob bytes held, by origin (kept overlaps pushed/cached)", "gauge");
    sample(out, "outpost_storage_bytes", s.usage->pushed, "origin=\"pushed\"");
    sample(out, "outpost_storage_bytes", s.usage->cached, "origin=\"cached\"");
    sample(out, "outpost_storage_bytes", s.usage->kept, "origin=\"kept\"");
    series(out, "outpost_storage_blobs", "blob rows held", "gauge");
    sample(out, "outpost_storage_blobs", s.usage->blobs);
    series(out, "outpost_storage_bad_blobs", "blobs a check found corrupt or missing (not served)", "gauge");
    sample(out, "outpost_storage_bad_blobs", s.usage->bad);
  }
  series(out, "outpost_storage_quota_bytes", "storage.max_size resolved in bytes (0: no quota)", "gauge");
  sample(out, "outpost_storage_quota_bytes", s.quota);
  series(out, "outpost_evicted_bytes_total", "blob bytes evicted since start", "counter");
  sample(out, "outpost_evicted_bytes_total", s.evicted_bytes);
  series(out, "outpost_evictions_total", "blobs evicted since start", "counter");
  sample(out, "outpost_evictions_total", s.evicted_blobs);
  series(out, "outpost_gc_last_run_seconds", "unix time of the last GC (0: none yet)", "gauge");
  sample(out, "outpost_gc_last_run_seconds", static_cast<uint64_t>(s.last_gc_ms / 1000));
  series(out, "outpost_gc_last_removed_bytes", "bytes the last GC removed (blobs and rowless files)", "gauge");
  sample(out, "outpost_gc_last_removed_bytes",
         s.last_gc ? s.last_gc->bytes_removed + s.last_gc->orphan_bytes_removed : 0);
  series(out, "outpost_gc_last_success", "1 when the last GC succeeded", "gauge");
  sample(out, "outpost_gc_last_success", s.last_gc && s.last_gc_error.empty() ? 1 : 0);
  series(out, "outpost_check_last_run_seconds", "unix time the last check finished (0: none yet)", "gauge");
  sample(out, "outpost_check_last_run_seconds",
         s.last_check ? static_cast<uint64_t>(s.last_check->finished_ms / 1000) : 0);
  series(out, "outpost_check_last_bad_blobs", "corrupt plus missing blobs the last check found", "gauge");
  sample(out, "outpost_check_last_bad_blobs", s.last_check ? s.last_check->corrupt + s.last_check->missing : 0);
  series(out, "outpost_check_running", "1 while a check runs", "gauge");
  sample(out, "outpost_check_running", s.check_running ? 1 : 0);
  return out;
}

void register_storage_routes(http::Router& r, storesvc::Housekeeper* h) {
  r.add(http::Method::Post, "/outpost/gc", [h](const http::ExchangePtr& ex) {
    if (!is_loopback_peer(ex->req().peer))
      return ex->respond_error(Errc::Denied, "POST /outpost/gc is accepted from loopback clients only");
    const auto dry = ex->req().query_param("dry_run");
    const bool dry_run = dry && *dry != "0" && *dry != "false";
    int64_t grace = -1;
    if (auto g = ex->req().query_param("grace")) {
      auto ms = parse_duration_ms(*g);
      if (!ms) return ex->respond_error(Errc::BadRequest, "grace: " + ms.error().message());
      grace = static_cast<int64_t>(*ms);
    }
    h->gc_now(
        dry_run,
        [ex, dry_run](Result<store::GcReport> rep) {
          if (!rep) return ex->respond_error(rep.error());
          ex->respond(200, gc_report_json(*rep, dry_run).dump(2) + "\n", "application/json");
        },
        grace);
  });
  r.add(http::Method::Post, "/outpost/check", [h](const http::ExchangePtr& ex) {
    if (!is_loopback_peer(ex->req().peer))
      return ex->respond_error(Errc::Denied, "POST /outpost/check is accepted from loopback clients only");
    const auto rep = ex->req().query_param("repair");
    const bool repair = rep && *rep != "0" && *rep != "false";
    uint64_t rate = h->options().check_rate;
    if (auto q = ex->req().query_param("rate")) {
      try {
        rate = std::stoull(std::string(*q));
      } catch (...) {
        return ex->respond_error(Errc::BadRequest, "rate must be bytes per second");
      }
    }
    const bool started = h->start_check(repair, rate);
    json j = storage_status_json(h)["check"];
    j["accepted"] = started;
    ex->respond(started ? 202 : 200, j.dump(2) + "\n", "application/json");
  });
  r.add(http::Method::Get, "/outpost/check", [h](const http::ExchangePtr& ex) {
    ex->respond(200, storage_status_json(h)["check"].dump(2) + "\n", "application/json");
  });
}

}  // namespace outpost::app
