// Content identity: the Digest value type ("sha256:<64 hex>") and an
// incremental SHA-256 over OpenSSL's libcrypto (digest.cpp says why not
// mbedTLS). xxHash is never used for identity.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "base/result.hpp"

namespace outpost {

/// A validated digest. Only sha256 is accepted (distribution-spec: registries
/// MUST support sha256; sha512 is optional). parse() checks the spec grammar
/// for every algorithm, the exact form of sha256 (64 lowercase hex) and sha512
/// (128 lowercase hex), and then refuses anything but sha256 with
/// DIGEST_INVALID "unsupported digest algorithm", so a well-formed sha512 gets
/// a clear answer instead of a grammar error.
class Digest {
 public:
  Digest() = default;
  /// Parses "algorithm:encoded" per the spec grammar; lowercase hex, right length.
  /// Errors are Errc::DigestInvalid with a detail naming what is wrong.
  static Result<Digest> parse(std::string_view s);
  static Digest sha256_of(std::string_view bytes);

  const std::string& str() const { return s_; }           ///< "sha256:abcd…"
  std::string_view algorithm() const { return std::string_view(s_).substr(0, colon_); }
  std::string_view hex() const { return std::string_view(s_).substr(colon_ + 1); }
  bool empty() const { return s_.empty(); }
  bool operator==(const Digest& o) const { return s_ == o.s_; }
  bool operator<(const Digest& o) const { return s_ < o.s_; }

 private:
  friend class Sha256;  // builds the result of finish() without re-parsing
  Digest(std::string s, size_t colon) : s_(std::move(s)), colon_(colon) {}
  std::string s_;
  size_t colon_ = 0;
};

/// Incremental SHA-256 (owns an EVP_MD_CTX). Its state lives only in memory:
/// a resumed upload re-hashes its durable bytes (store/upload.cpp).
class Sha256 {
 public:
  Sha256();
  ~Sha256();
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;
  void update(const void* data, size_t len);
  void update(std::string_view s) { update(s.data(), s.size()); }
  /// Finishes and returns "sha256:<hex>"; the object may not be updated after.
  Digest finish();
  /// The digest of what was hashed so far, leaving the state as it is (a
  /// copy is finished): updates may follow.
  Digest peek() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

/// Lowercase hex of raw bytes.
std::string to_hex(const unsigned char* p, size_t n);

}  // namespace outpost
