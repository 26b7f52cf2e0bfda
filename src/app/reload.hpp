// SIGHUP: read the --config file again and apply what can change while
// serving (issue #17). Every module that can take a new value live says so
// with a hook; any other changed key needs a restart: it is refused with one
// log line naming it, and the old value stays in force. A file that does
// not parse changes nothing. Connections are never touched.
//
// Thread: loop thread only (the SIGHUP handler runs there).
#pragma once
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "app/config.hpp"
#include "app/ops.hpp"
#include "base/result.hpp"

namespace outpost::app {

class Reloader {
 public:
  /// Applies `next` (a complete, validated configuration whose
  /// restart-only keys already hold the running values). Runs on every
  /// reload that parsed, also when no key changed: a certificate or token
  /// file may have new contents under the same name. An error is logged
  /// with the hook's name; the other hooks still run.
  using Hook = std::function<Status(const Config& old, const Config& next)>;

  /// A hook run on every reload, in the order added.
  void add(std::string name, Hook h);
  /// Keys (as Config's table names them, "sync.schedule"; "section.*" for
  /// a whole section; "upstream" for the [[upstream]] tables) that some
  /// hook applies live. A changed key not listed here is refused.
  void allow_live(std::vector<std::string> keys);
  bool is_live(std::string_view key) const;
  /// A live key (same naming as allow_live, "section.*" allowed) that some
  /// changes cannot make live: `why_not(live, next)` returns the reason to
  /// refuse it ("" = apply). E.g. parent.url going from none to one needs
  /// subsystems only a start creates.
  using Guard = std::function<std::string(const Config& live, const Config& next)>;
  void guard(std::string key, Guard why_not);
  /// The reason a guard gives for `key` in this change, "" when none refuses.
  std::string refusal(std::string_view key, const Config& live, const Config& next) const;
  /// Runs on the file's config before it is compared with the running one:
  /// fills in what the start derived (server.max_connections = 0 means "from
  /// RLIMIT_NOFILE", and the running config holds the derived number).
  void set_normalize(std::function<void(const Config& live, Config* next)> fn) { normalize_ = std::move(fn); }

  /// Reads `path` and applies it to `*live` (the running configuration,
  /// updated in place with the accepted values). Fills `*report`.
  void reload(const std::string& path, Config* live, ReloadReport* report, uint64_t now_wall_ms);

 private:
  struct Entry {
    std::string name;
    Hook hook;
  };
  std::vector<Entry> hooks_;
  std::vector<std::string> live_keys_;
  std::vector<std::pair<std::string, Guard>> guards_;
  std::function<void(const Config&, Config*)> normalize_;
};

}  // namespace outpost::app
