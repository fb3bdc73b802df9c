// Privileged tier: XDP enforcement outlives the agent. The real vigil-agent binary enforces a
// UDP drop rule on a veth pair while a flood of denied datagrams and a steady allowed flow run
// from the pair's namespace. The agent is SIGKILLed and started again over and over: not one
// denied datagram may reach its receiver, whether an agent is running or not, allowed traffic
// must keep arriving while no agent runs, and the pinned rule counter must account for every
// denied datagram across all the restarts. A second test restarts the agent over a policy
// file that no longer parses: the adopted enforcement must stay.
//
// Every agent gets its own temp directory (policies, API socket, log) and its own bpffs pin
// directory; a guard kills it, runs `vigil-agent --cleanup` and removes both, also when an
// assertion fails half way.
#include <fcntl.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "support/bpffs.hpp"
#include "support/netns.hpp"
#include "support/traffic.hpp"
#include "vigil/v1/vigil.grpc.pb.h"

namespace vigil {
namespace {
namespace fs = std::filesystem;
using namespace std::chrono_literals;
using testing::UdpFlood;
using testing::UdpSink;
using testing::VethPair;

constexpr char kPolicyName[] = "restart-test";
constexpr char kRuleName[] = "deny-flood";
constexpr char kPinPrefix[] = "vigil-restart-";
constexpr uint64_t kDeniedPps = 5000;
constexpr uint64_t kAllowedPps = 500;
constexpr int kRestarts = 10;
constexpr auto kDeadWindow = 500ms;
constexpr auto kSettle = 300ms;
constexpr auto kReadyTimeout = 30s;
// Marker tags, so every count below is of one flow only.
constexpr uint32_t kDeniedTag = 0xd0;
constexpr uint32_t kAllowedTag = 0xa0;
constexpr uint32_t kWarmupTag = 0xee;
constexpr uint32_t kControlTag = 0xcc;

bool pidAlive(pid_t pid) { return ::kill(pid, 0) == 0 || errno == EPERM; }

std::string agentBinary() { return VIGIL_AGENT_BIN; }

// Whether `name` is "vigil-restart-<pid>-<n>" of a process that is gone.
bool staleName(const std::string& name) {
  if (name.rfind(kPinPrefix, 0) != 0) return false;
  const std::string rest = name.substr(std::strlen(kPinPrefix));
  const std::string pid = rest.substr(0, rest.find('-'));
  if (pid.empty() || pid.size() > 9 || pid.find_first_not_of("0123456789") != std::string::npos)
    return false;
  return !pidAlive(static_cast<pid_t>(std::stol(pid)));
}

// Temp directories of earlier runs of this test that died before their cleanup: their pid is
// gone, so nothing else can own them.
void removeStaleRuns() {
  // (Their pins were on a bpffs of their own; PrivateBpffs::create unmounts those.)
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(fs::temp_directory_path(), ec)) {
    if (staleName(entry.path().filename().string())) fs::remove_all(entry.path(), ec);
  }
}

// The program id of the XDP program attached to `ifname`, from `ip link`; 0 when none. Throws
// (through ipCommand) when the interface does not exist.
uint32_t attachedXdpProgram(const std::string& ifname, std::string* text = nullptr) {
  const std::string out = testing::ipCommand({"-d", "link", "show", "dev", ifname});
  if (text) *text = out;
  const size_t at = out.find("prog/xdp id ");
  if (at == std::string::npos) return out.find("xdp") == std::string::npos ? 0 : UINT32_MAX;
  return static_cast<uint32_t>(std::stoul(out.substr(at + std::strlen("prog/xdp id "))));
}

std::string policyYaml(const std::string& ifname, uint16_t deniedPort) {
  std::ostringstream y;
  y << "apiVersion: vigil.dev/v1alpha1\n"
    << "kind: Policy\n"
    << "metadata: {name: " << kPolicyName << "}\n"
    << "spec:\n"
    << "  xdp:\n"
    << "    interfaces: [" << ifname << "]\n"
    << "    rules:\n"
    << "      - name: " << kRuleName << "\n"
    << "        match: {protocol: udp, destinationPorts: [" << deniedPort << "]}\n";
  return y.str();
}

void writeFile(const fs::path& path, const std::string& text) {
  std::ofstream out(path, std::ios::trunc);
  out << text;
  out.close();
  if (!out) throw testing::SupportError("write " + path.string());
}

// The deny rule's counters as the agent reports them in GetStatus (pinned per-CPU counters).
std::optional<v1::XdpRuleCounter> ruleCounter(const v1::GetStatusResponse& status) {
  for (const auto& r : status.xdp().rules()) {
    if (r.policy() == kPolicyName && r.rule() == kRuleName) return r;
  }
  return std::nullopt;
}

bool attachedTo(const v1::GetStatusResponse& status, const std::string& ifname) {
  for (const auto& i : status.xdp().interfaces()) {
    if (i.name() == ifname) return true;
  }
  return false;
}

uint32_t linkIdOn(const v1::GetStatusResponse& status, const std::string& ifname) {
  for (const auto& i : status.xdp().interfaces()) {
    if (i.name() == ifname) return i.link_id();
  }
  return 0;
}

// One vigil-agent process at a time, with its own temp directory and pin directory. The
// destructor is the cleanup guard: it kills a running agent, runs `vigil-agent --cleanup` on
// the pin directory and removes the temp directory.
class AgentProcess {
 public:
  explicit AgentProcess(const std::string& name) {
    static std::atomic<int> counter{0};
    const std::string id = std::to_string(::getpid()) + "-" + std::to_string(counter++);
    dir_ = fs::temp_directory_path() / (kPinPrefix + id);
    bpffs_ = testing::PrivateBpffs::create();
    pinDir_ = bpffs_->path() + "/vigil";
    fs::remove_all(dir_);
    fs::create_directories(dir_ / "policies");
    api_ = "unix://" + (dir_ / "vigil.sock").string();
    log_ = (dir_ / "agent.log").string();
    argv_ = {agentBinary(), "--api", api_,          "--policy-dir", policyDir().string(),
             "--pin-dir",   pinDir_, "--node-name", name,           "--drain-interval-ms",
             "100"};
  }

