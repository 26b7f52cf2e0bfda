#include "bundle/export.hpp"

#include <nlohmann/json.hpp>

#include "bundle/archive.hpp"
#include "bundle/parts.hpp"
#include "store/store.hpp"

namespace outpost::bundle {

using nlohmann::json;

Result<Compression> parse_compression(std::string_view s) {
  if (s == "none") return Compression::None;
  if (s == "gzip") return Compression::Gzip;
  if (s == "zstd") return Compression::Zstd;
  return Error(Errc::BadRequest, "--compress \"" + std::string(s) + "\": expected none, gzip or zstd");
}

namespace {

constexpr size_t kChunk = 1 << 20;  // blob copy buffer: the export's memory does not grow past it

struct Sink {
  PartWriter parts;
  Status failed;  ///< the first PartWriter error (libarchive only sees -1)
  /// Set when the export failed: libarchive's own close (from
  /// archive_write_free) would otherwise end the tar neatly after the last
  /// good entry, a tail that --resume could not match.
  bool discard = false;
  Sink(const ExportOptions& o) : parts(o.output, o.max_part, o.resume) {}
};

la_ssize_t write_cb(archive*, void* data, const void* buf, size_t len) {
  auto* s = static_cast<Sink*>(data);
  if (s->discard) return static_cast<la_ssize_t>(len);
  auto st = s->parts.write(buf, len);
  if (!st) {
    if (s->failed) s->failed = std::move(st);
    return -1;
  }
  return static_cast<la_ssize_t>(len);
}

class Writer {
 public:
  Writer(const ExportOptions& o) : o_(o), sink_(o) {}
  ~Writer() { sink_.discard = !closed_; }
  Writer(const Writer&) = delete;
  Writer& operator=(const Writer&) = delete;

  Status open() {
    a_.reset(archive_write_new());
    if (!a_) return Error(Errc::Internal, "archive_write_new failed");
    archive* a = a_.get();
    if (archive_write_set_format_pax_restricted(a) != ARCHIVE_OK) return archive_error(a, Errc::Internal, "tar format");
    int r = ARCHIVE_OK;
    if (o_.compression == Compression::Gzip) {
      r = archive_write_add_filter_gzip(a);
      // No time stamp in the gzip header: the same export gives the same bytes (--resume).
      if (r == ARCHIVE_OK) r = archive_write_set_filter_option(a, "gzip", "timestamp", nullptr);
    } else if (o_.compression == Compression::Zstd) {
      r = archive_write_add_filter_zstd(a);
    }
    if (r != ARCHIVE_OK) return archive_error(a, Errc::Internal, "compression filter");
    archive_write_set_bytes_per_block(a, 64 * 1024);
    archive_write_set_bytes_in_last_block(a, 1);
    if (archive_write_open2(a, &sink_, nullptr, write_cb, nullptr, nullptr) != ARCHIVE_OK)
      return fail("open " + o_.output);
    buf_.resize(kChunk);
    return {};
  }

  Status dir(const std::string& name) {
    ArchiveEntry e(archive_entry_new());
    archive_entry_set_pathname(e.get(), name.c_str());
    archive_entry_set_filetype(e.get(), AE_IFDIR);
    archive_entry_set_perm(e.get(), 0755);
    archive_entry_set_mtime(e.get(), 0, 0);
    if (archive_write_header(a_.get(), e.get()) != ARCHIVE_OK) return fail(name);
    return {};
  }

  Status file(const std::string& name, std::string_view bytes) {
    OUTPOST_TRY(header(name, bytes.size()));
    if (!bytes.empty() && archive_write_data(a_.get(), bytes.data(), bytes.size()) < 0) return fail(name);
    return {};
  }

  /// Copies `size` bytes of `fd` in kChunk pieces.
  Status file_from_fd(const std::string& name, int fd, uint64_t size, const std::function<void(uint64_t)>& tick) {
    OUTPOST_TRY(header(name, size));
    uint64_t off = 0;
    while (off < size) {
      auto n = store::fs::pread_some(fd, buf_.data(), std::min<uint64_t>(kChunk, size - off), off, name);
      if (!n) return std::move(n).error();
      if (*n == 0) return Error(Errc::Io, name + ": the stored blob is shorter than its recorded size");
      if (archive_write_data(a_.get(), buf_.data(), *n) < 0) return fail(name);
      off += *n;
      tick(*n);
    }
    return {};
  }

  Status close() {
    if (archive_write_close(a_.get()) != ARCHIVE_OK) return fail("finishing " + o_.output);
    OUTPOST_TRY(sink_.parts.finish());
    closed_ = true;
    return {};
  }

  const PartWriter& parts() const { return sink_.parts; }

