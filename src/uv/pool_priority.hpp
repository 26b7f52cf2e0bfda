// Pool threads run below the loop thread's CPU priority.
//
// Why: on a small gateway (2 cores) a big push or fill keeps pool threads
// busy hashing and writing, and under the default scheduler they take CPU
// time from the one loop thread that answers every other client. A
// scheduler weight below the loop's (nice +N) lets bulk work soak up idle
// CPU at full speed while the loop wins whenever both want to run. Nothing
// changes on an idle machine: nice only matters under contention.
//
// The value is applied once per pool thread, by the thread itself, on its
// first job (libuv creates its pool threads lazily and offers no hook).
// Linux keeps the nice value per thread, so the loop thread stays at the
// process's own value. An unprivileged thread may always raise its nice
// value, so this never fails for lack of rights; a failure is ignored (the
// thread simply keeps the process's priority).
#pragma once

namespace outpost::uv {

/// The nice increment pool threads take relative to the process.
inline constexpr int kPoolNiceIncrement = 10;

/// Called at the start of every pool job: lowers the calling thread's
/// priority the first time it runs on that thread, then costs one
/// thread_local read.
void lower_pool_thread_priority_once();

}  // namespace outpost::uv
