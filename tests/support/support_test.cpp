// Checks the network test support library on the running kernel: namespaces and veth pairs come
// and go without leftovers, crafted frames are well formed (the kernel's own checks accept them)
// and reach the host end's tap, and the UDP/TCP helpers work in both families. Everything runs
// over veth pairs into namespaces this test creates; no frame leaves through a real interface.
// Timing is reported, never asserted.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <sstream>

#include "support/frames.hpp"
#include "support/netns.hpp"
#include "support/traffic.hpp"

namespace vigil::testing {
namespace {
namespace fs = std::filesystem;
using namespace std::chrono_literals;

constexpr auto kArrival = 2000ms;  // generous: a loaded CI host may be slow to deliver

void info(const std::string& line) { std::cout << "[   INFO   ] " << line << std::endl; }

std::vector<std::string> netnsNames() {
  std::vector<std::string> names;
  std::istringstream in(ipCommand({"netns", "list"}));
  for (std::string line; std::getline(in, line);) {
    if (!line.empty()) names.push_back(line.substr(0, line.find(' ')));
  }
  return names;
}

bool netnsListed(const std::string& name) {
  const auto names = netnsNames();
  return std::find(names.begin(), names.end(), name) != names.end();
}

bool linkHere(const std::string& ifname) { return fs::exists("/sys/class/net/" + ifname); }

// ---- Frame layout: pure, needs no privileges ----

TEST(FrameBuilderTest, Ipv4UdpLengthsAndChecksums) {
  const Mac dst = parseMac("02:00:00:00:00:02");
  const Mac src = parseMac("02:00:00:00:00:01");
  const Frame f = FrameBuilder()
                      .eth(dst, src)
                      .ipv4("10.1.2.3", "10.4.5.6")
                      .udp(1111, 2222)
                      .marker(9, 4, 32)
                      .build();
  ASSERT_EQ(f.size(), 14u + 20 + 8 + 32);
  EXPECT_EQ(Mac(std::to_array({f[0], f[1], f[2], f[3], f[4], f[5]})), dst);
  EXPECT_EQ(f[12], 0x08);
  EXPECT_EQ(f[13], 0x00);
  EXPECT_EQ(f[14], 0x45);
  EXPECT_EQ((f[16] << 8) | f[17], 20 + 8 + 32);                  // total length
  EXPECT_EQ(internetChecksum(std::span(f).subspan(14, 20)), 0);  // header checksum verifies
  EXPECT_EQ((f[38] << 8) | f[39], 8 + 32);                       // UDP length
  EXPECT_EQ(findMarker(f), (Marker{9, 4}));
  EXPECT_EQ(macToString(src), "02:00:00:00:00:01");
}

TEST(FrameBuilderTest, VlanTags) {
  const Frame one = FrameBuilder().vlan(100).ipv4("10.0.0.1", "10.0.0.2").build();
  EXPECT_EQ((one[12] << 8) | one[13], kEthVlan);
  EXPECT_EQ(((one[14] << 8) | one[15]) & 0xfff, 100);
  EXPECT_EQ((one[16] << 8) | one[17], kEthIpv4);

  const Frame two = FrameBuilder().vlan(100).vlan(200, 5).ipv4("10.0.0.1", "10.0.0.2").build();
  EXPECT_EQ((two[12] << 8) | two[13], kEthQinq);
  EXPECT_EQ((two[16] << 8) | two[17], kEthVlan);
  EXPECT_EQ((two[18] << 8) | two[19], (5 << 13) | 200);
  EXPECT_EQ((two[20] << 8) | two[21], kEthIpv4);
}

TEST(FrameBuilderTest, Ipv4OptionsAndFragments) {
  const Frame f = FrameBuilder()
                      .ipv4("10.0.0.1", "10.0.0.2")
                      .options({1, 1, 1})  // three NOPs, padded to 4
                      .fragment(185, true)
                      .ipId(77)
                      .udp(1, 2)
                      .build();
  EXPECT_EQ(f[14], 0x46);
  EXPECT_EQ((f[18] << 8) | f[19], 77);
  EXPECT_EQ((f[20] << 8) | f[21], 0x2000 | 185);
  EXPECT_EQ(internetChecksum(std::span(f).subspan(14, 24)), 0);
  EXPECT_THROW(FrameBuilder().options(std::vector<uint8_t>(41, 1)), std::invalid_argument);
}

TEST(FrameBuilderTest, Ipv6ExtensionChain) {
  const Frame f = FrameBuilder()
                      .ipv6("fd00::1", "fd00::2")
                      .hopByHop(8)
                      .destOptions(24)
                      .routingHeader(16)
                      .fragmentHeader(3, true, 0xabcd)
                      .udp(1, 2)
                      .marker(1, 2)
                      .build();
  const size_t ip = 14;
  ASSERT_EQ(f.size(), ip + 40 + 8 + 24 + 16 + 8 + 8 + kMarkerSize);
  EXPECT_EQ((f[ip + 4] << 8) | f[ip + 5], 8 + 24 + 16 + 8 + 8 + kMarkerSize);
  EXPECT_EQ(f[ip + 6], kProtoHopByHop);
  size_t at = ip + 40;
  EXPECT_EQ(f[at], kProtoDestOptions);
  EXPECT_EQ(f[at + 1], 0);
  at += 8;
  EXPECT_EQ(f[at], kProtoRouting);
  EXPECT_EQ(f[at + 1], 2);
  at += 24;
  EXPECT_EQ(f[at], kProtoFragment);
  EXPECT_EQ(f[at + 1], 1);
  at += 16;
  EXPECT_EQ(f[at], kProtoUdp);
  EXPECT_EQ((f[at + 2] << 8) | f[at + 3], (3 << 3) | 1);
  EXPECT_THROW(FrameBuilder().hopByHop(12), std::invalid_argument);
}

TEST(FrameBuilderTest, TruncateAndMarkerSearch) {
  const Frame f = FrameBuilder().ipv4("10.0.0.1", "10.0.0.2").udp(1, 2).marker(3, 4).build();
  EXPECT_EQ(truncate(f, 20).size(), 20u);
  EXPECT_EQ(truncate(f, 1000), f);
  EXPECT_FALSE(findMarker(truncate(f, f.size() - 1)));  // a cut marker is not a marker
  EXPECT_EQ(findMarker(f), (Marker{3, 4}));
}

// ---- Namespaces, links and traffic: need root ----

class NetTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "needs root to create network namespaces and veths";
  }
};

