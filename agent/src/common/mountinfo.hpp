#pragma once

// The mount table of a process (/proc/PID/mountinfo), as far as Vigil needs it.

#include <optional>
#include <string>
#include <vector>

namespace vigil {

struct Mount {
  std::string root;        // the part of the filesystem mounted ("/" for the whole)
  std::string mountPoint;  // where it is mounted
  std::string fsType;      // "cgroup2", "bpf", "tracefs", ...
};

// Every mount in a mountinfo file; an unreadable file gives none.
std::vector<Mount> readMountInfo(const std::string& path);

// Where the cgroup v2 hierarchy is mounted, from a mountinfo file (/proc/self/mountinfo). On a
// hybrid host it is usually /sys/fs/cgroup/unified, on a pure v2 host /sys/fs/cgroup.
std::optional<std::string> findCgroup2Mount(const std::string& mountinfoPath);

}  // namespace vigil
