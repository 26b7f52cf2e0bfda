#include <catch2/catch.hpp>
#include <filesystem>
#include <random>

#include "auth/authorizer.hpp"
#include "auth/bearer.hpp"
#include "auth/crypto.hpp"
#include "auth/instance_id.hpp"
#include "auth/scope.hpp"
#include "auth/token_db.hpp"

using namespace outpost;
using namespace outpost::auth;

namespace {
struct TempDir {
  std::string path;
  TempDir() {
    std::random_device rd;
    path = (std::filesystem::temp_directory_path() / ("outpost-auth-" + std::to_string(rd()))).string();
    std::filesystem::create_directories(path);
  }
  ~TempDir() { std::filesystem::remove_all(path); }
};
}  // namespace

TEST_CASE("PBKDF2-HMAC-SHA256 matches RFC 7914's test vector and verifies secrets") {
  // RFC 7914 §11: PBKDF2-HMAC-SHA256 (P="passwd", S="salt", c=1, dkLen=64); first 32 bytes.
  auto dk = pbkdf2_sha256("passwd", "salt", 1);
  REQUIRE(dk);
  const unsigned char want[] = {0x55, 0xac, 0x04, 0x6e, 0x56, 0xe3, 0x08, 0x9f, 0xec, 0x16, 0x91,
                                0xc2, 0x25, 0x44, 0xb6, 0x05, 0xf9, 0x41, 0x85, 0x21, 0x6d, 0xde,
                                0x04, 0x65, 0xe6, 0x8b, 0x9d, 0x57, 0xc2, 0x0d, 0xac, 0xbc};
  CHECK(*dk == std::string(reinterpret_cast<const char*>(want), sizeof want));

  TokenRecord rec;
  rec.salt = "0123456789abcdef";
  rec.iterations = 1000;
  rec.hash = *pbkdf2_sha256("s3cret", rec.salt, rec.iterations);
  CHECK(verify_secret(rec, "s3cret"));
  CHECK_FALSE(verify_secret(rec, "s3cret "));
  CHECK_FALSE(verify_secret(rec, ""));
  rec.salt = "another salt....";
  CHECK_FALSE(verify_secret(rec, "s3cret"));  // the salt takes part
}

TEST_CASE("base64url round trips and refuses the standard alphabet") {
  for (std::string s : {std::string(""), std::string("a"), std::string("ab"), std::string("\xff\xfe\x00x", 4)}) {
    auto d = b64url_decode(b64url_encode(s));
    REQUIRE(d);
    CHECK(*d == s);
  }
  CHECK_FALSE(b64url_decode("ab+c"));
  CHECK(b64url_encode("\xfb\xff") == "-_8");
}

TEST_CASE("repository globs: * within a component, ** across components") {
  CHECK(glob_match("factory/*", "factory/app"));
  CHECK_FALSE(glob_match("factory/*", "factory/a/b"));
  CHECK_FALSE(glob_match("factory/*", "factory"));
  CHECK(glob_match("factory/**", "factory"));
  CHECK(glob_match("factory/**", "factory/a/b"));
  CHECK_FALSE(glob_match("factory/**", "factoryx/a"));
  CHECK(glob_match("**", "anything/at/all"));
  CHECK(glob_match("line-?/app", "line-3/app"));
  CHECK_FALSE(glob_match("line-?/app", "line-10/app"));
  CHECK(glob_match("base/alpine", "base/alpine"));
  CHECK_FALSE(glob_match("base/alpine", "base/alpine2"));
}

TEST_CASE("scope rules parse, refuse typos and unite their actions") {
  auto r = parse_rule("factory/*:pull,push");
  REQUIRE(r);
  CHECK(r->pattern == "factory/*");
  CHECK(r->actions == (kPull | kPush));
  CHECK(parse_rule("base/**")->actions == kPull);
  CHECK(parse_rule("x:*")->actions == kAllActions);
  CHECK_FALSE(parse_rule("x:pul"));
  CHECK_FALSE(parse_rule("Factory/*:pull"));
  CHECK_FALSE(parse_rule("a//b:pull"));
  CHECK_FALSE(parse_rule(":pull"));
  std::vector<ScopeRule> rules = {*parse_rule("factory/**:pull"), *parse_rule("factory/line-3/*:push,delete")};
  CHECK(allowed(rules, "factory/line-3/app") == kAllActions);
  CHECK(allowed(rules, "factory/line-4/app") == kPull);
  CHECK(allowed(rules, "other") == 0);
}