 private:
  Status header(const std::string& name, uint64_t size) {
    ArchiveEntry e(archive_entry_new());
    archive_entry_set_pathname(e.get(), name.c_str());
    archive_entry_set_filetype(e.get(), AE_IFREG);
    archive_entry_set_perm(e.get(), 0644);
    archive_entry_set_size(e.get(), static_cast<la_int64_t>(size));
    archive_entry_set_mtime(e.get(), 0, 0);
    if (archive_write_header(a_.get(), e.get()) != ARCHIVE_OK) return fail(name);
    return {};
  }

  Error fail(const std::string& what) {
    if (!sink_.failed) return sink_.failed.error();
    return archive_error(a_.get(), Errc::Io, "writing " + what);
  }

  const ExportOptions& o_;
  Sink sink_;
  ArchiveWriter a_;
  std::vector<char> buf_;
  bool closed_ = false;
};

std::string blob_name(const Digest& d) { return "blobs/sha256/" + std::string(d.hex()); }

std::string index_json(const Plan& p) {
  json manifests = json::array();
  for (const auto& r : p.roots) {
    json ann = json::object();
    ann[kRepoAnnotation] = r.repo;
    if (r.tag) ann[kRefNameAnnotation] = *r.tag;
    manifests.push_back({{"mediaType", r.media_type}, {"digest", r.digest.str()}, {"size", r.size}, {"annotations", ann}});
  }
  json j = {{"schemaVersion", 2}, {"mediaType", "application/vnd.oci.image.index.v1+json"}, {"manifests", manifests}};
  if (p.blobs_left_out) {
    // Informational: the bundle is incremental, the importing site must hold these.
    j["annotations"] = {{"io.outpost.bundle.blobs-left-out", std::to_string(p.blobs_left_out)}};
  }
  return j.dump(1) + "\n";
}

}  // namespace

Result<ExportReport> export_bundle(store::Store& s, const ExportOptions& o) {
  auto plan = plan_selection(s, o.selection);
  if (!plan) return std::move(plan).error();
  if (plan->roots.empty()) return Error(Errc::NotFound, "nothing matches the --repo patterns in this store");

  ExportReport rep;
  for (const auto& r : plan->roots) (r.tag ? rep.tags : rep.referrers)++;
  rep.manifests = plan->manifests.size();
  rep.blobs = plan->blobs.size();
  rep.blob_bytes = plan->blob_bytes();
  rep.blobs_left_out = plan->blobs_left_out;
  rep.bytes_left_out = plan->bytes_left_out;

  Progress pr;
  pr.phase = "export";
  pr.items_total = plan->manifests.size() + plan->blobs.size();
  pr.bytes_total = rep.blob_bytes;
  auto report = [&] {
    if (o.progress) o.progress(pr);
  };

  Writer w(o);
  OUTPOST_TRY(w.open());
  OUTPOST_TRY(w.file("oci-layout", "{\"imageLayoutVersion\":\"1.0.0\"}\n"));
  OUTPOST_TRY(w.file("index.json", index_json(*plan)));
  OUTPOST_TRY(w.dir("blobs/"));
  OUTPOST_TRY(w.dir("blobs/sha256/"));
  for (const auto& m : plan->manifests) {
    if (m.bytes) {
      OUTPOST_TRY(w.file(blob_name(m.digest), *m.bytes));
    } else {
      auto bytes = s.read_manifest(m.repo, m.digest);
      if (!bytes) return Error(bytes.error().code, m.repo + "@" + m.digest.str() + ": " + bytes.error().message());
      OUTPOST_TRY(w.file(blob_name(m.digest), *bytes));
    }
    ++pr.items_done;
    report();
  }
  for (const auto& b : plan->blobs) {
    auto blob = s.open_blob(b.repo, b.digest);
    if (!blob) return Error(blob.error().code, b.repo + "@" + b.digest.str() + ": " + blob.error().message());
    OUTPOST_TRY(w.file_from_fd(blob_name(b.digest), blob->fd.get(), b.size, [&](uint64_t n) {
      pr.bytes_done += n;
      report();
    }));
    ++pr.items_done;
    report();
  }
  OUTPOST_TRY(w.close());
  rep.bytes_written = w.parts().bytes();
  rep.bytes_verified = w.parts().bytes_verified();
  rep.files = w.parts().files();
  return rep;
}

std::string report_json(const ExportReport& r) {
  json j = {{"tags", r.tags},
            {"referrers", r.referrers},
            {"manifests", r.manifests},
            {"blobs", r.blobs},
            {"blob_bytes", r.blob_bytes},
            {"blobs_left_out", r.blobs_left_out},
            {"bytes_left_out", r.bytes_left_out},
            {"bytes_written", r.bytes_written},
            {"bytes_verified", r.bytes_verified},
            {"files", r.files}};
  return j.dump();
}

}  // namespace outpost::bundle
