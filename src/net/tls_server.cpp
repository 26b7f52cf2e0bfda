#include "net/tls_server.hpp"

#include <mbedtls/error.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "base/log.hpp"

namespace outpost::net {

namespace {
std::string mbed_error(int rc) {
  char buf[160];
  mbedtls_strerror(rc, buf, sizeof buf);
  return buf;
}

// ECDHE only (forward secrecy), AEAD only. ECDSA and RSA certificates both work.
const int kSuites[] = {
    MBEDTLS_TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
    MBEDTLS_TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
    MBEDTLS_TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
    MBEDTLS_TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
    MBEDTLS_TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
    MBEDTLS_TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
    0,
};
const char* kAlpn[] = {"http/1.1", nullptr};
constexpr uint32_t kTicketLifetimeS = 24 * 3600;

/// A clear "cannot read" before mbedTLS's generic "file I/O error".
Status check_readable(const std::string& label, const std::string& path) {
  if (path.empty()) return Error(Errc::ConfigInvalid, label + " is not set");
  FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) return Error(Errc::ConfigInvalid, label + ": cannot read " + path + ": " + std::strerror(errno));
  std::fclose(f);
  return {};
}

std::string x509_time(const mbedtls_x509_time& t) {
  char buf[32];
  snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02dZ", t.year, t.mon, t.day, t.hour, t.min, t.sec);
  return buf;
}
}  // namespace

TlsServerConfig::TlsServerConfig() {
  mbedtls_entropy_init(&entropy_);
  mbedtls_ctr_drbg_init(&drbg_);
  mbedtls_x509_crt_init(&chain_);
  mbedtls_pk_init(&key_);
  mbedtls_ssl_ticket_init(&tickets_);
  mbedtls_ssl_config_init(&conf_);
}

TlsServerConfig::~TlsServerConfig() {
  mbedtls_ssl_config_free(&conf_);
  mbedtls_ssl_ticket_free(&tickets_);
  mbedtls_pk_free(&key_);
  mbedtls_x509_crt_free(&chain_);
  mbedtls_ctr_drbg_free(&drbg_);
  mbedtls_entropy_free(&entropy_);
}

