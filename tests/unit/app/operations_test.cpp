// Issue #17 pieces that need no running server: the status page's escaping
// and "n/a" for absent keys, the status table, the reload key diff and the
// Reloader's live/refused split, the per-route histogram's shape.
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>

#include "app/cli_status.hpp"
#include "app/config.hpp"
#include "app/reload.hpp"
#include "app/request_log.hpp"
#include "app/status_page.hpp"
#include "http/exchange.hpp"

using namespace outpost;

TEST_CASE("status page: every value escaped, absent keys n/a", "[app][ops]") {
  CHECK(app::html_escape("<a href=\"x\">'&'</a>") == "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;");
  nlohmann::json st = {{"name", "<script>alert(1)</script>"},
                       {"mode", "ReadWrite"},
                       {"version", "0.1.0"},
                       {"upstreams", nlohmann::json::array({{{"name", "parent"}, {"state", "online"},
                                                             {"url", "http://p:5000/?a=<b>"}}})}};
  const std::string html = app::status_page_html(st, nullptr);
  CHECK(html.find("<script>") == std::string::npos);
  CHECK(html.find("&lt;script&gt;alert(1)&lt;/script&gt;") != std::string::npos);
  CHECK(html.find("http://p:5000/?a=&lt;b&gt;") != std::string::npos);
  CHECK(html.find("<meta http-equiv=\"refresh\" content=\"10\">") != std::string::npos);
  CHECK(html.find("id=\"cache-quota\">n/a<") != std::string::npos);
  CHECK(html.find("id=\"queue-pending\">n/a<") != std::string::npos);
  CHECK(html.find("id=\"link-state\" class=\"ok\">online<") != std::string::npos);
}

TEST_CASE("status page: recent pulls and pushes can be hidden (access control on, reader not on loopback)",
          "[app][ops]") {
  app::RequestLog log;
  http::Request req;
  req.method = http::Method::Put;
  req.peer = "10.0.0.7:4711";
  http::Exchange ex(nullptr, std::move(req));
  ex.params().name = "secret/payroll";
  ex.params().reference = "q4";
  ex.status_ = 201;
  log.observe(ex, "/v2/{name}/manifests/{reference}", 0.001, 0);
  const nlohmann::json st = nlohmann::json::object();
  const std::string shown = app::status_page_html(st, &log, false);
  CHECK(shown.find("secret/payroll") != std::string::npos);
  CHECK(shown.find("10.0.0.7:4711") != std::string::npos);
  const std::string hidden = app::status_page_html(st, &log, true);
  CHECK(hidden.find("secret/payroll") == std::string::npos);
  CHECK(hidden.find("10.0.0.7") == std::string::npos);
  CHECK(hidden.find("Hidden: access control is on") != std::string::npos);
}

TEST_CASE("status table: missing keys are n/a, never a crash", "[app][ops]") {
  const std::string empty = app::status_table(nlohmann::json::object());
  CHECK(empty.find("quota                n/a") != std::string::npos);
  CHECK(empty.find("none (no parent configured)") != std::string::npos);
  nlohmann::json st = {{"cache", {{"hits", 3}, {"misses", 1}, {"hit_ratio", 0.75}}},
                       {"storage", {{"quota_bytes", 1073741824}}},
                       {"sync", {{"queue", {{"pending", 2}, {"bytes_pending", 2048}, {"oldest_age_s", 3700}}}}}};
  const std::string t = app::status_table(st);
  CHECK(t.find("hit ratio            75.0% (3 hits, 1 misses)") != std::string::npos);
  CHECK(t.find("quota                1.0 GiB") != std::string::npos);
  CHECK(t.find("bytes                2.0 KiB") != std::string::npos);
  CHECK(t.find("oldest               1h 1m") != std::string::npos);
  // A key of the wrong type is shown as n/a too.
  CHECK(app::status_table(nlohmann::json{{"storage", {{"quota_bytes", "lots"}}}}).find("quota                n/a") !=
        std::string::npos);
}

TEST_CASE("reload: changed_keys and copy_key follow the settings table", "[app][reload]") {
  app::Config a, b;
  CHECK(app::changed_keys(a, b).empty());
  b.log.level = log::Level::Debug;
  b.storage.root = "/elsewhere";
  b.upstreams.push_back({});
  auto keys = app::changed_keys(a, b);
  CHECK(keys == std::vector<std::string>{"storage.root", "log.level", "upstream"});
  app::copy_key("storage.root", a, &b);
  app::copy_key("upstream", a, &b);
  CHECK(b.storage.root == a.storage.root);
  CHECK(b.upstreams.empty());
  CHECK(app::changed_keys(a, b) == std::vector<std::string>{"log.level"});
}

