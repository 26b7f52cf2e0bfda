#include "base/log.hpp"

#include <cstdlib>
#include <ctime>
#include <sys/time.h>
#include <unistd.h>

namespace outpost::log {

namespace {
Level g_level = Level::Info;
// journald sets JOURNAL_STREAM for services whose stderr it captures.
const bool g_journal = std::getenv("JOURNAL_STREAM") != nullptr;
constexpr const char* kNames[] = {"debug", "info", "warn", "error"};
constexpr int kSyslog[] = {7, 6, 4, 3};
}  // namespace

void set_level(Level l) { g_level = l; }
Level level() { return g_level; }

bool parse_level(std::string_view s, Level* out) {
  for (int i = 0; i < 4; ++i) {
    if (s == kNames[i]) { *out = static_cast<Level>(i); return true; }
  }
  return false;
}

void append_quoted(std::string& out, std::string_view v) {
  bool need = v.empty();
  for (char c : v) if (c == ' ' || c == '"' || c == '=' || c < 0x20) need = true;
  if (!need) {
    out += v;
    return;
  }
  out += '"';
  for (char c : v) {
    if (c == '"' || c == '\\') { out += '\\'; out += c; }
    else if (static_cast<unsigned char>(c) < 0x20) out += '?';
    else out += c;
  }
  out += '"';
}

std::string quote(std::string_view v) {
  std::string out;
  append_quoted(out, v);
  return out;
}

namespace {
// "ts=2026-12-05T04:24:45." formatted once a second; the milliseconds are
// appended by hand (snprintf per line showed in the request path's profile).
std::string_view ts_prefix(time_t sec) {
  static thread_local time_t last = -1;
  static thread_local char buf[48];
  static thread_local size_t len = 0;
  if (sec != last) {
    last = sec;
    struct tm tm;
    gmtime_r(&sec, &tm);
    len = strftime(buf, sizeof buf, "ts=%Y-%m-%dT%H:%M:%S.", &tm);
  }
  return {buf, len};
}

// Lines held on a thread between flushes (see hold_lines()).
struct Held {
  bool on = false;
  std::string buf;
  ~Held() { flush_buf(); }
  void flush_buf() {
    if (buf.empty()) return;
    write_all(buf);
    buf.clear();
  }
  static void write_all(std::string_view s) {
    while (!s.empty()) {
      ssize_t r = ::write(2, s.data(), s.size());
      if (r <= 0) return;  // nowhere to report it: the log is what failed
      s.remove_prefix(static_cast<size_t>(r));
    }
  }
};
thread_local Held t_held;
constexpr size_t kHeldMax = 32 * 1024;
}  // namespace

void hold_lines(bool on) {
  t_held.on = on;
  if (!on) t_held.flush_buf();
}

void flush() { t_held.flush_buf(); }

void write(Level l, std::string_view msg, std::string_view fields) {
  if (l < g_level) return;
  const bool hold = t_held.on && l <= Level::Info;
  std::string local;
  std::string& line = hold ? t_held.buf : local;
  line.reserve(line.size() + 96 + msg.size() + fields.size());
  if (g_journal) {
    line += '<'; line += char('0' + kSyslog[int(l)]); line += '>';
  } else {
    // journald adds its own timestamp; a terminal or file wants one.
    struct timeval tv;
    gettimeofday(&tv, nullptr);
    line += ts_prefix(tv.tv_sec);
    unsigned ms = static_cast<unsigned>(tv.tv_usec / 1000);
    line += char('0' + ms / 100); line += char('0' + ms / 10 % 10); line += char('0' + ms % 10);
    line += "Z ";
  }
  line += "level="; line += kNames[int(l)];
  line += " msg="; append_quoted(line, msg);
  line += fields;
  line += '\n';
  if (hold) {
    if (t_held.buf.size() >= kHeldMax) t_held.flush_buf();
    return;
  }
  // Held lines first, so this thread's lines stay in order. One write(2)
  // per line (or per held batch of whole lines) keeps lines whole when
  // several processes share stderr.
  t_held.flush_buf();
  Held::write_all(line);
}

}  // namespace outpost::log