TEST_CASE("resource scopes of the token spec") {
  auto s = parse_resource_scope("repository:factory/app:pull,push");
  REQUIRE(s);
  CHECK(s->type == "repository");
  CHECK(s->name == "factory/app");
  CHECK(s->actions == (kPull | kPush));
  auto port = parse_resource_scope("repository:host:5000/app:pull");
  REQUIRE(port);
  CHECK(port->name == "host:5000/app");
  CHECK(parse_resource_scope("repository:a:metadata_read,pull")->actions == kPull);
  CHECK(parse_resource_scope("registry:catalog:*"));
  CHECK_FALSE(parse_resource_scope("repository:pull"));
  CHECK_FALSE(parse_resource_scope("user:x:pull"));
  CHECK(resource_scope_str(*s) == "repository:factory/app:pull,push");
}

TEST_CASE("bearer tokens: verified, and refused when tampered, expired or for another service") {
  const std::string key = "k0123456789abcdef0123456789abcde";
  Claims c;
  c.subject = "line3";
  c.service = "outpost";
  c.issued_at = 1000;
  c.expires_at = 1300;
  c.generation = 2;
  c.access = {ResourceScope{"repository", "factory/app", kPull}};
  const std::string t = sign_token(c, key);
  auto v = verify_token(t, key, "outpost", 1100);
  REQUIRE(v);
  CHECK(*v == c);
  CHECK(v->actions_on("factory/app") == kPull);
  CHECK(v->actions_on("factory/other") == 0);

  CHECK_FALSE(verify_token(t, key, "outpost", 1300));  // expired
  CHECK_FALSE(verify_token(t, key, "other-service", 1100));
  CHECK_FALSE(verify_token(t, "another key 0123456789abcdef0123", "outpost", 1100));
  // A widened scope with the old signature.
  Claims wide = c;
  wide.access[0].actions = kPull | kPush;
  std::string forged = sign_token(wide, key);
  forged = forged.substr(0, forged.find('.')) + t.substr(t.find('.'));
  auto f = verify_token(forged, key, "outpost", 1100);
  REQUIRE_FALSE(f);
  CHECK(f.error().code == Errc::Unauthorized);
  // A flipped signature character.
  std::string flipped = t;
  flipped.back() = flipped.back() == 'A' ? 'B' : 'A';
  CHECK_FALSE(verify_token(flipped, key, "outpost", 1100));
  CHECK_FALSE(verify_token("garbage", key, "outpost", 1100));
  CHECK_FALSE(verify_token("", key, "outpost", 1100));
}

TEST_CASE("auth.db: create, verify, disable, rotate, bind, deactivate, delete") {
  TempDir d;
  auto db = TokenDb::open(d.path);
  REQUIRE(db);
  auto created = db->apply({{"op", "create"}, {"name", "line3"}, {"scopes", {"factory/*:pull,push"}}}, 100);
  REQUIRE(created);
  const std::string secret = (*created)["secret"];
  CHECK(secret.size() >= 40);
  CHECK_FALSE(db->apply({{"op", "create"}, {"name", "line3"}}, 100));  // exists
  CHECK_FALSE(db->apply({{"op", "create"}, {"name", "bad name"}}, 100));
  CHECK_FALSE(db->apply({{"op", "create"}, {"name", "x"}, {"scopes", {"x:pul"}}}, 100));

  auto all = db->load_all();
  REQUIRE(all);
  REQUIRE(all->size() == 1);
  CHECK(verify_secret((*all)[0], secret));
  CHECK_FALSE(verify_secret((*all)[0], secret + "x"));
  CHECK((*all)[0].scopes == std::vector<ScopeRule>{ScopeRule{"factory/*", kPull | kPush}});

  REQUIRE(db->apply({{"op", "disable"}, {"name", "line3"}}, 101));
  CHECK_FALSE(db->load_all()->at(0).enabled);
  REQUIRE(db->apply({{"op", "enable"}, {"name", "line3"}}, 101));
  CHECK(db->load_all()->at(0).enabled);

  auto rotated = db->apply({{"op", "rotate"}, {"name", "line3"}}, 102);
  REQUIRE(rotated);
  const std::string secret2 = (*rotated)["secret"];
  auto rec = db->load_all()->at(0);
  CHECK(rec.generation == 2);
  CHECK_FALSE(verify_secret(rec, secret));
  CHECK(verify_secret(rec, secret2));

  CHECK(*db->bind("line3", "child-a", 103));
  CHECK_FALSE(*db->bind("line3", "child-b", 104));
  CHECK(db->load_all()->at(0).instance == "child-a");
  REQUIRE(db->apply({{"op", "deactivate"}, {"name", "line3"}}, 105));
  CHECK(*db->bind("line3", "child-b", 106));

  auto missing = db->apply({{"op", "show"}, {"name", "nope"}}, 107);
  REQUIRE_FALSE(missing);
  CHECK(missing.error().code == Errc::NameUnknown);
  REQUIRE(db->apply({{"op", "delete"}, {"name", "line3"}}, 108));
  CHECK(db->load_all()->empty());

  // The signing key survives a reopen (issued tokens stay valid).
  auto k1 = db->signing_key();
  REQUIRE(k1);
  auto db2 = TokenDb::open(d.path);
  REQUIRE(db2);
  CHECK(*db2->signing_key() == *k1);
}

