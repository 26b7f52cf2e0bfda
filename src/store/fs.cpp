// POSIX file helpers for the content store. Every call retries EINTR and
// reports failures as Errc::Io values with the path and errno text.
#include "store/fs.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace outpost::store {

void UniqueFd::reset(int fd) {
  if (fd_ >= 0) ::close(fd_);  // close(2) errors on a read/writable fd are reported by fsync first
  fd_ = fd;
}

namespace fs {

Error errno_error(std::string_view what, const std::string& path, int err) {
  std::string d(what);
  d += " ";
  d += path;
  d += ": ";
  d += std::strerror(err);
  // Disk full is not an I/O fault: the client gets 507 saying so, and the
  // write can succeed once eviction or the operator frees space.
  if (err == ENOSPC || err == EDQUOT)
    return Error(Errc::InsufficientStorage, "insufficient storage: the registry's disk is full (" + d + ")");
  return Error(Errc::Io, std::move(d));
}

Result<UniqueFd> open(const std::string& path, int flags, mode_t mode) {
  for (;;) {
    int fd = ::open(path.c_str(), flags | O_CLOEXEC, mode);
    if (fd >= 0) return UniqueFd(fd);
    if (errno == EINTR) continue;
    int e = errno;
    if (e == ENOENT) return Error(Errc::NotFound, "open " + path + ": " + std::strerror(e));
    return errno_error("open", path, e);
  }
}

Status pwrite_all(int fd, std::string_view data, uint64_t offset, const std::string& path) {
  const char* p = data.data();
  size_t left = data.size();
  while (left > 0) {
    ssize_t n = ::pwrite(fd, p, left, static_cast<off_t>(offset));
    if (n < 0) {
      if (errno == EINTR) continue;
      return errno_error("pwrite", path, errno);
    }
    p += n;
    left -= static_cast<size_t>(n);
    offset += static_cast<uint64_t>(n);
  }
  return {};
}

Result<size_t> pread_some(int fd, void* buf, size_t len, uint64_t offset, const std::string& path) {
  for (;;) {
    ssize_t n = ::pread(fd, buf, len, static_cast<off_t>(offset));
    if (n >= 0) return static_cast<size_t>(n);
    if (errno == EINTR) continue;
    return errno_error("pread", path, errno);
  }
}

Status fsync_fd(int fd, const std::string& path) {
  // No EINTR retry loop: fsync is not interrupted by signals on Linux, and a
  // failed fsync must never be retried as if it succeeded (the "fsyncgate" rule).
  if (::fsync(fd) != 0) return errno_error("fsync", path, errno);
  return {};
}

Status fsync_dir(const std::string& dir) {
  auto fd = open(dir, O_RDONLY | O_DIRECTORY);
  if (!fd) return std::move(fd).error();
  return fsync_fd(fd->get(), dir);
}

Result<bool> make_dir(const std::string& path, mode_t mode) {
  if (::mkdir(path.c_str(), mode) == 0) return true;
  int e = errno;
  if (e == EEXIST) {
    struct stat st {};
    if (::lstat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode)) return false;
    return Error(Errc::Io, "mkdir " + path + ": exists and is not a directory");
  }
  return errno_error("mkdir", path, e);
}

Status rename(const std::string& from, const std::string& to) {
  if (::rename(from.c_str(), to.c_str()) != 0) return errno_error("rename " + from + " ->", to, errno);
  return {};
}

Result<bool> remove_file(const std::string& path) {
  if (::unlink(path.c_str()) == 0) return true;
  if (errno == ENOENT) return false;
  return errno_error("unlink", path, errno);
}

Status remove_flat_dir(const std::string& path) {
  DIR* d = ::opendir(path.c_str());
  if (d == nullptr) {
    if (errno == ENOENT) return {};
    return errno_error("opendir", path, errno);
  }
  Status st;
  while (dirent* e = ::readdir(d)) {
    std::string_view name(e->d_name);
    if (name == "." || name == "..") continue;
    auto r = remove_file(path + "/" + std::string(name));
    if (!r && st.ok()) st = std::move(r).error();
  }
  ::closedir(d);
  if (::rmdir(path.c_str()) != 0 && errno != ENOENT && st.ok()) st = errno_error("rmdir", path, errno);
  return st;
}

Result<uint64_t> file_size(const std::string& path) {
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0) {
    if (errno == ENOENT) return Error(Errc::NotFound, path);
    return errno_error("stat", path, errno);
  }
  if (!S_ISREG(st.st_mode)) return Error(Errc::Io, path + " is not a regular file");
  return static_cast<uint64_t>(st.st_size);
}

bool exists(const std::string& path) {
  struct stat st {};
  return ::lstat(path.c_str(), &st) == 0;
}

Result<int64_t> mtime_ms(const std::string& path) {
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0) {
    if (errno == ENOENT) return Error(Errc::NotFound, path);
    return errno_error("stat", path, errno);
  }
  return static_cast<int64_t>(st.st_mtim.tv_sec) * 1000 + st.st_mtim.tv_nsec / 1000000;
}

Result<std::vector<std::string>> list_dir(const std::string& dir) {
  std::vector<std::string> names;
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) {
    if (errno == ENOENT) return names;
    return errno_error("opendir", dir, errno);
  }
  while (dirent* e = ::readdir(d)) {
    std::string_view n(e->d_name);
    if (n != "." && n != "..") names.emplace_back(n);
  }
  ::closedir(d);
  return names;
}

}  // namespace fs
}  // namespace outpost::store
