#include "auth/crypto.hpp"

#include <mbedtls/base64.h>
#include <mbedtls/ctr_drbg.h>
#include <mbedtls/entropy.h>
#include <mbedtls/md.h>
#include <mbedtls/pkcs5.h>
#include <mbedtls/sha256.h>

// mbedTLS 2.28's constant_time.h lacks the extern "C" guard its other
// headers have.
extern "C" {
#include <mbedtls/constant_time.h>
}

namespace outpost::auth {

namespace {
const mbedtls_md_info_t* sha256_info() { return mbedtls_md_info_from_type(MBEDTLS_MD_SHA256); }

/// Owner of one md context (the PBKDF2 state).
struct MdCtx {
  mbedtls_md_context_t c;
  MdCtx() { mbedtls_md_init(&c); }
  ~MdCtx() { mbedtls_md_free(&c); }
  MdCtx(const MdCtx&) = delete;
  MdCtx& operator=(const MdCtx&) = delete;
};

struct Drbg {
  mbedtls_entropy_context entropy;
  mbedtls_ctr_drbg_context drbg;
  Drbg() {
    mbedtls_entropy_init(&entropy);
    mbedtls_ctr_drbg_init(&drbg);
  }
  ~Drbg() {
    mbedtls_ctr_drbg_free(&drbg);
    mbedtls_entropy_free(&entropy);
  }
  Drbg(const Drbg&) = delete;
  Drbg& operator=(const Drbg&) = delete;
};
}  // namespace

Result<std::string> pbkdf2_sha256(std::string_view secret, std::string_view salt, uint32_t iterations) {
  MdCtx md;
  if (mbedtls_md_setup(&md.c, sha256_info(), /*hmac=*/1) != 0) return Error(Errc::Internal, "md setup failed");
  std::string out(32, '\0');
  int rc = mbedtls_pkcs5_pbkdf2_hmac(&md.c, reinterpret_cast<const unsigned char*>(secret.data()), secret.size(),
                                     reinterpret_cast<const unsigned char*>(salt.data()), salt.size(), iterations,
                                     static_cast<uint32_t>(out.size()), reinterpret_cast<unsigned char*>(out.data()));
  if (rc != 0) return Error(Errc::Internal, "pbkdf2 failed");
  return out;
}

std::string hmac_sha256(std::string_view key, std::string_view data) {
  std::string out(32, '\0');
  mbedtls_md_hmac(sha256_info(), reinterpret_cast<const unsigned char*>(key.data()), key.size(),
                  reinterpret_cast<const unsigned char*>(data.data()), data.size(),
                  reinterpret_cast<unsigned char*>(out.data()));
  return out;
}

std::string sha256(std::string_view data) {
  std::string out(32, '\0');
  mbedtls_sha256_ret(reinterpret_cast<const unsigned char*>(data.data()), data.size(),
                     reinterpret_cast<unsigned char*>(out.data()), 0);
  return out;
}

Result<std::string> random_bytes(size_t n) {
  Drbg d;
  static const char kPers[] = "outpost-auth";
  if (mbedtls_ctr_drbg_seed(&d.drbg, mbedtls_entropy_func, &d.entropy, reinterpret_cast<const unsigned char*>(kPers),
                            sizeof kPers - 1) != 0)
    return Error(Errc::Internal, "cannot seed the random generator");
  std::string out(n, '\0');
  if (mbedtls_ctr_drbg_random(&d.drbg, reinterpret_cast<unsigned char*>(out.data()), n) != 0)
    return Error(Errc::Internal, "random generator failed");
  return out;
}

std::string b64_encode(std::string_view raw) {
  size_t olen = 0;
  std::string out(4 * ((raw.size() + 2) / 3) + 1, '\0');
  mbedtls_base64_encode(reinterpret_cast<unsigned char*>(out.data()), out.size(), &olen,
                        reinterpret_cast<const unsigned char*>(raw.data()), raw.size());
  out.resize(olen);
  return out;
}

Result<std::string> b64_decode(std::string_view text) {
  size_t olen = 0;
  std::string out(text.size() * 3 / 4 + 3, '\0');
  if (mbedtls_base64_decode(reinterpret_cast<unsigned char*>(out.data()), out.size(), &olen,
                            reinterpret_cast<const unsigned char*>(text.data()), text.size()) != 0)
    return Error(Errc::BadRequest, "bad base64");
  out.resize(olen);
  return out;
}

std::string b64url_encode(std::string_view raw) {
  std::string s = b64_encode(raw);
  while (!s.empty() && s.back() == '=') s.pop_back();
  for (char& c : s) {
    if (c == '+') c = '-';
    else if (c == '/') c = '_';
  }
  return s;
}

Result<std::string> b64url_decode(std::string_view text) {
  std::string s(text);
  for (char& c : s) {
    if (c == '-') c = '+';
    else if (c == '_') c = '/';
    else if (c == '+' || c == '/' || c == '=') return Error(Errc::BadRequest, "bad base64url");
  }
  while (s.size() % 4 != 0) s += '=';
  return b64_decode(s);
}

bool same_bytes(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  return mbedtls_ct_memcmp(a.data(), b.data(), a.size()) == 0;
}

}  // namespace outpost::auth
