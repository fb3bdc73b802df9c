#pragma once

// cgroup path (and pid) -> the workload the agent reports: the host, a container, or a pod.
//
// Thread-safe. What is cached, and for how long:
//  - per cgroup path (at most kMaxCachedPaths; the whole cache is dropped when full, since paths
//    come and go with every pod): what the path names (parsing is pure, so that part never
//    goes stale) and the workload built from it. A complete workload (host, a container outside
//    Kubernetes, a pod whose names the log directories gave) is kept until evicted: a pod uid or
//    container id never changes its names. An incomplete one (pod uid not in the pod log
//    directory yet, container name not known yet) is looked up again once retryInterval has
//    passed since the last try, so a pod whose log directory appears after its first process
//    resolves on a later call.
//  - nothing per pid: the /proc/<pid>/cgroup fallback reads the file on each call for a path
//    that names no container (but rests for a path where it keeps finding none, see Entry). It is switched off for good once a read shows a host with no v1
//    hierarchy (only a "0::" line), where it could never find more than the path did.
//  - the pod directory keeps its own maps (see pod_directory.hpp).

#include <atomic>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>

#include "k8s/cgroup_parse.hpp"
#include "k8s/pod_directory.hpp"

namespace vigil::k8s {

// What the agent reports for a process, flow endpoint or accounting row.
struct Workload {
  enum class Kind { host, container, pod };
  Kind kind = Kind::host;
  std::string namespace_, pod, podUid, container, containerId, runtime;

  bool operator==(const Workload&) const = default;
};

// Short text for the CLI and status: "host", "container docker/0123456789ab",
// "pod default/nginx-abc/nginx" (container left out when unknown), or
// "pod uid 1234... (no pod log directory entry)".
std::string describe(const Workload& w);

class WorkloadResolver {
 public:
  // As many as the kernel keeps per-cgroup traffic rows for by default (--cgroup-table-size):
  // every scrape resolves every row.
  static constexpr size_t kMaxCachedPaths = 16384;
  // On a hybrid host the fallback reads a file per exec of every host process. A path where
  // it never found a container (a user session, an ordinary service) is read at most this
  // many times per kFallbackRest; a path where it did (the runtime's own service, whose
  // cgroup v1-only containers share) on every call.
  static constexpr uint32_t kFallbackMisses = 8;
  static constexpr std::chrono::seconds kFallbackRest{10};

  WorkloadResolver(std::string podLogDir, std::string containerLogDir,
                   std::string procRoot = "/proc",
                   std::chrono::milliseconds retryInterval = std::chrono::seconds(1));

  // For a cgroup v2 path relative to the v2 root. When the path names no container and pid is
  // not 0, <procRoot>/<pid>/cgroup is read for its v1 lines (hybrid hosts).
  Workload resolve(std::string_view cgroupPath, uint32_t pid = 0);

  // Whether resolve(path, pid) would read /proc/<pid>/cgroup now: false on a pure v2 host, for
  // a path that names a container, and for a path where the fallback rests. Callers that
  // resolve many processes of one cgroup can then resolve it once.
  bool asksProcesses(std::string_view cgroupPath) const;

  // The pod directory's state, and the /proc fallback's when it was switched off.
  std::string state() const;

  // The pods of the node (for bounding per-pod metrics to live pods).
  PodDirectory& directory() { return directory_; }

 private:
  struct Entry {
    std::optional<ContainerRef> ref;
    Workload workload;
    bool complete = false;
    std::chrono::steady_clock::time_point lastTry;
    // The /proc fallback for processes of this (containerless) path: whether it ever found a
    // container here, its misses in a row, and until when it rests after kFallbackMisses.
    bool fallbackFound = false;
    uint32_t fallbackMisses = 0;
    std::chrono::steady_clock::time_point fallbackRestUntil;
  };
  // The workload of a container reference; complete when nothing is left to learn.
  Workload build(const ContainerRef& ref, bool* complete);
  std::optional<ContainerRef> fromProc(uint32_t pid);

  enum class ProcFallback { unknown, on, off };

  const std::string procRoot_;
  const std::chrono::milliseconds retryInterval_;
  PodDirectory directory_;  // thread-safe on its own; never called with mutex_ held
  std::atomic<ProcFallback> procFallback_{ProcFallback::unknown};
  mutable std::mutex mutex_;
  std::unordered_map<std::string, Entry> cache_;  // guarded by mutex_
};

}  // namespace vigil::k8s
