// `outpost export`: parses its flags, then runs the export against the store
// (server stopped) or asks the running server to (bundle_admin.hpp).
#include "app/cli_export.hpp"

#include <unistd.h>

#include <cstdio>
#include <nlohmann/json.hpp>

#include "app/admin_client.hpp"
#include "app/bundle_cli.hpp"
#include "base/log.hpp"
#include "base/size.hpp"

namespace outpost::app {

namespace {
int usage_error(const std::string& msg) {
  fprintf(stderr, "outpost export: %s\n", msg.c_str());
  return 2;
}

void print_report(const bundle::ExportReport& r, bool via_server) {
  printf("exported %zu tags (%zu referrers), %zu manifests, %zu blobs (%s)%s\n", r.tags, r.referrers, r.manifests,
         r.blobs, human_size(r.blob_bytes).c_str(), via_server ? " through the running server" : "");
  if (r.blobs_left_out)
    printf("left out %zu blobs (%s) the receiving site holds\n", r.blobs_left_out, human_size(r.bytes_left_out).c_str());
  if (r.bytes_verified) printf("resumed: %s already written were checked\n", human_size(r.bytes_verified).c_str());
  for (const auto& f : r.files) printf("wrote %s\n", f.c_str());
  printf("%s in %zu file%s\n", human_size(r.bytes_written).c_str(), r.files.size(), r.files.size() == 1 ? "" : "s");
}
}  // namespace

int cli_export(CliArgs& a) {
  ExportRequest req;
  bool missing = false;
  while (auto v = a.take_value("--repo", &missing)) req.repos.push_back(*v);
  if (missing) return usage_error("--repo needs PATTERN[:TAGFILTER]");
  while (auto v = a.take_value("--platform", &missing)) req.platforms.push_back(*v);
  if (missing) return usage_error("--platform needs os/arch[/variant]");
  if (auto v = a.take_value("--have", &missing)) req.have = absolute_path(*v);
  if (missing) return usage_error("--have needs an inventory file");
  if (auto v = a.take_value("--max-part", &missing)) {
    auto sz = parse_size(*v);
    if (!sz || *sz < 1024 * 1024) return usage_error("--max-part: \"" + *v + "\" is not a size of at least 1MiB (e.g. 4GiB)");
    req.max_part = *sz;
  }
  if (missing) return usage_error("--max-part needs a size");
  if (auto v = a.take_value("--compress", &missing)) req.compress = *v;
  if (missing) return usage_error("--compress needs none, gzip or zstd");
  if (!bundle::parse_compression(req.compress)) return usage_error("--compress: expected none, gzip or zstd");
  std::optional<std::string> out = a.take_value("-o", &missing);
  if (!out && !missing) out = a.take_value("--output", &missing);
  if (!out) return usage_error("-o FILE is required");
  req.output = absolute_path(*out);
  req.resume = a.take_flag("--resume");
  if (req.repos.empty()) return usage_error("at least one --repo PATTERN[:TAGFILTER] is required (\"**\" for everything)");
  if (a.reject_leftovers("export")) return 2;
  // The store's info lines (root created, recovery) would interleave with
  // the progress line and the summary; warnings and errors still show.
  log::set_level(log::Level::Warn);
  auto cfg = a.load_config();
  if (!cfg) return usage_error(cfg.error().message());

  if (store_in_use(cfg->storage.root)) {
    fprintf(stderr, "outpost export: the store is in use by the running server: exporting through it\n");
    auto body = admin_request(*cfg, true, "/outpost/bundle/export", to_json(req));
    if (!body) {
      fprintf(stderr, "outpost export: %s\n", body.error().message().c_str());
      return 1;
    }
    auto j = nlohmann::json::parse(*body, nullptr, false);
    bundle::ExportReport r;
    if (j.is_object()) {
      r.tags = j.value("tags", 0u);
      r.referrers = j.value("referrers", 0u);
      r.manifests = j.value("manifests", 0u);
      r.blobs = j.value("blobs", 0u);
      r.blob_bytes = j.value("blob_bytes", uint64_t{0});
      r.blobs_left_out = j.value("blobs_left_out", 0u);
      r.bytes_left_out = j.value("bytes_left_out", uint64_t{0});
      r.bytes_written = j.value("bytes_written", uint64_t{0});
      r.bytes_verified = j.value("bytes_verified", uint64_t{0});
      r.files = j.value("files", std::vector<std::string>{});
    }
    print_report(r, true);
    return 0;
  }
  auto st = store::Store::open(cfg->storage.root, bundle_store_options(*cfg));
  if (!st) {
    fprintf(stderr, "outpost export: cannot open the store at %s: %s\n", cfg->storage.root.c_str(),
            st.error().message().c_str());
    return 1;
  }
  const bool tty = isatty(STDERR_FILENO);
  auto rep = run_export(**st, req, progress_printer(stderr, tty));
  progress_done(stderr, tty);
  if (!rep) {
    fprintf(stderr, "outpost export: %s\n", rep.error().message().c_str());
    return 1;
  }
  print_report(*rep, false);
  return 0;
}

}  // namespace outpost::app