TEST_F(NetTest, CreateAndDestroyLeaveNothingBehind) {
  std::string ns;
  std::string host;
  std::string peer;
  {
    auto pair = VethPair::create("selftest");
    ns = pair->nsName();
    host = pair->hostIf();
    peer = pair->peerIf();
    info(ns + ": " + host + " " + pair->hostV4() + " " + pair->hostV6() + " " +
         macToString(pair->hostMac()) + " <-> " + peer + " " + pair->peerV4() + " " +
         pair->peerV6() + " " + macToString(pair->peerMac()));
    EXPECT_LE(host.size(), 15u);
    EXPECT_LE(peer.size(), 15u);
    EXPECT_TRUE(netnsListed(ns));
    EXPECT_TRUE(linkHere(host));
    EXPECT_FALSE(linkHere(peer)) << "the peer end belongs in the namespace";
    EXPECT_EQ(pair->peerIfindex(), ifindexIn(ns, peer));
    EXPECT_EQ(pair->hostIfindex(), ifindexIn("", host));
    EXPECT_NE(pair->hostMac(), pair->peerMac());

    const std::string peerAddrs = ipCommand({"-n", ns, "addr", "show", "dev", peer});
    EXPECT_NE(peerAddrs.find(pair->peerV4() + "/30"), std::string::npos) << peerAddrs;
    // nodad: the global address is usable at once (the link-local one still runs DAD).
    const size_t v6Line = peerAddrs.find(pair->peerV6() + "/64");
    ASSERT_NE(v6Line, std::string::npos) << peerAddrs;
    EXPECT_EQ(peerAddrs.substr(v6Line, peerAddrs.find('\n', v6Line) - v6Line).find("tentative"),
              std::string::npos)
        << peerAddrs;
    const std::string lo = ipCommand({"-n", ns, "link", "show", "dev", "lo"});
    EXPECT_NE(lo.find("UP"), std::string::npos) << lo;
  }
  EXPECT_FALSE(netnsListed(ns));
  EXPECT_FALSE(fs::exists("/run/netns/" + ns));
  EXPECT_FALSE(linkHere(host));
}

TEST_F(NetTest, PairsInOneProcessGetDistinctNamesAndAddresses) {
  auto a = VethPair::create("selftest");
  auto b = VethPair::create("selftest");
  EXPECT_NE(a->nsName(), b->nsName());
  EXPECT_NE(a->hostIf(), b->hostIf());
  EXPECT_NE(a->slot(), b->slot());
  EXPECT_NE(a->hostV4(), b->hostV4());
  EXPECT_NE(a->hostV6(), b->hostV6());
}

