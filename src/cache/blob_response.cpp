#include "cache/blob_response.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <optional>
#include <string>

#include "cache/fill.hpp"
#include "http/range.hpp"

namespace outpost::cache {

namespace {

/// Headers every blob answer carries, also a 416 (the digest names the
/// representation the range missed).
void add_blob_headers(const http::ExchangePtr& ex, const Digest& d, bool offline) {
  if (offline) ex->add_header("Outpost-Cache", "offline");
  ex->add_header("Docker-Content-Digest", d.str());
  ex->add_header("ETag", "\"" + d.str() + "\"");
  ex->add_header("Accept-Ranges", "bytes");
  ex->add_header("Cache-Control", "max-age=31536000");  // content by digest never changes
}

/// What part of a blob of `size` bytes the response carries.
struct Plan {
  int status = 200;
  uint64_t offset = 0;
  uint64_t length = 0;
};

/// Evaluates Range against `size` and adds the response's headers. Answers
/// 416 itself (nullopt) when the range cannot be satisfied.
std::optional<Plan> plan_response(const http::ExchangePtr& ex, const Digest& d, uint64_t size, bool offline) {
  add_blob_headers(ex, d, offline);
  auto range = http::evaluate_range(ex->req().headers.get("Range"), size);
  if (range.verdict == http::RangeVerdict::Unsatisfiable) {
    ex->add_header("Content-Range", "bytes */" + std::to_string(size));
    ex->respond_error(Errc::RangeInvalid, "range not satisfiable for a blob of " + std::to_string(size) + " bytes");
    return std::nullopt;
  }
  ex->add_header("Content-Type", "application/octet-stream");
  if (range.verdict == http::RangeVerdict::Partial) {
    const auto& br = range.range;
    ex->add_header("Content-Range", "bytes " + std::to_string(br.offset) + "-" +
                                        std::to_string(br.offset + br.length - 1) + "/" + std::to_string(size));
    return Plan{206, br.offset, br.length};
  }
  return Plan{200, 0, size};
}

/// One client reading a Fill: starts the response once the size is known
/// (or, for a plain GET of a chunked parent, once the parent answered),
/// streams what the session file holds, waits for more (Fill::watch) or for
/// the client (drain), and ends the response when the fill is verified.
class FillReader : public std::enable_shared_from_this<FillReader> {
 public:
  FillReader(http::ExchangePtr ex, std::shared_ptr<Fill> fill) : ex_(std::move(ex)), fill_(std::move(fill)) {}

  void start() {
    std::weak_ptr<FillReader> w = weak_from_this();
    // A client that leaves just stops reading; the fill goes on for the
    // others and for the cache.
    ex_->set_on_abort([w] {
      if (auto r = w.lock()) r->stop();
    });
    // Strong: the Fill holds its readers until it is Done or Failed (or the
    // reader stops), and a reader holds the Fill while it streams. A Fill
    // already Done or Failed changes no more and would never drop the watcher.
    if (fill_->state() != Fill::State::Done && fill_->state() != Fill::State::Failed) {
      auto self = shared_from_this();
      watch_ = fill_->watch([self] { self->on_change(); });
    }
    on_change();
  }

 private:
  void on_change() {
    if (stopped_) return;
    if (!ex_->alive()) return stop();
    // Failed after the verify (the publish failed): the bytes are right and
    // the reader's fd still holds them, so it goes on.
    if (fill_->state() == Fill::State::Failed && !fill_->verified()) {
      if (started_) ex_->abort();  // a short body: never a complete-looking wrong one
      else ex_->respond_error(fill_->error());
      return stop();
    }
    if (!started_ && !begin()) return;
    pump();
  }

  /// Starts the response when enough is known; false to wait.
  bool begin() {
    const bool done = fill_->verified();
    if (!done && !fill_->has_head()) return false;
    std::optional<uint64_t> size = fill_->total();
    if (!size && done) size = fill_->readable();
    const bool head = ex_->req().method == http::Method::Head;
    if (!size) {
      // A chunked parent: the size is known only at the end. A plain GET
      // streams chunked meanwhile; what needs the size waits for it.
      if (head || ex_->req().headers.get("Range")) return false;
      add_blob_headers(ex_, fill_->digest(), false);
      ex_->add_header("Content-Type", "application/octet-stream");
      ex_->begin_stream(200, std::nullopt);
      started_ = true;
      chunked_ = true;
      return true;
    }
    // An empty answer would look complete at once: not before the verify.
    if (*size == 0 && !done) return false;
    auto plan = plan_response(ex_, fill_->digest(), *size, false);
    if (!plan) {  // 416, answered
      stop();
      return false;
    }
    if (head) {
      ex_->respond_head_only(plan->status, plan->length);
      stop();
      return false;
    }
    ex_->begin_stream(plan->status, plan->length);
    started_ = true;
    pos_ = plan->offset;
    end_ = plan->offset + plan->length;
    return true;
  }