  ~AgentProcess() {
    if (pid_ > 0) stop(SIGKILL);
    cleanup();
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }

  AgentProcess(const AgentProcess&) = delete;
  AgentProcess& operator=(const AgentProcess&) = delete;

  fs::path policyDir() const { return dir_ / "policies"; }
  const std::string& pinDir() const { return pinDir_; }
  const std::string& logPath() const { return log_; }
  pid_t pid() const { return pid_; }

  // Starts the agent, its output appended to the log after a line that numbers the start.
  void start() {
    if (pid_ > 0) throw testing::SupportError("agent already running");
    {
      std::ofstream log(log_, std::ios::app);
      log << "==== test: start " << ++starts_ << " ====\n";
    }
    std::vector<char*> args;
    for (auto& a : argv_) args.push_back(a.data());
    args.push_back(nullptr);
    const int logFd = ::open(log_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (logFd < 0) throw testing::SupportError(testing::errnoMessage("open " + log_, errno));
    const pid_t parent = ::getpid();
    const pid_t pid = ::fork();
    if (pid == 0) {
      // Only async-signal-safe calls until exec. The agent dies with this test process
      // (the forking thread is the test's main thread, which lives as long as the process).
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (::getppid() != parent) ::_exit(127);
      const int devNull = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
      ::dup2(devNull, 0);
      ::dup2(logFd, 1);
      ::dup2(logFd, 2);
      ::execv(args[0], args.data());
      ::_exit(127);
    }
    const int err = errno;
    ::close(logFd);
    if (pid < 0) throw testing::SupportError(testing::errnoMessage("fork", err));
    pid_ = pid;
  }

  // Sends `sig` and reaps the agent; returns its wait status.
  int stop(int sig) {
    if (pid_ <= 0) return -1;
    ::kill(pid_, sig);
    int status = 0;
    while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
    }
    pid_ = 0;
    return status;
  }

