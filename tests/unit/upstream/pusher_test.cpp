// upstream::Pusher (issue #15) against a REAL parent: Debian's CNCF
// distribution (docker-registry) started by the test on 127.0.0.1 with a
// temp config (docker_registry.hpp). A 20 MiB blob streamed from a file, HEAD,
// cross-repository mount, resume from a saved location (after a clean chunk
// and after a PATCH cut mid-way), image manifest and index PUT, deletes, and
// the permanent / retryable classification (bad digest, invalid manifest,
// missing blob, a stopped parent, an offline breaker). What the parent holds
// is checked through its own API and its storage.
//
// The loop is stepped on the test thread (LoopFixture::run_until).
#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <algorithm>
#include <fstream>
#include <memory>
#include <mutex>
#include <vector>
#include <optional>
#include <string>

#include "base/digest.hpp"
#include "http/client.hpp"
#include "support/http_test_server.hpp"
#include "support/loop_fixture.hpp"
#include "docker_registry.hpp"
#include "upstream/pusher.hpp"
#include "upstream/registry_client.hpp"

using namespace outpost;
using namespace outpost::test;
using upstream::PushResult;
using std::chrono::milliseconds;

namespace {

constexpr const char* kOciManifest = "application/vnd.oci.image.manifest.v1+json";
constexpr const char* kOciIndex = "application/vnd.oci.image.index.v1+json";
constexpr const char* kOciConfig = "application/vnd.oci.image.config.v1+json";
constexpr const char* kOciLayer = "application/vnd.oci.image.layer.v1.tar";

std::string pattern(size_t n, uint32_t seed) {
  std::string s(n, '\0');
  uint32_t x = seed | 1;
  for (auto& c : s) {
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    c = static_cast<char>(x);
  }
  return s;
}

/// `bytes` in an unlinked temp file, read through fd().
class BlobFile {
 public:
  explicit BlobFile(const std::string& bytes) : size_(bytes.size()), digest_(Digest::sha256_of(bytes).str()) {
    char path[] = "/tmp/outpost-pusher-blob-XXXXXX";
    fd_ = ::mkstemp(path);
    if (fd_ < 0) FAIL("mkstemp failed");
    ::unlink(path);
    for (size_t off = 0; off < bytes.size();) {
      ssize_t n = ::write(fd_, bytes.data() + off, bytes.size() - off);
      if (n <= 0) FAIL("write failed");
      off += static_cast<size_t>(n);
    }
  }
  ~BlobFile() { ::close(fd_); }
  int fd() const { return fd_; }
  uint64_t size() const { return size_; }
  const std::string& digest() const { return digest_; }

 private:
  int fd_ = -1;
  uint64_t size_;
  std::string digest_;
};

/// A loop, an HTTP client, a RegistryClient on the parent and a Pusher.
class PushEnv {
 public:
  explicit PushEnv(const std::string& url, bool offline = false) {
    upstream::UpstreamOptions o;
    o.name = "parent";
    o.url = *http::Url::parse(url);
    o.offline = offline;
    o.timeouts.connect_ms = 2'000;
    o.timeouts.first_byte_ms = 10'000;
    o.timeouts.progress_ms = 10'000;
    http_ = std::make_unique<http::HttpClient>(fx.loop(), nullptr);
    reg_ = std::make_unique<upstream::RegistryClient>(fx.loop(), *http_, std::move(o));
    pusher = std::make_unique<upstream::Pusher>(*reg_);
  }
  ~PushEnv() { end(); }

