#include "app/cli_storage.hpp"

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

}  // namespace outpost::app