  // Whether the agent is still running (reaps it when it exited on its own).
  bool running() {
    if (pid_ <= 0) return false;
    int status = 0;
    if (::waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = 0;
      return false;
    }
    return true;
  }

  testing::CommandResult cleanup() const {
    return testing::runCommand({agentBinary(), "--cleanup", "--pin-dir", pinDir_});
  }

  // GetStatus over a fresh channel (a channel to a killed agent would back off before it
  // tried the next one).
  std::optional<v1::GetStatusResponse> status(std::string* error = nullptr) const {
    auto stub = v1::Vigil::NewStub(grpc::CreateChannel(api_, grpc::InsecureChannelCredentials()));
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + 2s);
    v1::GetStatusResponse out;
    const grpc::Status s = stub->GetStatus(&ctx, v1::GetStatusRequest(), &out);
    if (!s.ok()) {
      if (error) *error = s.error_message();
      return std::nullopt;
    }
    return out;
  }

  std::optional<v1::ListPoliciesResponse> policies() const {
    auto stub = v1::Vigil::NewStub(grpc::CreateChannel(api_, grpc::InsecureChannelCredentials()));
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + 2s);
    v1::ListPoliciesResponse out;
    if (!stub->ListPolicies(&ctx, v1::ListPoliciesRequest(), &out).ok()) return std::nullopt;
    return out;
  }

  // Waits until the agent reports XDP state `state` with `ifname` attached. On timeout, or
  // when the agent exits, returns nullopt and says why in *why.
  std::optional<v1::GetStatusResponse> waitForXdp(const std::string& state,
                                                  const std::string& ifname, std::string* why) {
    const auto deadline = testing::Clock::now() + kReadyTimeout;
    std::string last = "no answer";
    while (testing::Clock::now() < deadline) {
      if (!running()) {
        *why = "the agent exited; log tail:\n" + logTail();
        return std::nullopt;
      }
      std::string error;
      if (auto s = status(&error)) {
        if (s->xdp().state() == state && attachedTo(*s, ifname)) return s;
        last = "xdp state \"" + s->xdp().state() + "\", " +
               std::to_string(s->xdp().interfaces_size()) + " interface(s)";
      } else {
        last = "GetStatus: " + error;
      }
      std::this_thread::sleep_for(20ms);
    }
    *why = "no xdp state \"" + state + "\" on " + ifname + " within " +
           std::to_string(kReadyTimeout.count()) + "s (last: " + last + "); log tail:\n" +
           logTail();
    return std::nullopt;
  }

  std::string logTail(size_t lines = 40) const {
    std::ifstream in(log_);
    std::vector<std::string> all;
    for (std::string line; std::getline(in, line);) all.push_back(line);
    std::string out;
    for (size_t i = all.size() > lines ? all.size() - lines : 0; i < all.size(); i++)
      out += all[i] + "\n";
    return out;
  }

 private:
  fs::path dir_;
  std::unique_ptr<testing::PrivateBpffs> bpffs_;  // unmounted after the destructor's cleanup
  std::string pinDir_;
  std::string api_;
  std::string log_;
  std::vector<std::string> argv_;
  pid_t pid_ = 0;
  int starts_ = 0;
};

// A UdpFlood running on a thread of its own until stop(), in 50 ms paced batches.
class BackgroundFlood {
 public:
  BackgroundFlood(const std::string& ns, const std::string& dst, uint16_t port, uint64_t pps,
                  uint32_t tag)
      : flood_(ns, dst, port), thread_([this, pps, tag] { run(pps, tag); }) {}
  ~BackgroundFlood() { stop(); }
  BackgroundFlood(const BackgroundFlood&) = delete;
  BackgroundFlood& operator=(const BackgroundFlood&) = delete;

