// Privileged tier: the XDP filter on a real veth, driven by an in-process agent. Traffic goes
// from a network namespace the test creates to the host end of its veth pair, where the
// agent's program is attached; nothing else on the host is touched. Counters, drop events and
// verdicts are checked against exactly what the test sent.
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <gtest/gtest.h>
#include <linux/bpf.h>
#include <linux/if_link.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <memory>
#include <sstream>

#include "bpf/xdp_datapath.hpp"
#include "events/filter.hpp"
#include "policy/document.hpp"
#include "policy/xdp_rules.hpp"
#include "server/agent.hpp"
#include "support/netns.hpp"
#include "support/traffic.hpp"
#include "test_agent.hpp"

namespace vigil {
namespace {
using namespace std::chrono_literals;
using testing::FrameBuilder;
using testing::FrameCounter;
using testing::RawSender;
using testing::UdpFlood;
using testing::UdpSink;
using testing::VethPair;

class XdpFilterTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (geteuid() != 0) return;
    pair_ = VethPair::create("xdpf").release();
    // Permanent neighbours both ways: a rule that drops the peer's address also drops its
    // ARP-less IPv6 neighbour discovery (ICMPv6 from that address), which would otherwise
    // stop the sender before a single datagram reaches XDP.
    const auto& v = *pair_;
    testing::ipCommand({"-n", v.nsName(), "neigh", "replace", v.hostV6(), "lladdr",
                        testing::macToString(v.hostMac()), "dev", v.peerIf(), "nud", "permanent"});
    testing::ipCommand({"-n", v.nsName(), "neigh", "replace", v.hostV4(), "lladdr",
                        testing::macToString(v.hostMac()), "dev", v.peerIf(), "nud", "permanent"});
    testing::ipCommand({"neigh", "replace", v.peerV6(), "lladdr", testing::macToString(v.peerMac()),
                        "dev", v.hostIf(), "nud", "permanent"});
    testing::ipCommand({"neigh", "replace", v.peerV4(), "lladdr", testing::macToString(v.peerMac()),
                        "dev", v.hostIf(), "nud", "permanent"});
    std::string error;
    env_ = testing::startTestAgent(
               "vigil-xdpf", [](server::AgentConfig& cfg) { cfg.policyPollMs = 100; }, &error)
               .release();
    ASSERT_NE(env_, nullptr) << error;
  }

  static void TearDownTestSuite() {
    delete env_;  // removes the pins: the veth has no XDP program left
    env_ = nullptr;
    delete pair_;
    pair_ = nullptr;
  }

  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "needs root to load BPF programs and create veths";
    ASSERT_NE(env_, nullptr);
    ASSERT_NE(pair_, nullptr);
  }

  void TearDown() override {
    if (env_ == nullptr) return;
    for (const auto& name : applied_) agent().policies().remove(name);
    applied_.clear();
  }

  static server::Agent& agent() { return *env_->agent; }
  static const VethPair& veth() { return *pair_; }

  // Applies one policy named `name` with these rules on the host end of the veth.
  void apply(const std::string& name, const std::string& rules) {
    std::string yaml = "apiVersion: vigil.dev/v1alpha1\nkind: Policy\nmetadata: {name: " + name +
                       "}\nspec:\n  xdp:\n    interfaces: [" + veth().hostIf() + "]\n    rules:\n" +
                       rules;
    auto outcome = agent().policies().applyText(yaml, name + ".yaml");
    ASSERT_TRUE(outcome.ok()) << outcome.error().message() << "\n" << yaml;
    applied_.push_back(name);
  }

  // Kernel counters of policy/rule, summed over CPUs.
  static api::XdpCounters counters(const std::string& policy, const std::string& rule) {
    auto all = agent().xdpCounters();
    for (const auto& info : agent().policies().list()) {
      if (info.name != policy) continue;
      auto slot = info.xdpRuleSlots.find(rule);
      if (slot == info.xdpRuleSlots.end()) break;
      if (auto c = all.find(slot->second); c != all.end()) return c->second;
    }
    ADD_FAILURE() << "no counters for " << policy << "/" << rule;
    return {};
  }

  static uint64_t stat(const std::string& name) {
    auto status = agent().status();
    for (const auto& s : status.xdp().stats())
      if (s.name() == name) return s.value();
    ADD_FAILURE() << "no XDP stat " << name;
    return 0;
  }

  // Drop events of a rule in the agent's history.
  static std::vector<v1::DropEvent> drops(const std::string& rule) {
    v1::GetEventsRequest req;
    req.add_types(v1::EVENT_TYPE_DROP);
    auto filter = events::EventFilter::fromRequest(req);
    std::vector<v1::DropEvent> out;
    for (const auto& ev : agent().hub().history(filter.value(), 100000)) {
      if (ev->has_drop() && ev->drop().rule() == rule) out.push_back(ev->drop());
    }
    return out;
  }

  static inline testing::TestAgent* env_ = nullptr;
  static inline VethPair* pair_ = nullptr;
  std::vector<std::string> applied_;
};

