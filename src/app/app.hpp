// Composition root: owns the loop, the config, the store, the HTTP server and
// its routes, and shuts them down in order. Nothing else wires modules together.
#pragma once
#include <memory>

#include "api/api.hpp"
#include "app/config.hpp"
#include "base/result.hpp"

namespace outpost::app {

class App {
 public:
  explicit App(Config cfg);
  ~App();
  App(const App&) = delete;
  App& operator=(const App&) = delete;

  /// Opens the store, listens, serves until SIGTERM/SIGINT; returns the exit code.
  int run();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace outpost::app
