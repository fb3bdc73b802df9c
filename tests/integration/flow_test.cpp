// Privileged tier: flow tracking, per-cgroup traffic, socket attribution and kernel drop
// reasons on the real kernel. A sender process in a cgroup the test creates talks, over the
// host end of a veth pair the agent watches, to sockets in the pair's namespace. Counters are
// checked against exactly what was sent; flows are read through the agent's gRPC API.
#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <grpcpp/grpcpp.h>
#include <netinet/in.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <thread>

#include "bpf/flow_datapath.hpp"
#include "common/mountinfo.hpp"
#include "support/bpffs.hpp"
#include "support/netns.hpp"
#include "support/traffic.hpp"
#include "test_agent.hpp"
#include "vigil/v1/vigil.grpc.pb.h"

namespace vigil {
namespace {
using namespace std::chrono_literals;
using testing::VethPair;

// A cgroup of the test's own under the cgroup v2 root, removed with it.
class TestCgroup {
  static constexpr const char* kPrefix = "vigil-flow-test-";

 public:
  TestCgroup() {
    auto mount = findCgroup2Mount("/proc/self/mountinfo");
    if (!mount) throw testing::SupportError("no cgroup2 mount");
    // Cgroups of runs that crashed before their cleanup (their pid is gone).
    std::error_code ec;
    for (const auto& e : std::filesystem::directory_iterator(*mount, ec)) {
      const std::string name = e.path().filename().string();
      if (name.rfind(kPrefix, 0) != 0) continue;
      if (!std::filesystem::exists("/proc/" + name.substr(std::strlen(kPrefix))))
        ::rmdir(e.path().c_str());
    }
    rel_ = "/" + std::string(kPrefix) + std::to_string(getpid());
    path_ = *mount + rel_;
    if (::mkdir(path_.c_str(), 0755) != 0 && errno != EEXIST)
      throw testing::SupportError(testing::errnoMessage("mkdir " + path_, errno));
    struct stat st{};
    ::stat(path_.c_str(), &st);
    id_ = st.st_ino;
  }
  ~TestCgroup() { ::rmdir(path_.c_str()); }
  const std::string& procs() const { return path_; }
  const std::string& rel() const { return rel_; }
  uint64_t id() const { return id_; }

 private:
  std::string path_;
  std::string rel_;
  uint64_t id_ = 0;
};

// Runs `body` in a child process that first moves itself into `cgroup` and names itself
// `comm`. Returns the child's pid after it exited with status 0.
// The child of a multi-threaded process: `body` must not allocate (another thread may have held
// the allocator's lock at fork time).
pid_t runChild(const TestCgroup& cgroup, const char* comm, const std::function<int()>& body) {
  const std::string procs = cgroup.procs() + "/cgroup.procs";
  pid_t pid = fork();
  if (pid == 0) {
    int fd = ::open(procs.c_str(), O_WRONLY);
    if (fd < 0 || ::write(fd, "0", 1) != 1) _exit(90);
    ::close(fd);
    prctl(PR_SET_NAME, comm);
    _exit(body());
  }
  int status = 0;
  waitpid(pid, &status, 0);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "child status " << status;
  return pid;
}

sockaddr_in v4(const std::string& ip, uint16_t port) {
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  inet_pton(AF_INET, ip.c_str(), &a.sin_addr);
  return a;
}

// A TCP server in a namespace: accepts one connection at a time, reads until EOF, closes.
class TcpSink {
 public:
  TcpSink(const std::string& ns, const std::string& ip) {
    fd_ = testing::socketIn(ns, AF_INET, SOCK_STREAM, 0);
    auto a = v4(ip, 0);
    int one = 1;
    setsockopt(fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || listen(fd_, 8) != 0)
      throw testing::SupportError(testing::errnoMessage("tcp sink", errno));
    socklen_t len = sizeof a;
    getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
    thread_ = std::thread([this] {
      for (;;) {
        int c = accept(fd_, nullptr, nullptr);
        if (c < 0) return;
        char buf[65536];
        ssize_t n;
        while ((n = read(c, buf, sizeof buf)) > 0) bytes_ += static_cast<uint64_t>(n);
        close(c);
        done_++;
      }
    });
  }
  ~TcpSink() {
    shutdown(fd_, SHUT_RDWR);
    thread_.join();
    close(fd_);
  }
  uint16_t port() const { return port_; }
  uint64_t bytes() const { return bytes_; }
  int done() const { return done_; }

