#include "app/admin_client.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <memory>
#include <nlohmann/json.hpp>

#include "uv/loop.hpp"

namespace outpost::app {

namespace {
constexpr size_t kMaxBody = 64u << 20;  // bundle reports are the largest answers
constexpr uint64_t kMaxPauseMs = 600'000;
}  // namespace

std::string admin_base_url(const Config& cfg) {
  std::string host = "127.0.0.1";
  std::string port = "5000";
  if (!cfg.server.listen.empty()) {
    if (auto a = parse_listen_address(cfg.server.listen.front())) {
      port = std::to_string(a->port);
      if (a->ipv6) host = (a->host == "::" || a->host == "::0") ? "[::1]" : "[" + a->host + "]";
      else host = a->host == "0.0.0.0" ? "127.0.0.1" : a->host;
    }
  }
  return "http://" + host + ":" + port;
}

AdminAnswer admin_call(uv_loop_t* loop, http::HttpClient& client, http::Method m, const http::Url& url,
                       uint64_t timeout_ms, std::string body, const std::string& content_type) {
  auto a = std::make_shared<AdminAnswer>();
  auto done = std::make_shared<bool>(false);
  http::ClientRequest req;
  req.method = m;
  req.url = url;
  if (!body.empty()) {
    if (!content_type.empty()) req.headers.set("Content-Type", content_type);
    req.body = std::move(body);
  }
  req.timeouts.connect_ms = 5'000;
  req.timeouts.first_byte_ms = timeout_ms;
  req.timeouts.progress_ms = std::min(timeout_ms, kMaxPauseMs);
  auto c = client.send(
      std::move(req),
      [a](const http::ClientResponse& r) {
        a->status = r.status;
        return true;
      },
      [a](std::string_view chunk) {
        if (a->body.size() + chunk.size() <= kMaxBody) a->body.append(chunk);
      },
      [a, done](Status st) {
        a->st = std::move(st);
        *done = true;
      });
  // The request's own deadlines (connect, first byte, progress) end it.
  while (!*done) uv_run(loop, UV_RUN_ONCE);
  (void)c;
  if (!a->st.ok()) a->status = 0;
  return *a;
}

AdminAnswer admin_call(const std::string& base, http::Method m, const std::string& path_and_query,
                       uint64_t timeout_ms, std::string body, const std::string& content_type) {
  auto url = http::Url::parse(base + path_and_query);
  if (!url) {
    AdminAnswer out;
    out.st = Error(Errc::ConfigInvalid, "bad admin address " + base + ": " + url.error().message());
    return out;
  }
  uv::Loop loop;
  http::HttpClient client(loop.get(), nullptr);
  return admin_call(loop.get(), client, m, *url, timeout_ms, std::move(body), content_type);
  // the client, then the loop, close what is left (uv::Loop walks its handles)
}

AdminAnswer admin_call(const Config& cfg, http::Method m, const std::string& path_and_query, uint64_t timeout_ms,
                       std::string body, const std::string& content_type) {
  return admin_call(admin_base_url(cfg), m, path_and_query, timeout_ms, std::move(body), content_type);
}

std::string admin_error_text(const AdminAnswer& a) {
  auto j = nlohmann::json::parse(a.body, nullptr, false);
  if (j.is_object() && j.contains("errors") && j["errors"].is_array() && !j["errors"].empty()) {
    const auto& e = j["errors"][0];
    std::string out = e.value("code", std::string("ERROR"));
    if (e.contains("detail") && e["detail"].is_string()) return out + ": " + e["detail"].get<std::string>();
    if (e.contains("message") && e["message"].is_string()) return out + ": " + e["message"].get<std::string>();
    return out;
  }
  std::string b = a.body.substr(0, 200);
  while (!b.empty() && (b.back() == '\n' || b.back() == '\r')) b.pop_back();
  return b;
}

bool store_in_use(const std::string& root) {
  int fd = ::open((root + "/LOCK").c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;  // no store yet: nobody serves it
  bool busy = flock(fd, LOCK_SH | LOCK_NB) != 0 && errno == EWOULDBLOCK;
  ::close(fd);  // releases our probe lock, if we got it
  return busy;
}

Result<std::optional<StoreLock>> StoreLock::try_take(const std::string& root) {
  const std::string path = root + "/LOCK";
  int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) return Error(Errc::Io, "cannot open " + path + ": " + strerror(errno));
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    ::close(fd);
    return std::optional<StoreLock>();
  }
  return std::optional<StoreLock>(StoreLock(fd));
}

StoreLock::~StoreLock() {
  if (fd_ >= 0) ::close(fd_);
}

}  // namespace outpost::app
