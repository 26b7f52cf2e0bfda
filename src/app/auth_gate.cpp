#include "app/auth_gate.hpp"

#include <algorithm>
#include <ctime>
#include <nlohmann/json.hpp>

#include "app/ops.hpp"
#include "base/log.hpp"
#include "http/router.hpp"

namespace outpost::app {

using nlohmann::json;

namespace {
/// Derivations allowed in the queue at once. Each costs milliseconds of
/// one pool thread; beyond this a guessing client gets 429 at once, so it
/// cannot hold the pool from the store jobs other clients wait on.
constexpr size_t kMaxDeriving = 8;
/// And at most this many derivations start per second, from a token bucket
/// of kDeriveBurst: a guessing client costs at most about a third of one
/// core (a derivation is ~9 ms here), however many connections it opens. A
/// legitimate credential is derived once a minute (the cache, which a change
/// to other tokens leaves alone), so this admits over two thousand distinct
/// active tokens per minute, and the burst lets a site's clients log in
/// together after a restart or right after a guessing attack.
constexpr double kDerivePerSecond = 40;
constexpr double kDeriveBurst = 40;
constexpr size_t kMaxAdminBody = 64 * 1024;

int64_t now_s() {
  uv_timeval64_t tv;
  uv_gettimeofday(&tv);
  return tv.tv_sec;
}
uint64_t now_ms() {
  uv_timeval64_t tv;
  uv_gettimeofday(&tv);
  return static_cast<uint64_t>(tv.tv_sec) * 1000 + static_cast<uint64_t>(tv.tv_usec) / 1000;
}

/// A value safe inside a quoted-string of a challenge (a name from the path
/// could hold anything; a quote must not end the parameter).
bool quotable(std::string_view s) {
  for (char c : s)
    if (c == '"' || c == '\\' || static_cast<unsigned char>(c) < 0x20 || c == 0x7f) return false;
  return true;
}

std::string iso8601(int64_t t) {
  time_t tt = static_cast<time_t>(t);
  struct tm tm {};
  gmtime_r(&tt, &tm);
  char buf[32];
  strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

const char* action_word(api::Access a) {
  switch (a) {
    case api::Access::Push: return "push to";
    case api::Access::Delete: return "delete from";
    default: return "pull from";
  }
}

auth::Actions needed(api::Access a) {
  switch (a) {
    case api::Access::Pull: return auth::kPull;
    case api::Access::Push: return auth::kPush;
    case api::Access::Delete: return auth::kDelete;
    default: return 0;
  }
}

/// Every scope= value of a query (the token spec repeats the parameter,
/// and one value may hold several space-separated scopes).
std::vector<std::string> scope_params(const std::string& query) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start < query.size()) {
    size_t amp = query.find('&', start);
    if (amp == std::string::npos) amp = query.size();
    std::string_view kv(query.data() + start, amp - start);
    if (kv.substr(0, 6) == "scope=") {
      if (auto v = http::percent_decode(kv.substr(6), true)) {
        size_t s = 0;
        while (s <= v->size()) {
          size_t sp = v->find(' ', s);
          if (sp == std::string::npos) sp = v->size();
          if (sp > s) out.push_back(v->substr(s, sp - s));
          s = sp + 1;
        }
      }
    }
    start = amp + 1;
  }
  return out;
}
}  // namespace

namespace {
/// [auth] as the Authorizer's options; the rest (cache bounds) from `base`.
auth::AuthOptions auth_options(const AuthConfig& a, auth::AuthOptions base) {
  base.service = a.service;
  base.token_ttl_s = static_cast<int64_t>(a.token_ttl_ms / 1000);
  base.anonymous.clear();
  for (const auto& p : a.anonymous_pull) base.anonymous.push_back(auth::ScopeRule{p, auth::kPull});
  return base;
}
}  // namespace

void AuthGate::apply(const AuthConfig& next) {
  if (next == cfg_) return;
  cfg_ = next;
  authz_.set_options(auth_options(next, authz_.options()));
  log::info("access control reloaded", std::string(" enabled=") + (next.enabled ? "true" : "false") +
                                           " service=" + log::quote(next.service) +
                                           " anonymous_pull=" + std::to_string(next.anonymous_pull.size()));
}

