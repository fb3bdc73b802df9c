#include "export/json_export.hpp"

#include "events/workload_match.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <map>

#include "common/log.hpp"
#include "events/event_matcher.hpp"
#include "json_line.hpp"

namespace vigil::api {
namespace {

constexpr size_t kFlushBytes = 64 << 10;
constexpr uint64_t kMinFileBytes = 4096;

const std::map<std::string, v1::EventType>& exportTypes() {
  static const std::map<std::string, v1::EventType> types = {
      {"exec", v1::EVENT_TYPE_EXEC},     {"exit", v1::EVENT_TYPE_EXIT},
      {"policy", v1::EVENT_TYPE_POLICY}, {"drop", v1::EVENT_TYPE_DROP},
      {"flow", v1::EVENT_TYPE_FLOW},     {"oom", v1::EVENT_TYPE_OOM_KILL}};
  return types;
}

// Events of the chosen types and workloads, and every lost-event notice.
class ExportMatcher final : public events::EventMatcher {
 public:
  ExportMatcher(std::vector<v1::EventType> types, events::WorkloadSelector workloads)
      : types_(std::move(types)), workloads_(std::move(workloads)) {}
  bool matches(const v1::Event& event) const override {
    if (event.type() == v1::EVENT_TYPE_LOST) return true;
    return (types_.empty() ||
            std::find(types_.begin(), types_.end(), event.type()) != types_.end()) &&
           workloads_.matches(event);
  }

 private:
  std::vector<v1::EventType> types_;
  events::WorkloadSelector workloads_;
};

}  // namespace

Expected<std::unique_ptr<JsonExporter>> JsonExporter::start(const JsonExportOptions& options,
                                                            std::vector<server::EventHub*> hubs) {
  if (options.path.empty()) return Error(EINVAL, "--export-file: empty path");
  if (options.maxBytes < kMinFileBytes)
    return Error(EINVAL, "--export-max-size: at least " + std::to_string(kMinFileBytes) +
                             " bytes, got " + std::to_string(options.maxBytes));
  std::vector<v1::EventType> types;
  for (const auto& name : options.types) {
    auto it = exportTypes().find(name);
    if (it == exportTypes().end())
      return Error(EINVAL, "--export-types: unknown type '" + name +
                               "' (exec, exit, policy, drop, flow or oom)");
    types.push_back(it->second);
  }
  events::WorkloadSelector workloads;
  if (std::string why; !workloads.add(options.namespaces, options.pods, why))
    return Error(EINVAL, (why.rfind("pod", 0) == 0 ? "--export-pods: " : "--export-namespaces: ") +
                             why);
  std::unique_ptr<JsonExporter> e(new JsonExporter(options));
  if (auto s = e->open(); !s) return s.error();
  // Rotated files of an earlier run, PATH.1 up: kept and shifted like this run's own.
  while (e->rotated_ < options.maxFiles &&
         ::access((options.path + "." + std::to_string(e->rotated_ + 1)).c_str(), F_OK) == 0)
    e->rotated_++;
  auto matcher = std::make_shared<const ExportMatcher>(types, std::move(workloads));
  for (server::EventHub* hub : hubs) {
    if (hub) e->subs_.emplace_back(hub, hub->subscribe(matcher, false, 0, nullptr, options.queueSize));
  }
  JsonExporter* self = e.get();
  e->thread_ = std::thread([self] { self->run(); });
  return e;
}

JsonExporter::~JsonExporter() {
  stop_ = true;
  if (thread_.joinable()) thread_.join();
  for (auto& [hub, sub] : subs_) hub->unsubscribe(sub);
}

JsonExportStats JsonExporter::stats() const {
  std::lock_guard lock(statsMutex_);
  return stats_;
}

Status JsonExporter::open() {
  fd_ = UniqueFd(::open(options_.path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640));
  if (fd_.get() < 0) return Error(errno, "--export-file: open " + options_.path);
  struct stat st {};
  fileBytes_ = ::fstat(fd_.get(), &st) == 0 ? static_cast<uint64_t>(st.st_size) : 0;
  return {};
}

void JsonExporter::run() {
  // Drains every hub's queue; after stop_, one last pass writes what is still queued.
  for (bool last = false;; last = stop_) {
    bool wrote = false;
    for (auto& [hub, sub] : subs_) {
      for (int n = 0; n < 4096; n++) {
        auto ev = sub->next(std::chrono::milliseconds(0));
        if (!ev) break;
        write(**ev);
        wrote = true;
      }
    }
    if (!wrote) {
      flush();
      if (last) return;
      if (!subs_.empty()) {
        // Sleep until the first hub has something (others are looked at within 20 ms).
        if (auto ev = subs_.front().second->next(std::chrono::milliseconds(20))) write(**ev);
      } else {
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
      }
    }
  }
}

void JsonExporter::write(const v1::Event& event) {
  std::string line = jsonLine(event);
  line.push_back('\n');
  if (fileBytes_ + buffer_.size() + line.size() > options_.maxBytes &&
      fileBytes_ + buffer_.size() > 0) {
    flush();
    rotate();
  }
  buffer_ += line;
  {
    std::lock_guard lock(statsMutex_);
    stats_.lines++;
  }
  if (buffer_.size() >= kFlushBytes) flush();
}

void JsonExporter::flush() {
  size_t done = 0;
  while (done < buffer_.size() && fd_.get() >= 0) {
    ssize_t n = ::write(fd_.get(), buffer_.data() + done, buffer_.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      std::string why = std::string("write ") + options_.path + ": " + std::strerror(errno);
      std::lock_guard lock(statsMutex_);
      if (stats_.writeErrors++ == 0) log::error("JSON export: " + why + " (lines are lost)");
      stats_.lastError = why;
      break;
    }
    done += static_cast<size_t>(n);
  }
  fileBytes_ += done;
  buffer_.clear();
}

void JsonExporter::rotate() {
  const std::string& p = options_.path;
  fd_.reset();
  if (options_.maxFiles == 0) {
    ::unlink(p.c_str());
  } else {
    // PATH.k becomes PATH.k+1 for the files that exist; at the limit, the rename onto
    // PATH.maxFiles replaces the oldest.
    rotated_ = std::min(rotated_ + 1, options_.maxFiles);
    for (uint32_t i = rotated_; i > 1; i--) {
      ::rename((p + "." + std::to_string(i - 1)).c_str(), (p + "." + std::to_string(i)).c_str());
    }
    ::rename(p.c_str(), (p + ".1").c_str());
  }
  if (auto s = open(); !s) {
    std::lock_guard lock(statsMutex_);
    stats_.writeErrors++;
    stats_.lastError = s.error().message();
    log::error("JSON export: " + s.error().message());
  }
  std::lock_guard lock(statsMutex_);
  stats_.rotations++;
}

}  // namespace vigil::api
