#include "bundle/entries.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

#include "bundle/archive.hpp"
#include "bundle/parts.hpp"
#include "store/fs.hpp"

namespace outpost::bundle {

Result<std::string> safe_entry_name(std::string_view name) {
  auto bad = [&](const char* why) {
    return Error(Errc::BadRequest, "entry \"" + std::string(name) + "\": " + why + "; refusing the bundle");
  };
  if (name.empty()) return bad("empty name");
  if (name.front() == '/') return bad("absolute path");
  size_t start = 0;
  while (start <= name.size()) {
    size_t slash = name.find('/', start);
    std::string_view comp = name.substr(start, slash == std::string_view::npos ? std::string_view::npos : slash - start);
    if (comp == "..") return bad("path leaves the bundle (\"..\")");
    if (slash == std::string_view::npos) break;
    start = slash + 1;
  }
  while (name.size() >= 2 && name.substr(0, 2) == "./") name.remove_prefix(2);
  return std::string(name);
}

Result<std::string> resolve_link(const std::string& name, std::string_view target) {
  auto bad = [&] {
    return Error(Errc::BadRequest, "entry \"" + name + "\": link target \"" + std::string(target) +
                                       "\" leaves the bundle; refusing the bundle");
  };
  if (target.empty() || target.front() == '/') return bad();
  std::vector<std::string> parts;
  auto push = [&](std::string_view path, bool is_dir_of_name) -> bool {
    std::vector<std::string_view> comps;
    size_t start = 0;
    while (start <= path.size()) {
      size_t slash = path.find('/', start);
      comps.push_back(path.substr(start, slash == std::string_view::npos ? std::string_view::npos : slash - start));
      if (slash == std::string_view::npos) break;
      start = slash + 1;
    }
    if (is_dir_of_name && !comps.empty()) comps.pop_back();  // the entry's own file name
    for (auto c : comps) {
      if (c.empty() || c == ".") continue;
      if (c == "..") {
        if (parts.empty()) return false;
        parts.pop_back();
      } else {
        parts.emplace_back(c);
      }
    }
    return true;
  };
  if (!push(name, true) || !push(target, false) || parts.empty()) return bad();
  std::string out;
  for (const auto& p : parts) out += (out.empty() ? "" : "/") + p;
  return out;
}

namespace {

constexpr size_t kReadBlock = 256 * 1024;

struct TarSource {
  PartReader parts;
  std::vector<char> buf = std::vector<char>(kReadBlock);
  Status failed;
  explicit TarSource(std::vector<std::string> files) : parts(std::move(files)) {}
};

la_ssize_t read_cb(archive* a, void* data, const void** out) {
  auto* s = static_cast<TarSource*>(data);
  auto n = s->parts.read(s->buf.data(), s->buf.size());
  if (!n) {
    s->failed = std::move(n).error();
    archive_set_error(a, EIO, "%s", s->failed.error().message().c_str());
    return -1;
  }
  *out = s->buf.data();
  return static_cast<la_ssize_t>(*n);
}

class TarEntries final : public EntryReader {
 public:
  explicit TarEntries(std::vector<std::string> files) : src_(std::move(files)) {}

  Status open() {
    a_.reset(archive_read_new());
    if (!a_) return Error(Errc::Internal, "archive_read_new failed");
    archive_read_support_filter_all(a_.get());
    archive_read_support_format_tar(a_.get());
    if (archive_read_open(a_.get(), &src_, nullptr, read_cb, nullptr) != ARCHIVE_OK)
      return archive_error(a_.get(), Errc::BadRequest, src_.parts.current() + ": not a tar archive");
    return {};
  }

