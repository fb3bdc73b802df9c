// Pod and container metadata on the real kernel: cgroups with the path shapes of containerd,
// CRI-O and docker under the systemd and cgroupfs drivers (and a cgroup v1 hierarchy, as on a
// hybrid host), a kubelet-style pod log tree, and real processes exec'd in those cgroups.
// Checks the workload of exec and exit events, of flow endpoints (tc on lo), of per-cgroup
// traffic rows, the namespace and pod filters of GetEvents, and the JSON export's pod filter.
//
// Everything lives under cgroups named vigil-pod-test-<pid> (the parser accepts a prefix before
// "kubepods", as on nested clusters), so a real node's kubepods hierarchy is never touched.
#include <arpa/inet.h>
#include <fcntl.h>
#include <sched.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <random>

#include <google/protobuf/util/json_util.h>

#include "common/cgroup_namespace.hpp"
#include "common/mountinfo.hpp"
#include "events/filter.hpp"
#include "integration/test_agent.hpp"
#include "support/traffic.hpp"

namespace vigil {
namespace {
namespace fs = std::filesystem;
using namespace std::chrono_literals;

constexpr const char* kPrefix = "vigil-pod-test-";

std::string randomHex(size_t n) {
  static std::mt19937_64 rng{std::random_device{}()};
  static const char* digits = "0123456789abcdef";
  std::string out;
  for (size_t i = 0; i < n; i++) out += digits[rng() % 16];
  return out;
}

std::string randomUid() {
  std::string h = randomHex(32);
  return h.substr(0, 8) + "-" + h.substr(8, 4) + "-" + h.substr(12, 4) + "-" + h.substr(16, 4) +
         "-" + h.substr(20);
}

std::string underscored(std::string uid) {
  for (char& c : uid)
    if (c == '-') c = '_';
  return uid;
}

// A hierarchy root (cgroup v2, or one v1 controller) with our own top directory under it;
// every directory made below it is removed, deepest first, at the end.
class CgroupTree {
 public:
  explicit CgroupTree(std::string root) : root_(std::move(root)) {
    // Trees of runs that crashed before their cleanup (their pid is gone).
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(root_, ec)) {
      const std::string name = e.path().filename().string();
      if (name.rfind(kPrefix, 0) != 0) continue;
      if (fs::exists("/proc/" + name.substr(std::strlen(kPrefix)))) continue;
      removeTree(e.path());
    }
    top_ = "/" + std::string(kPrefix) + std::to_string(getpid());
    make(top_);
  }
  ~CgroupTree() { removeTree(root_ + top_); }

  // Creates top + rel (and its parents); returns the path relative to the hierarchy root.
  std::string make(const std::string& rel) {
    std::string path = rel.rfind(top_, 0) == 0 ? rel : top_ + rel;
    std::string sofar;
    for (size_t pos = 1; pos != std::string::npos;) {
      size_t next = path.find('/', pos);
      sofar = path.substr(0, next);
      ::mkdir((root_ + sofar).c_str(), 0755);
      pos = next == std::string::npos ? next : next + 1;
    }
    return path;
  }
  std::string procs(const std::string& rel) const { return root_ + rel + "/cgroup.procs"; }

 private:
  static void removeTree(const fs::path& dir) {
    std::error_code ec;
    std::vector<fs::path> dirs;
    for (auto it = fs::recursive_directory_iterator(dir, ec);
         !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
      if (it->is_directory(ec)) dirs.push_back(it->path());
    }
    for (auto d = dirs.rbegin(); d != dirs.rend(); ++d) ::rmdir(d->c_str());
    ::rmdir(dir.c_str());
  }

