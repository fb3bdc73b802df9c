#include "events/cgroups.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <vector>

namespace vigil::events {
namespace fs = std::filesystem;
namespace {
constexpr size_t kMaxCachedCgroups = 65536;
}  // namespace

CgroupPaths::CgroupPaths(std::string mountPoint, std::string procRoot)
    : mountPoint_(std::move(mountPoint)), procRoot_(std::move(procRoot)) {}

std::optional<uint64_t> CgroupPaths::idOf(const std::string& relPath) const {
  if (mountPoint_.empty()) return std::nullopt;
  struct stat st {};
  if (::stat((mountPoint_ + relPath).c_str(), &st) != 0) return std::nullopt;
  return static_cast<uint64_t>(st.st_ino);
}

std::string CgroupPaths::pathFor(uint64_t id, uint32_t pidHint) {
  if (mountPoint_.empty() || id == 0) return "";
  std::lock_guard lock(mutex_);
  if (auto it = cache_.find(id); it != cache_.end()) return it->second;
  // Cgroups come and go (every pod, every systemd unit); start over rather than grow forever.
  if (cache_.size() >= kMaxCachedCgroups) cache_.clear();

  if (pidHint != 0) {
    std::ifstream in(procRoot_ + "/" + std::to_string(pidHint) + "/cgroup");
    std::string line;
    while (std::getline(in, line)) {
      if (line.rfind("0::", 0) != 0) continue;
      std::string rel = line.substr(3);
      if (idOf(rel) == id) {
        cache_[id] = rel;
        return rel;
      }
    }
  }
  if (auto rel = byHandle(id)) {
    cache_[id] = *rel;
    return *rel;
  }
  auto now = std::chrono::steady_clock::now();
  if (now - lastScan_ >= std::chrono::seconds(1)) {
    lastScan_ = now;
    rescan();
    if (auto it = cache_.find(id); it != cache_.end()) return it->second;
  }
  return "";
}

std::optional<std::string> CgroupPaths::byHandle(uint64_t id) {
  // On cgroup v2 a cgroup's id is its kernfs file handle: open the directory by it and read
  // back its path. One syscall pair, however many cgroups the host has, and it works after
  // every process of the cgroup has gone (CAP_DAC_READ_SEARCH; the agent runs as root).
  if (handleUnsupported_) return std::nullopt;
  if (mountFd_.get() < 0) {
    mountFd_ = UniqueFd(::open(mountPoint_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (mountFd_.get() < 0) return std::nullopt;
  }
  struct {
    file_handle header;
    uint64_t id;
  } handle{};
  handle.header.handle_bytes = sizeof(uint64_t);
  handle.header.handle_type = 0xfe;  // FILEID_KERNFS
  handle.id = id;
  UniqueFd fd(
      ::open_by_handle_at(mountFd_.get(), &handle.header, O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (fd.get() < 0) {
    if (errno == EPERM || errno == EOPNOTSUPP || errno == ENOSYS) handleUnsupported_ = true;
    return std::nullopt;
  }
  char buf[4096];
  const std::string link = "/proc/self/fd/" + std::to_string(fd.get());
  ssize_t n = ::readlink(link.c_str(), buf, sizeof buf - 1);
  if (n <= 0) return std::nullopt;
  std::string path(buf, static_cast<size_t>(n));
  if (path == mountPoint_) return "/";
  if (path.size() <= mountPoint_.size() || path.compare(0, mountPoint_.size(), mountPoint_) != 0 ||
      path[mountPoint_.size()] != '/')
    return std::nullopt;  // seen through another mount: fall back to the scan
  return path.substr(mountPoint_.size());
}

void CgroupPaths::rescan() {
  std::error_code ec;
  if (auto root = idOf("/")) cache_[*root] = "/";
  fs::recursive_directory_iterator it(mountPoint_, fs::directory_options::skip_permission_denied,
                                      ec);
  for (; !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
    if (!it->is_directory(ec) || it->is_symlink(ec)) continue;
    struct stat st {};
    if (::stat(it->path().c_str(), &st) != 0) continue;
    cache_[st.st_ino] = "/" + fs::relative(it->path(), mountPoint_, ec).string();
  }
}

}  // namespace vigil::events
