// The few primitives access control needs, all from mbedTLS 2.28 (the
// project's choice for HMAC, PBKDF2 and randomness; content hashing stays
// on OpenSSL): PBKDF2-HMAC-SHA256, HMAC-SHA256, SHA-256, random bytes,
// base64url and a constant-time comparison. Plain functions, any thread.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>

#include "base/result.hpp"

namespace outpost::auth {

/// PBKDF2-HMAC-SHA256 of `secret` with `salt`, 32 bytes out.
Result<std::string> pbkdf2_sha256(std::string_view secret, std::string_view salt, uint32_t iterations);
/// HMAC-SHA256(key, data): 32 raw bytes.
std::string hmac_sha256(std::string_view key, std::string_view data);
/// SHA-256(data): 32 raw bytes (the credential cache key; not content identity).
std::string sha256(std::string_view data);
/// `n` bytes from mbedTLS's CTR-DRBG seeded by its entropy sources.
Result<std::string> random_bytes(size_t n);
/// base64url without padding (RFC 4648 §5), as JWTs and secrets use it.
std::string b64url_encode(std::string_view raw);
/// Inverse of b64url_encode; nullopt-like error on bad input.
Result<std::string> b64url_decode(std::string_view text);
/// Standard base64 decode (Basic credentials).
Result<std::string> b64_decode(std::string_view text);
std::string b64_encode(std::string_view raw);
/// Equal contents, in time that depends only on the lengths.
bool same_bytes(std::string_view a, std::string_view b);

}  // namespace outpost::auth
