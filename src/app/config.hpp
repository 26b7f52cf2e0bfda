// Outpost's settings: one table of keys (name, type, bounds, default, help)
// drives parsing, validation and `outpost config` dumps. The default config
// is conf/outpost.toml, embedded in the binary at build time.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "base/log.hpp"
#include "base/result.hpp"
#include "sync/cron.hpp"
#include "sync/schedule.hpp"

namespace outpost::app {

struct ServerConfig {
  std::vector<std::string> listen{"127.0.0.1:5000"};  ///< "host:port", IPv4 or [IPv6]
  uint32_t max_connections = 0;            ///< 0: derived from RLIMIT_NOFILE at start (http::max_connections_for)
  uint32_t max_header_bytes = 16 * 1024;   ///< request line + headers
  uint64_t header_timeout_ms = 10'000;     ///< time to receive a whole request head
  uint64_t idle_timeout_ms = 60'000;       ///< keep-alive idle time between requests
  uint64_t body_timeout_ms = 30'000;       ///< longest pause in a request body
  uint64_t min_body_rate = 1024;           ///< bytes/s a request body must average after the grace (0: off)
  uint64_t body_rate_grace_ms = 10'000;    ///< reading time before min_body_rate applies
  uint64_t write_timeout_ms = 60'000;      ///< longest time a client may stop reading a response
  uint64_t shutdown_timeout_ms = 30'000;   ///< in-flight grace on SIGTERM

  bool operator==(const ServerConfig&) const = default;
};

/// HTTPS listeners (issue #16). Plain listeners stay in server.listen; the
/// addresses here speak TLS only, all with this certificate chain and key.
struct TlsConfig {
  std::vector<std::string> listen;  ///< "host:port" like server.listen; empty: no HTTPS
  std::string cert;                 ///< PEM: server certificate, then intermediates
  std::string key;                  ///< PEM: its private key (unencrypted)

  bool operator==(const TlsConfig&) const = default;
};

struct StorageConfig {
  std::string root = "var/outpost";        ///< relative paths are relative to the working directory
  // Cache management (issue #18; docs/configuration.md "[storage]").
  std::string max_size;                    ///< "200GiB" or "80%" of the filesystem; empty: no quota
  std::string min_free;                    ///< free space to keep, bytes or "%"; empty: none
  uint64_t gc_interval_ms = 3'600'000;     ///< scheduled GC; 0: off
  uint64_t upload_ttl_ms = 86'400'000;     ///< idle upload sessions are removed after this
  uint64_t evict_grace_ms = 60'000;        ///< content used this recently is never evicted
  uint64_t check_rate = 100ull << 20;      ///< bytes/s a server-side check hashes (0: unlimited)

  bool operator==(const StorageConfig&) const = default;
};

struct RegistryConfig {
  std::string name = "outpost";
  std::string mode = "ReadWrite";          ///< "ReadWrite" or "ReadOnly"
  uint64_t max_manifest_bytes = 4 * 1024 * 1024;

  bool operator==(const RegistryConfig&) const = default;
};

/// A registry Outpost pulls through from: the parent ([parent]) or a named
/// mirror ([[upstream]], chosen by ?ns=<name> or a "<name>/" path prefix).
struct UpstreamConfig {
  std::string name = "parent";       ///< [[upstream]]: the registry host it mirrors, e.g. "docker.io"
  std::string url;                   ///< empty: none (a standalone registry)
  std::string token_file;            ///< file holding "username:password" for Basic/token auth
  std::string ca_file;               ///< extra PEM CA bundle for its TLS certificate
  bool insecure = false;             ///< skip TLS verification (labs only)
  bool library_prefix = false;       ///< Docker Hub: "alpine" means "library/alpine"
  bool offline = false;              ///< never contact it: serve only what is held (air-gapped)
  uint64_t connect_timeout_ms = 10'000;
  uint64_t timeout_ms = 30'000;      ///< first byte of a response, and longest pause in a body

  bool operator==(const UpstreamConfig&) const = default;
};

struct CacheConfig {
  uint64_t tag_ttl_ms = 60'000;      ///< a cached tag is revalidated with the parent at most this often
  uint64_t revalidate_wait_ms = 1'000;  ///< longest a client waits on a tag revalidation before the cached tag is served

