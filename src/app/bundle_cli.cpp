#include "base/size.hpp"
#include "app/bundle_cli.hpp"

#include <unistd.h>

#include <chrono>
#include <nlohmann/json.hpp>

#include "app/admin_client.hpp"
#include "bundle/inventory.hpp"
#include "sync/keep_pattern.hpp"

namespace outpost::app {

using nlohmann::json;

store::StoreOptions bundle_store_options(const Config& c) {
  store::StoreOptions so;
  so.max_manifest_bytes = c.registry.max_manifest_bytes;
  so.replay = !c.parent.url.empty() && c.registry.mode != "ReadOnly";  // as App::run
  so.replay_deletes = so.replay && c.sync.replay_deletes;
  return so;
}

std::string to_json(const ExportRequest& r) {
  return json{{"repos", r.repos},   {"platforms", r.platforms}, {"have", r.have}, {"output", r.output},
              {"max_part", r.max_part}, {"resume", r.resume},   {"compress", r.compress}}
      .dump();
}

namespace {
template <typename T>
bool get_to(const json& j, const char* key, T& out) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return true;
  try {
    out = it->get<T>();
  } catch (const json::exception&) {
    return false;
  }
  return true;
}
}  // namespace

Result<ExportRequest> export_request_from_json(std::string_view text) {
  json j = json::parse(text, nullptr, false);
  ExportRequest r;
  if (!j.is_object() || !get_to(j, "repos", r.repos) || !get_to(j, "platforms", r.platforms) ||
      !get_to(j, "have", r.have) || !get_to(j, "output", r.output) || !get_to(j, "max_part", r.max_part) ||
      !get_to(j, "resume", r.resume) || !get_to(j, "compress", r.compress))
    return Error(Errc::BadRequest, "the export request is not a JSON object of the documented keys");
  if (r.output.empty() || r.output.front() != '/') return Error(Errc::BadRequest, "\"output\" must be an absolute path");
  if (!r.have.empty() && r.have.front() != '/') return Error(Errc::BadRequest, "\"have\" must be an absolute path");
  return r;
}

std::string to_json(const ImportRequest& r) { return json{{"files", r.files}, {"repo", r.repo}}.dump(); }

Result<ImportRequest> import_request_from_json(std::string_view text) {
  json j = json::parse(text, nullptr, false);
  ImportRequest r;
  if (!j.is_object() || !get_to(j, "files", r.files) || !get_to(j, "repo", r.repo))
    return Error(Errc::BadRequest, "the import request is not a JSON object of the documented keys");
  if (r.files.empty()) return Error(Errc::BadRequest, "\"files\" is empty");
  for (const auto& f : r.files)
    if (f.empty() || f.front() != '/') return Error(Errc::BadRequest, "\"files\" must be absolute paths");
  return r;
}

Result<bundle::ExportReport> run_export(store::Store& s, const ExportRequest& r, bundle::ProgressFn progress) {
  bundle::ExportOptions o;
  auto pats = sync::parse_keep_patterns(r.repos);
  if (!pats) return Error(Errc::BadRequest, "--repo " + pats.error().message());
  o.selection.repos = std::move(*pats);
  for (const auto& p : r.platforms) {
    auto pl = bundle::Platform::parse(p);
    if (!pl) return std::move(pl).error();
    o.selection.platforms.push_back(*pl);
  }
  std::unordered_set<std::string> have;
  if (!r.have.empty()) {
    auto h = bundle::read_inventory(r.have);
    if (!h) return std::move(h).error();
    have = std::move(*h);
    o.selection.have = &have;
  }
  auto c = bundle::parse_compression(r.compress);
  if (!c) return std::move(c).error();
  o.compression = *c;
  o.output = r.output;
  o.max_part = r.max_part;
  o.resume = r.resume;
  o.progress = std::move(progress);
  return bundle::export_bundle(s, o);
}

Result<bundle::ImportReport> run_import(store::Store& s, const ImportRequest& r, bundle::ProgressFn progress,
                                        uint64_t max_manifest_bytes) {
  bundle::ImportOptions o;
  o.default_repo = r.repo;
  o.max_manifest_bytes = max_manifest_bytes;
  o.progress = std::move(progress);
  return bundle::import_bundle(s, r.files, o);
}

Result<std::string> admin_request(const Config& cfg, bool post, const std::string& path, const std::string& body) {
  const std::string base = admin_base_url(cfg);
  // The server answers when the whole export or import is done.
  AdminAnswer a = admin_call(base, post ? http::Method::Post : http::Method::Get, path, 7ull * 24 * 3'600'000,
                             post ? body : std::string(), "application/json");
  if (!a.st) return Error(a.st.error().code, "cannot reach the outpost at " + base + ": " + a.st.error().message());
  if (a.status == 200) return a.body;
  std::string msg = a.body.substr(0, 400);
  auto j = json::parse(a.body, nullptr, false);
  if (j.is_object() && j.contains("errors") && j["errors"].is_array() && !j["errors"].empty() &&
      j["errors"][0].is_object()) {
    const auto& e = j["errors"][0];
    msg = e.contains("detail") && e["detail"].is_string() ? e["detail"].get<std::string>() : e.value("message", msg);
  }
  return Error(Errc::BadRequest, base + " answered " + std::to_string(a.status) + ": " + msg);
}

std::string absolute_path(const std::string& p) {
  if (!p.empty() && p.front() == '/') return p;
  char buf[4096];
  if (!getcwd(buf, sizeof buf)) return p;
  return std::string(buf) + "/" + p;
}

bundle::ProgressFn progress_printer(FILE* out, bool tty) {
  if (!tty) return {};
  auto last = std::make_shared<std::chrono::steady_clock::time_point>();
  return [out, last](const bundle::Progress& p) {
    auto now = std::chrono::steady_clock::now();
    if (now - *last < std::chrono::milliseconds(200)) return;
    *last = now;
    std::string line = p.phase + ": " + std::to_string(p.items_done);
    if (p.items_total) line += "/" + std::to_string(p.items_total);
    line += " entries, " + human_size(p.bytes_done);
    if (p.bytes_total) line += " of " + human_size(p.bytes_total);
    fprintf(out, "\r\033[K%s", line.c_str());
    fflush(out);
  };
}

void progress_done(FILE* out, bool tty) {
  if (!tty) return;
  fprintf(out, "\r\033[K");
  fflush(out);
}

}  // namespace outpost::app
