#include "app/cli_args.hpp"

#include <cstdio>

namespace outpost::app {

Result<Config> CliArgs::load_config() const {
  return config_path.empty() ? parse_config(default_config_text(), "<embedded default>")
                             : load_config_file(config_path);
}

bool CliArgs::take_flag(std::string_view flag) {
  for (auto it = args.begin(); it != args.end(); ++it) {
    if (*it == flag) {
      args.erase(it);
      return true;
    }
  }
  return false;
}

std::optional<std::string> CliArgs::take_value(std::string_view name, bool* missing) {
  if (missing) *missing = false;
  for (size_t i = 0; i < args.size(); ++i) {
    std::string_view a = args[i];
    if (a == name) {
      if (i + 1 >= args.size()) {
        if (missing) *missing = true;
        args.erase(args.begin() + static_cast<long>(i));
        return std::nullopt;
      }
      std::string v = args[i + 1];
      args.erase(args.begin() + static_cast<long>(i), args.begin() + static_cast<long>(i) + 2);
      return v;
    }
    if (a.size() > name.size() && a.substr(0, name.size()) == name && a[name.size()] == '=') {
      std::string v(a.substr(name.size() + 1));
      args.erase(args.begin() + static_cast<long>(i));
      return v;
    }
  }
  return std::nullopt;
}

bool CliArgs::reject_leftovers(std::string_view cmd) const {
  if (args.empty()) return false;
  fprintf(stderr, "outpost %.*s: unexpected argument '%s'\n", static_cast<int>(cmd.size()), cmd.data(),
          args.front().c_str());
  return true;
}

}  // namespace outpost::app
