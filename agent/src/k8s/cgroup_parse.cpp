#include "k8s/cgroup_parse.hpp"

#include <array>
#include <vector>

namespace vigil::k8s {
namespace {

constexpr std::string_view kScopeSuffix = ".scope";
constexpr std::string_view kSliceSuffix = ".slice";
constexpr std::string_view kDeletedSuffix = " (deleted)";

bool isLowerHex(char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); }

bool isAnyHex(char c) { return isLowerHex(c) || (c >= 'A' && c <= 'F'); }

char toLower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }

std::vector<std::string_view> components(std::string_view path) {
  std::vector<std::string_view> out;
  size_t pos = 0;
  while (pos <= path.size()) {
    size_t slash = path.find('/', pos);
    if (slash == std::string_view::npos) slash = path.size();
    if (slash > pos) out.push_back(path.substr(pos, slash - pos));
    pos = slash + 1;
  }
  return out;
}

// Splits "a-b-c" at its last separator into ("a-b", "c"); no separator gives ("", whole).
std::pair<std::string_view, std::string_view> splitLast(std::string_view s, char sep) {
  size_t at = s.rfind(sep);
  if (at == std::string_view::npos) return {std::string_view(), s};
  return {s.substr(0, at), s.substr(at + 1)};
}

struct PodPart {
  std::string uid;
  std::string qos;
};

// A pod slice of the systemd driver: "[<root>-]kubepods[-burstable|-besteffort]-pod<uid>.slice",
// the uid's dashes turned into underscores (systemd reserves '-' for the slice hierarchy).
std::optional<PodPart> systemdPodSlice(std::string_view name) {
  if (!name.ends_with(kSliceSuffix)) return std::nullopt;
  name.remove_suffix(kSliceSuffix.size());
  auto [parents, last] = splitLast(name, '-');
  if (parents.empty() || !last.starts_with("pod")) return std::nullopt;
  auto uid = canonicalPodUid(last.substr(3), '_');
  if (!uid) return std::nullopt;
  auto [above, qosToken] = splitLast(parents, '-');
  if (qosToken == "kubepods") return PodPart{*uid, "guaranteed"};
  if ((qosToken == "burstable" || qosToken == "besteffort") &&
      splitLast(above, '-').second == "kubepods") {
    return PodPart{*uid, std::string(qosToken)};
  }
  return std::nullopt;
}

// A pod directory of the cgroupfs driver: "kubepods/pod<uid>" (guaranteed) or
// "kubepods/{burstable,besteffort}/pod<uid>".
std::optional<PodPart> cgroupfsPod(const std::vector<std::string_view>& parts, size_t i) {
  std::string_view name = parts[i];
  if (i == 0 || !name.starts_with("pod")) return std::nullopt;
  auto uid = canonicalPodUid(name.substr(3), '-');
  if (!uid) return std::nullopt;
  std::string_view parent = parts[i - 1];
  if (parent == "kubepods") return PodPart{*uid, "guaranteed"};
  if ((parent == "burstable" || parent == "besteffort") && i >= 2 && parts[i - 2] == "kubepods") {
    return PodPart{*uid, std::string(parent)};
  }
  return std::nullopt;
}

struct Scope {
  std::string runtime;
  std::string id;
  bool monitor = false;  // conmon: the runtime's process watching container `id`
  bool bare = false;     // a bare id, runtime unknown
};

struct ScopePrefix {
  std::string_view prefix;
  std::string_view runtime;
  bool monitor;
};

// Longer prefixes first, so "crio-conmon-" is not taken for "crio-" (its id check would fail
// anyway, but the order makes the intent plain).
constexpr std::array<ScopePrefix, 7> kScopePrefixes{{
    {"cri-containerd-", "containerd", false},
    {"crio-conmon-", "cri-o", true},
    {"crio-", "cri-o", false},
    {"docker-", "docker", false},
    {"libpod-conmon-", "podman", true},
    {"libpod-", "podman", false},
    {"nerdctl-", "containerd", false},
}};

// A runtime's container cgroup: "<prefix><id>[.scope]" or a bare "<id>".
std::optional<Scope> containerScope(std::string_view name) {
  if (name.ends_with(kScopeSuffix)) name.remove_suffix(kScopeSuffix.size());
  if (isContainerId(name)) return Scope{"", std::string(name), false, true};
  for (const ScopePrefix& p : kScopePrefixes) {
    if (name.starts_with(p.prefix) && isContainerId(name.substr(p.prefix.size()))) {
      return Scope{std::string(p.runtime), std::string(name.substr(p.prefix.size())), p.monitor,
                   false};
    }
  }
  return std::nullopt;
}

