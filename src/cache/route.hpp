// Which upstream serves a repository, and under which names.
#pragma once
#include <string>

namespace outpost::upstream { class RegistryClient; }

namespace outpost::cache {

struct Route {
  upstream::RegistryClient* upstream = nullptr;
  std::string local_repo;     ///< where the content is kept here
  std::string upstream_repo;  ///< the name the upstream knows
};

}  // namespace outpost::cache