  /// Runs an op to completion: `start(done)` returns the op handle.
  template <typename T, typename Start>
  PushResult<T> run(Start start, milliseconds timeout = milliseconds(60'000)) {
    std::optional<PushResult<T>> out;
    int calls = 0;
    auto op = start([&](PushResult<T> r) {
      ++calls;
      out.emplace(std::move(r));
    });
    if (!fx.run_until([&] { return out.has_value(); }, timeout)) FAIL("the push operation did not finish in time");
    CHECK(calls == 1);
    return std::move(*out);
  }
  /// GET through the same HTTP client: status and body (bounded by the test's sizes).
  std::pair<int, std::string> get(const std::string& url, const std::string& accept = {}) {
    http::ClientRequest req;
    req.url = *http::Url::parse(url);
    if (!accept.empty()) req.headers.set("Accept", accept);
    int status = 0;
    std::string body;
    bool done = false;
    http_->send(
        std::move(req),
        [&](const http::ClientResponse& r) {
          status = r.status;
          return true;
        },
        [&](std::string_view c) { body.append(c); }, [&](Status) { done = true; });
    if (!fx.run_until([&] { return done; }, milliseconds(30'000))) FAIL("GET " << url << " did not finish");
    return {status, body};
  }
  void end() {
    if (ended_) return;
    ended_ = true;
    pusher.reset();
    reg_.reset();
    http_.reset();
    CHECK(fx.finish() == 0);
  }

  LoopFixture fx;
  std::unique_ptr<upstream::Pusher> pusher;

 private:
  std::unique_ptr<http::HttpClient> http_;
  std::unique_ptr<upstream::RegistryClient> reg_;
  bool ended_ = false;
};

#define NEED_REGISTRY()                                                             \
  if (!DockerRegistry::available()) {                                               \
    WARN("skipped: " << DockerRegistry::kBin << " missing (run .ci/install-deps)"); \
    return;                                                                         \
  }

PushResult<upstream::UploadResult> upload(PushEnv& env, const std::string& repo, const BlobFile& f,
                                          upstream::UploadOptions o = {}) {
  return env.run<upstream::UploadResult>([&](auto done) {
    return env.pusher->upload_blob(repo, f.digest(), f.fd(), f.size(), std::move(o), std::move(done));
  });
}

PushResult<upstream::BlobPresence> head(PushEnv& env, const std::string& repo, const std::string& digest) {
  return env.run<upstream::BlobPresence>(
      [&](auto done) { return env.pusher->blob_exists(repo, digest, std::move(done)); });
}

PushResult<std::string> put_manifest(PushEnv& env, const std::string& repo, const std::string& ref,
                                     const std::string& type, const std::string& bytes) {
  return env.run<std::string>(
      [&](auto done) { return env.pusher->put_manifest(repo, ref, type, bytes, std::move(done)); });
}

std::string image_manifest(const std::string& config_digest, size_t config_size, const std::string& layer_digest,
                           size_t layer_size) {
  return std::string(R"({"schemaVersion":2,"mediaType":")") + kOciManifest + R"(","config":{"mediaType":")" +
         kOciConfig + R"(","digest":")" + config_digest + R"(","size":)" + std::to_string(config_size) +
         R"(},"layers":[{"mediaType":")" + kOciLayer + R"(","digest":")" + layer_digest + R"(","size":)" +
         std::to_string(layer_size) + "}]}";
}

}  // namespace

TEST_CASE("pusher: a 20 MiB blob streams from a file to distribution; HEAD finds it, bytes identical",
          "[upstream][pusher][registry]") {
  NEED_REGISTRY();
  DockerRegistry reg;
  REQUIRE(reg.start());
  PushEnv env(reg.url());
  const std::string data = pattern(20 * 1024 * 1024 + 17, 7);
  BlobFile f(data);

  auto before = head(env, "site/app", f.digest());
  REQUIRE(before.ok());
  CHECK_FALSE(before->exists);

  std::vector<std::string> locations;
  upstream::UploadOptions o;
  o.on_location = [&](const std::string& l) { locations.push_back(l); };
  auto r = upload(env, "site/app", f, o);
  INFO((r.ok() ? std::string() : r.error().message));
  REQUIRE(r.ok());
  CHECK(r->resumed_from == 0);
  CHECK(r->restarts == 0);
  REQUIRE_FALSE(locations.empty());
  CHECK(locations.front().rfind(reg.url() + "/v2/site/app/blobs/uploads/", 0) == 0);

  auto after = head(env, "site/app", f.digest());
  REQUIRE(after.ok());
  CHECK(after->exists);
  CHECK(after->size == std::optional<uint64_t>(data.size()));
  CHECK(reg.blob_file_size(f.digest()) == static_cast<long long>(data.size()));
  auto [status, body] = env.get(reg.url() + "/v2/site/app/blobs/" + f.digest());
  CHECK(status == 200);
  CHECK(body.size() == data.size());
  CHECK(Digest::sha256_of(body).str() == f.digest());
  env.end();
}

TEST_CASE("pusher: chunked PATCHes, and an empty blob", "[upstream][pusher][registry]") {
  NEED_REGISTRY();
  DockerRegistry reg;
  REQUIRE(reg.start());
  PushEnv env(reg.url());
  const std::string data = pattern(3 * 1024 * 1024 + 5, 11);
  BlobFile f(data);
  int locations = 0;
  upstream::UploadOptions o;
  o.chunk_size = 1024 * 1024;
  o.on_location = [&](const std::string&) { ++locations; };
  auto r = upload(env, "site/chunks", f, o);
  INFO((r.ok() ? std::string() : r.error().message));
  REQUIRE(r.ok());
  CHECK(locations >= 5);  // the POST's, then one per PATCH (4 chunks)
  CHECK(reg.blob_file_size(f.digest()) == static_cast<long long>(data.size()));

  BlobFile empty("");
  auto e = upload(env, "site/chunks", empty);
  INFO((e.ok() ? std::string() : e.error().message));
  REQUIRE(e.ok());
  auto h = head(env, "site/chunks", empty.digest());
  REQUIRE(h.ok());
  CHECK(h->exists);
  env.end();
}

TEST_CASE("pusher: cross-repository mount (201), and a mount the parent cannot do (202 -> upload there)",
          "[upstream][pusher][registry]") {
  NEED_REGISTRY();
  DockerRegistry reg;
  REQUIRE(reg.start());
  PushEnv env(reg.url());
  BlobFile f(pattern(300 * 1024, 3));
  REQUIRE(upload(env, "base/alpine", f).ok());

  auto m = env.run<upstream::MountResult>(
      [&](auto done) { return env.pusher->mount_blob("site/app", f.digest(), "base/alpine", std::move(done)); });
  INFO((m.ok() ? std::string() : m.error().message));
  REQUIRE(m.ok());
  CHECK(m->mounted);
  auto h = head(env, "site/app", f.digest());
  REQUIRE(h.ok());
  CHECK(h->exists);

  // Not in the source repository: the parent opens an upload session instead.
  BlobFile g(pattern(100 * 1024, 4));
  auto m2 = env.run<upstream::MountResult>(
      [&](auto done) { return env.pusher->mount_blob("site/app", g.digest(), "base/alpine", std::move(done)); });
  REQUIRE(m2.ok());
  CHECK_FALSE(m2->mounted);
  REQUIRE_FALSE(m2->upload_location.empty());
  upstream::UploadOptions o;
  o.resume_location = m2->upload_location;
  auto r = upload(env, "site/app", g, o);
  INFO((r.ok() ? std::string() : r.error().message));
  REQUIRE(r.ok());
  CHECK(r->resumed_from == 0);
  CHECK(r->restarts == 0);
  CHECK(reg.blob_file_size(g.digest()) == static_cast<long long>(g.size()));
  env.end();
}

TEST_CASE("pusher: an upload stopped after a chunk resumes from the saved location where it broke off",
          "[upstream][pusher][registry][resume]") {
  NEED_REGISTRY();
  DockerRegistry reg;
  REQUIRE(reg.start());
  PushEnv env(reg.url());
  const std::string data = pattern(6 * 1024 * 1024 + 99, 21);
  BlobFile f(data);

  // First attempt: stopped (as by a crash) right after the parent confirmed
  // the first 2 MiB chunk; the location saved then is all that survives.
  std::string saved;
  upstream::PushOpPtr op;
  bool fired = false;
  upstream::UploadOptions o;
  o.chunk_size = 2 * 1024 * 1024;
  o.on_location = [&](const std::string& l) {
    saved = l;
    if (op && op->bytes_sent() >= 2 * 1024 * 1024) op->cancel();
  };
  op = env.pusher->upload_blob("site/resume", f.digest(), f.fd(), f.size(), o,
                               [&](PushResult<upstream::UploadResult>) { fired = true; });
  REQUIRE(env.fx.run_until([&] { return op->cancelled(); }, milliseconds(30'000)));
  CHECK_FALSE(fired);
  REQUIRE_FALSE(saved.empty());

  upstream::UploadOptions again;
  again.resume_location = saved;
  auto r = upload(env, "site/resume", f, again);
  INFO((r.ok() ? std::string() : r.error().message));
  REQUIRE(r.ok());
  CHECK(r->resumed_from == 2 * 1024 * 1024);
  CHECK(r->restarts == 0);
  auto [status, body] = env.get(reg.url() + "/v2/site/resume/blobs/" + f.digest());
  CHECK(status == 200);
  CHECK(Digest::sha256_of(body).str() == f.digest());
  env.end();
}

TEST_CASE("pusher: a PATCH cut mid-way, then a resume with the saved location ends with the right blob",
          "[upstream][pusher][registry][resume]") {
  NEED_REGISTRY();
  DockerRegistry reg;
  REQUIRE(reg.start());
  PushEnv env(reg.url());
  const std::string data = pattern(20 * 1024 * 1024, 33);
  BlobFile f(data);

  std::string saved;
  upstream::UploadOptions o;
  o.on_location = [&](const std::string& l) { saved = l; };
  bool fired = false;
  auto op = env.pusher->upload_blob("site/cut", f.digest(), f.fd(), f.size(), o,
                                    [&](PushResult<upstream::UploadResult>) { fired = true; });
  REQUIRE(env.fx.run_until([&] { return op->bytes_sent() > 6 * 1024 * 1024; }, milliseconds(30'000)));
  op->cancel();
  CHECK_FALSE(fired);
  REQUIRE_FALSE(saved.empty());

  upstream::UploadOptions again;
  again.resume_location = saved;
  auto r = upload(env, "site/cut", f, again);
  INFO((r.ok() ? std::string() : r.error().message));
  REQUIRE(r.ok());
  // distribution 2.8 cannot continue a session whose PATCH was cut (its
  // state token no longer matches the bytes it kept): the pusher either
  // resumed or opened a new session; either way the parent holds the blob.
  INFO("resumed_from=" << r->resumed_from << " restarts=" << r->restarts);
  CHECK(reg.blob_file_size(f.digest()) == static_cast<long long>(data.size()));
  auto [status, body] = env.get(reg.url() + "/v2/site/cut/blobs/" + f.digest());
  CHECK(status == 200);
  CHECK(Digest::sha256_of(body).str() == f.digest());
  env.end();
}

TEST_CASE("pusher: an unknown saved location starts a new session", "[upstream][pusher][registry][resume]") {
  NEED_REGISTRY();
  DockerRegistry reg;
  REQUIRE(reg.start());
  PushEnv env(reg.url());
  BlobFile f(pattern(64 * 1024, 5));
  upstream::UploadOptions o;
  o.resume_location = reg.url() + "/v2/site/x/blobs/uploads/9b0b5b0e-0000-4000-8000-000000000000";
  auto r = upload(env, "site/x", f, o);
  INFO((r.ok() ? std::string() : r.error().message));
  REQUIRE(r.ok());
  CHECK(r->restarts == 1);
  CHECK(reg.blob_file_size(f.digest()) == static_cast<long long>(f.size()));
  env.end();
}

TEST_CASE("pusher: image manifest by tag and an index by digest; the parent serves the same bytes",
          "[upstream][pusher][registry]") {
  NEED_REGISTRY();
  DockerRegistry reg;
  REQUIRE(reg.start());
  PushEnv env(reg.url());
  const std::string config = R"({"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}})";
  BlobFile cf(config);
  BlobFile lf(pattern(512 * 1024, 9));
  REQUIRE(upload(env, "site/img", cf).ok());
  REQUIRE(upload(env, "site/img", lf).ok());

  // Missing blob first: retryable (it may arrive later).
  BlobFile absent(pattern(1000, 77));
  auto early = put_manifest(env, "site/img", "v0", kOciManifest,
                            image_manifest(cf.digest(), cf.size(), absent.digest(), absent.size()));
  REQUIRE_FALSE(early.ok());
  CHECK(early.error().retryable());
  CHECK(early.error().status == 400);
  CHECK(early.error().oci_code == "MANIFEST_BLOB_UNKNOWN");
  CHECK(early.error().message.find("MANIFEST_BLOB_UNKNOWN") != std::string::npos);

  const std::string man = image_manifest(cf.digest(), cf.size(), lf.digest(), lf.size());
  const std::string man_digest = Digest::sha256_of(man).str();
  auto m = put_manifest(env, "site/img", "v1", kOciManifest, man);
  INFO((m.ok() ? std::string() : m.error().message));
  REQUIRE(m.ok());
  CHECK(m.value() == man_digest);

  const std::string index = std::string(R"({"schemaVersion":2,"mediaType":")") + kOciIndex +
                            R"(","manifests":[{"mediaType":")" + kOciManifest + R"(","digest":")" + man_digest +
                            R"(","size":)" + std::to_string(man.size()) +
                            R"(,"platform":{"architecture":"amd64","os":"linux"}}]})";
  const std::string index_digest = Digest::sha256_of(index).str();
  auto i = put_manifest(env, "site/img", index_digest, kOciIndex, index);
  INFO((i.ok() ? std::string() : i.error().message));
  REQUIRE(i.ok());
  CHECK(i.value() == index_digest);
  // The tag last, as the replay order wants it.
  auto t = put_manifest(env, "site/img", "multi", kOciIndex, index);
  REQUIRE(t.ok());

  auto [s1, b1] = env.get(reg.url() + "/v2/site/img/manifests/v1", kOciManifest);
  CHECK(s1 == 200);
  CHECK(b1 == man);
  auto [s2, b2] = env.get(reg.url() + "/v2/site/img/manifests/multi", kOciIndex);
  CHECK(s2 == 200);
  CHECK(b2 == index);
  env.end();
}

TEST_CASE("pusher: deletes: manifest by digest, again (already gone), a tag (unsupported), a blob",
          "[upstream][pusher][registry]") {
  NEED_REGISTRY();
  DockerRegistry reg;
  REQUIRE(reg.start());
  PushEnv env(reg.url());
  const std::string config = R"({"architecture":"arm64","os":"linux"})";
  BlobFile cf(config);
  BlobFile lf(pattern(4096, 12));
  REQUIRE(upload(env, "site/del", cf).ok());
  REQUIRE(upload(env, "site/del", lf).ok());
  const std::string man = image_manifest(cf.digest(), cf.size(), lf.digest(), lf.size());
  REQUIRE(put_manifest(env, "site/del", "t1", kOciManifest, man).ok());
  const std::string d = Digest::sha256_of(man).str();

  auto del = [&](auto fn) { return env.run<upstream::DeleteOutcome>(fn); };
  auto tag = del([&](auto done) { return env.pusher->delete_tag("site/del", "t1", std::move(done)); });
  INFO((tag.ok() ? std::string() : tag.error().message));
  REQUIRE(tag.ok());
  // distribution 2.8 refuses DELETE /manifests/<tag> (UNSUPPORTED); newer ones delete the tag.
  CHECK((tag.value() == upstream::DeleteOutcome::Unsupported || tag.value() == upstream::DeleteOutcome::Deleted));

  auto m1 = del([&](auto done) { return env.pusher->delete_manifest("site/del", d, std::move(done)); });
  REQUIRE(m1.ok());
  CHECK(m1.value() == upstream::DeleteOutcome::Deleted);
  auto m2 = del([&](auto done) { return env.pusher->delete_manifest("site/del", d, std::move(done)); });
  REQUIRE(m2.ok());
  CHECK(m2.value() == upstream::DeleteOutcome::AlreadyGone);
  auto b = del([&](auto done) { return env.pusher->delete_blob("site/del", lf.digest(), std::move(done)); });
  REQUIRE(b.ok());
  CHECK(b.value() == upstream::DeleteOutcome::Deleted);
  auto h = head(env, "site/del", lf.digest());
  REQUIRE(h.ok());
  CHECK_FALSE(h->exists);
  env.end();
}

TEST_CASE("pusher: permanent errors: bytes that do not match the digest, an invalid manifest, a bad name",
          "[upstream][pusher][registry][classify]") {
  NEED_REGISTRY();
  DockerRegistry reg;
  REQUIRE(reg.start());
  PushEnv env(reg.url());
  BlobFile f(pattern(200 * 1024, 13));
  const std::string wrong = Digest::sha256_of("something else").str();
  auto r = env.run<upstream::UploadResult>([&](auto done) {
    return env.pusher->upload_blob("site/bad", wrong, f.fd(), f.size(), {}, std::move(done));
  });
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().permanent());
  CHECK(r.error().status == 400);
  CHECK(r.error().oci_code == "DIGEST_INVALID");
  CHECK(r.error().message.find("DIGEST_INVALID") != std::string::npos);
  CHECK(reg.blob_file_size(wrong) == -1);

  auto m = put_manifest(env, "site/bad", "v1", kOciManifest, R"({"schemaVersion":2,"config":7})");
  REQUIRE_FALSE(m.ok());
  CHECK(m.error().permanent());
  CHECK(m.error().status == 400);
  CHECK(m.error().oci_code == "MANIFEST_INVALID");

  auto n = put_manifest(env, "site/bad", "not a tag!", kOciManifest, "{}");
  REQUIRE_FALSE(n.ok());
  CHECK(n.error().permanent());
  env.end();
}

TEST_CASE("pusher: retryable errors: a stopped parent, and the breaker open (fails at once)",
          "[upstream][pusher][registry][classify]") {
  NEED_REGISTRY();
  DockerRegistry reg;
  REQUIRE(reg.start());
  BlobFile f(pattern(1024 * 1024, 15));
  {
    PushEnv env(reg.url());
    reg.stop();
    auto r = upload(env, "site/down", f);
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().retryable());
    CHECK(r.error().status == 0);
    CHECK_FALSE(r.error().message.empty());
    // The parent comes back: once the breaker's probe has seen it, the
    // same call succeeds.
    REQUIRE(reg.start());
    REQUIRE(env.fx.run_until([&] { return !env.pusher->registry().offline(); }, milliseconds(15'000)));
    auto again = upload(env, "site/down", f);
    INFO((again.ok() ? std::string() : again.error().message));
    CHECK(again.ok());
    env.end();
  }
  {
    PushEnv env(reg.url(), /*offline=*/true);
    int calls = 0;
    bool retryable = false;
    auto op = env.pusher->blob_exists("site/down", f.digest(), [&](PushResult<upstream::BlobPresence> r) {
      ++calls;
      retryable = !r.ok() && r.error().retryable();
    });
    CHECK(calls == 1);  // before blob_exists returned
    CHECK(retryable);
    env.end();
  }
}

TEST_CASE("pusher: classify_answer maps statuses and OCI codes", "[upstream][pusher][classify]") {
  using upstream::classify_answer;
  http::Headers none;
  auto body = [](const char* code) {
    return std::string(R"({"errors":[{"code":")") + code + R"(","message":"m","detail":{"x":1}}]})";
  };
  CHECK(classify_answer("op", 403, none, body("DENIED")).permanent());
  CHECK(classify_answer("op", 405, none, body("UNSUPPORTED")).permanent());
  CHECK(classify_answer("op", 400, none, body("NAME_INVALID")).permanent());
  CHECK(classify_answer("op", 400, none, body("SIZE_INVALID")).permanent());
  CHECK(classify_answer("op", 401, none, body("UNAUTHORIZED")).permanent());
  CHECK(classify_answer("op", 400, none, "not json").permanent());
  CHECK(classify_answer("op", 400, none, body("MANIFEST_BLOB_UNKNOWN")).retryable());
  CHECK(classify_answer("op", 500, none, "").retryable());
  CHECK(classify_answer("op", 503, none, body("UNAVAILABLE")).retryable());
  http::Headers ra;
  ra.set("Retry-After", "7");
  auto e = classify_answer("op", 429, ra, body("TOOMANYREQUESTS"));
  CHECK(e.retryable());
  CHECK(e.retry_after_ms == 7000);
  CHECK(e.oci_code == "TOOMANYREQUESTS");
  CHECK(e.message == R"(op: parent answered 429 TOOMANYREQUESTS: m ({"x":1}))");
}

TEST_CASE("pusher: relative Locations, the requests' framing, and a 416 that resyncs the offset",
          "[upstream][pusher][classify]") {
  // A registry that answers with relative Locations (allowed by the spec;
  // distribution sends absolute ones) and refuses the first PATCH with 416
  // because it already holds 1000 bytes.
  const std::string data = pattern(5000, 41);
  BlobFile f(data);
  std::string held;
  std::mutex mu;
  HttpTestServer srv([&](ScriptConn& c, const SeenRequest& r) {
    std::lock_guard<std::mutex> g(mu);
    if (r.method == "POST") {
      held = data.substr(0, 1000);
      return (void)c.send(reply(202, "", {{"Location", "/v2/site/rel/blobs/uploads/u1?_state=a"}}));
    }
    if (r.method == "PATCH") {
      auto range = r.header("Content-Range").value_or("");
      if (range.rfind(std::to_string(held.size()) + "-", 0) != 0) return (void)c.send(reply(416));
      held += r.body;
      return (void)c.send(reply(202, "", {{"Location", "u1?_state=b"},
                                          {"Range", "0-" + std::to_string(held.size() - 1)}}));
    }
    if (r.method == "GET")
      return (void)c.send(reply(204, "", {{"Location", "/v2/site/rel/blobs/uploads/u1?_state=c"},
                                          {"Range", "0-" + std::to_string(held.size() - 1)}}));
    if (r.method == "PUT") {
      bool good = Digest::sha256_of(held).str() == f.digest();
      return (void)c.send(good ? reply(201, "", {{"Docker-Content-Digest", f.digest()}})
                               : reply(400, R"({"errors":[{"code":"DIGEST_INVALID","message":"x"}]})"));
    }
    c.send(reply(404));
  });
  PushEnv env(srv.url());
  std::vector<std::string> locations;
  upstream::UploadOptions o;
  o.on_location = [&](const std::string& l) { locations.push_back(l); };
  auto r = upload(env, "site/rel", f, o);
  INFO((r.ok() ? std::string() : r.error().message));
  REQUIRE(r.ok());
  auto seen = srv.requests();
  REQUIRE(seen.size() == 5);  // POST, PATCH (416), GET, PATCH, PUT
  CHECK(seen[0].target == "/v2/site/rel/blobs/uploads/");
  CHECK(seen[1].method == "PATCH");
  CHECK(seen[1].header("Content-Range") == std::optional<std::string>("0-4999"));
  CHECK(seen[2].method == "GET");
  CHECK(seen[2].target == "/v2/site/rel/blobs/uploads/u1?_state=a");
  CHECK(seen[3].target == "/v2/site/rel/blobs/uploads/u1?_state=c");
  CHECK(seen[3].header("Content-Range") == std::optional<std::string>("1000-4999"));
  CHECK(seen[3].header("Content-Type") == std::optional<std::string>("application/octet-stream"));
  CHECK(seen[3].body == data.substr(1000));
  CHECK(seen[4].method == "PUT");
  CHECK(seen[4].target == "/v2/site/rel/blobs/uploads/u1?_state=b&digest=" + f.digest());
  CHECK(seen[4].header("Content-Length") == std::optional<std::string>("0"));
  REQUIRE(locations.size() == 3);
  CHECK(locations[0] == srv.url("/v2/site/rel/blobs/uploads/u1?_state=a"));
  CHECK(locations[2] == srv.url("/v2/site/rel/blobs/uploads/u1?_state=b"));
  env.end();
}

namespace {
/// Resident set size of this process, in bytes (/proc/self/statm).
uint64_t rss_bytes() {
  std::ifstream f("/proc/self/statm");
  uint64_t size = 0, resident = 0;
  f >> size >> resident;
  return resident * static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
}
}  // namespace

TEST_CASE("pusher: memory stays flat while a 96 MiB blob streams to the parent", "[upstream][pusher][registry]") {
  NEED_REGISTRY();
  DockerRegistry reg;
  REQUIRE(reg.start());
  PushEnv env(reg.url());
  // The blob is written to the file piece by piece: the test holds no copy either.
  char path[] = "/tmp/outpost-pusher-big-XXXXXX";
  int fd = ::mkstemp(path);
  REQUIRE(fd >= 0);
  ::unlink(path);
  const uint64_t size = 96ull * 1024 * 1024;
  Sha256 h;
  {
    const std::string piece = pattern(1024 * 1024, 99);
    for (uint64_t off = 0; off < size; off += piece.size()) {
      std::string p = piece;
      p[0] = static_cast<char>(off >> 20);  // no two pieces alike
      h.update(p);
      REQUIRE(::write(fd, p.data(), p.size()) == static_cast<ssize_t>(p.size()));
    }
  }
  const std::string digest = h.finish().str();
  const uint64_t base = rss_bytes();
  uint64_t peak = base;
  std::optional<PushResult<upstream::UploadResult>> out;
  auto op = env.pusher->upload_blob("site/big", digest, fd, size, {},
                                    [&](PushResult<upstream::UploadResult> r) { out.emplace(std::move(r)); });
  REQUIRE(env.fx.run_until(
      [&] {
        peak = std::max(peak, rss_bytes());
        return out.has_value();
      },
      milliseconds(120'000)));
  REQUIRE(out->ok());
  CHECK(reg.blob_file_size(digest) == static_cast<long long>(size));
  INFO("rss grew by " << (peak - base) / 1024 << " KiB");
  CHECK(peak - base < 16ull * 1024 * 1024);
  ::close(fd);
  env.end();
}