TEST_CASE("authorizer: Basic cache, bearer grants, disable and rotate hold at once") {
  TempDir d;
  auto db = TokenDb::open(d.path);
  REQUIRE(db);
  auto created = db->apply({{"op", "create"}, {"name", "line3"}, {"scopes", {"factory/*:pull,push"}}}, 100);
  REQUIRE(created);
  const std::string secret = (*created)["secret"];
  AuthOptions o;
  o.anonymous = {ScopeRule{"public/**", kPull}};
  Authorizer a(o, "signing key 0123456789abcdef0123");
  a.set_tokens(*db->load_all());

  using O = Authorizer::BasicCheck::Outcome;
  auto cred = [](const std::string& n, const std::string& s) { return b64_encode(n + ":" + s); };
  auto c = a.check_basic(cred("line3", secret), 1000, 100);
  REQUIRE(c.outcome == O::Derive);
  REQUIRE(verify_secret(c.record, c.secret));
  auto p = a.remember(c, a.generation(), 1000, 100);
  REQUIRE(p);
  CHECK(p->may("factory/app") == (kPull | kPush));
  CHECK(p->may("public/x") == kPull);
  CHECK(p->may("other") == 0);
  // Cached: no derivation for a while, then again.
  CHECK(a.check_basic(cred("line3", secret), 2000, 100).outcome == O::Ok);
  CHECK(a.check_basic(cred("line3", secret), 2000, 100).principal == p);  // the same principal, not a copy
  CHECK(a.check_basic(cred("line3", secret + "x"), 2000, 100).outcome == O::Derive);
  CHECK(a.check_basic(cred("line3", secret), 1000 + o.cache_ttl_ms + 1, 100).outcome == O::Derive);
  REQUIRE(a.remember(a.check_basic(cred("line3", secret), 3000, 100), a.generation(), 1000, 100));
  CHECK(a.check_basic(cred("line3", secret), 2000, 100).outcome == O::Ok);
  // A change to another token leaves this cached credential alone (it used
  // to clear the whole cache: every client derived again at once, and 429s
  // followed right after a guessing attack had emptied the bucket).
  REQUIRE(db->apply({{"op", "create"}, {"name", "other"}, {"scopes", {"x/*:pull"}}}, 101));
  a.set_tokens(*db->load_all());
  auto again = a.check_basic(cred("line3", secret), 2000, 101);
  CHECK(again.outcome == O::Ok);
  REQUIRE(again.principal);
  CHECK(again.principal->may("factory/app") == (kPull | kPush));
  CHECK(a.cached_basic() == 1);

  // Bearer: the intersection of asked and allowed.
  Claims claims;
  std::string t = a.issue(*p, {ResourceScope{"repository", "factory/app", kAllActions},
                               ResourceScope{"repository", "secret/app", kPull}}, 100, &claims);
  REQUIRE(claims.access.size() == 1);
  CHECK(claims.access[0].actions == (kPull | kPush));
  auto b = a.check_bearer(t, 150);
  REQUIRE(b);
  CHECK((*b)->may("factory/app") == (kPull | kPush));
  CHECK((*b)->may("factory/other") == 0);  // not granted in this token
  CHECK((*b)->owner_may("factory/other") == (kPull | kPush));
  CHECK((*b)->may("public/y") == kPull);
  // Checked once, then found by its text: the same principal.
  CHECK(a.cached_bearer() == 1);
  auto b2 = a.check_bearer(t, 151);
  REQUIRE(b2);
  CHECK(*b2 == *b);
  // ... until it expires (token_ttl_s after issue, 100 + 300).
  CHECK_FALSE(a.check_bearer(t, 100 + o.token_ttl_s));
  CHECK(a.cached_bearer() == 0);
  REQUIRE(a.check_bearer(t, 152));

  // Disable: the cached credential and the bearer token stop at once.
  REQUIRE(db->apply({{"op", "disable"}, {"name", "line3"}}, 160));
  a.set_tokens(*db->load_all());
  CHECK(a.check_basic(cred("line3", secret), 2000, 160).outcome == O::Derive);  // then refused:
  CHECK_FALSE(a.remember(a.check_basic(cred("line3", secret), 2000, 160), a.generation(), 2000, 160));
  CHECK_FALSE(a.check_bearer(t, 160));
  REQUIRE(db->apply({{"op", "enable"}, {"name", "line3"}}, 161));
  a.set_tokens(*db->load_all());
  CHECK(a.check_bearer(t, 161));
  // Rotate: the old generation's bearer token is refused, cached or not.
  REQUIRE(db->apply({{"op", "rotate"}, {"name", "line3"}}, 162));
  a.set_tokens(*db->load_all());
  CHECK_FALSE(a.check_bearer(t, 162));
  // ... and the old secret's cached credential with it.
  auto old = a.check_basic(cred("line3", secret), 2000, 162);
  CHECK(old.outcome == O::Derive);
  CHECK_FALSE(verify_secret(old.record, old.secret));

  // Expired token: refused (after a derivation, like any refusal).
  REQUIRE(db->apply({{"op", "create"}, {"name", "temp"}, {"expires_in", 10}}, 100));
  auto temp_secret = std::string((*db->apply({{"op", "rotate"}, {"name", "temp"}}, 100))["secret"]);
  a.set_tokens(*db->load_all());
  auto tc = a.check_basic(cred("temp", temp_secret), 1000, 105);
  REQUIRE(tc.outcome == O::Derive);
  REQUIRE(verify_secret(tc.record, tc.secret));
  REQUIRE(a.remember(tc, a.generation(), 1000, 105));
  CHECK(a.check_basic(cred("temp", temp_secret), 1001, 105).outcome == O::Ok);
  // The cached entry holds until the token's own expiry, not the cache's.
  CHECK(a.check_basic(cred("temp", temp_secret), 1002, 111).outcome == O::Derive);
  CHECK_FALSE(a.remember(a.check_basic(cred("temp", temp_secret), 1002, 111), a.generation(), 1002, 111));

  // Malformed: refused at once.
  CHECK(a.check_basic("!!!", 1000, 100).outcome == O::Invalid);
  CHECK(a.check_basic(b64_encode("no colon"), 1000, 100).outcome == O::Invalid);

  // Instance binding: first one wins until deactivated.
  bool newly = false;
  CHECK(a.bind_instance("line3", "child-a", &newly) == Authorizer::Binding::Ok);
  CHECK(newly);
  CHECK(a.bind_instance("line3", "child-a", &newly) == Authorizer::Binding::Ok);
  CHECK_FALSE(newly);
  CHECK(a.bind_instance("line3", "child-b", &newly) == Authorizer::Binding::Other);

  std::string name, sec;
  CHECK(Authorizer::parse_basic("Basic " + b64_encode("line3:a:b"), &name, &sec));
  CHECK(name == "line3");
  CHECK(sec == "a:b");
  CHECK_FALSE(Authorizer::parse_basic("Basic !!!", &name, &sec));
  CHECK_FALSE(Authorizer::parse_basic("Digest x", &name, &sec));
  // Scheme names are case-insensitive (RFC 9110 11.1): BASIC was refused.
  CHECK(Authorizer::parse_basic("BASIC " + b64_encode("line3:a:b"), &name, &sec));
  CHECK(Authorizer::has_scheme("bEaReR abc", "bearer"));
  CHECK_FALSE(Authorizer::has_scheme("Bearerabc", "bearer"));
  CHECK_FALSE(Authorizer::has_scheme("Bearer", "bearer"));
  CHECK_FALSE(Authorizer::has_scheme("Basi x", "basic"));

  // A reload that renames the service (SIGHUP, issue #17): a token cached
  // under the old name stops verifying at once, and a cached Basic login's
  // anonymous rules are the new ones.
  std::string t2 = a.issue(*p, {ResourceScope{"repository", "factory/app", kPull}}, 200, &claims);
  REQUIRE(a.check_bearer(t2, 201));
  REQUIRE(a.cached_bearer() == 1);
  AuthOptions renamed = a.options();
  renamed.service = "another-service";
  renamed.anonymous.clear();
  a.set_options(renamed);
  CHECK_FALSE(a.check_bearer(t2, 202));
  auto after = a.check_basic(cred("line3", secret), 3000, 203);
  CHECK(after.outcome == O::Derive);  // derived again, not served from the old cache entry
  CHECK(a.cached_basic() == 0);
}

