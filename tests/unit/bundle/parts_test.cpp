#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "bundle/parts.hpp"
#include "store_fixture.hpp"

using namespace outpost;
using namespace outpost::bundle;
using outpost::store::test::Sandbox;

namespace {
std::string slurp(const std::string& p) {
  std::ifstream f(p, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}
std::string pattern(size_t n) {
  std::string s(n, '\0');
  for (size_t i = 0; i < n; ++i) s[i] = static_cast<char>('a' + (i * 7 + i / 13) % 26);
  return s;
}
Status write_in_pieces(PartWriter& w, const std::string& data, size_t piece) {
  for (size_t off = 0; off < data.size(); off += piece) OUTPOST_TRY(w.write(data.data() + off, std::min(piece, data.size() - off)));
  return w.finish();
}
}  // namespace

TEST_CASE("parts: the stream is cut at max_part and read back whole", "[bundle]") {
  Sandbox sb;
  const std::string base = sb.dir() + "/b.tar", data = pattern(2500);
  PartWriter w(base, 1000, false);
  REQUIRE(write_in_pieces(w, data, 333));
  REQUIRE(w.files().size() == 3);
  CHECK(slurp(part_path(base, 0)).size() == 1000);
  CHECK(slurp(part_path(base, 2)).size() == 500);
  auto files = bundle_files(part_path(base, 0));
  REQUIRE(files);
  CHECK(*files == w.files());
  auto same = bundle_files(base);  // the base name finds the parts too
  REQUIRE(same);
  CHECK(*same == *files);
  PartReader r(*files);
  std::string back;
  char buf[64];
  for (;;) {
    auto n = r.read(buf, sizeof buf);
    REQUIRE(n);
    if (*n == 0) break;
    back.append(buf, *n);
  }
  CHECK(back == data);
}

TEST_CASE("parts: resume compares what exists and writes the rest", "[bundle]") {
  Sandbox sb;
  const std::string base = sb.dir() + "/b.tar", data = pattern(2500);
  {
    PartWriter w(base, 1000, false);
    REQUIRE(write_in_pieces(w, data, 400));
  }
  const std::string p1 = slurp(part_path(base, 1)), p2 = slurp(part_path(base, 2));
  std::filesystem::remove(part_path(base, 2));
  std::filesystem::resize_file(part_path(base, 1), 100);
  PartWriter w(base, 1000, true);
  REQUIRE(write_in_pieces(w, data, 400));
  CHECK(w.bytes_verified() == 1100);
  CHECK(slurp(part_path(base, 1)) == p1);
  CHECK(slurp(part_path(base, 2)) == p2);

  SECTION("a differing byte is refused, naming the part") {
    std::string other = data;
    other[1500] ^= 1;
    PartWriter w2(base, 1000, true);
    auto st = write_in_pieces(w2, other, 400);
    REQUIRE_FALSE(st);
    CHECK(st.error().detail.find(part_path(base, 1)) != std::string::npos);
  }
  SECTION("an existing stream longer than this one is refused") {
    PartWriter w2(base, 1000, true);
    auto st = write_in_pieces(w2, data.substr(0, 2400), 400);
    REQUIRE_FALSE(st);
  }
}

TEST_CASE("parts: a new export removes stale parts of an older, longer one", "[bundle]") {
  Sandbox sb;
  const std::string base = sb.dir() + "/b.tar";
  {
    PartWriter w(base, 1000, false);
    REQUIRE(write_in_pieces(w, pattern(3500), 500));
  }
  REQUIRE(std::filesystem::exists(part_path(base, 3)));
  PartWriter w(base, 1000, false);
  REQUIRE(write_in_pieces(w, pattern(1500), 500));
  CHECK_FALSE(std::filesystem::exists(part_path(base, 2)));
  CHECK_FALSE(std::filesystem::exists(part_path(base, 3)));
  auto files = bundle_files(base);
  REQUIRE(files);
  CHECK(files->size() == 2);
}