Result<std::unique_ptr<AuthGate>> AuthGate::open(uv_loop_t* loop, const Config& cfg) {
  auto db = auth::TokenDb::open(cfg.storage.root);
  if (!db) return Error(db.error().code, "auth.db: " + db.error().message());
  auto key = db->signing_key();
  if (!key) return Error(key.error().code, "auth.db: " + key.error().message());
  auto tokens = db->load_all();
  if (!tokens) return Error(tokens.error().code, "auth.db: " + tokens.error().message());
  auto gate = std::unique_ptr<AuthGate>(new AuthGate(loop, cfg.auth, std::make_shared<auth::TokenDb>(std::move(*db)),
                                                     auth_options(cfg.auth, {}), std::move(*key)));
  const size_t n = tokens->size();
  gate->authz_.set_tokens(std::move(*tokens));
  log::info("access control", std::string(" enabled=") + (cfg.auth.enabled ? "true" : "false") +
                                  " tokens=" + std::to_string(n) + " service=" + log::quote(cfg.auth.service));
  return gate;
}

AuthGate::AuthGate(uv_loop_t* loop, AuthConfig cfg, std::shared_ptr<auth::TokenDb> db, auth::AuthOptions o,
                   std::string key)
    : loop_(loop), cfg_(std::move(cfg)), db_(std::move(db)), queue_(uv::SerialQueue::make(loop)),
      authz_(std::move(o), std::move(key)) {}

std::string AuthGate::realm(const http::ExchangePtr& ex) const {
  if (!cfg_.realm.empty()) return cfg_.realm;
  auto host = ex->req().headers.get("Host");
  std::string h = host && quotable(*host) && !host->empty() ? std::string(*host) : "localhost";
  // The token endpoint is on the listener the client came in on: an https
  // client must not be sent to plain http (Docker refuses, or leaks Basic).
  return std::string(ex->req().tls ? "https://" : "http://") + h + "/token";
}

void AuthGate::challenge(const http::ExchangePtr& ex, api::Access access, Errc code, std::string detail,
                         const char* error) {
  std::string v = "Bearer realm=\"" + realm(ex) + "\",service=\"" + cfg_.service + "\"";
  const std::string& name = ex->params().name;
  if (access == api::Access::Catalog) {
    v += ",scope=\"registry:catalog:*\"";
  } else if (auth::Actions need = needed(access); need != 0 && quotable(name) && !name.empty()) {
    // Clients ask for what they will do next: a push also reads.
    if (need == auth::kPush) need |= auth::kPull;
    v += ",scope=\"repository:" + name + ":" + auth::actions_str(need) + "\"";
  }
  if (error) v += std::string(",error=\"") + error + "\"";
  ex->add_header("WWW-Authenticate", std::move(v));
  ex->respond_error(code, std::move(detail));
}

template <class Next>
void AuthGate::authenticate(const http::ExchangePtr& ex, api::Access access, Next&& next) {
  auto h = ex->req().headers.get("Authorization");
  if (!h || h->empty()) return next(*authz_.anonymous());
  std::string_view v = *h;
  if (auth::Authorizer::has_scheme(v, "bearer")) {
    auto p = authz_.check_bearer(v.substr(7), now_s());
    if (!p) return challenge(ex, access, Errc::Unauthorized, p.error().detail, "invalid_token");
    // Held here, not borrowed from the cache: next() may change the table.
    const auth::PrincipalPtr held = std::move(*p);
    return next(*held);
  }
  if (!auth::Authorizer::has_scheme(v, "basic"))
    return challenge(ex, access, Errc::Unauthorized, "unsupported or malformed Authorization header");
  v.remove_prefix(6);
  while (!v.empty() && v.front() == ' ') v.remove_prefix(1);
  const uint64_t ms = now_ms();
  auth::Authorizer::BasicCheck check = authz_.check_basic(v, ms, static_cast<int64_t>(ms / 1000));
  using O = auth::Authorizer::BasicCheck::Outcome;
  if (check.outcome == O::Ok) {
    const auth::PrincipalPtr held = std::move(check.principal);
    return next(*held);
  }
  if (check.outcome == O::Invalid) return challenge(ex, access, Errc::Unauthorized, check.why);
  // The same credential text is being derived already (a client's parallel
  // requests when its cached login expired): wait for that answer rather
  // than start another derivation, or be refused 429 for a valid login.
  std::string credential(v);
  if (auto w = waiting_.find(credential); w != waiting_.end()) {
    w->second.push_back([this, ex, access, next = OnPrincipal(std::forward<Next>(next))](const auth::PrincipalPtr& p) {
      if (!ex->alive()) return;
      if (!p) return challenge(ex, access, Errc::Unauthorized, "invalid credentials");
      next(*p);
    });
    return;
  }
  // A derivation: for a real token's secret, and for an unknown name's
  // against a dummy (the refusal then takes as long, and goes through the
  // same queue and bucket, so guessing names costs as much as secrets).
  const uint64_t now_mono = uv_now(loop_);
  bucket_ = std::min<double>(kDeriveBurst, bucket_ + static_cast<double>(now_mono - bucket_ms_) * kDerivePerSecond / 1000);
  bucket_ms_ = now_mono;
  if (deriving_ >= kMaxDeriving || bucket_ < 1) {
    ex->add_header("Retry-After", "1");
    return ex->respond_error(Errc::TooManyRequests, "too many credential checks in progress; retry");
  }
  bucket_ -= 1;
  ++deriving_;
  waiting_.try_emplace(credential);
  const uint64_t gen = authz_.generation();
  auto c = std::make_shared<const auth::Authorizer::BasicCheck>(std::move(check));
  queue_->push<bool>(
      [db = db_, c] {
        const bool ok = auth::verify_secret(c->record, c->secret);
        if (ok && !c->record.name.empty()) (void)db->touch(c->record.name, now_s());
        return ok;
      },
      [this, ex, access, c, gen, credential, next = OnPrincipal(std::forward<Next>(next))](bool ok) {
        --deriving_;
        const uint64_t ms = now_ms();
        auth::PrincipalPtr p;
        if (ok) p = authz_.remember(*c, gen, ms, static_cast<int64_t>(ms / 1000));
        std::vector<Waiter> waiters;
        if (auto w = waiting_.find(credential); w != waiting_.end()) {
          waiters = std::move(w->second);
          waiting_.erase(w);
        }
        if (ex->alive()) {
          if (!p) challenge(ex, access, Errc::Unauthorized, "invalid credentials");
          else next(*p);
        }
        for (auto& w : waiters) w(p);
      });
}

