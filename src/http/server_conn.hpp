// One client connection: a state machine over a non-blocking socket watched
// with uv_poll. Reads and parses (llhttp), dispatches one request at a time
// (pipelined requests wait in the input buffer and are answered in order),
// writes responses from an output queue (bytes with writev, file regions
// with sendfile), and enforces the per-connection deadlines.
//
// On an HTTPS listener the same machine runs over a net::TlsSession: a
// handshake first (under the head deadline), then reads decrypt into the
// parser and writes encrypt, record by record; file regions go through a
// FilePump (see write_front: the one place plain and TLS output differ).
//
//   Idle --first byte--> Head --headers done--> Handling --response done--> Idle
//                          |                      |  (body streamed to the Exchange)
//                          +--timeout: 408        +--client gone: Exchange::on_abort
//   any --close()--> Closing --uv_close x2--> freed
//   response done while request body unread --> Lingering (drain, then close)
#pragma once
#include <llhttp.h>
#include <uv.h>

#include <deque>
#include <memory>
#include <string>

#include "http/exchange.hpp"
#include "http/message.hpp"
#include "net/tls.hpp"

namespace outpost::http {

class Server;
class FilePump;

class ServerConn {
 public:
  /// With `tls`, the connection speaks HTTPS with that certificate (kept
  /// for its whole life, whatever a reload does).
  ServerConn(Server* server, int fd, std::string peer, std::shared_ptr<net::TlsServerConfig> tls = nullptr);
  void start();
  /// Tears the connection down now; the object frees itself after libuv
  /// closes its handles. Safe to call more than once.
  void close();
  /// Graceful shutdown: close now when idle, else after the current response.
  void close_when_idle();
  /// Runs parsing that was put off until the current callback returned.
  void process_deferred_();
  /// Idle between requests with nothing buffered either way: the server may
  /// close it to make room for a new client (never one mid-request).
  bool quiet() const;
  /// Links of the server's quiet list (intrusive: listing and unlisting a
  /// connection, once per request, allocates nothing). Server only.
  struct QuietLinks {
    ServerConn* prev = nullptr;
    ServerConn* next = nullptr;
  };
  QuietLinks& quiet_links_() { return quiet_links_v_; }

  // ---- called by Exchange --------------------------------------------------
  void ex_read_body_();
  void ex_resume_body_();
  void ex_pause_body_();
  /// Queues bytes (a response head, a body, a chunk) and flushes.
  void ex_send_(std::string bytes);
  /// Queues a file region (sent with sendfile); takes ownership of `fd`.
  void ex_send_file_(int fd, uint64_t offset, uint64_t length);
  void ex_response_done_();
  void ex_abort_();
  void ex_wants_drain_();
  size_t ex_queued_bytes_() const { return out_bytes_; }
  size_t ex_queued_files_() const { return out_files_; }
  bool ex_close_after_response_() const;
  int ex_http_minor_() const { return http_minor_; }
  Server* server() const { return server_; }

  static constexpr size_t kHighWater = 256 * 1024;
  static constexpr size_t kLowWater = 64 * 1024;

  // llhttp trampolines, in the order they fire for a request.
  static int on_message_begin(llhttp_t* p) noexcept;
  static int on_url(llhttp_t* p, const char* at, size_t len) noexcept;
  static int on_header_field(llhttp_t* p, const char* at, size_t len) noexcept;
  static int on_header_value(llhttp_t* p, const char* at, size_t len) noexcept;
  static int on_header_value_complete(llhttp_t* p) noexcept;
  static int on_headers_complete(llhttp_t* p) noexcept;
  static int on_body(llhttp_t* p, const char* at, size_t len) noexcept;
  static int on_message_complete(llhttp_t* p) noexcept;

 private:
  enum class State { Idle, Head, Handling, Lingering, Closing };
  ~ServerConn();

