// Shared by the libFuzzer targets: a property that must hold for every input.
// A violation prints what broke and aborts, which libFuzzer reports as a
// crash and saves the input (then it goes to tests/fuzz/regress/<target>/).
#pragma once
#include <cstdio>
#include <cstdlib>

#define FUZZ_CHECK(cond)                                                             \
  do {                                                                               \
    if (!(cond)) {                                                                   \
      std::fprintf(stderr, "%s:%d: fuzz property violated: %s\n", __FILE__, __LINE__, \
                   #cond);                                                           \
      std::abort();                                                                  \
    }                                                                                \
  } while (0)
