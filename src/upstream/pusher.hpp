// Writes to the parent registry (issue #15, the replay queue's last hop):
// blob HEAD, cross-repository mount, streamed and resumable blob upload,
// manifest PUT and deletes, each one async operation on the loop thread
// whose outcome is a value: success, or a PushError classified permanent
// (the parent will never accept it: report, do not retry) or retryable
// (transport, deadline, 5xx, 429, a blob the parent lacks yet).
// Uses RegistryClient for auth (token scope pull,push), redirects and the
// parent's Health: while the parent is offline every op fails at once,
// retryable. Knows nothing of the store or the queue; the caller owns the
// file descriptor of a blob and persists upload locations.
//
// Blob upload (distribution-spec "Pushing a blob in chunks"):
//
//   [resume_location] --GET--> 204 Range: 0-N --> offset N+1 --+
//        | 404/400 (session unknown or broken)                 |
//        v                                                     v
//   POST /blobs/uploads/ --202 Location--> on_location --> PATCH [offset, end)
//        ^                                      (Content-Range, streamed from fd)
//        |                                                     | 202 Location, Range
//        +---- 404 BLOB_UPLOAD_UNKNOWN / 400 BLOB_UPLOAD_INVALID +--> more? PATCH
//                 (at most kMaxRestarts)                        | 416: GET, resync
//                                                               v
//                                                    PUT <location>&digest=  --> 201
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <variant>

#include "upstream/registry_client.hpp"

namespace outpost::upstream {

enum class PushErrorKind {
  Retryable,  ///< try again later (backoff): no answer, 5xx, 429, 408, a blob the parent lacks yet
  Permanent,  ///< the parent refused for good: DENIED, UNSUPPORTED, NAME_INVALID, *_INVALID, 401 after auth, other 4xx
};

struct PushError {
  PushErrorKind kind = PushErrorKind::Retryable;
  int status = 0;             ///< the parent's HTTP status; 0 = no answer (transport, deadline, offline, cancelled)
  std::string oci_code;       ///< first OCI error code of the parent's body ("DENIED"), or empty
  std::string message;        ///< for status display: the operation, the status, the parent's code and message
  uint64_t retry_after_ms = 0;  ///< from a 429/503 Retry-After (seconds or HTTP-date); 0 = none given
  bool permanent() const { return kind == PushErrorKind::Permanent; }
  bool retryable() const { return kind == PushErrorKind::Retryable; }
};

/// A value or a PushError (errors as values, STYLE.md).
template <typename T>
class [[nodiscard]] PushResult {
 public:
  PushResult(T v) : v_(std::in_place_index<0>, std::move(v)) {}
  PushResult(PushError e) : v_(std::in_place_index<1>, std::move(e)) {}
  bool ok() const { return v_.index() == 0; }
  explicit operator bool() const { return ok(); }
  T& value() { return std::get<0>(v_); }
  const T& value() const { return std::get<0>(v_); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  const PushError& error() const { return std::get<1>(v_); }

 private:
  std::variant<T, PushError> v_;
};

struct BlobPresence {
  bool exists = false;
  std::optional<uint64_t> size;  ///< Content-Length of the parent's HEAD answer
};

struct MountResult {
  bool mounted = false;           ///< 201: the parent linked the blob into the repository
  /// When not mounted (202): the absolute URL of the upload session the
  /// parent opened instead; pass it as UploadOptions::resume_location.
  std::string upload_location;
};

struct UploadOptions {
  /// An absolute upload URL saved from an earlier attempt (or a mount's
  /// 202): its offset is asked (GET) and the rest sent; a session the parent
  /// no longer knows is replaced by a new one.
  std::string resume_location;
  /// Called with the absolute URL of the session whenever the parent gives
  /// a new one (after the POST, each PATCH and a status GET), before more
  /// bytes are sent: persist it to resume after a crash.
  std::function<void(const std::string& location)> on_location;
  /// Bytes per PATCH; 0 = the rest of the blob in one PATCH. Smaller chunks
  /// give a registry that cannot resume inside a PATCH (distribution 2.8
  /// drops a session whose PATCH was cut) more points to resume from.
  uint64_t chunk_size = 0;
};

struct UploadResult {
  uint64_t resumed_from = 0;  ///< bytes the parent already held when this call started sending
  int restarts = 0;           ///< sessions given up and opened anew (unknown, broken, digest mismatch after a resume)
};

enum class DeleteOutcome {
  Deleted,      ///< 202 (or 200/204)
  AlreadyGone,  ///< 404: the parent does not have it; nothing to do
  Unsupported,  ///< 405, or 400 DIGEST_INVALID for a tag (distribution 2.8): the parent cannot do this delete
};

/// Handle of one push operation. cancel(): no callback fires after.
class PushOp {
 public:
  virtual ~PushOp() = default;
  void cancel();
  bool cancelled() const { return cancelled_; }
  /// Blob uploads: bytes the parent confirmed plus bytes of the PATCH in
  /// flight handed to the socket (progress display; tests).
  uint64_t bytes_sent() const;

