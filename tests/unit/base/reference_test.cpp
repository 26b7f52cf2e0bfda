// Repository name and tag grammars of distribution-spec v1.1.
#include <catch2/catch.hpp>

#include <string>

#include "base/reference.hpp"

using outpost::looks_like_digest;
using outpost::valid_repository_name;
using outpost::valid_tag;

TEST_CASE("repository names accepted", "[base][reference]") {
  for (const char* ok : {"a", "alpine", "library/alpine", "a/b/c/d", "foo.bar", "foo_bar", "foo__bar",
                         "foo-bar", "foo--bar", "foo---bar", "a0/1b", "0", "my-org/sub.team/app_v2",
                         "a.b.c", "a_b.c-d__e"}) {
    INFO(ok);
    CHECK(valid_repository_name(ok));
  }
}

TEST_CASE("repository names rejected", "[base][reference]") {
  for (const char* bad : {"", "A", "Alpine", "library/Alpine", "a___b", "a__", "__a", "a_", "_a",
                          "-a", "a-", ".a", "a.", "a..b", "a._b", "a-.b", "a_-b", "a/", "/a", "a//b",
                          "../x", "x/..", "x/../y", ".", "..", "a b", "a:b", "a@b", "a\\b",
                          "a/.b", "a/b-", "a/-b"}) {
    INFO(bad);
    CHECK_FALSE(valid_repository_name(bad));
  }
  // Outside the loop: a raw newline in an INFO message would break TAP output.
  CHECK_FALSE(valid_repository_name("a\nb"));
  CHECK_FALSE(valid_repository_name(std::string_view("a\0b", 3)));
}

TEST_CASE("repository name length limit is 255", "[base][reference]") {
  CHECK(valid_repository_name(std::string(255, 'a')));
  CHECK_FALSE(valid_repository_name(std::string(256, 'a')));
  // With components: 127 + 1 + 127 = 255.
  std::string two = std::string(127, 'b') + "/" + std::string(127, 'c');
  CHECK(two.size() == 255);
  CHECK(valid_repository_name(two));
  CHECK_FALSE(valid_repository_name(two + "d"));
}

TEST_CASE("tags", "[base][reference]") {
  for (const char* ok : {"latest", "v1.2.3", "1", "_", "_x", "A", "Latest-RC_1", "1.0-beta.2",
                         "a--..__b"}) {
    INFO(ok);
    CHECK(valid_tag(ok));
  }
  for (const char* bad : {"", ".", "-", ".x", "-x", "a/b", "a:b", "a b", "a+b", "a@b", "../x"}) {
    INFO(bad);
    CHECK_FALSE(valid_tag(bad));
  }
  CHECK(valid_tag(std::string(128, 'a')));
  CHECK_FALSE(valid_tag(std::string(129, 'a')));
  CHECK(valid_tag("_" + std::string(127, '.')));
}

TEST_CASE("looks_like_digest", "[base][reference]") {
  CHECK(looks_like_digest("sha256:abc"));
  CHECK_FALSE(looks_like_digest("latest"));
}
