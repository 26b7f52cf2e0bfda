// `outpost check` (issue #18): stream every stored blob through SHA-256 and
// compare the store's files with its rows.
//
// A blob whose file is missing, has the wrong size or does not hash to its
// digest is marked bad (blobs.bad, schema v4) at once, repair or not: from
// then on no read serves it (stat/open/read answer unknown), so a client
// never receives the corrupt bytes again, and pull-through fetches verified
// bytes from the parent on the next request, which clears the mark. With
// `repair`, the corrupt file is also moved aside into <root>/quarantine/
// (cached or pushed alike); a pushed blob cannot be refetched and is listed
// as needing a re-push. Also reported: files without rows (GC sweeps them),
// unreferenced blobs (GC removes them), tags naming a bad manifest.
#pragma once
#include <atomic>
#include <cstdint>
#include <string>
#include <vector>

#include "base/result.hpp"
#include "store/gc.hpp"

namespace outpost::store {

/// Shared with whoever shows progress (any thread reads it).
struct CheckProgress {
  std::atomic<uint64_t> bytes_total{0};
  std::atomic<uint64_t> bytes_done{0};
  std::atomic<uint64_t> blobs_total{0};
  std::atomic<uint64_t> blobs_done{0};
  std::atomic<bool> cancel{false};  ///< set to stop early (shutdown)
};

struct CheckOptions {
  bool repair = false;
  /// Hashing rate limit in bytes/s (0: unlimited), so a running server
  /// keeps its disk bandwidth for clients.
  uint64_t rate = 0;
  /// Files younger than this are not reported as rowless (a publish may be
  /// between its rename and its row).
  int64_t grace_ms = 10 * 60 * 1000;
  size_t batch = 256;
  size_t max_listed = 100;  ///< digests listed per category (counts are exact)
};

struct CheckProblem {
  std::string digest;
  std::string kind;    ///< "corrupt", "missing", "rowless"
  std::string origin;  ///< "pushed" or "cached" (rowless: "")
  std::string action;  ///< what was done / what to do
};

struct CheckReport {
  uint64_t blobs_checked = 0;
  uint64_t bytes_checked = 0;
  uint64_t corrupt = 0;          ///< wrong size or digest
  uint64_t missing = 0;          ///< rows without files
  uint64_t rowless = 0;          ///< files without rows
  uint64_t unreferenced = 0;     ///< orphan blob rows (GC removes them)
  uint64_t quarantined = 0;      ///< moved aside by repair
  uint64_t refetchable = 0;      ///< bad cached blobs: pull-through refetches them
  std::vector<std::string> dangling_tags;  ///< "repo:tag" naming a bad manifest
  std::vector<CheckProblem> problems;
  bool cancelled = false;
  int64_t started_ms = 0;
  int64_t finished_ms = 0;
  bool ok() const { return corrupt == 0 && missing == 0 && dangling_tags.empty(); }
};

/// One pass. Blocking (reads every blob): run on a worker thread. Safe
/// while serving: marks and moves happen under the exclusive publish lock,
/// and a file re-published meanwhile (another inode) is left alone.
Result<CheckReport> check_store(const GcTargets& t, const CheckOptions& o, CheckProgress* progress);

}  // namespace outpost::store