TEST_CASE("reload: live keys applied, others refused and kept, bad file changes nothing", "[app][reload]") {
  char path[] = "/tmp/outpost-reload-XXXXXX";
  int fd = mkstemp(path);
  REQUIRE(fd >= 0);
  close(fd);
  auto write = [&](const char* text) {
    std::ofstream f(path);
    f << text;
  };
  write("[storage]\nroot = \"/a\"\n[log]\nlevel = \"info\"\n");
  auto live = app::load_config_file(path);
  REQUIRE(live);
  app::Reloader r;
  r.allow_live({"log.level", "sync.*"});
  int runs = 0;
  log::Level seen = log::Level::Info;
  r.add("log", [&](const app::Config&, const app::Config& next) -> Status {
    ++runs;
    seen = next.log.level;
    return {};
  });
  CHECK(r.is_live("sync.schedule"));
  CHECK_FALSE(r.is_live("storage.root"));

  write("[storage]\nroot = \"/b\"\n[log]\nlevel = \"debug\"\n[sync]\nschedule = \"0 3 * * *\"\n");
  app::ReloadReport rep;
  r.reload(path, &*live, &rep, 1000);
  CHECK(rep.result == "ok");
  CHECK(rep.applied == std::vector<std::string>{"sync.schedule", "log.level"});
  CHECK(rep.refused == std::vector<std::string>{"storage.root"});
  CHECK(live->storage.root == "/a");
  CHECK(live->log.level == log::Level::Debug);
  CHECK(live->sync.schedule == "0 3 * * *");
  CHECK(seen == log::Level::Debug);
  CHECK(runs == 1);

  write("[log]\nlevel = \"loud\"\n");
  r.reload(path, &*live, &rep, 2000);
  CHECK(rep.count == 2);
  CHECK(rep.result.find("log.level") != std::string::npos);
  CHECK(live->log.level == log::Level::Debug);
  CHECK(runs == 1);  // hooks do not run for a file that does not parse
  log::set_level(log::Level::Info);
  unlink(path);
}

TEST_CASE("request log: histogram buckets are cumulative and end at +Inf", "[app][ops]") {
  app::RequestLog log;
  const std::string text = log.metrics_text();
  CHECK(text.find("# TYPE outpost_http_request_duration_seconds histogram") != std::string::npos);
  CHECK(app::prom_label("a\"b\\c\nd") == "a\\\"b\\\\c\\nd");
}

TEST_CASE("request log: each request counts under its own route, method and status, in any order", "[app][ops]") {
  // observe() remembers the previous request's counter; runs and switches
  // of route, method and status must still each land on their own line.
  app::RequestLog log;
  auto ex = [](http::Method m, int status) {
    http::Request req;
    req.method = m;
    auto e = std::make_shared<http::Exchange>(nullptr, std::move(req));
    e->status_ = status;
    return e;
  };
  const std::string a = "/v2/<name>/tags/list", b = "/v2/";
  for (int i = 0; i < 3; ++i) log.observe(*ex(http::Method::Get, 200), a, 0.001, 0);
  log.observe(*ex(http::Method::Head, 200), a, 0.001, 0);
  log.observe(*ex(http::Method::Get, 404), a, 0.001, 0);
  log.observe(*ex(http::Method::Get, 200), b, 0.001, 0);
  log.observe(*ex(http::Method::Get, 200), a, 0.001, 0);
  log.observe(*ex(http::Method::Get, 404), "", 0.001, 0);
  const std::string text = log.metrics_text();
  auto line = [&](const std::string& route, const char* method, int status) {
    const std::string key = "outpost_http_route_requests_total{route=\"" + route + "\",method=\"" + method +
                            "\",status=\"" + std::to_string(status) + "\"} ";
    const size_t at = text.find(key);
    if (at == std::string::npos) return std::string("missing");
    return text.substr(at + key.size(), text.find('\n', at) - at - key.size());
  };
  CHECK(line(a, "GET", 200) == "4");
  CHECK(line(a, "HEAD", 200) == "1");
  CHECK(line(a, "GET", 404) == "1");
  CHECK(line(b, "GET", 200) == "1");
  CHECK(line("unmatched", "GET", 404) == "1");
}
