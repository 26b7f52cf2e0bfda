// The server side of TLS (mbedTLS 2.28): a certificate chain and key loaded
// from PEM files, and the ssl config HTTPS listeners hand to each new
// connection. TLS 1.2 only, ECDHE with AES-GCM or ChaCha20-Poly1305, ALPN
// http/1.1, session tickets. (mbedTLS 2.28's TLS 1.3 is client-only and
// experimental: a server offering it is not worth the risk.)
//
// TlsServerConfig is immutable once loaded; every connection keeps a
// shared_ptr to the one it started with, so a reload (SIGHUP) gives new
// connections the new certificate while open ones keep theirs.
// Loop thread only (the DRBG and the ticket keys are not locked).
#pragma once
#include <mbedtls/ctr_drbg.h>
#include <mbedtls/entropy.h>
#include <mbedtls/pk.h>
#include <mbedtls/ssl.h>
#include <mbedtls/ssl_ticket.h>
#include <mbedtls/x509_crt.h>

#include <memory>
#include <string>

#include "base/result.hpp"

namespace outpost::net {

struct TlsServerOptions {
  std::string cert_file;  ///< PEM: the server certificate first, then its intermediates
  std::string key_file;   ///< PEM: the private key of the first certificate
  /// Names used in error messages (the config keys, e.g. "tls.cert").
  std::string cert_label = "certificate";
  std::string key_label = "private key";
};

class TlsServerConfig {
 public:
  /// Reads and checks the files: both readable and parseable, the key
  /// matching the certificate. An expired (or not yet valid) certificate
  /// loads with a warning in `warning()`: refusing to start would take a
  /// site's registry down for a clock problem.
  static Result<std::shared_ptr<TlsServerConfig>> load(const TlsServerOptions& o);
  ~TlsServerConfig();
  TlsServerConfig(const TlsServerConfig&) = delete;
  TlsServerConfig& operator=(const TlsServerConfig&) = delete;

  const mbedtls_ssl_config* get() const { return &conf_; }
  /// "subject=... serial=... not_after=..." of the leaf certificate, for logs.
  const std::string& summary() const { return summary_; }
  /// Non-empty when the certificate is expired or not yet valid.
  const std::string& warning() const { return warning_; }

 private:
  TlsServerConfig();
  mbedtls_entropy_context entropy_;
  mbedtls_ctr_drbg_context drbg_;
  mbedtls_x509_crt chain_;
  mbedtls_pk_context key_;
  mbedtls_ssl_ticket_context tickets_;
  mbedtls_ssl_config conf_;
  std::string summary_, warning_;
};

/// The certificate an HTTPS listener serves, reloadable. Holds the file
/// names and the current TlsServerConfig.
class TlsServerContext {
 public:
  static Result<std::shared_ptr<TlsServerContext>> create(TlsServerOptions o);
  /// What a new connection uses.
  std::shared_ptr<TlsServerConfig> current() const { return current_; }
  /// Loads the files again. On success new connections get the new
  /// certificate (open ones keep theirs); on failure the old one stays and
  /// the error says why. Reads two small files on the calling thread.
  Status reload_certificates();
  const TlsServerOptions& options() const { return opts_; }

 private:
  explicit TlsServerContext(TlsServerOptions o) : opts_(std::move(o)) {}
  TlsServerOptions opts_;
  std::shared_ptr<TlsServerConfig> current_;
};

}  // namespace outpost::net
