// POSIX file helpers for the content store: an owning fd, full writes,
// durable directory operations. Knows nothing about digests, SQLite or libuv.
#pragma once
#include <sys/types.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.hpp"

namespace outpost::store {

/// Owns one file descriptor; closes it on destruction. Move-only.
class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) : fd_(fd) {}
  ~UniqueFd() { reset(); }
  UniqueFd(UniqueFd&& o) noexcept : fd_(o.release()) {}
  UniqueFd& operator=(UniqueFd&& o) noexcept {
    if (this != &o) reset(o.release());
    return *this;
  }
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;

  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }
  /// Gives up ownership: the caller closes the returned fd.
  int release() {
    int f = fd_;
    fd_ = -1;
    return f;
  }
  void reset(int fd = -1);

 private:
  int fd_ = -1;
};

namespace fs {

/// Errc::Io carrying `what`, the path and strerror(errno).
Error errno_error(std::string_view what, const std::string& path, int err);

/// open(2) with O_CLOEXEC added; Errc::Io on failure (errno kept in detail).
Result<UniqueFd> open(const std::string& path, int flags, mode_t mode = 0644);
/// pwrite(2) until all of `data` is written at `offset` (EINTR-safe).
Status pwrite_all(int fd, std::string_view data, uint64_t offset, const std::string& path_for_error);
/// pread(2) up to `len` bytes at `offset`; returns bytes read (0 at EOF).
Result<size_t> pread_some(int fd, void* buf, size_t len, uint64_t offset, const std::string& path_for_error);
/// fsync(2) on an open fd.
Status fsync_fd(int fd, const std::string& path_for_error);
/// Opens the directory and fsyncs it, so that entries created/renamed/removed
/// in it survive power loss.
Status fsync_dir(const std::string& dir);
/// mkdir(2); returns true when it was created, false when it already existed
/// as a directory. The parent is NOT fsynced here (the caller decides).
Result<bool> make_dir(const std::string& path, mode_t mode = 0755);
/// rename(2) old -> new (atomic replace on the same filesystem).
Status rename(const std::string& from, const std::string& to);
/// unlink(2); a missing file is not an error. Returns true when removed.
Result<bool> remove_file(const std::string& path);
/// Removes a directory that contains only regular files (one level: upload
/// dirs, tmp). Missing is not an error. Never follows symlinks.
Status remove_flat_dir(const std::string& path);
/// Size of a regular file, or Errc::NotFound when absent.
Result<uint64_t> file_size(const std::string& path);
/// Names in a directory (without "." and ".."); empty when it does not exist.
/// Collected whole first so callers can remove entries without racing readdir.
Result<std::vector<std::string>> list_dir(const std::string& dir);
/// Whether a path exists (lstat).
bool exists(const std::string& path);
/// mtime in milliseconds since the epoch (lstat), Errc::NotFound when absent.
Result<int64_t> mtime_ms(const std::string& path);

}  // namespace fs
}  // namespace outpost::store