constexpr size_t kPayload = 64;
// Ethernet + IPv4 + UDP + payload, as XDP counts it.
constexpr uint64_t kUdp4Frame = 14 + 20 + 8 + kPayload;
constexpr uint64_t kUdp6Frame = 14 + 40 + 8 + kPayload;

TEST_F(XdpFilterTest, DropsByIpv4SourceCidrAndCountsExactly) {
  apply("cidr4",
        "      - name: deny-peer4\n        match: {sourceCIDRs: [" + veth().peerV4() + "/32]}\n");
  UdpSink sink(veth().hostV4());
  UdpSink sink6(veth().hostV6());
  UdpFlood flood(veth().nsName(), veth().hostV4(), sink.port());
  UdpFlood flood6(veth().nsName(), veth().hostV6(), sink6.port());
  auto r = flood.send(200, 2000, 1, kPayload);
  auto r6 = flood6.send(50, 2000, 2, kPayload);
  ASSERT_EQ(r.sent, 200u);
  ASSERT_TRUE(sink6.waitFor(50, 3s)) << "IPv6 from the same peer is not matched by an IPv4 rule";
  std::this_thread::sleep_for(200ms);
  EXPECT_EQ(sink.datagrams(), 0u);
  auto c = counters("cidr4", "deny-peer4");
  EXPECT_EQ(c.packets, 200u);
  EXPECT_EQ(c.bytes, 200u * kUdp4Frame);
}

TEST_F(XdpFilterTest, DropsByIpv6SourceCidr) {
  apply("cidr6", "      - name: deny-peer6\n        match: {sourceCIDRs: [\"" + veth().peerV6() +
                     "/128\"]}\n");
  UdpSink sink(veth().hostV4());
  UdpSink sink6(veth().hostV6());
  UdpFlood flood(veth().nsName(), veth().hostV4(), sink.port());
  UdpFlood flood6(veth().nsName(), veth().hostV6(), sink6.port());
  ASSERT_EQ(flood6.send(120, 2000, 3, kPayload).sent, 120u);
  flood.send(30, 2000, 4, kPayload);
  ASSERT_TRUE(sink.waitFor(30, 3s)) << "IPv4 traffic must pass";
  std::this_thread::sleep_for(200ms);
  EXPECT_EQ(sink6.datagrams(), 0u);
  auto c = counters("cidr6", "deny-peer6");
  EXPECT_EQ(c.packets, 120u);
  EXPECT_EQ(c.bytes, 120u * kUdp6Frame);
}

TEST_F(XdpFilterTest, DropsByDestinationPortAndLetsOtherPortsThrough) {
  UdpSink denied(veth().hostV4());
  UdpSink allowed(veth().hostV4());
  apply("ports", "      - name: deny-port\n        match: {protocol: udp, destinationPorts: [" +
                     std::to_string(denied.port()) + "]}\n");
  UdpFlood toDenied(veth().nsName(), veth().hostV4(), denied.port());
  UdpFlood toAllowed(veth().nsName(), veth().hostV4(), allowed.port());
  EXPECT_EQ(toDenied.send(300, 3000, 5, kPayload).sent, 300u);
  EXPECT_EQ(toAllowed.send(300, 3000, 6, kPayload).sent, 300u);
  ASSERT_TRUE(allowed.waitFor(300, 3s)) << allowed.datagrams();
  std::this_thread::sleep_for(200ms);
  EXPECT_EQ(denied.datagrams(), 0u);
  EXPECT_EQ(counters("ports", "deny-port").packets, 300u);
}

