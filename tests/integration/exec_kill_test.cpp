// Privileged tier: exec policies enforced by the real kernel. The denied program is a copy of
// a marker binary whose first action is to create a file; a kill at exec means the file never
// appears. Every path names files in this test's own temp directory, so nothing else on the
// host is ever matched.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <optional>

#include "events/filter.hpp"
#include "server/agent.hpp"
#include "test_agent.hpp"

namespace vigil {
namespace {
namespace fs = std::filesystem;
using namespace std::chrono_literals;

struct RunResult {
  pid_t pid = 0;
  int status = 0;
  bool killed() const { return WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL; }
  bool exitedOk() const { return WIFEXITED(status) && WEXITSTATUS(status) == 0; }
};

class ExecKillTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (geteuid() != 0) return;
    std::string error;
    env_ = testing::startTestAgent(
               "vigil-kill", [](server::AgentConfig& cfg) { cfg.policyPollMs = 100; }, &error)
               .release();
    ASSERT_NE(env_, nullptr) << error;
    agent_ = env_->agent.get();
    dir_ = &env_->dir;
    fs::create_directories(*dir_ / "bin");
    fs::create_directories(*dir_ / "denied");
  }

  static void TearDownTestSuite() {
    delete env_;
    env_ = nullptr;
    agent_ = nullptr;
    dir_ = nullptr;
  }

  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "needs root to load BPF programs";
    ASSERT_NE(agent_, nullptr);
    marker_ = dir() / ("marker-" + std::to_string(counter_++));
    fs::remove(marker_);
    sub_ = agent_->hub().subscribe(events::EventFilter::fromRequest({}).value(), false, 0,
                                   nullptr);
  }

  void TearDown() override {
    if (!agent_) return;
    agent_->hub().unsubscribe(sub_);
    for (const auto& name : applied_) (void)agent_->policies().remove(name);
  }

  static fs::path dir() { return *dir_; }

  // A fresh copy of the marker program at `path`.
  static fs::path installMarker(const fs::path& path) {
    fs::create_directories(path.parent_path());
    fs::copy_file(VIGIL_TEST_MARKER, path, fs::copy_options::overwrite_existing);
    fs::permissions(path, fs::perms::owner_all);
    return path;
  }

  void apply(const std::string& name, const std::string& mode, const std::string& rules) {
    std::string yaml = "apiVersion: vigil.dev/v1alpha1\nkind: Policy\nmetadata:\n  name: " +
                       name + "\nspec:\n  mode: " + mode + "\n  exec:\n" + rules;
    auto r = agent_->policies().applyText(yaml, "test.yaml");
    ASSERT_TRUE(r.ok()) << r.error().message() << "\n" << yaml;
    applied_.push_back(name);
  }

  static std::string rule(const std::string& name, const std::string& action,
                          const std::string& matchBody) {
    return "    - name: " + name + "\n      action: " + action + "\n      match:\n" + matchBody;
  }

  // fork, then in the child run `body` (which execs); the parent waits.
  static RunResult runChild(const std::function<void()>& body) {
    pid_t pid = fork();
    if (pid == 0) {
      body();
      _exit(127);
    }
    RunResult r{pid, 0};
    waitpid(pid, &r.status, 0);
    return r;
  }

  RunResult run(const std::string& path, const std::string& cwd = "/") {
    std::string m = marker_.string();
    return runChild([&] {
      if (chdir(cwd.c_str()) != 0) _exit(126);
      execl(path.c_str(), path.c_str(), m.c_str(), nullptr);
    });
  }

  bool markerExists() const { return fs::exists(marker_); }

  std::optional<v1::Event> policyEventFor(pid_t pid) {
    auto deadline = std::chrono::steady_clock::now() + 10s;
    while (std::chrono::steady_clock::now() < deadline) {
      auto ev = sub_->next(200ms);
      if (ev && (*ev)->type() == v1::EVENT_TYPE_POLICY &&
          (*ev)->policy().process().pid() == static_cast<uint32_t>(pid))
        return **ev;
    }
    return std::nullopt;
  }

  static inline testing::TestAgent* env_ = nullptr;
  static inline server::Agent* agent_ = nullptr;
  static inline fs::path* dir_ = nullptr;
  static inline int counter_ = 0;
  fs::path marker_;
  std::vector<std::string> applied_;
  std::shared_ptr<server::Subscription> sub_;
};

