// Privileged tier: the real BPF programs on the real kernel. Each test runs processes of its
// own and looks only at events about their pids, so other activity on the host cannot
// disturb it.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
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

class ProcessEventsTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (geteuid() != 0) return;
    std::string error;
    // No policies: this suite only observes.
    env_ = testing::startTestAgent(
               "vigil-it", [](server::AgentConfig& cfg) { cfg.nodeName = "test-node"; }, &error)
               .release();
    ASSERT_NE(env_, nullptr) << error;
    agent_ = env_->agent.get();
    dir_ = &env_->dir;
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
    sub_ = agent_->hub().subscribe(events::EventFilter::fromRequest({}).value(), false, 0,
                                   nullptr);
  }

  void TearDown() override {
    if (sub_) agent_->hub().unsubscribe(sub_);
  }

  // fork + execve(path, argv) in cwd; returns the child's pid and its wait status.
  static std::pair<pid_t, int> run(const std::string& path, std::vector<std::string> argv,
                                   const std::string& cwd = "/") {
    pid_t pid = fork();
    if (pid == 0) {
      if (chdir(cwd.c_str()) != 0) _exit(126);
      std::vector<char*> args;
      for (auto& a : argv) args.push_back(a.data());
      args.push_back(nullptr);
      execv(path.c_str(), args.data());
      _exit(127);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    return {pid, status};
  }

  // The first event of `type` for which pred holds, waiting up to 10 s.
  std::optional<v1::Event> waitFor(v1::EventType type,
                                   const std::function<bool(const v1::Event&)>& pred) {
    auto deadline = std::chrono::steady_clock::now() + 10s;
    while (std::chrono::steady_clock::now() < deadline) {
      auto ev = sub_->next(200ms);
      if (ev && (*ev)->type() == type && pred(**ev)) return **ev;
    }
    return std::nullopt;
  }

  std::optional<v1::Event> execOf(pid_t pid) {
    return waitFor(v1::EVENT_TYPE_EXEC, [pid](const v1::Event& e) {
      return e.exec().process().pid() == static_cast<uint32_t>(pid);
    });
  }
  std::optional<v1::Event> exitOf(pid_t pid) {
    return waitFor(v1::EVENT_TYPE_EXIT, [pid](const v1::Event& e) {
      return e.exit().process().pid() == static_cast<uint32_t>(pid);
    });
  }

  static fs::path dir() { return *dir_; }
  static std::string realTrue() { return fs::canonical("/bin/true").string(); }

  static inline testing::TestAgent* env_ = nullptr;
  static inline server::Agent* agent_ = nullptr;
  static inline fs::path* dir_ = nullptr;
  std::shared_ptr<server::Subscription> sub_;
};

