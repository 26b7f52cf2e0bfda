// Settings table → TOML parse, validation and dump (redis config.c
// static_configs[] style). Owns the mapping from keys to Config fields; knows
// nothing about what the rest of the daemon does with them.
#include "app/config.hpp"

#include <arpa/inet.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstdio>
#include <cstring>
#include <initializer_list>
#include <limits>
#include <span>
#include <string>
#include <type_traits>
#include <utility>
#include <variant>

#include <toml++/toml.h>

#include "base/size.hpp"
#include "auth/scope.hpp"
#include "store/evict.hpp"
#include "sync/keep_pattern.hpp"

namespace outpost::app {

namespace {

// ---------------------------------------------------------------------------
// The table
// ---------------------------------------------------------------------------

enum class Kind {
  String,      ///< TOML string; lo = minimum length
  StringList,  ///< TOML array of strings; lo = minimum count; item checked by `check`
  Uint,        ///< TOML integer in [lo, hi]
  Size,        ///< "64KiB" (or an integer of bytes) in [lo, hi] bytes
  Duration,    ///< "30s" in [lo, hi] milliseconds
  Enum,        ///< TOML string, one of `choices`
  Bool,        ///< TOML boolean
};

/// A converted value on its way into (or out of) a Config field.
using Value = std::variant<std::string, std::vector<std::string>, uint64_t>;

struct Setting {
  std::string_view key;  ///< "section.name", the path in the TOML file
  Kind kind;
  uint64_t lo, hi;       ///< bounds, see Kind
  std::span<const std::string_view> choices;  ///< Enum only
  Status (*check)(std::string_view item);     ///< StringList item check, or nullptr
  void (*store)(Config&, Value&&);
  Value (*load)(const Config&);
  std::string_view help;  ///< one line, printed above the key by dump_config
};

constexpr std::string_view kLevelNames[] = {"debug", "info", "warn", "error"};
constexpr std::string_view kModes[] = {"ReadWrite", "ReadOnly"};
// In the order of the enums' values (Bind maps index <-> value).
constexpr std::string_view kTimeZones[] = {"utc", "local"};
constexpr std::string_view kPullThroughs[] = {"always", "in_window", "never"};

template <typename E>
struct EnumNames;
template <>
struct EnumNames<sync::TimeZone> {
  static constexpr std::span<const std::string_view> names() { return kTimeZones; }
};
template <>
struct EnumNames<sync::PullThrough> {
  static constexpr std::span<const std::string_view> names() { return kPullThroughs; }
};

/// Reads and writes the field `Sec.*Mem` of a Config: the pointer-to-member
/// setter of each row, typed once here instead of once per key.
template <auto Sec, auto Mem>
struct Bind {
  using Field = std::remove_cvref_t<decltype(std::declval<Config&>().*Sec.*Mem)>;

  static void store(Config& c, Value&& v) {
    Field& f = c.*Sec.*Mem;
    if constexpr (std::is_same_v<Field, log::Level>) {
      bool ok = log::parse_level(std::get<std::string>(v), &f);
      (void)ok;  // the value was checked against kLevelNames already
    } else if constexpr (std::is_enum_v<Field>) {
      // Enum rows list their names in the enum's order (EnumNames below).
      const auto names = EnumNames<Field>::names();
      for (size_t i = 0; i < names.size(); ++i) {
        if (names[i] == std::get<std::string>(v)) f = static_cast<Field>(i);
      }
    } else if constexpr (std::is_same_v<Field, bool>) {
      f = std::get<uint64_t>(v) != 0;
    } else if constexpr (std::is_integral_v<Field>) {
      f = static_cast<Field>(std::get<uint64_t>(v));  // bounds checked to fit
    } else {
      f = std::get<Field>(std::move(v));
    }
  }

