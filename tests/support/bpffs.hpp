#pragma once

// A bpf filesystem of the test's own: mounted on a temp directory, unmounted (and with it every
// pin in it: links pinned there detach) when the owner goes. Tests pin here, never under the
// host's /sys/fs/bpf, and mount nothing there either.

#include <memory>
#include <string>

namespace vigil::testing {

class PrivateBpffs {
 public:
  // Mounts bpffs on /tmp/vigil-bpffs-<pid>-<n>; throws SupportError when it cannot. First
  // unmounts and removes those of processes that are gone (a run that crashed).
  static std::unique_ptr<PrivateBpffs> create();
  ~PrivateBpffs();
  PrivateBpffs(const PrivateBpffs&) = delete;
  PrivateBpffs& operator=(const PrivateBpffs&) = delete;

  const std::string& path() const { return path_; }

 private:
  explicit PrivateBpffs(std::string path) : path_(std::move(path)) {}
  std::string path_;
};

}  // namespace vigil::testing