TEST_F(ExecKillTest, DeniedBinaryIsKilledBeforeItRuns) {
  fs::path bin = installMarker(dir() / "bin" / "denied-marker");
  auto unrestricted = run(bin.string());
  ASSERT_TRUE(unrestricted.exitedOk());
  ASSERT_TRUE(markerExists()) << "the marker program must work without a policy";
  fs::remove(marker_);

  apply("deny-marker", "enforce",
        rule("no-marker", "kill", "        binaries: [" + bin.string() + "]\n"));
  auto r = run(bin.string());
  EXPECT_TRUE(r.killed()) << "status " << r.status;
  EXPECT_FALSE(markerExists()) << "the denied program ran";
  auto ev = policyEventFor(r.pid);
  ASSERT_TRUE(ev);
  EXPECT_EQ(ev->policy().policy(), "deny-marker");
  EXPECT_EQ(ev->policy().rule(), "no-marker");
  EXPECT_EQ(ev->policy().action(), "kill");
  EXPECT_EQ(ev->policy().mechanism(), "sigkill");
  EXPECT_EQ(ev->policy().process().binary(), bin.string());
  EXPECT_EQ(ev->policy().process().ppid(), static_cast<uint32_t>(getpid()));
  ASSERT_GE(ev->ancestors_size(), 1);

  auto infos = agent_->policies().list();
  auto hits = agent_->ruleHits();
  bool counted = false;
  for (const auto& info : infos) {
    if (info.name != "deny-marker") continue;
    uint32_t slot = info.ruleSlots.at("no-marker");
    counted = slot < hits.size() && hits[slot] == 1;
  }
  EXPECT_TRUE(counted) << "the rule's kernel hit counter is not 1";
}

TEST_F(ExecKillTest, EnforcementMechanismMatchesTheProbe) {
  bool lsm = false;
  std::string detail;
  const v1::GetStatusResponse status = agent_->status();
  for (const auto& c : status.capabilities()) {
    if (c.name() != "bpf_lsm") continue;
    lsm = c.available();
    detail = c.detail();
  }
  const std::string& how = agent_->enforcement();
  if (lsm) {
    EXPECT_EQ(how.rfind("lsm", 0), 0u) << how;
  } else {
    // This machine: BPF-LSM refused, so the tracepoint kill, and the reason is said.
    EXPECT_EQ(how.rfind("sigkill", 0), 0u) << how;
    EXPECT_NE(how.find("bpf_lsm unavailable: " + detail), std::string::npos) << how;
    for (const auto& p : status.programs()) EXPECT_NE(p.name(), "vigil_lsm_exec");
  }
}

TEST_F(ExecKillTest, IdentityBypassesAreKilled) {
  fs::path bin = installMarker(dir() / "bin" / "ident-marker");
  apply("deny-ident", "enforce",
        rule("no-ident", "kill", "        binaries: [" + bin.string() + "]\n"));

  fs::path hard = dir() / "bin" / "hard-link";
  fs::remove(hard);
  fs::create_hard_link(bin, hard);
  EXPECT_TRUE(run(hard.string()).killed()) << "hard link";

  fs::path sym = dir() / "sym-link";
  fs::remove(sym);
  fs::create_symlink(bin, sym);
  EXPECT_TRUE(run(sym.string()).killed()) << "symlink";

  EXPECT_TRUE(run("./bin/ident-marker", dir().string()).killed()) << "relative path";

  std::string m = marker_.string();
  auto byFd = runChild([&] {
    int fd = open(bin.c_str(), O_RDONLY | O_CLOEXEC);
    char* argv[] = {const_cast<char*>("by-fd"), m.data(), nullptr};
    char* envp[] = {nullptr};
    syscall(SYS_execveat, fd, "", argv, envp, AT_EMPTY_PATH);
  });
  EXPECT_TRUE(byFd.killed()) << "execveat with AT_EMPTY_PATH";

  fs::path target = dir() / "bind-target";
  std::ofstream(target).put('x');
  auto bound = runChild([&] {
    // A private mount namespace, so the bind mount never shows outside this child.
    if (unshare(CLONE_NEWNS) != 0) _exit(125);
    if (mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) _exit(125);
    if (mount(bin.c_str(), target.c_str(), nullptr, MS_BIND, nullptr) != 0) _exit(125);
    execl(target.c_str(), target.c_str(), m.c_str(), nullptr);
  });
  EXPECT_TRUE(bound.killed()) << "bind mount, status " << bound.status;
  EXPECT_FALSE(markerExists());
}

