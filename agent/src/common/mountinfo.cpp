#include "common/mountinfo.hpp"

#include <fstream>
#include <sstream>

namespace vigil {

std::vector<Mount> readMountInfo(const std::string& path) {
  std::vector<Mount> mounts;
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    // "36 25 0:31 / /sys/fs/cgroup/unified rw,nosuid shared:9 - cgroup2 cgroup2 rw,nsdelegate"
    auto dash = line.find(" - ");
    if (dash == std::string::npos) continue;
    Mount m;
    std::istringstream head(line.substr(0, dash));
    std::string id, parent, devno;
    head >> id >> parent >> devno >> m.root >> m.mountPoint;
    std::istringstream(line.substr(dash + 3)) >> m.fsType;
    mounts.push_back(std::move(m));
  }
  return mounts;
}

std::optional<std::string> findCgroup2Mount(const std::string& mountinfoPath) {
  for (const Mount& m : readMountInfo(mountinfoPath)) {
    // root "/" is the hierarchy itself, not a bind mount of a sub-tree
    if (m.fsType == "cgroup2" && m.root == "/") return m.mountPoint;
  }
  return std::nullopt;
}

}  // namespace vigil
