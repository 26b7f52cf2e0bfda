// The metadata schema: ordered migrations applied by sql::Db::migrate.
#pragma once
#include <span>
#include <string_view>

namespace outpost::store {

/// Step i brings the schema from user_version i to i + 1.
std::span<const std::string_view> meta_migrations();

}  // namespace outpost::store
