// Digest grammar (distribution-spec v1.1 / image-spec "Digests") and SHA-256
// over OpenSSL's libcrypto. Knows nothing about where digests come from or go.
//
// Why libcrypto and not mbedTLS (which still does TLS, HMAC, PBKDF2): every
// byte pushed or pulled is hashed once, so SHA-256 speed bounds the upload and
// fill rate. mbedTLS 2.28 has only a portable C SHA-256 (~0.3 GB/s per core
// here); libcrypto picks the CPU's SHA extensions (SHA-NI) or AVX2 code at run
// time (~1.7 GB/s here). docs/architecture.md has the measurements.
#include "base/digest.hpp"

#include <cassert>
#include <cstdlib>

#include <openssl/crypto.h>
#include <openssl/evp.h>

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

namespace {

// A failure here would mean content identity can no longer be trusted (or
// the process is out of memory inside libcrypto), so it is fatal rather than
// an error value every caller would have to carry.
void check(int ok) {
  if (ok != 1) std::abort();
}

// Fetched once: with OpenSSL 3, EVP_sha256() makes every EVP_DigestInit_ex
// look the implementation up in the provider store again (a locked search),
// a cost that shows on manifest-sized inputs. The fetched method lives for
// the whole process and is never freed.
const EVP_MD* sha256_md() {
  static const EVP_MD* const md = [] {
    // libcrypto serves content hashing only (TLS is mbedTLS): no
    // openssl.cnf and no error strings, which touch about 0.6 MB of the
    // library's pages in every process (issue #14's RSS target).
    if (OPENSSL_init_crypto(OPENSSL_INIT_NO_LOAD_CONFIG | OPENSSL_INIT_NO_LOAD_CRYPTO_STRINGS, nullptr) != 1)
      std::abort();
    EVP_MD* m = EVP_MD_fetch(nullptr, "SHA256", nullptr);
    if (m == nullptr) std::abort();
    return m;
  }();
  return md;
}

struct CtxFree {
  void operator()(EVP_MD_CTX* c) const { EVP_MD_CTX_free(c); }
};

}  // namespace

struct Sha256::Impl {
  std::unique_ptr<EVP_MD_CTX, CtxFree> ctx{EVP_MD_CTX_new()};
  bool finished = false;
};

Sha256::Sha256() : impl_(std::make_unique<Impl>()) {
  if (!impl_->ctx) std::abort();
  check(EVP_DigestInit_ex(impl_->ctx.get(), sha256_md(), nullptr));
}

Sha256::~Sha256() = default;

void Sha256::update(const void* data, size_t len) {
  assert(!impl_->finished);
  if (len == 0) return;
  check(EVP_DigestUpdate(impl_->ctx.get(), data, len));
}

Digest Sha256::finish() {
  assert(!impl_->finished);
  impl_->finished = true;
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  check(EVP_DigestFinal_ex(impl_->ctx.get(), out, &n));
  if (n != 32) std::abort();
  std::string s = "sha256:" + to_hex(out, n);
  return Digest(std::move(s), 6);
}

Digest Sha256::peek() const {
  assert(!impl_->finished);
  std::unique_ptr<EVP_MD_CTX, CtxFree> copy{EVP_MD_CTX_new()};
  if (!copy) std::abort();
  check(EVP_MD_CTX_copy_ex(copy.get(), impl_->ctx.get()));
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  check(EVP_DigestFinal_ex(copy.get(), out, &n));
  if (n != 32) std::abort();
  std::string s = "sha256:" + to_hex(out, n);
  return Digest(std::move(s), 6);
}

}  // namespace outpost
