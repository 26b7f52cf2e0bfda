#include "app/reload.hpp"

#include "base/log.hpp"

namespace outpost::app {

void Reloader::add(std::string name, Hook h) { hooks_.push_back({std::move(name), std::move(h)}); }

void Reloader::allow_live(std::vector<std::string> keys) {
  for (auto& k : keys) live_keys_.push_back(std::move(k));
}

namespace {
/// `pattern` names `key`: equal, or "sync.*" covering every key of [sync].
bool names_key(std::string_view pattern, std::string_view key) {
  if (pattern == key) return true;
  return pattern.size() > 2 && pattern.ends_with(".*") && key.starts_with(pattern.substr(0, pattern.size() - 1));
}
}  // namespace

bool Reloader::is_live(std::string_view key) const {
  for (const auto& k : live_keys_)
    if (names_key(k, key)) return true;
  return false;
}

void Reloader::guard(std::string key, Guard why_not) { guards_.emplace_back(std::move(key), std::move(why_not)); }

std::string Reloader::refusal(std::string_view key, const Config& live, const Config& next) const {
  for (const auto& [k, g] : guards_) {
    if (!names_key(k, key)) continue;
    if (std::string why = g(live, next); !why.empty()) return why;
  }
  return {};
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
  // Guards see the file's values as they are (before any key is copied
  // back), so a guard on "parent.*" judges the whole [parent] table.
  const Config as_read = *next;
  for (const auto& key : changed_keys(*live, as_read)) {
    std::string why = is_live(key) ? refusal(key, *live, as_read) : std::string("not reloadable");
    if (why.empty()) {
      report->applied.push_back(key);
      continue;
    }
    copy_key(key, *live, &*next);
    report->refused.push_back(key);
    log::warn("reload: key needs a restart; the running value stays", " key=" + key + " reason=" + log::quote(why));
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
