// `outpost inventory -o FILE`
#pragma once
#include "app/cli_args.hpp"

namespace outpost::app {
int cli_inventory(CliArgs& a);
}
