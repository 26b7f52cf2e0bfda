// outpost: argv -> subcommand. Takes --config (anywhere) and the command
// name; each command parses the rest of its own arguments (app/cli_args.hpp).
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <string>
#include <string_view>

#include "app/app.hpp"
#include "app/cli_args.hpp"
#include "app/cli_status.hpp"
#include "app/cli_check.hpp"
#include "app/cli_gc.hpp"
#include "app/config.hpp"
#include "app/cli_token.hpp"
#include "app/sync_cli.hpp"
#include "app/cli_export.hpp"
#include "app/cli_import.hpp"
#include "app/cli_inventory.hpp"
#include "base/log.hpp"
#include "base/size.hpp"
#include "http/server.hpp"
#include "outpost_version.h"

namespace {

using outpost::app::CliArgs;

int usage(FILE* out) {
  fprintf(out,
          "usage: outpost <command> [--config FILE]\n"
          "\n"
          "commands:\n"
          "  serve     run the registry (default config: a local registry on 127.0.0.1:5000)\n"
          "  config    print the effective configuration and exit\n"
          "  sync now [--wait] [--timeout DUR]\n"
          "            open a sync window on the running outpost now (POST /outpost/sync\n"
          "            to the first server.listen address); --wait prints progress until\n"
          "            the replay queue is empty or the window ends (at most --timeout, 1h)\n"
          "  token create|list|show|disable|enable|delete|rotate|deactivate [NAME]\n"
          "            client and sync tokens ([auth], docs/operations.md \"Access control\"):\n"
          "            create NAME --scope 'PATTERN:pull,push' --expires DUR prints the secret once;\n"
          "            on the store offline, or through the running server (loopback)\n"
          "  status [--json]\n"
          "            show the running outpost's state (GET /outpost/status at the first\n"
          "            server.listen address): link, sync, replay queue, cache, upstreams\n"
          "  gc [--dry-run] [--grace DUR] [--json]\n"
          "            one garbage collection pass: offline on the store, or through the\n"
          "            running server (POST /outpost/gc) when it holds the store\n"
          "  check [--repair] [--rate BYTES] [--json]\n"
          "            verify every stored blob's digest and the files against the rows;\n"
          "            --repair moves corrupt files aside (cached ones are refetched on\n"
          "            the next pull); exit 1 when problems are found\n"
          "  version   print the version and exit\n"
          "  export --repo PATTERN[:TAGFILTER]... [--platform OS/ARCH]... [--have FILE]\n"
          "         [--max-part SIZE] [--resume] [--compress none|gzip|zstd] -o FILE\n"
          "            write a bundle (OCI layout tar) of the matching tags\n"
          "  import [--repo NAME] FILE|FILE.000|DIR...\n"
          "            verify and store bundles, docker save archives or OCI layouts\n"
          "  inventory -o FILE\n"
          "            list the digests held here, for the sender's export --have\n"
          "\n"
          "options:\n"
          "  --config FILE   TOML configuration (see conf/outpost.toml); without it the\n"
          "                  built-in default is used\n");
  return out == stdout ? 0 : 2;
}

int cmd_version(CliArgs& a) {
  if (a.reject_leftovers("version")) return 2;
  printf("outpost %s\n", OUTPOST_VERSION);
  return 0;
}

int cmd_config(CliArgs& a) {
  using namespace outpost;
  if (a.reject_leftovers("config")) return 2;
  auto cfg = a.load_config();
  if (!cfg) {
    fprintf(stderr, "outpost: %s\n", cfg.error().message().c_str());
    return 2;
  }
  fputs(app::dump_config(*cfg).c_str(), stdout);
  return 0;
}

int cmd_sync(CliArgs& a) {
  using namespace outpost;
  if (a.args.empty() || a.args.front() != "now") {
    fprintf(stderr, "outpost: sync: expected \"now\" (outpost sync now [--wait] [--timeout DUR])\n");
    return 2;
  }
  a.args.erase(a.args.begin());
  app::SyncNowOptions o;
  o.wait = a.take_flag("--wait");
  bool missing = false;
  if (auto v = a.take_value("--timeout", &missing)) {
    auto ms = parse_duration_ms(*v);
    if (!ms || *ms == 0) {
      fprintf(stderr, "outpost: --timeout: \"%s\" is not a duration (e.g. \"30m\", \"2h\")\n", v->c_str());
      return 2;
    }
    o.timeout_ms = *ms;
  } else if (missing) {
    fprintf(stderr, "outpost: --timeout needs a duration (e.g. 30m)\n");
    return 2;
  }
  if (a.reject_leftovers("sync now")) return 2;
  auto cfg = a.load_config();
  if (!cfg) {
    fprintf(stderr, "outpost: %s\n", cfg.error().message().c_str());
    return 2;
  }
  return app::sync_now(*cfg, o, stdout, stderr);
}

int cmd_serve(CliArgs& a) {
  using namespace outpost;
  if (a.reject_leftovers("serve")) return 2;
  auto cfg = a.load_config();
  if (!cfg) {
    fprintf(stderr, "outpost: %s\n", cfg.error().message().c_str());
    return 2;
  }
  log::set_level(cfg->log.level);
  // Every connection is a descriptor: take what the service may have
  // (LimitNOFILE), and size the connection limit from it unless configured.
  const uint64_t nofile = http::raise_open_file_limit();
  const uint32_t fit = http::max_connections_for(nofile);
  if (cfg->server.max_connections == 0) {
    cfg->server.max_connections = fit;
  } else if (cfg->server.max_connections > fit) {
    log::warn("max_connections is more than the open-file limit allows; expect accept back-offs",
              " max_connections=" + std::to_string(cfg->server.max_connections) + " nofile=" + std::to_string(nofile) +
                  " fits=" + std::to_string(fit));
  }
  log::info("connection limit", " max_connections=" + std::to_string(cfg->server.max_connections) +
                                     " nofile=" + std::to_string(nofile));
  app::App app(std::move(*cfg));
  const int rc = app.run();  // store closed, listeners and upstream calls ended
#if !defined(__SANITIZE_ADDRESS__)
  // Destroying the App runs its loop until every request is over, and a
  // getaddrinfo already running on libuv's pool cannot be cancelled: the
  // parent probe resolving a name whose DNS server does not answer held the
  // exit for the resolver's timeout, 0.7-2 s after "stopped" (issue #13).
  // Nothing durable is left to do, so leave now. Sanitized builds take the
  // normal path, so LeakSanitizer still checks every owner at exit.
  std::fflush(nullptr);
  _exit(rc);
#endif
  return rc;
}

struct Command {
  const char* name;
  int (*run)(CliArgs&);
};

// One line per command; each lives in its own file under src/app/.
constexpr Command kCommands[] = {
    {"serve", cmd_serve},
    {"config", cmd_config},
    {"sync", cmd_sync},
    {"status", outpost::app::cli_status},
    {"gc", outpost::app::cli_gc},
    {"check", outpost::app::cli_check},
    {"version", cmd_version},
    {"token", outpost::app::cli_token},
    {"export", outpost::app::cli_export},
    {"import", outpost::app::cli_import},
    {"inventory", outpost::app::cli_inventory},
};

}  // namespace

int main(int argc, char** argv) {
  CliArgs a;
  std::string cmd;
  for (int i = 1; i < argc; ++i) {
    std::string_view s = argv[i];
    if (s == "--config" || s == "-c") {
      if (i + 1 >= argc) { fprintf(stderr, "outpost: --config needs a file\n"); return 2; }
      a.config_path = argv[++i];
    } else if (s.rfind("--config=", 0) == 0) {
      a.config_path = std::string(s.substr(9));
    } else if (cmd.empty() && (s == "-h" || s == "--help" || s == "help")) {
      return usage(stdout);
    } else if (cmd.empty() && !s.empty() && s[0] != '-') {
      cmd = s;
    } else if (cmd.empty()) {
      fprintf(stderr, "outpost: unexpected argument '%s'\n", argv[i]);
      return usage(stderr);
    } else {
      a.args.emplace_back(s);
    }
  }
  for (const auto& c : kCommands) {
    if (cmd == c.name) return c.run(a);
  }
  return usage(stderr);
}
