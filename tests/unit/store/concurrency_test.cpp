// The store is called from the loop thread and from pool threads at once:
// uploads, one-shot puts, unlinks and GC (grace 0) racing must never leave a
// linked blob without its bytes or with wrong bytes.
#include <catch2/catch.hpp>

#include <atomic>
#include <mutex>
#include <thread>

#include "store_fixture.hpp"

using namespace outpost;
using namespace outpost::store;

TEST_CASE("concurrency: uploads, puts, unlinks and GC race safely", "[store]") {
  test::Sandbox sb;
  auto s = Store::open(sb.root(), [] {
    StoreOptions o;
    o.max_open_uploads = 3;  // force evictions and re-hashing too
    return o;
  }());
  REQUIRE(s.ok());
  auto& st = **s;
  constexpr int kThreads = 4, kUploads = 12;
  std::atomic<bool> done{false};
  std::atomic<int> failures{0};
  std::mutex log_mu;
  std::vector<std::string> errors;
  auto fail = [&](const char* what, const Error& e) {
    ++failures;
    std::lock_guard lk(log_mu);
    errors.push_back(std::string(what) + ": " + std::string(errc_name(e.code)) + " " + e.message());
  };

  std::vector<std::thread> workers;
  for (int t = 0; t < kThreads; ++t) {
    workers.emplace_back([&, t] {
      const std::string repo = "repo" + std::to_string(t);
      for (int i = 0; i < kUploads; ++i) {
        const std::string data = test::pattern_bytes(20000 + 997 * i, 100 * t + i);
        auto id = st.start_upload(repo);
        if (!id) {
          fail("start", id.error());
          continue;
        }
        uint64_t off = 0;
        for (size_t pos = 0; pos < data.size(); pos += 7000) {
          auto r = st.append_upload(repo, *id, off, std::string_view(data).substr(pos, 7000));
          if (!r) {
            fail("append", r.error());
            break;
          }
          off = *r;
          if (auto f = st.flush_upload(repo, *id); !f) fail("flush", f.error());
        }
        if (auto c = st.commit_upload(repo, *id, test::digest_of(data)); !c) fail("commit", c.error());
        // Shared content, linked and unlinked again and again while GC runs.
        const std::string shared = "shared content";
        if (auto p = st.put_blob(repo, test::digest_of(shared), shared); !p) fail("put", p.error());
        if (i + 1 < kUploads) {
          if (auto d = st.delete_blob(repo, test::digest_of(shared)); !d) fail("unlink", d.error());
        }
      }
    });
  }
  std::thread gc([&] {
    GcOptions o;
    o.grace_ms = 0;  // as hostile as it gets: anything unreferenced may go
    while (!done.load()) {
      if (auto g = st.gc(o); !g) fail("gc", g.error());
    }
  });
  for (auto& w : workers) w.join();
  done = true;
  gc.join();
  for (const auto& e : errors) UNSCOPED_INFO(e);
  CHECK(failures.load() == 0);

  GcOptions o;
  o.grace_ms = 0;
  REQUIRE(st.gc(o).ok());
  for (int t = 0; t < kThreads; ++t) {
    const std::string repo = "repo" + std::to_string(t);
    for (int i = 0; i < kUploads; ++i) {
      const std::string data = test::pattern_bytes(20000 + 997 * i, 100 * t + i);
      auto blob = st.open_blob(repo, test::digest_of(data));
      REQUIRE(blob.ok());
      CHECK(test::same_bytes(test::read_fd(blob->fd.get()), data));
    }
    auto shared = st.open_blob(repo, test::digest_of("shared content"));
    REQUIRE(shared.ok());
    CHECK(test::same_bytes(test::read_fd(shared->fd.get()), "shared content"));
  }
  CHECK(st.uploads().open_sessions() == 0);
  CHECK(test::files_under(sb.root() + "/uploads").empty());
}
