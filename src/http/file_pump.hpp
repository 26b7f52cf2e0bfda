// Reads a file region for a connection that cannot use sendfile (TLS: the
// bytes must pass through mbedTLS to be encrypted). Chunks are read on
// libuv's pool (uv_fs_read: a cold blob must not stall the loop) into two
// 64 KiB buffers: one is being encrypted and sent while the next is read.
// Memory per connection is 128 KiB however large the blob, and a client
// that reads slowly stops the reading too (nothing is read ahead beyond
// the second buffer): backpressure reaches the disk.
// Loop thread only.
#pragma once
#include <uv.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

namespace outpost::http {

class FilePump {
 public:
  static constexpr size_t kChunk = 64 * 1024;
  /// Takes ownership of `fd` and starts reading. `on_ready` runs on the loop
  /// each time a read ends (with bytes, or with an error()).
  static FilePump* start(uv_loop_t* loop, int fd, uint64_t offset, uint64_t length, std::function<void()> on_ready);
  FilePump(const FilePump&) = delete;
  FilePump& operator=(const FilePump&) = delete;

  /// Bytes to send now, in file order; empty while the next read is in flight.
  std::string_view ready() const;
  /// `n` bytes of ready() were sent: frees the buffer when it is used up
  /// and starts the next read.
  void consume(size_t n);
  /// Non-empty once a read failed or the file ended early.
  const std::string& error() const { return error_; }
  /// The owner is done with it (sent, or the connection closed): frees it
  /// now, or when the read in flight ends (libuv still writes into it).
  /// on_ready never runs after this.
  void release();

 private:
  struct Buf {
    std::unique_ptr<char[]> data;
    size_t len = 0;  // bytes read into it
    size_t pos = 0;  // bytes of it consumed
  };
  FilePump(uv_loop_t* loop, int fd, uint64_t offset, uint64_t length, std::function<void()> on_ready);
  ~FilePump();
  void kick();
  static void on_read(uv_fs_t* req) noexcept;

  uv_loop_t* loop_;
  int fd_;
  uint64_t read_off_;   // next file offset to read
  uint64_t read_left_;  // bytes of the region not read yet
  std::function<void()> on_ready_;
  Buf bufs_[2];
  int head_ = 0;        // buffer consumed first
  int reading_ = -1;    // buffer a read is filling, or -1
  uv_fs_t req_;
  bool released_ = false;
  std::string error_;
};

}  // namespace outpost::http
