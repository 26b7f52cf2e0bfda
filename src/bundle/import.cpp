#include "bundle/import.hpp"

#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "base/reference.hpp"
#include "bundle/entries.hpp"
#include "bundle/json_text.hpp"
#include "bundle/plan.hpp"
#include "oci/manifest.hpp"
#include "store/store.hpp"

namespace outpost::bundle {

using nlohmann::json;

namespace {

constexpr size_t kChunk = 1 << 20;                  // blob copy buffer
constexpr uint64_t kMaxJson = 64ull * 1024 * 1024;  // index.json, manifest.json, one manifest

std::string entry_msg(const std::string& name, const std::string& what) { return "entry \"" + name + "\": " + what; }

/// "docker.io/library/alpine:3.19" -> {"library/alpine", "3.19"}; a first
/// component that looks like a host (has '.' or ':', or is localhost) is
/// dropped, since the importing site is the registry now.
bool split_reference(std::string_view ref, std::string& repo, std::string& tag) {
  size_t at = ref.find('@');
  if (at != std::string_view::npos) ref = ref.substr(0, at);
  size_t colon = ref.rfind(':');
  size_t slash = ref.rfind('/');
  if (colon != std::string_view::npos && (slash == std::string_view::npos || colon > slash)) {
    tag = std::string(ref.substr(colon + 1));
    ref = ref.substr(0, colon);
  } else {
    tag = "latest";
  }
  size_t first = ref.find('/');
  if (first != std::string_view::npos) {
    std::string_view host = ref.substr(0, first);
    if (host.find('.') != std::string_view::npos || host.find(':') != std::string_view::npos || host == "localhost")
      ref = ref.substr(first + 1);
  }
  repo = std::string(ref);
  return valid_repository_name(repo) && valid_tag(tag);
}

struct Root {
  std::string repo;
  std::optional<std::string> tag;
  Digest digest;
};

struct ManifestNode {
  bool loaded = false;
  std::string bytes;
  oci::ParsedManifest parsed;
  std::string media_type;  ///< from the descriptor that named it (may be empty)
  std::set<std::string> repos;
  std::string named_by;    ///< for messages
};

struct BlobNeed {
  std::set<std::string> repos;
  std::string named_by;
  bool done = false;
};

/// docker save: one image of manifest.json.
struct DockerImage {
  std::string config;               ///< entry name
  std::vector<std::string> layers;  ///< entry names
  std::vector<std::pair<std::string, std::string>> refs;  ///< (repo, tag)
};

struct DockerFile {
  std::set<std::string> repos;
  bool done = false;
  Digest digest;
  uint64_t size = 0;
  bool gzip = false;
};

class Importer {
 public:
  Importer(store::Store& s, const std::vector<std::string>& inputs, const ImportOptions& o)
      : s_(s), inputs_(inputs), o_(o) {
    buf_.resize(kChunk);
    pr_.phase = "import";
  }

  Result<ImportReport> run() {
    for (int pass = 0; pass < kMaxPasses; ++pass) {
      rep_.passes = pass + 1;
      deferred_ = false;
      const bool index_at_start = have_index_;
      const size_t loaded_before = loaded_;
      OUTPOST_TRY(read_pass());
      if (!have_index_ && !docker_json_.empty() && !docker_planned_) {
        OUTPOST_TRY(plan_docker());
        continue;  // the layers come in the next pass
      }
      if (!have_index_ && docker_json_.empty())
        return Error(Errc::BadRequest, "not a bundle: neither index.json (OCI layout) nor manifest.json (docker save) found");
      if (have_index_) {
        OUTPOST_TRY(manifests_from_store());
        if (pending_ > 0) {
          // Another pass helps only if this one could still find manifests.
          if (deferred_ && !(index_at_start && loaded_ == loaded_before)) continue;
          OUTPOST_TRY(missing_manifest());
          return Error(Errc::Internal, "manifest plan inconsistent");
        }
        if (deferred_ && !blobs_done()) continue;
        OUTPOST_TRY(blobs_from_store());
        OUTPOST_TRY(commit_oci());
        rep_.format = "oci";
        return rep_;
      }
      // docker save
      for (const auto& [name, f] : docker_files_)
        if (!f.done) {
          if (deferred_) break;
          return Error(Errc::BadRequest, entry_msg(name, "named by manifest.json but not in the archive"));
        }
      if (!docker_all_done()) continue;
      OUTPOST_TRY(commit_docker());
      rep_.format = "docker-save";
      return rep_;
    }
    return Error(Errc::BadRequest, "the bundle's entries are in an order that needs more than " +
                                       std::to_string(kMaxPasses) + " passes (manifests after what they name)");
  }

