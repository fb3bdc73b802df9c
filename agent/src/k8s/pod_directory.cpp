#include "k8s/pod_directory.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <memory>
#include <string_view>
#include <tuple>

#include "common/log.hpp"
#include "k8s/cgroup_parse.hpp"

namespace vigil::k8s {
namespace {

constexpr size_t kMaxLabel = 63;       // DNS-1123 label: namespaces, container names
constexpr size_t kMaxSubdomain = 253;  // DNS-1123 subdomain: pod names

bool isAlnum(char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); }

// Lowercase alphanumerics and '-' (and '.' for a subdomain), starting and ending alphanumeric.
bool isDnsName(std::string_view s, size_t maxLen, bool allowDots) {
  if (s.empty() || s.size() > maxLen || !isAlnum(s.front()) || !isAlnum(s.back())) return false;
  return std::all_of(s.begin(), s.end(),
                     [&](char c) { return isAlnum(c) || c == '-' || (allowDots && c == '.'); });
}

bool isLabel(std::string_view s) { return isDnsName(s, kMaxLabel, false); }
bool isSubdomain(std::string_view s) { return isDnsName(s, kMaxSubdomain, true); }

// Splits on every '_'; exactly `n` parts or none.
std::optional<std::vector<std::string_view>> splitUnderscores(std::string_view s, size_t n) {
  std::vector<std::string_view> parts;
  size_t pos = 0;
  while (true) {
    size_t at = s.find('_', pos);
    parts.push_back(
        s.substr(pos, at == std::string_view::npos ? std::string_view::npos : at - pos));
    if (at == std::string_view::npos) break;
    pos = at + 1;
  }
  if (parts.size() != n) return std::nullopt;
  return parts;
}

struct DirCloser {
  void operator()(DIR* d) const { ::closedir(d); }
};
using DirHandle = std::unique_ptr<DIR, DirCloser>;

struct DirEntry {
  std::string name;
  bool isDir = false;  // only filled when asked for
};

// The entries of a directory, without "." and "..". With wantTypes, entries whose type cannot
// be known any more (removed while we read) are left out.
Expected<std::vector<DirEntry>> listDir(const std::string& path, bool wantTypes) {
  DirHandle dir(::opendir(path.c_str()));
  if (!dir) return Error(errno, "open " + path);
  std::vector<DirEntry> out;
  while (true) {
    errno = 0;
    dirent* e = ::readdir(dir.get());
    if (e == nullptr) {
      if (errno != 0) return Error(errno, "read " + path);
      break;
    }
    std::string_view name(e->d_name);
    if (name == "." || name == "..") continue;
    DirEntry entry{std::string(name), false};
    if (wantTypes) {
      if (e->d_type == DT_DIR) {
        entry.isDir = true;
      } else if (e->d_type == DT_UNKNOWN || e->d_type == DT_LNK) {
        struct stat st {};
        if (::fstatat(::dirfd(dir.get()), e->d_name, &st, 0) != 0) continue;
        entry.isDir = S_ISDIR(st.st_mode);
      }
    }
    out.push_back(std::move(entry));
  }
  return out;
}

// The container directories of a pod's log directory, sorted.
Expected<std::vector<std::string>> containerDirs(const std::string& podPath) {
  auto entries = listDir(podPath, true);
  if (!entries) return entries.error();
  std::vector<std::string> names;
  for (DirEntry& e : *entries) {
    if (e.isDir && isLabel(e.name)) names.push_back(std::move(e.name));
  }
  std::sort(names.begin(), names.end());
  return names;
}

// "<namespace>_<pod>_<uid>"
std::optional<PodDirectory::Pod> parsePodDirName(std::string_view name) {
  auto parts = splitUnderscores(name, 3);
  if (!parts || !isLabel((*parts)[0]) || !isSubdomain((*parts)[1])) return std::nullopt;
  auto uid = canonicalPodUid((*parts)[2], '-');
  if (!uid) return std::nullopt;
  return PodDirectory::Pod{std::string((*parts)[0]), std::string((*parts)[1]), *uid, {}};
}

std::string podKey(std::string_view ns, std::string_view pod) {
  std::string key(ns);
  key += '/';
  key += pod;
  return key;
}

std::string notFoundText(const std::string& what) {
  if (what.starts_with("pod")) return "not found (processes are reported as host or container)";
  return "not found (container names only for single-container pods)";
}

}  // namespace