  static Value load(const Config& c) {
    const Field& f = c.*Sec.*Mem;
    if constexpr (std::is_same_v<Field, log::Level>) {
      return std::string(kLevelNames[static_cast<int>(f)]);
    } else if constexpr (std::is_enum_v<Field>) {
      return std::string(EnumNames<Field>::names()[static_cast<size_t>(f)]);
    } else if constexpr (std::is_integral_v<Field>) {
      return static_cast<uint64_t>(f);
    } else {
      return f;
    }
  }
};

template <auto Sec, auto Mem>
constexpr Setting str(std::string_view key, uint64_t min_len, std::string_view help) {
  using B = Bind<Sec, Mem>;
  static_assert(std::is_same_v<typename B::Field, std::string>);
  return {key, Kind::String, min_len, 0, {}, nullptr, &B::store, &B::load, help};
}

/// A string checked by `check` (which accepts or refuses the empty string).
template <auto Sec, auto Mem>
constexpr Setting checked_str(std::string_view key, Status (*check)(std::string_view), std::string_view help) {
  using B = Bind<Sec, Mem>;
  static_assert(std::is_same_v<typename B::Field, std::string>);
  return {key, Kind::String, 0, 0, {}, check, &B::store, &B::load, help};
}

template <auto Sec, auto Mem>
constexpr Setting list(std::string_view key, uint64_t min_count, Status (*check)(std::string_view),
                       std::string_view help) {
  using B = Bind<Sec, Mem>;
  static_assert(std::is_same_v<typename B::Field, std::vector<std::string>>);
  return {key, Kind::StringList, min_count, 0, {}, check, &B::store, &B::load, help};
}

/// Uint, Size or Duration in [Lo, Hi]; the bounds must fit the field.
template <auto Sec, auto Mem, uint64_t Lo, uint64_t Hi>
constexpr Setting num(std::string_view key, Kind kind, std::string_view help) {
  using B = Bind<Sec, Mem>;
  static_assert(std::is_integral_v<typename B::Field> && std::is_unsigned_v<typename B::Field>);
  static_assert(Lo <= Hi && Hi <= std::numeric_limits<typename B::Field>::max());
  return {key, kind, Lo, Hi, {}, nullptr, &B::store, &B::load, help};
}

template <auto Sec, auto Mem>
constexpr Setting boolean(std::string_view key, std::string_view help) {
  using B = Bind<Sec, Mem>;
  static_assert(std::is_same_v<typename B::Field, bool>);
  return {key, Kind::Bool, 0, 1, {}, nullptr, &B::store, &B::load, help};
}

template <auto Sec, auto Mem>
constexpr Setting choice(std::string_view key, std::span<const std::string_view> choices,
                         std::string_view help) {
  using B = Bind<Sec, Mem>;
  return {key, Kind::Enum, 0, 0, choices, nullptr, &B::store, &B::load, help};
}

Status check_listen(std::string_view s) {
  auto r = parse_listen_address(s);
  if (!r) return std::move(r).error();
  return {};
}

Status check_schedule(std::string_view s) {
  if (s.find_first_not_of(" \t") == std::string_view::npos) return {};  // continuous sync
  auto r = sync::CronExpr::parse(s);
  if (!r) return std::move(r).error();
  return {};
}

Status check_anonymous_pull(std::string_view s) { return auth::check_pattern(s); }
Status check_size_limit(std::string_view s) {
  auto r = store::parse_size_limit(s);
  if (!r) return std::move(r).error();
  return {};
}

Status check_keep(std::string_view s) {
  auto r = sync::KeepPattern::parse(s);
  if (!r) return std::move(r).error();
  return {};
}

constexpr uint64_t kKiB = 1024;
constexpr uint64_t kMiB = 1024 * kKiB;
constexpr uint64_t kGiB = 1024 * kMiB;
constexpr uint64_t kSecond = 1000;
constexpr uint64_t kHour = 3'600 * kSecond;
constexpr uint64_t kDay = 86'400 * kSecond;

using S = ServerConfig;
using U = UpstreamConfig;
// [[upstream]] tables take the same keys as [parent] (rows "parent.*").
using Y = SyncConfig;
constexpr Setting kSettings[] = {
    list<&Config::server, &S::listen>("server.listen", 1, &check_listen,
        "addresses to listen on, \"host:port\" with a numeric IPv4 or [IPv6] host"),
    num<&Config::server, &S::max_connections, 0, 1'000'000>("server.max_connections", Kind::Uint,
        "open client connections; at the limit the longest-idle is shed (0: from RLIMIT_NOFILE)"),
    num<&Config::server, &S::max_header_bytes, kKiB, kMiB>("server.max_header_bytes", Kind::Size,
        "largest request line plus headers (1KiB .. 1MiB)"),
    num<&Config::server, &S::header_timeout_ms, 100, kDay>("server.header_timeout", Kind::Duration,
        "time allowed to receive a whole request head"),
    num<&Config::server, &S::idle_timeout_ms, 100, kDay>("server.idle_timeout", Kind::Duration,
        "keep-alive idle time between requests"),
    num<&Config::server, &S::body_timeout_ms, 100, kDay>("server.body_timeout", Kind::Duration,
        "longest pause while receiving a request body"),
    num<&Config::server, &S::min_body_rate, 0, kGiB>("server.min_body_rate", Kind::Size,
        "bytes/s a request body must average once body_rate_grace is over (0: no minimum)"),
    num<&Config::server, &S::body_rate_grace_ms, 0, kDay>("server.body_rate_grace", Kind::Duration,
        "time reading a body before min_body_rate applies"),
    num<&Config::server, &S::write_timeout_ms, 100, kDay>("server.write_timeout", Kind::Duration,
        "longest time a client may stop reading a response"),
    num<&Config::server, &S::shutdown_timeout_ms, 100, kDay>("server.shutdown_timeout",
        Kind::Duration, "grace for in-flight requests after SIGTERM"),
    list<&Config::tls, &TlsConfig::listen>("tls.listen", 0, &check_listen,
        "addresses serving HTTPS only, \"host:port\" as in server.listen; empty: no HTTPS"),
    str<&Config::tls, &TlsConfig::cert>("tls.cert", 0,
        "PEM file: the server certificate, then any intermediates; reloaded on SIGHUP"),
    str<&Config::tls, &TlsConfig::key>("tls.key", 0,
        "PEM file: the unencrypted private key of tls.cert; reloaded on SIGHUP"),
    str<&Config::storage, &StorageConfig::root>("storage.root", 1,
        "directory holding blobs and metadata; relative to the working directory"),
    checked_str<&Config::storage, &StorageConfig::max_size>("storage.max_size", &check_size_limit,
        "blob bytes kept before cached content is evicted, \"200GiB\" or \"80%\" of the filesystem; empty: no quota"),
    checked_str<&Config::storage, &StorageConfig::min_free>("storage.min_free", &check_size_limit,
        "free space kept on the store's filesystem by evicting cached content, bytes or \"%\"; empty: none"),
    num<&Config::storage, &StorageConfig::gc_interval_ms, 0, 7 * kDay>("storage.gc_interval", Kind::Duration,
        "how often garbage collection runs (0s: never on its own)"),
    num<&Config::storage, &StorageConfig::upload_ttl_ms, kSecond, 90 * kDay>("storage.upload_ttl", Kind::Duration,
        "upload sessions idle this long are removed"),
    num<&Config::storage, &StorageConfig::evict_grace_ms, 0, kDay>("storage.evict_grace", Kind::Duration,
        "content read, filled or linked this recently is never evicted"),
    num<&Config::storage, &StorageConfig::check_rate, 0, 100 * kGiB>("storage.check_rate", Kind::Size,
        "bytes/s a check of a running server hashes (0: unlimited)"),
    str<&Config::registry, &RegistryConfig::name>("registry.name", 1,
        "this registry's name, shown in logs, metrics and status"),
    choice<&Config::registry, &RegistryConfig::mode>("registry.mode", kModes,
        "\"ReadWrite\" (pull and push) or \"ReadOnly\" (pull only)"),
    num<&Config::registry, &RegistryConfig::max_manifest_bytes, kKiB, 64 * kMiB>(
        "registry.max_manifest_bytes", Kind::Size, "largest manifest accepted (1KiB .. 64MiB)"),
    str<&Config::parent, &U::url>("parent.url", 0,
        "registry to pull through from, e.g. \"https://registry.site:5000\"; empty: none"),
    str<&Config::parent, &U::name>("parent.name", 1,
        "[[upstream]]: the registry host it mirrors (matched against ?ns= and path prefixes)"),
    str<&Config::parent, &U::token_file>("parent.token_file", 0,
        "file holding \"username:password\" for the parent's Basic or token auth; empty: anonymous"),
    str<&Config::parent, &U::ca_file>("parent.ca_file", 0,
        "extra PEM CA bundle trusted for the parent's TLS certificate"),
    boolean<&Config::parent, &U::insecure>("parent.insecure",
        "skip TLS certificate verification (labs only)"),
    boolean<&Config::parent, &U::library_prefix>("parent.library_prefix",
        "Docker Hub naming: \"alpine\" is sent as \"library/alpine\""),
    boolean<&Config::parent, &U::offline>("parent.offline",
        "never contact the parent: serve only what is held (an air-gapped site fed by pushes)"),
    num<&Config::parent, &U::connect_timeout_ms, 100, kDay>("parent.connect_timeout", Kind::Duration,
        "time allowed to connect (DNS, TCP, TLS) to the parent"),
    num<&Config::parent, &U::timeout_ms, 100, kDay>("parent.timeout", Kind::Duration,
        "time allowed for the parent's first response byte, and for any pause in a body"),
    num<&Config::cache, &CacheConfig::tag_ttl_ms, 0, kDay>("cache.tag_ttl", Kind::Duration,
        "a cached tag is checked against the parent at most this often"),
    num<&Config::cache, &CacheConfig::revalidate_wait_ms, 0, kDay>("cache.revalidate_wait", Kind::Duration,
        "longest a client waits on a tag check before the cached tag is served"),
    checked_str<&Config::sync, &Y::schedule>("sync.schedule", &check_schedule,
        "5-field cron (minute hour day-of-month month day-of-week) starting each sync window; empty: continuous sync"),
    num<&Config::sync, &Y::window_ms, kHour, 7 * kDay>("sync.window", Kind::Duration,
        "length of each sync window started by the schedule or by `outpost sync now` (1h .. 7d)"),
    choice<&Config::sync, &Y::timezone>("sync.timezone", kTimeZones,
        "clock the schedule is read on: \"utc\" or \"local\" (the host's TZ, DST included)"),
    choice<&Config::sync, &Y::pull_through>("sync.pull_through", kPullThroughs,
        "client misses fetched from the parent: \"always\", \"in_window\" or \"never\""),
    num<&Config::sync, &Y::message_ttl_ms, kDay, 90 * kDay>("sync.message_ttl", Kind::Duration,
        "a local write not replayed to the parent within this time is reported expired (1d .. 90d)"),
    boolean<&Config::sync, &Y::replay_deletes>("sync.replay_deletes",
        "replay manifest and tag deletes to the parent too"),
    list<&Config::sync, &Y::keep>("sync.keep", 0, &check_keep,
        "\"repo-glob[:tag-glob]\" patterns kept locally and refreshed in every window"),
    // [auth] (issue #16)
    boolean<&Config::auth, &AuthConfig::enabled>("auth.enabled",
        "require credentials (client tokens, `outpost token`) on every /v2/ route; false: anonymous"),
    str<&Config::auth, &AuthConfig::realm>("auth.realm", 0,
        "token endpoint URL sent in challenges, e.g. \"https://gw.plant:5000/token\"; empty: http://<Host>/token"),
    str<&Config::auth, &AuthConfig::service>("auth.service", 1,
        "token service name in challenges and in issued tokens"),
    list<&Config::auth, &AuthConfig::anonymous_pull>("auth.anonymous_pull", 0, &check_anonymous_pull,
        "repository globs anyone may pull without credentials (same globs as sync.keep)"),
    num<&Config::auth, &AuthConfig::token_ttl_ms, 60 * kSecond, kDay>("auth.token_ttl", Kind::Duration,
        "lifetime of a bearer token issued by GET /token (1m .. 1d)"),
    choice<&Config::log, &LogConfig::level>("log.level", kLevelNames,
        "least severe level written: debug, info, warn or error"),
};

const Setting* find_setting(std::string_view key) {
  for (const Setting& s : kSettings) {
    if (s.key == key) return &s;
  }
  return nullptr;
}

std::string_view section_of(std::string_view key) { return key.substr(0, key.find('.')); }

bool is_section(std::string_view name) {
  for (const Setting& s : kSettings) {
    if (section_of(s.key) == name) return true;
  }
  return false;
}

// ---------------------------------------------------------------------------
// Formatting
// ---------------------------------------------------------------------------

/// Concatenation by appends. GCC 12 at -O3 reports a false -Wrestrict on
/// `"literal" + std::string(...)` (GCC bugzilla 105329, 105651); this
/// sidesteps it.
std::string cat(std::initializer_list<std::string_view> parts) {
  size_t n = 0;
  for (std::string_view p : parts) n += p.size();
  std::string out;
  out.reserve(n);
  for (std::string_view p : parts) out += p;
  return out;
}

/// A TOML basic string (also what messages use to show a string value).
std::string toml_quote(std::string_view s) {
  std::string out = "\"";
  for (char ch : s) {
    unsigned char c = static_cast<unsigned char>(ch);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += ch;
    } else if (c < 0x20 || c == 0x7f) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", c);
      out += buf;
    } else {
      out += ch;
    }
  }
  out += '"';
  return out;
}