  static void on_poll(uv_poll_t* h, int status, int events) noexcept;
  static void on_timer(uv_timer_t* t) noexcept;
  static void on_handle_closed(uv_handle_t* h) noexcept;
  void on_readable();
  void continue_handshake();
  bool refuse_plain_http();  // a plain HTTP request on the TLS port: answered and closed
  void process_input();
  void on_parse_error(llhttp_errno_t err);
  bool answered_for_good() const;  // an answer is out or queued: lingering or closing follows
  /// The request line read so far is `method SP target SP HTTP/1.x`.
  bool request_line_is_well_formed() const;
  bool starts_with_tls_record() const;
  bool can_parse() const;
  bool count_head(size_t len);
  bool check_head();                                  // Host and request-target rules
  bool fail_head(int status, std::string reason);     // sets reject_status_, returns false
  void dispatch();
  void reject(int status, std::string_view message);  // error before or instead of the handler
  void flush();
  /// One write step for the front of out_: plain bytes with sendmsg and file
  /// regions with sendfile, or over TLS records via mbedTLS and files via a
  /// FilePump. Returns bytes taken (> 0), 0 to wait (socket full:
  /// write_blocked_ set; or a disk read in flight), -1 when the connection failed.
  ssize_t write_front();
  ssize_t send_bytes();
  ssize_t tls_send(const char* p, size_t n);
  void consume_bytes(size_t n);
  void drop_file_item();
  /// TCP_CORK on or off; off sends the partial segment the kernel held.
  void set_cork(bool on);
  void on_file_ready();
  void finish_cycle();
  void start_lingering();
  void update_poll();
  void refresh_timer();
  uint64_t deadline() const;  // loop time (ms) of the deadline that holds now, or UINT64_MAX
  void update_quiet();  // keeps the server's quiet list in step with quiet()
  bool want_read() const;
  bool body_active() const;            // reading a body: reader set, not paused, not complete
  void account_body_time(uint64_t now);
  uint64_t rate_deadline() const;      // loop time the body falls below min_body_rate, or UINT64_MAX
  bool output_backlogged() const;      // too much unsent output to start another request
  void log_access(Exchange* ex, const char* outcome);

  Server* server_;
  int fd_;
  std::string peer_;
  std::unique_ptr<net::TlsSession> tls_;  // null on a plain-HTTP listener
  bool handshaking_ = false;
  bool hs_want_write_ = false;
  bool sniffed_ = false;          // first bytes checked for plain HTTP
  size_t tls_retry_len_ = 0;      // plaintext length of a record mbedTLS holds back (WantWrite)
  uv_poll_t poll_;
  uv_timer_t timer_;
  int poll_events_ = 0;
  int open_handles_ = 0;
  State state_ = State::Idle;

  llhttp_t parser_;
  std::string in_;
  size_t in_off_ = 0;
  bool in_execute_ = false;
  bool parser_paused_ = false;
  bool read_eof_ = false;

  // request being parsed
  Request req_;
  std::string url_, field_, value_;
  size_t head_bytes_ = 0;
  int reject_status_ = 0;
  uint64_t heads_ = 0;           // request heads completed on this connection
  std::string reject_reason_;
  int http_minor_ = 1;
  bool message_complete_ = false;
  /// llhttp rejected the input after the head was dispatched (a bad
  /// Transfer-Encoding, a malformed chunk): this request never completes,
  /// so its answer ends the connection.
  bool parse_failed_ = false;
  bool keep_alive_ = true;
  bool continue_sent_ = false;
  uint64_t head_deadline_ = 0;   // loop time (ms) by which the head must be in
  uint64_t last_progress_ = 0;   // last body byte read or output byte written
  uint64_t idle_since_ = 0;
  uint64_t armed_deadline_ = UINT64_MAX;
  uint64_t started_ms_ = 0;
  uint64_t started_ns_ = 0;
  uint64_t accepted_ms_ = 0;
  // min_body_rate accounting: bytes parsed, and the time the server spent
  // reading them (a paused body or a handler not reading yet is not the
  // client's fault, so only stretches of body_active() count).
  uint64_t body_bytes_ = 0;
  uint64_t body_active_ms_ = 0;
  uint64_t body_active_since_ = 0;
  bool body_clock_running_ = false;

  // Place in Server's quiet list (longest quiet first), while listed.
  QuietLinks quiet_links_v_;
  bool quiet_listed_ = false;

  ExchangePtr cur_;

  struct OutItem {
    std::string bytes;
    size_t off = 0;
    int file_fd = -1;
    uint64_t file_off = 0;
    uint64_t file_left = 0;
    FilePump* pump = nullptr;  // TLS: reads the file (and owns file_fd) once started
  };
  std::deque<OutItem> out_;
  size_t out_bytes_ = 0;         // bytes held in memory (file regions not counted)
  size_t out_files_ = 0;         // file regions queued (each holds an open fd)
  bool write_blocked_ = false;
  bool corked_ = false;          // TCP_CORK set for a file region being sent
  bool drain_wanted_ = false;
  bool response_done_ = false;
  bool close_when_idle_ = false;
  bool close_after_flush_ = false;
  bool linger_after_flush_ = false;
};

}  // namespace outpost::http
