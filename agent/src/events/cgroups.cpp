#include "events/cgroups.hpp"

#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <vector>

namespace vigil::events {
namespace fs = std::filesystem;

std::optional<std::string> findCgroup2Mount(const std::string& mountinfoPath) {
  std::ifstream in(mountinfoPath);
  std::string line;
  while (std::getline(in, line)) {
    // "36 25 0:31 / /sys/fs/cgroup/unified rw,... shared:9 - cgroup2 cgroup2 rw,..."
    auto dash = line.find(" - ");
    if (dash == std::string::npos) continue;
    std::istringstream tail(line.substr(dash + 3));
    std::string fstype;
    tail >> fstype;
    if (fstype != "cgroup2") continue;
    std::istringstream head(line.substr(0, dash));
    std::string id, parent, devno, root, mountPoint;
    head >> id >> parent >> devno >> root >> mountPoint;
    if (root != "/") continue;  // a bind mount of a sub-tree, not the hierarchy's root
    return mountPoint;
  }
  return std::nullopt;
}

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
