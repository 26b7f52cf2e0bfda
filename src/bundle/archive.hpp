// RAII owners for libarchive handles (archive_read / archive_write) and the
// translation of libarchive's status into outpost::Error. Nothing else: what
// goes into or comes out of an archive is the exporter's and importer's job.
#pragma once
#include <archive.h>
#include <archive_entry.h>

#include <memory>
#include <string>
#include <string_view>

#include "base/result.hpp"

namespace outpost::bundle {

struct ArchiveReadFree {
  void operator()(archive* a) const { archive_read_free(a); }
};
struct ArchiveWriteFree {
  void operator()(archive* a) const { archive_write_free(a); }
};
struct ArchiveEntryFree {
  void operator()(archive_entry* e) const { archive_entry_free(e); }
};
using ArchiveReader = std::unique_ptr<archive, ArchiveReadFree>;
using ArchiveWriter = std::unique_ptr<archive, ArchiveWriteFree>;
using ArchiveEntry = std::unique_ptr<archive_entry, ArchiveEntryFree>;

/// Error(code, "<what>: <libarchive's message>").
Error archive_error(archive* a, Errc code, std::string_view what);

}  // namespace outpost::bundle