  bool operator==(const CacheConfig&) const = default;
};

/// [sync]: when background work may reach the parent, and what is kept.
/// Every string here was validated at load: `schedule` parses with
/// sync::CronExpr::parse (or is empty) and each `keep` entry with
/// sync::KeepPattern::parse, so consumers may treat a failure as a bug.
struct SyncConfig {
  std::string schedule;                     ///< 5-field cron; empty: continuous sync
  uint64_t window_ms = 3'600'000;           ///< window length after each schedule match (1h .. 7d)
  sync::TimeZone timezone = sync::TimeZone::Utc;  ///< clock the schedule is read on
  sync::PullThrough pull_through = sync::PullThrough::Always;  ///< client misses outside a window
  uint64_t message_ttl_ms = 7 * 86'400'000ull;  ///< replay entry lifetime (1d .. 90d; see OUTPOST_TEST_MESSAGE_TTL)
  bool replay_deletes = false;              ///< also replay manifest/tag deletes to the parent
  std::vector<std::string> keep;            ///< "repo-glob[:tag-glob]" patterns kept and prefetched

  bool operator==(const SyncConfig&) const = default;
};

struct LogConfig {
  log::Level level = log::Level::Info;

  bool operator==(const LogConfig&) const = default;
};

/// [auth]: access control (issue #16). Off by default: every request is
/// anonymous, as before. Validated at load: every anonymous_pull entry
/// passes auth::check_pattern.
struct AuthConfig {
  bool enabled = false;                 ///< every /v2/ route needs a credential (or anonymous_pull)
  std::string realm;                    ///< token endpoint URL in challenges; empty: http://<Host>/token
  std::string service = "outpost";      ///< the token service name (challenge service=, token audience)
  std::vector<std::string> anonymous_pull;  ///< repository globs anyone may pull without credentials
  uint64_t token_ttl_ms = 300'000;      ///< bearer token lifetime (1m .. 1d)

  bool operator==(const AuthConfig&) const = default;
};

struct Config {
  ServerConfig server;
  TlsConfig tls;
  StorageConfig storage;
  RegistryConfig registry;
  UpstreamConfig parent;
  std::vector<UpstreamConfig> upstreams;
  CacheConfig cache;
  SyncConfig sync;
  AuthConfig auth;
  LogConfig log;
  std::string source;  ///< file name it came from, or "<embedded default>"

  bool operator==(const Config&) const = default;
};

/// The embedded default (conf/outpost.toml as built into the binary).
std::string_view default_config_text();

/// One validated `server.listen` entry: "a.b.c.d:port" or "[v6]:port".
struct ListenAddress {
  std::string host;    ///< numeric address, without the IPv6 brackets
  uint16_t port = 0;   ///< 1..65535
  bool ipv6 = false;
};

/// Splits and checks a "host:port" listen entry (numeric hosts only: a
/// listener binds, it does not resolve). Errc::ConfigInvalid on bad input;
/// the detail quotes the input, e.g. "\"[::1]\" is not \"host:port\" ...".
Result<ListenAddress> parse_listen_address(std::string_view s);

/// Parses TOML text. Errors name `source`, the line and the reason:
/// "outpost.toml:12: server.idle_timeout: \"5x\" is not a duration".
/// Unknown keys and tables are errors.
Result<Config> parse_config(std::string_view text, std::string_view source);

/// Reads and parses a file.
Result<Config> load_config_file(const std::string& path);

/// sync.schedule, sync.window and sync.timezone as a schedule on `clock`
/// (cannot fail for a Config that parse_config returned).
Result<sync::SyncSchedule> make_sync_schedule(const Config& c,
                                              sync::WallClock clock = &sync::system_wall_clock_ms);

/// Every key with its current value, as TOML (for `outpost config`).
std::string dump_config(const Config& c);

// ---- SIGHUP reload support (issue #17, app/reload.hpp) -----------------------
/// Keys whose values differ between `a` and `b`, in table order
/// ("server.listen", ...); any change in the [[upstream]] tables is "upstream".
std::vector<std::string> changed_keys(const Config& a, const Config& b);
/// Copies one key (as changed_keys names it) from `from` into `to`.
void copy_key(std::string_view key, const Config& from, Config* to);

}  // namespace outpost::app
