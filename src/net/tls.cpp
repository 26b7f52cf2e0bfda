#include "net/tls.hpp"

#include <mbedtls/error.h>
#include <mbedtls/net_sockets.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>

#include "base/log.hpp"
#include "net/tls_server.hpp"

namespace outpost::net {

namespace {
std::string mbed_error(int rc) {
  char buf[160];
  mbedtls_strerror(rc, buf, sizeof buf);
  return buf;
}
// Debian's ca-certificates bundle: the system trust store.
constexpr const char* kSystemCaBundle = "/etc/ssl/certs/ca-certificates.crt";
}  // namespace

TlsClientConfig::TlsClientConfig() {
  mbedtls_entropy_init(&entropy_);
  mbedtls_ctr_drbg_init(&drbg_);
  mbedtls_x509_crt_init(&ca_);
  mbedtls_ssl_config_init(&conf_);
}

TlsClientConfig::~TlsClientConfig() {
  mbedtls_ssl_config_free(&conf_);
  mbedtls_x509_crt_free(&ca_);
  mbedtls_ctr_drbg_free(&drbg_);
  mbedtls_entropy_free(&entropy_);
}

Result<std::unique_ptr<TlsClientConfig>> TlsClientConfig::create(const TlsClientOptions& o) {
  std::unique_ptr<TlsClientConfig> c(new TlsClientConfig());
  static const char kPers[] = "outpost-tls-client";
  int rc = mbedtls_ctr_drbg_seed(&c->drbg_, mbedtls_entropy_func, &c->entropy_,
                                 reinterpret_cast<const unsigned char*>(kPers), sizeof kPers - 1);
  if (rc != 0) return Error(Errc::Internal, "tls: drbg seed: " + mbed_error(rc));
  // The system bundle may hold a few certificates mbedTLS cannot parse;
  // a positive return counts those and is not fatal.
  if (access(kSystemCaBundle, R_OK) == 0) {
    rc = mbedtls_x509_crt_parse_file(&c->ca_, kSystemCaBundle);
    if (rc < 0) log::warn("tls: cannot read the system CA bundle", " reason=" + log::quote(mbed_error(rc)));
  }
  if (!o.ca_file.empty()) {
    rc = mbedtls_x509_crt_parse_file(&c->ca_, o.ca_file.c_str());
    if (rc != 0) return Error(Errc::ConfigInvalid, "tls: cannot load ca_file " + o.ca_file + ": " + mbed_error(rc));
  }
  rc = mbedtls_ssl_config_defaults(&c->conf_, MBEDTLS_SSL_IS_CLIENT, MBEDTLS_SSL_TRANSPORT_STREAM,
                                   MBEDTLS_SSL_PRESET_DEFAULT);
  if (rc != 0) return Error(Errc::Internal, "tls: config defaults: " + mbed_error(rc));
  mbedtls_ssl_conf_min_version(&c->conf_, MBEDTLS_SSL_MAJOR_VERSION_3, MBEDTLS_SSL_MINOR_VERSION_3);  // TLS 1.2+
  mbedtls_ssl_conf_rng(&c->conf_, mbedtls_ctr_drbg_random, &c->drbg_);
  mbedtls_ssl_conf_ca_chain(&c->conf_, &c->ca_, nullptr);
  mbedtls_ssl_conf_authmode(&c->conf_, o.insecure ? MBEDTLS_SSL_VERIFY_NONE : MBEDTLS_SSL_VERIFY_REQUIRED);
  if (o.insecure) log::warn("tls: certificate verification is OFF for this upstream (insecure = true)");
  return c;
}

TlsSession::TlsSession(const TlsClientConfig& cfg, int fd, const std::string& server_name) : fd_(fd) {
  mbedtls_ssl_init(&ssl_);
  int rc = mbedtls_ssl_setup(&ssl_, cfg.get());
  if (rc == 0) rc = mbedtls_ssl_set_hostname(&ssl_, server_name.c_str());
  if (rc != 0) {
    err_ = mbed_error(rc);
    return;
  }
  mbedtls_ssl_set_bio(&ssl_, this, send_cb, recv_cb, nullptr);
  setup_ok_ = true;
}

TlsSession::TlsSession(std::shared_ptr<TlsServerConfig> cfg, int fd) : fd_(fd), server_cfg_(std::move(cfg)) {
  mbedtls_ssl_init(&ssl_);
  int rc = mbedtls_ssl_setup(&ssl_, server_cfg_->get());
  if (rc != 0) {
    err_ = mbed_error(rc);
    return;
  }
  mbedtls_ssl_set_bio(&ssl_, this, send_cb, recv_cb, nullptr);
  setup_ok_ = true;
}

void TlsSession::close_notify() {
  if (setup_ok_ && ssl_.state == MBEDTLS_SSL_HANDSHAKE_OVER) (void)mbedtls_ssl_close_notify(&ssl_);
}

TlsSession::~TlsSession() { mbedtls_ssl_free(&ssl_); }

int TlsSession::send_cb(void* ctx, const unsigned char* buf, size_t len) {
  auto* s = static_cast<TlsSession*>(ctx);
  ssize_t n = ::send(s->fd_, buf, len, MSG_NOSIGNAL);
  if (n >= 0) return static_cast<int>(n);
  if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return MBEDTLS_ERR_SSL_WANT_WRITE;
  return MBEDTLS_ERR_NET_SEND_FAILED;
}

int TlsSession::recv_cb(void* ctx, unsigned char* buf, size_t len) {
  auto* s = static_cast<TlsSession*>(ctx);
  ssize_t n = ::recv(s->fd_, buf, len, 0);
  if (n >= 0) return static_cast<int>(n);  // 0: EOF
  if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return MBEDTLS_ERR_SSL_WANT_READ;
  return MBEDTLS_ERR_NET_RECV_FAILED;
}

TlsIo TlsSession::map(int rc) {
  if (rc == MBEDTLS_ERR_SSL_WANT_READ) return TlsIo::WantRead;
  if (rc == MBEDTLS_ERR_SSL_WANT_WRITE) return TlsIo::WantWrite;
  if (rc == MBEDTLS_ERR_SSL_PEER_CLOSE_NOTIFY || rc == 0) return TlsIo::Closed;
  err_ = mbed_error(rc);
  if (rc == MBEDTLS_ERR_X509_CERT_VERIFY_FAILED) {
    char vbuf[512];
    mbedtls_x509_crt_verify_info(vbuf, sizeof vbuf, "", mbedtls_ssl_get_verify_result(&ssl_));
    err_ += ": ";
    err_ += vbuf;
    while (!err_.empty() && err_.back() == '\n') err_.pop_back();
  }
  return TlsIo::Failed;
}

TlsIo TlsSession::handshake() {
  int rc = mbedtls_ssl_handshake(&ssl_);
  if (rc == 0) return TlsIo::Done;
  TlsIo r = map(rc);
  return r == TlsIo::Closed ? TlsIo::Failed : r;
}

TlsIo TlsSession::write(const char* p, size_t n, size_t* written) {
  *written = 0;
  while (*written < n) {
    int rc = mbedtls_ssl_write(&ssl_, reinterpret_cast<const unsigned char*>(p + *written), n - *written);
    if (rc > 0) {
      *written += static_cast<size_t>(rc);
      continue;
    }
    return map(rc);
  }
  return TlsIo::Done;
}

TlsIo TlsSession::read(char* p, size_t n, size_t* got) {
  *got = 0;
  int rc = mbedtls_ssl_read(&ssl_, reinterpret_cast<unsigned char*>(p), n);
  if (rc > 0) {
    *got = static_cast<size_t>(rc);
    return TlsIo::Done;
  }
  return map(rc);
}

bool TlsSession::has_pending() const { return mbedtls_ssl_get_bytes_avail(&ssl_) > 0; }

}  // namespace outpost::net
