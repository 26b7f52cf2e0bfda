// sync/keep_pattern: "repo-glob[:tag-glob]" parsing (bad names refused with
// the part at fault) and matching ("*" within a component, "**" across).
#include <catch2/catch.hpp>

#include <string>

#include "sync/keep_pattern.hpp"

using outpost::Errc;
using outpost::sync::KeepPattern;

namespace {

KeepPattern keep(const std::string& text) {
  auto r = KeepPattern::parse(text);
  if (!r) FAIL("unexpected error for \"" << text << "\": " << r.error().detail);
  return std::move(r).value();
}

std::string bad(const std::string& text) {
  auto r = KeepPattern::parse(text);
  INFO(text);
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().code == Errc::ConfigInvalid);
  return r.error().detail;
}

}  // namespace

TEST_CASE("keep: repository glob with a tag glob", "[sync][keep]") {
  KeepPattern k = keep("factory/*:v*");
  CHECK(k.repository_glob() == "factory/*");
  CHECK(k.tag_glob() == "v*");
  CHECK_FALSE(k.is_literal_repository());
  CHECK(k.matches("factory/app", "v1.2"));
  CHECK(k.matches("factory/app", "v"));
  CHECK_FALSE(k.matches("factory/app", "latest"));
  CHECK_FALSE(k.matches("factory/app", "1v"));
  CHECK_FALSE(k.matches_repository("factory/a/b"));  // "*" stays within a component
  CHECK_FALSE(k.matches_repository("factory"));
  CHECK_FALSE(k.matches_repository("other/app"));
  CHECK_FALSE(k.matches_repository("factoryx/app"));
}

TEST_CASE("keep: a literal repository", "[sync][keep]") {
  KeepPattern k = keep("base/alpine:3.*");
  CHECK(k.is_literal_repository());
  CHECK(k.matches("base/alpine", "3.19"));
  CHECK(k.matches("base/alpine", "3."));
  CHECK_FALSE(k.matches("base/alpine", "latest"));
  CHECK_FALSE(k.matches("base/alpine", "13.1"));
  CHECK_FALSE(k.matches_repository("base/alpine2"));
  CHECK_FALSE(k.matches_repository("base"));
}

TEST_CASE("keep: no tag part means every tag", "[sync][keep]") {
  KeepPattern k = keep("base/alpine");
  CHECK(k.tag_glob() == "*");
  CHECK(k.matches("base/alpine", "latest"));
  CHECK(k.matches("base/alpine", "A_b-c.9"));
  CHECK(k.text() == "base/alpine");
}

TEST_CASE("keep: ** spans components, ? one character", "[sync][keep]") {
  KeepPattern site = keep("site/**");
  CHECK(site.matches_repository("site"));
  CHECK(site.matches_repository("site/a"));
  CHECK(site.matches_repository("site/a/b/c"));
  CHECK_FALSE(site.matches_repository("sites/a"));
  CHECK_FALSE(site.matches_repository("other/site/a"));

  KeepPattern any = keep("**/alpine:latest");
  CHECK(any.matches("alpine", "latest"));
  CHECK(any.matches("a/b/alpine", "latest"));
  CHECK_FALSE(any.matches("a/b/alpine2", "latest"));

  KeepPattern mid = keep("a/**/z");
  CHECK(mid.matches_repository("a/z"));
  CHECK(mid.matches_repository("a/b/c/z"));
  CHECK_FALSE(mid.matches_repository("a/b/c"));

  KeepPattern q = keep("f?ctory/*-app:v?");
  CHECK(q.matches("factory/line-app", "v1"));
  CHECK(q.matches("fxctory/x-app", "v2"));
  CHECK_FALSE(q.matches("factory/line-app", "v10"));
  CHECK_FALSE(q.matches("f/ctory/x-app", "v1"));

  KeepPattern all = keep("**");
  CHECK(all.matches("x", "y"));
  CHECK(all.matches("x/y/z", "y"));
}

TEST_CASE("keep: invalid patterns name the part at fault", "[sync][keep]") {
  CHECK(bad("Factory/*:v*") ==
        "\"Factory/*:v*\": repository part \"Factory\" is not a valid name component (lowercase letters and "
        "digits, separated by \".\", \"_\", \"__\" or \"-\"; globs \"*\", \"?\", \"**\")");
  CHECK(bad("") == "\"\": is empty");
  CHECK(bad(":v1") == "\":v1\": the repository part is empty");
  CHECK(bad("factory//x").find("empty path component") != std::string::npos);
  CHECK(bad("/factory").find("empty path component") != std::string::npos);
  CHECK(bad("factory/").find("empty path component") != std::string::npos);
  CHECK(bad("factory/*:") ==
        "\"factory/*:\": the tag part after \":\" is empty (leave out \":\" for every tag)");
  CHECK(bad("factory:v 1").find("tag part \"v 1\" is not a valid tag glob") != std::string::npos);
  CHECK(bad("factory:-x").find("tag part \"-x\"") != std::string::npos);
  CHECK(bad("a/b:c:d").find("tag part \"c:d\"") != std::string::npos);
  CHECK(bad("factory/app@sha256:abc").find("digests are not patterns") != std::string::npos);
  CHECK(bad(".hidden/x").find("repository part \".hidden\"") != std::string::npos);
  CHECK(bad("a/../b").find("repository part \"..\"") != std::string::npos);
  CHECK(bad("fac[a-z]ory").find("repository part") != std::string::npos);  // no bracket classes
  CHECK(bad("fac tory").find("repository part") != std::string::npos);
  CHECK(bad(std::string(256, 'a')).find("longer than 255") != std::string::npos);
  CHECK(bad("a:" + std::string(129, 'b')).find("longer than 128") != std::string::npos);
}

TEST_CASE("keep: parse_keep_patterns", "[sync][keep]") {
  auto ok = outpost::sync::parse_keep_patterns({"factory/*:v*", "base/alpine:3.*"});
  REQUIRE(ok.ok());
  REQUIRE(ok->size() == 2);
  CHECK((*ok)[1].is_literal_repository());
  auto no = outpost::sync::parse_keep_patterns({"factory/*", "BAD"});
  REQUIRE_FALSE(no.ok());
  CHECK(no.error().detail.find("\"BAD\"") != std::string::npos);
}