TEST_CASE("authorizer: an unknown name costs the same derivation as a wrong secret") {
  // A refusal's timing must not tell which token names exist: an unknown
  // name used to be refused at once, a known one after a PBKDF2 run.
  TempDir d;
  auto db = TokenDb::open(d.path);
  REQUIRE(db);
  REQUIRE(db->apply({{"op", "create"}, {"name", "line3"}, {"scopes", {"factory/*:pull"}}}, 100));
  REQUIRE(db->apply({{"op", "create"}, {"name", "off"}, {"scopes", {"factory/*:pull"}}}, 100));
  REQUIRE(db->apply({{"op", "disable"}, {"name", "off"}}, 100));
  Authorizer a(AuthOptions{}, "signing key 0123456789abcdef0123");
  a.set_tokens(*db->load_all());
  using O = Authorizer::BasicCheck::Outcome;
  const TokenRecord& real = *a.find("line3");
  for (const char* name : {"nobody", "off", "line3"}) {
    INFO(name);
    auto c = a.check_basic(b64_encode(std::string(name) + ":guess"), 1000, 100);
    REQUIRE(c.outcome == O::Derive);
    // Against a record shaped like a real one: same iteration count, same
    // salt and hash sizes, so the derivation costs the same.
    CHECK(c.record.iterations == real.iterations);
    CHECK(c.record.salt.size() == real.salt.size());
    CHECK(c.record.hash.size() == real.hash.size());
    CHECK_FALSE(verify_secret(c.record, c.secret));
    // An unknown or disabled token is refused even if its derivation passed.
    if (std::string(name) != "line3") CHECK_FALSE(a.remember(c, a.generation(), 1000, 100));
  }
  // Whatever an unknown name's secret derives to, it is never accepted.
  auto c = a.check_basic(b64_encode("nobody:x"), 1000, 100);
  CHECK(c.record.name.empty());
  CHECK_FALSE(a.remember(c, a.generation(), 1000, 100));
  CHECK(a.cached_basic() == 0);
}

