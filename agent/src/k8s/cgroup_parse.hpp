#pragma once

// What a cgroup path says about the container, and the Kubernetes pod, a process runs in.
// Pure string work: nothing here touches the filesystem.
//
// Recognised layouts (cgroup v2, or any v1 controller, with any prefix before them, such as a
// kind node's own cgroup):
//   systemd driver  .../kubepods[-<qos>]-pod<uid, '_' for '-'>.slice/<runtime scope>
//                   where the slice name may carry a cgroup-root prefix ("kubelet-kubepods-...")
//   cgroupfs driver .../kubepods[/<qos>]/pod<uid>/<container>
//   runc's systemd "slice:prefix:id" form when it falls back to cgroupfs:
//                   .../kubepods-<qos>-pod<uid>.slice:cri-containerd:<id>
//   plain containers, no pod: docker-<id>.scope, /docker/<id>, libpod-<id>[.scope] (podman),
//                   cri-containerd-<id>.scope, crio-<id>[.scope], nerdctl-<id>.scope
// Container scopes inside a pod: cri-containerd-<id>.scope (containerd), crio-<id>[.scope]
// (CRI-O), docker-<id>.scope (docker, cri-dockerd), or a bare <id> (cgroupfs: containerd or
// docker, runtime unknown). A process in a child cgroup of a container belongs to it.
//
// CRI-O's monitor (crio-conmon-<id>[.scope], podman's libpod-conmon-<id>.scope) is not part of
// the container it watches: it is the runtime's process. Inside a pod (conmon_cgroup = "pod")
// it maps to the pod itself (podUid set, containerId empty, runtime "cri-o"); elsewhere (the
// default conmon_cgroup = "system.slice") it is a host process.

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace vigil::k8s {

struct ContainerRef {
  std::string runtime;      // "containerd", "cri-o", "docker", "podman", or "" when unknown
  std::string containerId;  // 64 lowercase hex; empty for a pod's own cgroup (or CRI-O's conmon)
  std::string podUid;       // lowercase 8-4-4-4-12, or the 32 hex digits of a static pod's uid;
                            // empty: not in a Kubernetes pod
  std::string qosClass;     // "guaranteed", "burstable", "besteffort", or "" outside a pod

  bool operator==(const ContainerRef&) const = default;
};

// The container (and pod) a cgroup path relative to a hierarchy's root names, or nullopt when
// it names none ("/", "/system.slice/ssh.service", "/kubepods.slice"). When pods are nested
// (a kubelet in a pod), the outermost pod wins: it is the one the local kubelet knows.
std::optional<ContainerRef> parseCgroupPath(std::string_view path);

// The content of /proc/<pid>/cgroup: the v2 line ("0::/...") first, then the v1 lines
// (name=systemd first, then the others in file order); the first that names a container wins.
// Hybrid hosts whose runtime uses the cgroupfs driver put containers in v1 hierarchies only.
std::optional<ContainerRef> parseProcCgroup(std::string_view content);

// The lines of a /proc file (views into content; no trailing empty line).
std::vector<std::string_view> lines(std::string_view content);

// A pod uid in canonical form: 8-4-4-4-12 hex groups separated by `separator` (case-insensitive)
// become lowercase with '-'; 32 hex digits (a static pod's uid, an md5 sum) stay as they are,
// lowercased. Anything else: nullopt.
std::optional<std::string> canonicalPodUid(std::string_view raw, char separator = '-');

// A full container id as runtimes print it: 64 lowercase hex digits.
bool isContainerId(std::string_view id);

}  // namespace vigil::k8s
