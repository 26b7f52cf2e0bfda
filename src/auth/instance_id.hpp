// The instance id an Outpost presents to its parent (header
// Outpost-Instance) so a parent can bind a sync token to one child at a
// time. Made once (random, 128 bits, hex-like base64url) and kept in a
// small file in the store root, so it survives restarts and moves with
// the store, and a copied store is the same instance.
#pragma once
#include <string>

#include "base/result.hpp"

namespace outpost::auth {

/// Reads `<root>/instance-id`, creating it (fsynced) on first use. Blocking.
Result<std::string> load_or_create_instance_id(const std::string& root);

}  // namespace outpost::auth
