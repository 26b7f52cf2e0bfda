#include "auth/token_db.hpp"

#include <array>
#include <string_view>

#include "auth/crypto.hpp"

namespace outpost::auth {

using nlohmann::json;

namespace {
constexpr std::array<std::string_view, 1> kSchema = {
    R"sql(
CREATE TABLE tokens(
  name       TEXT PRIMARY KEY,
  salt       TEXT NOT NULL,      -- base64url
  hash       TEXT NOT NULL,      -- base64url PBKDF2-HMAC-SHA256
  iterations INTEGER NOT NULL,
  scopes     TEXT NOT NULL,      -- JSON array of "pattern:actions"
  expires_at INTEGER NOT NULL DEFAULT 0,
  enabled    INTEGER NOT NULL DEFAULT 1,
  created    INTEGER NOT NULL,
  last_used  INTEGER NOT NULL DEFAULT 0,
  instance   TEXT NOT NULL DEFAULT '',
  bound_at   INTEGER NOT NULL DEFAULT 0,
  generation INTEGER NOT NULL DEFAULT 1
);
CREATE TABLE keys(name TEXT PRIMARY KEY, value TEXT NOT NULL);
)sql"};

constexpr const char* kCols =
    "name, salt, hash, iterations, scopes, expires_at, enabled, created, last_used, instance, bound_at, generation";

Result<TokenRecord> row(store::sql::Stmt& s) {
  TokenRecord r;
  r.name = s.col_text(0);
  auto salt = b64url_decode(s.col_text(1));
  auto hash = b64url_decode(s.col_text(2));
  if (!salt || !hash) return Error(Errc::Db, "token " + r.name + ": bad salt or hash in auth.db");
  r.salt = std::move(*salt);
  r.hash = std::move(*hash);
  r.iterations = static_cast<uint32_t>(s.col_int(3));
  auto scopes = json::parse(s.col_text(4), nullptr, false);
  if (!scopes.is_array()) return Error(Errc::Db, "token " + r.name + ": bad scopes in auth.db");
  for (const auto& sc : scopes) {
    if (!sc.is_string()) continue;
    auto rule = parse_rule(sc.get<std::string>());
    if (rule) r.scopes.push_back(std::move(*rule));
  }
  r.expires_at = s.col_int(5);
  r.enabled = s.col_int(6) != 0;
  r.created = s.col_int(7);
  r.last_used = s.col_int(8);
  r.instance = s.col_text(9);
  r.bound_at = s.col_int(10);
  r.generation = s.col_int(11);
  return r;
}

struct NewSecret {
  std::string secret, salt, hash;
};

Result<NewSecret> new_secret() {
  auto raw = random_bytes(32);
  if (!raw) return std::move(raw).error();
  auto salt = random_bytes(16);
  if (!salt) return std::move(salt).error();
  NewSecret n;
  n.secret = b64url_encode(*raw);
  n.salt = std::move(*salt);
  auto h = pbkdf2_sha256(n.secret, n.salt, kPbkdf2Iterations);
  if (!h) return std::move(h).error();
  n.hash = std::move(*h);
  return n;
}

std::string str_field(const json& op, const char* key) {
  auto it = op.find(key);
  return it != op.end() && it->is_string() ? it->get<std::string>() : std::string();
}
}  // namespace

json TokenRecord::to_json() const {
  json scopes_j = json::array();
  for (const auto& r : scopes) scopes_j.push_back(rule_str(r));
  return {{"name", name},
          {"scopes", scopes_j},
          {"expires_at", expires_at},
          {"enabled", enabled},
          {"created", created},
          {"last_used", last_used},
          {"instance", instance},
          {"bound_at", bound_at}};
}

Status check_token_name(std::string_view name) {
  bool ok = !name.empty() && name.size() <= 64;
  for (size_t i = 0; ok && i < name.size(); ++i) {
    char c = name[i];
    bool alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
    ok = alnum || (i > 0 && (c == '.' || c == '_' || c == '-'));
  }
  if (!ok)
    return Error(Errc::BadRequest, "token name \"" + std::string(name) +
                                       "\" must be 1-64 of [A-Za-z0-9._-], starting with a letter or digit");
  return {};
}

bool verify_secret(const TokenRecord& rec, std::string_view secret) {
  auto h = pbkdf2_sha256(secret, rec.salt, rec.iterations);
  return h && same_bytes(*h, rec.hash);
}

Result<TokenDb> TokenDb::open(const std::string& root) {
  auto db = store::sql::Db::open(path_in(root));
  if (!db) return std::move(db).error();
  if (auto st = db->migrate(kSchema); !st) return std::move(st).error();
  return TokenDb(std::move(*db));
}

Result<std::vector<TokenRecord>> TokenDb::load_all() {
  auto s = db_.prepare(std::string("SELECT ") + kCols + " FROM tokens ORDER BY name");
  if (!s) return std::move(s).error();
  std::vector<TokenRecord> out;
  for (;;) {
    auto more = s->step();
    if (!more) return std::move(more).error();
    if (!*more) break;
    auto r = row(*s);
    if (!r) return std::move(r).error();
    out.push_back(std::move(*r));
  }
  return out;
}

Result<TokenRecord> TokenDb::get(const std::string& name) {
  auto s = db_.prepare(std::string("SELECT ") + kCols + " FROM tokens WHERE name = ?");
  if (!s) return std::move(s).error();
  s->bind(1, name);
  auto more = s->step();
  if (!more) return std::move(more).error();
  if (!*more) return Error(Errc::NameUnknown, "no token named \"" + name + "\"");
  return row(*s);
}

Result<std::string> TokenDb::signing_key() {
  auto s = db_.prepare("SELECT value FROM keys WHERE name = 'bearer'");
  if (!s) return std::move(s).error();
  auto more = s->step();
  if (!more) return std::move(more).error();
  if (*more) return b64url_decode(s->col_text(0));
  auto key = random_bytes(32);
  if (!key) return std::move(key).error();
  auto ins = db_.prepare("INSERT INTO keys(name, value) VALUES('bearer', ?)");
  if (!ins) return std::move(ins).error();
  ins->bind(1, b64url_encode(*key));
  if (auto st = ins->run(); !st) return std::move(st).error();
  return key;
}

Status TokenDb::touch(const std::string& name, int64_t now_s) {
  auto s = db_.prepare("UPDATE tokens SET last_used = ? WHERE name = ?");
  if (!s) return std::move(s).error();
  s->bind(1, now_s).bind(2, name);
  return s->run();
}

Result<bool> TokenDb::bind(const std::string& name, const std::string& instance, int64_t now_s) {
  auto s = db_.prepare("UPDATE tokens SET instance = ?, bound_at = ? WHERE name = ? AND instance = ''");
  if (!s) return std::move(s).error();
  s->bind(1, instance).bind(2, now_s).bind(3, name);
  if (auto st = s->run(); !st) return std::move(st).error();
  auto r = get(name);
  if (!r) return std::move(r).error();
  return r->instance == instance;
}

Result<json> TokenDb::apply(const json& op, int64_t now_s) {
  if (!op.is_object()) return Error(Errc::BadRequest, "a token operation is a JSON object");
  const std::string what = str_field(op, "op");
  if (what == "list") {
    auto all = load_all();
    if (!all) return std::move(all).error();
    json arr = json::array();
    for (const auto& r : *all) arr.push_back(r.to_json());
    return json{{"tokens", std::move(arr)}};
  }
  const std::string name = str_field(op, "name");
  if (auto st = check_token_name(name); !st) return std::move(st).error();
  auto simple_update = [&](const char* sql) -> Result<json> {
    auto s = db_.prepare(sql);
    if (!s) return std::move(s).error();
    s->bind(1, name);
    if (auto st = s->run(); !st) return std::move(st).error();
    if (db_.changes() == 0) return Error(Errc::NameUnknown, "no token named \"" + name + "\"");
    auto r = get(name);
    if (!r) return std::move(r).error();
    return json{{"token", r->to_json()}};
  };
  if (what == "create") {
    std::vector<ScopeRule> rules;
    json scopes_j = json::array();
    if (auto it = op.find("scopes"); it != op.end() && it->is_array()) {
      for (const auto& sc : *it) {
        if (!sc.is_string()) return Error(Errc::BadRequest, "scopes are strings \"pattern:actions\"");
        auto rule = parse_rule(sc.get<std::string>());
        if (!rule) return Error(Errc::BadRequest, rule.error().detail);
        scopes_j.push_back(rule_str(*rule));
        rules.push_back(std::move(*rule));
      }
    }
    int64_t expires_at = 0;
    if (auto it = op.find("expires_in"); it != op.end() && it->is_number_integer() && it->get<int64_t>() > 0)
      expires_at = now_s + it->get<int64_t>();
    auto sec = new_secret();
    if (!sec) return std::move(sec).error();
    auto s = db_.prepare(
        "INSERT INTO tokens(name, salt, hash, iterations, scopes, expires_at, enabled, created) "
        "VALUES(?, ?, ?, ?, ?, ?, 1, ?) ON CONFLICT(name) DO NOTHING");
    if (!s) return std::move(s).error();
    s->bind(1, name).bind(2, b64url_encode(sec->salt)).bind(3, b64url_encode(sec->hash))
        .bind(4, static_cast<int64_t>(kPbkdf2Iterations)).bind(5, scopes_j.dump()).bind(6, expires_at).bind(7, now_s);
    if (auto st = s->run(); !st) return std::move(st).error();
    if (db_.changes() == 0) return Error(Errc::BadRequest, "a token named \"" + name + "\" exists already");
    auto r = get(name);
    if (!r) return std::move(r).error();
    return json{{"token", r->to_json()}, {"secret", sec->secret}};
  }
  if (what == "show") {
    auto r = get(name);
    if (!r) return std::move(r).error();
    return json{{"token", r->to_json()}};
  }
  if (what == "disable") return simple_update("UPDATE tokens SET enabled = 0 WHERE name = ?");
  if (what == "enable") return simple_update("UPDATE tokens SET enabled = 1 WHERE name = ?");
  if (what == "deactivate") return simple_update("UPDATE tokens SET instance = '', bound_at = 0 WHERE name = ?");
  if (what == "delete") {
    auto r = get(name);
    if (!r) return std::move(r).error();
    auto s = db_.prepare("DELETE FROM tokens WHERE name = ?");
    if (!s) return std::move(s).error();
    s->bind(1, name);
    if (auto st = s->run(); !st) return std::move(st).error();
    return json{{"token", r->to_json()}, {"deleted", true}};
  }
  if (what == "rotate") {
    auto sec = new_secret();
    if (!sec) return std::move(sec).error();
    auto s = db_.prepare(
        "UPDATE tokens SET salt = ?, hash = ?, iterations = ?, generation = generation + 1 WHERE name = ?");
    if (!s) return std::move(s).error();
    s->bind(1, b64url_encode(sec->salt)).bind(2, b64url_encode(sec->hash))
        .bind(3, static_cast<int64_t>(kPbkdf2Iterations)).bind(4, name);
    if (auto st = s->run(); !st) return std::move(st).error();
    if (db_.changes() == 0) return Error(Errc::NameUnknown, "no token named \"" + name + "\"");
    auto r = get(name);
    if (!r) return std::move(r).error();
    return json{{"token", r->to_json()}, {"secret", sec->secret}};
  }
  return Error(Errc::BadRequest, "unknown token operation \"" + what + "\"");
}

}  // namespace outpost::auth