  void stop() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
  }
  uint64_t sent() const { return sent_; }
  uint64_t failed() const { return failed_; }
  int lastError() const { return lastError_; }

 private:
  void run(uint64_t pps, uint32_t tag) {
    const uint64_t batch = std::max<uint64_t>(1, pps / 20);
    while (!stop_) {
      const testing::FloodResult r = flood_.send(batch, pps, tag);
      sent_ += r.sent;
      failed_ += r.failed;
      if (r.failed > 0) lastError_ = r.lastError;
    }
  }

  UdpFlood flood_;
  std::atomic<bool> stop_{false};
  std::atomic<uint64_t> sent_{0};
  std::atomic<uint64_t> failed_{0};
  std::atomic<int> lastError_{0};
  std::thread thread_;  // last: starts once everything above exists
};

// Transmit drops of the peer end (inside the namespace), from `ip -s link`: datagrams
// the veth could not hand to the host end (its ring full) never reach XDP on the host end.
uint64_t peerTxDropped(const VethPair& pair) {
  const std::string out =
      testing::ipCommand({"-n", pair.nsName(), "-s", "-s", "link", "show", "dev", pair.peerIf()});
  // "TX:  bytes packets errors dropped carrier collsns" then the numbers.
  const size_t tx = out.find("TX:");
  if (tx == std::string::npos) return 0;
  const size_t nl = out.find('\n', tx);
  std::istringstream nums(out.substr(nl + 1));
  uint64_t bytes = 0, packets = 0, errors = 0, dropped = 0;
  nums >> bytes >> packets >> errors >> dropped;
  return dropped;
}

class XdpRestartTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "needs root: veth pairs, BPF programs and bpffs pins";
    removeStaleRuns();
    pair_ = VethPair::create("restart");
    denied_ = std::make_unique<UdpSink>(pair_->hostV4());
    allowed_ = std::make_unique<UdpSink>(pair_->hostV4());
  }

  void TearDown() override {
    denied_.reset();
    allowed_.reset();
    pair_.reset();
  }

  // Resolves the peer's neighbour entry for the host end before any flood starts, so no
  // datagram waits in (or overflows) the unresolved-neighbour queue.
  void warmUp() {
    UdpFlood warm(pair_->nsName(), pair_->hostV4(), allowed_->port());
    warm.send(1, 0, kWarmupTag);
    ASSERT_TRUE(testing::waitUntil([&] { return allowed_->count(kWarmupTag) == 1; }, 2s))
        << "no datagram from the namespace reached the host end";
  }

  // After enforcement is gone: denied-port datagrams arrive again, which shows the zero counts
  // of the test came from XDP and not from a sink that hears nothing.
  void expectDeniedPortOpen() {
    UdpFlood control(pair_->nsName(), pair_->hostV4(), denied_->port());
    const uint64_t sent = control.send(200, 2000, kControlTag).sent;
    EXPECT_TRUE(testing::waitUntil([&] { return denied_->count(kControlTag) == sent; }, 2s))
        << "after cleanup " << denied_->count(kControlTag) << " of " << sent
        << " control datagrams to the denied port arrived";
  }

  void expectCleanedUp(AgentProcess& agent) {
    const testing::CommandResult r = agent.cleanup();
    EXPECT_EQ(r.status, 0) << "vigil-agent --cleanup: " << r.err;
    std::string ipText;
    EXPECT_EQ(attachedXdpProgram(pair_->hostIf(), &ipText), 0u)
        << "XDP still attached after --cleanup:\n"
        << ipText;
    EXPECT_FALSE(fs::exists(agent.pinDir())) << agent.pinDir() << " still exists after --cleanup";
  }

  std::unique_ptr<VethPair> pair_;
  std::unique_ptr<UdpSink> denied_;
  std::unique_ptr<UdpSink> allowed_;
};