TEST_F(ProcessEventsTest, ExecCarriesIdentityArgsCwdAndCgroup) {
  auto [pid, status] = run("/bin/true", {"true", "first", "second arg"}, "/tmp");
  ASSERT_EQ(WEXITSTATUS(status), 0);
  auto ev = execOf(pid);
  ASSERT_TRUE(ev) << "no exec event for pid " << pid;
  const auto& p = ev->exec().process();
  EXPECT_EQ(p.binary(), realTrue());
  EXPECT_EQ(p.ppid(), static_cast<uint32_t>(getpid()));
  EXPECT_EQ(p.tid(), p.pid());
  EXPECT_EQ(p.uid(), getuid());
  EXPECT_EQ(p.gid(), getgid());
  EXPECT_EQ(p.cwd(), fs::canonical("/tmp").string());
  EXPECT_EQ(p.comm(), "true");
  ASSERT_EQ(p.args_size(), 3);
  EXPECT_EQ(p.args(2), "second arg");
  EXPECT_FALSE(p.args_truncated());
  EXPECT_EQ(p.exec_id(), "test-node:" + p.exec_id().substr(10, p.exec_id().rfind(':') - 10) +
                             ":" + std::to_string(pid));
  EXPECT_NE(p.cgroup_id(), 0u);
  // The test runs in the same cgroup as its child: compare with /proc/self/cgroup.
  std::ifstream cg("/proc/self/cgroup");
  std::string line, mine;
  while (std::getline(cg, line))
    if (line.rfind("0::", 0) == 0) mine = line.substr(3);
  EXPECT_EQ(p.cgroup_path(), mine);
  EXPECT_GT(ev->time().seconds(), 1'600'000'000);  // wall-clock time, not boot time
}

TEST_F(ProcessEventsTest, SymlinkShowsTheRealFile) {
  fs::path link = dir() / "my-true-link";
  fs::remove(link);
  fs::create_symlink("/bin/true", link);
  auto [pid, status] = run(link.string(), {"my-true-link"});
  auto ev = execOf(pid);
  ASSERT_TRUE(ev);
  EXPECT_EQ(ev->exec().process().binary(), realTrue());
  EXPECT_EQ(ev->exec().process().args(0), "my-true-link");
}

TEST_F(ProcessEventsTest, RelativePathShowsTheAbsoluteFile) {
  fs::path sub = dir() / "rel";
  fs::create_directories(sub);
  fs::copy_file("/bin/true", sub / "copy-of-true", fs::copy_options::overwrite_existing);
  auto [pid, status] = run("./rel/copy-of-true", {"copy-of-true"}, dir().string());
  ASSERT_EQ(WEXITSTATUS(status), 0);
  auto ev = execOf(pid);
  ASSERT_TRUE(ev);
  EXPECT_EQ(ev->exec().process().binary(), (sub / "copy-of-true").string());
  EXPECT_EQ(ev->exec().process().cwd(), dir().string());
}

TEST_F(ProcessEventsTest, FexecveShowsTheRealFile) {
  pid_t pid = fork();
  if (pid == 0) {
    int fd = open("/bin/true", O_RDONLY | O_CLOEXEC);
    char* argv[] = {const_cast<char*>("by-fd"), nullptr};
    char* envp[] = {nullptr};
    syscall(SYS_execveat, fd, "", argv, envp, AT_EMPTY_PATH);
    _exit(127);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  auto ev = execOf(pid);
  ASSERT_TRUE(ev);
  EXPECT_EQ(ev->exec().process().binary(), realTrue());
}

TEST_F(ProcessEventsTest, LongArgvIsTruncatedWithTheFlag) {
  std::vector<std::string> argv{"true"};
  for (int i = 0; i < 1000; i++) argv.push_back("argument-" + std::to_string(i));  // ~13 KB
  auto [pid, status] = run("/bin/true", argv);
  auto ev = execOf(pid);
  ASSERT_TRUE(ev);
  const auto& p = ev->exec().process();
  EXPECT_TRUE(p.args_truncated());
  ASSERT_GT(p.args_size(), 100);
  EXPECT_LT(p.args_size(), 1001);
  EXPECT_EQ(p.args(1), "argument-0");
  EXPECT_EQ(p.args(100), "argument-99");
  size_t bytes = 0;
  for (const auto& a : p.args()) bytes += a.size() + 1;
  EXPECT_LE(bytes, 4096u + 1);  // the documented limit (the last argument may lack its NUL)
}

TEST_F(ProcessEventsTest, ExitCodeAndLifetime) {
  auto [pid, status] = run("/bin/sh", {"sh", "-c", "exit 7"});
  ASSERT_EQ(WEXITSTATUS(status), 7);
  auto exec = execOf(pid);
  auto ev = exitOf(pid);
  ASSERT_TRUE(exec && ev);
  EXPECT_EQ(ev->exit().exit_code(), 7);
  EXPECT_EQ(ev->exit().signal(), 0);
  EXPECT_EQ(ev->exit().process().exec_id(), exec->exec().process().exec_id());
  EXPECT_EQ(ev->exit().process().binary(), exec->exec().process().binary());
  EXPECT_TRUE(ev->exit().has_lifetime());
  EXPECT_LT(ev->exit().lifetime().seconds(), 10);
}

TEST_F(ProcessEventsTest, ExitBySignal) {
  auto [pid, status] = run("/bin/sh", {"sh", "-c", "kill -KILL $$"});
  ASSERT_TRUE(WIFSIGNALED(status));
  auto ev = exitOf(pid);
  ASSERT_TRUE(ev);
  EXPECT_EQ(ev->exit().signal(), SIGKILL);
  EXPECT_EQ(ev->exit().exit_code(), 0);
}

TEST_F(ProcessEventsTest, MultiThreadedExitIsOneEventWithTheGroupCode) {
  // A shell pipeline is single-threaded; use a process that exits from a second thread.
  pid_t pid = fork();
  if (pid == 0) {
    std::thread([] {
      std::this_thread::sleep_for(10ms);
      std::exit(5);
    }).detach();
    for (;;) pause();
  }
  int status = 0;
  waitpid(pid, &status, 0);
  ASSERT_EQ(WEXITSTATUS(status), 5);
  // Every thread of pid exited before waitpid returned, so any exit record about it was
  // reserved in the ring buffer before those of a process started now.
  auto [sentinel, st2] = run("/bin/true", {"true"});
  int exits = 0, code = -1;
  ASSERT_TRUE(waitFor(v1::EVENT_TYPE_EXIT, [&](const v1::Event& e) {
    if (e.exit().process().pid() == static_cast<uint32_t>(pid)) {
      exits++;
      code = e.exit().exit_code();
    }
    return e.exit().process().pid() == static_cast<uint32_t>(sentinel);
  }));
  EXPECT_EQ(exits, 1) << "one exit event per process, not per thread";
  EXPECT_EQ(code, 5);
}

TEST_F(ProcessEventsTest, ThreeLevelParentChain) {
  // test -> sh(1) -> sh(2) -> true; "; :" stops the shells from exec'ing in place.
  std::string marker = "chain-" + std::to_string(getpid());
  auto [pid, status] =
      run("/bin/sh", {"sh", "-c", "/bin/sh -c '/bin/true " + marker + "; :'; :"});
  ASSERT_EQ(WEXITSTATUS(status), 0);
  auto leaf = waitFor(v1::EVENT_TYPE_EXEC, [&](const v1::Event& e) {
    const auto& a = e.exec().process().args();
    return a.size() == 2 && a[1] == marker;
  });
  ASSERT_TRUE(leaf);
  const auto& chain = leaf->ancestors();
  ASSERT_GE(chain.size(), 3);
  EXPECT_EQ(chain[0].binary(), fs::canonical("/bin/sh").string());
  EXPECT_EQ(chain[0].args(1), "-c");
  EXPECT_EQ(chain[1].pid(), static_cast<uint32_t>(pid));
  EXPECT_EQ(chain[1].binary(), fs::canonical("/bin/sh").string());
  EXPECT_EQ(chain[2].pid(), static_cast<uint32_t>(getpid()));
  EXPECT_EQ(chain[2].binary(), fs::canonical("/proc/self/exe").string());
  EXPECT_EQ(leaf->exec().process().parent_exec_id(), chain[0].exec_id());
  EXPECT_EQ(chain[0].pid(), leaf->exec().process().ppid());
}

TEST_F(ProcessEventsTest, ShebangScriptShowsScriptAndInterpreter) {
  fs::path script = dir() / "hello.sh";
  std::ofstream(script) << "#!/bin/sh\nexit 0\n";
  fs::permissions(script, fs::perms::owner_all);
  auto [pid, status] = run("./hello.sh", {"./hello.sh"}, dir().string());
  ASSERT_EQ(WEXITSTATUS(status), 0);
  auto ev = execOf(pid);
  ASSERT_TRUE(ev);
  const auto& p = ev->exec().process();
  EXPECT_EQ(p.binary(), fs::canonical("/bin/sh").string());
  EXPECT_EQ(p.script(), script.string());
  EXPECT_EQ(p.interpreter(), "/bin/sh");
}

TEST_F(ProcessEventsTest, StatusCountsAndListsPrograms) {
  auto [pid, status] = run("/bin/true", {"true"});
  ASSERT_TRUE(exitOf(pid));
  auto s = agent_->status();
  EXPECT_EQ(s.node_name(), "test-node");
  // The process-event programs, beside the flow programs (tc, cgroup_skb, tracepoints).
  int processPrograms = 0;
  for (const auto& p : s.programs()) {
    EXPECT_NE(p.id(), 0u) << p.name();
    if (p.name() == "vigil_exec" || p.name() == "vigil_exit" || p.name() == "vigil_fork") {
      EXPECT_EQ(p.type(), "tp_btf");
      processPrograms++;
    }
  }
  EXPECT_EQ(processPrograms, 3);
  bool sawExec = false;
  for (const auto& e : s.events())
    if (e.type() == v1::EVENT_TYPE_EXEC) sawExec = e.seen() > 0;
  EXPECT_TRUE(sawExec);
  bool lsmReported = false;
  for (const auto& c : s.capabilities())
    if (c.name() == "bpf_lsm") lsmReported = !c.detail().empty();
  EXPECT_TRUE(lsmReported);
}

}  // namespace
}  // namespace vigil
