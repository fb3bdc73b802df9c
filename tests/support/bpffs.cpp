#include "support/bpffs.hpp"

#include <signal.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <filesystem>

#include "support/netns.hpp"

namespace vigil::testing {
namespace {

constexpr const char* kPrefix = "vigil-bpffs-";

void unmountAndRemove(const std::string& path) {
  ::umount2(path.c_str(), MNT_DETACH);
  ::rmdir(path.c_str());
}

// Mounts of runs whose process is gone.
void removeStale() {
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator("/tmp", ec)) {
    const std::string name = entry.path().filename().string();
    if (name.rfind(kPrefix, 0) != 0) continue;
    const std::string pid = name.substr(
        std::strlen(kPrefix), name.find('-', std::strlen(kPrefix)) - std::strlen(kPrefix));
    if (pid.empty() || pid.find_first_not_of("0123456789") != std::string::npos) continue;
    if (::kill(static_cast<pid_t>(std::stol(pid)), 0) == 0 || errno == EPERM) continue;
    unmountAndRemove(entry.path().string());
  }
}

}  // namespace

std::unique_ptr<PrivateBpffs> PrivateBpffs::create() {
  removeStale();
  static std::atomic<int> counter{0};
  std::string path =
      std::string("/tmp/") + kPrefix + std::to_string(::getpid()) + "-" + std::to_string(counter++);
  if (::mkdir(path.c_str(), 0700) != 0 && errno != EEXIST)
    throw SupportError("mkdir " + path + ": " + std::strerror(errno));
  if (::mount("bpf", path.c_str(), "bpf", 0, "mode=0700") != 0) {
    int err = errno;
    ::rmdir(path.c_str());
    throw SupportError("mount bpffs on " + path + ": " + std::strerror(err));
  }
  return std::unique_ptr<PrivateBpffs>(new PrivateBpffs(std::move(path)));
}

PrivateBpffs::~PrivateBpffs() { unmountAndRemove(path_); }

}  // namespace vigil::testing