TEST_F(XdpFilterTest, DropsByProtocol) {
  testing::TcpListener listener(veth().hostV4());
  UdpSink sink(veth().hostV4());
  ASSERT_TRUE(testing::tcpProbe(veth().nsName(), veth().hostV4(), listener.port(), 2s).connected)
      << "TCP must work before the rule";
  apply("proto", "      - name: deny-tcp\n        match: {protocol: tcp}\n");
  auto probe = testing::tcpProbe(veth().nsName(), veth().hostV4(), listener.port(), 1s);
  EXPECT_FALSE(probe.connected);
  EXPECT_EQ(probe.error, ETIMEDOUT) << "a dropped SYN gets no answer at all";
  UdpFlood udp(veth().nsName(), veth().hostV4(), sink.port());
  udp.send(50, 2000, 7, kPayload);
  EXPECT_TRUE(sink.waitFor(50, 3s)) << "UDP must pass a TCP rule";
  EXPECT_GE(counters("proto", "deny-tcp").packets, 1u);  // the SYN and its retransmissions
}

TEST_F(XdpFilterTest, AuditRuleCountsAndReportsWithoutDropping) {
  UdpSink sink(veth().hostV4());
  apply("audit",
        "      - name: audit-port\n        mode: audit\n        match: {protocol: udp, "
        "destinationPorts: [" +
            std::to_string(sink.port()) + "]}\n");
  UdpFlood flood(veth().nsName(), veth().hostV4(), sink.port());
  flood.send(40, 1000, 8, kPayload);
  ASSERT_TRUE(sink.waitFor(40, 3s)) << sink.datagrams();
  auto c = counters("audit", "audit-port");
  EXPECT_EQ(c.packets, 40u);
  EXPECT_EQ(c.bytes, 40u * kUdp4Frame);
  ASSERT_TRUE(testing::waitUntil([&] { return drops("audit-port").size() == 40; }, 3s))
      << drops("audit-port").size();
  auto d = drops("audit-port").front();
  EXPECT_EQ(d.verdict(), "audit");
  EXPECT_EQ(d.policy(), "audit");
  EXPECT_EQ(d.interface(), veth().hostIf());
  EXPECT_EQ(d.protocol(), "udp");
  EXPECT_EQ(d.source_ip(), veth().peerV4());
  EXPECT_EQ(d.destination_ip(), veth().hostV4());
  EXPECT_EQ(d.source_port(), flood.localPort());
  EXPECT_EQ(d.destination_port(), sink.port());
  EXPECT_EQ(d.length(), kUdp4Frame);
}

TEST_F(XdpFilterTest, DropEventsAreSampledButEveryPacketIsCounted) {
  UdpSink sink(veth().hostV4());
  apply("sampled",
        "      - name: deny-sampled\n        match: {protocol: udp, "
        "destinationPorts: [" +
            std::to_string(sink.port()) + "]}\n");
  UdpFlood flood(veth().nsName(), veth().hostV4(), sink.port());
  // 3,000 packets in well under a second: more than the 100 records per second per rule.
  auto r = flood.send(3000, 0, 9, kPayload);
  ASSERT_EQ(r.sent, 3000u);
  ASSERT_TRUE(
      testing::waitUntil([&] { return counters("sampled", "deny-sampled").packets == 3000; }, 3s));
  std::this_thread::sleep_for(300ms);  // the agent drains the ring every 50 ms
  auto events = drops("deny-sampled");
  EXPECT_GE(events.size(), 1u);
  EXPECT_LE(events.size(), 200u) << "at most 100 per CPU-second budget, two windows at most";
  for (const auto& d : events) {
    EXPECT_EQ(d.verdict(), "dropped");
    EXPECT_EQ(d.destination_port(), sink.port());
  }
  EXPECT_EQ(sink.datagrams(), 0u);
}

TEST_F(XdpFilterTest, RateLimitHoldsUnderATenTimesFlood) {
  UdpSink sink(veth().hostV4());
  constexpr uint64_t kPps = 500, kBurst = 50;
  apply("rate", "      - name: limit-port\n        match: {protocol: udp, destinationPorts: [" +
                    std::to_string(sink.port()) + "]}\n        rateLimit: {packetsPerSecond: " +
                    std::to_string(kPps) + ", burst: " + std::to_string(kBurst) + "}\n");
  UdpFlood flood(veth().nsName(), veth().hostV4(), sink.port());
  auto r = flood.run(10 * kPps, 3s, 10, kPayload);
  std::this_thread::sleep_for(300ms);
  double seconds = std::chrono::duration<double>(r.last - r.first).count();
  double expected = kBurst + kPps * seconds;
  double got = static_cast<double>(sink.datagrams());
  RecordProperty("sent", std::to_string(r.sent));
  RecordProperty("received", std::to_string(sink.datagrams()));
  EXPECT_GT(r.achievedPps(), 8.0 * kPps) << "the flood must be about 10x the limit";
  EXPECT_NEAR(got, expected, 0.10 * expected)
      << "sent " << r.sent << " at " << r.achievedPps() << " pps over " << seconds << " s";
  EXPECT_EQ(sink.socketDrops(), 0u);
  auto c = counters("rate", "limit-port");
  EXPECT_EQ(c.packets, r.sent);
  EXPECT_EQ(c.limitedPackets, r.sent - sink.datagrams());
}

