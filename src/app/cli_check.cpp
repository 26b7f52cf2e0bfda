#include "app/cli_check.hpp"

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <thread>

#include "app/cli_storage.hpp"
#include "app/ops_storage.hpp"
#include "base/size.hpp"

namespace outpost::app {

namespace {

using nlohmann::json;

/// One progress line; on a terminal it overwrites itself.
class ProgressLine {
 public:
  ProgressLine() : tty_(isatty(STDERR_FILENO) != 0) {}
  void show(uint64_t done, uint64_t total, uint64_t blobs_done, uint64_t blobs_total) {
    if (!tty_) return;
    const int pct = total ? static_cast<int>(done * 100 / total) : 100;
    fprintf(stderr, "\r\033[Kchecking: %d%% %s / %s, %llu / %llu blobs", pct, human_size(done).c_str(),
            human_size(total).c_str(), static_cast<unsigned long long>(blobs_done),
            static_cast<unsigned long long>(blobs_total));
    fflush(stderr);
    shown_ = true;
  }
  void end() {
    if (shown_) fprintf(stderr, "\r\033[K");
    shown_ = false;
  }

 private:
  bool tty_;
  bool shown_ = false;
};

int print_report(const json& j, bool as_json, const char* path) {
  const bool ok = j.value("ok", false);
  if (as_json) {
    printf("%s\n", j.dump(2).c_str());
    return ok ? 0 : 1;
  }
  printf("check (%s): %s\n", path, ok ? "ok" : "PROBLEMS FOUND");
  printf("  blobs verified: %llu (%s)\n", j.value("blobs_checked", 0ull),
         human_size(j.value("bytes_checked", 0ull)).c_str());
  printf("  corrupt: %llu, missing files: %llu, files without rows: %llu, unreferenced blobs: %llu\n",
         j.value("corrupt", 0ull), j.value("missing", 0ull), j.value("rowless", 0ull), j.value("unreferenced", 0ull));
  if (j.value("quarantined", 0ull)) printf("  quarantined: %llu (moved to <root>/quarantine/)\n", j.value("quarantined", 0ull));
  if (j.contains("problems"))
    for (const auto& p : j["problems"])
      printf("  %s %s%s%s: %s\n", p.value("kind", std::string()).c_str(), p.value("digest", std::string()).c_str(),
             p.value("origin", std::string()).empty() ? "" : " (",
             p.value("origin", std::string()).empty() ? "" : (p.value("origin", std::string()) + ")").c_str(),
             p.value("action", std::string()).c_str());
  if (j.contains("dangling_tags"))
    for (const auto& t : j["dangling_tags"])
      printf("  dangling tag %s: names a bad manifest\n", t.get<std::string>().c_str());
  if (j.value("cancelled", false)) printf("  cancelled before the end\n");
  return ok ? 0 : 1;
}

int run_online(const Config& cfg, bool repair, std::optional<uint64_t> rate, bool as_json) {
  std::string q = "/outpost/check?repair=" + std::string(repair ? "1" : "0");
  if (rate) q += "&rate=" + std::to_string(*rate);
  auto ans = admin_call(cfg, http::Method::Post, q, 30'000);
  if (!ans.st.ok()) {
    fprintf(stderr, "outpost: check: the store is in use and the server does not answer: %s\n",
            ans.st.error().message().c_str());
    return 1;
  }
  if (ans.status != 202 && ans.status != 200) {
    fprintf(stderr, "outpost: check: the server answered %d: %s\n", ans.status, admin_error_text(ans).c_str());
    return 1;
  }
  auto j = json::parse(ans.body, nullptr, false);
  if (ans.status == 200) fprintf(stderr, "outpost: check: a check is already running; following it\n");
  ProgressLine line;
  // Bounded by the check itself: it ends (or the server goes away).
  for (;;) {
    if (j.is_object() && !j.value("running", false)) break;
    if (j.is_object() && j.contains("progress")) {
      const auto& p = j["progress"];
      line.show(p.value("bytes_done", 0ull), p.value("bytes_total", 0ull), p.value("blobs_done", 0ull),
                p.value("blobs_total", 0ull));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    ans = admin_call(cfg, http::Method::Get, "/outpost/check", 30'000);
    if (!ans.st.ok() || ans.status != 200) {
      line.end();
      fprintf(stderr, "outpost: check: lost the server while following the check: %s\n",
              ans.st.ok() ? admin_error_text(ans).c_str() : ans.st.error().message().c_str());
      return 1;
    }
    j = json::parse(ans.body, nullptr, false);
  }
  line.end();
  if (j.contains("error") && j["error"].is_string()) {
    fprintf(stderr, "outpost: check failed: %s\n", j["error"].get<std::string>().c_str());
    return 1;
  }
  if (!j.contains("last")) {
    fprintf(stderr, "outpost: check: the server reports no result\n");
    return 1;
  }
  return print_report(j["last"], as_json, "through the running server, POST /outpost/check");
}

}  // namespace

int cli_check(CliArgs& a) {
  const bool repair = a.take_flag("--repair");
  const bool as_json = a.take_flag("--json");
  bool missing = false;
  std::optional<uint64_t> rate;
  if (auto v = a.take_value("--rate", &missing)) {
    auto r = parse_size(*v);
    if (!r) {
      fprintf(stderr, "outpost: check: --rate: %s\n", r.error().message().c_str());
      return 2;
    }
    rate = *r;
  }
  if (missing) {
    fprintf(stderr, "outpost: check: --rate needs bytes per second (e.g. 100MiB; 0: unlimited)\n");
    return 2;
  }
  StorageTarget target;
  if (int rc = open_storage_target(a, "check", &target)) return rc;
  const Config* cfg = &target.cfg;
  const bool running = !target.store;
  if (running) return run_online(*cfg, repair, rate, as_json);

  store::CheckOptions o;
  o.repair = repair;
  o.rate = rate.value_or(0);  // offline: nobody else needs the disk
  store::CheckProgress progress;
  Result<store::CheckReport> rep = Error(Errc::Internal, "not run");
  std::atomic<bool> finished{false};
  std::thread worker([&] {
    rep = target.store->check(o, &progress);
    finished = true;
  });
  ProgressLine line;
  while (!finished) {
    line.show(progress.bytes_done, progress.bytes_total, progress.blobs_done, progress.blobs_total);
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  worker.join();
  line.end();
  if (!rep) {
    fprintf(stderr, "outpost: check failed: %s\n", rep.error().message().c_str());
    return 1;
  }
  return print_report(check_report_json(*rep), as_json, "offline, on the store");
}

}  // namespace outpost::app
