#include "base/error.hpp"

#include <nlohmann/json.hpp>

namespace outpost {

namespace {
struct Row {
  std::string_view name, oci;
  int status;
  std::string_view msg;
};
constexpr Row kRows[] = {
#define X(name, oci, status, msg) {#name, oci, status, msg},
#include "base/errc.def"
#undef X
};
const Row& row(Errc c) { return kRows[static_cast<int>(c)]; }
}  // namespace

std::string_view oci_code(Errc c) { return row(c).oci; }
int http_status(Errc c) { return row(c).status; }
std::string_view default_message(Errc c) { return row(c).msg; }
std::string_view errc_name(Errc c) { return row(c).name; }

std::string Error::message() const {
  return detail.empty() ? std::string(default_message(code)) : detail;
}

std::string error_body(const Error& e) {
  nlohmann::json j;
  j["errors"] = nlohmann::json::array();
  nlohmann::json one;
  one["code"] = std::string(oci_code(e.code));
  one["message"] = std::string(default_message(e.code));
  one["detail"] = e.detail.empty() ? nlohmann::json(nullptr) : nlohmann::json(e.detail);
  j["errors"].push_back(std::move(one));
  // Details quote what clients and parents sent (paths, headers), which need
  // not be UTF-8: replace bad bytes with U+FFFD instead of throwing, which
  // from a parser or pool callback would terminate the process.
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

}  // namespace outpost