 private:
  // ---- reading ---------------------------------------------------------
  Status read_pass() {
    auto r = open_entries(inputs_);
    if (!r) return std::move(r).error();
    entries_ = std::move(*r);
    for (size_t guard = 0; guard < (size_t{1} << 40); ++guard) {
      auto e = entries_->next();
      if (!e) return std::move(e).error();
      if (!*e) break;
      const EntryInfo& info = **e;
      if (!info.link.empty()) links_[info.name] = info.link;
      if (!info.regular) continue;
      OUTPOST_TRY(entry(info));
    }
    entries_.reset();
    return {};
  }

  Result<std::string> read_small(const EntryInfo& e, uint64_t max) {
    if (e.size > max) return Error(Errc::BadRequest, entry_msg(e.name, "larger than " + std::to_string(max) + " bytes"));
    std::string out;
    out.reserve(e.size);
    for (uint64_t guard = 0; guard <= max + 1; ++guard) {  // every read gives at least a byte, or 0 at the end
      auto n = entries_->read(buf_.data(), buf_.size());
      if (!n) return std::move(n).error();
      if (*n == 0) break;
      if (out.size() + *n > max) return Error(Errc::BadRequest, entry_msg(e.name, "larger than expected"));
      out.append(buf_.data(), *n);
    }
    if (out.size() != e.size) return Error(Errc::BadRequest, entry_msg(e.name, "shorter than its header says (truncated)"));
    return out;
  }

  static std::optional<Digest> blob_digest(const std::string& name) {
    if (name.rfind("blobs/", 0) != 0) return std::nullopt;
    std::string_view rest = std::string_view(name).substr(6);
    size_t slash = rest.find('/');
    if (slash == std::string_view::npos) return std::nullopt;
    auto d = Digest::parse(std::string(rest.substr(0, slash)) + ":" + std::string(rest.substr(slash + 1)));
    if (!d) return std::nullopt;
    return *d;
  }

  Status entry(const EntryInfo& e) {
    if (e.name == "index.json") {
      if (have_index_) return {};
      auto text = read_small(e, kMaxJson);
      if (!text) return std::move(text).error();
      return plan_index(e.name, *text);
    }
    if (e.name == "manifest.json") {
      if (!docker_json_.empty() || have_index_) return {};
      auto text = read_small(e, kMaxJson);
      if (!text) return std::move(text).error();
      docker_json_ = std::move(*text);
      return {};
    }
    if (docker_planned_) {
      auto it = docker_files_.find(e.name);
      if (it != docker_files_.end() && !it->second.done) return store_docker_file(e, it->second);
      return {};
    }
    auto d = blob_digest(e.name);
    if (!d) {
      if (e.name.rfind("blobs/", 0) == 0 && !have_index_) deferred_ = true;  // maybe docker's own blobs
      return {};
    }
    auto m = manifests_.find(d->str());
    if (m != manifests_.end()) {
      if (!m->second.loaded) {
        // The registry's own limit: a bigger manifest could never be served
        // (413) nor exported again.
        if (e.size > o_.max_manifest_bytes)
          return Error(Errc::ManifestTooLarge, entry_msg(e.name, "manifest of " + std::to_string(e.size) +
                                                                     " bytes is over registry.max_manifest_bytes (" +
                                                                     std::to_string(o_.max_manifest_bytes) + ")"));
        auto bytes = read_small(e, kMaxJson);
        if (!bytes) return std::move(bytes).error();
        Digest got = Digest::sha256_of(*bytes);
        if (!(got == *d))
          return Error(Errc::DigestInvalid, entry_msg(e.name, "bytes hash to " + got.str() + "; refusing the bundle"));
        return load_manifest(*d, std::move(*bytes), e.name);
      }
      return {};
    }
    if (!have_index_ || pending_ > 0) {
      // Cannot tell yet whether this is a blob or a manifest named by one
      // not read so far: read it again in the next pass.
      deferred_ = true;
      return {};
    }
    auto b = blobs_.find(d->str());
    if (b == blobs_.end() || b->second.done) return {};  // not needed, or a duplicate
    return store_blob(e, *d, b->second);
  }