TEST_F(ExecKillTest, CopyIntoDeniedPrefixIsKilled) {
  std::string prefix = (dir() / "denied").string() + "/";
  apply("deny-prefix", "enforce", rule("no-denied-dir", "kill",
                                       "        pathPrefixes: [" + prefix + "]\n"));
  fs::path copy = installMarker(dir() / "denied" / "sub" / "copied-marker");
  EXPECT_TRUE(run(copy.string()).killed());
  EXPECT_FALSE(markerExists());
  fs::path outside = installMarker(dir() / "bin" / "allowed-marker");
  EXPECT_TRUE(run(outside.string()).exitedOk());
  EXPECT_TRUE(markerExists());
}

TEST_F(ExecKillTest, ScriptWithDeniedInterpreterIsKilled) {
  fs::path interp = dir() / "bin" / "denied-sh";
  fs::copy_file(fs::canonical("/bin/sh"), interp, fs::copy_options::overwrite_existing);
  fs::path script = dir() / "script.sh";
  std::ofstream(script) << "#!" << interp.string() << "\n: > " << marker_.string() << "\n";
  fs::permissions(script, fs::perms::owner_all);
  apply("deny-interp", "enforce",
        rule("no-interp", "kill", "        binaries: [" + interp.string() + "]\n"));
  auto r = runChild([&] { execl(script.c_str(), script.c_str(), nullptr); });
  EXPECT_TRUE(r.killed()) << "status " << r.status;
  EXPECT_FALSE(markerExists());
}

TEST_F(ExecKillTest, AuditModeLetsItRunAndReports) {
  fs::path bin = installMarker(dir() / "bin" / "audited-marker");
  apply("audit-marker", "audit",
        rule("watch-marker", "kill", "        binaries: [" + bin.string() + "]\n"));
  auto r = run(bin.string());
  EXPECT_TRUE(r.exitedOk());
  EXPECT_TRUE(markerExists());
  auto ev = policyEventFor(r.pid);
  ASSERT_TRUE(ev);
  EXPECT_EQ(ev->policy().action(), "audit");
  EXPECT_EQ(ev->policy().rule(), "watch-marker");
}

TEST_F(ExecKillTest, ParentBinariesKillOnlyUnderTheNamedParent) {
  fs::path bin = installMarker(dir() / "bin" / "child-marker");
  fs::path parent = dir() / "bin" / "parent-sh";
  fs::copy_file(fs::canonical("/bin/sh"), parent, fs::copy_options::overwrite_existing);
  apply("deny-under-parent", "enforce",
        rule("no-child", "kill",
             "        binaries: [" + bin.string() + "]\n        parentBinaries: [" +
                 parent.string() + "]\n"));
  EXPECT_TRUE(run(bin.string()).exitedOk()) << "another parent (this test) must not matter";
  EXPECT_TRUE(markerExists());
  fs::remove(marker_);

  std::string cmd = bin.string() + " " + marker_.string() + "; :";
  auto r = runChild([&] { execl(parent.c_str(), "parent-sh", "-c", cmd.c_str(), nullptr); });
  EXPECT_TRUE(r.exitedOk());  // the shell itself goes on
  EXPECT_FALSE(markerExists()) << "the child of the named parent ran";
}

