// BlobStore: verified publish by rename, reads by fd, GC unlink and scan.
#include "store/blob_store.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <memory>

namespace outpost::store {

namespace {

struct DirCloser {
  void operator()(DIR* d) const { ::closedir(d); }
};
using DirPtr = std::unique_ptr<DIR, DirCloser>;

}  // namespace

Status BlobStore::init() {
  OUTPOST_TRY(fs::make_dir(layout_.blobs_dir()));
  auto created = fs::make_dir(layout_.blobs_alg_dir());
  if (!created) return std::move(created).error();
  if (*created) OUTPOST_TRY(fs::fsync_dir(layout_.blobs_dir()));
  return {};
}

Result<uint64_t> BlobStore::stat(const Digest& d) const {
  if (!is_storable(d)) return Error(Errc::BlobUnknown, d.str());
  auto sz = fs::file_size(layout_.blob_file(d));
  if (!sz) {
    if (sz.error().code == Errc::NotFound) return Error(Errc::BlobUnknown, d.str());
    return std::move(sz).error();
  }
  return *sz;
}

Result<UniqueFd> BlobStore::open_read(const Digest& d) const {
  if (!is_storable(d)) return Error(Errc::BlobUnknown, d.str());
  auto fd = fs::open(layout_.blob_file(d), O_RDONLY | O_NOFOLLOW);
  if (!fd) {
    if (fd.error().code == Errc::NotFound) return Error(Errc::BlobUnknown, d.str());
    return std::move(fd).error();
  }
  return fd;
}

Result<std::string> BlobStore::read_all(const Digest& d, uint64_t max_bytes) const {
  auto fd = open_read(d);
  if (!fd) return std::move(fd).error();
  struct stat st {};
  if (::fstat(fd->get(), &st) != 0) return fs::errno_error("fstat", layout_.blob_file(d), errno);
  const auto size = static_cast<uint64_t>(st.st_size);
  if (size > max_bytes) return Error(Errc::BodyTooLarge, d.str() + " is larger than " + std::to_string(max_bytes));
  std::string out(size, '\0');
  uint64_t off = 0;
  while (off < size) {
    auto n = fs::pread_some(fd->get(), out.data() + off, size - off, off, layout_.blob_file(d));
    if (!n) return std::move(n).error();
    if (*n == 0) return Error(Errc::Io, "short read of " + layout_.blob_file(d));
    off += *n;
  }
  return out;
}

Status BlobStore::publish(const std::string& src, const Digest& d) {
  if (!is_storable(d)) return Error(Errc::Unsupported, "unsupported digest algorithm: " + d.str());
  const std::string shard = layout_.blob_shard_dir(d);
  auto created = fs::make_dir(shard);
  if (!created) return std::move(created).error();
  // A new shard's own entry lives in blobs/sha256: make it durable too, or the
  // blob could vanish with its directory on power loss.
  if (*created) OUTPOST_TRY(fs::fsync_dir(layout_.blobs_alg_dir()));
  // Blobs are immutable; 0444 keeps an operator's stray write from corrupting one.
  if (::chmod(src.c_str(), 0444) != 0) return fs::errno_error("chmod", src, errno);
  OUTPOST_TRY(fs::rename(src, layout_.blob_file(d)));
  return fs::fsync_dir(shard);
}

Status BlobStore::write_verified(const Digest& d, std::string_view bytes) {
  if (!is_storable(d)) return Error(Errc::Unsupported, "unsupported digest algorithm: " + d.str());
  auto id = UploadId::generate();
  if (!id) return std::move(id).error();
  const std::string tmp = layout_.tmp_file(*id);
  auto fd = fs::open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, 0644);
  if (!fd) return std::move(fd).error();
  Status st = fs::pwrite_all(fd->get(), bytes, 0, tmp);
  if (st.ok()) st = fs::fsync_fd(fd->get(), tmp);
  fd->reset();
  if (st.ok()) st = publish(tmp, d);
  if (!st.ok()) (void)fs::remove_file(tmp);
  return st;
}

Result<bool> BlobStore::remove(const Digest& d) {
  if (!is_storable(d)) return false;
  return fs::remove_file(layout_.blob_file(d));
}

Status BlobStore::scan(
    const std::function<bool(bool name_is_valid, const Digest& d, const std::string& path)>& fn) const {
  const std::string alg = layout_.blobs_alg_dir();
  DirPtr top(::opendir(alg.c_str()));
  if (!top) {
    if (errno == ENOENT) return {};
    return fs::errno_error("opendir", alg, errno);
  }
  const Digest none;
  while (dirent* se = ::readdir(top.get())) {
    std::string_view shard(se->d_name);
    if (shard == "." || shard == "..") continue;
    const std::string shard_path = alg + "/" + std::string(shard);
    DirPtr sub(::opendir(shard_path.c_str()));
    if (!sub) {
      if (errno == ENOTDIR) {  // a stray file directly under blobs/sha256
        if (!fn(false, none, shard_path)) return {};
        continue;
      }
      if (errno == ENOENT) continue;
      return fs::errno_error("opendir", shard_path, errno);
    }
    while (dirent* fe = ::readdir(sub.get())) {
      std::string_view name(fe->d_name);
      if (name == "." || name == "..") continue;
      const std::string path = shard_path + "/" + std::string(name);
      bool valid = is_lower_hex(name, 64) && name.substr(0, 2) == shard;
      Digest d;
      if (valid) {
        auto parsed = Digest::parse("sha256:" + std::string(name));
        valid = parsed.ok();
        if (valid) d = std::move(*parsed);
      }
      if (!fn(valid, valid ? d : none, path)) return {};
    }
  }
  return {};
}

}  // namespace outpost::store