  // ---- OCI plan ----------------------------------------------------------
  Status plan_index(const std::string& name, const std::string& text) {
    if (!oci::json_nesting_within(text))
      return Error(Errc::BadRequest, entry_msg(name, "nests deeper than " + std::to_string(oci::kMaxJsonNesting) + " levels"));
    json j = json::parse(text, nullptr, false);
    if (!j.is_object() || !j.contains("manifests") || !j["manifests"].is_array())
      return Error(Errc::BadRequest, entry_msg(name, "not an OCI image index (no manifests list)"));
    size_t i = 0;
    for (const auto& m : j["manifests"]) {
      const std::string where = "index.json entry " + std::to_string(i++);
      if (!m.is_object()) return Error(Errc::BadRequest, where + ": not a descriptor");
      auto d = Digest::parse(text_or_empty(m, "digest"));
      if (!d) return Error(Errc::BadRequest, where + ": " + d.error().message());
      json ann = m.contains("annotations") && m["annotations"].is_object() ? m["annotations"] : json::object();
      std::string repo = text_or_empty(ann, kRepoAnnotation);
      std::string ref = text_or_empty(ann, kRefNameAnnotation);
      std::optional<std::string> tag;
      std::string r2, t2;
      if (!ref.empty()) {
        if (valid_tag(ref)) tag = ref;
        else if (split_reference(ref, r2, t2)) {
          tag = t2;
          if (repo.empty()) repo = r2;
        } else {
          return Error(Errc::BadRequest, where + ": ref.name \"" + ref + "\" is neither a tag nor repository:tag");
        }
      }
      // containerd and docker (25+) name the image here.
      if (repo.empty() && ann.contains("io.containerd.image.name") && split_reference(text_or_empty(ann, "io.containerd.image.name"), r2, t2)) {
        repo = r2;
        if (!tag) tag = t2;
      }
      if (repo.empty()) repo = o_.default_repo;
      if (repo.empty())
        return Error(Errc::BadRequest, where + " (" + d->str() + ") names no repository (annotation " + kRepoAnnotation +
                                           "): give --repo NAME");
      if (!valid_repository_name(repo)) return Error(Errc::NameInvalid, where + ": invalid repository name \"" + repo + "\"");
      if (tag && !valid_tag(*tag)) return Error(Errc::TagInvalid, where + ": invalid tag \"" + *tag + "\"");
      roots_.push_back({repo, tag, *d});
      want(*d, repo, text_or_empty(m, "mediaType"), where);
    }
    have_index_ = true;
    return {};
  }

  void want(const Digest& d, const std::string& repo, const std::string& media_type, const std::string& named_by) {
    auto [it, fresh] = manifests_.try_emplace(d.str());
    ManifestNode& n = it->second;
    if (fresh) {
      ++pending_;
      n.media_type = media_type;
      n.named_by = named_by;
    }
    if (!n.repos.insert(repo).second) return;
    if (n.loaded) propagate(d, n, repo);
  }

  void propagate(const Digest& d, ManifestNode& n, const std::string& repo) {
    for (const auto& r : n.parsed.refs) {
      if (r.is_manifest) {
        want(r.digest, repo, "", "manifest " + d.str());
      } else if (r.required) {
        auto& b = blobs_[r.digest.str()];
        if (b.named_by.empty()) b.named_by = "manifest " + d.str() + " of " + repo;
        b.repos.insert(repo);
      }
    }
  }