TEST_F(XdpFilterTest, RejectedXdpPolicyLeavesThePreviousRulesInForce) {
  UdpSink sink(veth().hostV4());
  apply("keep", "      - name: deny-keep\n        match: {protocol: udp, destinationPorts: [" +
                    std::to_string(sink.port()) + "]}\n");
  std::string bad =
      "apiVersion: vigil.dev/v1alpha1\nkind: Policy\nmetadata: {name: keep}\n"
      "spec:\n  xdp:\n    rules:\n      - name: deny-keep\n        match: "
      "{sourceCIDRs: [10.0.0.1/8]}\n";
  auto outcome = agent().policies().applyText(bad, "bad.yaml");
  ASSERT_FALSE(outcome.ok());
  EXPECT_NE(outcome.error().context().find("bad.yaml:8:"), std::string::npos)
      << outcome.error().context();
  EXPECT_NE(outcome.error().context().find("10.0.0.0/8"), std::string::npos)
      << outcome.error().context();
  std::string missing =
      "apiVersion: vigil.dev/v1alpha1\nkind: Policy\nmetadata: {name: keep}\n"
      "spec:\n  xdp:\n    interfaces: [vigil-nosuch0]\n    rules:\n      - "
      "name: deny-keep\n        match: {protocol: tcp}\n";
  outcome = agent().policies().applyText(missing, "missing.yaml");
  ASSERT_FALSE(outcome.ok());
  EXPECT_NE(outcome.error().context().find("missing.yaml:6:"), std::string::npos)
      << outcome.error().context();
  UdpFlood flood(veth().nsName(), veth().hostV4(), sink.port());
  flood.send(20, 1000, 11, kPayload);
  std::this_thread::sleep_for(300ms);
  EXPECT_EQ(sink.datagrams(), 0u) << "the previous rule must still drop";
  EXPECT_EQ(counters("keep", "deny-keep").packets, 20u);
}