bool AuthGate::check_instance(const http::ExchangePtr& ex, const auth::Principal& p) {
  if (!p.authenticated()) return true;
  auto inst = ex->req().headers.get(kInstanceHeader);
  if (!inst || inst->empty() || inst->size() > 128) return true;
  bool newly = false;
  const std::string id(*inst);
  if (authz_.bind_instance(p.token, id, &newly) == auth::Authorizer::Binding::Other) {
    log::warn("sync token refused: bound to another instance", " token=" + p.token + " instance=" + log::quote(id) +
                                                                    " peer=" + ex->req().peer);
    ex->respond_error(Errc::Denied, "token \"" + p.token +
                                        "\" is bound to another Outpost instance; to move it here run "
                                        "`outpost token deactivate " + p.token + "` on this registry");
    return false;
  }
  if (newly) {
    log::info("sync token bound to an instance", " token=" + p.token + " instance=" + log::quote(id));
    const std::string name = p.token;
    queue_->push<Result<std::vector<auth::TokenRecord>>>(
        [db = db_, name, id]() -> Result<std::vector<auth::TokenRecord>> {
          if (auto b = db->bind(name, id, now_s()); !b) return std::move(b).error();
          return db->load_all();
        },
        [this](Result<std::vector<auth::TokenRecord>> r) {
          if (r) authz_.set_tokens(std::move(*r));
          else log::error("cannot record a token binding", " reason=" + log::quote(r.error().message()));
        });
  }
  return true;
}

void AuthGate::decide(const http::ExchangePtr& ex, api::Access access, const auth::Principal& p,
                      std::function<void()> next) {
  if (!check_instance(ex, p)) return;
  // What the handlers may show beyond {name}: catalog entries, a mount's
  // source. The owner's rules: a bearer token for one repository still
  // lists what its owner may read (the token proves who asks).
  auto rules = p.rules;
  ex->params().may_read = [rules](std::string_view repo) { return (auth::allowed(*rules, repo) & auth::kPull) != 0; };
  switch (access) {
    case api::Access::Open: return next();
    case api::Access::Login:
      if (p.authenticated()) return next();
      return challenge(ex, access, Errc::Unauthorized, "authentication required");
    case api::Access::Catalog:
      if (p.authenticated() || !authz_.options().anonymous.empty()) return next();
      return challenge(ex, access, Errc::Unauthorized, "authentication required");
    default: break;
  }
  const auth::Actions need = needed(access);
  // The repository the handler acts on: {name}, or "<ns>/<name>" when ?ns=
  // names an upstream. A token for app/** must not read mirror/app/** by
  // spelling it /v2/app/...?ns=mirror.
  const std::string name = repository_of_ ? repository_of_(ex) : ex->params().name;
  if ((p.may(name) & need) == need) return next();
  if (!p.authenticated()) return challenge(ex, access, Errc::Unauthorized, "authentication required");
  // A bearer token whose owner may do this but that was not granted it:
  // ask for a wider token (the client fetches one for the challenged scope).
  if (p.kind == auth::Principal::Kind::Bearer && (p.owner_may(name) & need) == need)
    return challenge(ex, access, Errc::Unauthorized, "token lacks the scope", "insufficient_scope");
  ex->respond_error(Errc::Denied, "token \"" + p.token + "\" may not " + action_word(access) + " repository \"" +
                                      (quotable(name) ? name : std::string("?")) + "\"");
}

