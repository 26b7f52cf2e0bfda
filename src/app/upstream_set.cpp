#include "app/upstream_set.hpp"

#include <cstdio>

#include "base/log.hpp"
#include "http/client.hpp"
#include "http/url.hpp"
#include "net/tls.hpp"

namespace outpost::app {

struct UpstreamGenerations::Generation {
  // Declaration order is teardown order in reverse: clients first (their
  // Links hold pool references), then the pools, then the TLS configs.
  std::vector<std::unique_ptr<net::TlsClientConfig>> tls;
  std::vector<std::unique_ptr<http::HttpClient>> pools;
  std::vector<std::unique_ptr<upstream::RegistryClient>> clients;
  bool down = false;

  /// No new requests; the pools close their connections, so calls in
  /// flight end (Cancelled) into clients that still exist.
  void shutdown() {
    if (down) return;
    down = true;
    for (auto& c : clients) c->shutdown();
    pools.clear();
  }
  ~Generation() {
    std::string names;
    for (const auto& c : clients) names += (names.empty() ? "" : ",") + c->options().name;
    shutdown();
    clients.clear();
    // The last holder (a fill, a keeper pass, a replay push) left: an
    // operator sees when a replaced parent stops being used.
    log::info("upstream clients freed", " upstreams=" + log::quote(names));
  }
};

/// Generations whose last holder left, freed on the next loop turn: the
/// last holder may be a callback of one of the generation's own calls.
struct UpstreamGenerations::Graveyard {
  uv_timer_t* timer = nullptr;
  std::vector<Generation*> dead;

  void bury_all() {
    // Freeing one may release nothing else (generations hold no other
    // generation), but loop anyway in case it does.
    while (!dead.empty()) {
      auto batch = std::move(dead);
      dead.clear();
      for (Generation* g : batch) delete g;
    }
  }
};

UpstreamGenerations::UpstreamGenerations(uv_loop_t* loop, std::string instance_id,
                                         std::shared_ptr<upstream::RequestTimings> timings)
    : loop_(loop), instance_id_(std::move(instance_id)), timings_(std::move(timings)),
      grave_(std::make_shared<Graveyard>()) {
  grave_->timer = new uv_timer_t;
  uv_timer_init(loop_, grave_->timer);
  grave_->timer->data = grave_.get();
  uv_unref(reinterpret_cast<uv_handle_t*>(grave_->timer));
}

UpstreamGenerations::~UpstreamGenerations() {
  grave_->bury_all();
  uv_close(reinterpret_cast<uv_handle_t*>(grave_->timer),
           [](uv_handle_t* h) { delete reinterpret_cast<uv_timer_t*>(h); });
  grave_->timer = nullptr;
  // A generation still held past this point (a bug) is freed by its last
  // holder directly: the deleter sees the graveyard gone.
}

void UpstreamGenerations::shutdown() {
  for (auto& w : all_)
    if (auto g = w.lock()) g->shutdown();
}

Status read_credentials(const std::string& path, std::string* user, std::string* pass) {
  if (path.empty()) return {};
  // A small file, read on the loop thread at start and on SIGHUP only.
  FILE* f = fopen(path.c_str(), "r");
  if (!f) return Error(Errc::ConfigInvalid, "cannot read token_file " + path);
  char buf[4096];
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  std::string s(buf, n);
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r' || s.back() == ' ')) s.pop_back();
  size_t colon = s.find(':');
  if (colon == std::string::npos) return Error(Errc::ConfigInvalid, "token_file " + path + " must hold username:password");
  *user = s.substr(0, colon);
  *pass = s.substr(colon + 1);
  return {};
}

namespace {
bool same_client(const upstream::RegistryClient* c, const UpstreamConfig& a, const UpstreamConfig& b) {
  if (!(a == b)) return false;
  if (!c) return b.url.empty();
  std::string user, pass;
  if (!read_credentials(b.token_file, &user, &pass)) return false;  // unreadable now: build (and report) again
  return user == c->options().username && pass == c->options().password;
}
}  // namespace

bool UpstreamGenerations::same(const UpstreamSet& running, const Config& live, const Config& next) {
  if (live.parent.url.empty() != next.parent.url.empty()) return false;
  if (!next.parent.url.empty() && !same_client(running.parent.get(), live.parent, next.parent)) return false;
  if (live.upstreams.size() != next.upstreams.size() || running.named.size() != next.upstreams.size()) return false;
  for (size_t i = 0; i < next.upstreams.size(); ++i)
    if (!same_client(running.named[i].get(), live.upstreams[i], next.upstreams[i])) return false;
  return true;
}

Result<UpstreamSet> UpstreamGenerations::build(const Config& cfg) {
  auto gen = std::make_unique<Generation>();
  std::vector<upstream::RegistryClient*> made;
  auto make = [&](const UpstreamConfig& u, bool is_parent) -> Status {
    auto url = http::Url::parse(u.url);
    if (!url) return Error(Errc::ConfigInvalid, "upstream " + u.name + ": " + url.error().message());
    net::TlsClientOptions to;
    to.ca_file = u.ca_file;
    to.insecure = u.insecure;
    auto tls = net::TlsClientConfig::create(to);
    if (!tls) return std::move(tls).error();
    auto pool = std::make_unique<http::HttpClient>(loop_, tls->get());
    upstream::UpstreamOptions o;
    o.name = u.name;
    o.url = *url;
    o.library_prefix = u.library_prefix;
    o.timeouts.connect_ms = u.connect_timeout_ms;
    o.timeouts.first_byte_ms = u.timeout_ms;
    o.timeouts.progress_ms = u.timeout_ms;
    OUTPOST_TRY(read_credentials(u.token_file, &o.username, &o.password));
    o.offline = u.offline;
    if (is_parent) o.instance_id = instance_id_;  // sync-token activation (issue #16)
    o.timings = timings_;
    gen->clients.push_back(std::make_unique<upstream::RegistryClient>(loop_, *pool, o));
    made.push_back(gen->clients.back().get());
    gen->tls.push_back(std::move(*tls));
    gen->pools.push_back(std::move(pool));
    log::info("upstream configured", " name=" + u.name + " url=" + log::quote(u.url));
    return {};
  };
  if (!cfg.parent.url.empty()) OUTPOST_TRY(make(cfg.parent, true));
  for (const auto& u : cfg.upstreams) OUTPOST_TRY(make(u, false));

  // Shared ownership with a deleter that defers the free to the loop.
  std::weak_ptr<Graveyard> grave = grave_;
  std::shared_ptr<Generation> owner(gen.release(), [grave](Generation* g) {
    auto gy = grave.lock();
    if (!gy || !gy->timer) {
      delete g;
      return;
    }
    gy->dead.push_back(g);
    uv_timer_start(gy->timer, [](uv_timer_t* t) { static_cast<Graveyard*>(t->data)->bury_all(); }, 0, 0);
  });
  std::erase_if(all_, [](const std::weak_ptr<Generation>& w) { return w.expired(); });
  all_.push_back(owner);
  UpstreamSet set;
  size_t i = 0;
  if (!cfg.parent.url.empty()) set.parent = std::shared_ptr<upstream::RegistryClient>(owner, made[i++]);
  while (i < made.size()) set.named.push_back(std::shared_ptr<upstream::RegistryClient>(owner, made[i++]));
  return set;
}

}  // namespace outpost::app