  Status load_manifest(const Digest& d, std::string bytes, const std::string& where) {
    ManifestNode& n = manifests_[d.str()];
    auto parsed = oci::parse_manifest(bytes, n.media_type);
    if (!parsed) return Error(parsed.error().code, entry_msg(where, parsed.error().message()));
    n.parsed = std::move(*parsed);
    n.bytes = std::move(bytes);
    n.loaded = true;
    --pending_;
    ++loaded_;
    const std::set<std::string> repos = n.repos;  // propagate may grow the map, not this node's set
    for (const auto& r : repos) propagate(d, manifests_[d.str()], r);
    return {};
  }

  /// Manifests the bundle does not carry but the store holds (a bundle
  /// made by hand; Outpost's exports always carry their manifests).
  Status manifests_from_store() {
    for (int round = 0; round < 64 && pending_ > 0; ++round) {
      bool progress = false;
      std::vector<std::string> todo;
      for (const auto& [d, n] : manifests_)
        if (!n.loaded) todo.push_back(d);
      for (const auto& ds : todo) {
        auto d = Digest::parse(ds);
        const auto repos = manifests_[ds].repos;
        for (const auto& repo : repos) {
          auto bytes = s_.read_manifest(repo, *d);
          if (!bytes) continue;
          OUTPOST_TRY(load_manifest(*d, std::move(*bytes), "store " + repo + "@" + ds));
          progress = true;
          break;
        }
      }
      if (!progress) break;
    }
    return {};
  }

  Status missing_manifest() {
    for (const auto& [d, n] : manifests_)
      if (!n.loaded)
        return Error(Errc::ManifestBlobUnknown, "manifest " + d + " (named by " + n.named_by +
                                                    ") is neither in the bundle nor in this store; nothing was committed");
    return {};
  }

  bool blobs_done() const {
    for (const auto& [d, b] : blobs_)
      if (!b.done) return false;
    return true;
  }

  void tick(uint64_t bytes) {
    pr_.bytes_done += bytes;
    if (o_.progress) o_.progress(pr_);
  }

  // ---- storing blobs ---------------------------------------------------
  /// Streams the entry into an upload session of `repo`; returns the
  /// digest its bytes have (hashed as they stream). Cancels the session on
  /// any failure.
  Result<store::Descriptor> upload(const EntryInfo& e, const std::string& repo, const std::optional<Digest>& expected,
                                   bool* gzip = nullptr) {
    // Internal: no client ever holds this session's id, so a process killed
    // mid-import leaves nothing for upload_ttl (24 h) to find; the next
    // store open removes it.
    auto id = s_.start_upload(repo, /*internal=*/true);
    if (!id) return Error(id.error().code, entry_msg(e.name, id.error().message()));
    uint64_t off = 0;
    auto fail = [&](Error err) -> Error {
      (void)s_.cancel_upload(repo, *id);
      return err;
    };
    for (uint64_t guard = 0; guard <= e.size + 1; ++guard) {  // every read gives at least a byte, or 0 at the end
      auto n = entries_->read(buf_.data(), buf_.size());
      if (!n) return fail(std::move(n).error());
      if (*n == 0) break;
      if (off == 0 && gzip) *gzip = *n >= 2 && static_cast<unsigned char>(buf_[0]) == 0x1f && static_cast<unsigned char>(buf_[1]) == 0x8b;
      auto r = s_.append_upload(repo, *id, off, std::string_view(buf_.data(), *n));
      if (!r) return fail(Error(r.error().code, entry_msg(e.name, r.error().message())));
      off += *n;
      tick(*n);
    }
    if (off != e.size) return fail(Error(Errc::BadRequest, entry_msg(e.name, "shorter than its header says (truncated)")));
    Digest target;
    if (expected) {
      target = *expected;
    } else {
      auto got = s_.upload_digest(repo, *id);
      if (!got) return fail(Error(got.error().code, entry_msg(e.name, got.error().message())));
      target = *got;
    }
    // The verified commit of a push (PUT ?digest=): publishes only when the
    // bytes hash to `target`; a mismatch cancels the session.
    auto c = s_.commit_upload(repo, *id, target, store::Origin::Pushed);
    if (!c) {
      if (c.error().code == Errc::DigestInvalid)
        return Error(Errc::DigestInvalid, entry_msg(e.name, "bytes do not hash to " + target.str() + "; refusing the bundle"));
      return fail(Error(c.error().code, entry_msg(e.name, c.error().message())));
    }
    ++rep_.blobs_stored;
    rep_.bytes_stored += off;
    ++pr_.items_done;
    return *c;
  }

