// TLS over mbedTLS 2.28 on a non-blocking socket the caller polls.
// TlsClientConfig owns the shared pieces (entropy, DRBG, CA chain, ssl
// config); TlsSession owns one mbedtls_ssl_context bound to one fd, as a
// client or (with a TlsServerConfig, net/tls_server.hpp) as a server.
// Knows nothing about HTTP or libuv.
#pragma once
#include <mbedtls/ctr_drbg.h>
#include <mbedtls/entropy.h>
#include <mbedtls/ssl.h>
#include <mbedtls/x509_crt.h>

#include <memory>
#include <string>

#include "base/result.hpp"

namespace outpost::net {

struct TlsClientOptions {
  std::string ca_file;   ///< extra PEM CA bundle, trusted besides the system store
  bool insecure = false; ///< skip certificate verification (labs only; logged loudly)
};

class TlsClientConfig {
 public:
  static Result<std::unique_ptr<TlsClientConfig>> create(const TlsClientOptions& o);
  ~TlsClientConfig();
  TlsClientConfig(const TlsClientConfig&) = delete;
  TlsClientConfig& operator=(const TlsClientConfig&) = delete;
  const mbedtls_ssl_config* get() const { return &conf_; }

 private:
  TlsClientConfig();
  mbedtls_entropy_context entropy_;
  mbedtls_ctr_drbg_context drbg_;
  mbedtls_x509_crt ca_;
  mbedtls_ssl_config conf_;
};

/// Result of a non-blocking TLS step.
enum class TlsIo { Done, WantRead, WantWrite, Closed, Failed };

class TlsServerConfig;

class TlsSession {
 public:
  TlsSession(const TlsClientConfig& cfg, int fd, const std::string& server_name);
  /// Server side: keeps `cfg` alive as long as the session (a certificate
  /// reload must not free the config an open connection uses).
  TlsSession(std::shared_ptr<TlsServerConfig> cfg, int fd);
  ~TlsSession();
  TlsSession(const TlsSession&) = delete;
  TlsSession& operator=(const TlsSession&) = delete;

  bool setup_ok() const { return setup_ok_; }
  TlsIo handshake();
  /// Writes all of [p, p+n) or reports why not; `*written` counts accepted bytes.
  TlsIo write(const char* p, size_t n, size_t* written);
  /// Reads up to n bytes; `*got` > 0 with Done.
  TlsIo read(char* p, size_t n, size_t* got);
  /// Bytes decrypted and waiting inside mbedTLS (poll will not report them).
  bool has_pending() const;
  /// Sends close_notify once, best effort (never waits for the socket).
  void close_notify();
  const std::string& last_error() const { return err_; }

 private:
  static int send_cb(void* ctx, const unsigned char* buf, size_t len);
  static int recv_cb(void* ctx, unsigned char* buf, size_t len);
  TlsIo map(int rc);
  mbedtls_ssl_context ssl_;
  int fd_;
  std::shared_ptr<TlsServerConfig> server_cfg_;
  bool setup_ok_ = false;
  std::string err_;
};

}  // namespace outpost::net
