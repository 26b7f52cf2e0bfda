// One Fill: the single upstream fetch of one blob, written into a store
// upload session (hashed and written on the pool, in order, as it streams), served to every client that asks
// meanwhile from the session file by offset, and committed only when the
// digest matches. Slow clients read the file at their own pace and never
// slow the fill; a failed fill ends every client's response as broken.
//
//   Starting --session open--> Fetching --upstream done--> Committing --> Done
//       \____________________________\____________________________\----> Failed
#pragma once
#include <functional>
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
  /// Streams the blob to `ex` (late joiners start from byte 0 via the file).
  void subscribe(const http::ExchangePtr& ex, const std::string& local_repo);
  /// Background pulls (sync.keep): `fn` runs once, on the loop, when the
  /// fill is committed (Ok) or has failed (its error); at once when it
  /// already has. It holds no client and never slows the fill.
  void watch(std::function<void(Status)> fn);
  State state() const { return state_; }
  const Route& route() const { return route_; }
  const Digest& digest() const { return digest_; }
  /// The blob's size once the upstream said it (Content-Length).
  std::optional<uint64_t> total() const { return total_; }

 private:
  struct Sub {
    http::ExchangePtr ex;
    std::string repo;
    uint64_t sent = 0;
    bool started = false;
    bool waiting = false;  ///< blocked on the client's drain
  };
  struct Session;
  void on_session(Result<Session> s);
  void on_head(const http::ClientResponse& r);
  void on_data(std::string_view chunk);
  void on_appended(Result<uint64_t> r);
  void on_upstream_done(Status st);
  void commit();
  void fail(Error e);
  void pump(const std::shared_ptr<Sub>& s);
  void pump_all();
  void finish_sub(const std::shared_ptr<Sub>& s);
  void notify_watchers(const Status& st);

  storesvc::StoreService* store_;
  Route route_;
  Digest digest_;
  OnFinished on_finished_;
  State state_ = State::Starting;
  Error error_;
  std::string upload_id_;
  int read_fd_ = -1;
  /// Parent bytes queued for the file above which reading the parent pauses,
  /// and the level at which it resumes (bounds a fill's memory on a slow disk).
  static constexpr uint64_t kMaxQueuedBytes = 4 * 1024 * 1024;
  static constexpr uint64_t kResumeQueuedBytes = 1024 * 1024;
  uint64_t received_ = 0;  ///< bytes in the session file (what subscribers may read)
  uint64_t fetched_ = 0;   ///< bytes from the parent, handed to the session's appends (>= received_)
  bool upstream_done_ = false;
  std::optional<uint64_t> total_;
  upstream::UpstreamOpPtr op_;
  std::vector<std::shared_ptr<Sub>> subs_;
  std::vector<std::function<void(Status)>> watchers_;
};

}  // namespace outpost::cache
