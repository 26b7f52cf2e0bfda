// RFC 9110 byte ranges for GET responses: one range only (multipart ranges
// are answered with the whole representation, which the RFC allows); and the
// Content-Range of a distribution-spec chunked upload (PATCH).
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

/// First and last byte of an upload chunk, both inclusive (end >= start).
struct ContentRange {
  uint64_t start = 0;
  uint64_t end = 0;
};

/// "<start>-<end>" as distribution-spec's PATCH Content-Range; tolerates the
/// RFC 9110 "bytes " prefix and a "/<complete-length>" suffix (ignored).
/// nullopt unless both bounds are decimal uint64, end >= start and the
/// length end - start + 1 fits in a uint64.
std::optional<ContentRange> parse_content_range(std::string_view v);

}  // namespace outpost::http
