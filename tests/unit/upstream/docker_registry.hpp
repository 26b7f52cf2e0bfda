// Debian's CNCF distribution (`/usr/bin/docker-registry serve CONFIG`) as a
// real parent for upstream tests (the C++ twin of tests/e2e harness.py
// DockerRegistry): 127.0.0.1:<free port>, filesystem storage and deletes
// enabled in a temp dir, the access log in <tmp>/access.log. start() waits
// for GET /v2/ to answer 200 (deadline, no sleeps); stop() ends the process
// (SIGTERM, then SIGKILL), keeping its storage so start() brings it back.
#pragma once
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>

namespace outpost::test {

class DockerRegistry {
 public:
  static constexpr const char* kBin = "/usr/bin/docker-registry";
  static bool available() { return ::access(kBin, X_OK) == 0; }

  DockerRegistry() {
    char tmpl[] = "/tmp/outpost-pusher-registry-XXXXXX";
    if (!::mkdtemp(tmpl)) throw std::runtime_error("mkdtemp failed");
    dir_ = tmpl;
  }
  ~DockerRegistry() {
    stop();
    std::error_code ec;
    if (!::getenv("OUTPOST_KEEP_TMP")) std::filesystem::remove_all(dir_, ec);
  }
  DockerRegistry(const DockerRegistry&) = delete;
  DockerRegistry& operator=(const DockerRegistry&) = delete;

  /// Starts (or restarts on the same port and storage); false on failure.
  bool start() {
    if (port_ == 0) port_ = free_port();
    write_config();
    // Everything the child needs is built before fork(): after it, only
    // async-signal-safe calls (the loop's pool threads may hold malloc locks).
    const std::string access = dir_ + "/access.log", app = dir_ + "/registry.log", conf = dir_ + "/config.yml";
    pid_ = ::fork();
    if (pid_ == 0) {
      int out = ::open(access.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
      int err = ::open(app.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
      ::dup2(out, 1);
      ::dup2(err, 2);
      int devnull = ::open("/dev/null", O_RDONLY);
      ::dup2(devnull, 0);
      ::execl(kBin, kBin, "serve", conf.c_str(), static_cast<char*>(nullptr));
      ::_exit(127);
    }
    if (pid_ < 0) return false;
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    while (std::chrono::steady_clock::now() < deadline) {
      int status = 0;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        return false;
      }
      if (get_v2() == 200) return true;
      // poll() on nothing: a bounded pause between readiness checks.
      ::poll(nullptr, 0, 20);
    }
    return false;
  }

  void stop() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGTERM);
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    int status = 0;
    while (::waitpid(pid_, &status, WNOHANG) == 0) {
      if (std::chrono::steady_clock::now() > deadline) {
        ::kill(pid_, SIGKILL);
        ::waitpid(pid_, &status, 0);
        break;
      }
      ::poll(nullptr, 0, 10);
    }
    pid_ = -1;
  }

  int port() const { return port_; }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }
  std::string access_log() const { return slurp(dir_ + "/access.log"); }
  std::string app_log() const { return slurp(dir_ + "/registry.log"); }
  /// Size of the stored blob file (the parent's own bytes), -1 when absent.
  long long blob_file_size(const std::string& digest) const {
    std::string hex = digest.substr(digest.find(':') + 1);
    std::error_code ec;
    auto p = dir_ + "/storage/docker/registry/v2/blobs/sha256/" + hex.substr(0, 2) + "/" + hex + "/data";
    auto n = std::filesystem::file_size(p, ec);
    return ec ? -1 : static_cast<long long>(n);
  }

 private:
  static int free_port() {
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
    socklen_t len = sizeof a;
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
    ::close(fd);
    return ntohs(a.sin_port);
  }

  static std::string slurp(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    std::stringstream ss;
    ss << f.rdbuf();
    return ss.str();
  }

  void write_config() {
    std::ofstream f(dir_ + "/config.yml");
    f << "version: 0.1\n"
         "log:\n  level: info\n  formatter: text\n  accesslog:\n    disabled: false\n"
         "storage:\n  filesystem:\n    rootdirectory: "
      << dir_ << "/storage\n  delete:\n    enabled: true\n  maintenance:\n    uploadpurging:\n      enabled: false\n"
      << "http:\n  addr: 127.0.0.1:" << port_ << "\n  secret: outpost-unit-secret\n";
  }

  /// Status of a blocking GET /v2/ (0 when nothing answers).
  int get_v2() const {
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(static_cast<uint16_t>(port_));
    timeval tv{1, 0};
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    int status = 0;
    if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0) {
      const std::string req = "GET /v2/ HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
      if (::send(fd, req.data(), req.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(req.size())) {
        char buf[64] = {};
        ssize_t n = ::recv(fd, buf, sizeof buf - 1, 0);
        if (n > 12 && std::string(buf, 9) == "HTTP/1.1 ") status = std::atoi(buf + 9);
      }
    }
    ::close(fd);
    return status;
  }

  std::string dir_;
  int port_ = 0;
  pid_t pid_ = -1;
};

}  // namespace outpost::test