  Result<std::optional<EntryInfo>> next() override {
    archive_entry* e = nullptr;
    int r = archive_read_next_header(a_.get(), &e);
    if (r == ARCHIVE_EOF) return std::optional<EntryInfo>();
    if (r < ARCHIVE_WARN) {
      std::string where = last_.empty() ? src_.parts.current() : "after entry \"" + last_ + "\"";
      return archive_error(a_.get(), Errc::BadRequest, where + ": the bundle is damaged or truncated");
    }
    const char* p = archive_entry_pathname(e);
    if (!p) return Error(Errc::BadRequest, "after entry \"" + last_ + "\": an entry name that cannot be read");
    auto name = safe_entry_name(p);
    if (!name) return std::move(name).error();
    EntryInfo info;
    // A link's target must stay inside too; links are only ever followed
    // to other entries of the bundle (docker save's shared layers).
    if (const char* t = archive_entry_symlink(e)) {
      auto l = resolve_link(*name, t);
      if (!l) return std::move(l).error();
      info.link = *l;
    } else if (const char* h = archive_entry_hardlink(e)) {
      auto l = safe_entry_name(h);
      if (!l) return Error(Errc::BadRequest, "entry \"" + *name + "\": link target \"" + h + "\" leaves the bundle; refusing the bundle");
      info.link = *l;
    }
    last_ = *name;
    info.name = *name;
    info.size = archive_entry_size_is_set(e) ? static_cast<uint64_t>(archive_entry_size(e)) : 0;
    info.regular = archive_entry_filetype(e) == AE_IFREG && !archive_entry_hardlink(e);
    return std::optional<EntryInfo>(std::move(info));
  }

  Result<size_t> read(char* buf, size_t len) override {
    la_ssize_t n = archive_read_data(a_.get(), buf, len);
    if (n < 0) return archive_error(a_.get(), Errc::BadRequest, "entry \"" + last_ + "\": the bundle is damaged or truncated");
    return static_cast<size_t>(n);
  }

 private:
  TarSource src_;
  ArchiveReader a_;
  std::string last_;
};

/// A plain OCI layout directory: oci-layout, index.json, then the files of
/// blobs/<alg>/ in name order. Skipping an entry costs nothing.
class DirEntries final : public EntryReader {
 public:
  explicit DirEntries(std::string dir) : dir_(std::move(dir)) {}

  Status open() {
    for (const char* f : {"oci-layout", "index.json", "manifest.json"})
      if (store::fs::exists(dir_ + "/" + f)) names_.emplace_back(f);
    auto algs = store::fs::list_dir(dir_ + "/blobs");
    if (!algs) return std::move(algs).error();
    std::sort(algs->begin(), algs->end());
    for (const auto& alg : *algs) {
      auto files = store::fs::list_dir(dir_ + "/blobs/" + alg);
      if (!files) continue;  // not a directory
      std::sort(files->begin(), files->end());
      for (const auto& f : *files) names_.push_back("blobs/" + alg + "/" + f);
    }
    return {};
  }

  Result<std::optional<EntryInfo>> next() override {
    fd_.reset();
    if (i_ >= names_.size()) return std::optional<EntryInfo>();
    EntryInfo info;
    info.name = names_[i_++];
    const std::string path = dir_ + "/" + info.name;
    struct stat st;
    if (lstat(path.c_str(), &st) != 0) return store::fs::errno_error("stat", path, errno);
    info.regular = S_ISREG(st.st_mode);  // symlinks are never followed
    info.size = static_cast<uint64_t>(st.st_size);
    if (info.regular) {
      auto fd = store::fs::open(path, O_RDONLY | O_NOFOLLOW);
      if (!fd) return std::move(fd).error();
      fd_ = std::move(*fd);
      off_ = 0;
    }
    return std::optional<EntryInfo>(std::move(info));
  }

  Result<size_t> read(char* buf, size_t len) override {
    if (!fd_.valid()) return size_t{0};
    auto n = store::fs::pread_some(fd_.get(), buf, len, off_, names_[i_ - 1]);
    if (n) off_ += *n;
    return n;
  }

 private:
  std::string dir_;
  std::vector<std::string> names_;
  size_t i_ = 0;
  store::UniqueFd fd_;
  uint64_t off_ = 0;
};

}  // namespace

Result<std::unique_ptr<EntryReader>> open_entries(const std::vector<std::string>& inputs) {
  if (inputs.empty()) return Error(Errc::BadRequest, "no input");
  struct stat st;
  if (inputs.size() == 1 && stat(inputs[0].c_str(), &st) == 0 && S_ISDIR(st.st_mode)) {
    auto d = std::make_unique<DirEntries>(inputs[0]);
    OUTPOST_TRY(d->open());
    return std::unique_ptr<EntryReader>(std::move(d));
  }
  auto t = std::make_unique<TarEntries>(inputs);
  OUTPOST_TRY(t->open());
  return std::unique_ptr<EntryReader>(std::move(t));
}

}  // namespace outpost::bundle