TEST_F(NetTest, RemoveStaleDeletesOnlyWhatDeadProcessesLeft) {
  // A pid that certainly belonged to a process that is gone now.
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) _exit(0);
  ASSERT_EQ(waitpid(child, nullptr, 0), child);
  const std::string id = std::to_string(child) + "-0";
  const std::string staleNs = "vigil-stale-" + id;
  const std::string staleLink = "vgh" + id;
  struct Cleanup {
    std::string ns, link;
    ~Cleanup() {
      runCommand({"ip", "link", "del", link});
      runCommand({"ip", "netns", "del", ns});
    }
  } cleanup{staleNs, staleLink};

  auto live = VethPair::create("selftest");
  ipCommand({"netns", "add", staleNs});
  // A crash between link creation and namespace setup would leave both ends here.
  ipCommand({"link", "add", staleLink, "type", "veth", "peer", "name", "vgp" + id});
  ASSERT_TRUE(netnsListed(staleNs));
  ASSERT_TRUE(linkHere(staleLink));

  VethPair::removeStale();
  EXPECT_FALSE(netnsListed(staleNs));
  EXPECT_FALSE(linkHere(staleLink));
  EXPECT_FALSE(linkHere("vgp" + id));
  EXPECT_TRUE(netnsListed(live->nsName())) << "a live process's namespace must stay";
  EXPECT_TRUE(linkHere(live->hostIf()));
}

TEST_F(NetTest, SocketInLivesInTheNamespace) {
  auto pair = VethPair::create("selftest");
  auto bindTo = [](int fd, const std::string& addr) {
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    inet_pton(AF_INET, addr.c_str(), &sa.sin_addr);
    const int rc = bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof(sa));
    const int err = errno;
    close(fd);
    return rc == 0 ? 0 : err;
  };
  EXPECT_EQ(bindTo(socketIn(pair->nsName(), AF_INET, SOCK_DGRAM, 0), pair->peerV4()), 0);
  EXPECT_EQ(bindTo(socketIn("", AF_INET, SOCK_DGRAM, 0), pair->peerV4()), EADDRNOTAVAIL);
  EXPECT_THROW(socketIn("vigil-no-such-ns", AF_INET, SOCK_DGRAM, 0), SupportError);
  bool ran = false;
  runIn(pair->nsName(), [&] { ran = ifindexIn("", "lo") == 1; });
  EXPECT_TRUE(ran);
}

class UdpFamilyTest : public NetTest, public ::testing::WithParamInterface<bool> {};

TEST_P(UdpFamilyTest, DatagramsFromTheNamespaceReachTheHostSink) {
  const bool v6 = GetParam();
  auto pair = VethPair::create("selftest");
  const std::string host = v6 ? pair->hostV6() : pair->hostV4();
  UdpSink sink(host);
  UdpFlood flood(pair->nsName(), host, sink.port());
  const FloodResult r = flood.send(20, 0, 42, 100);
  EXPECT_EQ(r.sent, 20u);
  EXPECT_EQ(r.failed, 0u) << std::strerror(r.lastError);
  EXPECT_TRUE(sink.waitFor(20, kArrival)) << sink.datagrams() << " " << sink.error();
  EXPECT_EQ(sink.count(42), 20u);
  EXPECT_EQ(sink.bytes(), 20u * 100);
}

INSTANTIATE_TEST_SUITE_P(Families, UdpFamilyTest, ::testing::Values(false, true),
                         [](const auto& info) { return info.param ? "Ipv6" : "Ipv4"; });