 private:
  int fd_ = -1;
  uint16_t port_ = 0;
  std::atomic<uint64_t> bytes_{0};
  std::atomic<int> done_{0};
  std::thread thread_;
};

std::vector<v1::Flow> flowsOf(const testing::TestAgent& env, const v1::FlowFilter& include);

class FlowTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (geteuid() != 0) return;
    pair_ = VethPair::create("flow").release();
    std::string error;
    const std::string hostIf = pair_->hostIf();
    env_ = testing::startTestAgent(
               "vigil-flow",
               [&](server::AgentConfig& cfg) {
                 cfg.flowInterfaces = {hostIf};
                 cfg.flowScanIntervalMs = 100;
                 cfg.flowIdleTimeoutS = 1;
                 cfg.flowUpdateIntervalS = 1;
                 cfg.policyPollMs = 100;
                 // Every drop a test causes is reported, whatever else the host drops.
                 cfg.dropSamples = 100000;
               },
               &error)
               .release();
    ASSERT_NE(env_, nullptr) << error;
  }

  static void TearDownTestSuite() {
    delete env_;
    env_ = nullptr;
    delete pair_;
    pair_ = nullptr;
  }

  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "needs root to load BPF programs and create veths";
    ASSERT_NE(env_, nullptr);
    ASSERT_NE(pair_, nullptr);
  }

  static const VethPair& veth() { return *pair_; }

  static std::vector<v1::Flow> flows(const v1::FlowFilter& include) {
    return flowsOf(*env_, include);
  }

  // Waits for a flow event of `type` that matches `include`; nullopt on timeout.
  static std::optional<v1::Flow> waitFlow(const v1::FlowFilter& include, v1::FlowEventType type,
                                          std::chrono::milliseconds timeout = 10s) {
    std::optional<v1::Flow> found;
    testing::waitUntil(
        [&] {
          for (const auto& f : flows(include))
            if (f.event_type() == type) found = f;
          return found.has_value();
        },
        timeout, 50ms);
    return found;
  }

  static std::optional<v1::CgroupTraffic> traffic(const TestCgroup& cg, const std::string& proto) {
    v1::GetTrafficRequest req;
    req.set_cgroup_prefix(cg.rel());
    const auto response = env_->agent->traffic(req);
    for (const auto& row : response.rows())
      if (row.cgroup_id() == cg.id() && row.protocol() == proto) return row;
    return std::nullopt;
  }

  static inline testing::TestAgent* env_ = nullptr;
  static inline VethPair* pair_ = nullptr;
};

// Every retained flow event of an agent that matches `include`.
std::vector<v1::Flow> flowsOf(const testing::TestAgent& env, const v1::FlowFilter& include) {
  auto channel = grpc::CreateChannel("unix://" + (env.dir / "vigil.sock").string(),
                                     grpc::InsecureChannelCredentials());
  auto stub = v1::Vigil::NewStub(channel);
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + 5s);
  v1::GetFlowsRequest req;
  *req.mutable_include() = include;
  auto reader = stub->GetFlows(&ctx, req);
  std::vector<v1::Flow> out;
  v1::GetFlowsResponse resp;
  while (reader->Read(&resp))
    if (resp.event().has_flow()) out.push_back(resp.event().flow());
  auto status = reader->Finish();
  EXPECT_TRUE(status.ok()) << status.error_message();
  return out;
}

// The flow's counters of one direction against the sender's cgroup. Payload is equal; the
// cgroup may lack one pure ACK (52 bytes): the one the kernel sends or receives for a socket in
// TIME_WAIT, after its process closed it, which belongs to no cgroup.
void expectCounters(const v1::FlowCounters& flow, const v1::TrafficCounters& cg) {
  EXPECT_EQ(flow.payload_bytes(), cg.payload_bytes());
  EXPECT_LE(cg.packets(), flow.packets());
  EXPECT_LE(flow.packets() - cg.packets(), 1u);
  EXPECT_EQ(flow.bytes() - cg.bytes(), 52 * (flow.packets() - cg.packets()));
}

