// Test helpers for the store tests: a temp sandbox removed at scope exit,
// a clock that can be moved forward, file listing helpers.
#pragma once
#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "base/digest.hpp"
#include "store/store.hpp"

namespace outpost::store::test {

/// mkdtemp'd sandbox; `root()` is a not-yet-existing store root inside it so
/// tests can check that nothing appears next to the root.
class Sandbox {
 public:
  Sandbox() {
    const char* base = std::getenv("TMPDIR");
    std::string tmpl = std::string(base && *base ? base : "/tmp") + "/outpost-store-XXXXXX";
    std::vector<char> buf(tmpl.begin(), tmpl.end());
    buf.push_back('\0');
    char* p = ::mkdtemp(buf.data());
    if (p == nullptr) throw std::runtime_error("mkdtemp failed");
    dir_ = p;
  }
  ~Sandbox() {
    std::error_code ec;
    // Blobs are 0444; directories stay writable, so remove_all works.
    std::filesystem::remove_all(dir_, ec);
  }
  Sandbox(const Sandbox&) = delete;
  Sandbox& operator=(const Sandbox&) = delete;

  const std::string& dir() const { return dir_; }
  std::string root() const { return dir_ + "/root"; }

 private:
  std::string dir_;
};

/// Real time plus an adjustable offset (file mtimes follow real time, so GC
/// tests move the clock forward rather than back).
class TestClock {
 public:
  TestClock() : offset_(std::make_shared<std::atomic<int64_t>>(0)) {}
  Clock fn() const {
    auto off = offset_;
    return [off] { return system_clock_ms() + off->load(); };
  }
  void advance_ms(int64_t ms) { *offset_ += ms; }

 private:
  std::shared_ptr<std::atomic<int64_t>> offset_;
};

inline StoreOptions options(const TestClock& c, size_t max_open_uploads = 256) {
  StoreOptions o;
  o.clock = c.fn();
  o.max_open_uploads = max_open_uploads;
  return o;
}

/// Every regular file below `dir`, relative, sorted.
inline std::vector<std::string> files_under(const std::string& dir) {
  std::vector<std::string> out;
  std::error_code ec;
  for (auto it = std::filesystem::recursive_directory_iterator(dir, ec);
       !ec && it != std::filesystem::recursive_directory_iterator(); it.increment(ec)) {
    if (it->is_regular_file()) out.push_back(std::filesystem::relative(it->path(), dir).string());
  }
  std::sort(out.begin(), out.end());
  return out;
}

/// Files below root/blobs only.
inline std::vector<std::string> blob_files(const std::string& root) { return files_under(root + "/blobs"); }

inline std::string read_fd(int fd) {
  std::string out;
  char buf[4096];
  off_t off = 0;
  for (;;) {
    ssize_t n = ::pread(fd, buf, sizeof buf, off);
    if (n <= 0) break;
    out.append(buf, static_cast<size_t>(n));
    off += n;
  }
  return out;
}

/// Byte comparison that keeps binary content out of Catch's expression
/// expansion (the TAP reporter would print it and break the TAP stream).
inline bool same_bytes(const std::string& a, const std::string& b) { return a == b; }

inline std::string pattern_bytes(size_t n, unsigned seed = 1) {
  std::string s(n, '\0');
  uint32_t x = seed * 2654435761u + 12345u;
  for (auto& c : s) {
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    c = static_cast<char>(x & 0xff);
  }
  return s;
}

inline Digest digest_of(std::string_view s) { return Digest::sha256_of(s); }

inline Digest parse_digest(std::string_view s) {
  auto d = Digest::parse(s);
  if (!d) throw std::runtime_error("bad digest in test: " + std::string(s));
  return *d;
}

}  // namespace outpost::store::test
