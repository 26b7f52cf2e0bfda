// What every `outpost <command>` gets: the config path given with --config
// (empty: the embedded default) and the arguments after the command name,
// --config removed. Each command parses its own flags from `args`, so a new
// command is one file and one line in main.cpp's table.
#pragma once
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "app/config.hpp"
#include "base/result.hpp"

namespace outpost::app {

struct CliArgs {
  std::string config_path;               ///< --config FILE; empty = embedded default
  std::vector<std::string> args;         ///< after the command name, without --config

  /// The configuration --config names, or the embedded default.
  Result<Config> load_config() const;
  /// True and removes it when `flag` (e.g. "--json") is among args.
  bool take_flag(std::string_view flag);
  /// The value of `--name VALUE` or `--name=VALUE` (removed from args), or
  /// nothing when absent. `missing` is set when the flag has no value.
  std::optional<std::string> take_value(std::string_view name, bool* missing = nullptr);
  /// Prints "outpost CMD: unexpected argument 'X'" for the first leftover
  /// argument and returns true when there is one.
  bool reject_leftovers(std::string_view cmd) const;
};

}  // namespace outpost::app