// Every kind of crafted frame arrives at the host end's tap byte for byte.
TEST_F(NetTest, CraftedFramesOfEveryKindReachTheHostTap) {
  auto pair = VethPair::create("selftest");
  FrameCounter counter("", pair->hostIf());
  RawSender sender(pair->nsName(), pair->peerIf());

  const Frame udp4 = peerToHostV4(*pair).udp(5000, 6000).marker(1, 0, 32).build();
  struct Case {
    std::string name;
    uint32_t tag;
    Frame frame;
  };
  std::vector<Case> cases = {
      {"plain UDP/IPv4", 1, udp4},
      {"802.1Q", 2, peerToHostV4(*pair).vlan(100).udp(5000, 6000).marker(2, 0).build()},
      {"QinQ", 3, peerToHostV4(*pair).vlan(100).vlan(200).udp(5000, 6000).marker(3, 0).build()},
      {"IPv4 options", 4,
       peerToHostV4(*pair).options({0x94, 0x04, 0, 0, 1}).udp(5000, 6000).marker(4, 0).build()},
      {"IPv4 first fragment", 5,
       peerToHostV4(*pair).fragment(0, true).ipId(9).udp(5000, 6000).marker(5, 0, 64).build()},
      {"IPv4 later fragment", 6,
       peerToHostV4(*pair).fragment(9, false).ipId(9).protocol(kProtoUdp).marker(6, 0).build()},
      {"IPv6 extension chain", 7,
       peerToHostV6(*pair)
           .hopByHop(8)
           .destOptions(16)
           .routingHeader(24)
           .fragmentHeader(0, true, 11)
           .destOptions(8)
           .udp(5000, 6000)
           .marker(7, 0)
           .build()},
      {"TCP SYN", 8, peerToHostV4(*pair).tcp(5000, 6000, kTcpSyn).marker(8, 0).build()},
      {"ICMP echo", 9, peerToHostV4(*pair).icmpEcho(1, 1).marker(9, 0).build()},
      {"ICMPv6 echo", 10, peerToHostV6(*pair).icmpEcho(1, 1).marker(10, 0).build()},
      {"truncated after the marker", 11,
       truncate(peerToHostV4(*pair).udp(5000, 6000).marker(11, 0, 64).build(), 14 + 20 + 8 + 20)},
      {"L2 only", 12,
       FrameBuilder()
           .eth(pair->hostMac(), pair->peerMac())
           .etherType(0x88b5)
           .marker(12, 0)
           .build()},
  };
  for (const Case& c : cases) {
    sender.send(c.frame);
    EXPECT_TRUE(counter.waitFor(c.tag, 1, kArrival)) << c.name << " " << counter.error();
    EXPECT_EQ(counter.count(c.tag), 1u) << c.name;
    EXPECT_EQ(counter.countExact(c.frame), 1u) << c.name << ": not byte-identical";
  }

  // Truncated inside the headers: no marker left, recognised by its bytes.
  for (size_t len : {14, 20, 14 + 19, 14 + 20 + 4}) {
    const Frame cut = truncate(udp4, len);
    sender.send(cut);
    EXPECT_TRUE(waitUntil([&] { return counter.countExact(cut) == 1; }, kArrival))
        << len << "-byte frame";
  }
  EXPECT_THROW(sender.send(truncate(udp4, 13)), SupportError) << "shorter than Ethernet";
  EXPECT_EQ(counter.socketDrops(), 0u);
  info("host tap saw " + std::to_string(counter.total()) + " frames, " +
       std::to_string(counter.marked()) + " marked");
}

// The kernel's own checks accept the crafted headers: UDP datagrams reach a socket, ICMP echoes
// are answered, a TCP SYN gets a SYN-ACK.
TEST_F(NetTest, CraftedFramesPassTheKernelsChecks) {
  auto pair = VethPair::create("selftest");
  UdpSink sink4(pair->hostV4());
  UdpSink sink6(pair->hostV6());
  TcpListener listener(pair->hostV4());
  FrameCounter peerTap(pair->nsName(), pair->peerIf());  // sees the host's answers
  RawSender sender(pair->nsName(), pair->peerIf());

  const uint16_t p4 = sink4.port();
  const uint16_t p6 = sink6.port();
  sender.send(peerToHostV4(*pair).udp(40000, p4).marker(1, 0, 100).build());
  sender.send(peerToHostV4(*pair).vlan(0).udp(40000, p4).marker(1, 1, 7).build());
  sender.send(peerToHostV4(*pair).options({1, 1, 1, 1, 1}).udp(40000, p4).marker(1, 2).build());
  sender.send(peerToHostV6(*pair).udp(40000, p6).marker(2, 0, 33).build());
  sender.send(peerToHostV6(*pair)
                  .hopByHop(64)
                  .destOptions(512)
                  .routingHeader(16)
                  .udp(40000, p6)
                  .marker(2, 1)
                  .build());
  EXPECT_TRUE(sink4.waitFor(3, kArrival)) << sink4.datagrams() << " of 3 IPv4 datagrams";
  EXPECT_TRUE(sink6.waitFor(2, kArrival)) << sink6.datagrams() << " of 2 IPv6 datagrams";

  sender.send(peerToHostV4(*pair).icmpEcho(7, 1).marker(3, 0, 40).build());
  sender.send(peerToHostV6(*pair).icmpEcho(7, 1).marker(4, 0, 40).build());
  EXPECT_TRUE(peerTap.waitFor(3, 1, kArrival)) << "no ICMP echo reply";
  EXPECT_TRUE(peerTap.waitFor(4, 1, kArrival)) << "no ICMPv6 echo reply";

  sender.send(peerToHostV4(*pair).tcp(40001, listener.port(), kTcpSyn, 1000).build());
  auto synAck = [&] {
    for (const Frame& f : peerTap.recent()) {
      // Ethernet + 20-byte IPv4 + TCP from the listener's port with SYN|ACK acking 1001.
      if (f.size() < 54 || f[12] != 0x08 || f[13] != 0x00 || f[23] != kProtoTcp) continue;
      const uint8_t* tcp = &f[34];
      const uint32_t ack = uint32_t(tcp[8]) << 24 | tcp[9] << 16 | tcp[10] << 8 | tcp[11];
      if (((tcp[0] << 8) | tcp[1]) == listener.port() && tcp[13] == (kTcpSyn | kTcpAck) &&
          ack == 1001) {
        return true;
      }
    }
    return false;
  };
  EXPECT_TRUE(waitUntil(synAck, kArrival)) << "no SYN-ACK for the crafted SYN";
}