  std::string root_;
  std::string top_;
};

// The first cgroup v1 hierarchy with a "pids" controller, as on a hybrid host ("" if none).
std::string v1PidsRoot() {
  std::ifstream in("/proc/self/mountinfo");
  for (std::string line; std::getline(in, line);) {
    if (line.find(" - cgroup ") == std::string::npos) continue;
    if (line.find(",pids") == std::string::npos && line.find(" pids") == std::string::npos)
      continue;
    std::istringstream fields(line);
    std::string id, parent, dev, root, mount;
    fields >> id >> parent >> dev >> root >> mount;
    return mount;
  }
  return "";
}

// Forks a child that joins the cgroups (each a cgroup.procs path) and execs `binary` with
// `arg`; returns its pid after it exited 0 (at once with wait false: reap it with
// waitExited). No allocation after fork.
void waitExited(pid_t pid) {
  int status = 0;
  waitpid(pid, &status, 0);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "child status " << status;
}

pid_t execIn(const std::vector<std::string>& procsFiles, const char* binary, const char* arg,
             bool wait = true) {
  std::vector<const char*> files;
  for (const auto& f : procsFiles) files.push_back(f.c_str());
  pid_t pid = fork();
  if (pid == 0) {
    for (const char* f : files) {
      int fd = ::open(f, O_WRONLY);
      if (fd < 0 || ::write(fd, "0", 1) != 1) _exit(90);
      ::close(fd);
    }
    execl(binary, binary, arg, static_cast<char*>(nullptr));
    _exit(91);
  }
  if (wait) waitExited(pid);
  return pid;
}

// A pod in the kubelet's log tree: <pods>/<ns>_<pod>_<uid>/<container>/0.log, and optionally
// <containers>/<pod>_<ns>_<container>-<id>.log.
struct FakePod {
  std::string ns, name, uid;
};

void addPodLogs(const fs::path& pods, const fs::path& containers, const FakePod& pod,
                const std::vector<std::pair<std::string, std::string>>& containerIds,
                bool withContainerLinks) {
  fs::path dir = pods / (pod.ns + "_" + pod.name + "_" + pod.uid);
  for (const auto& [name, id] : containerIds) {
    fs::create_directories(dir / name);
    std::ofstream(dir / name / "0.log") << "log\n";
    if (withContainerLinks) {
      fs::create_directories(containers);
      fs::create_symlink(dir / name / "0.log",
                         containers / (pod.name + "_" + pod.ns + "_" + name + "-" + id + ".log"));
    }
  }
}

// First in this file, before any agent has started threads: the child below allocates.
TEST(CgroupNamespace, AProcessInAPrivateCgroupNamespaceJoinsTheHosts) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root to create cgroups and namespaces";
  auto mount = findCgroup2Mount("/proc/self/mountinfo");
  ASSERT_TRUE(mount);
  CgroupTree tree(*mount);
  const std::string rel = tree.make("/kubepods/besteffort/podx/container");
  const std::string procs = tree.procs(rel);
  auto ownCgroup = [] {
    std::ifstream in("/proc/self/cgroup");
    for (std::string line; std::getline(in, line);)
      if (line.rfind("0::", 0) == 0) return line.substr(3);
    return std::string();
  };
  // The test process stands for the node's init (pid 1 may be out of reach of a test: on the
  // development VM it holds a capability the test lacks, which denies ptrace access to it).
  const int host = getpid();
  pid_t pid = fork();
  if (pid == 0) {
    int fd = ::open(procs.c_str(), O_WRONLY);
    if (fd < 0 || ::write(fd, "0", 1) != 1) _exit(90);
    ::close(fd);
    // As a container runtime does: a cgroup namespace rooted at the container's cgroup.
    if (unshare(CLONE_NEWCGROUP) != 0) _exit(91);
    if (ownCgroup() != "/") _exit(92);
    auto joined = joinHostCgroupNamespace("/proc", host);
    if (!joined || *joined != CgroupNamespace::joined) _exit(93);
    if (ownCgroup() != rel) _exit(94);
    // In the initial namespace now: joining again is a no-op.
    auto again = joinHostCgroupNamespace("/proc", host);
    _exit(again && *again == CgroupNamespace::already_host ? 0 : 95);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0)
      << "90: join cgroup, 91: unshare, 92: not at the namespace root, 93: join failed, 94: "
         "path not the host's, 95: second join not a no-op";
}

class PodMetadataTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "needs root to load BPF programs and create cgroups";
    auto mount = findCgroup2Mount("/proc/self/mountinfo");
    ASSERT_TRUE(mount) << "no cgroup2 mount";
    v2_ = std::make_unique<CgroupTree>(*mount);
    // Log trees of runs that crashed before their cleanup (their pid is gone).
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(fs::temp_directory_path(), ec)) {
      const std::string name = e.path().filename().string();
      if (name.rfind(kPrefix, 0) == 0 && !fs::exists("/proc/" + name.substr(std::strlen(kPrefix))))
        fs::remove_all(e.path(), ec);
    }
    logs_ = fs::temp_directory_path() / (std::string(kPrefix) + std::to_string(getpid()));
    fs::remove_all(logs_);
    fs::create_directories(logs_ / "pods");
    std::string error;
    const std::string pods = (logs_ / "pods").string(), containers = (logs_ / "containers").string();
    const std::string exportFile = (logs_ / "export.json").string();
    env_ = testing::startTestAgent(
        "vigil-pods",
        [&](server::AgentConfig& cfg) {
          cfg.podLogDir = pods;
          cfg.containerLogDir = containers;
          cfg.flows = true;
          cfg.flowInterfaces = {"lo"};  // per-cgroup counters; no tc program needed elsewhere
          cfg.exportFile = exportFile;
          cfg.exportPods = {"shop/cart"};
        },
        &error);
    ASSERT_NE(env_, nullptr) << error;
  }
  void TearDown() override {
    env_.reset();
    v2_.reset();
    std::error_code ec;
    fs::remove_all(logs_, ec);
  }

  // The process of `pid`'s exec (or exit) event, once the agent has published it.
  std::optional<v1::Process> eventOf(pid_t pid, v1::EventType type) {
    v1::GetEventsRequest req;
    req.add_types(type);
    req.add_pids(static_cast<uint32_t>(pid));
    auto filter = events::EventFilter::fromRequest(req).value();
    std::optional<v1::Process> found;
    testing::waitUntil(
        [&] {
          for (const auto& ev : env_->agent->hub().history(filter, 0))
            found = *events::processOf(*ev);
          return found.has_value();
        },
        10s, 20ms);
    return found;
  }
  std::optional<v1::Process> execOf(pid_t pid) { return eventOf(pid, v1::EVENT_TYPE_EXEC); }

  std::unique_ptr<CgroupTree> v2_;
  fs::path logs_;
  std::unique_ptr<testing::TestAgent> env_;
};

void expectWorkload(const v1::Workload& w, const std::string& kind, const std::string& ns,
                    const std::string& pod, const std::string& uid, const std::string& container,
                    const std::string& id, const std::string& runtime) {
  EXPECT_EQ(w.kind(), kind);
  EXPECT_EQ(w.namespace_(), ns);
  EXPECT_EQ(w.pod(), pod);
  EXPECT_EQ(w.pod_uid(), uid);
  EXPECT_EQ(w.container(), container);
  EXPECT_EQ(w.container_id(), id);
  EXPECT_EQ(w.runtime(), runtime);
}

TEST_F(PodMetadataTest, EveryLayoutGivesItsPodAndContainer) {
  struct Case {
    std::string label;
    std::string runtime;
    bool links;  // /var/log/containers names (else: the single container directory)
    std::function<std::string(const std::string& uid, const std::string& id)> path;
  };
  const std::vector<Case> cases = {
      {"systemd/containerd", "containerd", true,
       [](auto& uid, auto& id) {
         return "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" +
                underscored(uid) + ".slice/cri-containerd-" + id + ".scope";
       }},
      {"systemd/cri-o", "cri-o", false,
       [](auto& uid, auto& id) {
         return "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod" +
                underscored(uid) + ".slice/crio-" + id + ".scope";
       }},
      {"systemd/docker (guaranteed)", "docker", true,
       [](auto& uid, auto& id) {
         return "/kubepods.slice/kubepods-pod" + underscored(uid) + ".slice/docker-" + id +
                ".scope";
       }},
      {"cgroupfs/containerd", "", true,
       [](auto& uid, auto& id) { return "/kubepods/burstable/pod" + uid + "/" + id; }},
      {"cgroupfs/cri-o", "cri-o", false,
       [](auto& uid, auto& id) { return "/kubepods/besteffort/pod" + uid + "/crio-" + id; }},
  };
  int n = 0;
  for (const auto& c : cases) {
    SCOPED_TRACE(c.label);
    const std::string uid = randomUid(), id = randomHex(64), sidecarId = randomHex(64);
    FakePod pod{"ns" + std::to_string(n), "pod-" + std::to_string(n), uid};
    n++;
    std::vector<std::pair<std::string, std::string>> containers = {{"app", id}};
    if (c.links) containers.push_back({"sidecar", sidecarId});  // names come from the links
    addPodLogs(logs_ / "pods", logs_ / "containers", pod, containers, c.links);
    const std::string rel = v2_->make(c.path(uid, id));
    pid_t pid = execIn({v2_->procs(rel)}, "/bin/true", "x");
    auto p = execOf(pid);
    ASSERT_TRUE(p) << "no exec event for pid " << pid;
    EXPECT_EQ(p->cgroup_path(), rel);
    expectWorkload(p->workload(), "pod", pod.ns, pod.name, uid, "app", id, c.runtime);
  }
}

