// Pool threads run at a lower CPU priority than the loop thread, so bulk work
// (hashing, pwrite of a big push) cannot take the loop's CPU under load.
#include <catch2/catch.hpp>

#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>

#include "uv/loop.hpp"
#include "uv/pool_priority.hpp"
#include "uv/work.hpp"

namespace {
int my_nice() {
  errno = 0;
  return ::getpriority(PRIO_PROCESS, static_cast<id_t>(::syscall(SYS_gettid)));
}
}  // namespace

TEST_CASE("a pool job runs at the process's nice value + kPoolNiceIncrement; the loop thread keeps its own", "[uv]") {
  outpost::uv::Loop loop;
  const int loop_nice = my_nice();
  int seen_first = -100, seen_second = -100, delivered_on = -100;
  outpost::uv::run_in_pool<int>(loop.get(), [] { return my_nice(); }, [&](int n) {
    seen_first = n;
    delivered_on = my_nice();
  });
  loop.run();
  // A second job on a (maybe) different pool thread is lowered too, and a
  // thread already lowered is not lowered twice.
  outpost::uv::run_in_pool<int>(loop.get(), [] { return my_nice(); }, [&](int n) { seen_second = n; });
  loop.run();
  const int expected = std::min(loop_nice + outpost::uv::kPoolNiceIncrement, 19);
  CHECK(seen_first == expected);
  CHECK(seen_second == expected);
  CHECK(delivered_on == loop_nice);
  CHECK(my_nice() == loop_nice);
}
