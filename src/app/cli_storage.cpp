#include "app/cli_storage.hpp"

#include <cstdio>

namespace outpost::app {

Result<std::unique_ptr<store::Store>> open_store_offline(const Config& cfg, bool* running) {
  *running = store_in_use(cfg.storage.root);
  if (*running) return std::unique_ptr<store::Store>();
  store::StoreOptions so;
  so.max_manifest_bytes = cfg.registry.max_manifest_bytes;
  auto s = store::Store::open(cfg.storage.root, so);
  // A server that took the lock since the probe above.
  if (!s && s.error().message().find("in use by another process") != std::string::npos) {
    *running = true;
    return std::unique_ptr<store::Store>();
  }
  return s;
}

int open_storage_target(CliArgs& a, const char* cmd, StorageTarget* out) {
  if (a.reject_leftovers(cmd)) return 2;
  auto cfg = a.load_config();
  if (!cfg) {
    fprintf(stderr, "outpost: %s\n", cfg.error().message().c_str());
    return 2;
  }
  bool running = false;
  auto st = open_store_offline(*cfg, &running);
  if (!st) {
    fprintf(stderr, "outpost: %s: cannot open the store %s: %s\n", cmd, cfg->storage.root.c_str(),
            st.error().message().c_str());
    return 1;
  }
  out->cfg = std::move(*cfg);
  out->store = std::move(*st);
  return 0;
}

}  // namespace outpost::app
