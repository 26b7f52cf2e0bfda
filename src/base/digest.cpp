// Digest grammar (distribution-spec v1.1 / image-spec "Digests") and SHA-256
// over mbedTLS 2.28. Knows nothing about where digests come from or go.
#include "base/digest.hpp"

#include <cassert>
#include <cstdlib>

#include <mbedtls/sha256.h>

namespace outpost {

namespace {

bool is_lower_alnum(char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); }
bool is_lower_hex(char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); }

// algorithm-component ::= [a-z0-9]+
// algorithm-separator ::= [+._-]
// algorithm           ::= component (separator component)*
bool valid_algorithm(std::string_view a) {
  bool need_component = true;  // at start and right after a separator
  for (char c : a) {
    if (is_lower_alnum(c)) {
      need_component = false;
    } else if (c == '+' || c == '.' || c == '_' || c == '-') {
      if (need_component) return false;  // leading or doubled separator
      need_component = true;
    } else {
      return false;
    }
  }
  return !need_component;  // also rejects "" and a trailing separator
}

// encoded ::= [a-zA-Z0-9=_-]+
bool valid_encoded(std::string_view e) {
  if (e.empty()) return false;
  for (char c : e) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '=' || c == '_' || c == '-';
    if (!ok) return false;
  }
  return true;
}

bool all_lower_hex(std::string_view e) {
  for (char c : e) {
    if (!is_lower_hex(c)) return false;
  }
  return true;
}

// The input may come straight from a URL: keep the detail short and printable.
std::string shown(std::string_view s) {
  constexpr size_t kMax = 80;
  std::string out = "\"";
  for (size_t i = 0; i < s.size() && i < kMax; ++i) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    out += (c < 0x20 || c >= 0x7f) ? '?' : static_cast<char>(c);
  }
  if (s.size() > kMax) out += "...";
  out += '"';
  return out;
}

Error invalid(std::string_view s, std::string_view why) {
  return Error(Errc::DigestInvalid, "invalid digest " + shown(s) + ": " + std::string(why));
}

}  // namespace

Result<Digest> Digest::parse(std::string_view s) {
  size_t colon = s.find(':');
  if (colon == std::string_view::npos) return invalid(s, "expected \"algorithm:encoded\"");
  std::string_view alg = s.substr(0, colon);
  std::string_view enc = s.substr(colon + 1);
  if (!valid_algorithm(alg)) return invalid(s, "malformed algorithm");
  if (!valid_encoded(enc)) return invalid(s, "malformed encoded part");

  // Registered algorithms constrain the encoded part further (image-spec
  // "Registered algorithms"): lowercase hex of the exact length.
  if (alg == "sha256") {
    if (enc.size() != 64 || !all_lower_hex(enc))
      return invalid(s, "sha256 needs exactly 64 lowercase hex characters");
    return Digest(std::string(s), colon);
  }
  if (alg == "sha512" && (enc.size() != 128 || !all_lower_hex(enc)))
    return invalid(s, "sha512 needs exactly 128 lowercase hex characters");
  // Well-formed, but the store addresses content by sha256 only.
  return Error(Errc::DigestInvalid,
               "unsupported digest algorithm \"" + std::string(alg) + "\" (only sha256 is accepted)");
}

Digest Digest::sha256_of(std::string_view bytes) {
  Sha256 h;
  h.update(bytes);
  return h.finish();
}

std::string to_hex(const unsigned char* p, size_t n) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  out.resize(2 * n);
  for (size_t i = 0; i < n; ++i) {
    out[2 * i] = kDigits[p[i] >> 4];
    out[2 * i + 1] = kDigits[p[i] & 0x0f];
  }
  return out;
}

struct Sha256::Impl {
  mbedtls_sha256_context ctx;
  bool finished = false;
};

// The *_ret functions can only fail with an alternative (hardware) SHA-256
// implementation; Debian's mbedTLS uses the software one. A failure would
// mean content identity can no longer be trusted, so it is fatal rather than
// an error value every caller would have to carry.
namespace {
void check(int rc) {
  if (rc != 0) std::abort();
}
}  // namespace

Sha256::Sha256() : impl_(std::make_unique<Impl>()) {
  mbedtls_sha256_init(&impl_->ctx);
  check(mbedtls_sha256_starts_ret(&impl_->ctx, /*is224=*/0));
}

Sha256::~Sha256() { mbedtls_sha256_free(&impl_->ctx); }

void Sha256::update(const void* data, size_t len) {
  assert(!impl_->finished);
  if (len == 0) return;
  check(mbedtls_sha256_update_ret(&impl_->ctx, static_cast<const unsigned char*>(data), len));
}

Digest Sha256::finish() {
  assert(!impl_->finished);
  impl_->finished = true;
  unsigned char out[32];
  check(mbedtls_sha256_finish_ret(&impl_->ctx, out));
  std::string s = "sha256:" + to_hex(out, sizeof out);
  return Digest(std::move(s), 6);
}

}  // namespace outpost
