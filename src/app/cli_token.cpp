#include "app/cli_token.hpp"

#include <algorithm>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "app/admin_client.hpp"
#include "auth/scope.hpp"
#include "auth/token_db.hpp"
#include "base/size.hpp"

namespace outpost::app {

namespace {

using nlohmann::json;

constexpr const char* kUsage =
    "usage: outpost token create NAME [--scope 'PATTERN:pull,push,delete' ...] [--expires DUR] [--json]\n"
    "       outpost token list [--json]\n"
    "       outpost token show|disable|enable|delete|rotate|deactivate NAME [--json]\n";

std::string when(int64_t t) {
  if (t == 0) return "-";
  time_t tt = static_cast<time_t>(t);
  struct tm tm {};
  gmtime_r(&tt, &tm);
  char buf[32];
  strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

void print_token(const json& t, FILE* out) {
  std::string scopes;
  for (const auto& s : t.value("scopes", json::array())) scopes += (scopes.empty() ? "" : " ") + s.get<std::string>();
  fprintf(out, "name:      %s\n", t.value("name", std::string()).c_str());
  fprintf(out, "enabled:   %s\n", t.value("enabled", false) ? "yes" : "no");
  fprintf(out, "scopes:    %s\n", scopes.empty() ? "(none)" : scopes.c_str());
  fprintf(out, "expires:   %s\n", t.value("expires_at", int64_t{0}) ? when(t.value("expires_at", int64_t{0})).c_str() : "never");
  fprintf(out, "created:   %s\n", when(t.value("created", int64_t{0})).c_str());
  fprintf(out, "last used: %s\n", when(t.value("last_used", int64_t{0})).c_str());
  const std::string inst = t.value("instance", std::string());
  fprintf(out, "instance:  %s\n", inst.empty() ? "(not bound)" : (inst + " since " + when(t.value("bound_at", int64_t{0}))).c_str());
}

void print_answer(const std::string& op, const json& ans, bool as_json, FILE* out) {
  if (as_json) {
    fprintf(out, "%s\n", ans.dump(2).c_str());
    return;
  }
  if (op == "list") {
    fprintf(out, "%-24s %-8s %-20s %-20s %s\n", "NAME", "ENABLED", "EXPIRES", "LAST USED", "SCOPES");
    for (const auto& t : ans.value("tokens", json::array())) {
      std::string scopes;
      for (const auto& s : t.value("scopes", json::array())) scopes += (scopes.empty() ? "" : " ") + s.get<std::string>();
      fprintf(out, "%-24s %-8s %-20s %-20s %s\n", t.value("name", std::string()).c_str(),
              t.value("enabled", false) ? "yes" : "no", when(t.value("expires_at", int64_t{0})).c_str(),
              when(t.value("last_used", int64_t{0})).c_str(), scopes.c_str());
    }
    return;
  }
  if (ans.contains("token")) print_token(ans["token"], out);
  if (ans.contains("secret")) {
    fprintf(out, "secret:    %s\n", ans["secret"].get<std::string>().c_str());
    fprintf(out, "(the secret is shown only now; log in with `docker login -u %s`)\n",
            ans["token"].value("name", std::string()).c_str());
  }
  if (ans.value("deleted", false)) fprintf(out, "deleted\n");
}

}  // namespace

int cli_token(CliArgs& a) {
  if (a.args.empty()) {
    fputs(kUsage, stderr);
    return 2;
  }
  const std::string op = a.args.front();
  a.args.erase(a.args.begin());
  static const char* kOps[] = {"create", "list", "show", "disable", "enable", "delete", "rotate", "deactivate"};
  if (std::find(std::begin(kOps), std::end(kOps), op) == std::end(kOps)) {
    fprintf(stderr, "outpost token: unknown operation \"%s\"\n%s", op.c_str(), kUsage);
    return 2;
  }
  const bool as_json = a.take_flag("--json");
  json req = {{"op", op}};
  if (op == "create") {
    json scopes = json::array();
    bool missing = false;
    while (auto v = a.take_value("--scope", &missing)) {
      auto r = auth::parse_rule(*v);
      if (!r) {
        fprintf(stderr, "outpost token: --scope %s\n", r.error().detail.c_str());
        return 2;
      }
      scopes.push_back(auth::rule_str(*r));
    }
    if (missing) {
      fprintf(stderr, "outpost token: --scope needs 'PATTERN:ACTIONS'\n");
      return 2;
    }
    req["scopes"] = scopes;
    if (auto v = a.take_value("--expires", &missing)) {
      auto ms = parse_duration_ms(*v);
      if (!ms || *ms < 1000) {
        fprintf(stderr, "outpost token: --expires: \"%s\" is not a duration (e.g. \"90d\", \"12h\")\n", v->c_str());
        return 2;
      }
      req["expires_in"] = static_cast<int64_t>(*ms / 1000);
    } else if (missing) {
      fprintf(stderr, "outpost token: --expires needs a duration\n");
      return 2;
    }
  }
  if (op != "list") {
    if (a.args.empty() || a.args.front().rfind("-", 0) == 0) {
      fprintf(stderr, "outpost token %s: needs a token NAME\n%s", op.c_str(), kUsage);
      return 2;
    }
    req["name"] = a.args.front();
    a.args.erase(a.args.begin());
    if (auto st = auth::check_token_name(req["name"].get<std::string>()); !st) {
      fprintf(stderr, "outpost token: %s\n", st.error().detail.c_str());
      return 2;
    }
  }
  if (a.reject_leftovers(("token " + op).c_str())) return 2;
  auto cfg = a.load_config();
  if (!cfg) {
    fprintf(stderr, "outpost: %s\n", cfg.error().message().c_str());
    return 2;
  }
  const std::string root = cfg->storage.root;
  std::error_code ec;
  std::filesystem::create_directories(root, ec);
  // The store's lock says whether a server runs on this root: held, the
  // change goes through it (it keeps the table in memory); free, we hold
  // it while we change auth.db so no server starts half-way.
  auto lock = StoreLock::try_take(root);
  if (!lock) {
    fprintf(stderr, "outpost token: %s\n", lock.error().message().c_str());
    return 1;
  }
  if (*lock) {
    fprintf(stderr, "outpost token: no server runs on %s: changing %s directly\n", root.c_str(),
            auth::TokenDb::path_in(root).c_str());
    auto db = auth::TokenDb::open(root);
    if (!db) {
      fprintf(stderr, "outpost token: %s\n", db.error().message().c_str());
      return 1;
    }
    auto ans = db->apply(req, static_cast<int64_t>(::time(nullptr)));
    lock->reset();
    if (!ans) {
      fprintf(stderr, "outpost token: %s\n", ans.error().message().c_str());
      return 1;
    }
    print_answer(op, *ans, as_json, stdout);
    return 0;
  }
  const std::string base = admin_base_url(*cfg);
  fprintf(stderr, "outpost token: a server holds %s: asking it at %s\n", root.c_str(), base.c_str());
  AdminAnswer r = admin_call(base, http::Method::Post, "/outpost/tokens", 30'000, req.dump(), "application/json");
  if (!r.st.ok()) {
    fprintf(stderr, "outpost token: cannot reach the server at %s: %s\n", base.c_str(), r.st.error().message().c_str());
    return 1;
  }
  auto j = json::parse(r.body, nullptr, false);
  if (r.status != 200 || !j.is_object()) {
    std::string why = j.is_object() && j.contains("error") && j["error"].is_string() ? j["error"].get<std::string>()
                                                                                     : r.body.substr(0, 300);
    fprintf(stderr, "outpost token: the server answered %d: %s\n", r.status, why.c_str());
    return 1;
  }
  print_answer(op, j, as_json, stdout);
  return 0;
}

}  // namespace outpost::app
