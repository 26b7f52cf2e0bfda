// check_store: see check.hpp.
#include "store/check.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <mutex>
#include <thread>
#include <vector>

#include "base/digest.hpp"
#include "base/log.hpp"
#include "store/try.hpp"

namespace outpost::store {

namespace {

enum class Verdict { Good, Corrupt, Missing };

struct Hashed {
  Verdict verdict = Verdict::Good;
  ino_t ino = 0;
};

/// Streams the file through SHA-256, sleeping to stay under `rate`.
Result<Hashed> hash_file(const std::string& path, const BlobRow& row, const CheckOptions& o, CheckProgress* p,
                         std::chrono::steady_clock::time_point start, uint64_t& done_total) {
  Hashed h;
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) {
    if (errno == ENOENT) {
      h.verdict = Verdict::Missing;
      return h;
    }
    return fs::errno_error("open", path, errno);
  }
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) return fs::errno_error("fstat", path, errno);
  h.ino = st.st_ino;
  if (static_cast<uint64_t>(st.st_size) != row.size) {
    h.verdict = Verdict::Corrupt;
    return h;
  }
  Sha256 sha;
  std::vector<char> buf(1 << 20);
  for (;;) {
    if (p && p->cancel.load()) return Error(Errc::Cancelled, "check cancelled");
    const ssize_t n = ::read(fd.get(), buf.data(), buf.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return fs::errno_error("read", path, errno);
    if (n == 0) break;
    sha.update(buf.data(), static_cast<size_t>(n));
    done_total += static_cast<uint64_t>(n);
    if (p) p->bytes_done.fetch_add(static_cast<uint64_t>(n));
    if (o.rate > 0) {
      // Token bucket over the whole pass: sleep until the bytes read so far
      // are within the rate.
      const auto due = start + std::chrono::microseconds(done_total * 1'000'000 / o.rate);
      const auto now = std::chrono::steady_clock::now();
      if (due > now) std::this_thread::sleep_for(due - now);
    }
  }
  if (!(sha.finish() == row.digest)) h.verdict = Verdict::Corrupt;
  return h;
}

/// Moves the corrupt file aside when it is still the inode that was hashed.
Result<bool> quarantine(const GcTargets& t, const Digest& d, ino_t ino) {
  const std::string qdir = t.layout.root() + "/quarantine";
  STORE_ASSIGN(bool made, fs::make_dir(qdir));
  (void)made;
  const std::string src = t.layout.blob_file(d);
  struct stat st {};
  if (::stat(src.c_str(), &st) != 0 || st.st_ino != ino) return false;  // replaced by a good copy meanwhile
  const std::string dst = qdir + "/" + std::string(d.algorithm()) + "-" + std::string(d.hex());
  if (::rename(src.c_str(), dst.c_str()) != 0) return fs::errno_error("rename", src, errno);
  OUTPOST_TRY(fs::fsync_dir(qdir));
  return true;
}

void add_problem(CheckReport& rep, const CheckOptions& o, CheckProblem p) {
  if (rep.problems.size() < o.max_listed) rep.problems.push_back(std::move(p));
}

}  // namespace