/// Largest binary unit that divides exactly: 16384 → "16KiB"; 1000 → "1000".
std::string format_size(uint64_t n) {
  static constexpr std::pair<uint64_t, std::string_view> kUnits[] = {
      {uint64_t{1} << 40, "TiB"}, {uint64_t{1} << 30, "GiB"}, {kMiB, "MiB"}, {kKiB, "KiB"}};
  for (auto [f, name] : kUnits) {
    if (n != 0 && n % f == 0) return std::to_string(n / f) + std::string(name);
  }
  return std::to_string(n);
}

/// Largest unit that divides exactly: 60000 → "1m"; 1500 → "1500ms".
std::string format_duration(uint64_t ms) {
  static constexpr std::pair<uint64_t, std::string_view> kUnits[] = {
      {kDay, "d"}, {3'600 * kSecond, "h"}, {60 * kSecond, "m"}, {kSecond, "s"}};
  for (auto [f, name] : kUnits) {
    if (ms != 0 && ms % f == 0) return std::to_string(ms / f) + std::string(name);
  }
  return std::to_string(ms) + "ms";
}

std::string format_number(Kind k, uint64_t v) {
  if (k == Kind::Size) return format_size(v);
  if (k == Kind::Duration) return format_duration(v);
  return std::to_string(v);
}

/// A value as TOML source text.
std::string to_toml(const Setting& s, const Value& v) {
  switch (s.kind) {
    case Kind::String:
    case Kind::Enum:
      return toml_quote(std::get<std::string>(v));
    case Kind::StringList: {
      std::string out = "[";
      const auto& items = std::get<std::vector<std::string>>(v);
      for (size_t i = 0; i < items.size(); ++i) {
        if (i) out += ", ";
        out += toml_quote(items[i]);
      }
      return out + "]";
    }
    case Kind::Uint:
      return std::to_string(std::get<uint64_t>(v));
    case Kind::Size: {
      std::string f = format_size(std::get<uint64_t>(v));
      // Plain byte counts stay integers; anything with a unit is a string.
      return f.back() >= '0' && f.back() <= '9' ? f : toml_quote(f);
    }
    case Kind::Duration:
      return toml_quote(format_duration(std::get<uint64_t>(v)));
    case Kind::Bool:
      return std::get<uint64_t>(v) ? "true" : "false";
  }
  return {};
}

std::string_view type_name(const toml::node& n) {
  switch (n.type()) {
    case toml::node_type::string: return "a string";
    case toml::node_type::integer: return "an integer";
    case toml::node_type::floating_point: return "a float";
    case toml::node_type::boolean: return "a boolean";
    case toml::node_type::date: return "a date";
    case toml::node_type::time: return "a time";
    case toml::node_type::date_time: return "a date-time";
    case toml::node_type::array: return "an array";
    case toml::node_type::table: return "a table";
    case toml::node_type::none: break;
  }
  return "nothing";
}

// ---------------------------------------------------------------------------
// Parsing
// ---------------------------------------------------------------------------

/// One complaint about the file, kept until all are known so they can be
/// reported in file order (toml::table iterates keys sorted, not by line).
struct Problem {
  uint32_t line;
  std::string msg;
};

uint32_t line_of(const toml::source_region& r) { return r.begin.line; }

std::string_view control_char_complaint(std::string_view s) {
  for (char ch : s) {
    unsigned char c = static_cast<unsigned char>(ch);
    if (c < 0x20 || c == 0x7f) return "contains a control character";
  }
  return {};
}

std::string out_of_range(const Setting& s, std::string_view shown) {
  return cat({shown, " is out of range (", format_number(s.kind, s.lo), " .. ",
              format_number(s.kind, s.hi), ")"});
}

/// Converts and validates `node` for `s`. On failure pushes one Problem
/// (at the line of the offending node or array item) and returns false.
bool convert(const Setting& s, const toml::node& node, Value* out, std::vector<Problem>* problems) {
  const uint32_t line = line_of(node.source());
  auto fail = [&](uint32_t at, std::string why) {
    problems->push_back({at, cat({s.key, ": ", why})});
    return false;
  };
  auto wrong_type = [&](std::string_view wanted) {
    return fail(line, cat({"expected ", wanted, ", got ", type_name(node)}));
  };

  switch (s.kind) {
    case Kind::String: {
      const auto* v = node.as_string();
      if (!v) return wrong_type("a string");
      const std::string& str = v->get();
      if (str.size() < s.lo) return fail(line, "must not be empty");
      if (auto why = control_char_complaint(str); !why.empty()) return fail(line, std::string(why));
      if (s.check) {
        if (Status st = s.check(str); !st) return fail(line, st.error().detail);
      }
      *out = str;
      return true;
    }
    case Kind::Enum: {
      const auto* v = node.as_string();
      std::string all;
      for (std::string_view c : s.choices) all += (all.empty() ? "" : ", ") + toml_quote(c);
      if (!v) return wrong_type("one of " + all);
      for (std::string_view c : s.choices) {
        if (v->get() == c) {
          *out = v->get();
          return true;
        }
      }
      return fail(line, toml_quote(v->get()) + " is not one of " + all);
    }
    case Kind::StringList: {
      const auto* arr = node.as_array();
      if (!arr) return wrong_type("an array of strings");
      if (arr->size() < s.lo) {
        return fail(line, cat({"needs at least ", std::to_string(s.lo),
                               s.lo == 1 ? " entry" : " entries"}));
      }
      std::vector<std::string> items;
      for (const toml::node& item : *arr) {
        const uint32_t at = line_of(item.source()) ? line_of(item.source()) : line;
        const auto* v = item.as_string();
        if (!v) return fail(at, cat({"expected strings, got ", type_name(item)}));
        if (s.check) {
          if (Status st = s.check(v->get()); !st) return fail(at, st.error().detail);
        }
        if (std::find(items.begin(), items.end(), v->get()) != items.end())
          return fail(at, toml_quote(v->get()) + " is listed twice");
        items.push_back(v->get());
      }
      *out = std::move(items);
      return true;
    }
    case Kind::Bool: {
      const auto* b = node.as_boolean();
      if (!b) return wrong_type("true or false");
      *out = uint64_t{b->get() ? 1u : 0u};
      return true;
    }
    case Kind::Uint:
    case Kind::Size:
    case Kind::Duration: {
      uint64_t n = 0;
      std::string shown;  // the value as the operator wrote it
      if (const auto* i = node.as_integer()) {
        shown = std::to_string(i->get());
        if (s.kind == Kind::Duration) {
          return fail(line, shown + " is not a duration (e.g. \"30s\", \"5m\"): give a unit");
        }
        if (i->get() < 0) {
          return fail(line, out_of_range(s, shown));
        }
        n = static_cast<uint64_t>(i->get());
      } else if (const auto* str = node.as_string(); str && s.kind != Kind::Uint) {
        shown = toml_quote(str->get());
        auto r = s.kind == Kind::Size ? parse_size(str->get()) : parse_duration_ms(str->get());
        if (!r) return fail(line, std::move(r).error().detail);
        n = *r;
      } else {
        return wrong_type(s.kind == Kind::Uint   ? "an integer"
                          : s.kind == Kind::Size ? "a size such as \"64KiB\" or an integer of bytes"
                                                 : "a duration such as \"30s\" or \"5m\"");
      }
      if (n < s.lo || n > s.hi) {
        return fail(line, out_of_range(s, shown));
      }
      *out = n;
      return true;
    }
  }
  return fail(line, "unsupported setting kind");
}

std::string where(std::string_view source, uint32_t line) {
  std::string out(source);
  if (line) {
    out += ':';
    out += std::to_string(line);
  }
  out += ": ";
  return out;
}

/// Test knob, deliberately left out of the operator docs: the environment
/// variable OUTPOST_TEST_MESSAGE_TTL (a duration such as "2s") replaces
/// sync.message_ttl, below its 1d minimum, so an e2e test can watch a replay
/// entry expire (issue #15). A warning is logged whenever it is in force.
Status apply_test_knobs(Config* c) {
  const char* ttl = std::getenv("OUTPOST_TEST_MESSAGE_TTL");
  if (!ttl || !*ttl) return {};
  auto ms = parse_duration_ms(ttl);
  if (!ms) return Error(Errc::ConfigInvalid, cat({"OUTPOST_TEST_MESSAGE_TTL: ", ms.error().detail}));
  if (*ms == 0) return Error(Errc::ConfigInvalid, "OUTPOST_TEST_MESSAGE_TTL: must be above 0");
  c->sync.message_ttl_ms = *ms;
  log::warn("test knob in force: sync.message_ttl overridden",
            cat({" OUTPOST_TEST_MESSAGE_TTL=", log::quote(ttl)}));
  return {};
}

}  // namespace

// ---------------------------------------------------------------------------
// Public API
// ---------------------------------------------------------------------------

Result<ListenAddress> parse_listen_address(std::string_view s) {
  auto bad = [&](std::string_view why) {
    return Error(Errc::ConfigInvalid, cat({toml_quote(s), " ", why}));
  };
  constexpr std::string_view kForm = "is not \"host:port\" (e.g. \"127.0.0.1:5000\", \"[::1]:5000\")";
  ListenAddress a;
  std::string_view host, port;
  if (!s.empty() && s.front() == '[') {
    size_t close = s.find(']');
    if (close == std::string_view::npos || close + 1 >= s.size() || s[close + 1] != ':')
      return bad(kForm);
    host = s.substr(1, close - 1);
    port = s.substr(close + 2);
    a.ipv6 = true;
  } else {
    size_t colon = s.rfind(':');
    if (colon == std::string_view::npos) return bad(kForm);
    host = s.substr(0, colon);
    port = s.substr(colon + 1);
    if (host.find(':') != std::string_view::npos)
      return bad("has an IPv6 host without brackets (write e.g. \"[::1]:5000\")");
  }
  if (host.empty() || port.empty()) return bad(kForm);

  // Numeric hosts only: inet_pton wants a NUL-terminated copy.
  std::string h(host);
  unsigned char buf[16];
  if (inet_pton(a.ipv6 ? AF_INET6 : AF_INET, h.c_str(), buf) != 1) {
    return bad(a.ipv6 ? "has an invalid IPv6 address"
                      : "needs a numeric IPv4 host or a bracketed IPv6 host (e.g. \"0.0.0.0:5000\")");
  }
  uint32_t p = 0;
  for (char c : port) {
    if (c < '0' || c > '9' || p > 65535) return bad("needs a port number 1..65535");
    p = p * 10 + static_cast<uint32_t>(c - '0');
  }
  if (p < 1 || p > 65535) return bad("needs a port number 1..65535");
  a.host = std::move(h);
  a.port = static_cast<uint16_t>(p);
  return a;
}

Result<Config> parse_config(std::string_view text, std::string_view source) {
  toml::table root;
  try {
    root = toml::parse(text, std::string(source));
  } catch (const toml::parse_error& e) {
    // Exceptions stop here: toml++ reports syntax errors by throwing.
    return Error(Errc::ConfigInvalid,
                 where(source, line_of(e.source())) + std::string(e.description()));
  }

  Config c;
  c.source = std::string(source);
  std::vector<Problem> problems;
  for (auto&& [sec_key, sec_node] : root) {
    const std::string_view sec = sec_key.str();
    if (sec == "upstream" && sec_node.is_array_of_tables()) {
      // Each [[upstream]] takes the [parent] keys; parse it into a scratch
      // Config and keep its parent part.
      for (const toml::node& item : *sec_node.as_array()) {
        Config scratch;
        scratch.parent = UpstreamConfig{};
        scratch.parent.name.clear();
        for (auto&& [key, node] : *item.as_table()) {
          const Setting* s = find_setting(cat({"parent.", key.str()}));
          if (!s) {
            problems.push_back({line_of(key.source()), cat({"unknown key 'upstream.", key.str(), "'"})});
            continue;
          }
          Value v;
          if (convert(*s, node, &v, &problems)) s->store(scratch, std::move(v));
        }
        if (scratch.parent.name.empty() || scratch.parent.url.empty())
          problems.push_back({line_of(item.source()), "[[upstream]] needs both name and url"});
        else
          c.upstreams.push_back(std::move(scratch.parent));
      }
      continue;
    }
    if (!is_section(sec)) {
      const bool is_table = sec_node.is_table() || sec_node.is_array_of_tables();
      problems.push_back(
          {line_of(sec_key.source()), cat({is_table ? "unknown table '" : "unknown key '", sec, "'"})});
      continue;
    }
    const toml::table* tbl = sec_node.as_table();
    if (!tbl) {
      problems.push_back({line_of(sec_key.source()), cat({"'", sec, "' must be a table"})});
      continue;
    }
    for (auto&& [key, node] : *tbl) {
      const std::string full = cat({sec, ".", key.str()});
      const Setting* s = find_setting(full);
      if (!s) {
        const bool is_table = node.is_table() || node.is_array_of_tables();
        problems.push_back(
            {line_of(key.source()), cat({is_table ? "unknown table '" : "unknown key '", full, "'"})});
        continue;
      }
      Value v;
      if (convert(*s, node, &v, &problems)) s->store(c, std::move(v));
    }
  }

  // [tls]: listeners need both files (checked for content at start, by net::TlsServerConfig).
  if (!c.tls.listen.empty() && (c.tls.cert.empty() || c.tls.key.empty()))
    problems.push_back({0, "tls.listen is set: tls.cert and tls.key must name the PEM certificate and key"});

  if (problems.empty()) {
    if (Status st = apply_test_knobs(&c); !st) return std::move(st).error();
    return c;
  }
  std::stable_sort(problems.begin(), problems.end(),
                   [](const Problem& a, const Problem& b) { return a.line < b.line; });
  // One line per problem, so an operator fixes them all in one pass.
  std::string detail;
  for (const Problem& p : problems) {
    if (!detail.empty()) detail += '\n';
    detail += where(source, p.line) + p.msg;
  }
  return Error(Errc::ConfigInvalid, std::move(detail));
}

Result<Config> load_config_file(const std::string& path) {
  // A config is a few KiB; the cap keeps a wrong path (/dev/zero) harmless.
  constexpr size_t kMaxBytes = 1 << 20;
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) return Error(Errc::ConfigInvalid, cat({"cannot open ", path, ": ", std::strerror(errno)}));
  std::string text;
  char buf[8192];
  size_t n = 0;
  while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) {
    text.append(buf, n);
    if (text.size() > kMaxBytes) {
      std::fclose(f);
      return Error(Errc::ConfigInvalid, cat({path, ": larger than 1MiB, not a config file"}));
    }
  }
  const bool failed = std::ferror(f);
  const int err = errno;
  std::fclose(f);
  if (failed) return Error(Errc::ConfigInvalid, cat({"cannot read ", path, ": ", std::strerror(err)}));
  return parse_config(text, path);
}

