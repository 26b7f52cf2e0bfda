#include <catch2/catch.hpp>

#include "bundle/entries.hpp"

using namespace outpost;
using namespace outpost::bundle;

TEST_CASE("entry names: ./ is dropped, absolute and .. refused", "[bundle]") {
  CHECK(*safe_entry_name("index.json") == "index.json");
  CHECK(*safe_entry_name("./blobs/sha256/ab") == "blobs/sha256/ab");
  for (const char* bad : {"/etc/passwd", "../x", "blobs/../../x", "a/..", ""}) {
    auto r = safe_entry_name(bad);
    REQUIRE_FALSE(r);
    CHECK(r.error().code == Errc::BadRequest);
    CHECK(r.error().detail.find("entry \"" + std::string(bad) + "\"") != std::string::npos);
  }
}

TEST_CASE("link targets resolve against the link's directory and stay inside", "[bundle]") {
  // docker save: <id>/layer.tar -> ../<hex>.tar
  CHECK(*resolve_link("abc/layer.tar", "../def.tar") == "def.tar");
  CHECK(*resolve_link("a/b/c", "./d") == "a/b/d");
  CHECK_FALSE(resolve_link("layer.tar", "../x"));
  CHECK_FALSE(resolve_link("a/b", "../../x"));
  CHECK_FALSE(resolve_link("a/b", "/etc/passwd"));
}
