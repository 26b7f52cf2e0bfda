// Shared by the handlers: request validation (names, digests, pagination)
// and OCI headers. Store calls go through ctx.store (storesvc::StoreService).
#pragma once
#include <functional>
#include <optional>
#include <string>

#include "api/api.hpp"
#include "base/digest.hpp"
#include "base/result.hpp"
#include "cache/route.hpp"
#include "http/exchange.hpp"
#include "store/store.hpp"
#include "storesvc/store_service.hpp"

namespace outpost::api {

/// Answers NAME_INVALID and returns false when the route's name is not a
/// valid repository name.
bool check_name(const http::ExchangePtr& ex);
/// Parses a digest from the URL or query; answers DIGEST_INVALID on failure.
std::optional<Digest> digest_param(const http::ExchangePtr& ex, const std::string& s);
/// Answers UNSUPPORTED and returns false in ReadOnly mode.
bool check_writable(ApiContext& ctx, const http::ExchangePtr& ex);
/// n/last from the query; answers PAGINATION_NUMBER_INVALID on a bad n.
std::optional<store::PageRequest> page_param(const http::ExchangePtr& ex);
/// RFC 8288 Link header for the next page, when there is one.
void add_next_link(const http::ExchangePtr& ex, const std::string& path, const store::PageRequest& page,
                   const std::string& last, std::string extra_query = {});

std::string blob_location(const std::string& name, const Digest& d);
std::string manifest_location(const std::string& name, const Digest& d);
std::string upload_location(const std::string& name, const std::string& id);
/// "0-<offset-1>" as the spec's upload Range header ("0-0" when empty, as distribution sends).
std::string upload_range(uint64_t offset);

/// The pull-through route for this request (?ns= or path prefix or the
/// parent), or nullopt for a purely local repository.
std::optional<cache::Route> pull_route(ApiContext& ctx, const http::ExchangePtr& ex);
/// Where this request's content lives locally (the route's local name).
std::string local_repo(const std::optional<cache::Route>& route, const http::ExchangePtr& ex);

/// ex->read_body, handing the exchange to the callbacks instead of letting
/// them capture it: the Exchange stores its body callbacks, so a callback
/// holding the ExchangePtr (directly or through a continuation) is a cycle
/// that leaks the exchange and its buffered body whenever the body never
/// ends because the answer came first. Callbacks must not capture `ex`.
using BodyChunkFn = std::function<void(const http::ExchangePtr&, std::string_view)>;
using BodyEndFn = std::function<void(const http::ExchangePtr&, Status)>;
void read_body(const http::ExchangePtr& ex, BodyChunkFn on_data, BodyEndFn on_end);

}  // namespace outpost::api