TEST_F(ExecKillTest, DeletingThePolicyLetsTheBinaryRunAgain) {
  fs::path bin = installMarker(dir() / "bin" / "deleted-marker");
  apply("deny-then-delete", "enforce",
        rule("no-marker", "kill", "        binaries: [" + bin.string() + "]\n"));
  ASSERT_TRUE(run(bin.string()).killed());
  ASSERT_TRUE(agent_->policies().remove("deny-then-delete"));
  applied_.clear();
  EXPECT_TRUE(run(bin.string()).exitedOk());
  EXPECT_TRUE(markerExists());
}

TEST_F(ExecKillTest, ReplacedBinaryIsResolvedAgain) {
  fs::path bin = installMarker(dir() / "bin" / "upgraded-marker");
  apply("deny-upgraded", "enforce",
        rule("no-marker", "kill", "        binaries: [" + bin.string() + "]\n"));
  ASSERT_TRUE(run(bin.string()).killed());
  // A package upgrade: a new file renamed over the old one, so a new inode.
  fs::path fresh = installMarker(dir() / "bin" / "upgraded-marker.new");
  fs::rename(fresh, bin);
  bool killed = false;
  for (int i = 0; i < 50 && !killed; i++) {
    fs::remove(marker_);
    killed = run(bin.string()).killed();
    if (!killed) std::this_thread::sleep_for(100ms);
  }
  EXPECT_TRUE(killed) << "the replaced binary was never denied";
}

// The layout kubelet gives a mounted ConfigMap: files are symlinks through "..data", which is
// swapped atomically to a new timestamped directory on each update.
TEST_F(ExecKillTest, ConfigMapStyleDirectoryUpdates) {
  fs::path pol = dir() / "policies";
  fs::path bin = installMarker(dir() / "bin" / "cm-marker");
  auto publish = [&](const std::string& version, const std::string& content) {
    fs::path data = pol / ("..2026_11_25_" + version);
    fs::create_directories(data);
    std::ofstream(data / "policy.yaml") << content;
    fs::path tmp = pol / "..data_tmp";
    fs::remove(tmp);
    fs::create_symlink(data.filename(), tmp);
    fs::rename(tmp, pol / "..data");  // atomic swap
    if (!fs::is_symlink(fs::symlink_status(pol / "policy.yaml")))
      fs::create_symlink("..data/policy.yaml", pol / "policy.yaml");
  };
  auto waitUntil = [&](const std::function<bool()>& cond) {
    for (int i = 0; i < 100; i++) {
      if (cond()) return true;
      std::this_thread::sleep_for(50ms);
    }
    return false;
  };
  std::string deny = "apiVersion: vigil.dev/v1alpha1\nkind: Policy\nmetadata:\n  name: cm-deny\n"
                     "spec:\n  exec:\n    - name: no-cm-marker\n      action: kill\n      match:\n"
                     "        binaries: [" + bin.string() + "]\n";
  publish("v1", deny);
  ASSERT_TRUE(waitUntil([&] {
    fs::remove(marker_);
    return run(bin.string()).killed();
  })) << "the ConfigMap policy never took effect";

  publish("v2", deny + "      bogusField: 1\n");  // rejected: unknown field
  std::string error;
  ASSERT_TRUE(waitUntil([&] {
    for (const auto& p : agent_->policies().list())
      if (p.name == "cm-deny" && !p.error.empty()) error = p.error;
    return !error.empty();
  })) << "the broken update was not reported";
  EXPECT_NE(error.find("policy.yaml:11:7"), std::string::npos) << error;
  EXPECT_TRUE(run(bin.string()).killed()) << "the previous version must stay in force";

  publish("v3", "apiVersion: vigil.dev/v1alpha1\nkind: Policy\nmetadata:\n  name: cm-deny\n"
                "spec:\n  mode: audit\n");
  EXPECT_TRUE(waitUntil([&] {
    fs::remove(marker_);
    return run(bin.string()).exitedOk();
  })) << "the fixed update never took effect";
  fs::remove_all(pol);
  fs::create_directories(pol);
}

}  // namespace
}  // namespace vigil
