// HTTP/1.1 message heads as plain values: methods, case-insensitive headers,
// the parsed request line. No I/O here.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace outpost::http {

enum class Method { Get, Head, Post, Put, Patch, Delete, Options, Other };
std::string_view method_name(Method m);
Method method_from(std::string_view s);

bool iequals(std::string_view a, std::string_view b);
/// A space or a control byte (CTL, DEL): text that goes into a request line
/// or a header as it is (a URL target, a token) must have none, or it
/// splits or forges them.
bool has_space_or_control(std::string_view s);

struct Header {
  std::string name;
  std::string value;
};

class Headers {
 public:
  /// First value of `name` (case-insensitive), if any.
  std::optional<std::string_view> get(std::string_view name) const;
  bool has(std::string_view name) const { return get(name).has_value(); }
  void add(std::string name, std::string value) { list_.push_back({std::move(name), std::move(value)}); }
  /// Replaces every `name` with one value.
  void set(std::string_view name, std::string value);
  void remove(std::string_view name);
  const std::vector<Header>& list() const { return list_; }
  void clear() { list_.clear(); }
  void reserve(size_t n) { list_.reserve(n); }
  size_t size() const { return list_.size(); }

 private:
  std::vector<Header> list_;
};

struct Request {
  Method method = Method::Get;
  std::string target;      ///< raw request-target as received
  std::string path;        ///< target up to '?', percent-decoded only where safe (see router)
  std::string query;       ///< after '?', raw
  Headers headers;
  std::string request_id;  ///< generated per request, echoed as X-Request-Id
  bool has_body = false;   ///< Content-Length > 0 or chunked
  bool chunked = false;
  std::optional<uint64_t> content_length;
  bool expect_continue = false;
  std::string peer;        ///< "ip:port" of the client
  bool tls = false;        ///< arrived on an HTTPS listener (URLs we hand out are https://)

  /// Percent-decoded value of query parameter `name` (first occurrence);
  /// the raw value when its escapes are malformed.
  std::optional<std::string> query_param(std::string_view name) const;
};

/// Decodes %XX and '+' (as space when `plus_is_space`); nullopt on bad escapes.
std::optional<std::string> percent_decode(std::string_view s, bool plus_is_space);
std::string percent_encode(std::string_view s);

std::string_view status_reason(int status);

}  // namespace outpost::http
