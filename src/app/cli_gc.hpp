// `outpost gc [--dry-run] [--grace DUR] [--json]` (issue #18): one garbage collection
// pass, offline on the store, or through POST /outpost/gc when a server
// holds the store.
#pragma once
#include "app/cli_args.hpp"

namespace outpost::app {
int cli_gc(CliArgs& a);
}
