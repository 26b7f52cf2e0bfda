// Fuzz target: repository names, tags and digests (src/base/reference,
// src/base/digest). Whatever the bytes, the matchers must not crash, and what
// they accept must satisfy the grammar's promises: a valid name is a safe
// relative path, a parsed digest is exactly "sha256:<64 lowercase hex>".
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "base/digest.hpp"
#include "base/reference.hpp"
#include "fuzz_check.hpp"

using namespace outpost;

namespace {
bool lower_alnum(char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); }
bool lower_hex(char c) { return (c >= 'a' && c <= 'f') || (c >= '0' && c <= '9'); }

void check_name(std::string_view s) {
  if (!valid_repository_name(s)) return;
  FUZZ_CHECK(!s.empty() && s.size() <= 255);
  FUZZ_CHECK(lower_alnum(s.front()) && lower_alnum(s.back()));  // no leading '/', '.', '-'
  FUZZ_CHECK(s.find("//") == std::string_view::npos);
  FUZZ_CHECK(s.find("..") == std::string_view::npos);
  FUZZ_CHECK(s.find("/.") == std::string_view::npos && s.find("./") == std::string_view::npos);
  FUZZ_CHECK(s.find("___") == std::string_view::npos);
  for (char c : s) FUZZ_CHECK(lower_alnum(c) || c == '.' || c == '_' || c == '-' || c == '/');
}

void check_tag(std::string_view s) {
  if (!valid_tag(s)) return;
  FUZZ_CHECK(!s.empty() && s.size() <= 128);
  FUZZ_CHECK(s.front() != '.' && s.front() != '-');
  for (char c : s) {
    FUZZ_CHECK((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
               c == '.' || c == '-');
  }
  FUZZ_CHECK(!looks_like_digest(s));  // a tag and a digest reference never overlap
}

void check_digest(std::string_view s) {
  auto d = Digest::parse(s);
  if (!d) {
    FUZZ_CHECK(d.error().code == Errc::DigestInvalid);
    FUZZ_CHECK(!d.error().detail.empty());
    return;
  }
  FUZZ_CHECK(d->str() == s);
  FUZZ_CHECK(d->algorithm() == "sha256");
  FUZZ_CHECK(d->hex().size() == 64);
  for (char c : d->hex()) FUZZ_CHECK(lower_hex(c));
  FUZZ_CHECK(looks_like_digest(s));
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view s(reinterpret_cast<const char*>(data), size);
  check_name(s);
  check_tag(s);
  check_digest(s);
  // The way the API splits "name@digest" / "name:tag" references.
  if (size_t at = s.rfind('@'); at != std::string_view::npos) {
    check_name(s.substr(0, at));
    check_digest(s.substr(at + 1));
  } else if (size_t colon = s.rfind(':'); colon != std::string_view::npos) {
    check_name(s.substr(0, colon));
    check_tag(s.substr(colon + 1));
  }
  // Hashing any bytes gives a digest that parses back to itself.
  Digest h = Digest::sha256_of(s);
  auto back = Digest::parse(h.str());
  FUZZ_CHECK(back && *back == h);
  return 0;
}
