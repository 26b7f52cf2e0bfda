// Fuzz target: the config file (src/app/config) parsed from a string. Any
// text either parses or gives a ConfigInvalid error naming the source; a
// config that parses dumps (`outpost config`) to TOML that parses back to
// the same config, [[upstream]] tables included.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "app/config.hpp"
#include "sync/keep_pattern.hpp"
#include "fuzz_check.hpp"

using namespace outpost;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  auto c = app::parse_config(text, "fuzz.toml");
  if (!c) {
    FUZZ_CHECK(c.error().code == Errc::ConfigInvalid);
    FUZZ_CHECK(c.error().detail.rfind("fuzz.toml:", 0) == 0);
    return 0;
  }
  FUZZ_CHECK(c->source == "fuzz.toml");
  FUZZ_CHECK(!c->server.listen.empty());
  for (const auto& l : c->server.listen) FUZZ_CHECK(app::parse_listen_address(l).ok());
  for (const auto& u : c->upstreams) FUZZ_CHECK(!u.name.empty() && !u.url.empty());
  // [sync] (issue #15): what loaded is usable: the schedule builds and
  // answers, every keep pattern parses.
  auto sched = app::make_sync_schedule(*c, [] { return int64_t{1'780'000'000'000}; });
  FUZZ_CHECK(sched.ok());
  if (!sched->is_continuous()) {
    FUZZ_CHECK(sched->next_window(sched->now()).has_value());
    (void)sched->is_open();
  }
  for (const auto& k : c->sync.keep) FUZZ_CHECK(sync::KeepPattern::parse(k).ok());
  const std::string dumped = app::dump_config(*c);
  auto back = app::parse_config(dumped, "fuzz.toml");
  if (!back) std::fprintf(stderr, "dump does not parse back:\n%s\n%s\n", dumped.c_str(), back.error().detail.c_str());
  FUZZ_CHECK(back.ok());
  FUZZ_CHECK(*back == *c);
  FUZZ_CHECK(app::dump_config(*back) == dumped);
  return 0;
}
