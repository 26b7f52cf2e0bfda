// `outpost status [--json]` (issue #17): reads GET /outpost/status from the
// outpost running with the same --config (its first listen address,
// app::admin_base_url) and prints it as a table, or the JSON as it is.
// Exit 0 when it answered, 1 when no outpost runs there, 2 on bad usage.
#pragma once
#include <cstdio>
#include <nlohmann/json_fwd.hpp>
#include <string>

#include "app/cli_args.hpp"

namespace outpost::app {

int cli_status(CliArgs& a);

/// The human table for a status document; keys it lacks show "n/a".
std::string status_table(const nlohmann::json& status);

}  // namespace outpost::app