  // internals
  UpstreamOpPtr req_;
  bool cancelled_ = false;
  uint64_t confirmed_ = 0;
};
using PushOpPtr = std::shared_ptr<PushOp>;

class Pusher {
 public:
  template <typename T>
  using Done = std::function<void(PushResult<T>)>;

  static constexpr int kMaxRestarts = 2;

  /// `parent` is not owned and must outlive every op. Loop thread only.
  /// Repository names are the client-facing ones (RegistryClient::upstream_repo
  /// maps them). Every `done` fires exactly once unless the op is cancelled,
  /// and may fire before the call returns (parent offline).
  explicit Pusher(RegistryClient& parent) : rc_(parent) {}

  PushOpPtr blob_exists(const std::string& repo, const std::string& digest, Done<BlobPresence> done);
  /// POST ?mount=<digest>&from=<from> (token scope also asks pull on `from`).
  PushOpPtr mount_blob(const std::string& repo, const std::string& digest, const std::string& from,
                       Done<MountResult> done);
  /// Streams `size` bytes of `fd` (from offset 0; not owned, open until
  /// `done`) to the parent as blob `digest` of `repo`. Never holds more than
  /// one http::kFileBodyChunk of it in memory.
  PushOpPtr upload_blob(const std::string& repo, const std::string& digest, int fd, uint64_t size,
                        UploadOptions opts, Done<UploadResult> done);
  /// PUT /manifests/<reference>; yields the parent's Docker-Content-Digest
  /// (the digest of `bytes` when the parent sends none).
  PushOpPtr put_manifest(const std::string& repo, const std::string& reference, const std::string& media_type,
                         std::string bytes, Done<std::string> done);
  PushOpPtr delete_manifest(const std::string& repo, const std::string& digest, Done<DeleteOutcome> done);
  PushOpPtr delete_tag(const std::string& repo, const std::string& tag, Done<DeleteOutcome> done);
  PushOpPtr delete_blob(const std::string& repo, const std::string& digest, Done<DeleteOutcome> done);

  RegistryClient& registry() { return rc_; }

 private:
  PushOpPtr remove(const std::string& what, const std::string& repo, std::string path, bool by_tag,
                   Done<DeleteOutcome> done);
  RegistryClient& rc_;
};

/// The parent answered `status` (with `headers`, error `body`) to `what`:
/// the classified error (exposed for tests and for the replayer's reports).
PushError classify_answer(const std::string& what, int status, const http::Headers& headers,
                          std::string_view body);
/// No answer (transport, deadline, offline, auth dance): retryable, except a
/// cancellation which is reported as such (retryable, status 0).
PushError classify_failure(const std::string& what, const Error& e);

}  // namespace outpost::upstream
