// Error values shared by every module: one Errc per failure kind, each bound
// (in errc.def) to its OCI code and HTTP status. Knows nothing about HTTP I/O.
#pragma once
#include <string>
#include <string_view>

namespace outpost {

enum class Errc {
#define X(name, oci, status, msg) name,
#include "base/errc.def"
#undef X
};

/// OCI error code string ("BLOB_UNKNOWN"), HTTP status and default message of `c`.
std::string_view oci_code(Errc c);
int http_status(Errc c);
std::string_view default_message(Errc c);
std::string_view errc_name(Errc c);

struct Error {
  Errc code = Errc::Internal;
  std::string detail;  ///< human-readable, goes into the OCI error's "message"
  /// Optional, for errors relayed from a parent registry: a Retry-After value
  /// to send with the error, and a status-line reason phrase ("Parent
  /// Offline And Not Cached") for clients that print only the status line.
  std::string retry_after;
  std::string reason;

  Error() = default;
  Error(Errc c, std::string d = {}) : code(c), detail(std::move(d)) {}
  /// The message to show: detail when set, else the table's default.
  std::string message() const;
};

/// OCI error body: {"errors":[{"code":..,"message":..,"detail":..}]}
std::string error_body(const Error& e);

}  // namespace outpost
