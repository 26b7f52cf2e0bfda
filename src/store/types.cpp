// Conversions for the store's value types.
#include "store/types.hpp"

#include <chrono>

namespace outpost::store {

std::string_view origin_name(Origin o) { return o == Origin::Cached ? "cached" : "pushed"; }

Origin origin_from(std::string_view s) { return s == "cached" ? Origin::Cached : Origin::Pushed; }

int64_t system_clock_ms() {
  using namespace std::chrono;
  return duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
}

}  // namespace outpost::store
