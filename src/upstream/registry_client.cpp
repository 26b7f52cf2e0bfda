#include "upstream/registry_client.hpp"

#include <mbedtls/base64.h>
#include <uv.h>

#include <nlohmann/json.hpp>

#include "base/log.hpp"
#include "upstream/www_authenticate.hpp"

namespace outpost::upstream {

namespace {
constexpr int kMaxRedirects = 5;

uint64_t now_ms() { return uv_hrtime() / 1'000'000; }

std::string scope_for(const std::string& repo, const RequestOptions& o = {}) {
  std::string s = "repository:" + repo + ":" + o.actions;
  for (const auto& from : o.also_pull)
    if (from != repo) s += " repository:" + from + ":pull";
  return s;
}

bool is_redirect(int s) { return s == 301 || s == 302 || s == 303 || s == 307 || s == 308; }
}  // namespace

void UpstreamOp::cancel() {
  if (cancelled) return;
  cancelled = true;
  on_head = nullptr;
  on_data = nullptr;
  on_done = nullptr;
  if (call) call->cancel();
  call.reset();
}

RegistryClient::RegistryClient(uv_loop_t* loop, http::HttpClient& client, UpstreamOptions o)
    : client_(client), opts_(std::move(o)),
      link_(std::make_shared<Link>(loop, client, opts_.url, opts_.name, opts_.probe_timeout_ms, opts_.offline)) {}

RegistryClient::~RegistryClient() = default;

void RegistryClient::share_link_with(const RegistryClient& other) {
  if (&other == this || link_ == other.link_) return;
  if (opts_.offline || other.opts_.offline || other.link_->origin() != link_->origin()) return;
  link_ = other.link_;
  link_->add_name(opts_.name);
}

void RegistryClient::record(const UpstreamOp& op, const Status& st) {
  if (!st && st.error().code == Errc::Cancelled) return;
  // Any answer below 500 shows the parent reachable; a 429 is a parent
  // asking us to slow down, never a reason to think it gone.
  const bool answered = st.ok() && op.status > 0 && op.status < 500;
  link_->record(answered, st.ok() ? "status " + std::to_string(op.status) : st.error().message());
}

void RegistryClient::shutdown() {
  closing_ = true;
  link_->shutdown();
}

void RegistryClient::suspect() { link_->suspect(); }

std::string RegistryClient::upstream_repo(const std::string& repo) const {
  if (opts_.library_prefix && repo.find('/') == std::string::npos) return "library/" + repo;
  return repo;
}

std::string RegistryClient::basic_header() const {
  std::string raw = opts_.username + ":" + opts_.password;
  unsigned char out[1024];
  size_t olen = 0;
  if (mbedtls_base64_encode(out, sizeof out, &olen, reinterpret_cast<const unsigned char*>(raw.data()), raw.size()) != 0)
    return {};
  return "Basic " + std::string(reinterpret_cast<char*>(out), olen);
}

UpstreamOpPtr RegistryClient::request(http::Method m, std::string path, std::string repo, http::Headers extra,
                                      http::ClientCall::OnHead on_head, http::ClientCall::OnData on_data,
                                      http::ClientCall::OnDone on_done) {
  return request(m, std::move(path), std::move(repo), std::move(extra), RequestOptions{}, std::move(on_head),
                 std::move(on_data), std::move(on_done));
}

UpstreamOpPtr RegistryClient::request(http::Method m, std::string path, std::string repo, http::Headers extra,
                                      RequestOptions opts, http::ClientCall::OnHead on_head,
                                      http::ClientCall::OnData on_data, http::ClientCall::OnDone on_done) {
  if (closing_) {
    if (on_done) on_done(Error(Errc::Cancelled, "shutting down"));
    return std::make_shared<UpstreamOp>();
  }
  if (!link_->admit()) {
    if (on_done) on_done(Error(Errc::UpstreamUnavailable, "parent registry '" + opts_.name + "' is offline"));
    return std::make_shared<UpstreamOp>();
  }
  auto op = std::make_shared<UpstreamOp>();
  op->trial = link_->take_trial();
  op->started_ns = uv_hrtime();
  op->method = m;
  op->path = std::move(path);
  op->repo = std::move(repo);
  op->extra = std::move(extra);
  op->scope = scope_for(op->repo, opts);
  op->opts = std::move(opts);
  op->on_head = std::move(on_head);
  op->on_data = std::move(on_data);
  op->on_done = std::move(on_done);
  if (op->opts.url) {
    op->url = *op->opts.url;
  } else {
    op->url = opts_.url;
    std::string base = opts_.url.target;
    while (!base.empty() && base.back() == '/') base.pop_back();
    op->url.target = base + op->path;
  }
  step(op);
  return op;
}

void RegistryClient::step(const UpstreamOpPtr& op) {
  if (op->cancelled) return;
  if (closing_) {
    auto done = std::move(op->on_done);
    if (done) done(Error(Errc::Cancelled, "shutting down"));
    return;
  }
  http::ClientRequest req;
  req.method = op->method;
  req.url = op->url;
  req.headers = op->extra;
  req.timeouts = opts_.timeouts;
  req.body = op->opts.body;
  req.file_body = op->opts.file_body;
  req.retry_if_stale = op->opts.retry_if_stale;
  if (op->trial) {
    // The breaker's trial must not hold a client longer than a probe would.
    req.timeouts.connect_ms = std::min(req.timeouts.connect_ms, link_->probe_timeout_ms());
    req.timeouts.first_byte_ms = std::min(req.timeouts.first_byte_ms, link_->probe_timeout_ms());
  }
  // Credentials go only to the registry's own origin, never to a storage
  // host it redirects to (those URLs carry their own signature).
  if (op->url.origin() == opts_.url.origin()) {
    auto it = tokens_.find(op->scope);
    if (it != tokens_.end() && it->second.expires_ms > now_ms()) req.headers.set("Authorization", "Bearer " + it->second.value);
    else if (basic_mode_ && !opts_.username.empty()) req.headers.set("Authorization", basic_header());
    if (!opts_.instance_id.empty()) req.headers.set("Outpost-Instance", opts_.instance_id);
  }
  op->intercept = false;
  op->intercepted_bytes = 0;
  // The callbacks own the op while a call is in flight (callers may drop
  // their handle); ClientCall clears them when it finishes, breaking the cycle.
  op->call = client_.send(
      std::move(req),
      [this, op](const http::ClientResponse& r) {
        if (op->cancelled) return false;
        op->status = r.status;
        // Every answer from the registry's own origin says what it is (issue
        // #15); a redirect target (a storage host) says nothing about it.
        if (op->url.origin() == opts_.url.origin() && r.status > 0 && r.status < 500 && r.status != 429)
          link_->note_mode(r.headers.get("Outpost-Mode"));
        if (r.status == 401 && !op->auth_retried) {
          if (auto h = r.headers.get("WWW-Authenticate")) {
            op->intercept = true;
            op->challenge = std::string(*h);
            return true;
          }
        }
        if (is_redirect(r.status) && op->redirects < kMaxRedirects) {
          if (auto loc = r.headers.get("Location")) {
            op->intercept = true;
            op->redirecting = true;
            op->location = std::string(*loc);
            return true;
          }
        }
        if (opts_.timings && !op->answered) {
          op->answered = true;
          opts_.timings->observe(opts_.name, request_kind(op->path),
                                 static_cast<double>(uv_hrtime() - op->started_ns) / 1e9);
        }
        if (!op->on_head) return true;
        auto cb = op->on_head;  // a copy: the callback may cancel the op, which clears on_head
        return cb(r);
      },
      [this, op](std::string_view chunk) {
        if (op->cancelled) return;
        if (op->intercept) {
          // A challenge's or a redirect's body is drained for the
          // connection's sake, within a bound: one streamed without end
          // held the client as long as the parent liked.
          constexpr uint64_t kMaxInterceptedBody = 64 * 1024;
          op->intercepted_bytes += chunk.size();
          if (op->intercepted_bytes > kMaxInterceptedBody)
            cut_short(op, "parent " + opts_.name + " sent a " + std::to_string(op->status) +
                              " answer with a body over 64 KiB");
          return;
        }
        if (!op->on_data) return;
        auto cb = op->on_data;  // a copy, as for on_head
        cb(chunk);
      },
      [this, op](Status st) {
        if (op->cancelled) return;
        op->call.reset();
        if (op->url.origin() == opts_.url.origin()) record(*op, st);
        if (op->intercept && st.ok()) return after_intercept(op);
        if (!st && !op->answered && opts_.timings && st.error().code != Errc::Cancelled)
          opts_.timings->failed(opts_.name, request_kind(op->path));
        auto done = std::move(op->on_done);
        op->on_head = nullptr;
        op->on_data = nullptr;
        if (done) done(std::move(st));
      });
}

void RegistryClient::cut_short(UpstreamOpPtr op, const std::string& why) {
  // Called from inside the call's data callback (the client runs a copy of
  // it, so cancelling here is safe); the caller hears `why` once.
  auto call = std::move(op->call);
  auto done = std::move(op->on_done);
  op->on_head = nullptr;
  op->on_data = nullptr;
  if (call) call->cancel();
  if (done) done(Error(Errc::UpstreamError, why));
}

void RegistryClient::after_intercept(const UpstreamOpPtr& op) {
  if (op->redirecting) {
    // An empty Location is no redirect target (resolved, it would name this
    // same URL); taken for an auth answer, it looped token, GET, token...
    // against a parent sending it after a challenge.
    op->redirecting = false;
    Result<http::Url> next = op->location.empty() ? Result<http::Url>(Error(Errc::UpstreamError, "empty Location"))
                                                   : op->url.resolve(op->location);
    op->location.clear();
    if (!next) {
      auto done = std::move(op->on_done);
      if (done) done(Error(Errc::UpstreamError, "bad redirect Location from " + opts_.name));
      return;
    }
    op->redirects++;
    op->url = *next;
    return step(op);
  }
  op->auth_retried = true;
  auto ch = parse_challenge(op->challenge);
  // Follow the latest challenge (issue #13): a parent that moved from Basic
  // to Bearer (or back) gets the scheme it asks for now, not the old one.
  if (ch && ch->scheme == "basic") {
    tokens_.clear();
    if (opts_.username.empty()) {
      auto done = std::move(op->on_done);
      if (done) done(Error(Errc::UpstreamError, "parent " + opts_.name + " requires credentials (none configured)"));
      return;
    }
    basic_mode_ = true;
    return step(op);
  }
  if (ch && ch->scheme == "bearer" && !ch->param("realm").empty()) {
    basic_mode_ = false;
    // A write needs its own scope (pull,push; a mount's source too): the
    // challenge names what this request lacks, which may be less.
    std::string scope = ch->param("scope");
    if (scope.empty() || op->opts.actions != "pull" || !op->opts.also_pull.empty()) scope = op->scope;
    return fetch_token(op, ch->param("realm"), ch->param("service"), scope);
  }
  auto done = std::move(op->on_done);
  if (done) done(Error(Errc::UpstreamError, "parent " + opts_.name + " sent an unusable auth challenge: " + op->challenge));
}

void RegistryClient::fetch_token(const UpstreamOpPtr& op, const std::string& realm, const std::string& service,
                                 const std::string& scope) {
  auto url = http::Url::parse(realm);
  if (!url) {
    auto done = std::move(op->on_done);
    if (done) done(Error(Errc::UpstreamError, "bad token realm '" + realm + "'"));
    return;
  }
  std::string q = url->target.find('?') == std::string::npos ? "?" : "&";
  if (!service.empty()) q += "service=" + http::percent_encode(service) + "&";
  // Several resources: one scope parameter each (docker token spec).
  for (size_t start = 0; start < scope.size();) {
    size_t sp = scope.find(' ', start);
    if (sp == std::string::npos) sp = scope.size();
    if (sp > start) q += (q.size() > 1 && q.back() != '&' ? "&" : "") + std::string("scope=") +
                         http::percent_encode(scope.substr(start, sp - start));
    start = sp + 1;
  }
  url->target += q;
  http::ClientRequest req;
  req.url = *url;
  req.timeouts = opts_.timeouts;
  if (!opts_.username.empty()) req.headers.set("Authorization", basic_header());
  if (!opts_.instance_id.empty()) req.headers.set("Outpost-Instance", opts_.instance_id);
  auto body = std::make_shared<std::string>();
  auto status = std::make_shared<int>(0);
  op->call = client_.send(
      std::move(req),
      [status](const http::ClientResponse& r) {
        *status = r.status;
        return true;
      },
      [this, op, body](std::string_view c) {
        constexpr size_t kMaxTokenBody = 1 << 20;
        if (body->size() + c.size() <= kMaxTokenBody) return void(body->append(c));
        // Refused once it is too big, not read to its end: a token server
        // streaming without end held the request until it stopped.
        cut_short(op, "token request to " + opts_.name + " failed: answer over 1 MiB");
      },
      [this, op, body, status, scope](Status st) {
        if (op->cancelled) return;
        op->call.reset();
        auto fail = [&](std::string why) {
          auto done = std::move(op->on_done);
          if (done) done(Error(Errc::UpstreamError, "token request to " + opts_.name + " failed: " + why));
        };
        if (!st) return fail(st.error().message());
        if (*status != 200) {
          // The parent's own words, when it says why (a parent Outpost names
          // the `outpost token deactivate` to run; issue #16).
          auto j = nlohmann::json::parse(*body, nullptr, false);
          std::string why = "status " + std::to_string(*status);
          if (j.is_object() && j["errors"].is_array() && !j["errors"].empty() && j["errors"][0].is_object() &&
              j["errors"][0]["detail"].is_string())
            why += ": " + j["errors"][0]["detail"].get<std::string>().substr(0, 300);
          return fail(why);
        }
        auto grant = parse_token_response(*body);
        if (!grant) return fail(grant.error().detail);
        tokens_[op->scope] = Token{std::move(grant->token), now_ms() + grant->lifetime_ms};
        if (scope != op->scope) tokens_[scope] = tokens_[op->scope];
        step(op);
      });
}

}  // namespace outpost::upstream
