// XDP drop records (bpf/abi/vigil/xdp.h) -> DropEvents: every field of an IPv4 and an IPv6
// record, each verdict and packet flag, names of rules and interfaces that are gone, and every
// way a record can fail the ABI checks.

#include "events/net_names.hpp"
#include "events/xdp_drops.hpp"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <vigil/xdp.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace vigil::events {
namespace {

// Realtime minus monotonic of the test clock: 2026-11-25T00:00:00Z at monotonic 0.
constexpr int64_t kClockOffsetNs = 1'795'564'800'000'000'000;
constexpr uint64_t kKtimeNs = 5'000'000'123;

// A well-formed record of a dropped IPv4 TCP packet; tests change what they need.
vigil_xdp_drop_record ipv4Record() {
  vigil_xdp_drop_record r{};
  r.hdr.type = VIGIL_REC_XDP_DROP;
  r.hdr.version = VIGIL_XDP_ABI_VERSION;
  r.hdr.size = sizeof r;
  r.hdr.ktime_ns = kKtimeNs;
  r.slot = 3;
  r.ifindex = 2;
  // ::ffff:203.0.113.9 -> ::ffff:10.0.0.1
  const uint8_t src[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 203, 0, 113, 9};
  const uint8_t dst[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, 0, 0, 1};
  std::memcpy(r.src, src, sizeof src);
  std::memcpy(r.dst, dst, sizeof dst);
  r.src_port = 40001;
  r.dst_port = 22;
  r.family = 4;
  r.proto = 6;
  r.verdict = VIGIL_XDP_V_DROPPED;
  r.pkt_flags = 0;
  r.pkt_len = 74;
  r.suppressed = 0;
  return r;
}

std::vector<uint8_t> bytesOf(const vigil_xdp_drop_record& r,
                             size_t size = sizeof(vigil_xdp_drop_record)) {
  std::vector<uint8_t> out(size, 0);
  std::memcpy(out.data(), &r, std::min(size, sizeof r));
  return out;
}

void setIpv6(uint8_t (&field)[16], const char* text) {
  ASSERT_EQ(inet_pton(AF_INET6, text, field), 1) << text;
}

// Rule slots and interfaces the agent knows about.
struct Names {
  std::map<uint32_t, std::pair<std::string, std::string>> rules{{3, {"edge-filter", "no-ssh"}},
                                                                {8, {"edge-filter", "flood"}}};
  std::map<uint32_t, std::string> interfaces{{2, "eth0"}, {5, "veth1"}};

