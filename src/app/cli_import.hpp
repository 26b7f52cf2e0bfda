// `outpost import [--repo NAME] FILE|DIR...`
#pragma once
#include "app/cli_args.hpp"

namespace outpost::app {
int cli_import(CliArgs& a);
}
