// `outpost inventory -o FILE`: what this site holds, for the sending site's
// `outpost export --have FILE` (bundle/inventory.hpp).
#include "app/cli_inventory.hpp"

#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>

#include "app/admin_client.hpp"
#include "app/bundle_cli.hpp"
#include "base/log.hpp"
#include "bundle/inventory.hpp"

namespace outpost::app {

int cli_inventory(CliArgs& a) {
  bool missing = false;
  std::optional<std::string> out = a.take_value("-o", &missing);
  if (!out && !missing) out = a.take_value("--output", &missing);
  if (!out) {
    fprintf(stderr, "outpost inventory: -o FILE is required (\"-\" for stdout)\n");
    return 2;
  }
  if (a.reject_leftovers("inventory")) return 2;
  // The store's info lines (root created, recovery) would interleave with
  // the progress line and the summary; warnings and errors still show.
  log::set_level(log::Level::Warn);
  auto cfg = a.load_config();
  if (!cfg) {
    fprintf(stderr, "outpost inventory: %s\n", cfg.error().message().c_str());
    return 2;
  }
  std::string text;
  if (store_in_use(cfg->storage.root)) {
    fprintf(stderr, "outpost inventory: the store is in use by the running server: asking it\n");
    auto body = admin_request(*cfg, false, "/outpost/bundle/inventory", "");
    if (!body) {
      fprintf(stderr, "outpost inventory: %s\n", body.error().message().c_str());
      return 1;
    }
    text = std::move(*body);
  } else {
    auto st = store::Store::open(cfg->storage.root, bundle_store_options(*cfg));
    if (!st) {
      fprintf(stderr, "outpost inventory: cannot open the store at %s: %s\n", cfg->storage.root.c_str(),
              st.error().message().c_str());
      return 1;
    }
    auto inv = bundle::take_inventory(**st);
    if (!inv) {
      fprintf(stderr, "outpost inventory: %s\n", inv.error().message().c_str());
      return 1;
    }
    text = bundle::inventory_json(*inv, store::system_clock_ms());
  }
  auto j = nlohmann::json::parse(text, nullptr, false);
  const size_t nm = j.is_object() && j.contains("manifests") ? j["manifests"].size() : 0;
  const size_t nb = j.is_object() && j.contains("blobs") ? j["blobs"].size() : 0;
  if (*out == "-") {
    fputs(text.c_str(), stdout);
  } else {
    std::ofstream f(*out, std::ios::trunc);
    f << text;
    f.close();
    if (!f) {
      fprintf(stderr, "outpost inventory: cannot write %s\n", out->c_str());
      return 1;
    }
    printf("inventory of %zu manifests and %zu blobs written to %s\n", nm, nb, out->c_str());
  }
  return 0;
}

}  // namespace outpost::app