// runc's systemd cgroup path, left as a directory name when runc uses the cgroupfs manager:
// "kubepods-burstable-pod<uid>.slice:cri-containerd:<id>".
std::optional<ContainerRef> runcSystemdTriple(std::string_view name) {
  size_t first = name.find(':');
  if (first == std::string_view::npos) return std::nullopt;
  size_t second = name.find(':', first + 1);
  if (second == std::string_view::npos) return std::nullopt;
  auto pod = systemdPodSlice(name.substr(0, first));
  std::string_view prefix = name.substr(first + 1, second - first - 1);
  std::string_view id = name.substr(second + 1);
  if (!pod || !isContainerId(id)) return std::nullopt;
  std::string runtime;
  if (prefix == "cri-containerd") {
    runtime = "containerd";
  } else if (prefix == "crio") {
    runtime = "cri-o";
  } else if (prefix == "docker") {
    runtime = "docker";
  }
  return ContainerRef{runtime, std::string(id), pod->uid, pod->qos};
}

std::optional<ContainerRef> podRef(const std::vector<std::string_view>& parts) {
  for (size_t i = 0; i < parts.size(); ++i) {
    if (auto triple = runcSystemdTriple(parts[i])) return triple;
    auto pod = systemdPodSlice(parts[i]);
    if (!pod) pod = cgroupfsPod(parts, i);
    if (!pod) continue;
    ContainerRef ref{"", "", pod->uid, pod->qos};
    // Anything below the pod's cgroup belongs to the pod; only its direct children can be
    // containers (the kubelet makes the pod cgroup the containers' parent).
    if (i + 1 < parts.size()) {
      if (auto scope = containerScope(parts[i + 1])) {
        ref.runtime = scope->runtime;
        if (!scope->monitor) ref.containerId = scope->id;
      }
    }
    return ref;
  }
  return std::nullopt;
}

std::optional<ContainerRef> plainContainerRef(const std::vector<std::string_view>& parts) {
  for (size_t i = 0; i < parts.size(); ++i) {
    // docker's cgroupfs driver: /docker/<id>
    if (parts[i] == "docker" && i + 1 < parts.size() && isContainerId(parts[i + 1])) {
      return ContainerRef{"docker", std::string(parts[i + 1]), "", ""};
    }
    auto scope = containerScope(parts[i]);
    // A bare id outside docker's parent or a pod could be anything; conmon is the host's.
    if (!scope || scope->bare || scope->monitor) continue;
    return ContainerRef{scope->runtime, scope->id, "", ""};
  }
  return std::nullopt;
}

}  // namespace

bool isContainerId(std::string_view id) {
  if (id.size() != 64) return false;
  for (char c : id) {
    if (!isLowerHex(c)) return false;
  }
  return true;
}

std::optional<std::string> canonicalPodUid(std::string_view raw, char separator) {
  std::string out;
  if (raw.size() == 32) {
    for (char c : raw) {
      if (!isAnyHex(c)) return std::nullopt;
      out.push_back(toLower(c));
    }
    return out;
  }
  if (raw.size() != 36) return std::nullopt;
  for (size_t i = 0; i < raw.size(); ++i) {
    bool dashSlot = i == 8 || i == 13 || i == 18 || i == 23;
    if (dashSlot) {
      if (raw[i] != separator) return std::nullopt;
      out.push_back('-');
    } else {
      if (!isAnyHex(raw[i])) return std::nullopt;
      out.push_back(toLower(raw[i]));
    }
  }
  return out;
}

std::optional<ContainerRef> parseCgroupPath(std::string_view path) {
  auto parts = components(path);
  if (auto ref = podRef(parts)) return ref;
  return plainContainerRef(parts);
}

std::vector<std::string_view> lines(std::string_view content) {
  std::vector<std::string_view> out;
  size_t pos = 0;
  while (pos < content.size()) {
    size_t end = content.find('\n', pos);
    if (end == std::string_view::npos) end = content.size();
    out.push_back(content.substr(pos, end - pos));
    pos = end + 1;
  }
  return out;
}

std::optional<ContainerRef> parseProcCgroup(std::string_view content) {
  std::optional<std::string_view> unified, systemd;
  std::vector<std::string_view> others;
  for (std::string_view line : lines(content)) {
    // "<hierarchy id>:<controllers>:<path>"; the path itself may contain ':'.
    size_t first = line.find(':');
    if (first == std::string_view::npos) continue;
    size_t second = line.find(':', first + 1);
    if (second == std::string_view::npos) continue;
    std::string_view hierarchy = line.substr(0, first);
    std::string_view controllers = line.substr(first + 1, second - first - 1);
    std::string_view path = line.substr(second + 1);
    // The kernel marks a removed cgroup that still has a (dying) member.
    if (path.ends_with(kDeletedSuffix)) path.remove_suffix(kDeletedSuffix.size());
    if (hierarchy == "0" && controllers.empty()) {
      unified = path;
    } else if (controllers == "name=systemd") {
      systemd = path;
    } else {
      others.push_back(path);
    }
  }
  if (unified) {
    if (auto ref = parseCgroupPath(*unified)) return ref;
  }
  if (systemd) {
    if (auto ref = parseCgroupPath(*systemd)) return ref;
  }
  for (std::string_view path : others) {
    if (auto ref = parseCgroupPath(path)) return ref;
  }
  return std::nullopt;
}

}  // namespace vigil::k8s
