#pragma once

// The pods a node's kubelet runs, read from its log directories (mounted read-only into the
// agent), so that no API server access is needed:
//   <podLogDir>/<namespace>_<pod>_<uid>/<container>/<restart>.log          (/var/log/pods)
//   <containerLogDir>/<pod>_<namespace>_<container>-<containerId>.log      (/var/log/containers)
// Only names are read, never the logs. Namespaces, pod and container names are DNS labels or
// subdomains, which have no '_', so the names split safely; entries of any other shape are
// ignored. The kubelet cuts a container log name at 255 bytes, which can cut the id: such a
// name is ignored too.
//
// Thread-safe. What is kept, and when it is refreshed:
//  - pods by uid: from the last scan of podLogDir. A lookup miss stat()s the directory and
//    rescans it when its mtime (or inode) changed, or when the last scan is older than
//    missRescanInterval (mtime granularity can hide a change made just after a scan). A hit
//    costs no system call; a deleted pod is forgotten at the next rescan.
//  - container names by id: the same for containerLogDir.

#include <chrono>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "common/error.hpp"

namespace vigil::k8s {

class PodDirectory {
 public:
  struct Pod {
    std::string namespace_, name, uid;
    std::vector<std::string> containers;  // container directories, sorted

    bool operator==(const Pod&) const = default;
  };

  // Looks at both directories once (so state() is meaningful from the start).
  PodDirectory(std::string podLogDir, std::string containerLogDir,
               std::chrono::milliseconds missRescanInterval = std::chrono::seconds(1));

  // The pod with this uid (canonical form, see canonicalPodUid), or nullopt.
  std::optional<Pod> pod(const std::string& uid);

  // The name of the container with this id in `pod`: from the container log directory's names
  // when it has the id; else, when that directory knows no container of this pod at all (not
  // mounted, say), the pod's only container directory if it has exactly one (listed afresh: a
  // pod's init container may have been alone at the last scan); else "". Note the pod sandbox
  // (pause) has a cgroup but no logs: in the fallback case it takes the only container's name.
  std::string containerName(const Pod& pod, const std::string& containerId);

  // Every pod now in the directory, sorted by namespace and name (refreshed as for a miss).
  std::vector<Pod> pods();

  // One line for `vigil status`, as of the last look: "pod log directory /var/log/pods: 12 pods;
  // container log directory /var/log/containers: 30 container logs", or what is wrong.
  std::string state() const;

  // Full scans of the pod log directory so far (for tests and status).
  uint64_t podScans() const;

 private:
  // Identity and mtime of a directory, to tell whether it changed since a scan.
  struct Stamp {
    uint64_t dev = 0, ino = 0;
    int64_t mtimeSec = 0, mtimeNsec = 0;
    bool operator==(const Stamp&) const = default;
  };
  struct Watched {
    std::string what;  // "pod log directory"
    std::string path;
    std::optional<Stamp> stamp;                      // at the last look; nullopt: missing
    std::chrono::steady_clock::time_point lastScan;  // zero: never scanned
    std::string problem;                             // "" when the last look succeeded
  };
  struct LogLink {
    std::string namespace_, pod, container;
  };

  // Rescans `w` (with `scan`) when it changed since the last look, or when the last scan is
  // older than the interval. Requires mutex_.
  void refresh(Watched& w, Status (PodDirectory::*scan)());
  Status scanPods();        // requires mutex_
  Status scanContainers();  // requires mutex_
  // Records the outcome of a look at `w`, logging when it differs from the last one.
  void setProblem(Watched& w, std::string problem);
  std::optional<std::string> onlyContainerDir(const Pod& pod);  // requires mutex_

  const std::chrono::milliseconds interval_;
  mutable std::mutex mutex_;
  Watched podDir_;                                      // guarded by mutex_
  Watched containerDir_;                                // guarded by mutex_
  std::unordered_map<std::string, Pod> podsByUid_;      // guarded by mutex_
  std::unordered_map<std::string, LogLink> linksById_;  // guarded by mutex_
  std::unordered_set<std::string> podsWithLinks_;       // "<ns>/<pod>"; guarded by mutex_
  uint64_t podScans_ = 0;                               // guarded by mutex_
};

}  // namespace vigil::k8s
