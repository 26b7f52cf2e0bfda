// Upload sessions: pwrite at a tracked offset, incremental SHA-256, durable
// flush, verified commit by rename. See the state sketch in upload.hpp.
#include "store/upload.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <vector>

#include "base/log.hpp"
#include "store/try.hpp"

namespace outpost::store {

namespace {
// Re-hash buffer for a resumed session; the only per-operation allocation
// that scales with anything, and it is fixed.
constexpr size_t kRehashChunk = 256 * 1024;
}  // namespace

struct Uploads::Session {
  explicit Session(UploadId i) : id(std::move(i)) {}
  std::mutex mu;
  UploadId id;
  std::string repo;
  bool loaded = false;  ///< fd open, offsets valid
  bool dead = false;    ///< committed or cancelled: every later call is BlobUploadUnknown
  UniqueFd fd;
  uint64_t offset = 0;   ///< bytes received
  uint64_t durable = 0;  ///< bytes fsynced and recorded in the uploads row
  std::unique_ptr<Sha256> hash;  ///< covers [0, offset) when set
  int64_t last_used = 0;
};

Uploads::Uploads(Layout layout, MetaDb& meta, BlobStore& blobs, std::shared_mutex& publish_mu,
                 size_t max_open_sessions)
    : layout_(std::move(layout)),
      meta_(meta),
      blobs_(blobs),
      publish_mu_(publish_mu),
      max_open_(max_open_sessions == 0 ? 1 : max_open_sessions) {}

Uploads::~Uploads() = default;

size_t Uploads::open_sessions() const {
  std::lock_guard lk(map_mu_);
  return sessions_.size();
}

void Uploads::evict_if_full_locked() {
  if (sessions_.size() < max_open_) return;
  // Least recently used idle session whose bytes are all durable: dropping it
  // loses only the hash state, which a later use recomputes from the file.
  auto victim = sessions_.end();
  int64_t oldest = 0;
  for (auto it = sessions_.begin(); it != sessions_.end(); ++it) {
    Session& s = *it->second;
    std::unique_lock lk(s.mu, std::try_to_lock);
    if (!lk.owns_lock()) continue;
    if (s.loaded && s.offset != s.durable) continue;
    if (victim == sessions_.end() || s.last_used < oldest) {
      victim = it;
      oldest = s.last_used;
    }
  }
  if (victim != sessions_.end()) sessions_.erase(victim);
}

Result<Uploads::SessionPtr> Uploads::session(std::string_view id_str) {
  STORE_ASSIGN(auto id, UploadId::parse(id_str));
  std::lock_guard lk(map_mu_);
  auto it = sessions_.find(id.str());
  if (it != sessions_.end()) return it->second;
  evict_if_full_locked();
  auto s = std::make_shared<Session>(id);
  sessions_.emplace(id.str(), s);
  return s;
}

void Uploads::forget(const UploadId& id) {
  std::lock_guard lk(map_mu_);
  sessions_.erase(id.str());
}

Status Uploads::load_locked(Session& s) {
  if (s.dead) return Error(Errc::BlobUploadUnknown, s.id.str());
  if (s.loaded) return {};
  STORE_ASSIGN(auto row, meta_.get_upload(s.id));
  const std::string path = layout_.upload_data(s.id);
  auto fd = fs::open(path, O_RDWR | O_NOFOLLOW);
  if (!fd) {
    if (fd.error().code != Errc::NotFound) return std::move(fd).error();
    // The row outlived its data (e.g. a commit whose record step failed after
    // the rename): the session cannot continue.
    log::warn("upload data missing, dropping session", " upload=" + s.id.str());
    cancel_locked(s);
    return Error(Errc::BlobUploadUnknown, s.id.str());
  }
  struct stat st {};
  if (::fstat(fd->get(), &st) != 0) return fs::errno_error("fstat", path, errno);
  auto size = static_cast<uint64_t>(st.st_size);
  uint64_t durable = row.size;
  if (size > durable) {
    // Bytes past the last flush were never acknowledged to the client: cut
    // them so the offset we report is one the client was told about.
    if (::ftruncate(fd->get(), static_cast<off_t>(durable)) != 0) return fs::errno_error("ftruncate", path, errno);
  } else if (size < durable) {
    log::warn("upload data shorter than recorded, resuming at its length",
              " upload=" + s.id.str() + " recorded=" + std::to_string(durable) + " actual=" + std::to_string(size));
    durable = size;
  }
  s.repo = std::move(row.repo);
  s.fd = std::move(*fd);
  s.offset = durable;
  s.durable = durable;
  s.hash.reset();
  s.loaded = true;
  return {};
}

Status Uploads::check_repo_locked(Session& s, std::string_view repo) {
  if (auto st = load_locked(s); !st) {
    // Do not keep map entries for ids that name nothing.
    if (st.error().code == Errc::BlobUploadUnknown) forget(s.id);
    return st;
  }
  // Another repository's upload id is as unknown as a made-up one.
  if (s.repo != repo) return Error(Errc::BlobUploadUnknown, s.id.str());
  s.last_used = meta_.now_ms();
  return {};
}

Status Uploads::ensure_hash_locked(Session& s) {
  if (s.hash) return {};
  auto h = std::make_unique<Sha256>();
  const std::string path = layout_.upload_data(s.id);
  std::vector<char> buf(kRehashChunk);
  uint64_t off = 0;
  while (off < s.offset) {
    const size_t want = static_cast<size_t>(std::min<uint64_t>(buf.size(), s.offset - off));
    STORE_ASSIGN(size_t n, fs::pread_some(s.fd.get(), buf.data(), want, off, path));
    if (n == 0) return Error(Errc::Io, "upload data ended early while re-hashing " + path);
    h->update(buf.data(), n);
    off += n;
  }
  s.hash = std::move(h);
  rehashed_bytes_.fetch_add(off, std::memory_order_relaxed);
  return {};
}

void Uploads::cancel_locked(Session& s) {
  // Row first, then files: a crash in between leaves an orphan directory,
  // which the next open (or GC) removes, never a row without data.
  auto del = meta_.delete_upload(s.id);
  if (!del) log::warn("upload row delete failed", " upload=" + s.id.str() + " err=" + log::quote(del.error().message()));
  s.fd.reset();
  auto rm = fs::remove_flat_dir(layout_.upload_dir(s.id));
  if (!rm) log::warn("upload dir remove failed", " upload=" + s.id.str() + " err=" + log::quote(rm.error().message()));
  s.dead = true;
  s.loaded = false;
  s.hash.reset();
  forget(s.id);
}

Result<UploadId> Uploads::create(std::string_view repo, bool internal) {
  OUTPOST_TRY(check_repo_name(repo));
  STORE_ASSIGN(auto id, UploadId::generate());
  const std::string dir = layout_.upload_dir(id);
  // Held shared from mkdir until the row exists: GC's orphan sweep takes it
  // exclusively, so it never mistakes this directory for a crashed one.
  std::shared_lock pub(publish_mu_);
  STORE_ASSIGN(bool made, fs::make_dir(dir));
  if (!made) return Error(Errc::Internal, "upload id collision");
  const std::string path = layout_.upload_data(id);
  auto fd = fs::open(path, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW, 0644);
  Status st = fd ? Status{} : Status(std::move(fd).error());
  // The session must survive a crash once POST is answered: its directory
  // entries and row are made durable before returning.
  if (st.ok()) st = fs::fsync_dir(dir);
  if (st.ok()) st = fs::fsync_dir(layout_.uploads_dir());
  if (st.ok()) st = meta_.insert_upload(id, repo, internal);
  if (!st.ok()) {
    (void)fs::remove_flat_dir(dir);
    return std::move(st).error();
  }
  pub.unlock();
  auto s = std::make_shared<Session>(id);
  s->repo = std::string(repo);
  s->fd = std::move(*fd);
  s->hash = std::make_unique<Sha256>();
  s->loaded = true;
  s->last_used = meta_.now_ms();
  {
    std::lock_guard lk(map_mu_);
    evict_if_full_locked();
    sessions_.emplace(id.str(), std::move(s));
  }
  return id;
}

Result<uint64_t> Uploads::append(std::string_view repo, std::string_view id, uint64_t offset,
                                 std::string_view bytes) {
  STORE_ASSIGN(auto sp, session(id));
  Session& s = *sp;
  std::lock_guard lk(s.mu);
  OUTPOST_TRY(check_repo_locked(s, repo));
  if (offset != s.offset)
    return Error(Errc::RangeInvalid,
                 "upload is at offset " + std::to_string(s.offset) + ", chunk starts at " + std::to_string(offset));
  // On a failed write the offset and hash stay put; any partial bytes past
  // the offset are overwritten by the next append or cut at commit/resume.
  OUTPOST_TRY(fs::pwrite_all(s.fd.get(), bytes, s.offset, layout_.upload_data(s.id)));
  // Never re-hash here: append runs once per body chunk (on the pool, through
  // the session's serial queue in storesvc) while holding the session mutex, and a session
  // that is not in memory (restart, eviction) would mean re-reading the whole
  // file per chunk. Without a hash the bytes are only written; prepare() or
  // commit() rebuild the hash from the file once.
  if (s.hash) s.hash->update(bytes);
  s.offset += bytes.size();
  return s.offset;
}

Result<uint64_t> Uploads::prepare(std::string_view repo, std::string_view id) {
  STORE_ASSIGN(auto sp, session(id));
  Session& s = *sp;
  std::lock_guard lk(s.mu);
  OUTPOST_TRY(check_repo_locked(s, repo));
  OUTPOST_TRY(ensure_hash_locked(s));
  return s.offset;
}

uint64_t Uploads::rehashed_bytes() const { return rehashed_bytes_.load(std::memory_order_relaxed); }

Result<uint64_t> Uploads::flush(std::string_view repo, std::string_view id) {
  STORE_ASSIGN(auto sp, session(id));
  Session& s = *sp;
  std::lock_guard lk(s.mu);
  OUTPOST_TRY(check_repo_locked(s, repo));
  if (s.offset == s.durable) return s.offset;
  if (::fdatasync(s.fd.get()) != 0) return fs::errno_error("fdatasync", layout_.upload_data(s.id), errno);
  OUTPOST_TRY(meta_.set_upload_size(s.id, s.offset));
  s.durable = s.offset;
  return s.offset;
}

Result<Digest> Uploads::digest(std::string_view repo, std::string_view id) {
  STORE_ASSIGN(auto sp, session(id));
  Session& s = *sp;
  std::lock_guard lk(s.mu);
  OUTPOST_TRY(check_repo_locked(s, repo));
  OUTPOST_TRY(ensure_hash_locked(s));
  return s.hash->peek();
}

Result<uint64_t> Uploads::status(std::string_view repo, std::string_view id_str) {
  STORE_ASSIGN(auto id, UploadId::parse(id_str));
  SessionPtr sp;
  {
    std::lock_guard lk(map_mu_);
    auto it = sessions_.find(id.str());
    if (it != sessions_.end()) sp = it->second;
  }
  if (sp) {
    std::lock_guard lk(sp->mu);
    if (sp->loaded || sp->dead) {
      OUTPOST_TRY(check_repo_locked(*sp, repo));
      return sp->offset;
    }
  }
  STORE_ASSIGN(auto row, meta_.get_upload(id));
  if (row.repo != repo) return Error(Errc::BlobUploadUnknown, id.str());
  return row.size;
}

Result<Descriptor> Uploads::commit(std::string_view repo, std::string_view id, const Digest& expected,
                                   Origin origin) {
  STORE_ASSIGN(auto sp, session(id));
  Session& s = *sp;
  std::lock_guard lk(s.mu);
  OUTPOST_TRY(check_repo_locked(s, repo));
  if (!is_storable(expected)) return Error(Errc::Unsupported, "unsupported digest algorithm: " + expected.str());
  const std::string path = layout_.upload_data(s.id);

  struct stat st {};
  if (::fstat(s.fd.get(), &st) != 0) return fs::errno_error("fstat", path, errno);
  const auto on_disk = static_cast<uint64_t>(st.st_size);
  if (on_disk < s.offset) {
    log::error("upload data lost bytes, cancelling", " upload=" + s.id.str());
    cancel_locked(s);
    return Error(Errc::BlobUploadInvalid, "upload data is shorter than the bytes received");
  }
  if (on_disk > s.offset && ::ftruncate(s.fd.get(), static_cast<off_t>(s.offset)) != 0)
    return fs::errno_error("ftruncate", path, errno);

  OUTPOST_TRY(ensure_hash_locked(s));
  const Digest actual = s.hash->finish();
  s.hash.reset();  // finish() consumed it; a retried commit re-hashes the file
  if (!(actual == expected)) {
    cancel_locked(s);
    return Error(Errc::DigestInvalid, "expected " + expected.str() + ", content is " + actual.str());
  }
  const Descriptor desc{expected, s.offset};

  // mtime = now: GC's orphan-file grace then counts from publish, not from
  // the last PATCH (the rename keeps the inode's mtime).
  if (::futimens(s.fd.get(), nullptr) != 0) return fs::errno_error("futimens", path, errno);
  OUTPOST_TRY(fs::fsync_fd(s.fd.get(), path));

  {
    std::shared_lock pub(publish_mu_);
    OUTPOST_TRY(blobs_.publish(path, expected));
    auto rec = meta_.record_blob(repo, desc, origin, s.id);
    if (!rec) {
      // The data file is now the blob: the session cannot be resumed.
      cancel_locked(s);
      return std::move(rec).error();
    }
  }
  s.fd.reset();
  (void)fs::remove_flat_dir(layout_.upload_dir(s.id));  // empty now; a leftover is swept as orphan
  s.dead = true;
  s.loaded = false;
  forget(s.id);
  return desc;
}

Result<uint64_t> Uploads::rewind(std::string_view repo, std::string_view id, uint64_t offset) {
  STORE_ASSIGN(auto sp, session(id));
  Session& s = *sp;
  std::lock_guard lk(s.mu);
  OUTPOST_TRY(check_repo_locked(s, repo));
  if (offset < s.durable || offset > s.offset)
    return Error(Errc::RangeInvalid, "cannot rewind upload at offset " + std::to_string(s.offset) + " (durable " +
                                         std::to_string(s.durable) + ") to " + std::to_string(offset));
  if (offset == s.offset) return s.offset;
  if (::ftruncate(s.fd.get(), static_cast<off_t>(offset)) != 0)
    return fs::errno_error("ftruncate", layout_.upload_data(s.id), errno);
  s.offset = offset;
  s.hash.reset();  // a SHA-256 state cannot be wound back
  return s.offset;
}

Status Uploads::cancel(std::string_view repo, std::string_view id) {
  STORE_ASSIGN(auto sp, session(id));
  Session& s = *sp;
  std::lock_guard lk(s.mu);
  OUTPOST_TRY(check_repo_locked(s, repo));
  cancel_locked(s);
  return {};
}

Result<bool> Uploads::expire(const UploadId& id, int64_t cutoff_ms) {
  STORE_ASSIGN(auto sp, session(id.str()));
  Session& s = *sp;
  std::lock_guard lk(s.mu);
  if (s.dead) return false;
  if (s.loaded && s.last_used > cutoff_ms) return false;
  cancel_locked(s);
  return true;
}

Result<size_t> Uploads::sweep_orphans(int64_t cutoff_ms) {
  const std::string dir = layout_.uploads_dir();
  // Collect names first (bounded by the uploads directory, not by blobs), so
  // that removal does not race readdir.
  auto listed = fs::list_dir(dir);
  if (!listed) return std::move(listed).error();
  const std::vector<std::string>& names = *listed;
  size_t removed = 0;
  for (const auto& name : names) {
    auto id = UploadId::parse(name);
    // Exclusive: create() holds this shared between mkdir and its row insert.
    std::unique_lock pub(publish_mu_);
    if (id) {
      auto row = meta_.get_upload(*id);
      if (row) continue;
      if (row.error().code != Errc::BlobUploadUnknown) return std::move(row).error();
    }
    const std::string path = dir + "/" + name;
    auto mt = fs::mtime_ms(path);
    if (!mt || *mt > cutoff_ms) continue;
    struct stat st {};
    if (::lstat(path.c_str(), &st) != 0) continue;
    bool ok = S_ISDIR(st.st_mode) ? fs::remove_flat_dir(path).ok() : fs::remove_file(path).ok();
    if (ok) {
      ++removed;
    } else {
      log::warn("cannot remove orphan upload entry", " path=" + log::quote(path));
    }
  }
  return removed;
}

}  // namespace outpost::store
