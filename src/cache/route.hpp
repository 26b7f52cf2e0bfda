// Which upstream serves a repository, and under which names.
#pragma once
#include <memory>
#include <string>

namespace outpost::upstream { class RegistryClient; }

namespace outpost::cache {

struct Route {
  /// Shared: a SIGHUP may replace the configured upstreams (issue #17);
  /// work already routed (a fill, a manifest fetch, a keeper pass) keeps
  /// the generation it started on alive and finishes there.
  std::shared_ptr<upstream::RegistryClient> upstream;
  std::string local_repo;     ///< where the content is kept here
  std::string upstream_repo;  ///< the name the upstream knows
};

}  // namespace outpost::cache