// Sends exactly `total` bytes over TCP from a child in `cg`, then closes.
pid_t sendTcp(const TestCgroup& cg, const std::string& ip, uint16_t port, size_t total) {
  std::vector<char> buf(65536, 'v');
  const auto a = v4(ip, port);
  return runChild(cg, "vigil-tcp-send", [&] {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (connect(fd, reinterpret_cast<const sockaddr*>(&a), sizeof a) != 0) return 2;
    size_t left = total;
    while (left > 0) {
      ssize_t n = write(fd, buf.data(), std::min(left, buf.size()));
      if (n <= 0) return 3;
      left -= static_cast<size_t>(n);
    }
    close(fd);
    return 0;
  });
}

// Sends `count` datagrams of `size` bytes to `to` from a child in `cg` named `comm`.
pid_t sendUdp(const TestCgroup& cg, const char* comm, const sockaddr* to, socklen_t toLen,
              int count, size_t size) {
  std::vector<char> buf(size, 'u');
  return runChild(cg, comm, [&] {
    int fd = socket(to->sa_family, SOCK_DGRAM, 0);
    for (int i = 0; i < count; i++) {
      if (sendto(fd, buf.data(), buf.size(), 0, to, toLen) != static_cast<ssize_t>(size)) return 2;
    }
    close(fd);
    return 0;
  });
}

TEST_F(FlowTest, TcpPayloadWireBytesFlagsEndAndOwnerAreExact) {
  TestCgroup cg;
  TcpSink sink(veth().nsName(), veth().peerV4());
  constexpr size_t kBytes = 1 << 20;
  pid_t pid = sendTcp(cg, veth().peerV4(), sink.port(), kBytes);
  ASSERT_TRUE(testing::waitUntil([&] { return sink.done() == 1; }, 5s));
  ASSERT_EQ(sink.bytes(), kBytes);

  v1::FlowFilter f;
  f.add_destination_port(sink.port());
  f.add_protocol("tcp");
  auto end = waitFlow(f, v1::FLOW_END);
  ASSERT_TRUE(end) << "no FLOW_END for the TCP flow";
  EXPECT_EQ(end->end_reason(), "fin");
  EXPECT_EQ(end->verdict(), v1::FORWARDED);
  EXPECT_EQ(end->interface(), veth().hostIf());
  EXPECT_EQ(end->direction(), "egress");
  EXPECT_EQ(end->source().ip(), veth().hostV4());
  EXPECT_EQ(end->destination().ip(), veth().peerV4());
  // Payload: exactly what the sender wrote, and nothing back.
  EXPECT_EQ(end->sent().payload_bytes(), kBytes);
  EXPECT_EQ(end->reply().payload_bytes(), 0u);
  // GSO corrected: at least one packet per MSS of data (the veth MTU is 1500), not one per
  // 64 KiB super-packet; and every packet carries IPv4 (20) + TCP with timestamps (32) bytes of
  // headers, the SYN 8 more (its options are 40 bytes).
  const uint64_t mss = 1500 - 20 - 32;
  EXPECT_GE(end->sent().packets(), kBytes / mss);
  EXPECT_EQ(end->sent().bytes() - end->sent().payload_bytes(), 52 * end->sent().packets() + 8);
  EXPECT_EQ(end->reply().bytes() - end->reply().payload_bytes(),
            52 * end->reply().packets() + 8);
  for (const char* flag : {"SYN", "ACK", "FIN"}) {
    EXPECT_NE(std::find(end->tcp_flags().begin(), end->tcp_flags().end(), flag),
              end->tcp_flags().end())
        << flag;
    EXPECT_NE(std::find(end->reply_tcp_flags().begin(), end->reply_tcp_flags().end(), flag),
              end->reply_tcp_flags().end())
        << flag;
  }
  // Attribution: the sender's process and cgroup.
  EXPECT_EQ(end->source().pid(), static_cast<uint32_t>(pid));
  EXPECT_EQ(end->source().comm(), "vigil-tcp-send");
  EXPECT_EQ(end->source().cgroup_id(), cg.id());
  EXPECT_EQ(end->source().cgroup_path(), cg.rel());
  // The receiving end is this test process (its socket lives in the namespace).
  EXPECT_EQ(end->destination().pid(), static_cast<uint32_t>(getpid()));

  // The flow was announced, and the sender's cgroup counted the same packets.
  EXPECT_TRUE(waitFlow(f, v1::FLOW_NEW, 1s));
  auto row = traffic(cg, "tcp");
  ASSERT_TRUE(row) << "no tcp counters for cgroup " << cg.rel();
  expectCounters(end->sent(), row->egress());
  expectCounters(end->reply(), row->ingress());
}

