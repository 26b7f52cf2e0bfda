// Layout paths and the UploadId grammar: only validated values become paths.
#include <catch2/catch.hpp>

#include <set>

#include "store/layout.hpp"
#include "store_fixture.hpp"

using namespace outpost;
using namespace outpost::store;

TEST_CASE("layout: blob paths are sharded by the first two hex digits", "[store]") {
  Layout l("/var/lib/outpost/");
  auto d = test::digest_of("hello");
  const std::string hex(d.hex());
  CHECK(l.root() == "/var/lib/outpost");
  CHECK(l.blob_file(d) == "/var/lib/outpost/blobs/sha256/" + hex.substr(0, 2) + "/" + hex);
  CHECK(l.blob_shard_dir(d) == "/var/lib/outpost/blobs/sha256/" + hex.substr(0, 2));
  CHECK(l.db_file() == "/var/lib/outpost/meta.db");
  CHECK(is_storable(d));
  CHECK_FALSE(is_storable(Digest()));
}

TEST_CASE("layout: UploadId accepts only 32 lowercase hex", "[store]") {
  CHECK(UploadId::parse("0123456789abcdef0123456789abcdef").ok());
  for (std::string_view bad : {"", "../../../../etc/passwd", "0123456789ABCDEF0123456789abcdef",
                               "0123456789abcdef0123456789abcde", "0123456789abcdef0123456789abcdef0",
                               "0123456789abcdef/123456789abcdef", "..", "0123456789abcdef0123456789abcde\n"}) {
    auto r = UploadId::parse(bad);
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().code == Errc::BlobUploadUnknown);
  }
  Layout l("/r");
  auto id = UploadId::parse("0123456789abcdef0123456789abcdef");
  CHECK(l.upload_data(*id) == "/r/uploads/0123456789abcdef0123456789abcdef/data");
}

TEST_CASE("layout: generated upload ids are valid and distinct", "[store]") {
  std::set<std::string> seen;
  for (int i = 0; i < 200; ++i) {
    auto id = UploadId::generate();
    REQUIRE(id.ok());
    CHECK(UploadId::parse(id->str()).ok());
    seen.insert(id->str());
  }
  CHECK(seen.size() == 200);
}
