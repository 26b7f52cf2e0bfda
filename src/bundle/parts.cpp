#include "bundle/parts.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

namespace outpost::bundle {

std::string part_path(const std::string& base, size_t index) {
  char buf[32];
  snprintf(buf, sizeof buf, ".%03zu", index);
  return base + buf;
}

PartWriter::PartWriter(std::string base, uint64_t max_part, bool resume)
    : base_(std::move(base)), max_part_(max_part), resume_(resume) {}

PartWriter::~PartWriter() = default;

Status PartWriter::open_part() {
  const std::string path = max_part_ ? part_path(base_, index_) : base_;
  existing_ = 0;
  int flags = O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC;
  if (resume_ && store::fs::exists(path)) {
    auto sz = store::fs::file_size(path);
    if (!sz) return std::move(sz).error();
    existing_ = *sz;
    if (max_part_ && existing_ > max_part_)
      return Error(Errc::BadRequest, path + " holds " + std::to_string(existing_) +
                                         " bytes, more than --max-part: not a part of this export");
    flags = O_RDWR | O_CLOEXEC;
  }
  auto fd = store::fs::open(path, flags, 0644);
  if (!fd) return std::move(fd).error();
  fd_ = std::move(*fd);
  in_part_ = 0;
  files_.push_back(path);
  return {};
}

Status PartWriter::close_part() {
  if (!fd_.valid()) return {};
  OUTPOST_TRY(store::fs::fsync_fd(fd_.get(), files_.back()));
  fd_.reset();
  ++index_;
  return {};
}

Status PartWriter::write(const void* data, size_t len) {
  const char* p = static_cast<const char*>(data);
  while (len > 0) {
    if (!fd_.valid()) OUTPOST_TRY(open_part());
    uint64_t room = max_part_ ? max_part_ - in_part_ : len;
    size_t n = static_cast<size_t>(std::min<uint64_t>(room, len));
    const std::string& path = files_.back();
    // Resume: the part of this chunk that lies inside the existing file is
    // compared, the rest is written after it.
    size_t cmp_n = in_part_ < existing_ ? static_cast<size_t>(std::min<uint64_t>(existing_ - in_part_, n)) : 0;
    if (cmp_n) {
      cmp_.resize(cmp_n);
      size_t got = 0;
      while (got < cmp_n) {
        auto r = store::fs::pread_some(fd_.get(), cmp_.data() + got, cmp_n - got, in_part_ + got, path);
        if (!r) return std::move(r).error();
        if (*r == 0) return Error(Errc::Io, path + ": shrank while resuming");
        got += *r;
      }
      if (memcmp(cmp_.data(), p, cmp_n) != 0)
        return Error(Errc::BadRequest, path + " differs from this export near byte " + std::to_string(in_part_) +
                                           ": it was written from other content or options; export again without --resume");
      verified_ += cmp_n;
    }
    if (n > cmp_n)
      OUTPOST_TRY(store::fs::pwrite_all(fd_.get(), std::string_view(p + cmp_n, n - cmp_n), in_part_ + cmp_n, path));
    in_part_ += n;
    total_ += n;
    p += n;
    len -= n;
    if (max_part_ && in_part_ == max_part_) OUTPOST_TRY(close_part());
  }
  return {};
}

Status PartWriter::finish() {
  if (!fd_.valid() && files_.empty()) OUTPOST_TRY(open_part());  // an empty stream still makes its file
  if (fd_.valid()) {
    if (in_part_ < existing_)
      return Error(Errc::BadRequest, files_.back() + " is longer than this export: it was written from other content "
                                                     "or options; export again without --resume");
    OUTPOST_TRY(close_part());
  }
  if (max_part_) {
    // Parts past the end belong to an earlier, longer export: an import
    // taking them as the stream's continuation would fail, so remove them.
    for (size_t i = index_; i < index_ + 100000; ++i) {
      auto r = store::fs::remove_file(part_path(base_, i));
      if (!r) return std::move(r).error();
      if (!*r) break;
    }
  }
  return {};
}

const std::string& PartReader::current() const {
  static const std::string none;
  if (files_.empty()) return none;
  return files_[std::min(index_, files_.size() - 1)];
}

Result<size_t> PartReader::read(char* buf, size_t len) {
  while (index_ < files_.size()) {
    if (!fd_.valid()) {
      auto fd = store::fs::open(files_[index_], O_RDONLY | O_CLOEXEC);
      if (!fd) return std::move(fd).error();
      fd_ = std::move(*fd);
    }
    ssize_t n;
    do n = ::read(fd_.get(), buf, len);
    while (n < 0 && errno == EINTR);
    if (n < 0) return store::fs::errno_error("read", files_[index_], errno);
    if (n > 0) return static_cast<size_t>(n);
    fd_.reset();
    ++index_;
  }
  return size_t{0};
}

Result<std::vector<std::string>> bundle_files(const std::string& path) {
  std::string base;
  if (path.size() > 4 && path.compare(path.size() - 4, 4, ".000") == 0) base = path.substr(0, path.size() - 4);
  else if (!store::fs::exists(path) && store::fs::exists(part_path(path, 0))) base = path;
  if (base.empty()) {
    if (!store::fs::exists(path)) return Error(Errc::NotFound, path + ": no such file or directory");
    return std::vector<std::string>{path};
  }
  std::vector<std::string> out;
  for (size_t i = 0; i < 100000 && store::fs::exists(part_path(base, i)); ++i) out.push_back(part_path(base, i));
  return out;
}

}  // namespace outpost::bundle
