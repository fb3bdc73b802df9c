#include "k8s/workload_resolver.hpp"

#include <fcntl.h>
#include <unistd.h>

namespace vigil::k8s {
namespace {

constexpr size_t kShortIdLength = 12;

// True when the file has lines and all are the unified hierarchy's ("0::/...").
bool onlyUnifiedLines(std::string_view content) {
  bool any = false;
  for (std::string_view line : lines(content)) {
    if (line.empty()) continue;
    if (!line.starts_with("0::")) return false;
    any = true;
  }
  return any;
}

}  // namespace

std::string describe(const Workload& w) {
  switch (w.kind) {
    case Workload::Kind::host:
      return "host";
    case Workload::Kind::container: {
      std::string out = "container ";
      if (!w.runtime.empty()) out += w.runtime + "/";
      return out + w.containerId.substr(0, kShortIdLength);
    }
    case Workload::Kind::pod:
      if (w.pod.empty()) return "pod uid " + w.podUid + " (not in the pod log directory)";
      return "pod " + w.namespace_ + "/" + w.pod + (w.container.empty() ? "" : "/" + w.container);
  }
  return "host";
}

WorkloadResolver::WorkloadResolver(std::string podLogDir, std::string containerLogDir,
                                   std::string procRoot, std::chrono::milliseconds retryInterval)
    : procRoot_(std::move(procRoot)),
      retryInterval_(retryInterval),
      directory_(std::move(podLogDir), std::move(containerLogDir), retryInterval) {}

Workload WorkloadResolver::build(const ContainerRef& ref, bool* complete) {
  Workload w;
  w.containerId = ref.containerId;
  w.runtime = ref.runtime;
  if (ref.podUid.empty()) {
    w.kind = Workload::Kind::container;
    *complete = true;
    return w;
  }
  w.kind = Workload::Kind::pod;
  w.podUid = ref.podUid;
  auto pod = directory_.pod(ref.podUid);
  if (!pod) {
    *complete = false;
    return w;
  }
  w.namespace_ = pod->namespace_;
  w.pod = pod->name;
  if (!ref.containerId.empty()) w.container = directory_.containerName(*pod, ref.containerId);
  *complete = ref.containerId.empty() || !w.container.empty();
  return w;
}

std::optional<ContainerRef> WorkloadResolver::fromProc(uint32_t pid) {
  // Plain read(2): the process may exit between open and read (ESRCH), which a stream turns
  // into an exception.
  int fd = ::open((procRoot_ + "/" + std::to_string(pid) + "/cgroup").c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return std::nullopt;  // the process is gone (or never was): nothing to learn
  std::string content;
  char buf[4096];
  for (ssize_t n; (n = ::read(fd, buf, sizeof buf)) > 0;) content.append(buf, static_cast<size_t>(n));
  ::close(fd);
  if (procFallback_.load() == ProcFallback::unknown && !content.empty()) {
    procFallback_.store(onlyUnifiedLines(content) ? ProcFallback::off : ProcFallback::on);
  }
  return parseProcCgroup(content);
}

bool WorkloadResolver::asksProcesses(std::string_view cgroupPath) const {
  if (procFallback_.load() == ProcFallback::off) return false;
  std::lock_guard lock(mutex_);
  auto it = cache_.find(std::string(cgroupPath));
  if (it == cache_.end()) return true;
  const Entry& e = it->second;
  if (e.ref) return false;
  return e.fallbackFound || std::chrono::steady_clock::now() >= e.fallbackRestUntil;
}

Workload WorkloadResolver::resolve(std::string_view cgroupPath, uint32_t pid) {
  std::string key(cgroupPath);
  auto now = std::chrono::steady_clock::now();
  bool parsed = false;
  std::optional<ContainerRef> ref;
  {
    std::lock_guard lock(mutex_);
    if (auto it = cache_.find(key); it != cache_.end()) {
      const Entry& e = it->second;
      if (e.ref && (e.complete || now - e.lastTry < retryInterval_)) return e.workload;
      ref = e.ref;
      parsed = true;
    }
  }
  if (!parsed) ref = parseCgroupPath(cgroupPath);

  if (ref || !parsed) {
    // The directory is asked without mutex_ held: a rescan must not stall other threads'
    // cache hits. Two threads may build the same entry; the last one stored wins.
    Entry entry{ref, Workload{}, true, now};
    if (ref) entry.workload = build(*ref, &entry.complete);
    std::lock_guard lock(mutex_);
    if (cache_.size() >= kMaxCachedPaths && !cache_.contains(key)) cache_.clear();
    cache_[key] = entry;
    if (ref) return entry.workload;
  }

  if (pid != 0 && procFallback_.load() != ProcFallback::off) {
    {
      std::lock_guard lock(mutex_);
      auto it = cache_.find(key);
      if (it != cache_.end() && !it->second.fallbackFound && now < it->second.fallbackRestUntil)
        return Workload{};
    }
    auto fromPid = fromProc(pid);
    {
      std::lock_guard lock(mutex_);
      if (auto it = cache_.find(key); it != cache_.end()) {
        Entry& e = it->second;
        if (fromPid) {
          e.fallbackFound = true;
        } else if (++e.fallbackMisses >= kFallbackMisses) {
          e.fallbackMisses = 0;
          e.fallbackRestUntil = now + kFallbackRest;
        }
      }
    }
    if (fromPid) {
      bool complete = false;
      return build(*fromPid, &complete);
    }
  }
  return Workload{};
}

std::string WorkloadResolver::state() const {
  std::string out = directory_.state();
  if (procFallback_.load() == ProcFallback::off) {
    out += "; /proc/<pid>/cgroup fallback: off (no cgroup v1 hierarchy on this host)";
  }
  return out;
}

}  // namespace vigil::k8s