TEST_F(PodMetadataTest, ContainersOutsideKubernetesAndTheHost) {
  const std::string id = randomHex(64);
  const std::string docker = v2_->make("/system.slice/docker-" + id + ".scope");
  pid_t pid = execIn({v2_->procs(docker)}, "/bin/true", "x");
  auto p = execOf(pid);
  ASSERT_TRUE(p);
  expectWorkload(p->workload(), "container", "", "", "", "", id, "docker");

  const std::string podman = v2_->make("/machine.slice/libpod-" + id + ".scope/container");
  pid = execIn({v2_->procs(podman)}, "/bin/true", "x");
  p = execOf(pid);
  ASSERT_TRUE(p);
  expectWorkload(p->workload(), "container", "", "", "", "", id, "podman");

  const std::string plain = v2_->make("/just-a-service");
  pid = execIn({v2_->procs(plain)}, "/bin/true", "x");
  p = execOf(pid);
  ASSERT_TRUE(p);
  expectWorkload(p->workload(), "host", "", "", "", "", "", "");
}

TEST_F(PodMetadataTest, APodWhoseLogsAppearLaterResolvesOnALaterExec) {
  const std::string uid = randomUid(), id = randomHex(64);
  const std::string rel = v2_->make("/kubepods/pod" + uid + "/" + id);
  pid_t pid = execIn({v2_->procs(rel)}, "/bin/true", "x");
  auto p = execOf(pid);
  ASSERT_TRUE(p);
  // Known to be a pod from its cgroup, names not yet.
  expectWorkload(p->workload(), "pod", "", "", uid, "", id, "");

  // A process that runs while the logs appear: its exit names the pod.
  pid_t sleeper = execIn({v2_->procs(rel)}, "/bin/sleep", "1.5", false);
  auto s = execOf(sleeper);
  ASSERT_TRUE(s);
  expectWorkload(s->workload(), "pod", "", "", uid, "", id, "");

  addPodLogs(logs_ / "pods", logs_ / "containers", {"late", "late-pod", uid}, {{"main", id}},
             true);
  std::this_thread::sleep_for(1100ms);  // the resolver retries an incomplete entry after 1 s
  pid = execIn({v2_->procs(rel)}, "/bin/true", "x");
  p = execOf(pid);
  ASSERT_TRUE(p);
  expectWorkload(p->workload(), "pod", "late", "late-pod", uid, "main", id, "");

  waitExited(sleeper);
  auto exited = eventOf(sleeper, v1::EVENT_TYPE_EXIT);
  ASSERT_TRUE(exited);
  expectWorkload(exited->workload(), "pod", "late", "late-pod", uid, "main", id, "");
}

TEST_F(PodMetadataTest, HybridHostContainerInACgroupV1HierarchyOnly) {
  const std::string root = v1PidsRoot();
  if (root.empty()) GTEST_SKIP() << "no cgroup v1 pids hierarchy: not a hybrid host";
  CgroupTree v1(root);
  const std::string uid = randomUid(), id = randomHex(64);
  addPodLogs(logs_ / "pods", logs_ / "containers", {"legacy", "old-app", uid}, {{"web", id}},
             false);
  // The v2 cgroup names no container (as with a cgroupfs runtime on a hybrid host); the v1
  // one does.
  const std::string v2rel = v2_->make("/runtime.service");
  const std::string v1rel = v1.make("/kubepods/burstable/pod" + uid + "/" + id);
  pid_t pid = execIn({v2_->procs(v2rel), v1.procs(v1rel)}, "/bin/sleep", "0.3");
  auto p = execOf(pid);
  ASSERT_TRUE(p);
  EXPECT_EQ(p->cgroup_path(), v2rel);
  expectWorkload(p->workload(), "pod", "legacy", "old-app", uid, "web", id, "");
}

