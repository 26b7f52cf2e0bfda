// Path builders and the UploadId grammar (see the tree in layout.hpp).
#include "store/layout.hpp"

#include <sys/random.h>

#include <cassert>
#include <cerrno>
#include <cstring>

namespace outpost::store {

bool is_lower_hex(std::string_view s, size_t n) {
  if (s.size() != n) return false;
  for (char c : s)
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  return true;
}

Result<UploadId> UploadId::parse(std::string_view s) {
  if (!is_lower_hex(s, 32)) return Error(Errc::BlobUploadUnknown, "malformed upload id");
  return UploadId(std::string(s));
}

Result<UploadId> UploadId::generate() {
  unsigned char buf[16];
  size_t got = 0;
  while (got < sizeof buf) {
    ssize_t n = ::getrandom(buf + got, sizeof buf - got, 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      return Error(Errc::Internal, std::string("getrandom: ") + std::strerror(errno));
    }
    got += static_cast<size_t>(n);
  }
  return UploadId(to_hex(buf, sizeof buf));
}

bool is_storable(const Digest& d) {
  return !d.empty() && d.algorithm() == "sha256" && is_lower_hex(d.hex(), 64);
}

Layout::Layout(std::string root) : root_(std::move(root)) {
  while (root_.size() > 1 && root_.back() == '/') root_.pop_back();
}

std::string Layout::blob_shard_dir(const Digest& d) const {
  assert(is_storable(d));
  return blobs_alg_dir() + "/" + std::string(d.hex().substr(0, 2));
}

std::string Layout::blob_file(const Digest& d) const {
  return blob_shard_dir(d) + "/" + std::string(d.hex());
}

}  // namespace outpost::store
