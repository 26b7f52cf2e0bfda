#include "auth/instance_id.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "auth/crypto.hpp"

namespace outpost::auth {

namespace {
bool valid_id(const std::string& s) {
  if (s.size() < 8 || s.size() > 64) return false;
  for (char c : s)
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_'))
      return false;
  return true;
}
}  // namespace

Result<std::string> load_or_create_instance_id(const std::string& root) {
  const std::string path = root + "/instance-id";
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd >= 0) {
    char buf[128];
    ssize_t n = ::read(fd, buf, sizeof buf);
    ::close(fd);
    std::string s(buf, n > 0 ? static_cast<size_t>(n) : 0);
    while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
    if (!valid_id(s)) return Error(Errc::ConfigInvalid, path + " does not hold an instance id (delete it to make a new one)");
    return s;
  }
  if (errno != ENOENT) return Error(Errc::Io, "cannot read " + path + ": " + std::strerror(errno));
  auto raw = random_bytes(16);
  if (!raw) return std::move(raw).error();
  std::string id = b64url_encode(*raw);
  // Written under a temporary name and renamed: a crash leaves no half id.
  const std::string tmp = path + ".tmp";
  fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return Error(Errc::Io, "cannot create " + tmp + ": " + std::strerror(errno));
  std::string line = id + "\n";
  bool ok = ::write(fd, line.data(), line.size()) == static_cast<ssize_t>(line.size()) && ::fsync(fd) == 0;
  ::close(fd);
  if (!ok || ::rename(tmp.c_str(), path.c_str()) != 0) return Error(Errc::Io, "cannot write " + path);
  int dfd = ::open(root.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
  return id;
}

}  // namespace outpost::auth
