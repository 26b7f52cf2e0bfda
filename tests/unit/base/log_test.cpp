// Held log lines (olog::hold_lines): written together, in order, and never
// lost behind a warning or at the end of holding.
#include <catch2/catch.hpp>

#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <string>

#include "base/log.hpp"

namespace olog = outpost::log;

namespace {
/// Points fd 2 at a temp file for the test's lifetime.
struct CaptureStderr {
  char path[32] = "/tmp/outpost-log-XXXXXX";
  int saved = -1;
  CaptureStderr() {
    int fd = mkstemp(path);
    REQUIRE(fd >= 0);
    saved = dup(2);
    dup2(fd, 2);
    close(fd);
  }
  ~CaptureStderr() {
    dup2(saved, 2);
    close(saved);
    unlink(path);
  }
  std::string text() const {
    std::string out;
    FILE* f = fopen(path, "r");
    if (!f) return out;
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0) out.append(buf, n);
    fclose(f);
    return out;
  }
};
}  // namespace

TEST_CASE("log: held info lines are written by flush, in order, before a warning", "[log]") {
  olog::set_level(olog::Level::Info);
  CaptureStderr cap;
  olog::hold_lines(true);
  olog::info("one", " k=1");
  olog::info("two");
  CHECK(cap.text().empty());  // held: no write(2) per line
  olog::flush();
  std::string t = cap.text();
  CHECK(t.find("level=info msg=one k=1\n") != std::string::npos);
  CHECK(t.find("msg=two") > t.find("msg=one"));

  olog::info("three");
  olog::warn("four");  // written at once, after what was held
  t = cap.text();
  REQUIRE(t.find("msg=four") != std::string::npos);
  CHECK(t.find("msg=three") < t.find("msg=four"));

  olog::info("five");
  olog::hold_lines(false);  // ending the hold writes what is held
  CHECK(cap.text().find("msg=five") != std::string::npos);
  olog::info("six");  // not held any more
  CHECK(cap.text().find("msg=six") != std::string::npos);
}

TEST_CASE("log: the timestamp keeps its format", "[log]") {
  olog::set_level(olog::Level::Info);
  CaptureStderr cap;
  olog::info("ts");
  std::string t = cap.text();
  if (std::getenv("JOURNAL_STREAM")) return;  // journald lines carry no ts=
  // ts=YYYY-MM-DDTHH:MM:SS.mmmZ level=info msg=ts
  REQUIRE(t.size() > 28);
  CHECK(t.compare(0, 3, "ts=") == 0);
  CHECK(t[7] == '-');
  CHECK(t[13] == 'T');
  CHECK(t[22] == '.');
  CHECK(t[26] == 'Z');
  CHECK(t.compare(27, 11, " level=info") == 0);
}
