// `outpost import`: each argument is a bundle (a file, the first of its
// parts, or an OCI layout directory); parts of one bundle named several
// times (a shell glob) are read once. Offline it opens the store; with the
// server running it asks the server (bundle_admin.hpp).
#include "base/size.hpp"
#include "app/cli_import.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "app/admin_client.hpp"
#include "app/bundle_cli.hpp"
#include "base/log.hpp"
#include "bundle/parts.hpp"

namespace outpost::app {

namespace {
void print_report(const std::string& what, const bundle::ImportReport& r, bool via_server) {
  printf("imported %s (%s): %zu tags, %zu manifests, %zu blobs stored (%s), %zu already held%s\n", what.c_str(),
         r.format.c_str(), r.tags, r.manifests, r.blobs_stored, human_size(r.bytes_stored).c_str(), r.blobs_held,
         via_server ? ", through the running server" : "");
}
}  // namespace

int cli_import(CliArgs& a) {
  bool missing = false;
  std::string repo;
  if (auto v = a.take_value("--repo", &missing)) repo = *v;
  if (missing) {
    fprintf(stderr, "outpost import: --repo needs a repository name\n");
    return 2;
  }
  std::vector<std::string> paths;
  for (const auto& s : a.args) {
    if (!s.empty() && s[0] == '-') {
      fprintf(stderr, "outpost import: unknown option '%s'\n", s.c_str());
      return 2;
    }
    paths.push_back(s);
  }
  if (paths.empty()) {
    fprintf(stderr, "outpost import: name at least one bundle (FILE, FILE.000 or an OCI layout directory)\n");
    return 2;
  }
  // Group the arguments into bundles: X.000 X.001 ... are one.
  std::vector<std::vector<std::string>> bundles;
  std::vector<std::string> seen;
  for (const auto& p : paths) {
    const std::string abs = absolute_path(p);
    if (std::find(seen.begin(), seen.end(), abs) != seen.end()) continue;
    struct stat st;
    std::vector<std::string> files;
    if (stat(abs.c_str(), &st) == 0 && S_ISDIR(st.st_mode)) {
      files.push_back(abs);
    } else {
      auto f = bundle::bundle_files(abs);
      if (!f) {
        fprintf(stderr, "outpost import: %s\n", f.error().message().c_str());
        return 1;
      }
      files = *f;
    }
    for (const auto& f : files) seen.push_back(f);
    bundles.push_back(files);
  }
  // The store's info lines (root created, recovery) would interleave with
  // the progress line and the summary; warnings and errors still show.
  log::set_level(log::Level::Warn);
  auto cfg = a.load_config();
  if (!cfg) {
    fprintf(stderr, "outpost import: %s\n", cfg.error().message().c_str());
    return 2;
  }
  const bool server = store_in_use(cfg->storage.root);
  std::unique_ptr<store::Store> store;
  if (server) {
    fprintf(stderr, "outpost import: the store is in use by the running server: importing through it\n");
  } else {
    auto st = store::Store::open(cfg->storage.root, bundle_store_options(*cfg));
    if (!st) {
      fprintf(stderr, "outpost import: cannot open the store at %s: %s\n", cfg->storage.root.c_str(),
              st.error().message().c_str());
      return 1;
    }
    store = std::move(*st);
  }
  const bool tty = isatty(STDERR_FILENO);
  for (const auto& files : bundles) {
    ImportRequest req;
    req.files = files;
    req.repo = repo;
    const std::string what = files.size() > 1 ? files.front() + " (+" + std::to_string(files.size() - 1) + " parts)"
                                              : files.front();
    if (server) {
      auto body = admin_request(*cfg, true, "/outpost/bundle/import", to_json(req));
      if (!body) {
        fprintf(stderr, "outpost import: %s: %s\n", what.c_str(), body.error().message().c_str());
        return 1;
      }
      auto j = nlohmann::json::parse(*body, nullptr, false);
      bundle::ImportReport r;
      if (j.is_object()) {
        r.format = j.value("format", "");
        r.tags = j.value("tags", 0u);
        r.manifests = j.value("manifests", 0u);
        r.blobs_stored = j.value("blobs_stored", 0u);
        r.bytes_stored = j.value("bytes_stored", uint64_t{0});
        r.blobs_held = j.value("blobs_held", 0u);
      }
      print_report(what, r, true);
      continue;
    }
    auto rep = run_import(*store, req, progress_printer(stderr, tty), cfg->registry.max_manifest_bytes);
    progress_done(stderr, tty);
    if (!rep) {
      fprintf(stderr, "outpost import: %s: %s\n", what.c_str(), rep.error().message().c_str());
      return 1;
    }
    print_report(what, *rep, false);
  }
  return 0;
}

}  // namespace outpost::app