  void pump() {
    if (waiting_ || stopped_) return;
    const bool done = fill_->verified();
    uint64_t limit = fill_->readable();
    if (!chunked_) {
      limit = std::min(limit, end_);
      // Until the digest is verified, hold back the response's last byte
      // (and a chunked response's final chunk, below), so a failed fill can
      // only ever look like a broken response.
      if (!done && limit == end_ && limit > pos_) limit -= 1;
    }
    if (pos_ < limit) {
      // The region goes out with sendfile from the session file: a fill's
      // bytes are not copied through the loop thread (issue #14: a cold
      // 64 MiB layer ran at a fifth of the parent's speed, the loop busy
      // copying). Each region holds its own descriptor, so a region still
      // queued when this reader or the Fill goes away stays readable.
      const int fd = ::fcntl(fill_->read_fd(), F_DUPFD_CLOEXEC, 0);
      if (fd < 0) {
        ex_->abort();
        return stop();
      }
      const uint64_t at = pos_;
      pos_ = limit;
      if (!ex_->write_file(fd, at, limit - at)) {
        if (!ex_->alive()) return stop();
        waiting_ = true;
        // Strong: a waiting client keeps the reader (and through it the
        // Fill and its fd) alive after the fill table let go of the Fill;
        // the reference goes with the Exchange.
        auto self = shared_from_this();
        ex_->set_on_drain([self] {
          self->waiting_ = false;
          self->on_change();
        });
        return;
      }
    }
    if (done && pos_ == (chunked_ ? fill_->readable() : end_)) {
      ex_->end_stream();
      stop();
    }
  }

  void stop() {
    if (stopped_) return;
    stopped_ = true;
    if (watch_) fill_->unwatch(watch_);
    watch_ = 0;
  }

  http::ExchangePtr ex_;
  std::shared_ptr<Fill> fill_;
  uint64_t watch_ = 0;
  uint64_t pos_ = 0;  ///< next byte of the blob to send
  uint64_t end_ = 0;  ///< one past the last byte to send (not chunked)
  bool started_ = false;
  bool chunked_ = false;
  bool waiting_ = false;  ///< blocked on the client's drain
  bool stopped_ = false;
};

}  // namespace

BlobSource BlobSource::file(Digest d, store::UniqueFd fd, uint64_t size, bool offline) {
  BlobSource s;
  s.kind = Kind::File;
  s.digest = std::move(d);
  s.fd = std::move(fd);
  s.size = size;
  s.offline = offline;
  return s;
}

BlobSource BlobSource::growing(Digest d, std::shared_ptr<Fill> fill) {
  BlobSource s;
  s.kind = Kind::Fill;
  s.digest = std::move(d);
  s.fill = std::move(fill);
  return s;
}

BlobSource BlobSource::head_only(Digest d, uint64_t size, bool offline) {
  BlobSource s;
  s.kind = Kind::HeadOnly;
  s.digest = std::move(d);
  s.size = size;
  s.offline = offline;
  return s;
}

BlobSource BlobSource::memory(Digest d, std::shared_ptr<const std::string> bytes, bool offline) {
  BlobSource s;
  s.kind = Kind::Memory;
  s.digest = std::move(d);
  s.size = bytes->size();
  s.bytes = std::move(bytes);
  s.offline = offline;
  return s;
}

void respond_blob(const http::ExchangePtr& ex, BlobSource src) {
  switch (src.kind) {
    case BlobSource::Kind::File: {
      auto plan = plan_response(ex, src.digest, src.size, src.offline);
      if (!plan) return;
      // respond_file sends the head only for HEAD, and closes the fd.
      return ex->respond_file(plan->status, src.fd.release(), plan->offset, plan->length);
    }
    case BlobSource::Kind::HeadOnly: {
      auto plan = plan_response(ex, src.digest, src.size, src.offline);
      if (!plan) return;
      return ex->respond_head_only(plan->status, plan->length);
    }
    case BlobSource::Kind::Memory: {
      auto plan = plan_response(ex, src.digest, src.size, src.offline);
      if (!plan) return;
      // Head and body leave in one write (respond drops the body for HEAD).
      return ex->respond(plan->status, src.bytes->substr(plan->offset, plan->length));
    }
    case BlobSource::Kind::Fill: {
      if (src.fill->state() == Fill::State::Failed) return ex->respond_error(src.fill->error());
      auto reader = std::make_shared<FillReader>(ex, std::move(src.fill));
      reader->start();
      return;
    }
  }
}

}  // namespace outpost::cache
