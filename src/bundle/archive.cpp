#include "bundle/archive.hpp"

namespace outpost::bundle {

Error archive_error(archive* a, Errc code, std::string_view what) {
  const char* msg = a ? archive_error_string(a) : nullptr;
  std::string d(what);
  d += ": ";
  d += msg ? msg : "unknown libarchive error";
  return Error(code, std::move(d));
}

}  // namespace outpost::bundle
