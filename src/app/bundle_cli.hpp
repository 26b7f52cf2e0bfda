// What `outpost export`, `import` and `inventory` share: where the store is
// (opened here when no server runs, else the server is asked through its
// loopback admin endpoints, app/bundle_admin.hpp), the JSON form of their
// requests (the same for both paths), and the terminal progress line.
#pragma once
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "app/config.hpp"
#include "base/result.hpp"
#include "bundle/export.hpp"
#include "bundle/import.hpp"
#include "store/store.hpp"

namespace outpost::app {

/// StoreOptions as `serve` opens the store with (replay queued for pushes
/// when a parent is configured in ReadWrite mode), so an offline import
/// queues replay entries exactly like a push to the server would.
store::StoreOptions bundle_store_options(const Config& cfg);

/// Request bodies of POST /outpost/bundle/{export,import}.
struct ExportRequest {
  std::vector<std::string> repos;      ///< --repo PATTERN[:TAGFILTER]
  std::vector<std::string> platforms;  ///< --platform os/arch[/variant]
  std::string have;                    ///< --have FILE (absolute for the server)
  std::string output;                  ///< -o FILE (absolute for the server)
  uint64_t max_part = 0;
  bool resume = false;
  std::string compress = "none";
};
std::string to_json(const ExportRequest& r);
Result<ExportRequest> export_request_from_json(std::string_view text);

struct ImportRequest {
  std::vector<std::string> files;  ///< the inputs of one bundle (absolute for the server)
  std::string repo;                ///< --repo: default repository
};
std::string to_json(const ImportRequest& r);
Result<ImportRequest> import_request_from_json(std::string_view text);

/// Runs an export / import / inventory against an open store (offline CLI
/// and the admin endpoint both end here). `have` is read from its file.
Result<bundle::ExportReport> run_export(store::Store& s, const ExportRequest& r, bundle::ProgressFn progress);
/// `max_manifest_bytes`: registry.max_manifest_bytes of the registry imported into.
Result<bundle::ImportReport> run_import(store::Store& s, const ImportRequest& r, bundle::ProgressFn progress,
                                        uint64_t max_manifest_bytes);

/// One POST/GET to the running server's admin endpoint `path` (loopback,
/// admin_base_url). Returns the 200 body; other statuses become an Error
/// carrying the server's message. No deadline on the answer: an export of
/// a large selection takes as long as it takes.
Result<std::string> admin_request(const Config& cfg, bool post, const std::string& path, const std::string& body);

/// A progress printer: one line rewritten in place when `tty`, else nothing
/// (the caller prints a summary at the end). At most ~5 updates a second.
bundle::ProgressFn progress_printer(FILE* out, bool tty);
/// Ends the progress line (a newline when one was drawn).
void progress_done(FILE* out, bool tty);

/// "/abs/path" for a relative `p`, made against the current directory.
std::string absolute_path(const std::string& p);

}  // namespace outpost::app
