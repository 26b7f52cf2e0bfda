#include "app/reload.hpp"

#include "base/log.hpp"

namespace outpost::app {

void Reloader::add(std::string name, Hook h) { hooks_.push_back({std::move(name), std::move(h)}); }

void Reloader::allow_live(std::vector<std::string> keys) {
  for (auto& k : keys) live_keys_.push_back(std::move(k));
}

bool Reloader::is_live(std::string_view key) const {
  for (const auto& k : live_keys_) {
    if (k == key) return true;
    // "sync.*" covers every key of [sync].
    if (k.size() > 2 && k.ends_with(".*") && key.starts_with(std::string_view(k).substr(0, k.size() - 1))) return true;
  }
  return false;
}

void Reloader::reload(const std::string& path, Config* live, ReloadReport* report, uint64_t now_wall_ms) {
  report->count++;
  report->last_ms = now_wall_ms;
  report->applied.clear();
  report->refused.clear();
  if (path.empty()) {
    report->result = "no --config file: the built-in default cannot change";
    log::warn("reload: nothing to read", " reason=" + log::quote(report->result));
    return;
  }
  // A small file read on the loop thread: as long as reading the file at
  // start, and a SIGHUP is rare.
  auto next = load_config_file(path);
  if (!next) {
    report->result = next.error().message();
    log::error("reload failed: configuration kept as it was",
               " config=" + log::quote(path) + " reason=" + log::quote(report->result));
    return;
  }
  if (normalize_) normalize_(*live, &*next);
  for (const auto& key : changed_keys(*live, *next)) {
    if (is_live(key)) {
      report->applied.push_back(key);
      continue;
    }
    copy_key(key, *live, &*next);
    report->refused.push_back(key);
    log::warn("reload: key needs a restart; the running value stays", " key=" + key);
  }
  std::string failed;
  for (const auto& h : hooks_) {
    if (Status st = h.hook(*live, *next); !st) {
      log::error("reload: could not apply", " part=" + h.name + " reason=" + log::quote(st.error().message()));
      if (!failed.empty()) failed += "; ";
      failed += h.name + ": " + st.error().message();
    }
  }
  *live = std::move(*next);
  report->result = failed.empty() ? "ok" : failed;
  std::string applied;
  for (const auto& k : report->applied) applied += (applied.empty() ? "" : ",") + k;
  log::info("configuration reloaded", " config=" + log::quote(path) + " applied=" + log::quote(applied) +
                                          " refused=" + std::to_string(report->refused.size()));
}

}  // namespace outpost::app