void AuthGate::check(const http::ExchangePtr& ex, api::Access access, std::function<void()> next) {
  // A lambda, not a std::function: with a cached credential it runs at once
  // and nothing is allocated for it; only a derivation stores it.
  authenticate(ex, access, [this, ex, access, next = std::move(next)](const auth::Principal& p) mutable {
    decide(ex, access, p, std::move(next));
  });
}

void AuthGate::handle_token(const http::ExchangePtr& ex) {
  const auto& req = ex->req();
  if (auto svc = req.query_param("service"); svc && !svc->empty() && *svc != cfg_.service)
    return ex->respond_error(Errc::BadRequest, "this token service is \"" + cfg_.service + "\"");
  if (auto h = req.headers.get("Authorization"); h && auth::Authorizer::has_scheme(*h, "bearer"))
    return ex->respond_error(Errc::Unauthorized, "the token service takes Basic credentials");
  authenticate(ex, api::Access::Login, [this, ex](const auth::Principal& p) {
    if (!check_instance(ex, p)) return;
    std::vector<auth::ResourceScope> asked;
    for (const auto& s : scope_params(ex->req().query))
      if (auto r = auth::parse_resource_scope(s)) asked.push_back(std::move(*r));
    const int64_t now = now_s();
    auth::Claims c;
    std::string t = authz_.issue(p, asked, now, &c);
    json j = {{"token", t},
              {"access_token", t},
              {"expires_in", c.expires_at - c.issued_at},
              {"issued_at", iso8601(c.issued_at)}};
    ex->add_header("Cache-Control", "no-store");
    ex->respond(200, j.dump(), "application/json");
  });
}

void AuthGate::handle_admin(const http::ExchangePtr& ex) {
  if (!is_loopback_peer(ex->req().peer))
    return ex->respond_error(Errc::Denied, "token administration is accepted from loopback only");
  auto body = std::make_shared<std::string>();
  ex->read_body(
      [body](std::string_view c) {
        if (body->size() + c.size() <= kMaxAdminBody) body->append(c);
        else body->resize(kMaxAdminBody + 1);
      },
      [this, ex, body](Status st) {
        if (!st || !ex->alive()) return;
        if (body->size() > kMaxAdminBody) return ex->respond_error(Errc::BodyTooLarge, "token operation too large");
        auto op = json::parse(*body, nullptr, false);
        if (!op.is_object()) return ex->respond_error(Errc::BadRequest, "a token operation is a JSON object");
        struct Out {
          Result<json> answer = json();
          Result<std::vector<auth::TokenRecord>> tokens = std::vector<auth::TokenRecord>();
        };
        queue_->push<std::shared_ptr<Out>>(
            [db = db_, op]() {
              auto out = std::make_shared<Out>();
              out->answer = db->apply(op, now_s());
              out->tokens = db->load_all();
              return out;
            },
            [this, ex, what = op.value("op", std::string()), name = op.value("name", std::string())](
                std::shared_ptr<Out> out) {
              // Applied before answering: the change holds for the next request.
              if (out->tokens) authz_.set_tokens(std::move(*out->tokens));
              if (!out->answer) {
                const Error& e = out->answer.error();
                if (e.code == Errc::NameUnknown) return ex->respond(404, json{{"error", e.detail}}.dump(), "application/json");
                if (e.code == Errc::BadRequest) return ex->respond(400, json{{"error", e.detail}}.dump(), "application/json");
                return ex->respond_error(e);
              }
              if (what != "list" && what != "show")
                log::info("token changed", " op=" + what + " token=" + name + " peer=" + ex->req().peer);
              ex->respond(200, out->answer->dump(), "application/json");
            });
      });
}

void AuthGate::register_routes(http::Router& r) {
  r.add(http::Method::Get, "/token", [this](const http::ExchangePtr& ex) { handle_token(ex); });
  r.add(http::Method::Post, "/outpost/tokens", [this](const http::ExchangePtr& ex) { handle_admin(ex); });
}

}  // namespace outpost::app