TEST_F(FlowTest, UdpDatagramsCountExactlyPerFlowAndCgroup) {
  TestCgroup cg;
  testing::UdpSink sink(veth().peerV4(), 0, veth().nsName());
  constexpr int kCount = 200;
  constexpr size_t kSize = 700;
  const auto a = v4(veth().peerV4(), sink.port());
  pid_t pid = sendUdp(cg, "vigil-udp-send", reinterpret_cast<const sockaddr*>(&a), sizeof a,
                      kCount, kSize);
  ASSERT_TRUE(sink.waitFor(kCount, 5s));

  v1::FlowFilter f;
  f.add_destination_port(sink.port());
  f.add_protocol("udp");
  auto end = waitFlow(f, v1::FLOW_END);  // the idle timeout is 1 s here
  ASSERT_TRUE(end);
  EXPECT_EQ(end->end_reason(), "idle");
  EXPECT_EQ(end->sent().packets(), static_cast<uint64_t>(kCount));
  EXPECT_EQ(end->sent().payload_bytes(), kCount * kSize);
  EXPECT_EQ(end->sent().bytes(), kCount * (kSize + 20 + 8));  // IPv4 + UDP headers
  EXPECT_EQ(end->reply().packets(), 0u);
  EXPECT_EQ(end->source().pid(), static_cast<uint32_t>(pid));
  EXPECT_EQ(end->source().comm(), "vigil-udp-send");
  EXPECT_EQ(end->source().cgroup_id(), cg.id());
  auto row = traffic(cg, "udp");
  ASSERT_TRUE(row);
  expectCounters(end->sent(), row->egress());
}

TEST_F(FlowTest, RstEndsTheFlowAndTheRefusedSynIsADrop) {
  TestCgroup cg;
  // A port nobody listens on in the namespace: SYN, then RST back.
  TcpSink sink(veth().nsName(), veth().peerV4());
  const uint16_t closed = static_cast<uint16_t>(sink.port() + 1);
  const auto a = v4(veth().peerV4(), closed);
  runChild(cg, "vigil-tcp-rst", [&] {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    return connect(fd, reinterpret_cast<const sockaddr*>(&a), sizeof a) != 0 && errno == ECONNREFUSED
               ? 0
               : 2;
  });
  v1::FlowFilter f;
  f.add_destination_port(closed);
  f.add_protocol("tcp");
  auto end = waitFlow(f, v1::FLOW_END);
  ASSERT_TRUE(end);
  EXPECT_EQ(end->end_reason(), "rst");
  EXPECT_NE(std::find(end->reply_tcp_flags().begin(), end->reply_tcp_flags().end(), "RST"),
            end->reply_tcp_flags().end());
  auto drop = waitFlow(f, v1::FLOW_DROP);
  ASSERT_TRUE(drop) << "the refused SYN was not reported as a drop";
  EXPECT_EQ(drop->verdict(), v1::DROPPED);
  EXPECT_EQ(drop->drop_reason(), "NO_SOCKET");
}