Result<sync::SyncSchedule> make_sync_schedule(const Config& c, sync::WallClock clock) {
  return sync::SyncSchedule::create(c.sync.schedule, c.sync.window_ms, c.sync.timezone, std::move(clock));
}

std::string dump_config(const Config& c) {
  std::string out = "# Outpost configuration";
  if (!c.source.empty()) {
    out += " (loaded from ";
    for (char ch : c.source) out += (static_cast<unsigned char>(ch) < 0x20) ? '?' : ch;  // stay a comment
    out += ")";
  }
  out += "\n";
  // [[upstream]] tables follow [parent], as in conf/outpost.toml: each one
  // with every "parent.*" key, read through a scratch Config's parent part.
  auto dump_upstreams = [&] {
    if (c.upstreams.empty()) {
      out += "\n# [[upstream]]: none (each would take the keys of [parent])\n";
      return;
    }
    for (const UpstreamConfig& u : c.upstreams) {
      Config scratch;
      scratch.parent = u;
      out += "\n[[upstream]]\n";
      for (const Setting& s : kSettings) {
        constexpr std::string_view kParent = "parent";
        if (section_of(s.key) != kParent) continue;
        out += cat({s.key.substr(kParent.size() + 1), " = ", to_toml(s, s.load(scratch)), "\n"});
      }
    }
  };
  std::string_view current;
  for (const Setting& s : kSettings) {
    std::string_view sec = section_of(s.key);
    if (sec != current) {
      if (current == "parent") dump_upstreams();
      out += cat({"\n[", sec, "]\n"});
      current = sec;
    }
    out += cat({"# ", s.help, "\n", s.key.substr(sec.size() + 1), " = ", to_toml(s, s.load(c)), "\n"});
  }
  if (current == "parent") dump_upstreams();
  return out;
}

// ---- SIGHUP reload support (issue #17) ----------------------------------------

std::vector<std::string> changed_keys(const Config& a, const Config& b) {
  std::vector<std::string> out;
  for (const Setting& s : kSettings)
    if (s.load(a) != s.load(b)) out.emplace_back(s.key);
  if (a.upstreams != b.upstreams) out.emplace_back("upstream");
  return out;
}

void copy_key(std::string_view key, const Config& from, Config* to) {
  if (key == "upstream") {
    to->upstreams = from.upstreams;
    return;
  }
  if (const Setting* s = find_setting(key)) s->store(*to, s->load(from));
}

}  // namespace outpost::app
