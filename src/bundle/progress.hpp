// Progress of a long bundle operation, as plain numbers. Reported from the
// thread doing the work; what to show (a terminal line, nothing) is the
// caller's choice.
#pragma once
#include <cstdint>
#include <functional>
#include <string>

namespace outpost::bundle {

struct Progress {
  std::string phase;        ///< "export", "import", "scan" ...
  uint64_t items_done = 0;  ///< entries (blobs, manifests) finished
  uint64_t items_total = 0; ///< 0 when unknown
  uint64_t bytes_done = 0;
  uint64_t bytes_total = 0; ///< 0 when unknown
};

/// Called often (after every chunk): keep it cheap.
using ProgressFn = std::function<void(const Progress&)>;

}  // namespace outpost::bundle
