#pragma once

// Joining the host's cgroup namespace. In a container with a private cgroup namespace (the
// default for pods on cgroup v2 nodes), /proc/*/cgroup and the root field of the cgroup mounts
// in mountinfo are relative to the container's own cgroup, so the agent would see "/" where the
// node has "/kubepods.slice/...". With hostPID, /proc/1 is the node's init, in the node's
// cgroup namespace: joining it makes every path the node's.

#include <string>

#include "common/error.hpp"

namespace vigil {

// What joinHostCgroupNamespace did.
enum class CgroupNamespace { already_host, joined };

// Joins the cgroup namespace of <procRoot>/<hostPid> (the node's init by default) unless this
// process is in the initial cgroup namespace already. Call it before other threads start (a
// thread that exists already keeps its namespace). Needs CAP_SYS_ADMIN, and ptrace access to
// hostPid; an error says what failed.
Expected<CgroupNamespace> joinHostCgroupNamespace(const std::string& procRoot = "/proc",
                                                  int hostPid = 1);

}  // namespace vigil