struct DeadWindow {
  uint64_t allowedBefore = 0;
  uint64_t allowedAfter = 0;
  uint32_t attachedProgram = 0;  // on the interface while no agent ran
  double restartSeconds = 0;     // exec to "enforcing"
  uint32_t programAfter = 0;     // the restarted agent's program id
  uint32_t linkAfter = 0;        // the pinned link it adopted
};

TEST_F(XdpRestartTest, DeniedFloodNeverPassesAcrossTenSigkillRestarts) {
  AgentProcess agent("xdp-restart");
  writeFile(agent.policyDir() / "restart.yaml", policyYaml(pair_->hostIf(), denied_->port()));
  agent.start();
  std::string why;
  auto first = agent.waitForXdp("enforcing", pair_->hostIf(), &why);
  ASSERT_TRUE(first) << why;
  const uint32_t linkId = linkIdOn(*first, pair_->hostIf());
  ASSERT_NE(linkId, 0u);
  ASSERT_EQ(attachedXdpProgram(pair_->hostIf()), first->xdp().program_id());
  ASSERT_TRUE(ruleCounter(*first)) << "status has no counter for " << kRuleName;
  const uint64_t counterBefore = ruleCounter(*first)->packets();
  warmUp();
  if (HasFatalFailure()) return;
  const uint64_t txDropsBefore = peerTxDropped(*pair_);

  std::vector<DeadWindow> windows;
  uint32_t program = first->xdp().program_id();
  BackgroundFlood deniedFlood(pair_->nsName(), pair_->hostV4(), denied_->port(), kDeniedPps,
                              kDeniedTag);
  BackgroundFlood allowedFlood(pair_->nsName(), pair_->hostV4(), allowed_->port(), kAllowedPps,
                               kAllowedTag);
  std::this_thread::sleep_for(kSettle);
  for (int i = 0; i < kRestarts; i++) {
    SCOPED_TRACE("restart " + std::to_string(i + 1));
    DeadWindow w;
    const int status = agent.stop(SIGKILL);
    ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL)
        << "the agent was not killed by SIGKILL (wait status " << status << ")";
    w.allowedBefore = allowed_->count(kAllowedTag);
    std::this_thread::sleep_for(kDeadWindow);
    w.allowedAfter = allowed_->count(kAllowedTag);
    w.attachedProgram = attachedXdpProgram(pair_->hostIf());
    EXPECT_EQ(w.attachedProgram, program) << "the dead agent's program left the interface";
    EXPECT_GT(w.allowedAfter, w.allowedBefore) << "allowed traffic stopped while no agent ran";
    EXPECT_EQ(denied_->count(kDeniedTag), 0u) << "denied datagrams passed while no agent ran";

    const auto started = testing::Clock::now();
    agent.start();
    auto ready = agent.waitForXdp("enforcing", pair_->hostIf(), &why);
    ASSERT_TRUE(ready) << why;
    w.restartSeconds = std::chrono::duration<double>(testing::Clock::now() - started).count();
    w.programAfter = ready->xdp().program_id();
    w.linkAfter = linkIdOn(*ready, pair_->hostIf());
    EXPECT_EQ(w.linkAfter, linkId) << "the restarted agent did not adopt the pinned link";
    EXPECT_NE(w.programAfter, program) << "the restarted agent's program was not swapped in";
    EXPECT_EQ(attachedXdpProgram(pair_->hostIf()), w.programAfter);
    program = w.programAfter;
    windows.push_back(w);
    std::this_thread::sleep_for(kSettle);
    ASSERT_EQ(denied_->count(kDeniedTag), 0u) << "denied datagrams passed; log tail:\n"
                                              << agent.logTail();
  }
  deniedFlood.stop();
  allowedFlood.stop();
  const uint64_t deniedSent = deniedFlood.sent();
  const uint64_t allowedSent = allowedFlood.sent();
  EXPECT_EQ(deniedFlood.failed(), 0u) << "sendto: " << std::strerror(deniedFlood.lastError());
  EXPECT_EQ(allowedFlood.failed(), 0u) << "sendto: " << std::strerror(allowedFlood.lastError());

  // Let everything in flight land before counting.
  testing::waitUntil(
      [&] { return allowed_->count(kAllowedTag) + allowed_->socketDrops() >= allowedSent; }, 2s);
  std::this_thread::sleep_for(200ms);
  const uint64_t allowedReceived = allowed_->count(kAllowedTag);
  const uint64_t allowedDrops = allowed_->socketDrops();
  const uint64_t deniedReceived = denied_->count(kDeniedTag);
  const uint64_t txDrops = peerTxDropped(*pair_) - txDropsBefore;

  auto final = agent.status(&why);
  ASSERT_TRUE(final) << why;
  ASSERT_TRUE(ruleCounter(*final));
  const uint64_t counter = ruleCounter(*final)->packets() - counterBefore;
  uint64_t listed = 0;
  if (auto list = agent.policies()) {
    for (const auto& p : list->policies()) {
      for (const auto& r : p.rules()) {
        if (p.name() == kPolicyName && r.name() == kRuleName) listed = r.packets();
      }
    }
  }

  std::printf("restart  allowed-in-dead-window  xdp-prog-while-dead  restart-s  new-prog  link\n");
  for (size_t i = 0; i < windows.size(); i++) {
    const DeadWindow& w = windows[i];
    std::printf("%7zu  %22llu  %19u  %9.2f  %8u  %4u\n", i + 1,
                static_cast<unsigned long long>(w.allowedAfter - w.allowedBefore),
                w.attachedProgram, w.restartSeconds, w.programAfter, w.linkAfter);
  }
  std::printf(
      "denied:  sent %llu, received %llu, rule counter %llu (status; policy list says %llu, "
      "counter before the flood %llu), peer veth tx drops %llu\n"
      "allowed: sent %llu, received %llu, socket drops %llu\n",
      static_cast<unsigned long long>(deniedSent), static_cast<unsigned long long>(deniedReceived),
      static_cast<unsigned long long>(counter), static_cast<unsigned long long>(listed),
      static_cast<unsigned long long>(counterBefore), static_cast<unsigned long long>(txDrops),
      static_cast<unsigned long long>(allowedSent),
      static_cast<unsigned long long>(allowedReceived),
      static_cast<unsigned long long>(allowedDrops));

  EXPECT_EQ(deniedReceived, 0u);
  EXPECT_EQ(allowedReceived + allowedDrops, allowedSent);
  EXPECT_GT(allowedReceived, 0u);
  // Nothing else sends to the denied port, and veth drops (none expected at this rate) never
  // reach XDP: the counter saw exactly the denied datagrams that made it to the interface.
  EXPECT_EQ(txDrops, 0u) << "the peer veth dropped datagrams before they reached XDP";
  EXPECT_GE(counter, deniedSent - txDrops);
  EXPECT_EQ(counter, deniedSent);
  EXPECT_EQ(listed, ruleCounter(*final)->packets());

  // A graceful stop leaves the enforcement pinned too; --cleanup is what removes it.
  agent.stop(SIGTERM);
  EXPECT_EQ(attachedXdpProgram(pair_->hostIf()), program)
      << "XDP left the interface when the agent stopped";
  expectCleanedUp(agent);
  expectDeniedPortOpen();
}

