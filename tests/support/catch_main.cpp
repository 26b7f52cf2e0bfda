// Catch2 v2 main for every unit test binary; the TAP reporter lets meson
// count each test case (tests/meson.build).
#define CATCH_CONFIG_MAIN
#include <catch2/catch.hpp>
#include <catch2/catch_reporter_tap.hpp>