  Status link_all(const Digest& d, const std::set<std::string>& repos) {
    for (const auto& repo : repos) {
      auto st = s_.link_blob(repo, d, store::Origin::Pushed);
      if (!st) return Error(st.error().code, repo + "@" + d.str() + ": " + st.error().message());
    }
    return {};
  }

  Status store_blob(const EntryInfo& e, const Digest& d, BlobNeed& b) {
    // Already held (a re-import, or content the site pulled): link, skip the bytes.
    if (s_.link_blob(*b.repos.begin(), d, store::Origin::Pushed)) {
      OUTPOST_TRY(link_all(d, b.repos));
      ++rep_.blobs_held;
      b.done = true;
      return {};
    }
    auto c = upload(e, *b.repos.begin(), d);
    if (!c) return std::move(c).error();
    OUTPOST_TRY(link_all(d, b.repos));
    b.done = true;
    return {};
  }

  /// Blobs the bundle left out (incremental export): the store must hold them.
  Status blobs_from_store() {
    for (auto& [ds, b] : blobs_) {
      if (b.done) continue;
      auto d = Digest::parse(ds);
      auto st = s_.link_blob(*b.repos.begin(), *d, store::Origin::Pushed);
      if (!st) {
        if (st.error().code == Errc::BlobUnknown)
          return Error(Errc::ManifestBlobUnknown, "blob " + ds + " (named by " + b.named_by +
                                                      ") is neither in the bundle nor in this store; no manifest or tag was committed");
        return st;
      }
      OUTPOST_TRY(link_all(*d, b.repos));
      ++rep_.blobs_held;
      b.done = true;
    }
    return {};
  }

  // ---- committing manifests and tags ---------------------------------------
  Status put(const std::string& repo, const Digest& d, const std::optional<std::string>& tag) {
    ManifestNode& n = manifests_[d.str()];
    store::ManifestPut m;
    m.repo = repo;
    m.digest = d;
    m.media_type = n.parsed.media_type;
    for (const auto& r : n.parsed.refs) m.refs.push_back({r.digest, r.required, r.is_manifest});
    m.subject = n.parsed.subject;
    m.artifact_type = n.parsed.artifact_type;
    m.annotations = n.parsed.annotations;
    m.tag = tag;
    m.origin = store::Origin::Pushed;
    auto info = s_.put_manifest(m, n.bytes);
    if (!info)
      return Error(info.error().code, repo + (tag ? ":" + *tag : "@" + d.str()) + ": " + info.error().message());
    ++rep_.manifests;
    if (tag) ++rep_.tags;
    return {};
  }

  /// Children first, so every put finds what it names (the depth was
  /// bounded by check_depth before the first put).
  Status commit_tree(const std::string& repo, const Digest& d, const std::optional<std::string>& tag) {
    const std::string key = repo + "@" + d.str();
    if (committed_.count(key)) {
      if (!tag) return {};
      auto st = s_.put_tag(repo, *tag, d, store::Origin::Pushed);
      if (!st) return Error(st.error().code, repo + ":" + *tag + ": " + st.error().message());
      ++rep_.tags;
      return {};
    }
    for (const auto& r : manifests_[d.str()].parsed.refs)
      if (r.is_manifest) OUTPOST_TRY(commit_tree(repo, r.digest, std::nullopt));
    OUTPOST_TRY(put(repo, d, tag));
    committed_.insert(key);
    return {};
  }

  /// The nesting limit, checked for every root before anything commits: a
  /// refused bundle commits nothing (a deep second root used to be refused
  /// after the first root's tags were in). `seen`: the shallowest depth each
  /// manifest was checked at.
  Status check_depth(const Digest& d, int depth, std::map<std::string, int>& seen) {
    if (depth > 16) return Error(Errc::ManifestInvalid, "manifest " + d.str() + ": nesting deeper than 16");
    auto [it, fresh] = seen.emplace(d.str(), depth);
    if (!fresh && it->second <= depth) return {};
    it->second = depth;
    for (const auto& r : manifests_[d.str()].parsed.refs)
      if (r.is_manifest) OUTPOST_TRY(check_depth(r.digest, depth + 1, seen));
    return {};
  }