TEST_CASE("authorizer: one cache entry per credential however its base64 is spelt") {
  TempDir d;
  auto db = TokenDb::open(d.path);
  REQUIRE(db);
  auto created = db->apply({{"op", "create"}, {"name", "ab"}, {"scopes", {"x/*:pull"}}}, 100);
  REQUIRE(created);
  const std::string secret = (*created)["secret"];
  Authorizer a(AuthOptions{}, "signing key 0123456789abcdef0123");
  a.set_tokens(*db->load_all());
  using O = Authorizer::BasicCheck::Outcome;
  const std::string canon = b64_encode("ab:" + secret);
  auto c = a.check_basic(canon, 1000, 100);
  REQUIRE(c.outcome == O::Derive);
  CHECK(c.key == canon);
  REQUIRE(verify_secret(c.record, c.secret));
  REQUIRE(a.remember(c, a.generation(), 1000, 100));
  // The same credential with an unused bit of its last base64 digit set
  // (decoders ignore it): a hit on the canonical entry, no new entry.
  std::string odd = canon;
  const size_t last = odd.find_last_not_of('=');
  REQUIRE(last + 1 < odd.size());  // padded: the last digit has unused bits
  const std::string abc = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  odd[last] = abc[abc.find(odd[last]) ^ 1];
  REQUIRE(odd != canon);
  REQUIRE(b64_decode(odd));
  REQUIRE(*b64_decode(odd) == "ab:" + secret);
  CHECK(a.check_basic(odd, 1100, 100).outcome == O::Ok);
  CHECK(a.cached_basic() == 1);
  CHECK(a.check_basic(canon, 1100, 100).outcome == O::Ok);
}

TEST_CASE("instance id: made once, kept") {
  TempDir d;
  auto a = load_or_create_instance_id(d.path);
  REQUIRE(a);
  CHECK(a->size() >= 16);
  auto b = load_or_create_instance_id(d.path);
  REQUIRE(b);
  CHECK(*a == *b);
}