TEST_F(PodMetadataTest, ExitsTrafficFiltersAndTheExportCarryThePod) {
  const std::string uid = randomUid(), id = randomHex(64);
  addPodLogs(logs_ / "pods", logs_ / "containers", {"shop", "cart", uid}, {{"api", id}}, true);
  const std::string rel = v2_->make("/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" +
                                    underscored(uid) + ".slice/cri-containerd-" + id + ".scope");
  const std::string host = v2_->make("/host-work");

  // UDP datagrams over loopback from the pod's cgroup: counted by cgroup_skb for that cgroup.
  testing::UdpSink sink("127.0.0.1");
  const std::string port = std::to_string(sink.port());
  const std::string procs = v2_->procs(rel);
  const char* procsPath = procs.c_str();
  pid_t pid = fork();
  if (pid == 0) {
    int fd = ::open(procsPath, O_WRONLY);
    if (fd < 0 || ::write(fd, "0", 1) != 1) _exit(90);
    ::close(fd);
    int s = socket(AF_INET, SOCK_DGRAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(sink.port());
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    char buf[500] = {};
    for (int i = 0; i < 10; i++)
      if (sendto(s, buf, sizeof buf, 0, reinterpret_cast<sockaddr*>(&a), sizeof a) != 500) _exit(2);
    _exit(0);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  ASSERT_TRUE(sink.waitFor(10, 5s));

  v1::GetTrafficRequest treq;
  treq.set_cgroup_prefix(rel);
  std::optional<v1::CgroupTraffic> row;
  testing::waitUntil(
      [&] {
        const auto response = env_->agent->traffic(treq);  // kept: rows() refers into it
        for (const auto& r : response.rows())
          if (r.cgroup_path() == rel && r.protocol() == "udp") row = r;
        return row && row->egress().packets() >= 10;
      },
      5s, 50ms);
  ASSERT_TRUE(row) << "no traffic row for " << rel;
  EXPECT_EQ(row->egress().payload_bytes(), 5000u);
  expectWorkload(row->workload(), "pod", "shop", "cart", uid, "api", id, "containerd");

  // An exec and its exit in the pod, and one on the host.
  pid_t inPod = execIn({procs}, "/bin/true", "x");
  pid_t onHost = execIn({v2_->procs(host)}, "/bin/true", "x");
  ASSERT_TRUE(execOf(inPod));
  ASSERT_TRUE(execOf(onHost));
  auto exited = eventOf(inPod, v1::EVENT_TYPE_EXIT);
  ASSERT_TRUE(exited);
  expectWorkload(exited->workload(), "pod", "shop", "cart", uid, "api", id, "containerd");

  // GetEvents filters: by namespace, by ns/pod, by bare pod name; the host exec matches none.
  for (auto [ns, podName] : {std::pair<std::string, std::string>{"shop", ""},
                             {"", "shop/cart"},
                             {"", "cart"}}) {
    v1::GetEventsRequest r;
    r.add_types(v1::EVENT_TYPE_EXEC);
    if (!ns.empty()) r.add_namespaces(ns);
    if (!podName.empty()) r.add_pods(podName);
    auto f = events::EventFilter::fromRequest(r).value();
    std::set<uint32_t> pids;
    for (const auto& ev : env_->agent->hub().history(f, 0)) pids.insert(ev->exec().process().pid());
    EXPECT_TRUE(pids.count(static_cast<uint32_t>(inPod))) << ns << podName;
    EXPECT_FALSE(pids.count(static_cast<uint32_t>(onHost))) << ns << podName;
  }
  v1::GetEventsRequest bad;
  bad.add_pods("Shop/Cart!");
  auto rejected = events::EventFilter::fromRequest(bad);
  ASSERT_FALSE(rejected);
  EXPECT_NE(rejected.error().message().find("pods: pod 'Shop/Cart!'"), std::string::npos)
      << rejected.error().message();

  // The export keeps the pod's events only (--export-pods shop/cart).
  env_->agent->stop();
  std::ifstream in(logs_ / "export.json");
  std::set<uint32_t> exported;
  int exportedFlows = 0;
  for (std::string line; std::getline(in, line);) {
    v1::Event ev;
    ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(line, &ev).ok()) << line;
    if (ev.type() == v1::EVENT_TYPE_LOST) continue;
    if (ev.has_flow()) {
      // The datagrams' flow (tc on lo), attributed to the sender in the pod.
      EXPECT_EQ(ev.flow().source().pid(), static_cast<uint32_t>(pid)) << line;
      expectWorkload(ev.flow().source().workload(), "pod", "shop", "cart", uid, "api", id,
                     "containerd");
      EXPECT_EQ(ev.flow().destination().workload().kind(), "host") << line;
      exportedFlows++;
      continue;
    }
    const v1::Process& p = ev.has_exec() ? ev.exec().process() : ev.exit().process();
    EXPECT_EQ(p.workload().pod(), "cart") << line;
    exported.insert(p.pid());
    EXPECT_NE(line.find("\"workload\":{\"kind\":\"pod\",\"namespace\":\"shop\""),
              std::string::npos)
        << line;
  }
  EXPECT_TRUE(exported.count(static_cast<uint32_t>(inPod)));
  EXPECT_FALSE(exported.count(static_cast<uint32_t>(onHost)));
  EXPECT_GE(exportedFlows, 1);
}

}  // namespace
}  // namespace vigil