  Status commit_oci() {
    std::map<std::string, int> seen;
    for (const auto& r : roots_) OUTPOST_TRY(check_depth(r.digest, 0, seen));
    for (const auto& r : roots_) OUTPOST_TRY(commit_tree(r.repo, r.digest, r.tag));
    return {};
  }

  // ---- docker save ---------------------------------------------------------
  Status plan_docker() {
    json j = parse_bounded(docker_json_);
    if (!j.is_array()) return Error(Errc::BadRequest, entry_msg("manifest.json", "not a docker save manifest (a list)"));
    size_t i = 0;
    for (const auto& img : j) {
      const std::string where = "manifest.json image " + std::to_string(i++);
      if (!img.is_object() || !img.contains("Config") || !img["Config"].is_string() || !img.contains("Layers") ||
          !img["Layers"].is_array())
        return Error(Errc::BadRequest, where + ": no Config or Layers");
      DockerImage di;
      auto cfg = safe_entry_name(img["Config"].get<std::string>());
      if (!cfg) return std::move(cfg).error();
      di.config = follow(*cfg);
      for (const auto& l : img["Layers"]) {
        if (!l.is_string()) return Error(Errc::BadRequest, where + ": a layer that is not a path");
        auto ln = safe_entry_name(l.get<std::string>());
        if (!ln) return std::move(ln).error();
        di.layers.push_back(follow(*ln));
      }
      if (img.contains("RepoTags") && img["RepoTags"].is_array())
        for (const auto& rt : img["RepoTags"]) {
          std::string repo, tag;
          if (!rt.is_string() || !split_reference(rt.get<std::string>(), repo, tag))
            return Error(Errc::BadRequest, where + ": RepoTags entry is not repository:tag");
          di.refs.emplace_back(repo, tag);
        }
      if (di.refs.empty()) {
        if (o_.default_repo.empty()) return Error(Errc::BadRequest, where + " has no RepoTags: give --repo NAME");
        di.refs.emplace_back(o_.default_repo, "latest");
      }
      for (const auto& [repo, tag] : di.refs) {
        docker_files_[di.config].repos.insert(repo);
        for (const auto& l : di.layers) docker_files_[l].repos.insert(repo);
      }
      docker_images_.push_back(std::move(di));
    }
    docker_planned_ = true;
    return {};
  }

  /// An entry name through the archive's links (docker save links a layer
  /// shared by two images to the first copy), a few hops at most.
  std::string follow(std::string name) const {
    for (int hop = 0; hop < 8; ++hop) {
      auto it = links_.find(name);
      if (it == links_.end()) break;
      name = it->second;
    }
    return name;
  }

  Status store_docker_file(const EntryInfo& e, DockerFile& f) {
    auto c = upload(e, *f.repos.begin(), std::nullopt, &f.gzip);
    if (!c) return std::move(c).error();
    OUTPOST_TRY(link_all(c->digest, f.repos));
    f.digest = c->digest;
    f.size = c->size;
    f.done = true;
    return {};
  }

  bool docker_all_done() const {
    for (const auto& [n, f] : docker_files_)
      if (!f.done) return false;
    return true;
  }