  XdpDropNames callbacks() const {
    return XdpDropNames{
        [this](uint32_t slot) -> std::optional<std::pair<std::string, std::string>> {
          auto it = rules.find(slot);
          if (it == rules.end()) return std::nullopt;
          return it->second;
        },
        [this](uint32_t ifindex) -> std::string {
          auto it = interfaces.find(ifindex);
          return it == interfaces.end() ? std::string() : it->second;
        }};
  }
};

Expected<v1::Event> decode(const std::vector<uint8_t>& raw, const Names& names = Names{}) {
  return decodeXdpDrop(raw, names.callbacks(), Clock(kClockOffsetNs), "node-7");
}

// Asserts that decoding failed with EBADMSG and an error that contains `substring`.
void expectRejected(const std::vector<uint8_t>& raw, const std::string& substring) {
  auto ev = decode(raw);
  ASSERT_FALSE(ev.ok()) << "accepted: " << ev->DebugString();
  EXPECT_EQ(ev.error().code(), EBADMSG);
  EXPECT_NE(ev.error().context().find(substring), std::string::npos) << ev.error().context();
}

TEST(XdpDrops, Ipv4RecordWithEveryField) {
  auto ev = decode(bytesOf(ipv4Record()));
  ASSERT_TRUE(ev.ok()) << ev.error().message();
  EXPECT_EQ(ev->type(), v1::EVENT_TYPE_DROP);
  EXPECT_EQ(ev->node_name(), "node-7");
  EXPECT_EQ(ev->time().seconds(), 1'795'564'805);
  EXPECT_EQ(ev->time().nanos(), 123);
  EXPECT_EQ(ev->ancestors_size(), 0);
  ASSERT_TRUE(ev->has_drop());
  const v1::DropEvent& d = ev->drop();
  EXPECT_EQ(d.policy(), "edge-filter");
  EXPECT_EQ(d.rule(), "no-ssh");
  EXPECT_EQ(d.verdict(), "dropped");
  EXPECT_EQ(d.interface(), "eth0");
  EXPECT_EQ(d.ifindex(), 2u);
  EXPECT_EQ(d.protocol(), "tcp");
  EXPECT_EQ(d.source_ip(), "203.0.113.9");
  EXPECT_EQ(d.destination_ip(), "10.0.0.1");
  EXPECT_EQ(d.source_port(), 40001u);
  EXPECT_EQ(d.destination_port(), 22u);
  EXPECT_EQ(d.length(), 74u);
  EXPECT_FALSE(d.fragment());
  EXPECT_FALSE(d.l4_missing());
  EXPECT_FALSE(d.vlan());
  EXPECT_EQ(d.suppressed(), 0u);
}

TEST(XdpDrops, Ipv6RecordWithEveryField) {
  vigil_xdp_drop_record r = ipv4Record();
  r.hdr.ktime_ns = 7'999'999'999;
  r.slot = 8;
  r.ifindex = 5;
  r.family = 6;
  setIpv6(r.src, "2001:db8::1");
  setIpv6(r.dst, "2001:db8:ffff::2");
  r.src_port = 0;
  r.dst_port = 0;
  r.proto = 17;
  r.verdict = VIGIL_XDP_V_RATE_AUDIT;
  r.pkt_flags = VIGIL_XDP_P_FRAGMENT | VIGIL_XDP_P_NO_L4 | VIGIL_XDP_P_VLAN;
  r.pkt_len = 1514;
  r.suppressed = 4'000'000'000u;
  auto ev = decode(bytesOf(r));
  ASSERT_TRUE(ev.ok()) << ev.error().message();
  EXPECT_EQ(ev->type(), v1::EVENT_TYPE_DROP);
  EXPECT_EQ(ev->node_name(), "node-7");
  EXPECT_EQ(ev->time().seconds(), 1'795'564'807);
  EXPECT_EQ(ev->time().nanos(), 999'999'999);
  const v1::DropEvent& d = ev->drop();
  EXPECT_EQ(d.policy(), "edge-filter");
  EXPECT_EQ(d.rule(), "flood");
  EXPECT_EQ(d.verdict(), "rate-limit-audit");
  EXPECT_EQ(d.interface(), "veth1");
  EXPECT_EQ(d.ifindex(), 5u);
  EXPECT_EQ(d.protocol(), "udp");
  EXPECT_EQ(d.source_ip(), "2001:db8::1");
  EXPECT_EQ(d.destination_ip(), "2001:db8:ffff::2");
  EXPECT_EQ(d.source_port(), 0u);
  EXPECT_EQ(d.destination_port(), 0u);
  EXPECT_EQ(d.length(), 1514u);
  EXPECT_TRUE(d.fragment());
  EXPECT_TRUE(d.l4_missing());
  EXPECT_TRUE(d.vlan());
  EXPECT_EQ(d.suppressed(), 4'000'000'000u);
}

TEST(XdpDrops, FamilyDecidesHowAddressesAreWritten) {
  // An IPv6 packet whose addresses happen to be IPv4-mapped stays IPv6 text.
  vigil_xdp_drop_record r = ipv4Record();
  r.family = 6;
  auto ev = decode(bytesOf(r));
  ASSERT_TRUE(ev.ok()) << ev.error().message();
  EXPECT_EQ(ev->drop().source_ip(), "::ffff:203.0.113.9");
  EXPECT_EQ(ev->drop().destination_ip(), "::ffff:10.0.0.1");
}

TEST(XdpDrops, EachVerdictAndPacketFlag) {
  const std::vector<std::pair<uint8_t, std::string>> verdicts = {
      {VIGIL_XDP_V_DROPPED, "dropped"},
      {VIGIL_XDP_V_AUDIT, "audit"},
      {VIGIL_XDP_V_RATE_DROPPED, "rate-limited"},
      {VIGIL_XDP_V_RATE_AUDIT, "rate-limit-audit"}};
  for (const auto& [verdict, name] : verdicts) {
    vigil_xdp_drop_record r = ipv4Record();
    r.verdict = verdict;
    auto ev = decode(bytesOf(r));
    ASSERT_TRUE(ev.ok()) << ev.error().message();
    EXPECT_EQ(ev->drop().verdict(), name);
  }
  struct Flag {
    uint8_t bit;
    bool fragment, l4Missing, vlan;
  };
  for (const Flag& f :
       {Flag{VIGIL_XDP_P_FRAGMENT, true, false, false}, Flag{VIGIL_XDP_P_NO_L4, false, true, false},
        Flag{VIGIL_XDP_P_VLAN, false, false, true},
        // Deep extension headers have no field of their own.
        Flag{VIGIL_XDP_P_EXT_TOO_DEEP, false, false, false}}) {
    vigil_xdp_drop_record r = ipv4Record();
    r.pkt_flags = f.bit;
    auto ev = decode(bytesOf(r));
    ASSERT_TRUE(ev.ok()) << ev.error().message();
    EXPECT_EQ(ev->drop().fragment(), f.fragment) << int(f.bit);
    EXPECT_EQ(ev->drop().l4_missing(), f.l4Missing) << int(f.bit);
    EXPECT_EQ(ev->drop().vlan(), f.vlan) << int(f.bit);
  }
}

TEST(XdpDrops, ProtocolNames) {
  EXPECT_EQ(protocolName(6), "tcp");
  EXPECT_EQ(protocolName(17), "udp");
  EXPECT_EQ(protocolName(1), "icmp");
  EXPECT_EQ(protocolName(58), "icmpv6");
  EXPECT_EQ(protocolName(47), "47");
  EXPECT_EQ(protocolName(0), "0");
  vigil_xdp_drop_record r = ipv4Record();
  r.proto = 132;
  auto ev = decode(bytesOf(r));
  ASSERT_TRUE(ev.ok()) << ev.error().message();
  EXPECT_EQ(ev->drop().protocol(), "132");
}

TEST(XdpDrops, SlotOfARemovedRuleIsNamedBySlot) {
  vigil_xdp_drop_record r = ipv4Record();
  r.slot = 9;
  auto ev = decode(bytesOf(r));
  ASSERT_TRUE(ev.ok()) << ev.error().message();
  EXPECT_EQ(ev->drop().policy(), "");
  EXPECT_EQ(ev->drop().rule(), "slot 9 (rule since removed)");

  // No callbacks at all: the same fallbacks.
  auto bare = decodeXdpDrop(bytesOf(ipv4Record()), XdpDropNames{}, Clock(0), "n");
  ASSERT_TRUE(bare.ok()) << bare.error().message();
  EXPECT_EQ(bare->drop().policy(), "");
  EXPECT_EQ(bare->drop().rule(), "slot 3 (rule since removed)");
  EXPECT_EQ(bare->drop().interface(), "if2");
  EXPECT_EQ(bare->drop().ifindex(), 2u);
}

TEST(XdpDrops, UnknownInterfaceIsNamedByIndex) {
  vigil_xdp_drop_record r = ipv4Record();
  r.ifindex = 77;
  auto ev = decode(bytesOf(r));
  ASSERT_TRUE(ev.ok()) << ev.error().message();
  EXPECT_EQ(ev->drop().interface(), "if77");
  EXPECT_EQ(ev->drop().ifindex(), 77u);
  EXPECT_EQ(ev->drop().rule(), "no-ssh");
}

TEST(XdpDrops, ShortRecordsAreRejected) {
  const vigil_xdp_drop_record r = ipv4Record();
  expectRejected({}, "0 bytes, expected 72");
  expectRejected(bytesOf(r, sizeof r - 1), "71 bytes, expected 72");
  expectRejected(bytesOf(r, sizeof r.hdr), "16 bytes, expected 72");
}

TEST(XdpDrops, LongRecordsAreRejected) {
  // The header says 72, the ring buffer gave more.
  expectRejected(bytesOf(ipv4Record(), sizeof(vigil_xdp_drop_record) + 1),
                 "size 72 in a 73-byte record");
  // The header says more than it holds.
  vigil_xdp_drop_record r = ipv4Record();
  r.hdr.size = sizeof r + 8;
  expectRejected(bytesOf(r, sizeof r + 8), "size 80 in a 80-byte record");
}

TEST(XdpDrops, WrongHeaderSizeIsRejected) {
  vigil_xdp_drop_record r = ipv4Record();
  r.hdr.size = sizeof r - 8;
  expectRejected(bytesOf(r), "size 64 in a 72-byte record");
  r.hdr.size = 0;
  expectRejected(bytesOf(r), "size 0 in a 72-byte record");
}

TEST(XdpDrops, WrongTypeIsRejected) {
  vigil_xdp_drop_record r = ipv4Record();
  r.hdr.type = VIGIL_REC_EXEC;
  expectRejected(bytesOf(r), "type 1");
}

TEST(XdpDrops, WrongVersionIsRejected) {
  vigil_xdp_drop_record r = ipv4Record();
  r.hdr.version = VIGIL_XDP_ABI_VERSION + 1;
  const std::string expected = ", expected " + std::to_string(VIGIL_XDP_ABI_VERSION);
  expectRejected(bytesOf(r), "ABI version " + std::to_string(VIGIL_XDP_ABI_VERSION + 1) + expected);
  r.hdr.version = 0;
  expectRejected(bytesOf(r), "ABI version 0" + expected);
}

TEST(XdpDrops, BadFamilyIsRejected) {
  for (uint8_t family : {0, 2, 10, 255}) {
    vigil_xdp_drop_record r = ipv4Record();
    r.family = family;
    expectRejected(bytesOf(r), "family " + std::to_string(family));
  }
}

TEST(XdpDrops, UnknownVerdictIsRejected) {
  for (uint8_t verdict : {0, 5, 255}) {
    vigil_xdp_drop_record r = ipv4Record();
    r.verdict = verdict;
    expectRejected(bytesOf(r), "verdict " + std::to_string(verdict));
  }
}

}  // namespace
}  // namespace vigil::events