Result<CheckReport> check_store(const GcTargets& t, const CheckOptions& opts, CheckProgress* p) {
  CheckOptions o = opts;
  if (o.batch == 0) o.batch = 1;
  CheckReport rep;
  rep.started_ms = t.meta.now_ms();
  STORE_ASSIGN(auto usage, t.meta.storage_usage(false));
  if (p) {
    p->bytes_total = usage.total;
    p->blobs_total = usage.blobs;
  }
  const auto start = std::chrono::steady_clock::now();
  uint64_t done_total = 0;
  std::string after;
  for (;;) {
    STORE_ASSIGN(auto batch, t.meta.blob_rows(after, o.batch));
    if (batch.empty()) break;
    for (const auto& row : batch) {
      after = row.digest.str();
      auto h = hash_file(t.layout.blob_file(row.digest), row, o, p, start, done_total);
      if (!h && h.error().code == Errc::Cancelled) {
        rep.cancelled = true;
        rep.finished_ms = t.meta.now_ms();
        return rep;
      }
      if (!h) return std::move(h).error();
      ++rep.blobs_checked;
      rep.bytes_checked += row.size;
      if (p) p->blobs_done.fetch_add(1);
      if (h->verdict == Verdict::Good) {
        // Marked bad earlier and good now: the file was replaced by a
        // verified publish whose row update raced the mark.
        if (row.bad) OUTPOST_TRY(t.meta.set_blob_bad(row.digest, false));
        continue;
      }
      STORE_ASSIGN(bool pushed, t.meta.is_pushed(row.digest));
      CheckProblem prob{row.digest.str(), h->verdict == Verdict::Missing ? "missing" : "corrupt",
                        pushed ? "pushed" : "cached", ""};
      (h->verdict == Verdict::Missing ? rep.missing : rep.corrupt) += 1;
      {
        std::unique_lock pub(t.publish_mu);
        // Marked under the lock: a publish of good bytes for this digest
        // (which clears the mark in its row update) cannot interleave.
        struct stat st {};
        const bool replaced = h->verdict == Verdict::Corrupt &&
                              (::stat(t.layout.blob_file(row.digest).c_str(), &st) != 0 || st.st_ino != h->ino);
        if (!replaced) OUTPOST_TRY(t.meta.set_blob_bad(row.digest, true));
        if (o.repair && h->verdict == Verdict::Corrupt && !replaced) {
          STORE_ASSIGN(bool moved, quarantine(t, row.digest, h->ino));
          if (moved) ++rep.quarantined;
        }
      }
      if (pushed) {
        prob.action = o.repair && h->verdict == Verdict::Corrupt
                          ? "quarantined; not served; pushed here, the parent may not have it: push it again"
                          : "not served; pushed here: push it again (check --repair moves the file aside)";
      } else {
        ++rep.refetchable;
        prob.action = o.repair && h->verdict == Verdict::Corrupt
                          ? "quarantined; not served; the next pull refetches it from the parent (verified)"
                          : "not served; the next pull refetches it from the parent (verified)";
      }
      log::warn("check: bad blob", " digest=" + prob.digest + " kind=" + prob.kind + " origin=" + prob.origin);
      add_problem(rep, o, std::move(prob));
    }
  }
  // Files without rows (a kill between rename and commit): GC sweeps them.
  const int64_t cutoff = t.meta.now_ms() - o.grace_ms;
  Status err;
  OUTPOST_TRY(t.blobs.scan([&](bool valid, const Digest& d, const std::string& path) {
    auto mt = fs::mtime_ms(path);
    if (!mt || *mt > cutoff) return true;
    if (valid) {
      auto row = t.meta.blob_size(d);
      if (!row) {
        err = std::move(row).error();
        return false;
      }
      if (*row) return true;
    }
    ++rep.rowless;
    add_problem(rep, o, CheckProblem{valid ? d.str() : path, "rowless", "", "swept by the next gc"});
    return true;
  }));
  OUTPOST_TRY(err);
  STORE_ASSIGN(rep.unreferenced, t.meta.count_unreferenced());
  STORE_ASSIGN(auto tags, t.meta.tags_on_bad(o.max_listed));
  for (auto& [repo, tag] : tags) rep.dangling_tags.push_back(repo + ":" + tag);
  rep.finished_ms = t.meta.now_ms();
  log::info("check done", " blobs=" + std::to_string(rep.blobs_checked) + " bytes=" +
                              std::to_string(rep.bytes_checked) + " corrupt=" + std::to_string(rep.corrupt) +
                              " missing=" + std::to_string(rep.missing) + " rowless=" + std::to_string(rep.rowless));
  return rep;
}

}  // namespace outpost::store
