#include "app/cli_gc.hpp"

#include <cstdio>

#include "app/cli_storage.hpp"
#include "app/ops_storage.hpp"
#include "base/size.hpp"

namespace outpost::app {

namespace {
void print_report(const nlohmann::json& j, bool as_json, const char* path) {
  if (as_json) {
    printf("%s\n", j.dump(2).c_str());
    return;
  }
  const bool dry = j.value("dry_run", false);
  printf("gc (%s)%s\n", path, dry ? ": dry run, nothing removed" : "");
  const char* verb = dry ? "would remove" : "removed";
  printf("  unreferenced blobs %s: %llu (%s)\n", verb, j.value("blobs_removed", 0ull),
         human_size(j.value("bytes_removed", 0ull)).c_str());
  printf("  files without rows %s: %llu (%s)\n", verb, j.value("orphan_files_removed", 0ull),
         human_size(j.value("orphan_bytes_removed", 0ull)).c_str());
  printf("  idle upload sessions %s: %llu\n", verb, j.value("uploads_expired", 0ull));
  if (!dry)
    printf("  upload dirs without rows: %llu, temp files: %llu, empty repositories: %llu\n",
           j.value("upload_dirs_removed", 0ull), j.value("temp_files_removed", 0ull), j.value("repos_removed", 0ull));
}
}  // namespace

int cli_gc(CliArgs& a) {
  const bool dry_run = a.take_flag("--dry-run");
  const bool as_json = a.take_flag("--json");
  bool missing = false;
  std::optional<std::string> grace = a.take_value("--grace", &missing);
  std::optional<uint64_t> grace_ms;
  if (grace) {
    auto ms = parse_duration_ms(*grace);
    if (!ms) {
      fprintf(stderr, "outpost: gc: --grace: %s\n", ms.error().message().c_str());
      return 2;
    }
    grace_ms = *ms;
  }
  if (missing) {
    fprintf(stderr, "outpost: gc: --grace needs a duration (e.g. 0s, 10m)\n");
    return 2;
  }
  StorageTarget target;
  if (int rc = open_storage_target(a, "gc", &target)) return rc;
  const Config* cfg = &target.cfg;
  const bool running = !target.store;
  if (running) {
    std::string path = std::string("/outpost/gc?dry_run=") + (dry_run ? "1" : "0");
    if (grace) path += "&grace=" + *grace;
    auto ans = admin_call(*cfg, http::Method::Post, path, 3'600'000);
    if (!ans.st.ok()) {
      fprintf(stderr, "outpost: gc: the store is in use and the server does not answer: %s\n",
              ans.st.error().message().c_str());
      return 1;
    }
    if (ans.status != 200) {
      fprintf(stderr, "outpost: gc: the server answered %d: %s\n", ans.status, admin_error_text(ans).c_str());
      return 1;
    }
    auto j = nlohmann::json::parse(ans.body, nullptr, false);
    if (!j.is_object()) {
      fprintf(stderr, "outpost: gc: unexpected answer: %s\n", ans.body.substr(0, 200).c_str());
      return 1;
    }
    print_report(j, as_json, "through the running server, POST /outpost/gc");
    return 0;
  }
  store::GcOptions o;
  o.upload_ttl_ms = static_cast<int64_t>(cfg->storage.upload_ttl_ms);
  o.dry_run = dry_run;
  if (grace_ms) o.grace_ms = static_cast<int64_t>(*grace_ms);
  auto rep = target.store->gc(o);
  if (!rep) {
    fprintf(stderr, "outpost: gc failed: %s\n", rep.error().message().c_str());
    return 1;
  }
  print_report(gc_report_json(*rep, dry_run), as_json, "offline, on the store");
  return 0;
}

}  // namespace outpost::app