Result<std::shared_ptr<TlsServerConfig>> TlsServerConfig::load(const TlsServerOptions& o) {
  OUTPOST_TRY(check_readable(o.cert_label, o.cert_file));
  OUTPOST_TRY(check_readable(o.key_label, o.key_file));
  std::shared_ptr<TlsServerConfig> c(new TlsServerConfig());
  int rc = mbedtls_x509_crt_parse_file(&c->chain_, o.cert_file.c_str());
  if (rc != 0) {
    std::string why = rc > 0 ? std::to_string(rc) + " certificate(s) in it could not be parsed" : mbed_error(rc);
    return Error(Errc::ConfigInvalid, o.cert_label + ": " + o.cert_file + " is not a PEM certificate chain: " + why);
  }
  rc = mbedtls_pk_parse_keyfile(&c->key_, o.key_file.c_str(), nullptr);
  if (rc == MBEDTLS_ERR_PK_PASSWORD_REQUIRED)
    return Error(Errc::ConfigInvalid, o.key_label + ": " + o.key_file + " is encrypted; give an unencrypted PEM key");
  if (rc != 0)
    return Error(Errc::ConfigInvalid, o.key_label + ": " + o.key_file + " is not a PEM private key: " + mbed_error(rc));
  rc = mbedtls_pk_check_pair(&c->chain_.pk, &c->key_);
  if (rc != 0)
    return Error(Errc::ConfigInvalid, o.key_label + ": " + o.key_file + " does not match the certificate in " +
                                          o.cert_label + " (" + o.cert_file + ")");

  char subject[256] = "?", serial[128] = "?";
  mbedtls_x509_dn_gets(subject, sizeof subject, &c->chain_.subject);
  mbedtls_x509_serial_gets(serial, sizeof serial, &c->chain_.serial);
  c->summary_ = std::string("subject=") + log::quote(subject) + " serial=" + serial +
                " not_after=" + x509_time(c->chain_.valid_to);
  if (mbedtls_x509_time_is_past(&c->chain_.valid_to))
    c->warning_ = o.cert_label + ": the certificate in " + o.cert_file + " expired at " + x509_time(c->chain_.valid_to);
  else if (mbedtls_x509_time_is_future(&c->chain_.valid_from))
    c->warning_ = o.cert_label + ": the certificate in " + o.cert_file + " is not valid before " +
                  x509_time(c->chain_.valid_from);

  static const char kPers[] = "outpost-tls-server";
  rc = mbedtls_ctr_drbg_seed(&c->drbg_, mbedtls_entropy_func, &c->entropy_,
                             reinterpret_cast<const unsigned char*>(kPers), sizeof kPers - 1);
  if (rc != 0) return Error(Errc::Internal, "tls: drbg seed: " + mbed_error(rc));
  rc = mbedtls_ssl_config_defaults(&c->conf_, MBEDTLS_SSL_IS_SERVER, MBEDTLS_SSL_TRANSPORT_STREAM,
                                   MBEDTLS_SSL_PRESET_DEFAULT);
  if (rc != 0) return Error(Errc::Internal, "tls: config defaults: " + mbed_error(rc));
  mbedtls_ssl_conf_rng(&c->conf_, mbedtls_ctr_drbg_random, &c->drbg_);
  mbedtls_ssl_conf_min_version(&c->conf_, MBEDTLS_SSL_MAJOR_VERSION_3, MBEDTLS_SSL_MINOR_VERSION_3);
  mbedtls_ssl_conf_max_version(&c->conf_, MBEDTLS_SSL_MAJOR_VERSION_3, MBEDTLS_SSL_MINOR_VERSION_3);
  mbedtls_ssl_conf_ciphersuites(&c->conf_, kSuites);
  mbedtls_ssl_conf_authmode(&c->conf_, MBEDTLS_SSL_VERIFY_NONE);  // no client certificates
  rc = mbedtls_ssl_conf_alpn_protocols(&c->conf_, kAlpn);
  if (rc != 0) return Error(Errc::Internal, "tls: alpn: " + mbed_error(rc));
  // The leaf's chain (intermediates follow it in the file) goes out as is.
  rc = mbedtls_ssl_conf_own_cert(&c->conf_, &c->chain_, &c->key_);
  if (rc != 0) return Error(Errc::ConfigInvalid, o.cert_label + ": " + mbed_error(rc));
  // Session tickets: a returning client (a pull's many blob connections)
  // skips the full handshake; the keys live in memory and change on reload.
  rc = mbedtls_ssl_ticket_setup(&c->tickets_, mbedtls_ctr_drbg_random, &c->drbg_, MBEDTLS_CIPHER_AES_256_GCM,
                                kTicketLifetimeS);
  if (rc != 0) return Error(Errc::Internal, "tls: session tickets: " + mbed_error(rc));
  mbedtls_ssl_conf_session_tickets_cb(&c->conf_, mbedtls_ssl_ticket_write, mbedtls_ssl_ticket_parse, &c->tickets_);
  return c;
}

Result<std::shared_ptr<TlsServerContext>> TlsServerContext::create(TlsServerOptions o) {
  std::shared_ptr<TlsServerContext> ctx(new TlsServerContext(std::move(o)));
  auto cfg = TlsServerConfig::load(ctx->opts_);
  if (!cfg) return std::move(cfg).error();
  ctx->current_ = std::move(*cfg);
  return ctx;
}

Status TlsServerContext::reload_certificates() {
  auto cfg = TlsServerConfig::load(opts_);
  if (!cfg) return std::move(cfg).error();
  current_ = std::move(*cfg);
  return {};
}

}  // namespace outpost::net
