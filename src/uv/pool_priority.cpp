#include "uv/pool_priority.hpp"

#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>

namespace outpost::uv {

void lower_pool_thread_priority_once() {
  thread_local bool done = false;
  if (done) return;
  done = true;
  // PRIO_PROCESS with a thread id addresses that one thread on Linux.
  const auto tid = static_cast<id_t>(::syscall(SYS_gettid));
  errno = 0;
  const int current = ::getpriority(PRIO_PROCESS, tid);
  if (current == -1 && errno != 0) return;
  (void)::setpriority(PRIO_PROCESS, tid, current + kPoolNiceIncrement);
}

}  // namespace outpost::uv