TEST_F(FlowTest, UdpToAClosedPortIsDroppedWithNoSocket) {
  TestCgroup cg;
  testing::UdpSink sink(veth().peerV4(), 0, veth().nsName());
  const uint16_t closed = static_cast<uint16_t>(sink.port() ^ 0x5a5a);
  const auto a = v4(veth().peerV4(), closed);
  runChild(cg, "vigil-udp-closed", [&] {
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    return sendto(fd, "x", 1, 0, reinterpret_cast<const sockaddr*>(&a), sizeof a) == 1 ? 0 : 2;
  });
  v1::FlowFilter f;
  f.add_destination_port(closed);
  f.add_verdict(v1::DROPPED);
  auto drop = waitFlow(f, v1::FLOW_DROP);
  ASSERT_TRUE(drop);
  EXPECT_EQ(drop->drop_reason(), "NO_SOCKET");
  EXPECT_EQ(drop->protocol(), "udp");
  EXPECT_EQ(drop->source().ip(), veth().hostV4());
  EXPECT_EQ(drop->destination().ip(), veth().peerV4());
}

TEST_F(FlowTest, NetfilterDropIsReportedWithItsReason) {
  TestCgroup cg;
  testing::UdpSink sink(veth().peerV4(), 0, veth().nsName());
  const std::string port = std::to_string(sink.port());
  // In the test's namespace: it goes away with the namespace.
  const std::string& ns = veth().nsName();
  auto nft = [&](const std::string& cmd) {
    auto r = testing::runCommand({"ip", "netns", "exec", ns, "nft", cmd});
    ASSERT_EQ(r.status, 0) << "nft " << cmd << ": " << r.err;
  };
  nft("add table inet vigil_test");
  nft("add chain inet vigil_test in { type filter hook input priority 0; policy accept; }");
  nft("add rule inet vigil_test in udp dport " + port + " drop");
  const auto a = v4(veth().peerV4(), sink.port());
  runChild(cg, "vigil-udp-nft", [&] {
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    return sendto(fd, "y", 1, 0, reinterpret_cast<const sockaddr*>(&a), sizeof a) == 1 ? 0 : 2;
  });
  v1::FlowFilter f;
  f.add_destination_port(sink.port());
  f.add_type("drop");
  auto drop = waitFlow(f, v1::FLOW_DROP);
  nft("delete table inet vigil_test");
  ASSERT_TRUE(drop);
  EXPECT_EQ(drop->drop_reason(), "NETFILTER_DROP");
  EXPECT_EQ(sink.datagrams(), 0u);
}

TEST_F(FlowTest, StatusReportsTheAttachmentAndCounters) {
  auto s = env_->agent->status();
  ASSERT_EQ(s.flows().state(), "tracking");
  ASSERT_EQ(s.flows().interfaces_size(), 1);
  EXPECT_EQ(s.flows().interfaces(0).name(), veth().hostIf());
  EXPECT_EQ(s.flows().interfaces(0).mode(), "tcx");
  EXPECT_GT(s.flows().ring_capacity(), 0u);
  EXPECT_GT(s.flows().table_capacity(), 0u);
  EXPECT_FALSE(s.flows().attribution().empty());
  bool cgroupCap = false;
  for (const auto& c : s.capabilities())
    if (c.name() == "cgroup_traffic") cgroupCap = c.available();
  EXPECT_TRUE(cgroupCap);
}

TEST_F(FlowTest, Ipv6UdpCountsIpv6Headers) {
  TestCgroup cg;
  testing::UdpSink sink(veth().peerV6(), 0, veth().nsName());
  constexpr int kCount = 50;
  constexpr size_t kSize = 300;
  sockaddr_in6 a{};
  a.sin6_family = AF_INET6;
  a.sin6_port = htons(sink.port());
  inet_pton(AF_INET6, veth().peerV6().c_str(), &a.sin6_addr);
  sendUdp(cg, "vigil-udp6-send", reinterpret_cast<const sockaddr*>(&a), sizeof a, kCount, kSize);
  ASSERT_TRUE(sink.waitFor(kCount, 5s));
  v1::FlowFilter f;
  f.add_destination_port(sink.port());
  f.add_destination_ip(veth().peerV6());
  auto end = waitFlow(f, v1::FLOW_END);
  ASSERT_TRUE(end);
  EXPECT_EQ(end->protocol(), "udp");
  EXPECT_EQ(end->source().ip(), veth().hostV6());
  EXPECT_EQ(end->sent().packets(), static_cast<uint64_t>(kCount));
  EXPECT_EQ(end->sent().payload_bytes(), kCount * kSize);
  EXPECT_EQ(end->sent().bytes(), kCount * (kSize + 40 + 8));  // IPv6 + UDP headers
  EXPECT_EQ(end->source().comm(), "vigil-udp6-send");
}

