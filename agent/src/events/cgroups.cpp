#include "events/cgroups.hpp"


#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <vector>

namespace vigil::events {
namespace fs = std::filesystem;
namespace {
constexpr size_t kMaxCachedCgroups = 65536;
}  // namespace

CgroupPaths::CgroupPaths(std::string mountPoint, std::string procRoot)
    : mountPoint_(std::move(mountPoint)), procRoot_(std::move(procRoot)) {}

std::optional<uint64_t> CgroupPaths::idOf(const std::string& relPath) const {
  if (mountPoint_.empty()) return std::nullopt;
  struct stat st {};
  if (::stat((mountPoint_ + relPath).c_str(), &st) != 0) return std::nullopt;
  return static_cast<uint64_t>(st.st_ino);
}

std::string CgroupPaths::pathFor(uint64_t id, uint32_t pidHint) {
  if (mountPoint_.empty() || id == 0) return "";
  std::lock_guard lock(mutex_);
  if (auto it = cache_.find(id); it != cache_.end()) return it->second;
  // Cgroups come and go (every pod, every systemd unit); start over rather than grow forever.
  if (cache_.size() >= kMaxCachedCgroups) cache_.clear();

  if (pidHint != 0) {
    std::ifstream in(procRoot_ + "/" + std::to_string(pidHint) + "/cgroup");
    std::string line;
    while (std::getline(in, line)) {
      if (line.rfind("0::", 0) != 0) continue;
      std::string rel = line.substr(3);
      if (idOf(rel) == id) {
        cache_[id] = rel;
        return rel;
      }
    }
  }
  auto now = std::chrono::steady_clock::now();
  if (now - lastScan_ >= std::chrono::seconds(1)) {
    lastScan_ = now;
    rescan();
    if (auto it = cache_.find(id); it != cache_.end()) return it->second;
  }
  return "";
}

void CgroupPaths::rescan() {
  std::error_code ec;
  if (auto root = idOf("/")) cache_[*root] = "/";
  fs::recursive_directory_iterator it(mountPoint_, fs::directory_options::skip_permission_denied,
                                      ec);
  for (; !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
    if (!it->is_directory(ec) || it->is_symlink(ec)) continue;
    struct stat st {};
    if (::stat(it->path().c_str(), &st) != 0) continue;
    cache_[st.st_ino] = "/" + fs::relative(it->path(), mountPoint_, ec).string();
  }
}

}  // namespace vigil::events
