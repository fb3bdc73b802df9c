#pragma once

// `--export-file`: every event (process events, policy kills, XDP drops, flows) as one line of
// the protobuf JSON mapping, for log shippers. The file rotates by size: PATH is renamed
// PATH.1, PATH.1 becomes PATH.2 and so on, up to maxFiles rotated files; the oldest goes.
// Rotation happens between lines, so every line is whole and in exactly one file. Events the
// exporter could not keep up with are not silently skipped: the hub puts a LostEvent line in
// their place.

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "common/error.hpp"
#include "common/unique_fd.hpp"
#include "server/event_hub.hpp"

namespace vigil::api {

struct JsonExportOptions {
  std::string path;
  uint64_t maxBytes = 100ull << 20;  // a file is rotated before it would grow past this
  uint32_t maxFiles = 5;             // rotated files kept (PATH.1 ... PATH.maxFiles)
  // Event types to export ("exec", "exit", "policy", "drop", "flow"); empty: all. Lost-event
  // notices are always exported.
  std::vector<std::string> types;
  // Only events of these namespaces or pods ("ns/pod" or "pod"); both empty: every event.
  std::vector<std::string> namespaces, pods;
  size_t queueSize = 65536;  // events queued per hub before the exporter counts them lost
};

struct JsonExportStats {
  uint64_t lines = 0;      // lines written, lost-event notices included
  uint64_t rotations = 0;
  uint64_t writeErrors = 0;
  std::string lastError;
};

class JsonExporter {
 public:
  // Opens (appends to) the file and starts the writer thread. Checks the options first: an
  // unknown type, a size under 4 KiB, or a file that cannot be opened is an error.
  static Expected<std::unique_ptr<JsonExporter>> start(const JsonExportOptions& options,
                                                       std::vector<server::EventHub*> hubs);
  // Writes what is queued, then stops.
  ~JsonExporter();
  JsonExporter(const JsonExporter&) = delete;
  JsonExporter& operator=(const JsonExporter&) = delete;

  JsonExportStats stats() const;
  const std::string& path() const { return options_.path; }

 private:
  explicit JsonExporter(JsonExportOptions options) : options_(std::move(options)) {}
  void run();
  void write(const v1::Event& event);
  void flush();
  void rotate();
  Status open();

  const JsonExportOptions options_;
  std::vector<std::pair<server::EventHub*, std::shared_ptr<server::Subscription>>> subs_;
  std::thread thread_;
  std::atomic<bool> stop_{false};
  // Writer thread only:
  UniqueFd fd_;
  uint64_t fileBytes_ = 0;
  uint32_t rotated_ = 0;  // rotated files that exist (PATH.1 ... PATH.rotated_)
  std::string buffer_;
  mutable std::mutex statsMutex_;
  JsonExportStats stats_;  // guarded by statsMutex_
};

}  // namespace vigil::api