TEST_F(FlowTest, LongFlowsGetPeriodicUpdates) {
  testing::UdpSink sink(veth().hostV4());
  const int fd = testing::socketIn(veth().nsName(), AF_INET, SOCK_DGRAM, 0);
  auto a = v4(veth().hostV4(), sink.port());
  // 2.5 s of one datagram every 100 ms; the update interval is 1 s here.
  for (int i = 0; i < 25; i++) {
    ASSERT_EQ(sendto(fd, "z", 1, 0, reinterpret_cast<sockaddr*>(&a), sizeof a), 1);
    std::this_thread::sleep_for(100ms);
  }
  close(fd);
  v1::FlowFilter f;
  f.add_destination_port(sink.port());
  auto update = waitFlow(f, v1::FLOW_UPDATE, 3s);
  ASSERT_TRUE(update) << "no FLOW_UPDATE for a 2.5 s flow";
  EXPECT_EQ(update->direction(), "ingress");
  EXPECT_GT(update->sent().packets(), 0u);
  EXPECT_LT(update->sent().packets(), 25u);
  auto end = waitFlow(f, v1::FLOW_END);
  ASSERT_TRUE(end);
  EXPECT_EQ(end->sent().packets(), 25u);
}

TEST_F(FlowTest, XdpRuleDropsAppearAsFlowDropsNamingTheRule) {
  testing::UdpSink sink(veth().hostV4());
  const std::string yaml = "apiVersion: vigil.dev/v1alpha1\nkind: Policy\nmetadata: {name: "
                           "flow-xdp}\nspec:\n  xdp:\n    interfaces: [" +
                           veth().hostIf() +
                           "]\n    rules:\n      - name: no-sink\n        match: {protocol: udp, "
                           "destinationPorts: [" +
                           std::to_string(sink.port()) + "]}\n";
  auto outcome = env_->agent->policies().applyText(yaml, "flow-xdp.yaml");
  ASSERT_TRUE(outcome.ok()) << outcome.error().message();
  const int fd = testing::socketIn(veth().nsName(), AF_INET, SOCK_DGRAM, 0);
  auto a = v4(veth().hostV4(), sink.port());
  for (int i = 0; i < 3; i++)
    ASSERT_EQ(sendto(fd, "q", 1, 0, reinterpret_cast<sockaddr*>(&a), sizeof a), 1);
  close(fd);
  // The veth also frees the dropped skb (a kernel drop, NOT_SPECIFIED): ask for Vigil's.
  v1::FlowFilter f;
  f.add_destination_port(sink.port());
  f.add_type("drop");
  std::optional<v1::Flow> drop;
  testing::waitUntil(
      [&] {
        for (const auto& flow : flows(f))
          if (flow.drop_reason() == "VIGIL_XDP_POLICY") drop = flow;
        return drop.has_value();
      },
      10s, 50ms);
  env_->agent->policies().remove("flow-xdp");
  ASSERT_TRUE(drop);
  EXPECT_EQ(drop->verdict(), v1::DROPPED);
  EXPECT_EQ(drop->drop_reason(), "VIGIL_XDP_POLICY");
  EXPECT_EQ(drop->policy(), "flow-xdp");
  EXPECT_EQ(drop->rule(), "no-sink");
  EXPECT_EQ(drop->interface(), veth().hostIf());
  EXPECT_EQ(sink.datagrams(), 0u);
}

// A small flow data path of its own with clsact filters on `ifname`.
Expected<std::unique_ptr<bpf::FlowDataPath>> legacyFlows(const std::string& ifname) {
  bpf::FlowOptions o;
  o.tcMode = bpf::TcMode::legacy;
  o.tableEntries = 1024;
  o.ownerEntries = 1024;
  o.cgroupEntries = 256;
  auto dp = bpf::FlowDataPath::open(o);
  if (!dp) return dp;
  if (auto s = (*dp)->syncInterfaces({ifname}); !s) return s.error();
  return dp;
}