// Crafted frames through a raw socket: what the parser does with each shape (see
// bpf/include/vigil_bpf/packet.bpf.h for the documented choices).
TEST_F(XdpFilterTest, CraftedFramesBehaveAsDocumented) {
  constexpr uint16_t kPort = 7777;
  apply("frames", "      - name: deny-7777\n        match: {protocol: udp, destinationPorts: [" +
                      std::to_string(kPort) + "]}\n");
  FrameCounter seen("", veth().hostIf());
  RawSender raw(veth().nsName(), veth().peerIf());
  uint64_t before = counters("frames", "deny-7777").packets;
  uint32_t tag = 100;
  struct Case {
    std::string what;
    testing::Frame frame;
    bool dropped;
  };
  auto v4 = [&] { return testing::peerToHostV4(veth()); };
  auto v6 = [&] { return testing::peerToHostV6(veth()); };
  std::vector<Case> cases;
  auto add = [&](std::string what, FrameBuilder b, bool dropped) {
    cases.push_back({std::move(what), b.marker(++tag, 0).build(), dropped});
  };
  add("plain IPv4 UDP", v4().udp(4000, kPort), true);
  add("plain IPv4 UDP to another port", v4().udp(4000, kPort + 1), false);
  add("802.1Q tag", v4().vlan(42).udp(4000, kPort), true);
  add("QinQ", v4().vlan(42).vlan(43).udp(4000, kPort), true);
  add("IPv4 options", v4().options({1, 1, 1, 1, 1, 1, 1, 0}).udp(4000, kPort), true);
  add("IPv4 first fragment", v4().fragment(0, true).udp(4000, kPort), true);
  add("IPv4 non-first fragment: no ports, a port rule cannot match",
      v4().fragment(100, false).udp(4000, kPort), false);
  add("IPv6 UDP", v6().udp(4000, kPort), true);
  add("IPv6 with hop-by-hop, routing and destination options",
      v6().hopByHop().routingHeader().destOptions().udp(4000, kPort), true);
  add("IPv6 first fragment", v6().fragmentHeader(0, true).udp(4000, kPort), true);
  add("IPv6 non-first fragment", v6().fragmentHeader(100, false).udp(4000, kPort), false);
  {
    FrameBuilder deep = v6();
    for (int i = 0; i < VIGIL_XDP_MAX_V6_EXT + 1; i++) deep.destOptions();
    add("IPv6 extension headers deeper than the walk: ports unknown", deep.udp(4000, kPort), false);
  }
  const uint64_t expectDropped =
      std::count_if(cases.begin(), cases.end(), [](const Case& c) { return c.dropped; });
  // Truncated frames: the IPv4 header cut short, and a UDP header cut to 2 bytes.
  testing::Frame full = v4().udp(4000, kPort).marker(999, 0).build();
  testing::Frame cutIp = testing::truncate(full, 14 + 10);
  testing::Frame cutUdp = testing::truncate(full, 14 + 20 + 2);

  uint64_t malformed = stat("xdp_malformed"), noL4 = stat("xdp_l4_missing"),
           frags = stat("xdp_fragments"), deep = stat("xdp_ipv6_ext_too_deep");
  for (const auto& c : cases) raw.send(c.frame);
  raw.send(cutIp);
  raw.send(cutUdp);
  // A last frame that passes: once it is seen, everything sent before it has been through XDP.
  testing::Frame last = v4().udp(4000, kPort + 2).marker(9999, 0).build();
  raw.send(last);
  ASSERT_TRUE(seen.waitFor(9999, 1, 3s));
  for (size_t i = 0; i < cases.size(); i++) {
    EXPECT_EQ(seen.countExact(cases[i].frame), cases[i].dropped ? 0u : 1u) << cases[i].what;
  }
  EXPECT_EQ(seen.countExact(cutIp), 1u) << "a cut IP header passes to the stack";
  EXPECT_EQ(seen.countExact(cutUdp), 1u) << "cut ports: a port rule cannot match";
  EXPECT_EQ(counters("frames", "deny-7777").packets - before, expectDropped);
  EXPECT_EQ(stat("xdp_malformed") - malformed, 1u);
  EXPECT_EQ(stat("xdp_l4_missing") - noL4, 1u);
  EXPECT_EQ(stat("xdp_fragments") - frags, 2u);
  EXPECT_EQ(stat("xdp_ipv6_ext_too_deep") - deep, 1u);
}

TEST_F(XdpFilterTest, AddressRulesStillMatchFragmentsAndTruncatedL4) {
  apply("addr", "      - name: deny-peer\n        match: {sourceCIDRs: [" + veth().peerV4() +
                    "/32, \"" + veth().peerV6() + "/128\"]}\n");
  FrameCounter seen("", veth().hostIf());
  RawSender raw(veth().nsName(), veth().peerIf());
  auto v4 = [&] { return testing::peerToHostV4(veth()); };
  auto v6 = [&] { return testing::peerToHostV6(veth()); };
  std::vector<testing::Frame> frames = {
      v4().fragment(100, false).udp(1, 2).marker(300, 0).build(),
      v6().fragmentHeader(100, false).udp(1, 2).marker(301, 0).build(),
      testing::truncate(v4().udp(1, 2).marker(302, 0).build(), 14 + 20 + 2),
  };
  for (const auto& f : frames) raw.send(f);
  // Something that passes, from another address the rule does not name, as an end marker.
  testing::Frame last = FrameBuilder()
                            .eth(veth().hostMac(), veth().peerMac())
                            .ipv4("10.255.255.1", veth().hostV4())
                            .udp(1, 2)
                            .marker(303, 0)
                            .build();
  raw.send(last);
  ASSERT_TRUE(seen.waitFor(303, 1, 3s));
  for (const auto& f : frames) EXPECT_EQ(seen.countExact(f), 0u);
  EXPECT_EQ(counters("addr", "deny-peer").packets, frames.size());
}

