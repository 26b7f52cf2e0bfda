// `outpost check [--repair] [--rate BYTES] [--json]` (issue #18): verify
// every stored blob, offline on the store or through POST/GET
// /outpost/check when a server holds the store. Exit status: 0 all good,
// 1 problems found (or the check failed), 2 usage.
#pragma once
#include "app/cli_args.hpp"

namespace outpost::app {
int cli_check(CliArgs& a);
}