// The clsact path older kernels use, on the same veth (beside the agent's tcx links).
TEST_F(FlowTest, LegacyTcFiltersTrackAndAreRemoved) {
  auto dp = legacyFlows(veth().hostIf());
  ASSERT_TRUE(dp) << dp.error().message();
  ASSERT_EQ((*dp)->attachments().size(), 1u);
  EXPECT_EQ((*dp)->attachments()[0].mode, "tc");
  auto filters = [&](const char* dir) {
    return testing::runCommand({"tc", "filter", "show", "dev", veth().hostIf(), dir}).out;
  };
  // Program names are cut to 15 characters.
  EXPECT_NE(filters("ingress").find("vigil_flow_ingr"), std::string::npos) << filters("ingress");
  EXPECT_NE(filters("egress").find("vigil_flow_egre"), std::string::npos) << filters("egress");
  // --cleanup leaves a running agent's filters alone.
  EXPECT_EQ(*bpf::FlowDataPath::cleanup(), 0u);
  EXPECT_NE(filters("ingress").find("vigil_flow_ingr"), std::string::npos) << filters("ingress");

  testing::UdpSink sink(veth().hostV4());
  const int fd = testing::socketIn(veth().nsName(), AF_INET, SOCK_DGRAM, 0);
  auto a = v4(veth().hostV4(), sink.port());
  for (int i = 0; i < 7; i++)
    ASSERT_EQ(sendto(fd, "abcd", 4, 0, reinterpret_cast<sockaddr*>(&a), sizeof a), 4);
  close(fd);
  ASSERT_TRUE(sink.waitFor(7, 2s));
  auto entries = (*dp)->readFlows();
  ASSERT_TRUE(entries);
  uint64_t packets = 0;
  for (const auto& e : *entries) {
    if (e.key.proto != 17 || (e.key.a_port != sink.port() && e.key.b_port != sink.port())) continue;
    packets += e.value.dir[0].packets + e.value.dir[1].packets;
    EXPECT_EQ(e.value.dir[0].payload + e.value.dir[1].payload, 7u * 4);
  }
  EXPECT_EQ(packets, 7u);
  dp->reset();
  EXPECT_EQ(filters("ingress").find("vigil_flow"), std::string::npos) << filters("ingress");
  EXPECT_EQ(filters("egress").find("vigil_flow"), std::string::npos) << filters("egress");
  // It created the clsact qdisc, so it removed it.
  auto qdisc = testing::runCommand({"tc", "qdisc", "show", "dev", veth().hostIf()}).out;
  EXPECT_EQ(qdisc.find("clsact"), std::string::npos) << qdisc;
}