TEST_F(XdpFilterTest, FallsBackToGenericModeWhereTheDriverHasNoNativeXdp) {
  // A bridge device has no XDP support in its driver (nothing is enslaved to it).
  // Bridges of crashed runs (their pid is gone) first.
  auto links = testing::runCommand({"ip", "-o", "link", "show", "type", "bridge"});
  std::istringstream lines(links.out);
  for (std::string line; std::getline(lines, line);) {
    auto start = line.find(": vgb");
    if (start == std::string::npos) continue;
    std::string name = line.substr(start + 2, line.find(':', start + 2) - start - 2);
    if (!std::filesystem::exists("/proc/" + name.substr(3)))
      testing::runCommand({"ip", "link", "del", name});
  }
  const std::string bridge = "vgb" + std::to_string(getpid());
  ASSERT_EQ(testing::runCommand({"ip", "link", "add", bridge, "type", "bridge"}).status, 0);
  struct Remove {
    std::string name;
    ~Remove() { testing::runCommand({"ip", "link", "del", name}); }
  } remove{bridge};
  std::string yaml =
      "apiVersion: vigil.dev/v1alpha1\nkind: Policy\nmetadata: {name: generic}\n"
      "spec:\n  xdp:\n    interfaces: [" +
      bridge + "]\n    rules:\n      - name: deny-udp\n        match: {protocol: udp}\n";
  auto outcome = agent().policies().applyText(yaml, "generic.yaml");
  ASSERT_TRUE(outcome.ok()) << outcome.error().message();
  applied_.push_back("generic");
  bool found = false;
  const auto status = agent().status();
  for (const auto& i : status.xdp().interfaces()) {
    if (i.name() != bridge) continue;
    found = true;
    EXPECT_EQ(i.mode(), "generic");
  }
  EXPECT_TRUE(found);
}

// A tiny XDP program attached by "someone else".
int loadForeignXdp() {
  struct bpf_insn insns[] = {
      {BPF_ALU64 | BPF_MOV | BPF_K, BPF_REG_0, 0, 0, XDP_PASS},
      {BPF_JMP | BPF_EXIT, 0, 0, 0, 0},
  };
  LIBBPF_OPTS(bpf_prog_load_opts, opts);
  return bpf_prog_load(BPF_PROG_TYPE_XDP, "other_xdp", "GPL", insns, 2, &opts);
}

TEST_F(XdpFilterTest, RefusesAnotherProgramsAttachmentUnlessForced) {
  auto other = VethPair::create("xdpo");
  int prog = loadForeignXdp();
  ASSERT_GE(prog, 0) << strerror(errno);
  ASSERT_EQ(bpf_xdp_attach(other->hostIfindex(), prog, XDP_FLAGS_SKB_MODE, nullptr), 0);

  std::string yaml =
      "apiVersion: vigil.dev/v1alpha1\nkind: Policy\nmetadata: {name: conflict}\n"
      "spec:\n  xdp:\n    interfaces: [" +
      other->hostIf() + "]\n    rules:\n      - name: deny-any\n        match: {protocol: udp}\n";
  auto parsed = policy::parsePolicies(yaml, "conflict.yaml");
  ASSERT_TRUE(parsed.ok()) << parsed.errorText();
  policy::SlotTable slots(VIGIL_XDP_MAX_RULES);
  std::vector<const policy::Policy*> ps = {&parsed.policies[0]};
  auto compiled = policy::compileXdpRules(ps, slots, policy::hostXdpResolver());
  ASSERT_TRUE(compiled.errors.empty());

  // Through the agent: the apply fails, names the program, and nothing changes.
  auto outcome = agent().policies().applyText(yaml, "conflict.yaml");
  ASSERT_FALSE(outcome.ok());
  EXPECT_NE(outcome.error().message().find("\"other_xdp\""), std::string::npos)
      << outcome.error().message();
  EXPECT_NE(outcome.error().message().find("--force"), std::string::npos);
  LIBBPF_OPTS(bpf_xdp_query_opts, q);
  ASSERT_EQ(bpf_xdp_query(other->hostIfindex(), 0, &q), 0);
  bpf_prog_info info{};
  uint32_t len = sizeof info;
  ASSERT_EQ(bpf_obj_get_info_by_fd(prog, &info, &len), 0);
  EXPECT_EQ(q.prog_id, info.id) << "the other program must stay attached";

  // With force (a data path of its own, nothing pinned): replaced.
  {
    auto dp = bpf::XdpDataPath::open({.pinDir = "", .force = true});
    ASSERT_TRUE(dp.ok()) << dp.error().message();
    auto s = (*dp)->apply(compiled.rules, {});
    ASSERT_TRUE(s.ok()) << s.error().message();
    ASSERT_EQ(bpf_xdp_query(other->hostIfindex(), 0, &q), 0);
    EXPECT_EQ(q.prog_id, (*dp)->programId());
    (*dp)->removeAll();
  }
  ASSERT_EQ(bpf_xdp_query(other->hostIfindex(), 0, &q), 0);
  EXPECT_EQ(q.prog_id, 0u) << "removeAll detaches";
  close(prog);
}

}  // namespace
}  // namespace vigil
