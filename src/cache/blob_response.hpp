// The one place a blob response is built (issue #14). The API's local hit,
// the pull-through fill and a HEAD answered from the parent all hand a
// readable source to respond_blob(), so every blob answer carries the same
// headers (Docker-Content-Digest, ETag, Accept-Ranges, Cache-Control,
// Content-Type), honours Range the same way (one range: 206, unsatisfiable:
// 416 with Content-Range "bytes */<size>"; RFC 9110, distribution-spec
// "Pulling Blobs") and answers HEAD with the head GET would get.
//
// A fill is a growing source. A reader streams the bytes the session file
// holds as they arrive, from the range's start, and sends the last byte of
// its response only once the fill verified the digest (the durable publish
// that follows is waited for by nobody), so a failed fill can
// only ever look like a broken response (DESIGN.md invariant 1), ranged or
// not. Range needs the size: with a parent that sent Content-Length it is
// evaluated at once; with a chunked parent (size unknown until the end) a
// ranged request, a HEAD and an empty blob wait for the verified end, and a
// plain GET streams chunked as the bytes come.
#pragma once
#include <cstdint>
#include <memory>
#include <string>

#include "base/digest.hpp"
#include "http/exchange.hpp"
#include "store/fs.hpp"

namespace outpost::cache {

class Fill;

/// Where a blob's bytes come from.
struct BlobSource {
  enum class Kind {
    File,      ///< a verified blob file: fd + size (sendfile)
    Fill,      ///< a pull-through fill in progress or just done
    HeadOnly,  ///< size only (the parent's HEAD answer, a known blob): HEAD requests only
    Memory,    ///< verified bytes held in memory (a small blob; cache::HotBlobs)
  };
  Kind kind = Kind::File;
  Digest digest;
  store::UniqueFd fd;          ///< File
  uint64_t size = 0;           ///< File, HeadOnly
  std::shared_ptr<Fill> fill;  ///< Fill
  std::shared_ptr<const std::string> bytes;  ///< Memory
  /// Answered from the cache while the parent is offline: says so in
  /// "Outpost-Cache: offline".
  bool offline = false;

  static BlobSource file(Digest d, store::UniqueFd fd, uint64_t size, bool offline = false);
  static BlobSource growing(Digest d, std::shared_ptr<Fill> fill);
  static BlobSource head_only(Digest d, uint64_t size, bool offline = false);
  static BlobSource memory(Digest d, std::shared_ptr<const std::string> bytes, bool offline = false);
};

/// Answers `ex` (GET or HEAD) from `src`. Loop thread. Never buffers the
/// blob: a file goes out with sendfile, a fill by pread from its session
/// file in bounded chunks with the client's back-pressure.
void respond_blob(const http::ExchangePtr& ex, BlobSource src);

}  // namespace outpost::cache