// An agent on a kernel without tcx, SIGKILLed: its clsact filters stay (nothing closes
// them), and `vigil-agent --cleanup` removes them. Legacy mode is forced with --flow-tc-mode.
TEST_F(FlowTest, CleanupRemovesTheFiltersOfAKilledAgent) {
  auto bpffs = testing::PrivateBpffs::create();
  const std::string pins = bpffs->path() + "/vigil";
  char tmpl[] = "/tmp/vigil-flow-killed-XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  const std::string dir = tmpl;
  struct RemoveDir {
    std::string dir;
    ~RemoveDir() { std::filesystem::remove_all(dir); }
  } removeDir{dir};
  const std::vector<std::string> args = {VIGIL_AGENT_BIN,
                                         "--api",
                                         "unix://" + dir + "/killed.sock",
                                         "--policy-dir",
                                         dir + "/policies",
                                         "--pin-dir",
                                         pins,
                                         "--flow-tc-mode",
                                         "tc",
                                         "--flow-interfaces",
                                         veth().hostIf(),
                                         "--log-level",
                                         "warn"};
  std::vector<char*> argv;
  for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  pid_t pid = fork();
  if (pid == 0) {
    execv(argv[0], argv.data());
    _exit(127);
  }
  ASSERT_GT(pid, 0);
  auto filters = [&] {
    return testing::runCommand({"tc", "filter", "show", "dev", veth().hostIf(), "ingress"}).out +
           testing::runCommand({"tc", "filter", "show", "dev", veth().hostIf(), "egress"}).out;
  };
  auto count = [&] {
    std::string out = filters();
    size_t n = 0;
    for (size_t at = out.find("vigil_flow_"); at != std::string::npos;
         at = out.find("vigil_flow_", at + 1))
      n++;
    return n;
  };
  // "name vigil_flow_ingr" and "vigil_flow_ingr:[id]": two mentions per filter.
  bool attached = testing::waitUntil([&] { return count() == 4; }, 10s, 50ms);
  kill(pid, SIGKILL);
  waitpid(pid, nullptr, 0);
  ASSERT_TRUE(attached) << filters();
  EXPECT_EQ(count(), 4u) << "the filters went with the agent: " << filters();
  auto cleanup = testing::runCommand({VIGIL_AGENT_BIN, "--cleanup", "--pin-dir", pins});
  EXPECT_EQ(cleanup.status, 0) << cleanup.err;
  EXPECT_NE(cleanup.err.find("removed 2 flow tc filter"), std::string::npos) << cleanup.err;
  EXPECT_EQ(cleanup.err.find("libbpf"), std::string::npos) << cleanup.err;
  EXPECT_EQ(count(), 0u) << filters();
}

// An agent with the default interface set: every interface but loopback, following new ones.
TEST(FlowDefaults, FollowsInterfacesAsTheyComeAndGo) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root";
  std::string error;
  auto env = testing::startTestAgent(
      "vigil-flowdef", [](server::AgentConfig& cfg) { cfg.policyPollMs = 100; }, &error);
  ASSERT_NE(env, nullptr) << error;
  auto attached = [&](const std::string& ifname) {
    const auto status = env->agent->status();
    for (const auto& i : status.flows().interfaces())
      if (i.name() == ifname) return true;
    return false;
  };
  EXPECT_FALSE(attached("lo"));
  auto pair = VethPair::create("flowdef");
  const std::string name = pair->hostIf();
  EXPECT_TRUE(testing::waitUntil([&] { return attached(name); }, 3s)) << name << " not attached";
  pair.reset();
  EXPECT_TRUE(testing::waitUntil([&] { return !attached(name); }, 3s)) << name << " still listed";
}

// A full table evicts the least recently used flows; the agent ends them as "evicted" and
// counts them.
TEST(FlowEviction, AFullTableEvictsAndCounts) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root";
  auto pair = VethPair::create("flowevict");
  std::string error;
  const std::string hostIf = pair->hostIf();
  auto env = testing::startTestAgent(
      "vigil-flowevict",
      [&](server::AgentConfig& cfg) {
        cfg.flowInterfaces = {hostIf};
        cfg.flowTableSize = 1024;
        cfg.flowScanIntervalMs = 100;
      },
      &error);
  ASSERT_NE(env, nullptr) << error;
  testing::RawSender sender(pair->nsName(), pair->peerIf());
  constexpr int kFlows = 4000;
  for (int i = 0; i < kFlows; i++)
    sender.send(testing::peerToHostV4(*pair).udp(static_cast<uint16_t>(20000 + i), 9).build());
  EXPECT_TRUE(testing::waitUntil(
      [&] { return env->agent->status().flows().table_evictions() >= kFlows - 1024; }, 5s))
      << "evictions " << env->agent->status().flows().table_evictions();
  auto status = env->agent->status().flows();
  EXPECT_LE(status.table_entries(), 1024u);
  EXPECT_EQ(status.table_capacity(), 1024u);
  v1::FlowFilter f;
  f.add_destination_port(9);
  int evicted = 0;
  for (const auto& flow : flowsOf(*env, f))
    if (flow.event_type() == v1::FLOW_END && flow.end_reason() == "evicted") evicted++;
  EXPECT_GE(evicted, kFlows - 1024 - 64);
}

}  // namespace
}  // namespace vigil