TEST_F(XdpRestartTest, BrokenPolicyAfterRestartKeepsAdoptedEnforcement) {
  AgentProcess agent("xdp-restart-broken");
  const fs::path policyFile = agent.policyDir() / "restart.yaml";
  writeFile(policyFile, policyYaml(pair_->hostIf(), denied_->port()));
  agent.start();
  std::string why;
  auto first = agent.waitForXdp("enforcing", pair_->hostIf(), &why);
  ASSERT_TRUE(first) << why;
  warmUp();
  if (HasFatalFailure()) return;

  BackgroundFlood deniedFlood(pair_->nsName(), pair_->hostV4(), denied_->port(), kDeniedPps,
                              kDeniedTag);
  BackgroundFlood allowedFlood(pair_->nsName(), pair_->hostV4(), allowed_->port(), kAllowedPps,
                               kAllowedTag);
  std::this_thread::sleep_for(kSettle);
  agent.stop(SIGKILL);
  // Unclosed flow sequence: not YAML at all.
  writeFile(policyFile, "apiVersion: vigil.dev/v1alpha1\nkind: Policy\nmetadata: {name: [\n");
  agent.start();
  auto adopted = agent.waitForXdp("adopted", pair_->hostIf(), &why);
  ASSERT_TRUE(adopted) << why;
  EXPECT_EQ(linkIdOn(*adopted, pair_->hostIf()), linkIdOn(*first, pair_->hostIf()));
  EXPECT_EQ(attachedXdpProgram(pair_->hostIf()), adopted->xdp().program_id());
  ASSERT_TRUE(ruleCounter(*adopted)) << "the adopted rule's counter is not reported";
  const uint64_t counterAtAdoption = ruleCounter(*adopted)->packets();

  const uint64_t allowedAtAdoption = allowed_->count(kAllowedTag);
  std::this_thread::sleep_for(1s);
  auto later = agent.status(&why);
  ASSERT_TRUE(later) << why;
  EXPECT_EQ(later->xdp().state(), "adopted") << "the broken policy replaced the enforcement";
  ASSERT_TRUE(ruleCounter(*later));
  EXPECT_GT(ruleCounter(*later)->packets(), counterAtAdoption)
      << "the adopted rule stopped counting the flood";
  EXPECT_GT(allowed_->count(kAllowedTag), allowedAtAdoption);
  // The broken file itself is listed as rejected, with the parser's position.
  auto list = agent.policies();
  ASSERT_TRUE(list);
  bool rejected = false;
  for (const auto& p : list->policies()) {
    if (p.source() == "file:" + policyFile.string()) {
      rejected = p.state() == "error" && !p.error().empty();
      std::printf("broken policy listed as \"%s\" (%s): %s\n", p.name().c_str(), p.state().c_str(),
                  p.error().c_str());
    }
  }
  EXPECT_TRUE(rejected) << "the broken policy file is not listed with state \"error\"";

  deniedFlood.stop();
  allowedFlood.stop();
  testing::waitUntil(
      [&] { return allowed_->count(kAllowedTag) + allowed_->socketDrops() >= allowedFlood.sent(); },
      2s);
  std::this_thread::sleep_for(200ms);
  auto final = agent.status(&why);
  ASSERT_TRUE(final) << why;
  const uint64_t counter = ruleCounter(*final) ? ruleCounter(*final)->packets() : 0;
  std::printf(
      "broken policy: denied sent %llu, received %llu, rule counter %llu; allowed sent %llu, "
      "received %llu, socket drops %llu; xdp state \"%s\"\n",
      static_cast<unsigned long long>(deniedFlood.sent()),
      static_cast<unsigned long long>(denied_->count(kDeniedTag)),
      static_cast<unsigned long long>(counter),
      static_cast<unsigned long long>(allowedFlood.sent()),
      static_cast<unsigned long long>(allowed_->count(kAllowedTag)),
      static_cast<unsigned long long>(allowed_->socketDrops()), final->xdp().state().c_str());
  EXPECT_EQ(denied_->count(kDeniedTag), 0u) << "log tail:\n" << agent.logTail();
  EXPECT_EQ(final->xdp().state(), "adopted");
  EXPECT_EQ(counter, deniedFlood.sent());
  EXPECT_EQ(allowed_->count(kAllowedTag) + allowed_->socketDrops(), allowedFlood.sent());

  agent.stop(SIGKILL);
  expectCleanedUp(agent);
  expectDeniedPortOpen();
}

}  // namespace
}  // namespace vigil
