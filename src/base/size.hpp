// Human quantities in config files: sizes ("200GiB", "64KiB", "512") and
// durations ("30s", "4h", "7d", "250ms").
#pragma once
#include <cstdint>
#include <string>
#include <string_view>

#include "base/result.hpp"

namespace outpost {

/// Bytes from "<n>[B|KiB|MiB|GiB|TiB|KB|MB|GB|TB]"; plain digits are bytes.
Result<uint64_t> parse_size(std::string_view s);

/// A byte count for people: "512 B", "1.5 MiB", "2.0 GiB" (binary units).
std::string human_size(uint64_t n);

/// Milliseconds from "<n>(ms|s|m|h|d)".
Result<uint64_t> parse_duration_ms(std::string_view s);

}  // namespace outpost
