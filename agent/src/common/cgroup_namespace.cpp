#include "common/cgroup_namespace.hpp"

#include <fcntl.h>
#include <sched.h>
#include <sys/stat.h>
#include <unistd.h>

namespace vigil {

namespace {
// The inode of the initial cgroup namespace, fixed by the kernel (PROC_CGROUP_INIT_INO).
constexpr ino_t kInitialCgroupNamespace = 0xEFFFFFFBU;
}  // namespace

Expected<CgroupNamespace> joinHostCgroupNamespace(const std::string& procRoot, int hostPid) {
  const std::string host = procRoot + "/" + std::to_string(hostPid) + "/ns/cgroup";
  const std::string self = procRoot + "/self/ns/cgroup";
  struct stat selfNs {};
  if (::stat(self.c_str(), &selfNs) != 0) return Error(errno, "stat " + self);
  // Checked first: reading another process's namespace needs ptrace access to it.
  if (selfNs.st_ino == kInitialCgroupNamespace) return CgroupNamespace::already_host;
  struct stat hostNs {};
  if (::stat(host.c_str(), &hostNs) != 0) return Error(errno, "stat " + host);
  if (hostNs.st_dev == selfNs.st_dev && hostNs.st_ino == selfNs.st_ino)
    return CgroupNamespace::already_host;
  int fd = ::open(host.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Error(errno, "open " + host);
  int rc = ::setns(fd, CLONE_NEWCGROUP);
  int err = errno;
  ::close(fd);
  if (rc != 0) return Error(err, "join the cgroup namespace of " + host);
  return CgroupNamespace::joined;
}

}  // namespace vigil
