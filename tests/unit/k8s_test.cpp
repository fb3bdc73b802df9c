#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <fstream>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "k8s/cgroup_parse.hpp"
#include "k8s/pod_directory.hpp"
#include "k8s/workload_resolver.hpp"

namespace vigil::k8s {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

const std::string kId = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
const std::string kId2 = "fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210";
const std::string kId3 = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const std::string kUid = "1f2e3d4c-5b6a-4978-8a9b-0c1d2e3f4a5b";
const std::string kUidSystemd = "1f2e3d4c_5b6a_4978_8a9b_0c1d2e3f4a5b";
const std::string kUid2 = "99999999-8888-4777-8666-555555555555";
const std::string kStaticUid = "6b3f1e2d4c5a69788796a5b4c3d2e1f0";  // md5 of a static pod

// ---------------------------------------------------------------------------------------------
// parseCgroupPath

struct PathCase {
  const char* name;
  std::string path;
  std::optional<ContainerRef> want;
};

ContainerRef ref(std::string runtime, std::string id, std::string uid = "", std::string qos = "") {
  return ContainerRef{std::move(runtime), std::move(id), std::move(uid), std::move(qos)};
}

std::vector<PathCase> positiveCases() {
  const std::string burstable =
      "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + kUidSystemd + ".slice";
  const std::string besteffort =
      "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod" + kUidSystemd + ".slice";
  return {
      {"systemd containerd burstable", burstable + "/cri-containerd-" + kId + ".scope",
       ref("containerd", kId, kUid, "burstable")},
      {"systemd cri-o besteffort", besteffort + "/crio-" + kId + ".scope",
       ref("cri-o", kId, kUid, "besteffort")},
      {"systemd cri-o conmon is the pod's", besteffort + "/crio-conmon-" + kId + ".scope",
       ref("cri-o", "", kUid, "besteffort")},
      {"systemd docker guaranteed",
       "/kubepods.slice/kubepods-pod" + kUidSystemd + ".slice/docker-" + kId + ".scope",
       ref("docker", kId, kUid, "guaranteed")},
      {"systemd pod cgroup itself", burstable, ref("", "", kUid, "burstable")},
      {"systemd child cgroup of a container", burstable + "/cri-containerd-" + kId + ".scope/sub",
       ref("containerd", kId, kUid, "burstable")},
      {"systemd crun's container child", besteffort + "/crio-" + kId + ".scope/container",
       ref("cri-o", kId, kUid, "besteffort")},
      {"systemd static pod uid",
       "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + kStaticUid +
           ".slice/cri-containerd-" + kId + ".scope",
       ref("containerd", kId, kStaticUid, "burstable")},
      {"kind node (systemd, kubelet cgroup root) inside docker",
       "/system.slice/docker-" + kId2 +
           ".scope/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-besteffort.slice/"
           "kubelet-kubepods-besteffort-pod" +
           kUidSystemd + ".slice/cri-containerd-" + kId + ".scope",
       ref("containerd", kId, kUid, "besteffort")},
      {"runc systemd triple under cgroupfs",
       "/system.slice/containerd.service/kubepods-burstable-pod" + kUidSystemd +
           ".slice:cri-containerd:" + kId,
       ref("containerd", kId, kUid, "burstable")},
      {"cgroupfs burstable", "/kubepods/burstable/pod" + kUid + "/" + kId,
       ref("", kId, kUid, "burstable")},
      {"cgroupfs guaranteed", "/kubepods/pod" + kUid + "/" + kId, ref("", kId, kUid, "guaranteed")},
      {"cgroupfs besteffort", "/kubepods/besteffort/pod" + kUid + "/" + kId,
       ref("", kId, kUid, "besteffort")},
      {"cgroupfs cri-o", "/kubepods/burstable/pod" + kUid + "/crio-" + kId,
       ref("cri-o", kId, kUid, "burstable")},
      {"cgroupfs cri-o conmon", "/kubepods/burstable/pod" + kUid + "/crio-conmon-" + kId,
       ref("cri-o", "", kUid, "burstable")},
      {"cgroupfs pod cgroup itself", "/kubepods/besteffort/pod" + kUid,
       ref("", "", kUid, "besteffort")},
      {"cgroupfs unknown child stays in the pod", "/kubepods/burstable/pod" + kUid + "/extra",
       ref("", "", kUid, "burstable")},
      {"kind node (cgroupfs) inside docker",
       "/docker/" + kId2 + "/kubelet/kubepods/burstable/pod" + kUid + "/" + kId,
       ref("", kId, kUid, "burstable")},
      {"nested pods: the outermost wins",
       "/kubepods/pod" + kUid + "/" + kId + "/kubepods/besteffort/pod" + kUid2 + "/" + kId2,
       ref("", kId, kUid, "guaranteed")},
      {"docker systemd", "/system.slice/docker-" + kId + ".scope", ref("docker", kId)},
      {"docker cgroupfs", "/docker/" + kId, ref("docker", kId)},
      {"docker in docker: the outer one", "/docker/" + kId + "/docker/" + kId2, ref("docker", kId)},
      {"podman systemd", "/machine.slice/libpod-" + kId + ".scope", ref("podman", kId)},
      {"podman systemd nested", "/machine.slice/libpod-" + kId + ".scope/container",
       ref("podman", kId)},
      {"podman cgroupfs", "/libpod_parent/libpod-" + kId, ref("podman", kId)},
      {"nerdctl", "/system.slice/nerdctl-" + kId + ".scope", ref("containerd", kId)},
      {"a pod slice outside kubepods is no pod",
       "/kubepods.slice/pod" + kUidSystemd + ".slice/cri-containerd-" + kId + ".scope",
       ref("containerd", kId)},
      {"no leading slash", "system.slice/docker-" + kId + ".scope", ref("docker", kId)},
      {"doubled slashes", "//kubepods//pod" + kUid + "//" + kId, ref("", kId, kUid, "guaranteed")},
  };
}

std::vector<PathCase> negativeCases() {
  const std::string id63 = kId.substr(1);
  const std::string podSlice = "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod";
  std::string upperId = kId;
  upperId[0] = 'A';
  std::string nonHexId = kId;
  nonHexId[5] = 'g';
  return {
      {"root", "/", std::nullopt},
      {"empty", "", std::nullopt},
      {"a service", "/system.slice/ssh.service", std::nullopt},
      {"user session", "/user.slice/user-1000.slice/session-3.scope", std::nullopt},
      {"kubepods slice alone", "/kubepods.slice", std::nullopt},
      {"qos slice alone", "/kubepods.slice/kubepods-burstable.slice", std::nullopt},
      {"kubepods alone", "/kubepods", std::nullopt},
      {"qos dir alone", "/kubepods/burstable", std::nullopt},
      {"docker daemon", "/system.slice/docker.service", std::nullopt},
      {"containerd daemon", "/system.slice/containerd.service", std::nullopt},
      {"63-char id", "/system.slice/docker-" + id63 + ".scope", std::nullopt},
      {"65-char id", "/system.slice/docker-" + kId + "0.scope", std::nullopt},
      {"uppercase id", "/system.slice/docker-" + upperId + ".scope", std::nullopt},
      {"non-hex id", "/docker/" + nonHexId, std::nullopt},
      {"suffix not .scope", "/system.slice/docker-" + kId + ".scopex", std::nullopt},
      {"bare id at the root", "/" + kId, std::nullopt},
      {"bare id under a slice", "/user.slice/" + kId, std::nullopt},
      {"podman conmon", "/machine.slice/libpod-conmon-" + kId + ".scope", std::nullopt},
      {"cri-o conmon in system.slice", "/system.slice/crio-conmon-" + kId + ".scope", std::nullopt},
      {"systemd uid with dashes", podSlice + kUid + ".slice/" + kId, std::nullopt},
      {"systemd uid one short", podSlice + kUidSystemd.substr(1) + ".slice", std::nullopt},
      {"systemd uid not hex", podSlice + "zf2e3d4c_5b6a_4978_8a9b_0c1d2e3f4a5b.slice",
       std::nullopt},
      {"systemd unknown qos", "/kubepods.slice/kubepods-burstablex-pod" + kUidSystemd + ".slice",
       std::nullopt},
      {"systemd no kubepods", "/foo.slice/foo-burstable-pod" + kUidSystemd + ".slice",
       std::nullopt},
      {"cgroupfs uid with underscores", "/kubepods/burstable/pod" + kUidSystemd + "/" + kId,
       std::nullopt},
      {"cgroupfs pod outside kubepods", "/other/burstable/pod" + kUid + "/" + kId, std::nullopt},
      {"cgroupfs uid 31 hex", "/kubepods/pod" + kStaticUid.substr(1), std::nullopt},
  };
}

TEST(K8sCgroupParse, RecognisesEveryLayout) {
  for (const PathCase& c : positiveCases()) {
    SCOPED_TRACE(std::string(c.name) + ": " + c.path);
    auto got = parseCgroupPath(c.path);
    ASSERT_TRUE(got.has_value());
    EXPECT_EQ(got->runtime, c.want->runtime);
    EXPECT_EQ(got->containerId, c.want->containerId);
    EXPECT_EQ(got->podUid, c.want->podUid);
    EXPECT_EQ(got->qosClass, c.want->qosClass);
  }
}

TEST(K8sCgroupParse, RejectsLookAlikes) {
  for (const PathCase& c : negativeCases()) {
    SCOPED_TRACE(std::string(c.name) + ": " + c.path);
    auto got = parseCgroupPath(c.path);
    EXPECT_FALSE(got.has_value()) << "got runtime=" << got->runtime << " id=" << got->containerId
                                  << " pod=" << got->podUid;
  }
}

TEST(K8sCgroupParse, CanonicalPodUid) {
  EXPECT_EQ(canonicalPodUid(kUid), kUid);
  EXPECT_EQ(canonicalPodUid(kUidSystemd, '_'), kUid);
  EXPECT_EQ(canonicalPodUid("1F2E3D4C-5B6A-4978-8A9B-0C1D2E3F4A5B"), kUid);
  EXPECT_EQ(canonicalPodUid("6B3F1E2D4C5A69788796A5B4C3D2E1F0"), kStaticUid);
  EXPECT_FALSE(canonicalPodUid(kUidSystemd));                             // wrong separator
  EXPECT_FALSE(canonicalPodUid(kUid, '_'));                               // wrong separator
  EXPECT_FALSE(canonicalPodUid(kUid.substr(1)));                          // too short
  EXPECT_FALSE(canonicalPodUid(kUid + "0"));                              // too long
  EXPECT_FALSE(canonicalPodUid("1f2e3d4c-5b6a4-978-8a9b-0c1d2e3f4a5b"));  // dash misplaced
  EXPECT_FALSE(canonicalPodUid(""));
  EXPECT_TRUE(isContainerId(kId));
  EXPECT_FALSE(isContainerId(kId.substr(1)));
}

// ---------------------------------------------------------------------------------------------
// parseProcCgroup

TEST(K8sCgroupParse, ProcCgroupPrefersUnifiedLine) {
  std::string content =
      "0::/kubepods.slice/kubepods-pod" + kUidSystemd + ".slice/cri-containerd-" + kId + ".scope\n";
  EXPECT_EQ(parseProcCgroup(content), ref("containerd", kId, kUid, "guaranteed"));
  // Both: the v2 line wins over v1 lines naming something else.
  content += "4:memory:/docker/" + kId2 + "\n";
  EXPECT_EQ(parseProcCgroup(content), ref("containerd", kId, kUid, "guaranteed"));
}

TEST(K8sCgroupParse, ProcCgroupHybridFallsBackToV1) {
  const std::string pod = "/kubepods/burstable/pod" + kUid + "/" + kId;
  std::string content = "12:memory:" + pod + "\n" + "11:cpu,cpuacct:" + pod + "\n" +
                        "1:name=systemd:" + pod + "\n" + "0::/system.slice/containerd.service\n";
  EXPECT_EQ(parseProcCgroup(content), ref("", kId, kUid, "burstable"));
}

TEST(K8sCgroupParse, ProcCgroupNameSystemdBeforeOtherControllers) {
  std::string content = "0::/\n4:memory:/docker/" + kId2 + "\n1:name=systemd:/docker/" + kId + "\n";
  EXPECT_EQ(parseProcCgroup(content), ref("docker", kId));
  // Without a name=systemd match, the others in file order.
  content = "0::/\n4:memory:/docker/" + kId2 + "\n3:pids:/docker/" + kId +
            "\n1:name=systemd:/system.slice/docker.service\n";
  EXPECT_EQ(parseProcCgroup(content), ref("docker", kId2));
}

TEST(K8sCgroupParse, ProcCgroupV1OnlyAndHost) {
  EXPECT_EQ(parseProcCgroup("11:cpu,cpuacct:/docker/" + kId + "\n"), ref("docker", kId));
  EXPECT_FALSE(parseProcCgroup("0::/init.scope\n"));
  EXPECT_FALSE(parseProcCgroup("12:memory:/\n1:name=systemd:/init.scope\n0::/init.scope\n"));
  EXPECT_FALSE(parseProcCgroup(""));
  EXPECT_FALSE(parseProcCgroup("garbage\nmore:garbage\n"));
}

TEST(K8sCgroupParse, ProcCgroupDeletedCgroupAndColonsInPath) {
  EXPECT_EQ(parseProcCgroup("0::/system.slice/docker-" + kId + ".scope (deleted)\n"),
            ref("docker", kId));
  // No final newline; the path holds ':' (runc's slice:prefix:id form).
  EXPECT_EQ(parseProcCgroup("1:name=systemd:/system.slice/containerd.service/"
                            "kubepods-besteffort-pod" +
                            kUidSystemd + ".slice:crio:" + kId),
            ref("cri-o", kId, kUid, "besteffort"));
}

// ---------------------------------------------------------------------------------------------
// A real directory tree

class TempTree {
 public:
  TempTree() {
    std::string tmpl = (fs::temp_directory_path() / "vigil-k8s-XXXXXX").string();
    if (::mkdtemp(tmpl.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
    root_ = tmpl;
  }
  ~TempTree() {
    std::error_code ec;
    fs::remove_all(root_, ec);
  }
  TempTree(const TempTree&) = delete;
  TempTree& operator=(const TempTree&) = delete;

  fs::path path(const std::string& rel) const { return root_ / rel; }
  std::string str(const std::string& rel) const { return path(rel).string(); }

  void mkdirs(const std::string& rel) const { fs::create_directories(path(rel)); }
  void write(const std::string& rel, const std::string& content = "") const {
    fs::create_directories(path(rel).parent_path());
    std::ofstream(path(rel)) << content;
  }

 private:
  fs::path root_;
};

// Sets a directory's mtime to a value no scan has seen, whatever the clock's granularity.
void bumpMtime(const fs::path& dir) {
  static time_t next = 1'000'000'000;
  next += 10;
  timespec times[2] = {{next, 0}, {next, 0}};
  ASSERT_EQ(::utimensat(AT_FDCWD, dir.c_str(), times, 0), 0);
}

timespec mtimeOf(const fs::path& dir) {
  struct stat st {};
  EXPECT_EQ(::stat(dir.c_str(), &st), 0);
  return st.st_mtim;
}

void setMtime(const fs::path& dir, timespec t) {
  timespec times[2] = {t, t};
  ASSERT_EQ(::utimensat(AT_FDCWD, dir.c_str(), times, 0), 0);
}

std::string podDirName(const std::string& ns, const std::string& pod, const std::string& uid) {
  return "pods/" + ns + "_" + pod + "_" + uid;
}

TEST(K8sPodDirectory, ReadsPodsAndIgnoresJunk) {
  TempTree t;
  t.write(podDirName("default", "nginx-7c5b", kUid) + "/nginx/0.log");
  t.write(podDirName("default", "nginx-7c5b", kUid) + "/sidecar/0.log");
  t.write(podDirName("default", "nginx-7c5b", kUid) + "/stray.log");  // a file: no container
  t.mkdirs(podDirName("default", "nginx-7c5b", kUid) + "/Bad_Name");  // not a DNS label
  t.write(podDirName("kube-system", "coredns-1", kUid2) + "/coredns/0.log");
  // Junk: wrong part counts, bad uid, bad names, a file with a pod's name.
  t.mkdirs("pods/not-a-pod");
  t.mkdirs("pods/default_nginx");
  t.mkdirs("pods/default_nginx_" + kUid2 + "_extra");
  t.mkdirs("pods/default_nginx_not-a-uid");
  t.mkdirs("pods/Default_nginx_" + kUid2);
  t.mkdirs("pods/default_-nginx_" + kUid2);
  t.write("pods/default_file_" + kStaticUid);

  PodDirectory d(t.str("pods"), t.str("containers"));
  auto pod = d.pod(kUid);
  ASSERT_TRUE(pod);
  EXPECT_EQ(pod->namespace_, "default");
  EXPECT_EQ(pod->name, "nginx-7c5b");
  EXPECT_EQ(pod->uid, kUid);
  EXPECT_EQ(pod->containers, (std::vector<std::string>{"nginx", "sidecar"}));

  auto all = d.pods();
  ASSERT_EQ(all.size(), 2u);
  EXPECT_EQ(all[0].name, "nginx-7c5b");
  EXPECT_EQ(all[1].namespace_, "kube-system");
  EXPECT_EQ(all[1].containers, (std::vector<std::string>{"coredns"}));
  EXPECT_FALSE(d.pod(kStaticUid));
  EXPECT_EQ(d.state(), "pod log directory " + t.str("pods") + ": 2 pods; container log directory " +
                           t.str("containers") +
                           ": not found (container names only for single-container pods)");
}

TEST(K8sPodDirectory, NamesUpToKubernetesLimits) {
  TempTree t;
  const std::string ns(63, 'n');
  // 63 + 1 + 153 + 1 + 36 = 254 bytes: within a file name's 255.
  std::string pod = std::string(75, 'p') + "." + std::string(77, 'q');
  const std::string container(63, 'c');
  t.write(podDirName(ns, pod, kUid) + "/" + container + "/0.log");
  t.mkdirs(podDirName(ns + "n", "x", kUid2));  // namespace of 64: not a label
  PodDirectory d(t.str("pods"), t.str("containers"));
  auto got = d.pod(kUid);
  ASSERT_TRUE(got);
  EXPECT_EQ(got->namespace_, ns);
  EXPECT_EQ(got->name, pod);
  EXPECT_EQ(got->containers, std::vector<std::string>{container});
  EXPECT_EQ(d.containerName(*got, kId), container);
  EXPECT_FALSE(d.pod(kUid2));
}

TEST(K8sPodDirectory, MissingDirectoryIsReportedNotRetried) {
  TempTree t;
  PodDirectory d(t.str("pods"), t.str("containers"), 0ms);
  // Looked at once on construction, so status says why no pod is named from the start.
  EXPECT_EQ(d.state(), "pod log directory " + t.str("pods") +
                           ": not found (processes are reported as host or container); "
                           "container log directory " +
                           t.str("containers") +
                           ": not found (container names only for single-container pods)");
  EXPECT_FALSE(d.pod(kUid));
  EXPECT_FALSE(d.pod(kUid2));
  EXPECT_TRUE(d.pods().empty());
  EXPECT_EQ(d.podScans(), 0u);
  // It appears later: found at the next miss.
  t.write(podDirName("default", "late", kUid) + "/app/0.log");
  auto pod = d.pod(kUid);
  ASSERT_TRUE(pod);
  EXPECT_EQ(pod->name, "late");
  EXPECT_EQ(d.podScans(), 1u);
  EXPECT_EQ(d.state().substr(0, d.state().find(';')),
            "pod log directory " + t.str("pods") + ": 1 pod");
  // And goes away again.
  fs::remove_all(t.path("pods"));
  EXPECT_FALSE(d.pod(kUid2));
  EXPECT_TRUE(d.pods().empty());
  EXPECT_FALSE(d.pod(kUid));
  EXPECT_NE(d.state().find(": not found (processes"), std::string::npos) << d.state();
}

TEST(K8sPodDirectory, PodAppearingAfterAMissIsFoundWhenTheDirectoryChanges) {
  TempTree t;
  t.write(podDirName("default", "first", kUid) + "/app/0.log");
  PodDirectory d(t.str("pods"), t.str("containers"), 1h);
  EXPECT_FALSE(d.pod(kUid2));
  EXPECT_EQ(d.podScans(), 1u);
  // A miss with the directory unchanged costs a stat, not a scan.
  EXPECT_FALSE(d.pod(kUid2));
  EXPECT_TRUE(d.pod(kUid));
  EXPECT_EQ(d.podScans(), 1u);

  t.write(podDirName("default", "second", kUid2) + "/app/0.log");
  bumpMtime(t.path("pods"));
  auto pod = d.pod(kUid2);
  ASSERT_TRUE(pod);
  EXPECT_EQ(pod->name, "second");
  EXPECT_EQ(d.podScans(), 2u);
}

TEST(K8sPodDirectory, UnchangedMtimeStillRescansAfterTheInterval) {
  TempTree t;
  t.mkdirs("pods");
  bumpMtime(t.path("pods"));
  PodDirectory d(t.str("pods"), t.str("containers"), 300ms);
  EXPECT_FALSE(d.pod(kUid));
  timespec before = mtimeOf(t.path("pods"));
  t.write(podDirName("default", "same-tick", kUid) + "/app/0.log");
  setMtime(t.path("pods"), before);  // as if created within the mtime's granularity
  EXPECT_FALSE(d.pod(kUid));
  std::this_thread::sleep_for(350ms);
  ASSERT_TRUE(d.pod(kUid));
  EXPECT_EQ(d.pod(kUid)->name, "same-tick");
  EXPECT_EQ(d.podScans(), 2u);
}

TEST(K8sPodDirectory, DeletedPodDisappearsAtTheNextRescan) {
  TempTree t;
  t.write(podDirName("default", "gone", kUid) + "/app/0.log");
  t.write(podDirName("default", "stays", kUid2) + "/app/0.log");
  PodDirectory d(t.str("pods"), t.str("containers"), 1h);
  ASSERT_TRUE(d.pod(kUid));
  ASSERT_EQ(d.pods().size(), 2u);
  fs::remove_all(t.path(podDirName("default", "gone", kUid)));
  bumpMtime(t.path("pods"));
  auto all = d.pods();
  ASSERT_EQ(all.size(), 1u);
  EXPECT_EQ(all[0].uid, kUid2);
  EXPECT_FALSE(d.pod(kUid));
}

TEST(K8sPodDirectory, ContainerNamesFromContainerLogNames) {
  TempTree t;
  t.write(podDirName("shop", "web-5d8f", kUid) + "/app/0.log");
  t.write(podDirName("shop", "web-5d8f", kUid) + "/istio-proxy/0.log");
  t.write("containers/web-5d8f_shop_app-" + kId + ".log");
  t.write("containers/web-5d8f_shop_istio-proxy-" + kId2 + ".log");
  // Junk: a cut id (the kubelet truncates at 255 bytes), bad names, not a .log.
  t.write("containers/web-5d8f_shop_app-" + kId3.substr(0, 40) + ".log");
  t.write("containers/web-5d8f_shop-" + kId3 + ".log");
  t.write("containers/web-5d8f_shop_app-" + kId3 + ".txt");
  PodDirectory d(t.str("pods"), t.str("containers"), 1h);
  auto pod = d.pod(kUid);
  ASSERT_TRUE(pod);
  EXPECT_EQ(d.containerName(*pod, kId), "app");
  EXPECT_EQ(d.containerName(*pod, kId2), "istio-proxy");
  // The runtime names this pod's containers, but not this id (the sandbox): no guess.
  EXPECT_EQ(d.containerName(*pod, kId3), "");
  // A link for another pod does not name a container of this one.
  PodDirectory::Pod other{"shop", "other", kUid2, {"app"}};
  EXPECT_EQ(d.containerName(other, kId), "");
  // A link made later is found once the directory changed.
  t.write("containers/web-5d8f_shop_debugger-" + kId3 + ".log");
  bumpMtime(t.path("containers"));
  EXPECT_EQ(d.containerName(*pod, kId3), "debugger");
  EXPECT_NE(d.state().find("container log directory " + t.str("containers") + ": 3 container logs"),
            std::string::npos);
}

TEST(K8sPodDirectory, NoFallbackGuessWhenContainerLogsNameThePod) {
  TempTree t;
  t.write(podDirName("default", "solo", kUid) + "/web/0.log");
  t.write("containers/solo_default_web-" + kId + ".log");
  PodDirectory d(t.str("pods"), t.str("containers"), 1h);
  auto pod = d.pod(kUid);
  ASSERT_TRUE(pod);
  EXPECT_EQ(d.containerName(*pod, kId), "web");
  // The sandbox (pause) of a one-container pod must not take the container's name.
  EXPECT_EQ(d.containerName(*pod, kId2), "");
}

TEST(K8sPodDirectory, SingleContainerFallbackWithoutContainerLogs) {
  TempTree t;
  t.write(podDirName("default", "solo", kUid) + "/web/0.log");
  t.write(podDirName("default", "duo", kUid2) + "/a/0.log");
  t.write(podDirName("default", "duo", kUid2) + "/b/0.log");
  PodDirectory d(t.str("pods"), t.str("no-containers"), 1h);
  auto solo = d.pod(kUid);
  auto duo = d.pod(kUid2);
  ASSERT_TRUE(solo && duo);
  EXPECT_EQ(d.containerName(*solo, kId), "web");
  EXPECT_EQ(d.containerName(*duo, kId), "");
}

TEST(K8sPodDirectory, FallbackListsThePodAfresh) {
  TempTree t;
  t.write(podDirName("default", "with-init", kUid) + "/init/0.log");
  PodDirectory d(t.str("pods"), t.str("no-containers"), 1h);
  auto pod = d.pod(kUid);
  ASSERT_TRUE(pod);
  EXPECT_EQ(d.containerName(*pod, kId), "init");
  // The app container starts after the scan: the stale list must not name it "init".
  t.write(podDirName("default", "with-init", kUid) + "/app/0.log");
  EXPECT_EQ(d.containerName(*pod, kId2), "");
  EXPECT_EQ(d.pod(kUid)->containers, (std::vector<std::string>{"app", "init"}));
}

// Runs `body` as an unprivileged user: in a child that drops root (root reads directories
// whatever their mode), or here when the test already runs unprivileged. The tree's root is
// opened to others so that the child can reach it.
void asUnprivileged(const TempTree& t, const std::function<void()>& body) {
  if (::geteuid() != 0) return body();
  fs::permissions(t.path(""), fs::perms::owner_all | fs::perms::group_exec | fs::perms::others_exec);
  pid_t pid = ::fork();
  if (pid == 0) {
    if (::setresgid(65534, 65534, 65534) != 0 || ::setresuid(65534, 65534, 65534) != 0) _exit(3);
    body();
    _exit(::testing::Test::HasFailure() ? 1 : 0);
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  ASSERT_TRUE(WIFEXITED(status)) << "child status " << status;
  EXPECT_EQ(WEXITSTATUS(status), 0) << "the unprivileged check failed (3: could not drop root)";
}

TEST(K8sPodDirectory, UnreadablePodDirectoryKeepsThePod) {
  TempTree t;
  t.write(podDirName("default", "locked", kUid) + "/app/0.log");
  fs::permissions(t.path("pods"), fs::perms::all);
  fs::permissions(t.path(podDirName("default", "locked", kUid)), fs::perms::none);
  asUnprivileged(t, [&] {
    PodDirectory d(t.str("pods"), t.str("containers"));
    auto pod = d.pod(kUid);
    ASSERT_TRUE(pod);
    EXPECT_TRUE(pod->containers.empty());
  });
  fs::permissions(t.path(podDirName("default", "locked", kUid)), fs::perms::owner_all);
}

TEST(K8sPodDirectory, UnreadableTopDirectoryIsReported) {
  TempTree t;
  t.write(podDirName("default", "x", kUid) + "/app/0.log");
  fs::permissions(t.path("pods"), fs::perms::none);
  asUnprivileged(t, [&] {
    PodDirectory d(t.str("pods"), t.str("containers"));
    EXPECT_FALSE(d.pod(kUid));
    EXPECT_NE(d.state().find("Permission denied"), std::string::npos) << d.state();
  });
  fs::permissions(t.path("pods"), fs::perms::owner_all);
}

// ---------------------------------------------------------------------------------------------
// WorkloadResolver

const std::string kPodPath =
    "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + kUidSystemd + ".slice";

TEST(K8sWorkloadResolver, HostContainerAndPod) {
  TempTree t;
  t.write(podDirName("default", "nginx-abc", kUid) + "/nginx/0.log");
  t.write(podDirName("default", "nginx-abc", kUid) + "/sidecar/0.log");
  t.write("containers/nginx-abc_default_nginx-" + kId + ".log");
  WorkloadResolver r(t.str("pods"), t.str("containers"), t.str("proc"));

  Workload host = r.resolve("/system.slice/ssh.service");
  EXPECT_EQ(host, Workload{});
  EXPECT_EQ(describe(host), "host");

  Workload plain = r.resolve("/system.slice/docker-" + kId2 + ".scope");
  EXPECT_EQ(plain.kind, Workload::Kind::container);
  EXPECT_EQ(plain.containerId, kId2);
  EXPECT_EQ(plain.runtime, "docker");
  EXPECT_EQ(plain.podUid, "");
  EXPECT_EQ(describe(plain), "container docker/fedcba987654");

  Workload pod = r.resolve(kPodPath + "/cri-containerd-" + kId + ".scope");
  Workload want{Workload::Kind::pod, "default", "nginx-abc", kUid, "nginx", kId, "containerd"};
  EXPECT_EQ(pod, want);
  EXPECT_EQ(describe(pod), "pod default/nginx-abc/nginx");
  // Cached: the same answer again, and from a child cgroup.
  EXPECT_EQ(r.resolve(kPodPath + "/cri-containerd-" + kId + ".scope"), want);
  EXPECT_EQ(r.resolve(kPodPath + "/cri-containerd-" + kId + ".scope/sub"), want);

  // The pod's own cgroup: a pod without a container.
  Workload podLevel = r.resolve(kPodPath);
  EXPECT_EQ(podLevel, (Workload{Workload::Kind::pod, "default", "nginx-abc", kUid, "", "", ""}));
  EXPECT_EQ(describe(podLevel), "pod default/nginx-abc");

  // Two containers and no link for this id (the sandbox): the pod, but no container name.
  Workload sandbox = r.resolve(kPodPath + "/cri-containerd-" + kId3 + ".scope");
  EXPECT_EQ(sandbox.pod, "nginx-abc");
  EXPECT_EQ(sandbox.container, "");
  EXPECT_EQ(sandbox.containerId, kId3);
}

TEST(K8sWorkloadResolver, PodWhoseLogDirectoryAppearsLaterResolvesLater) {
  TempTree t;
  t.mkdirs("pods");
  WorkloadResolver r(t.str("pods"), t.str("containers"), t.str("proc"), 300ms);
  const std::string path = kPodPath + "/crio-" + kId + ".scope";
  Workload early = r.resolve(path);
  EXPECT_EQ(early, (Workload{Workload::Kind::pod, "", "", kUid, "", kId, "cri-o"}));
  EXPECT_EQ(describe(early), "pod uid " + kUid + " (not in the pod log directory)");

  t.write(podDirName("team-a", "late-pod", kUid) + "/worker/0.log");
  // Within the retry interval the miss is remembered.
  EXPECT_EQ(r.resolve(path).pod, "");
  std::this_thread::sleep_for(350ms);
  Workload later = r.resolve(path);
  EXPECT_EQ(later,
            (Workload{Workload::Kind::pod, "team-a", "late-pod", kUid, "worker", kId, "cri-o"}));
  EXPECT_EQ(describe(later), "pod team-a/late-pod/worker");
}

TEST(K8sWorkloadResolver, ContainerNameThatAppearsLaterResolvesLater) {
  TempTree t;
  t.write(podDirName("default", "multi", kUid) + "/a/0.log");
  t.write(podDirName("default", "multi", kUid) + "/b/0.log");
  t.write("containers/multi_default_a-" + kId2 + ".log");
  WorkloadResolver r(t.str("pods"), t.str("containers"), t.str("proc"), 100ms);
  const std::string path = "/kubepods/burstable/pod" + kUid + "/" + kId;
  EXPECT_EQ(r.resolve(path).container, "");
  t.write("containers/multi_default_b-" + kId + ".log");
  std::this_thread::sleep_for(150ms);
  Workload w = r.resolve(path);
  EXPECT_EQ(w, (Workload{Workload::Kind::pod, "default", "multi", kUid, "b", kId, ""}));
}

TEST(K8sWorkloadResolver, HybridHostFallsBackToProcPidCgroup) {
  TempTree t;
  t.write(podDirName("default", "legacy", kUid) + "/app/0.log");
  const std::string v1 = "/kubepods/besteffort/pod" + kUid + "/" + kId;
  t.write("proc/4242/cgroup", "12:memory:" + v1 + "\n11:pids:" + v1 + "\n1:name=systemd:" + v1 +
                                  "\n0::/system.slice/containerd.service\n");
  t.write("proc/4343/cgroup", "0::/system.slice/cron.service\n");
  WorkloadResolver r(t.str("pods"), t.str("containers"), t.str("proc"));

  Workload want{Workload::Kind::pod, "default", "legacy", kUid, "app", kId, ""};
  EXPECT_EQ(r.resolve("/system.slice/containerd.service", 4242), want);
  // The path alone (pid 0), or a pid without a file: host.
  EXPECT_EQ(r.resolve("/system.slice/containerd.service"), Workload{});
  EXPECT_EQ(r.resolve("/system.slice/containerd.service", 777), Workload{});
  // The path's own answer wins over the pid's file.
  EXPECT_EQ(r.resolve("/docker/" + kId2, 4242).containerId, kId2);
  EXPECT_EQ(r.state().find("fallback: off"), std::string::npos);
}

TEST(K8sWorkloadResolver, ProcFallbackRestsOnPathsThatNeverHeldAContainer) {
  TempTree t;
  t.write(podDirName("default", "legacy", kUid) + "/app/0.log");
  const std::string v1 = "/kubepods/besteffort/pod" + kUid + "/" + kId;
  const std::string container = "11:pids:" + v1 + "\n0::/system.slice/containerd.service\n";
  const std::string plain = "11:pids:/user.slice\n0::/user.slice/session-1.scope\n";
  for (int pid = 100; pid < 120; pid++) t.write("proc/" + std::to_string(pid) + "/cgroup", plain);
  t.write("proc/200/cgroup", container);
  t.write("proc/201/cgroup", "11:pids:/\n0::/system.slice/containerd.service\n");
  t.write("proc/202/cgroup", container);
  t.write("proc/300/cgroup", container);  // as if a container had joined the session's cgroup
  WorkloadResolver r(t.str("pods"), t.str("containers"), t.str("proc"));

  // A session's processes: read until kFallbackMisses misses in a row, then the path rests.
  for (uint32_t i = 0; i < WorkloadResolver::kFallbackMisses; i++)
    EXPECT_EQ(r.resolve("/user.slice/session-1.scope", 100 + i), Workload{});
  EXPECT_EQ(r.resolve("/user.slice/session-1.scope", 300), Workload{}) << "read while resting";

  // The runtime's cgroup, where it found a container once, is read every time.
  Workload want{Workload::Kind::pod, "default", "legacy", kUid, "app", kId, ""};
  EXPECT_EQ(r.resolve("/system.slice/containerd.service", 200), want);
  for (int i = 0; i < 20; i++)
    EXPECT_EQ(r.resolve("/system.slice/containerd.service", 201), Workload{});  // the runtime
  EXPECT_EQ(r.resolve("/system.slice/containerd.service", 202), want);
}

TEST(K8sWorkloadResolver, ProcFallbackSwitchesOffOnAPureV2Host) {
  TempTree t;
  const std::string v1 = "/kubepods/besteffort/pod" + kUid + "/" + kId;
  t.write("proc/10/cgroup", "0::/system.slice/cron.service\n");
  t.write("proc/11/cgroup", "1:name=systemd:" + v1 + "\n0::/system.slice/x.service\n");
  WorkloadResolver r(t.str("pods"), t.str("containers"), t.str("proc"));
  EXPECT_EQ(r.resolve("/system.slice/cron.service", 10), Workload{});
  EXPECT_NE(r.state().find("/proc/<pid>/cgroup fallback: off"), std::string::npos) << r.state();
  // Not read any more (a v2-only host has nothing more to say than the path).
  EXPECT_EQ(r.resolve("/system.slice/x.service", 11), Workload{});
}

TEST(K8sWorkloadResolver, ManyPathsAndThreads) {
  TempTree t;
  t.write(podDirName("default", "busy", kUid) + "/app/0.log");
  WorkloadResolver r(t.str("pods"), t.str("containers"), t.str("proc"));
  const std::string podPath = "/kubepods/pod" + kUid + "/" + kId;
  Workload want{Workload::Kind::pod, "default", "busy", kUid, "app", kId, ""};
  std::vector<std::thread> threads;
  std::atomic<int> wrong{0};
  for (int n = 0; n < 4; ++n) {
    threads.emplace_back([&, n] {
      for (int i = 0; i < 3000; ++i) {
        // More distinct paths than the cache holds, mixed with the pod's.
        if (r.resolve("/system.slice/unit-" + std::to_string(n) + "-" + std::to_string(i) +
                      ".service") != Workload{}) {
          ++wrong;
        }
        if (r.resolve(podPath) != want) ++wrong;
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(wrong.load(), 0);
}

TEST(K8sWorkloadResolver, Describe) {
  EXPECT_EQ(describe(Workload{}), "host");
  EXPECT_EQ(describe(Workload{Workload::Kind::container, "", "", "", "", kId, ""}),
            "container 0123456789ab");
  EXPECT_EQ(describe(Workload{Workload::Kind::container, "", "", "", "", kId, "podman"}),
            "container podman/0123456789ab");
  EXPECT_EQ(describe(Workload{Workload::Kind::pod, "ns", "p", kUid, "", kId, ""}), "pod ns/p");
}

}  // namespace
}  // namespace vigil::k8s