TEST_F(NetTest, SendManyPacesAndCounts) {
  auto pair = VethPair::create("selftest");
  FrameCounter counter("", pair->hostIf());
  RawSender sender(pair->nsName(), pair->peerIf());

  const Frame paced = peerToHostV4(*pair).udp(1, 2).marker(20, 0).build();
  const SendResult r = sender.sendMany(paced, 200, 2000);
  EXPECT_EQ(r.sent, 200u);
  EXPECT_EQ(r.error, 0);
  EXPECT_TRUE(counter.waitFor(20, 200, kArrival)) << counter.count(20) << " of 200";
  info("sendMany 200 at 2000 pps took " +
       std::to_string(std::chrono::duration<double, std::milli>(r.elapsed).count()) +
       " ms (ideal 99.5 ms)");

  const Frame burst = peerToHostV4(*pair).udp(1, 2).marker(21, 0).build();
  const SendResult b = sender.sendMany(burst, 5000, 0);
  EXPECT_EQ(b.sent, 5000u);
  waitUntil([&] { return counter.count(21) == 5000; }, kArrival);
  info("unpaced 5000: " + std::to_string(b.sent) + " sent in " +
       std::to_string(std::chrono::duration<double, std::milli>(b.elapsed).count()) + " ms, " +
       std::to_string(counter.count(21)) + " seen by the host tap, " +
       std::to_string(counter.socketDrops()) + " dropped by the tap socket");
}

TEST_F(NetTest, UdpFloodPacing) {
  auto pair = VethPair::create("selftest");
  UdpSink sink(pair->hostV4());
  UdpFlood flood(pair->nsName(), pair->hostV4(), sink.port());
  EXPECT_NE(flood.localPort(), 0);

  const FloodResult r = flood.run(2000, 500ms, 30, 200);
  EXPECT_EQ(r.requested, 1000u);
  EXPECT_EQ(r.sent, 1000u);
  EXPECT_EQ(r.failed, 0u) << std::strerror(r.lastError);
  EXPECT_TRUE(sink.waitFor(1000, kArrival)) << sink.datagrams() << " of 1000";
  const double spanMs = std::chrono::duration<double, std::milli>(r.last - r.first).count();
  info("flood 2000 pps x 500 ms: sent " + std::to_string(r.sent) + " over " +
       std::to_string(spanMs) + " ms (ideal 499.5), achieved " + std::to_string(r.achievedPps()) +
       " pps; sink got " + std::to_string(sink.count(30)) + ", socket drops " +
       std::to_string(sink.socketDrops()));

  const FloodResult u = flood.run(0, 100ms, 31, 64);
  EXPECT_GT(u.sent, 0u);
  info("unpaced flood for 100 ms: sent " + std::to_string(u.sent) + " (" +
       std::to_string(u.achievedPps()) + " pps), failed " + std::to_string(u.failed));
}

TEST_F(NetTest, TcpProbeSeesListenersAndRefusals) {
  auto pair = VethPair::create("selftest");
  for (const std::string& host : {pair->hostV4(), pair->hostV6()}) {
    TcpListener listener(host);
    const TcpProbeResult ok = tcpProbe(pair->nsName(), host, listener.port(), 1000ms);
    EXPECT_TRUE(ok.connected) << host << ": " << std::strerror(ok.error);
    EXPECT_TRUE(waitUntil([&] { return listener.accepted() == 1; }, kArrival)) << host;

    // Port 1 on the host end: nothing listens, the kernel answers with a RST.
    const TcpProbeResult refused = tcpProbe(pair->nsName(), host, 1, 1000ms);
    EXPECT_FALSE(refused.connected) << host;
    EXPECT_EQ(refused.error, ECONNREFUSED) << host << ": " << std::strerror(refused.error);
  }
}

}  // namespace
}  // namespace vigil::testing
