// RFC 9110 byte ranges for GET responses: one range only (multipart ranges
// are answered with the whole representation, which the RFC allows).
#pragma once
#include <cstdint>
#include <optional>
#include <string_view>

namespace outpost::http {

struct ByteRange {
  uint64_t offset = 0;
  uint64_t length = 0;
};

enum class RangeVerdict { Whole, Partial, Unsatisfiable };

struct RangeResult {
  RangeVerdict verdict = RangeVerdict::Whole;
  ByteRange range;  ///< valid for Partial
};

/// Interprets a Range header value against a representation of `size` bytes.
/// Syntactically invalid or multi-range headers give Whole (RFC 9110 §14.2:
/// a server MAY ignore Range); well-formed but unsatisfiable give Unsatisfiable.
RangeResult evaluate_range(std::optional<std::string_view> header, uint64_t size);

}  // namespace outpost::http
