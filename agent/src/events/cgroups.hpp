#pragma once

// cgroup v2 id -> path. The id the kernel reports is the inode number of the cgroup's
// directory in the cgroup2 filesystem, so a path is found by stat()ing directories there.

#include <chrono>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>

#include "common/unique_fd.hpp"

namespace vigil::events {

class CgroupPaths {
 public:
  // An empty mountPoint disables resolution (every path is "").
  CgroupPaths(std::string mountPoint, std::string procRoot);
  CgroupPaths(const CgroupPaths&) = delete;
  CgroupPaths& operator=(const CgroupPaths&) = delete;

  // The path relative to the cgroup2 root ("/" for the root, "/system.slice/x.service"), or ""
  // when unknown. pidHint names a process that was in that cgroup, to try its
  // /proc/PID/cgroup; then the id is opened as a kernfs file handle; a rescan of the whole
  // hierarchy (at most once a second) is the last resort.
  std::string pathFor(uint64_t id, uint32_t pidHint);

  // The id of a path relative to the root, or nothing when it does not exist.
  std::optional<uint64_t> idOf(const std::string& relPath) const;

  const std::string& mountPoint() const { return mountPoint_; }

 private:
  void rescan();
  std::optional<std::string> byHandle(uint64_t id);  // open_by_handle_at on the kernfs id

  std::string mountPoint_;
  std::string procRoot_;
  std::mutex mutex_;
  std::unordered_map<uint64_t, std::string> cache_;   // guarded by mutex_
  std::chrono::steady_clock::time_point lastScan_{};  // guarded by mutex_
  UniqueFd mountFd_;                                  // guarded by mutex_
  bool handleUnsupported_ = false;                    // guarded by mutex_
};

}  // namespace vigil::events
