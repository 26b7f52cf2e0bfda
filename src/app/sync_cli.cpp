#include "base/size.hpp"
#include "app/sync_cli.hpp"

#include <unistd.h>
#include <uv.h>

#include <nlohmann/json.hpp>
#include <optional>

#include "app/admin_client.hpp"
#include "http/client.hpp"
#include "http/url.hpp"
#include "uv/loop.hpp"

namespace outpost::app {

namespace {

using nlohmann::json;

/// Drives `loop` until `*flag` is set or `ms` pass (a ref'd timer keeps
/// uv_run blocking rather than spinning, and bounds every wait).
void run_until(uv_loop_t* loop, const bool* flag, uint64_t ms) {
  struct Guard {
    uv_timer_t t;
    bool fired = false;
  };
  auto* g = new Guard;
  uv_timer_init(loop, &g->t);
  g->t.data = g;
  uv_timer_start(&g->t, [](uv_timer_t* t) { static_cast<Guard*>(t->data)->fired = true; }, ms, 0);
  while (!(flag && *flag) && !g->fired) uv_run(loop, UV_RUN_ONCE);
  uv_close(reinterpret_cast<uv_handle_t*>(&g->t), [](uv_handle_t* h) { delete static_cast<Guard*>(h->data); });
}

/// One request of `sync now` (its own deadlines bound it).
AdminAnswer call(uv_loop_t* loop, http::HttpClient& client, http::Method m, const http::Url& url) {
  return admin_call(loop, client, m, url, 10'000);
}

uint64_t num(const json& j, const char* key) {
  auto it = j.find(key);
  return it != j.end() && it->is_number_unsigned() ? it->get<uint64_t>() : 0;
}

std::optional<std::string> str(const json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end() || !it->is_string()) return std::nullopt;
  return it->get<std::string>();
}

bool flag(const json& j, const char* key) {
  auto it = j.find(key);
  return it != j.end() && it->is_boolean() && it->get<bool>();
}

/// One progress line from the keys app/sync_control.hpp documents.
std::string progress_line(const json& j) {
  std::string s = flag(j, "window_open") ? "window open" : "window closed";
  s += ": " + std::to_string(num(j, "queue_depth")) + " pending";
  if (j.contains("bytes_pending")) s += " (" + human_size(num(j, "bytes_pending")) + ")";
  s += ", " + std::to_string(num(j, "sent")) + " sent";
  if (j.contains("bytes_sent")) s += " (" + human_size(num(j, "bytes_sent")) + ")";
  s += ", " + std::to_string(num(j, "failed")) + " failed, " + std::to_string(num(j, "expired")) + " expired";
  if (auto e = str(j, "last_error")) s += "; last error: " + *e;
  return s;
}

}  // namespace

int sync_now(const Config& cfg, const SyncNowOptions& o, FILE* out, FILE* err) {
  const std::string base = admin_base_url(cfg);
  auto url = http::Url::parse(base + "/outpost/sync");
  if (!url) {
    fprintf(err, "outpost: bad admin address %s: %s\n", base.c_str(), url.error().message().c_str());
    return 1;
  }
  int rc = 1;
  {
    uv::Loop loop;
    http::HttpClient client(loop.get(), nullptr);
    AdminAnswer a = call(loop.get(), client, http::Method::Post, *url);
    if (!a.st.ok()) {
      fprintf(err, "outpost: cannot reach the outpost at %s: %s\n", base.c_str(), a.st.error().message().c_str());
      return 1;
    }
    if (a.status != 200 && a.status != 202) {
      fprintf(err, "outpost: %s answered %d: %s\n", base.c_str(), a.status, admin_error_text(a).c_str());
      return 1;
    }
    auto j = json::parse(a.body, nullptr, false);
    fprintf(out, "%s\n", a.status == 202 ? "sync window opened" : "a sync window is already open");
    if (!o.wait) {
      if (j.is_object()) fprintf(out, "%s\n", progress_line(j).c_str());
      fflush(out);
      return 0;
    }
    const uint64_t start = uv_now(loop.get());
    std::string last;
    // On a terminal the progress is one line rewritten in place (\r, then
    // erase to the end of the line); into a file or a pipe, one line each.
    const bool tty = isatty(fileno(out)) == 1;
    bool line_open = false;
    auto end_line = [&] {
      if (line_open) fputc('\n', out);
      line_open = false;
    };
    for (;;) {
      a = call(loop.get(), client, http::Method::Get, *url);
      if (!a.st.ok() || a.status != 200) {
        end_line();
        fprintf(err, "outpost: following progress at %s failed: %s\n", base.c_str(),
                a.st.ok() ? (std::to_string(a.status) + " " + admin_error_text(a)).c_str() : a.st.error().message().c_str());
        break;
      }
      j = json::parse(a.body, nullptr, false);
      if (!j.is_object()) {
        end_line();
        fprintf(err, "outpost: progress is not a JSON object: %s\n", a.body.substr(0, 200).c_str());
        break;
      }
      std::string line = progress_line(j);
      if (line != last) {
        if (tty) {
          fprintf(out, "\r%s\033[K", line.c_str());
          line_open = true;
        } else {
          fprintf(out, "%s\n", line.c_str());
        }
        fflush(out);
        last = line;
      }
      if (auto why = str(j, "blocked_reason")) {
        end_line();
        fprintf(err, "outpost: sync blocked: %s\n", why->c_str());
        break;
      }
      const uint64_t depth = num(j, "queue_depth");
      if (!flag(j, "window_open")) {
        if (depth == 0) {
          end_line();
          fprintf(out, "done: the queue is empty\n");
          rc = 0;
        } else {
          end_line();
          fprintf(err, "outpost: the window closed with %llu entries pending\n", static_cast<unsigned long long>(depth));
        }
        break;
      }
      if (!flag(j, "busy") && depth == 0) {
        end_line();
        fprintf(out, "done: the queue is empty\n");
        rc = 0;
        break;
      }
      uint64_t now = uv_now(loop.get());
      if (now - start >= o.timeout_ms) {
        end_line();
        fprintf(err, "outpost: gave up waiting after %llu s (--timeout)\n",
                static_cast<unsigned long long>(o.timeout_ms / 1000));
        break;
      }
      run_until(loop.get(), nullptr, std::min(o.poll_ms, o.timeout_ms - (now - start)));
      uv_update_time(loop.get());
    }
  }
  fflush(out);
  return rc;
}

}  // namespace outpost::app