  /// A Docker v2 schema 2 manifest naming the config and the layers as they
  /// are in the archive (uncompressed tars, as docker save writes them).
  /// What docker load checks, before anything commits: each uncompressed
  /// layer is the tar its config's rootfs.diff_ids names (its digest), and
  /// a file stored as blobs/sha256/<hex> has that digest.
  Status verify_docker() {
    for (const auto& [name, f] : docker_files_) {
      auto named = blob_digest(name);
      if (named && !(*named == f.digest))
        return Error(Errc::DigestInvalid, entry_msg(name, "bytes hash to " + f.digest.str() + "; refusing the bundle"));
    }
    for (const auto& di : docker_images_) {
      const DockerFile& cfg = docker_files_[di.config];
      auto text = s_.blobs().read_all(cfg.digest, kMaxJson);
      if (!text) return Error(text.error().code, entry_msg(di.config, text.error().message()));
      json c = parse_bounded(*text);
      const json* ids = nullptr;
      if (c.is_object() && c.contains("rootfs") && c["rootfs"].is_object() && c["rootfs"].contains("diff_ids") &&
          c["rootfs"]["diff_ids"].is_array())
        ids = &c["rootfs"]["diff_ids"];
      if (!ids || ids->size() != di.layers.size())
        return Error(Errc::ManifestInvalid,
                     entry_msg(di.config, "its rootfs.diff_ids do not list the image's " +
                                              std::to_string(di.layers.size()) + " layers"));
      for (size_t i = 0; i < di.layers.size(); ++i) {
        const DockerFile& f = docker_files_[di.layers[i]];
        if (f.gzip) continue;  // its diff_id is the digest of the decompressed tar
        const std::string want = (*ids)[i].is_string() ? (*ids)[i].get<std::string>() : std::string();
        if (want != f.digest.str())
          return Error(Errc::DigestInvalid,
                       entry_msg(di.layers[i], "layer " + std::to_string(i) + " hashes to " + f.digest.str() +
                                                   ", but the image config's rootfs.diff_ids[" + std::to_string(i) +
                                                   "] is " + (want.empty() ? "not a digest" : want)));
      }
    }
    return {};
  }

  Status commit_docker() {
    OUTPOST_TRY(verify_docker());
    for (const auto& di : docker_images_) {
      const DockerFile& cfg = docker_files_[di.config];
      json layers = json::array();
      for (const auto& l : di.layers) {
        const DockerFile& f = docker_files_[l];
        layers.push_back({{"mediaType", f.gzip ? "application/vnd.docker.image.rootfs.diff.tar.gzip"
                                               : "application/vnd.docker.image.rootfs.diff.tar"},
                          {"size", f.size},
                          {"digest", f.digest.str()}});
      }
      json m = {{"schemaVersion", 2},
                {"mediaType", std::string(oci::kDockerManifest)},
                {"config", {{"mediaType", "application/vnd.docker.container.image.v1+json"},
                            {"size", cfg.size},
                            {"digest", cfg.digest.str()}}},
                {"layers", layers}};
      std::string bytes = m.dump(3);
      Digest d = Digest::sha256_of(bytes);
      auto& node = manifests_[d.str()];
      if (!node.loaded) {
        auto parsed = oci::parse_manifest(bytes, oci::kDockerManifest);
        if (!parsed) return std::move(parsed).error();
        node.parsed = std::move(*parsed);
        node.bytes = bytes;
        node.loaded = true;
      }
      for (const auto& [repo, tag] : di.refs) OUTPOST_TRY(commit_tree(repo, d, tag));
    }
    return {};
  }

  store::Store& s_;
  const std::vector<std::string>& inputs_;
  const ImportOptions& o_;
  ImportReport rep_;
  Progress pr_;
  std::vector<char> buf_;
  std::unique_ptr<EntryReader> entries_;
  bool deferred_ = false;

  bool have_index_ = false;
  std::vector<Root> roots_;
  std::map<std::string, ManifestNode> manifests_;  ///< digest -> node
  size_t pending_ = 0;                              ///< wanted, not loaded
  size_t loaded_ = 0;                               ///< manifests loaded so far
  std::map<std::string, std::string> links_;        ///< link entry -> target entry
  std::map<std::string, BlobNeed> blobs_;           ///< digest -> need
  std::set<std::string> committed_;                 ///< repo@digest

  std::string docker_json_;
  bool docker_planned_ = false;
  std::vector<DockerImage> docker_images_;
  std::map<std::string, DockerFile> docker_files_;  ///< entry name -> file
};

}  // namespace

Result<ImportReport> import_bundle(store::Store& s, const std::vector<std::string>& inputs, const ImportOptions& o) {
  Importer imp(s, inputs, o);
  return imp.run();
}

std::string report_json(const ImportReport& r) {
  json j = {{"format", r.format},       {"tags", r.tags},         {"manifests", r.manifests},
            {"blobs_stored", r.blobs_stored}, {"bytes_stored", r.bytes_stored}, {"blobs_held", r.blobs_held},
            {"passes", r.passes}};
  return j.dump();
}

}  // namespace outpost::bundle
