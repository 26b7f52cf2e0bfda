// Catch2 v2 main for every unit test binary. "-r tapcase" prints one TAP
// line per TEST_CASE so meson and .ci/run count test cases, not assertions.
#define CATCH_CONFIG_MAIN
#include <catch2/catch.hpp>
#include <catch2/catch_reporter_tap.hpp>

#include "tap_case_reporter.hpp"

#include <csignal>

namespace {
// sendfile(2) to a socket whose peer left raises SIGPIPE (no MSG_NOSIGNAL
// for it); the daemon ignores SIGPIPE in App::run, and so do the tests.
const bool kIgnoreSigpipe = [] {
  std::signal(SIGPIPE, SIG_IGN);
  return true;
}();
}  // namespace