PodDirectory::PodDirectory(std::string podLogDir, std::string containerLogDir,
                           std::chrono::milliseconds missRescanInterval)
    : interval_(missRescanInterval) {
  podDir_.what = "pod log directory";
  podDir_.path = std::move(podLogDir);
  containerDir_.what = "container log directory";
  containerDir_.path = std::move(containerLogDir);
  // A first look now, so that state() and the log say from the start whether pods can be
  // named at all (a host without Kubernetes has neither directory).
  std::lock_guard lock(mutex_);
  refresh(podDir_, &PodDirectory::scanPods);
  refresh(containerDir_, &PodDirectory::scanContainers);
}

void PodDirectory::refresh(Watched& w, Status (PodDirectory::*scan)()) {
  auto now = std::chrono::steady_clock::now();
  std::optional<Stamp> stamp;
  struct stat st {};
  if (::stat(w.path.c_str(), &st) == 0) {
    stamp =
        Stamp{static_cast<uint64_t>(st.st_dev), static_cast<uint64_t>(st.st_ino),
              static_cast<int64_t>(st.st_mtim.tv_sec), static_cast<int64_t>(st.st_mtim.tv_nsec)};
  } else if (int err = errno; err != ENOENT && err != ENOTDIR) {
    // Keep what the last scan found: the directory may be back at the next look.
    setProblem(w, Error(err, "stat").message());
    return;
  }
  bool never = w.lastScan == std::chrono::steady_clock::time_point{};
  bool changed = never || stamp != w.stamp;
  bool stale = now - w.lastScan >= interval_;
  // Still missing: nothing to scan, whatever the time.
  if (!stamp && !changed) return;
  if (!changed && !stale) return;
  w.stamp = stamp;
  w.lastScan = now;
  Status result = (this->*scan)();
  if (result.ok()) {
    setProblem(w, "");
  } else if (result.error().code() == ENOENT || result.error().code() == ENOTDIR) {
    setProblem(w, notFoundText(w.what));
  } else {
    setProblem(w, result.error().message());
  }
}

void PodDirectory::setProblem(Watched& w, std::string problem) {
  if (problem == w.problem) return;
  std::string subject = w.what + " " + w.path;
  if (problem.empty()) {
    log::info(subject + ": readable");
  } else if (problem.starts_with("not found")) {
    log::info(subject + ": " + problem);
  } else {
    log::warn(subject + ": " + problem);
  }
  w.problem = std::move(problem);
}

Status PodDirectory::scanPods() {
  auto entries = listDir(podDir_.path, true);
  if (!entries) {
    // Gone: so are its pods. Any other error keeps the last scan's.
    if (entries.error().code() == ENOENT || entries.error().code() == ENOTDIR) podsByUid_.clear();
    return entries.error();
  }
  std::unordered_map<std::string, Pod> fresh;
  for (const DirEntry& e : *entries) {
    if (!e.isDir) continue;
    auto pod = parsePodDirName(e.name);
    if (!pod) continue;
    auto containers = containerDirs(podDir_.path + "/" + e.name);
    if (containers) {
      pod->containers = std::move(*containers);
    } else if (containers.error().code() == ENOENT) {
      continue;  // deleted while we were reading
    }
    // Unreadable (permissions): the pod is known, its containers are not.
    fresh[pod->uid] = std::move(*pod);
  }
  podsByUid_ = std::move(fresh);
  ++podScans_;
  return Status::success();
}

