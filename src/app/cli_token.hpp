// `outpost token create|list|show|disable|enable|delete|rotate|deactivate`
// (issue #16): offline on the store root's auth.db when no server holds the
// store lock, else through the running server's loopback-only admin
// endpoint POST /outpost/tokens (so the server applies it at once).
#pragma once
#include "app/cli_args.hpp"

namespace outpost::app {

int cli_token(CliArgs& a);

}  // namespace outpost::app
