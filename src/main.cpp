// outpost: argv -> subcommand. Loads the config, builds the App, runs it.
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <string>
#include <string_view>

#include "app/app.hpp"
#include "app/config.hpp"
#include "app/sync_cli.hpp"
#include "base/log.hpp"
#include "base/size.hpp"
#include "http/server.hpp"
#include "outpost_version.h"

namespace {

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
          "  version   print the version and exit\n"
          "\n"
          "options:\n"
          "  --config FILE   TOML configuration (see conf/outpost.toml); without it the\n"
          "                  built-in default is used\n");
  return out == stdout ? 0 : 2;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace outpost;
  std::string cmd, sub, config_path;
  app::SyncNowOptions sync_opts;
  bool sync_flags = false;  // --wait / --timeout: only with "sync now"
  for (int i = 1; i < argc; ++i) {
    std::string_view a = argv[i];
    if (a == "--config" || a == "-c") {
      if (i + 1 >= argc) { fprintf(stderr, "outpost: --config needs a file\n"); return 2; }
      config_path = argv[++i];
    } else if (a.rfind("--config=", 0) == 0) {
      config_path = std::string(a.substr(9));
    } else if (a == "--wait") {
      sync_opts.wait = sync_flags = true;
    } else if (a == "--timeout" || a.rfind("--timeout=", 0) == 0) {
      std::string_view v;
      if (a == "--timeout") {
        if (i + 1 >= argc) { fprintf(stderr, "outpost: --timeout needs a duration (e.g. 30m)\n"); return 2; }
        v = argv[++i];
      } else {
        v = a.substr(10);
      }
      auto ms = parse_duration_ms(v);
      if (!ms || *ms == 0) {
        fprintf(stderr, "outpost: --timeout: \"%.*s\" is not a duration (e.g. \"30m\", \"2h\")\n",
                static_cast<int>(v.size()), v.data());
        return 2;
      }
      sync_opts.timeout_ms = *ms;
      sync_flags = true;
    } else if (a == "-h" || a == "--help" || a == "help") {
      return usage(stdout);
    } else if (cmd.empty() && !a.empty() && a[0] != '-') {
      cmd = a;
    } else if (cmd == "sync" && sub.empty() && !a.empty() && a[0] != '-') {
      sub = a;
    } else {
      fprintf(stderr, "outpost: unexpected argument '%s'\n", argv[i]);
      return usage(stderr);
    }
  }
  if (cmd == "version") {
    printf("outpost %s\n", OUTPOST_VERSION);
    return 0;
  }
  if (cmd == "sync" && sub != "now") {
    fprintf(stderr, "outpost: sync: expected \"now\" (outpost sync now [--wait] [--timeout DUR])\n");
    return 2;
  }
  if (sync_flags && cmd != "sync") {
    fprintf(stderr, "outpost: --wait and --timeout go with \"sync now\"\n");
    return 2;
  }
  if (cmd != "serve" && cmd != "config" && cmd != "sync") return usage(stderr);

  auto cfg = config_path.empty() ? app::parse_config(app::default_config_text(), "<embedded default>")
                                 : app::load_config_file(config_path);
  if (!cfg) {
    fprintf(stderr, "outpost: %s\n", cfg.error().message().c_str());
    return 2;
  }
  if (cmd == "config") {
    fputs(app::dump_config(*cfg).c_str(), stdout);
    return 0;
  }
  if (cmd == "sync") return app::sync_now(*cfg, sync_opts, stdout, stderr);
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