Status PodDirectory::scanContainers() {
  auto entries = listDir(containerDir_.path, false);
  if (!entries) {
    if (entries.error().code() == ENOENT || entries.error().code() == ENOTDIR) {
      linksById_.clear();
      podsWithLinks_.clear();
    }
    return entries.error();
  }
  std::unordered_map<std::string, LogLink> links;
  std::unordered_set<std::string> pods;
  for (const DirEntry& e : *entries) {
    // "<pod>_<namespace>_<container>-<id>.log"
    std::string_view name(e.name);
    if (!name.ends_with(".log")) continue;
    name.remove_suffix(4);
    size_t dash = name.rfind('-');
    if (dash == std::string_view::npos) continue;
    std::string_view id = name.substr(dash + 1);
    auto parts = splitUnderscores(name.substr(0, dash), 3);
    if (!isContainerId(id) || !parts) continue;
    if (!isSubdomain((*parts)[0]) || !isLabel((*parts)[1]) || !isLabel((*parts)[2])) continue;
    LogLink link{std::string((*parts)[1]), std::string((*parts)[0]), std::string((*parts)[2])};
    pods.insert(podKey(link.namespace_, link.pod));
    links[std::string(id)] = std::move(link);
  }
  linksById_ = std::move(links);
  podsWithLinks_ = std::move(pods);
  return Status::success();
}

std::optional<PodDirectory::Pod> PodDirectory::pod(const std::string& uid) {
  std::lock_guard lock(mutex_);
  if (auto it = podsByUid_.find(uid); it != podsByUid_.end()) return it->second;
  refresh(podDir_, &PodDirectory::scanPods);
  if (auto it = podsByUid_.find(uid); it != podsByUid_.end()) return it->second;
  return std::nullopt;
}

std::optional<std::string> PodDirectory::onlyContainerDir(const Pod& pod) {
  auto names = containerDirs(podDir_.path + "/" + pod.namespace_ + "_" + pod.name + "_" + pod.uid);
  if (!names) return std::nullopt;
  if (auto it = podsByUid_.find(pod.uid); it != podsByUid_.end()) it->second.containers = *names;
  if (names->size() != 1) return std::nullopt;
  return names->front();
}

std::string PodDirectory::containerName(const Pod& pod, const std::string& containerId) {
  std::lock_guard lock(mutex_);
  auto it = linksById_.find(containerId);
  if (it == linksById_.end()) {
    refresh(containerDir_, &PodDirectory::scanContainers);
    it = linksById_.find(containerId);
  }
  if (it != linksById_.end()) {
    const LogLink& link = it->second;
    return link.namespace_ == pod.namespace_ && link.pod == pod.name ? link.container : "";
  }
  // The runtime names this pod's containers but not this id: a sandbox, or a container whose
  // link the kubelet has not made yet. Guessing would be wrong.
  if (podsWithLinks_.contains(podKey(pod.namespace_, pod.name))) return "";
  return onlyContainerDir(pod).value_or("");
}

std::vector<PodDirectory::Pod> PodDirectory::pods() {
  std::lock_guard lock(mutex_);
  refresh(podDir_, &PodDirectory::scanPods);
  std::vector<Pod> out;
  out.reserve(podsByUid_.size());
  for (const auto& [uid, pod] : podsByUid_) out.push_back(pod);
  std::sort(out.begin(), out.end(), [](const Pod& a, const Pod& b) {
    return std::tie(a.namespace_, a.name, a.uid) < std::tie(b.namespace_, b.name, b.uid);
  });
  return out;
}

std::string PodDirectory::state() const {
  std::lock_guard lock(mutex_);
  auto describe = [](const Watched& w, size_t count, const std::string& noun) {
    std::string line = w.what + " " + w.path + ": ";
    if (!w.problem.empty()) return line + w.problem;
    return line + std::to_string(count) + " " + noun + (count == 1 ? "" : "s");
  };
  return describe(podDir_, podsByUid_.size(), "pod") + "; " +
         describe(containerDir_, linksById_.size(), "container log");
}

uint64_t PodDirectory::podScans() const {
  std::lock_guard lock(mutex_);
  return podScans_;
}

}  // namespace vigil::k8s
