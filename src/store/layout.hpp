// On-disk layout of the content store and the only place that builds its
// paths. Only validated values (Digest, UploadId) ever become path parts;
// repository names and tags never touch the filesystem (they live in SQLite).
#pragma once
#include <string>
#include <string_view>

#include "base/digest.hpp"
#include "base/result.hpp"

namespace outpost::store {

// <root>/
// ├── LOCK                         flock(2)ed by the one process that owns the root
// ├── meta.db  meta.db-wal  meta.db-shm
// │                                SQLite (WAL, synchronous=FULL): repositories,
// │                                blobs, repo_blobs, manifests, manifest_refs,
// │                                tags, uploads (schema in meta_schema.cpp)
// ├── blobs/
// │   └── sha256/
// │       └── ab/                  first two hex digits of the digest
// │           └── ab12…ef          64 hex: the verified bytes, read-only (0444).
// │                                Only ever created by rename(2) after the
// │                                digest was checked, then the shard dir fsynced.
// ├── uploads/
// │   └── <32 hex upload id>/
// │       └── data                 bytes received so far (pwrite at offset);
// │                                renamed into blobs/ by a verified commit
// └── tmp/
//     └── <32 hex>.tmp             one-shot writes (monolithic blobs, manifests)
//                                  between write and rename; emptied at open

/// A validated upload session id: 32 lowercase hex characters (128 random bits).
class UploadId {
 public:
  /// Accepts exactly 32 chars of [0-9a-f]; anything else is BlobUploadUnknown
  /// (a malformed id can only name a session that does not exist).
  static Result<UploadId> parse(std::string_view s);
  /// 128 bits from getrandom(2) (the kernel CSPRNG, same source as /dev/urandom).
  static Result<UploadId> generate();
  const std::string& str() const { return s_; }
  bool operator==(const UploadId& o) const { return s_ == o.s_; }

 private:
  explicit UploadId(std::string s) : s_(std::move(s)) {}
  std::string s_;
};

/// True when `d` is a digest whose bytes this store keeps (sha256, 64 hex).
bool is_storable(const Digest& d);

/// Path builders over one root. Cheap to copy.
class Layout {
 public:
  explicit Layout(std::string root);

  const std::string& root() const { return root_; }
  std::string lock_file() const { return root_ + "/LOCK"; }
  std::string db_file() const { return root_ + "/meta.db"; }
  std::string blobs_dir() const { return root_ + "/blobs"; }
  std::string blobs_alg_dir() const { return root_ + "/blobs/sha256"; }
  std::string uploads_dir() const { return root_ + "/uploads"; }
  std::string tmp_dir() const { return root_ + "/tmp"; }

  /// <root>/blobs/sha256/<2 hex>; `d` must satisfy is_storable().
  std::string blob_shard_dir(const Digest& d) const;
  /// <root>/blobs/sha256/<2 hex>/<64 hex>; `d` must satisfy is_storable().
  std::string blob_file(const Digest& d) const;
  std::string upload_dir(const UploadId& id) const { return uploads_dir() + "/" + id.str(); }
  std::string upload_data(const UploadId& id) const { return upload_dir(id) + "/data"; }
  /// <root>/tmp/<id>.tmp for a fresh random id.
  std::string tmp_file(const UploadId& id) const { return tmp_dir() + "/" + id.str() + ".tmp"; }

 private:
  std::string root_;
};

/// Whether `s` is n lowercase hex characters.
bool is_lower_hex(std::string_view s, size_t n);

}  // namespace outpost::store
