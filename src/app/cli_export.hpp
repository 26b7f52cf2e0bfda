// `outpost export --repo PATTERN[:TAGFILTER]... [--platform P]... [--have FILE]
//  [--max-part SIZE] [--resume] [--compress none|gzip|zstd] -o FILE`
#pragma once
#include "app/cli_args.hpp"

namespace outpost::app {
int cli_export(CliArgs& a);
}
