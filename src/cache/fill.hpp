// One Fill: the single upstream fetch of one blob, written into a store
// upload session (hashed and written on the pool, in order, as it streams),
// and committed only when the digest matches. It is a growing readable
// source: clients read the session file by offset at their own pace
// (cache/blob_response.cpp turns it into a response, Range included), watch
// it for progress, and so never slow the fill; a failed fill is seen by every
// reader, which ends its response as broken.
//
//   Starting --start()--> Fetching --upstream done + session open + appends--> Committing --> Done
//       \____________________________\_____________________________________________\----> Failed
// (start() asks the parent and creates the session in parallel.)
#pragma once
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "base/digest.hpp"
#include "cache/route.hpp"
#include "http/exchange.hpp"
#include "upstream/registry_client.hpp"

namespace outpost::storesvc { class StoreService; }

namespace outpost::cache {

class Fill : public std::enable_shared_from_this<Fill> {
 public:
  enum class State { Starting, Fetching, Committing, Done, Failed };
  using OnFinished = std::function<void(Fill*)>;

  /// `store` must outlive the Fill and its store jobs.
  Fill(storesvc::StoreService* store, Route route, Digest digest, OnFinished on_finished);
  ~Fill();
  void start();
  State state() const { return state_; }
  const Digest& digest() const { return digest_; }
  /// The blob's size once the upstream said it (Content-Length).
  std::optional<uint64_t> total() const { return total_; }

  // ---- readers (loop thread) ---------------------------------------------
  /// The parent answered 200: the size is known (total()) or it never will
  /// be before Done (a chunked parent).
  bool has_head() const { return headed_; }
  /// Bytes in the session file, readable at [0, readable()) through
  /// read_fd() with pread. Not verified before state() == Done.
  uint64_t readable() const { return received_; }
  int read_fd() const { return read_fd_; }
  /// The bytes hash to the digest: readers may finish (the durable publish
  /// may still be running, and may even fail: the bytes stay right).
  bool verified() const { return verified_ || state_ == State::Done; }
  /// Why it failed (state() == Failed).
  const Error& error() const { return error_; }
  using Watcher = std::function<void()>;
  /// Calls `w` on the loop after every change (head, bytes, Done, Failed).
  /// Watchers are dropped after Done or Failed (nothing changes any more).
  uint64_t watch(Watcher w);
  void unwatch(uint64_t id) { watchers_.erase(id); }
  /// A client of `repo` reads this blob: it is linked there as well when the
  /// fill commits, or at once if it has (the fill's own repository is
  /// route.local_repo). The caller made sure `repo` holds the blob upstream.
  void add_reader_repo(const std::string& repo);
  /// Whether clients of `repo` may read this fill without asking the parent:
  /// its own repository, or one added with add_reader_repo. A blob is
  /// readable through the repositories that hold it, not through any.
  bool serves_repo(const std::string& repo) const;
  /// Where it is fetched from and committed to.
  const Route& route() const { return route_; }

 private:
  struct Session;
  void on_session(Result<Session> s);
  void on_head(const http::ClientResponse& r);
  void on_data(std::string_view chunk);
  void on_appended(Result<uint64_t> r, std::shared_ptr<std::string> bytes);
  /// Hands pending_ to the session's queue as one append.
  void append_pending();
  void on_upstream_done(Status st);
  void commit();
  /// After the commit: links the repositories that joined during it, then Done.
  void link_late_repos();
  void fail(Error e);
  /// Calls every watcher; after a terminal state, drops them all.
  void notify();

  storesvc::StoreService* store_;
  Route route_;
  Digest digest_;
  OnFinished on_finished_;
  State state_ = State::Starting;
  Error error_;
  std::string upload_id_;
  int read_fd_ = -1;
  /// Parent bytes queued for the next append above which reading the parent
  /// pauses until that queue goes to the pool (bounds a fill's memory on a
  /// slow disk). A fill holds up to twice this (an append in flight and the
  /// next queue), and a cold pull runs several at once: 4 MiB put a 162 MiB
  /// pull at 35 MiB RSS; 1 MiB keeps it at 23 MiB, no slower
  /// (docs/architecture.md).
  static constexpr uint64_t kMaxQueuedBytes = 1024 * 1024;
  /// What may still arrive after the pause (reads already under way).
  static constexpr uint64_t kReadSlackBytes = 256 * 1024;
  uint64_t received_ = 0;  ///< bytes in the session file (what subscribers may read)
  uint64_t fetched_ = 0;   ///< bytes from the parent, handed to the session's appends (>= received_)
  bool upstream_done_ = false;
  std::shared_ptr<std::string> pending_;  ///< parent bytes waiting for the append in flight
  uint64_t pending_at_ = 0;               ///< session offset of pending_'s first byte
  std::shared_ptr<std::string> spare_;    ///< an appended buffer, kept for the next queue
  bool appending_ = false;                ///< an append job is in flight
  std::optional<uint64_t> total_;
  bool headed_ = false;
  bool verified_ = false;
  upstream::UpstreamOpPtr op_;
  std::map<uint64_t, Watcher> watchers_;
  uint64_t next_watch_ = 1;
  std::vector<std::string> other_repos_;
  std::vector<std::string> late_repos_;  ///< joined while Committing: linked after the commit
};

}  // namespace outpost::cache
