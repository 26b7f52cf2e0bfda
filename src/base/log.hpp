// Leveled log lines on stderr in logfmt (key=value), one line per event.
// Under systemd (JOURNAL_STREAM set) each line starts with the sd-daemon
// "<N>" priority prefix so journald records the level.
#pragma once
#include <cstdio>
#include <string>
#include <string_view>

namespace outpost::log {

enum class Level { Debug = 0, Info = 1, Warn = 2, Error = 3 };

/// Minimum level written; set once at start from the config.
void set_level(Level l);
Level level();
bool parse_level(std::string_view s, Level* out);

/// Writes `msg` plus pre-formatted logfmt fields (" k=v k2=v2") as one line.
void write(Level l, std::string_view msg, std::string_view fields = {});

/// While on, debug and info lines written by the calling thread are
/// held in a buffer and written together by flush() (or when 32 KiB are
/// held, or when a warn/error line is written by this thread, or at thread
/// exit), one write(2) for many lines. The event loop holds its lines and
/// flushes before it waits for I/O (uv::Loop), so a request line is written
/// at most one loop iteration late instead of costing a syscall per
/// request (issue #14). Other threads keep writing each line at once.
/// Turning it off writes what is held.
void hold_lines(bool on);
/// Writes the lines held by the calling thread (no-op when none).
void flush();

/// Quotes a value for logfmt when it has spaces, quotes or '='.
std::string quote(std::string_view v);
/// quote(v) appended to `out` (no temporary string: the access log calls it per request).
void append_quoted(std::string& out, std::string_view v);

inline void debug(std::string_view m, std::string_view f = {}) { if (level() <= Level::Debug) write(Level::Debug, m, f); }
inline void info(std::string_view m, std::string_view f = {}) { if (level() <= Level::Info) write(Level::Info, m, f); }
inline void warn(std::string_view m, std::string_view f = {}) { write(Level::Warn, m, f); }
inline void error(std::string_view m, std::string_view f = {}) { write(Level::Error, m, f); }

}  // namespace outpost::log
