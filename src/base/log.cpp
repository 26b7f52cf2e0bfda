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

std::string quote(std::string_view v) {
  bool need = v.empty();
  for (char c : v) if (c == ' ' || c == '"' || c == '=' || c < 0x20) need = true;
  if (!need) return std::string(v);
  std::string out = "\"";
  for (char c : v) {
    if (c == '"' || c == '\\') { out += '\\'; out += c; }
    else if (static_cast<unsigned char>(c) < 0x20) out += '?';
    else out += c;
  }
  out += '"';
  return out;
}

void write(Level l, std::string_view msg, std::string_view fields) {
  if (l < g_level) return;
  std::string line;
  line.reserve(96 + msg.size() + fields.size());
  if (g_journal) {
    line += '<'; line += char('0' + kSyslog[int(l)]); line += '>';
  } else {
    // journald adds its own timestamp; a terminal or file wants one.
    struct timeval tv;
    gettimeofday(&tv, nullptr);
    struct tm tm;
    gmtime_r(&tv.tv_sec, &tm);
    char ts[96];
    snprintf(ts, sizeof ts, "ts=%04d-%02d-%02dT%02d:%02d:%02d.%03dZ ", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, int(tv.tv_usec / 1000));
    line += ts;
  }
  line += "level="; line += kNames[int(l)];
  line += " msg="; line += quote(msg);
  line += fields;
  line += '\n';
  // One write(2) per line keeps lines whole when several processes share stderr.
  ssize_t r = ::write(2, line.data(), line.size());
  (void)r;
}

}  // namespace outpost::log
