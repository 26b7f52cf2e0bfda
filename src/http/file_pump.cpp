#include "http/file_pump.hpp"

#include <unistd.h>

#include <algorithm>

namespace outpost::http {

FilePump* FilePump::start(uv_loop_t* loop, int fd, uint64_t offset, uint64_t length, std::function<void()> on_ready) {
  auto* p = new FilePump(loop, fd, offset, length, std::move(on_ready));
  p->kick();
  return p;
}

FilePump::FilePump(uv_loop_t* loop, int fd, uint64_t offset, uint64_t length, std::function<void()> on_ready)
    : loop_(loop), fd_(fd), read_off_(offset), read_left_(length), on_ready_(std::move(on_ready)) {
  req_.data = this;
}

FilePump::~FilePump() {
  if (fd_ >= 0) ::close(fd_);
}

std::string_view FilePump::ready() const {
  const Buf& b = bufs_[head_];
  if (head_ == reading_) return {};
  return {b.data.get() + b.pos, b.len - b.pos};
}

void FilePump::consume(size_t n) {
  Buf& b = bufs_[head_];
  b.pos += std::min(n, b.len - b.pos);
  if (b.pos < b.len) return;
  b.len = b.pos = 0;
  const int other = head_ ^ 1;
  if (bufs_[other].len > 0 || reading_ == other) head_ = other;
  kick();
}

void FilePump::kick() {
  if (reading_ >= 0 || read_left_ == 0 || !error_.empty() || released_) return;
  // The empty buffer to fill: the one after head_, or head_ itself when both are empty.
  int idx;
  if (bufs_[head_].len == 0) idx = head_;
  else if (bufs_[head_ ^ 1].len == 0) idx = head_ ^ 1;
  else return;  // both full: the client is slower than the disk
  Buf& b = bufs_[idx];
  if (!b.data) b.data.reset(new char[kChunk]);
  const size_t want = static_cast<size_t>(std::min<uint64_t>(read_left_, kChunk));
  uv_buf_t ub = uv_buf_init(b.data.get(), static_cast<unsigned>(want));
  reading_ = idx;
  int rc = uv_fs_read(loop_, &req_, fd_, &ub, 1, static_cast<int64_t>(read_off_), on_read);
  if (rc < 0) {
    reading_ = -1;
    error_ = std::string("read: ") + uv_strerror(rc);
  }
}

void FilePump::on_read(uv_fs_t* req) noexcept {
  auto* p = static_cast<FilePump*>(req->data);
  const ssize_t n = req->result;
  uv_fs_req_cleanup(req);
  const int idx = p->reading_;
  p->reading_ = -1;
  if (p->released_) {
    delete p;
    return;
  }
  if (n < 0) {
    p->error_ = std::string("read: ") + uv_strerror(static_cast<int>(n));
  } else if (n == 0) {
    p->error_ = "file shorter than its response length";
  } else {
    p->bufs_[idx].len = static_cast<size_t>(n);
    p->bufs_[idx].pos = 0;
    p->read_off_ += static_cast<uint64_t>(n);
    p->read_left_ -= static_cast<uint64_t>(n);
    if (p->bufs_[p->head_].len == 0) p->head_ = idx;
    p->kick();  // read ahead into the other buffer
  }
  if (p->on_ready_) {
    auto cb = p->on_ready_;  // it may release() us
    cb();
  }
}

void FilePump::release() {
  released_ = true;
  on_ready_ = nullptr;
  if (reading_ < 0) delete this;
}

}  // namespace outpost::http
