#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "common/mountinfo.hpp"
#include "events/cgroups.hpp"

namespace vigil::events {
namespace {

TEST(Cgroups, FindsCgroup2MountOnHybridAndPureHosts) {
  auto path = std::filesystem::temp_directory_path() / "vigil-mountinfo-test";
  {
    std::ofstream(path)
        << "25 1 0:23 / /sys rw - sysfs sysfs rw\n"
           "30 25 0:26 / /sys/fs/cgroup ro,nosuid shared:9 - tmpfs tmpfs ro,mode=755\n"
           "31 30 0:27 /sub /mnt/bind rw - cgroup2 cgroup2 rw\n"
           "32 30 0:27 / /sys/fs/cgroup/unified rw shared:10 - cgroup2 cgroup2 rw,nsdelegate\n"
           "33 30 0:28 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n";
  }
  EXPECT_EQ(vigil::findCgroup2Mount(path.string()), "/sys/fs/cgroup/unified");
  {
    std::ofstream(path) << "30 25 0:26 / /sys/fs/cgroup rw shared:4 - cgroup2 cgroup2 rw\n";
  }
  EXPECT_EQ(vigil::findCgroup2Mount(path.string()), "/sys/fs/cgroup");
  {
    std::ofstream(path) << "25 1 0:23 / /sys rw - sysfs sysfs rw\n";
  }
  EXPECT_FALSE(vigil::findCgroup2Mount(path.string()));
  std::filesystem::remove(path);
}

TEST(Cgroups, ResolvesIdsByInodeInADirectoryTree) {
  namespace fs = std::filesystem;
  fs::path root = fs::temp_directory_path() / ("vigil-cg-" + std::to_string(getpid()));
  fs::create_directories(root / "kubepods.slice" / "pod1");
  CgroupPaths paths(root.string(), "/nonexistent-proc");
  auto id = paths.idOf("/kubepods.slice/pod1");
  ASSERT_TRUE(id);
  EXPECT_EQ(paths.pathFor(*id, 0), "/kubepods.slice/pod1");
  EXPECT_EQ(paths.pathFor(*paths.idOf("/"), 0), "/");
  EXPECT_EQ(paths.pathFor(0, 0), "");
  CgroupPaths disabled("", "/proc");
  EXPECT_EQ(disabled.pathFor(*id, 0), "");
  fs::remove_all(root);
}

}  // namespace
}  // namespace vigil::events
