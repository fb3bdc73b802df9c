// Flow records and flow-table scans (bpf/abi/vigil/flow.h) -> flow events: new flows from
// either end, every way a record can fail the ABI checks, kernel drops and the netns rule, the
// end of TCP (fin, rst, idle) and other flows (idle), periodic updates, evictions, the owner
// join and its order, XDP drops seen as flows, and the names of TCP flags.

#include "events/flow_tracker.hpp"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <vigil/flow.h>
#include <vigil/records.h>

#include <algorithm>
#include <array>
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
constexpr uint64_t kSec = 1'000'000'000;
constexpr uint64_t kKtimeNs = 5'000'000'123;
constexpr uint32_t kAgentNetns = 4'026'531'840;
constexpr uint8_t kTcp = 6, kUdp = 17, kIcmp = 1, kIcmpv6 = 58;

using Addr = std::array<uint8_t, 16>;

Addr v4(uint8_t a, uint8_t b, uint8_t c, uint8_t d) {
  return {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, a, b, c, d};
}

Addr v6(const char* text) {
  Addr out{};
  EXPECT_EQ(inet_pton(AF_INET6, text, out.data()), 1) << text;
  return out;
}

const Addr kClient = v4(10, 0, 0, 1);  // the lower address: end "a" of kClient <-> kServer
const Addr kServer = v4(10, 0, 0, 2);
const Addr kZero{};

vigil_flow_key flowKey(const Addr& a, uint16_t aPort, const Addr& b, uint16_t bPort,
                       uint8_t proto = kTcp, uint32_t ifindex = 2) {
  vigil_flow_key k{};
  std::memcpy(k.a_addr, a.data(), 16);
  std::memcpy(k.b_addr, b.data(), 16);
  k.a_port = aPort;
  k.b_port = bPort;
  k.ifindex = ifindex;
  k.proto = proto;
  return k;
}

// 10.0.0.1:40000 <-> 10.0.0.2:443 over TCP on ifindex 2.
vigil_flow_key tcpKey() { return flowKey(kClient, 40000, kServer, 443); }

// A well-formed new-flow record: the client's SYN, leaving on eth0.
vigil_flow_new_record newRecord(const vigil_flow_key& key = tcpKey(), uint64_t ktime = kKtimeNs) {
  vigil_flow_new_record r{};
  r.hdr.type = VIGIL_REC_FLOW_NEW;
  r.hdr.version = VIGIL_FLOW_ABI_VERSION;
  r.hdr.size = sizeof r;
  r.hdr.ktime_ns = ktime;
  r.key = key;
  r.origin = VIGIL_FLOW_AB;
  r.hook = VIGIL_FLOW_EGRESS;
  r.tcp_flags = VIGIL_TCP_SYN;
  r.first = {1, 60, 0};
  return r;
}

// A well-formed kernel drop: a TCP SYN from 203.0.113.9:40001 to 10.0.0.1:22 on eth0.
vigil_drop_record dropRecord() {
  vigil_drop_record r{};
  r.hdr.type = VIGIL_REC_KERNEL_DROP;
  r.hdr.version = VIGIL_FLOW_ABI_VERSION;
  r.hdr.size = sizeof r;
  r.hdr.ktime_ns = kKtimeNs;
  const Addr src = v4(203, 0, 113, 9), dst = v4(10, 0, 0, 1);
  std::memcpy(r.saddr, src.data(), 16);
  std::memcpy(r.daddr, dst.data(), 16);
  r.sport = 40001;
  r.dport = 22;
  r.ifindex = 2;
  r.reason = 2;
  r.len = 74;
  r.netns = kAgentNetns;
  r.proto = kTcp;
  r.flags = VIGIL_DROP_F_IP | VIGIL_DROP_F_PORTS | VIGIL_DROP_F_V4;
  r.tcp_flags = VIGIL_TCP_SYN;
  r.suppressed = 12;
  r.location = 0xffffffff81000000ull;
  return r;
}

template <typename Record>
std::vector<uint8_t> bytesOf(const Record& r, size_t size = sizeof(Record)) {
  std::vector<uint8_t> out(size, 0);
  std::memcpy(out.data(), &r, std::min(size, sizeof r));
  return out;
}

vigil_flow_value flowValue(uint64_t firstNs, uint64_t lastNs, uint8_t origin = VIGIL_FLOW_AB,
                           uint8_t hook = VIGIL_FLOW_EGRESS) {
  vigil_flow_value v{};
  v.first_ns = firstNs;
  v.last_ns = lastNs;
  v.origin = origin;
  v.hook = hook;
  return v;
}

using Entries = std::vector<vigil_flow_entry>;

std::string keyBytes(const vigil_sock_key& k) {
  return std::string(reinterpret_cast<const char*>(&k), sizeof k);
}

vigil_sock_key sockKey(const Addr& l, uint16_t lport, const Addr& r, uint16_t rport,
                       uint8_t proto) {
  vigil_sock_key k{};
  std::memcpy(k.laddr, l.data(), 16);
  std::memcpy(k.raddr, r.data(), 16);
  k.lport = lport;
  k.rport = rport;
  k.proto = proto;
  return k;
}

int64_t nsOf(const google::protobuf::Timestamp& t) {
  return t.seconds() * 1'000'000'000 + t.nanos();
}

int64_t wall(uint64_t monotonicNs) { return kClockOffsetNs + static_cast<int64_t>(monotonicNs); }

std::vector<std::string> names(const google::protobuf::RepeatedPtrField<std::string>& f) {
  return {f.begin(), f.end()};
}

void expectCounters(const v1::FlowCounters& c, uint64_t packets, uint64_t bytes, uint64_t payload) {
  EXPECT_EQ(c.packets(), packets);
  EXPECT_EQ(c.bytes(), bytes);
  EXPECT_EQ(c.payload_bytes(), payload);
}

class FlowTrackerTest : public ::testing::Test {
 protected:
  FlowTrackerTest() {
    options.nodeName = "node-7";
    options.netns = kAgentNetns;
    options.updateInterval = std::chrono::seconds(30);
    options.idleTimeout = std::chrono::seconds(60);
    options.tcpIdleTimeout = std::chrono::seconds(600);
    options.tcpLinger = std::chrono::seconds(1);
  }

  FlowContext context() {
    FlowContext c;
    c.owner = [this](const vigil_sock_key& k) -> std::optional<vigil_sock_owner> {
      ownerQueries.push_back(k);
      auto it = owners.find(keyBytes(k));
      if (it == owners.end()) return std::nullopt;
      return it->second;
    };
    c.interface = [this](uint32_t ifindex) -> std::string {
      interfaceQueries.push_back(ifindex);
      auto it = interfaces.find(ifindex);
      return it == interfaces.end() ? std::string() : it->second;
    };
    c.dropReason = [this](uint32_t reason) -> std::string {
      auto it = reasons.find(reason);
      return it == reasons.end() ? std::string() : it->second;
    };
    c.describe = [this](v1::FlowEndpoint* e) {
      described.push_back(e->pid());
      if (auto it = binaries.find(e->pid()); it != binaries.end()) {
        e->set_binary(it->second);
        e->set_exec_id("exec-" + std::to_string(e->pid()));
      }
      if (auto it = cgroupPaths.find(e->cgroup_id()); it != cgroupPaths.end())
        e->set_cgroup_path(it->second);
      return !e->binary().empty() && !e->cgroup_path().empty();
    };
    return c;
  }

  FlowTracker tracker() { return FlowTracker(options, Clock(kClockOffsetNs), context()); }

  void addOwner(const vigil_sock_key& k, uint32_t pid, const char* comm = "curl",
                uint64_t cgroupId = 7001, uint32_t uid = 1000) {
    vigil_sock_owner o{};
    o.tgid = pid;
    o.tid = pid + 1;
    o.uid = uid;
    o.cgroup_id = cgroupId;
    o.ktime_ns = 1;
    std::memcpy(o.comm, comm, std::min<size_t>(std::strlen(comm), sizeof o.comm));
    owners[keyBytes(k)] = o;
  }

  // A record that must be accepted and must make an event.
  EventPtr accept(FlowTracker& t, const std::vector<uint8_t>& raw) {
    auto ev = t.onRecord(raw);
    EXPECT_TRUE(ev.ok()) << ev.error().message();
    if (!ev.ok()) return nullptr;
    EXPECT_NE(ev.value(), nullptr);
    return ev.value();
  }

  // A record that must be rejected with EBADMSG and an error that contains `substring`.
  void expectRejected(const std::vector<uint8_t>& raw, const std::string& substring) {
    FlowTracker t = tracker();
    auto ev = t.onRecord(raw);
    ASSERT_FALSE(ev.ok()) << "accepted: " << (ev.value() ? ev.value()->DebugString() : "null");
    EXPECT_EQ(ev.error().code(), EBADMSG);
    EXPECT_NE(ev.error().context().find(substring), std::string::npos)
        << "'" << ev.error().context() << "' lacks '" << substring << "'";
    EXPECT_EQ(t.tracked(), 0u);
  }

  FlowTrackerOptions options;
  std::map<std::string, vigil_sock_owner> owners;
  std::vector<vigil_sock_key> ownerQueries;
  std::map<uint32_t, std::string> interfaces{{2, "eth0"}, {5, "veth1"}, {7, "lxc42"}};
  std::vector<uint32_t> interfaceQueries;
  std::map<uint32_t, std::string> reasons{{2, "NO_SOCKET"}, {6, "NETFILTER_DROP"}};
  std::map<uint32_t, std::string> binaries;
  std::map<uint64_t, std::string> cgroupPaths;
  std::vector<uint32_t> described;  // the pid of each describe() call
};

// ---- new-flow records ------------------------------------------------------------------------

TEST_F(FlowTrackerTest, NewFlowRecordFromEndA) {
  FlowTracker t = tracker();
  EventPtr ev = accept(t, bytesOf(newRecord()));
  ASSERT_NE(ev, nullptr);
  EXPECT_EQ(ev->type(), v1::EVENT_TYPE_FLOW);
  EXPECT_EQ(ev->node_name(), "node-7");
  EXPECT_EQ(ev->time().seconds(), 1'795'564'805);
  EXPECT_EQ(ev->time().nanos(), 123);
  ASSERT_TRUE(ev->has_flow());
  const v1::Flow& f = ev->flow();
  EXPECT_EQ(f.event_type(), v1::FLOW_NEW);
  EXPECT_EQ(f.verdict(), v1::FORWARDED);
  EXPECT_EQ(f.protocol(), "tcp");
  EXPECT_EQ(f.source().ip(), "10.0.0.1");
  EXPECT_EQ(f.source().port(), 40000u);
  EXPECT_EQ(f.destination().ip(), "10.0.0.2");
  EXPECT_EQ(f.destination().port(), 443u);
  EXPECT_EQ(f.ifindex(), 2u);
  EXPECT_EQ(f.interface(), "eth0");
  EXPECT_EQ(f.direction(), "egress");
  EXPECT_EQ(names(f.tcp_flags()), (std::vector<std::string>{"SYN"}));
  EXPECT_TRUE(f.reply_tcp_flags().empty());
  expectCounters(f.sent(), 1, 60, 0);
  expectCounters(f.reply(), 0, 0, 0);
  EXPECT_EQ(nsOf(f.first_seen()), wall(kKtimeNs));
  EXPECT_EQ(nsOf(f.last_seen()), wall(kKtimeNs));
  EXPECT_EQ(f.end_reason(), "");
  EXPECT_EQ(f.drop_reason(), "");
  EXPECT_EQ(f.icmp_type(), 0u);
  EXPECT_EQ(f.icmp_code(), 0u);
  EXPECT_EQ(f.length(), 0u);
  EXPECT_EQ(f.suppressed(), 0u);
  EXPECT_EQ(f.source().pid(), 0u);
  EXPECT_EQ(f.destination().pid(), 0u);
  EXPECT_EQ(t.tracked(), 1u);
  EXPECT_EQ(t.evictions(), 0u);
}

TEST_F(FlowTrackerTest, NewFlowRecordFromEndBMakesBTheSource) {
  // The server (end b, the higher address) sent first: it is the source, and its flags and
  // counters are the ones "sent".
  vigil_flow_new_record r = newRecord();
  r.origin = VIGIL_FLOW_BA;
  r.hook = VIGIL_FLOW_INGRESS;
  r.tcp_flags = VIGIL_TCP_SYN | VIGIL_TCP_ACK;
  r.first = {2, 3000, 2900};
  FlowTracker t = tracker();
  EventPtr ev = accept(t, bytesOf(r));
  ASSERT_NE(ev, nullptr);
  const v1::Flow& f = ev->flow();
  EXPECT_EQ(f.source().ip(), "10.0.0.2");
  EXPECT_EQ(f.source().port(), 443u);
  EXPECT_EQ(f.destination().ip(), "10.0.0.1");
  EXPECT_EQ(f.destination().port(), 40000u);
  EXPECT_EQ(f.direction(), "ingress");
  EXPECT_EQ(names(f.tcp_flags()), (std::vector<std::string>{"SYN", "ACK"}));
  EXPECT_TRUE(f.reply_tcp_flags().empty());
  expectCounters(f.sent(), 2, 3000, 2900);
  expectCounters(f.reply(), 0, 0, 0);
}

TEST_F(FlowTrackerTest, InterfaceNameFallsBackToIndex) {
  FlowTracker t = tracker();
  EventPtr ev = accept(t, bytesOf(newRecord(flowKey(kClient, 40000, kServer, 443, kTcp, 9))));
  ASSERT_NE(ev, nullptr);
  EXPECT_EQ(ev->flow().interface(), "if9");
  EXPECT_EQ(ev->flow().ifindex(), 9u);
  EXPECT_EQ(interfaceQueries, (std::vector<uint32_t>{9}));

  // Without an interface callback at all.
  FlowContext bare;
  FlowTracker quiet(options, Clock(kClockOffsetNs), bare);
  auto ev2 = quiet.onRecord(bytesOf(newRecord()));
  ASSERT_TRUE(ev2.ok()) << ev2.error().message();
  ASSERT_NE(ev2.value(), nullptr);
  EXPECT_EQ(ev2.value()->flow().interface(), "if2");
  EXPECT_EQ(ev2.value()->flow().source().pid(), 0u);
}

TEST_F(FlowTrackerTest, SecondRecordForTheSameKeyMakesNoEvent) {
  FlowTracker t = tracker();
  ASSERT_NE(accept(t, bytesOf(newRecord())), nullptr);
  auto again = t.onRecord(bytesOf(newRecord(tcpKey(), kKtimeNs + 10)));
  ASSERT_TRUE(again.ok()) << again.error().message();
  EXPECT_EQ(again.value(), nullptr);
  EXPECT_EQ(t.tracked(), 1u);
  // The same ends on another interface are another flow.
  EventPtr other = accept(t, bytesOf(newRecord(flowKey(kClient, 40000, kServer, 443, kTcp, 5))));
  ASSERT_NE(other, nullptr);
  EXPECT_EQ(other->flow().interface(), "veth1");
  EXPECT_EQ(t.tracked(), 2u);
  // And so are other ports or another protocol.
  ASSERT_NE(accept(t, bytesOf(newRecord(flowKey(kClient, 40001, kServer, 443)))), nullptr);
  ASSERT_NE(accept(t, bytesOf(newRecord(flowKey(kClient, 40000, kServer, 443, kUdp)))), nullptr);
  EXPECT_EQ(t.tracked(), 4u);
}

TEST_F(FlowTrackerTest, IcmpEchoRecord) {
  vigil_flow_new_record r = newRecord(flowKey(kClient, 0x1234, kServer, 0x1234, kIcmp));
  r.icmp_type = 8;
  r.icmp_code = 0;
  r.tcp_flags = VIGIL_TCP_SYN;  // nonsense for ICMP: must not show
  r.first = {1, 84, 64};
  FlowTracker t = tracker();
  EventPtr ev = accept(t, bytesOf(r));
  ASSERT_NE(ev, nullptr);
  const v1::Flow& f = ev->flow();
  EXPECT_EQ(f.protocol(), "icmp");
  EXPECT_EQ(f.source().ip(), "10.0.0.1");
  EXPECT_EQ(f.source().port(), 0x1234u);
  EXPECT_EQ(f.destination().port(), 0x1234u);
  EXPECT_EQ(f.icmp_type(), 8u);
  EXPECT_EQ(f.icmp_code(), 0u);
  EXPECT_TRUE(f.tcp_flags().empty());
  EXPECT_TRUE(f.reply_tcp_flags().empty());
  expectCounters(f.sent(), 1, 84, 64);
}

TEST_F(FlowTrackerTest, Icmpv6RecordWithIpv6Addresses) {
  vigil_flow_new_record r =
      newRecord(flowKey(v6("2001:db8::1"), 7, v6("2001:db8::2"), 7, kIcmpv6, 5));
  r.origin = VIGIL_FLOW_BA;
  r.hook = VIGIL_FLOW_INGRESS;
  r.icmp_type = 128;
  r.icmp_code = 3;
  FlowTracker t = tracker();
  EventPtr ev = accept(t, bytesOf(r));
  ASSERT_NE(ev, nullptr);
  const v1::Flow& f = ev->flow();
  EXPECT_EQ(f.protocol(), "icmpv6");
  EXPECT_EQ(f.source().ip(), "2001:db8::2");
  EXPECT_EQ(f.destination().ip(), "2001:db8::1");
  EXPECT_EQ(f.icmp_type(), 128u);
  EXPECT_EQ(f.icmp_code(), 3u);
  EXPECT_EQ(f.interface(), "veth1");
  EXPECT_EQ(f.direction(), "ingress");
}

TEST_F(FlowTrackerTest, IcmpFieldsOnlyForIcmp) {
  vigil_flow_new_record r = newRecord(flowKey(kClient, 5353, kServer, 53, kUdp));
  r.icmp_type = 3;
  r.icmp_code = 1;
  r.tcp_flags = VIGIL_TCP_SYN;
  FlowTracker t = tracker();
  EventPtr ev = accept(t, bytesOf(r));
  ASSERT_NE(ev, nullptr);
  EXPECT_EQ(ev->flow().protocol(), "udp");
  EXPECT_EQ(ev->flow().icmp_type(), 0u);
  EXPECT_EQ(ev->flow().icmp_code(), 0u);
  EXPECT_TRUE(ev->flow().tcp_flags().empty());
  EXPECT_EQ(ev->flow().source().port(), 5353u);
  EXPECT_EQ(ev->flow().destination().port(), 53u);

  EventPtr gre = accept(t, bytesOf(newRecord(flowKey(kClient, 0, kServer, 0, 47))));
  ASSERT_NE(gre, nullptr);
  EXPECT_EQ(gre->flow().protocol(), "47");
  EXPECT_TRUE(gre->flow().tcp_flags().empty());
}

// ---- records that do not fit the ABI ---------------------------------------------------------

TEST_F(FlowTrackerTest, RejectsRecordShorterThanHeader) {
  expectRejected({}, "malformed flow record: 0 bytes");
  std::vector<uint8_t> raw = bytesOf(newRecord());
  raw.resize(sizeof(vigil_record_hdr) - 1);
  expectRejected(raw, "malformed flow record: 15 bytes");
}

TEST_F(FlowTrackerTest, RejectsNewFlowRecordOfWrongLength) {
  expectRejected(bytesOf(newRecord(), sizeof(vigil_flow_new_record) - 1),
                 "malformed new-flow record: 95 bytes, expected 96");
  expectRejected(bytesOf(newRecord(), sizeof(vigil_flow_new_record) + 1),
                 "malformed new-flow record: 97 bytes, expected 96");
  expectRejected(bytesOf(newRecord(), sizeof(vigil_record_hdr)),
                 "malformed new-flow record: 16 bytes, expected 96");
}

TEST_F(FlowTrackerTest, RejectsNewFlowRecordOfWrongVersion) {
  vigil_flow_new_record r = newRecord();
  r.hdr.version = VIGIL_FLOW_ABI_VERSION + 1;
  expectRejected(bytesOf(r), "new-flow record of ABI version 2, expected 1");
  r.hdr.version = 0;
  expectRejected(bytesOf(r), "new-flow record of ABI version 0, expected 1");
}

TEST_F(FlowTrackerTest, RejectsNewFlowRecordWhoseHeaderSizeDisagrees) {
  vigil_flow_new_record r = newRecord();
  r.hdr.size = 100;
  expectRejected(bytesOf(r), "malformed new-flow record: size 100 in a 96-byte record");
  r.hdr.size = 0;
  expectRejected(bytesOf(r), "malformed new-flow record: size 0 in a 96-byte record");
}

TEST_F(FlowTrackerTest, RejectsOriginOrHookOutOfRange) {
  vigil_flow_new_record r = newRecord();
  r.origin = 2;
  expectRejected(bytesOf(r), "malformed new-flow record: origin 2, hook 1");
  r = newRecord();
  r.hook = 5;
  expectRejected(bytesOf(r), "malformed new-flow record: origin 0, hook 5");
  r.origin = 255;
  r.hook = 255;
  expectRejected(bytesOf(r), "origin 255, hook 255");
}

TEST_F(FlowTrackerTest, RejectsRecordsOfOtherTypes) {
  vigil_flow_new_record r = newRecord();
  r.hdr.type = VIGIL_REC_XDP_DROP;
  expectRejected(bytesOf(r), "not a flow record: type 5");
  r.hdr.type = VIGIL_REC_EXEC;
  expectRejected(bytesOf(r), "not a flow record: type 1");
  r.hdr.type = 0;
  expectRejected(bytesOf(r), "not a flow record: type 0");
  r.hdr.type = 999;
  expectRejected(bytesOf(r), "not a flow record: type 999");
}

TEST_F(FlowTrackerTest, RejectsMalformedDropRecords) {
  expectRejected(bytesOf(dropRecord(), sizeof(vigil_drop_record) - 8),
                 "malformed kernel drop record: 88 bytes, expected 96");
  expectRejected(bytesOf(dropRecord(), sizeof(vigil_drop_record) + 4),
                 "malformed kernel drop record: 100 bytes, expected 96");
  vigil_drop_record r = dropRecord();
  r.hdr.version = 7;
  expectRejected(bytesOf(r), "kernel drop record of ABI version 7, expected 1");
  r = dropRecord();
  r.hdr.size = 95;
  expectRejected(bytesOf(r), "malformed kernel drop record: size 95 in a 96-byte record");
}

TEST_F(FlowTrackerTest, MalformedRecordLeavesStateAlone) {
  FlowTracker t = tracker();
  vigil_flow_new_record bad = newRecord();
  bad.origin = 3;
  EXPECT_FALSE(t.onRecord(bytesOf(bad)).ok());
  EXPECT_EQ(t.tracked(), 0u);
  // The same key, well formed, is still new.
  EXPECT_NE(accept(t, bytesOf(newRecord())), nullptr);
  EXPECT_EQ(t.tracked(), 1u);
}

// ---- kernel drops ----------------------------------------------------------------------------

TEST_F(FlowTrackerTest, KernelDropWithEveryField) {
  FlowTracker t = tracker();
  EventPtr ev = accept(t, bytesOf(dropRecord()));
  ASSERT_NE(ev, nullptr);
  EXPECT_EQ(ev->type(), v1::EVENT_TYPE_FLOW);
  EXPECT_EQ(ev->node_name(), "node-7");
  EXPECT_EQ(nsOf(ev->time()), wall(kKtimeNs));
  const v1::Flow& f = ev->flow();
  EXPECT_EQ(f.event_type(), v1::FLOW_DROP);
  EXPECT_EQ(f.verdict(), v1::DROPPED);
  EXPECT_EQ(f.drop_reason(), "NO_SOCKET");
  EXPECT_EQ(f.ifindex(), 2u);
  EXPECT_EQ(f.interface(), "eth0");
  EXPECT_EQ(f.direction(), "");
  EXPECT_EQ(f.protocol(), "tcp");
  EXPECT_EQ(f.source().ip(), "203.0.113.9");
  EXPECT_EQ(f.source().port(), 40001u);
  EXPECT_EQ(f.destination().ip(), "10.0.0.1");
  EXPECT_EQ(f.destination().port(), 22u);
  EXPECT_EQ(names(f.tcp_flags()), (std::vector<std::string>{"SYN"}));
  EXPECT_TRUE(f.reply_tcp_flags().empty());
  EXPECT_EQ(f.length(), 74u);
  EXPECT_EQ(f.suppressed(), 12u);
  EXPECT_EQ(f.icmp_type(), 0u);
  EXPECT_EQ(f.end_reason(), "");
  EXPECT_EQ(f.policy(), "");
  EXPECT_FALSE(f.has_sent());
  EXPECT_FALSE(f.has_first_seen());
  // A drop is not a tracked flow.
  EXPECT_EQ(t.tracked(), 0u);
}

TEST_F(FlowTrackerTest, KernelDropReasonFallsBackToNumber) {
  FlowTracker t = tracker();
  vigil_drop_record r = dropRecord();
  r.reason = 6;
  EventPtr named = accept(t, bytesOf(r));
  ASSERT_NE(named, nullptr);
  EXPECT_EQ(named->flow().drop_reason(), "NETFILTER_DROP");
  r.reason = 77;
  EventPtr unknown = accept(t, bytesOf(r));
  ASSERT_NE(unknown, nullptr);
  EXPECT_EQ(unknown->flow().drop_reason(), "reason 77");

  FlowTracker bare(options, Clock(kClockOffsetNs), FlowContext{});
  auto ev = bare.onRecord(bytesOf(dropRecord()));
  ASSERT_TRUE(ev.ok()) << ev.error().message();
  EXPECT_EQ(ev.value()->flow().drop_reason(), "reason 2");
  EXPECT_EQ(ev.value()->flow().interface(), "if2");
  EXPECT_EQ(ev.value()->flow().destination().pid(), 0u);
}

TEST_F(FlowTrackerTest, KernelDropWithoutPortsHasNoPortsNorOwners) {
  vigil_drop_record r = dropRecord();
  r.flags = VIGIL_DROP_F_IP | VIGIL_DROP_F_V4;
  r.tcp_flags = 0;
  addOwner(sockKey(kZero, 22, kZero, 0, kTcp), 321);
  FlowTracker t = tracker();
  EventPtr ev = accept(t, bytesOf(r));
  ASSERT_NE(ev, nullptr);
  const v1::Flow& f = ev->flow();
  EXPECT_EQ(f.protocol(), "tcp");
  EXPECT_EQ(f.source().ip(), "203.0.113.9");
  EXPECT_EQ(f.destination().ip(), "10.0.0.1");
  EXPECT_EQ(f.source().port(), 0u);
  EXPECT_EQ(f.destination().port(), 0u);
  EXPECT_EQ(f.destination().pid(), 0u);
  EXPECT_TRUE(ownerQueries.empty());
  EXPECT_TRUE(f.tcp_flags().empty());
}

TEST_F(FlowTrackerTest, KernelDropWithoutAddresses) {
  vigil_drop_record r = dropRecord();
  r.flags = 0;  // no IP header could be read: nothing else means anything
  FlowTracker t = tracker();
  EventPtr ev = accept(t, bytesOf(r));
  ASSERT_NE(ev, nullptr);
  const v1::Flow& f = ev->flow();
  EXPECT_EQ(f.protocol(), "");
  EXPECT_FALSE(f.has_source());
  EXPECT_FALSE(f.has_destination());
  EXPECT_TRUE(f.tcp_flags().empty());
  EXPECT_EQ(f.drop_reason(), "NO_SOCKET");
  EXPECT_EQ(f.interface(), "eth0");
  EXPECT_EQ(f.length(), 74u);
  EXPECT_EQ(f.suppressed(), 12u);
  EXPECT_TRUE(ownerQueries.empty());

  // Ports without addresses are not shown either.
  r.flags = VIGIL_DROP_F_PORTS;
  EventPtr ports = accept(t, bytesOf(r));
  ASSERT_NE(ports, nullptr);
  EXPECT_FALSE(ports->flow().has_source());
  EXPECT_EQ(ports->flow().protocol(), "");
}

TEST_F(FlowTrackerTest, KernelDropOfIcmp) {
  vigil_drop_record r = dropRecord();
  r.proto = kIcmp;
  r.sport = 0x0303;  // must not be read as ports
  r.dport = 0x0101;
  r.tcp_flags = 0;
  r.icmp_type = 3;
  r.icmp_code = 1;
  FlowTracker t = tracker();
  EventPtr ev = accept(t, bytesOf(r));
  ASSERT_NE(ev, nullptr);
  EXPECT_EQ(ev->flow().protocol(), "icmp");
  EXPECT_EQ(ev->flow().icmp_type(), 3u);
  EXPECT_EQ(ev->flow().icmp_code(), 1u);
  EXPECT_EQ(ev->flow().source().port(), 0u);
  EXPECT_EQ(ev->flow().destination().port(), 0u);
  EXPECT_EQ(ev->flow().source().ip(), "203.0.113.9");
  EXPECT_TRUE(ownerQueries.empty());

  // Without VIGIL_DROP_F_PORTS the type and code were not read.
  r.flags = VIGIL_DROP_F_IP | VIGIL_DROP_F_V4;
  EventPtr unread = accept(t, bytesOf(r));
  ASSERT_NE(unread, nullptr);
  EXPECT_EQ(unread->flow().icmp_type(), 0u);
  EXPECT_EQ(unread->flow().icmp_code(), 0u);

  // ICMPv6 over IPv6.
  vigil_drop_record r6 = dropRecord();
  Addr s = v6("fe80::1"), d = v6("ff02::1");
  std::memcpy(r6.saddr, s.data(), 16);
  std::memcpy(r6.daddr, d.data(), 16);
  r6.proto = kIcmpv6;
  r6.flags = VIGIL_DROP_F_IP | VIGIL_DROP_F_PORTS;
  r6.icmp_type = 135;
  r6.tcp_flags = 0;
  EventPtr ev6 = accept(t, bytesOf(r6));
  ASSERT_NE(ev6, nullptr);
  EXPECT_EQ(ev6->flow().protocol(), "icmpv6");
  EXPECT_EQ(ev6->flow().source().ip(), "fe80::1");
  EXPECT_EQ(ev6->flow().destination().ip(), "ff02::1");
  EXPECT_EQ(ev6->flow().icmp_type(), 135u);
  EXPECT_EQ(ev6->flow().source().port(), 0u);
}

TEST_F(FlowTrackerTest, KernelDropOfUdpHasNoTcpFlags) {
  vigil_drop_record r = dropRecord();
  r.proto = kUdp;
  r.sport = 5353;
  r.dport = 53;
  r.tcp_flags = VIGIL_TCP_SYN | VIGIL_TCP_FIN;  // meaningless outside TCP
  r.icmp_type = 3;
  FlowTracker t = tracker();
  EventPtr ev = accept(t, bytesOf(r));
  ASSERT_NE(ev, nullptr);
  EXPECT_EQ(ev->flow().protocol(), "udp");
  EXPECT_TRUE(ev->flow().tcp_flags().empty());
  EXPECT_EQ(ev->flow().icmp_type(), 0u);
  EXPECT_EQ(ev->flow().source().port(), 5353u);
  EXPECT_EQ(ev->flow().destination().port(), 53u);
  EXPECT_EQ(ownerQueries.size(), 6u);
  EXPECT_EQ(ownerQueries[0].proto, kUdp);
}

TEST_F(FlowTrackerTest, KernelDropInAnotherNetnsShowsTheNamespace) {
  vigil_drop_record r = dropRecord();
  r.netns = 4'026'532'999;
  r.ifindex = 7;  // a name exists for 7 in the agent's namespace: it is not this device
  FlowTracker t = tracker();
  EventPtr ev = accept(t, bytesOf(r));
  ASSERT_NE(ev, nullptr);
  EXPECT_EQ(ev->flow().interface(), "netns:4026532999/if7");
  EXPECT_EQ(ev->flow().ifindex(), 7u);
  EXPECT_TRUE(interfaceQueries.empty());
}

TEST_F(FlowTrackerTest, KernelDropInTheAgentsNetnsResolvesTheName) {
  FlowTracker t = tracker();
  vigil_drop_record r = dropRecord();
  r.ifindex = 7;
  r.netns = kAgentNetns;
  EventPtr same = accept(t, bytesOf(r));
  ASSERT_NE(same, nullptr);
  EXPECT_EQ(same->flow().interface(), "lxc42");
  r.netns = 0;  // the kernel could not tell: an index of some namespace, not named
  EventPtr none = accept(t, bytesOf(r));
  ASSERT_NE(none, nullptr);
  EXPECT_EQ(none->flow().interface(), "if7");
  r.netns = kAgentNetns;
  r.ifindex = 9;
  EventPtr unnamed = accept(t, bytesOf(r));
  ASSERT_NE(unnamed, nullptr);
  EXPECT_EQ(unnamed->flow().interface(), "if9");
  r.ifindex = 0;  // no device at all
  r.netns = 4'026'532'999;
  EventPtr nodev = accept(t, bytesOf(r));
  ASSERT_NE(nodev, nullptr);
  EXPECT_EQ(nodev->flow().interface(), "");
  EXPECT_EQ(nodev->flow().ifindex(), 0u);
  EXPECT_EQ(interfaceQueries, (std::vector<uint32_t>{7, 9}));
}

TEST_F(FlowTrackerTest, KernelDropJoinsTheLocalListener) {
  // sshd listens on port 22 on any address: the destination of the dropped SYN.
  addOwner(sockKey(kZero, 22, kZero, 0, kTcp), 321, "sshd", 55, 0);
  binaries[321] = "/usr/sbin/sshd";
  cgroupPaths[55] = "/system.slice/ssh.service";
  FlowTracker t = tracker();
  EventPtr ev = accept(t, bytesOf(dropRecord()));
  ASSERT_NE(ev, nullptr);
  const v1::FlowEndpoint& d = ev->flow().destination();
  EXPECT_EQ(d.pid(), 321u);
  EXPECT_EQ(d.comm(), "sshd");
  EXPECT_EQ(d.uid(), 0u);
  EXPECT_EQ(d.cgroup_id(), 55u);
  EXPECT_EQ(d.binary(), "/usr/sbin/sshd");
  EXPECT_EQ(d.cgroup_path(), "/system.slice/ssh.service");
  EXPECT_EQ(ev->flow().source().pid(), 0u);
  EXPECT_EQ(described, (std::vector<uint32_t>{321}));
  // Source first (three tries), then the destination: exact, remote zero, local zero.
  const Addr src = v4(203, 0, 113, 9), dst = v4(10, 0, 0, 1);
  ASSERT_EQ(ownerQueries.size(), 6u);
  EXPECT_EQ(keyBytes(ownerQueries[0]), keyBytes(sockKey(src, 40001, dst, 22, kTcp)));
  EXPECT_EQ(keyBytes(ownerQueries[3]), keyBytes(sockKey(dst, 22, src, 40001, kTcp)));
  EXPECT_EQ(keyBytes(ownerQueries[4]), keyBytes(sockKey(dst, 22, kZero, 0, kTcp)));
  EXPECT_EQ(keyBytes(ownerQueries[5]), keyBytes(sockKey(kZero, 22, kZero, 0, kTcp)));
}

// ---- scans -----------------------------------------------------------------------------------

TEST_F(FlowTrackerTest, ScanAnnouncesAFlowItHadNoRecordFor) {
  vigil_flow_value v = flowValue(10 * kSec, 12 * kSec, VIGIL_FLOW_BA, VIGIL_FLOW_INGRESS);
  v.dir[VIGIL_FLOW_AB] = {4, 400, 100};
  v.dir[VIGIL_FLOW_BA] = {6, 9000, 8000};
  v.tcp_flags = (VIGIL_TCP_SYN | VIGIL_TCP_ACK) | ((VIGIL_TCP_ACK | VIGIL_TCP_PSH) << 8);
  Entries entries{{tcpKey(), v}};
  FlowTracker t = tracker();
  FlowScanResult res = t.onScan(entries, 13 * kSec, 13 * kSec + 5);
  EXPECT_TRUE(res.expired.empty());
  ASSERT_EQ(res.events.size(), 1u);
  const v1::Event& ev = *res.events[0];
  EXPECT_EQ(ev.type(), v1::EVENT_TYPE_FLOW);
  EXPECT_EQ(ev.node_name(), "node-7");
  EXPECT_EQ(nsOf(ev.time()), wall(10 * kSec));  // when it began, not when it was found
  const v1::Flow& f = ev.flow();
  EXPECT_EQ(f.event_type(), v1::FLOW_NEW);
  EXPECT_EQ(f.verdict(), v1::FORWARDED);
  EXPECT_EQ(f.source().ip(), "10.0.0.2");
  EXPECT_EQ(f.source().port(), 443u);
  EXPECT_EQ(f.destination().ip(), "10.0.0.1");
  EXPECT_EQ(f.direction(), "ingress");
  EXPECT_EQ(names(f.tcp_flags()), (std::vector<std::string>{"ACK", "PSH"}));
  EXPECT_EQ(names(f.reply_tcp_flags()), (std::vector<std::string>{"SYN", "ACK"}));
  expectCounters(f.sent(), 6, 9000, 8000);
  expectCounters(f.reply(), 4, 400, 100);
  EXPECT_EQ(nsOf(f.first_seen()), wall(10 * kSec));
  EXPECT_EQ(nsOf(f.last_seen()), wall(12 * kSec));
  EXPECT_EQ(f.end_reason(), "");
  EXPECT_EQ(t.tracked(), 1u);

  // Its record, late, makes nothing more.
  auto late = t.onRecord(bytesOf(newRecord(tcpKey(), 10 * kSec)));
  ASSERT_TRUE(late.ok());
  EXPECT_EQ(late.value(), nullptr);
  // Nor does the next scan with no new packets.
  FlowScanResult again = t.onScan(entries, 14 * kSec, 14 * kSec);
  EXPECT_TRUE(again.events.empty());
  EXPECT_EQ(t.tracked(), 1u);
}

TEST_F(FlowTrackerTest, TcpFinBothWaysEndsAfterTheLinger) {
  FlowTracker t = tracker();
  ASSERT_NE(accept(t, bytesOf(newRecord(tcpKey(), 10 * kSec))), nullptr);
  vigil_flow_value v = flowValue(10 * kSec, 20 * kSec);
  v.dir[0] = {10, 1000, 500};
  v.dir[1] = {8, 4000, 3500};
  const uint32_t both = VIGIL_TCP_SYN | VIGIL_TCP_ACK | VIGIL_TCP_FIN;
  v.tcp_flags = both | (both << 8);
  Entries entries{{tcpKey(), v}};
  // Quiet for less than the linger: the last ACK may still come.
  FlowScanResult early = t.onScan(entries, 20 * kSec, 21 * kSec - 1);
  EXPECT_TRUE(early.events.empty());
  EXPECT_TRUE(early.expired.empty());
  EXPECT_EQ(t.tracked(), 1u);
  // Quiet for the linger: ended.
  FlowScanResult end = t.onScan(entries, 21 * kSec, 21 * kSec);
  ASSERT_EQ(end.events.size(), 1u);
  const v1::Event& ev = *end.events[0];
  EXPECT_EQ(nsOf(ev.time()), wall(21 * kSec));
  const v1::Flow& f = ev.flow();
  EXPECT_EQ(f.event_type(), v1::FLOW_END);
  EXPECT_EQ(f.end_reason(), "fin");
  EXPECT_EQ(f.verdict(), v1::FORWARDED);
  expectCounters(f.sent(), 10, 1000, 500);
  expectCounters(f.reply(), 8, 4000, 3500);
  EXPECT_EQ(names(f.tcp_flags()), (std::vector<std::string>{"SYN", "ACK", "FIN"}));
  EXPECT_EQ(names(f.reply_tcp_flags()), (std::vector<std::string>{"SYN", "ACK", "FIN"}));
  EXPECT_EQ(nsOf(f.first_seen()), wall(10 * kSec));
  EXPECT_EQ(nsOf(f.last_seen()), wall(20 * kSec));
  ASSERT_EQ(end.expired.size(), 1u);
  EXPECT_EQ(std::memcmp(&end.expired[0], &entries[0].key, sizeof(vigil_flow_key)), 0);
  EXPECT_EQ(t.tracked(), 0u);
  EXPECT_EQ(t.evictions(), 0u);
}

TEST_F(FlowTrackerTest, TcpFinOneWayOnlyWaitsForTheTcpIdleTimeout) {
  FlowTracker t = tracker();
  vigil_flow_value v = flowValue(10 * kSec, 20 * kSec);
  v.tcp_flags = (VIGIL_TCP_ACK | VIGIL_TCP_FIN) | (VIGIL_TCP_ACK << 8);
  Entries entries{{tcpKey(), v}};
  ASSERT_EQ(t.onScan(entries, 20 * kSec, 20 * kSec).events.size(), 1u);  // FLOW_NEW
  EXPECT_TRUE(t.onScan(entries, 25 * kSec, 25 * kSec).events.empty());
  // Past the UDP idle timeout but not the TCP one.
  EXPECT_TRUE(t.onScan(entries, 200 * kSec, 200 * kSec).events.empty());
  EXPECT_TRUE(t.onScan(entries, 620 * kSec - 1, 620 * kSec - 1).events.empty());
  FlowScanResult end = t.onScan(entries, 620 * kSec, 620 * kSec);
  ASSERT_EQ(end.events.size(), 1u);
  EXPECT_EQ(end.events[0]->flow().event_type(), v1::FLOW_END);
  EXPECT_EQ(end.events[0]->flow().end_reason(), "idle");
  EXPECT_EQ(end.expired.size(), 1u);
  EXPECT_EQ(t.tracked(), 0u);
}

TEST_F(FlowTrackerTest, TcpRstEndsAfterTheLinger) {
  FlowTracker t = tracker();
  vigil_flow_value v = flowValue(10 * kSec, 10 * kSec + 500);
  v.dir[0] = {1, 60, 0};
  v.dir[1] = {1, 40, 0};
  v.tcp_flags = VIGIL_TCP_SYN | ((VIGIL_TCP_RST | VIGIL_TCP_ACK) << 8);
  Entries entries{{tcpKey(), v}};
  FlowScanResult first = t.onScan(entries, 11 * kSec, 11 * kSec);  // quiet 1 s - 500 ns
  ASSERT_EQ(first.events.size(), 1u);
  EXPECT_EQ(first.events[0]->flow().event_type(), v1::FLOW_NEW);
  EXPECT_TRUE(first.expired.empty());
  FlowScanResult end = t.onScan(entries, 11 * kSec + 500, 11 * kSec + 500);
  ASSERT_EQ(end.events.size(), 1u);
  EXPECT_EQ(end.events[0]->flow().event_type(), v1::FLOW_END);
  EXPECT_EQ(end.events[0]->flow().end_reason(), "rst");
  EXPECT_EQ(names(end.events[0]->flow().reply_tcp_flags()),
            (std::vector<std::string>{"ACK", "RST"}));
  EXPECT_EQ(end.expired.size(), 1u);
  EXPECT_EQ(t.tracked(), 0u);
}

TEST_F(FlowTrackerTest, RstWinsOverFin) {
  FlowTracker t = tracker();
  vigil_flow_value v = flowValue(10 * kSec, 11 * kSec);
  v.tcp_flags = (VIGIL_TCP_FIN | VIGIL_TCP_RST) | (VIGIL_TCP_FIN << 8);
  Entries entries{{tcpKey(), v}};
  FlowScanResult res = t.onScan(entries, 15 * kSec, 15 * kSec);
  // Unknown before this scan: announced and ended in one go.
  ASSERT_EQ(res.events.size(), 2u);
  EXPECT_EQ(res.events[0]->flow().event_type(), v1::FLOW_NEW);
  EXPECT_EQ(res.events[1]->flow().event_type(), v1::FLOW_END);
  EXPECT_EQ(res.events[1]->flow().end_reason(), "rst");
  EXPECT_EQ(res.expired.size(), 1u);
  EXPECT_EQ(t.tracked(), 0u);
}

TEST_F(FlowTrackerTest, TcpWithoutFinEndsIdle) {
  FlowTracker t = tracker();
  vigil_flow_value v = flowValue(10 * kSec, 10 * kSec);
  v.tcp_flags = VIGIL_TCP_SYN;
  Entries entries{{tcpKey(), v}};
  ASSERT_EQ(t.onScan(entries, 10 * kSec, 10 * kSec).events.size(), 1u);
  EXPECT_TRUE(t.onScan(entries, 70 * kSec, 70 * kSec).events.empty());
  EXPECT_TRUE(t.onScan(entries, 610 * kSec - 1, 610 * kSec - 1).events.empty());
  FlowScanResult end = t.onScan(entries, 610 * kSec, 610 * kSec);
  ASSERT_EQ(end.events.size(), 1u);
  EXPECT_EQ(end.events[0]->flow().end_reason(), "idle");
  EXPECT_EQ(t.tracked(), 0u);
}

TEST_F(FlowTrackerTest, UdpAndIcmpEndIdleAfterTheIdleTimeout) {
  FlowTracker t = tracker();
  const vigil_flow_key udp = flowKey(kClient, 5353, kServer, 53, kUdp);
  const vigil_flow_key icmp = flowKey(kClient, 9, kServer, 9, kIcmp);
  vigil_flow_value v = flowValue(10 * kSec, 10 * kSec);
  v.dir[0] = {1, 80, 52};
  v.tcp_flags = VIGIL_TCP_FIN | (VIGIL_TCP_FIN << 8);  // meaningless outside TCP
  Entries entries{{udp, v}, {icmp, v}};
  ASSERT_EQ(t.onScan(entries, 10 * kSec, 10 * kSec).events.size(), 2u);
  EXPECT_EQ(t.tracked(), 2u);
  EXPECT_TRUE(t.onScan(entries, 70 * kSec - 1, 70 * kSec - 1).events.empty());
  FlowScanResult end = t.onScan(entries, 70 * kSec, 70 * kSec);
  ASSERT_EQ(end.events.size(), 2u);
  EXPECT_EQ(end.events[0]->flow().event_type(), v1::FLOW_END);
  EXPECT_EQ(end.events[0]->flow().end_reason(), "idle");
  EXPECT_EQ(end.events[0]->flow().protocol(), "udp");
  expectCounters(end.events[0]->flow().sent(), 1, 80, 52);
  EXPECT_EQ(end.events[1]->flow().end_reason(), "idle");
  EXPECT_EQ(end.events[1]->flow().protocol(), "icmp");
  ASSERT_EQ(end.expired.size(), 2u);
  EXPECT_EQ(end.expired[0].proto, kUdp);
  EXPECT_EQ(end.expired[1].proto, kIcmp);
  EXPECT_EQ(t.tracked(), 0u);
}

TEST_F(FlowTrackerTest, EndedFlowIsForgotten) {
  FlowTracker t = tracker();
  const vigil_flow_key udp = flowKey(kClient, 5353, kServer, 53, kUdp);
  Entries old{{udp, flowValue(10 * kSec, 10 * kSec)}};
  ASSERT_EQ(t.onScan(old, 10 * kSec, 10 * kSec).events.size(), 1u);
  FlowScanResult end = t.onScan(old, 100 * kSec, 100 * kSec);
  ASSERT_EQ(end.events.size(), 1u);
  EXPECT_EQ(t.tracked(), 0u);
  // The agent deleted it; the next scan without it is no eviction.
  FlowScanResult after = t.onScan({}, 101 * kSec, 101 * kSec);
  EXPECT_TRUE(after.events.empty());
  EXPECT_EQ(t.evictions(), 0u);
  // The same ends talk again: a new flow.
  Entries fresh{{udp, flowValue(150 * kSec, 150 * kSec)}};
  FlowScanResult again = t.onScan(fresh, 151 * kSec, 151 * kSec);
  ASSERT_EQ(again.events.size(), 1u);
  EXPECT_EQ(again.events[0]->flow().event_type(), v1::FLOW_NEW);
  EXPECT_EQ(nsOf(again.events[0]->flow().first_seen()), wall(150 * kSec));
  EXPECT_EQ(t.tracked(), 1u);
}

// Ended flows are remembered for ten seconds only: the memory stays bounded under churn.
TEST_F(FlowTrackerTest, EndedFlowsAreForgottenAfterTenSeconds) {
  FlowTracker t = tracker();
  vigil_flow_value v = flowValue(10 * kSec, 10 * kSec);
  v.tcp_flags = VIGIL_TCP_SYN | (VIGIL_TCP_RST << 8);
  ASSERT_EQ(t.onScan(Entries{{tcpKey(), v}}, 12 * kSec, 12 * kSec).events.size(), 2u);
  t.onScan(Entries{}, 21 * kSec, 21 * kSec);  // 9 s later: still remembered
  auto late = t.onRecord(bytesOf(newRecord(tcpKey(), 10 * kSec)));
  ASSERT_TRUE(late.ok());
  EXPECT_EQ(late.value(), nullptr);
  t.onScan(Entries{}, 23 * kSec, 23 * kSec);  // 11 s later: forgotten
  EXPECT_NE(accept(t, bytesOf(newRecord(tcpKey(), 10 * kSec))), nullptr);
}

// A packet that lands between the table read and the time of the update it produced is in
// the next update, not lost until the flow ends.
TEST_F(FlowTrackerTest, UpdateCountsPacketsThatArriveWhileTheTableIsRead) {
  FlowTracker t = tracker();
  const uint64_t t0 = 10 * kSec;
  ASSERT_NE(accept(t, bytesOf(newRecord(tcpKey(), t0))), nullptr);
  vigil_flow_value v = flowValue(t0, 39 * kSec);
  v.dir[0] = {5, 500, 200};
  auto up = t.onScan(Entries{{tcpKey(), v}}, 40 * kSec, 40 * kSec + kSec / 5);
  ASSERT_EQ(up.events.size(), 1u);
  v.last_ns = 40 * kSec + kSec / 10;  // after the read began, before the update was made
  v.dir[0] = {6, 600, 240};
  auto next = t.onScan(Entries{{tcpKey(), v}}, 80 * kSec, 80 * kSec);
  ASSERT_EQ(next.events.size(), 1u);
  EXPECT_EQ(next.events[0]->flow().event_type(), v1::FLOW_UPDATE);
  EXPECT_EQ(next.events[0]->flow().sent().packets(), 6u);
}

// The new-flow record of a flow a scan already announced and ended (the decoder was behind)
// does not bring it back, and is not an eviction.
TEST_F(FlowTrackerTest, LateRecordOfAnEndedFlowIsIgnored) {
  FlowTracker t = tracker();
  vigil_flow_value v = flowValue(10 * kSec, 10 * kSec);
  v.tcp_flags = VIGIL_TCP_SYN | (VIGIL_TCP_RST << 8);
  auto scan = t.onScan(Entries{{tcpKey(), v}}, 12 * kSec, 12 * kSec);
  ASSERT_EQ(scan.events.size(), 2u);  // new, end "rst"
  EXPECT_EQ(scan.events[1]->flow().end_reason(), "rst");
  auto late = t.onRecord(bytesOf(newRecord(tcpKey(), 10 * kSec)));
  ASSERT_TRUE(late.ok()) << late.error().message();
  EXPECT_EQ(late.value(), nullptr);
  EXPECT_TRUE(t.onScan(Entries{}, 13 * kSec, 13 * kSec).events.empty());
  EXPECT_EQ(t.evictions(), 0u);
  EXPECT_EQ(t.tracked(), 0u);
  // A later flow with the same 5-tuple is a new flow.
  EXPECT_NE(accept(t, bytesOf(newRecord(tcpKey(), 14 * kSec))), nullptr);
}

TEST_F(FlowTrackerTest, UpdatesOnlyAfterTheIntervalAndOnlyWithNewPackets) {
  FlowTracker t = tracker();
  const uint64_t t0 = 100 * kSec;
  ASSERT_NE(accept(t, bytesOf(newRecord(tcpKey(), t0))), nullptr);
  vigil_flow_value v = flowValue(t0, t0 + 28 * kSec);
  v.dir[0] = {5, 500, 200};
  v.tcp_flags = VIGIL_TCP_SYN | VIGIL_TCP_ACK | (VIGIL_TCP_ACK << 8);
  // Packets, but the interval has not passed since the record.
  EXPECT_TRUE(t.onScan(Entries{{tcpKey(), v}}, t0 + 29 * kSec, t0 + 30 * kSec - 1).events.empty());
  // The interval passed, with packets since the record.
  v.last_ns = t0 + 29 * kSec;
  v.dir[0] = {9, 900, 400};
  v.dir[1] = {7, 7000, 6600};
  FlowScanResult up = t.onScan(Entries{{tcpKey(), v}}, t0 + 30 * kSec, t0 + 30 * kSec);
  ASSERT_EQ(up.events.size(), 1u);
  const v1::Event& ev = *up.events[0];
  EXPECT_EQ(nsOf(ev.time()), wall(t0 + 30 * kSec));
  EXPECT_EQ(ev.flow().event_type(), v1::FLOW_UPDATE);
  EXPECT_EQ(ev.flow().end_reason(), "");
  expectCounters(ev.flow().sent(), 9, 900, 400);
  expectCounters(ev.flow().reply(), 7, 7000, 6600);
  EXPECT_EQ(nsOf(ev.flow().last_seen()), wall(t0 + 29 * kSec));
  EXPECT_EQ(names(ev.flow().reply_tcp_flags()), (std::vector<std::string>{"ACK"}));
  EXPECT_TRUE(up.expired.empty());
  // Interval passed again, but no packet since the update: nothing.
  EXPECT_TRUE(t.onScan(Entries{{tcpKey(), v}}, t0 + 70 * kSec, t0 + 70 * kSec).events.empty());
  // A packet, and the interval since the update (t0+30) has passed.
  v.last_ns = t0 + 71 * kSec;
  FlowScanResult up2 = t.onScan(Entries{{tcpKey(), v}}, t0 + 72 * kSec, t0 + 72 * kSec);
  ASSERT_EQ(up2.events.size(), 1u);
  EXPECT_EQ(up2.events[0]->flow().event_type(), v1::FLOW_UPDATE);
  // Less than the interval after that update, with packets: nothing.
  v.last_ns = t0 + 80 * kSec;
  EXPECT_TRUE(
      t.onScan(Entries{{tcpKey(), v}}, t0 + 101 * kSec, t0 + 102 * kSec - 1).events.empty());
  EXPECT_EQ(t.onScan(Entries{{tcpKey(), v}}, t0 + 102 * kSec, t0 + 102 * kSec).events.size(), 1u);
  EXPECT_EQ(t.tracked(), 1u);
}

TEST_F(FlowTrackerTest, NoUpdateInTheScanThatAnnouncesAFlow) {
  FlowTracker t = tracker();
  // Old and active: it would be due for an update if it had been known.
  vigil_flow_value v = flowValue(10 * kSec, 99 * kSec);
  Entries entries{{tcpKey(), v}};
  FlowScanResult first = t.onScan(entries, 100 * kSec, 100 * kSec);
  ASSERT_EQ(first.events.size(), 1u);
  EXPECT_EQ(first.events[0]->flow().event_type(), v1::FLOW_NEW);
  // The interval counts from the scan that announced it.
  entries[0].value.last_ns = 120 * kSec;
  EXPECT_TRUE(t.onScan(entries, 125 * kSec, 130 * kSec - 1).events.empty());
  FlowScanResult up = t.onScan(entries, 130 * kSec, 130 * kSec);
  ASSERT_EQ(up.events.size(), 1u);
  EXPECT_EQ(up.events[0]->flow().event_type(), v1::FLOW_UPDATE);
}

TEST_F(FlowTrackerTest, FlowMissingFromAScanWasEvicted) {
  FlowTracker t = tracker();
  vigil_flow_value v = flowValue(10 * kSec, 11 * kSec);
  v.dir[0] = {3, 300, 100};
  v.dir[1] = {2, 2000, 1900};
  v.tcp_flags = VIGIL_TCP_SYN | (VIGIL_TCP_SYN | VIGIL_TCP_ACK) << 8;
  const vigil_flow_key other = flowKey(kClient, 40001, kServer, 443);
  ASSERT_EQ(t.onScan(Entries{{tcpKey(), v}, {other, v}}, 12 * kSec, 12 * kSec).events.size(), 2u);
  EXPECT_EQ(t.tracked(), 2u);
  // The kernel counted more packets after that scan, then dropped the entry.
  FlowScanResult res = t.onScan(Entries{{other, v}}, 13 * kSec, 13 * kSec + 7);
  ASSERT_EQ(res.events.size(), 1u);
  const v1::Event& ev = *res.events[0];
  EXPECT_EQ(nsOf(ev.time()), wall(13 * kSec + 7));
  EXPECT_EQ(ev.flow().event_type(), v1::FLOW_END);
  EXPECT_EQ(ev.flow().end_reason(), "evicted");
  EXPECT_EQ(ev.flow().source().port(), 40000u);
  expectCounters(ev.flow().sent(), 3, 300, 100);
  expectCounters(ev.flow().reply(), 2, 2000, 1900);
  EXPECT_EQ(names(ev.flow().reply_tcp_flags()), (std::vector<std::string>{"SYN", "ACK"}));
  EXPECT_EQ(nsOf(ev.flow().last_seen()), wall(11 * kSec));
  EXPECT_TRUE(res.expired.empty());  // nothing left to delete
  EXPECT_EQ(t.evictions(), 1u);
  EXPECT_EQ(t.tracked(), 1u);
  // Counted once.
  EXPECT_TRUE(t.onScan(Entries{{other, v}}, 14 * kSec, 14 * kSec).events.empty());
  EXPECT_EQ(t.evictions(), 1u);
}

TEST_F(FlowTrackerTest, FlowKnownByRecordOnlyCanBeEvicted) {
  FlowTracker t = tracker();
  vigil_flow_new_record r = newRecord(tcpKey(), 10 * kSec);
  r.first = {1, 74, 0};
  ASSERT_NE(accept(t, bytesOf(r)), nullptr);
  FlowScanResult res = t.onScan({}, 11 * kSec, 11 * kSec);
  ASSERT_EQ(res.events.size(), 1u);
  EXPECT_EQ(res.events[0]->flow().end_reason(), "evicted");
  expectCounters(res.events[0]->flow().sent(), 1, 74, 0);
  EXPECT_EQ(names(res.events[0]->flow().tcp_flags()), (std::vector<std::string>{"SYN"}));
  EXPECT_EQ(t.evictions(), 1u);
  EXPECT_EQ(t.tracked(), 0u);
}

TEST_F(FlowTrackerTest, FlowCreatedAfterTheScanBeganIsNotEvicted) {
  FlowTracker t = tracker();
  // The record came in while the table was being read: the read may have missed it.
  ASSERT_NE(accept(t, bytesOf(newRecord(tcpKey(), 20 * kSec + 1))), nullptr);
  FlowScanResult res = t.onScan({}, 20 * kSec + 1, 20 * kSec + 50);
  EXPECT_TRUE(res.events.empty());
  EXPECT_EQ(t.evictions(), 0u);
  EXPECT_EQ(t.tracked(), 1u);
  // Created exactly when the next read began counts as after it too; the first flow, older
  // than that read and still not in it, is gone.
  const vigil_flow_key later = flowKey(kClient, 40002, kServer, 443);
  ASSERT_NE(accept(t, bytesOf(newRecord(later, 21 * kSec))), nullptr);
  FlowScanResult second = t.onScan({}, 21 * kSec, 21 * kSec);
  ASSERT_EQ(second.events.size(), 1u);
  EXPECT_EQ(second.events[0]->flow().end_reason(), "evicted");
  EXPECT_EQ(second.events[0]->flow().source().port(), 40000u);
  EXPECT_EQ(t.evictions(), 1u);
  EXPECT_EQ(t.tracked(), 1u);
  // A later scan that still does not see the second: gone too.
  FlowScanResult next = t.onScan({}, 22 * kSec, 22 * kSec);
  ASSERT_EQ(next.events.size(), 1u);
  EXPECT_EQ(next.events[0]->flow().end_reason(), "evicted");
  EXPECT_EQ(next.events[0]->flow().source().port(), 40002u);
  EXPECT_EQ(t.evictions(), 2u);
  EXPECT_EQ(t.tracked(), 0u);
}

TEST_F(FlowTrackerTest, TrackedFollowsRecordsScansAndEnds) {
  FlowTracker t = tracker();
  EXPECT_EQ(t.tracked(), 0u);
  const vigil_flow_key a = tcpKey();
  const vigil_flow_key b = flowKey(kClient, 5353, kServer, 53, kUdp);
  const vigil_flow_key c = flowKey(kClient, 1, kServer, 1, kIcmp);
  ASSERT_NE(accept(t, bytesOf(newRecord(a, 10 * kSec))), nullptr);
  EXPECT_EQ(t.tracked(), 1u);
  Entries entries{{a, flowValue(10 * kSec, 10 * kSec)},
                  {b, flowValue(10 * kSec, 10 * kSec)},
                  {c, flowValue(10 * kSec, 40 * kSec)}};
  FlowScanResult s1 = t.onScan(entries, 41 * kSec, 41 * kSec);
  EXPECT_EQ(s1.events.size(), 2u);  // b and c are new; a was announced by its record
  EXPECT_EQ(t.tracked(), 3u);
  FlowScanResult s2 = t.onScan(entries, 71 * kSec, 71 * kSec);  // b idle 61 s; c 31 s
  ASSERT_EQ(s2.events.size(), 1u);
  EXPECT_EQ(s2.events[0]->flow().protocol(), "udp");
  EXPECT_EQ(t.tracked(), 2u);
  FlowScanResult s3 = t.onScan(Entries{entries[0]}, 72 * kSec, 72 * kSec);  // c evicted
  ASSERT_EQ(s3.events.size(), 1u);
  EXPECT_EQ(s3.events[0]->flow().end_reason(), "evicted");
  EXPECT_EQ(s3.events[0]->flow().protocol(), "icmp");
  EXPECT_EQ(t.tracked(), 1u);
  EXPECT_EQ(t.evictions(), 1u);
}

// ---- owners ----------------------------------------------------------------------------------

TEST_F(FlowTrackerTest, OwnerOfTheConnectedSocketComesFirst) {
  addOwner(sockKey(kClient, 40000, kServer, 443, kTcp), 100, "curl", 7001, 1000);
  addOwner(sockKey(kClient, 40000, kZero, 0, kTcp), 200, "bound");
  addOwner(sockKey(kZero, 40000, kZero, 0, kTcp), 300, "any");
  binaries[100] = "/usr/bin/curl";
  cgroupPaths[7001] = "/user.slice/session-1.scope";
  FlowTracker t = tracker();
  EventPtr ev = accept(t, bytesOf(newRecord()));
  ASSERT_NE(ev, nullptr);
  const v1::FlowEndpoint& s = ev->flow().source();
  EXPECT_EQ(s.ip(), "10.0.0.1");
  EXPECT_EQ(s.port(), 40000u);
  EXPECT_EQ(s.pid(), 100u);
  EXPECT_EQ(s.uid(), 1000u);
  EXPECT_EQ(s.comm(), "curl");
  EXPECT_EQ(s.cgroup_id(), 7001u);
  EXPECT_EQ(s.binary(), "/usr/bin/curl");
  EXPECT_EQ(s.exec_id(), "exec-100");
  EXPECT_EQ(s.cgroup_path(), "/user.slice/session-1.scope");
  EXPECT_EQ(ev->flow().destination().pid(), 0u);
  EXPECT_EQ(ev->flow().destination().comm(), "");
  // The source with one query; the destination (not local) with all three.
  ASSERT_EQ(ownerQueries.size(), 4u);
  EXPECT_EQ(keyBytes(ownerQueries[0]), keyBytes(sockKey(kClient, 40000, kServer, 443, kTcp)));
  EXPECT_EQ(keyBytes(ownerQueries[1]), keyBytes(sockKey(kServer, 443, kClient, 40000, kTcp)));
  EXPECT_EQ(keyBytes(ownerQueries[2]), keyBytes(sockKey(kServer, 443, kZero, 0, kTcp)));
  EXPECT_EQ(keyBytes(ownerQueries[3]), keyBytes(sockKey(kZero, 443, kZero, 0, kTcp)));
  EXPECT_EQ(described, (std::vector<uint32_t>{100}));
}

TEST_F(FlowTrackerTest, OwnerBoundToTheLocalAddressComesSecond) {
  addOwner(sockKey(kClient, 40000, kZero, 0, kUdp), 200, "dig");
  addOwner(sockKey(kZero, 40000, kZero, 0, kUdp), 300, "any");
  FlowTracker t = tracker();
  EventPtr ev = accept(t, bytesOf(newRecord(flowKey(kClient, 40000, kServer, 53, kUdp))));
  ASSERT_NE(ev, nullptr);
  EXPECT_EQ(ev->flow().source().pid(), 200u);
  EXPECT_EQ(ev->flow().source().comm(), "dig");
  ASSERT_GE(ownerQueries.size(), 2u);
  EXPECT_EQ(keyBytes(ownerQueries[0]), keyBytes(sockKey(kClient, 40000, kServer, 53, kUdp)));
  EXPECT_EQ(keyBytes(ownerQueries[1]), keyBytes(sockKey(kClient, 40000, kZero, 0, kUdp)));
  EXPECT_EQ(ownerQueries.size(), 5u);  // 2 for the source, 3 for the destination
}

TEST_F(FlowTrackerTest, OwnerBoundToAnyAddressComesLast) {
  addOwner(sockKey(kZero, 40000, kZero, 0, kUdp), 300, "any");
  // The same port on another protocol is another socket.
  addOwner(sockKey(kZero, 53, kZero, 0, kTcp), 999, "tcp-dns");
  FlowTracker t = tracker();
  EventPtr ev = accept(t, bytesOf(newRecord(flowKey(kClient, 40000, kServer, 53, kUdp))));
  ASSERT_NE(ev, nullptr);
  EXPECT_EQ(ev->flow().source().pid(), 300u);
  EXPECT_EQ(ev->flow().source().comm(), "any");
  EXPECT_EQ(ev->flow().destination().pid(), 0u);
  ASSERT_EQ(ownerQueries.size(), 6u);
  EXPECT_EQ(keyBytes(ownerQueries[2]), keyBytes(sockKey(kZero, 40000, kZero, 0, kUdp)));
}

TEST_F(FlowTrackerTest, SourceEndIsLocalForTheSourceOwner) {
  // The server (end b) spoke first; its owner is looked up with b as the local end.
  addOwner(sockKey(kServer, 443, kClient, 40000, kTcp), 400, "nginx", 8002, 33);
  addOwner(sockKey(kClient, 40000, kServer, 443, kTcp), 100, "curl", 7001, 1000);
  vigil_flow_new_record r = newRecord();
  r.origin = VIGIL_FLOW_BA;
  FlowTracker t = tracker();
  EventPtr ev = accept(t, bytesOf(r));
  ASSERT_NE(ev, nullptr);
  EXPECT_EQ(ev->flow().source().ip(), "10.0.0.2");
  EXPECT_EQ(ev->flow().source().pid(), 400u);
  EXPECT_EQ(ev->flow().source().comm(), "nginx");
  EXPECT_EQ(ev->flow().source().uid(), 33u);
  EXPECT_EQ(ev->flow().source().cgroup_id(), 8002u);
  EXPECT_EQ(ev->flow().destination().ip(), "10.0.0.1");
  EXPECT_EQ(ev->flow().destination().pid(), 100u);
  EXPECT_EQ(ev->flow().destination().comm(), "curl");
  ASSERT_EQ(ownerQueries.size(), 2u);
  EXPECT_EQ(keyBytes(ownerQueries[0]), keyBytes(sockKey(kServer, 443, kClient, 40000, kTcp)));
  EXPECT_EQ(keyBytes(ownerQueries[1]), keyBytes(sockKey(kClient, 40000, kServer, 443, kTcp)));
  EXPECT_EQ(described, (std::vector<uint32_t>{400, 100}));
}

TEST_F(FlowTrackerTest, CommOfSixteenCharactersHasNoNul) {
  addOwner(sockKey(kClient, 40000, kServer, 443, kTcp), 100, "abcdefghijklmnop");
  FlowTracker t = tracker();
  EventPtr ev = accept(t, bytesOf(newRecord()));
  ASSERT_NE(ev, nullptr);
  EXPECT_EQ(ev->flow().source().comm(), "abcdefghijklmnop");
  EXPECT_EQ(ev->flow().source().comm().size(), 16u);
}

TEST_F(FlowTrackerTest, DescribesAgainWhileBinaryOrCgroupPathIsMissing) {
  addOwner(sockKey(kClient, 40000, kServer, 443, kTcp), 100, "curl", 7001);
  FlowTracker t = tracker();
  ASSERT_NE(accept(t, bytesOf(newRecord(tcpKey(), 10 * kSec))), nullptr);
  EXPECT_EQ(described, (std::vector<uint32_t>{100}));
  // The agent learns of the exec, not yet of the cgroup.
  binaries[100] = "/usr/bin/curl";
  vigil_flow_value v = flowValue(10 * kSec, 39 * kSec);
  FlowScanResult up = t.onScan(Entries{{tcpKey(), v}}, 40 * kSec, 40 * kSec);
  ASSERT_EQ(up.events.size(), 1u);
  EXPECT_EQ(up.events[0]->flow().event_type(), v1::FLOW_UPDATE);
  EXPECT_EQ(up.events[0]->flow().source().binary(), "/usr/bin/curl");
  EXPECT_EQ(up.events[0]->flow().source().cgroup_path(), "");
  EXPECT_EQ(up.events[0]->flow().source().pid(), 100u);
  EXPECT_EQ(described, (std::vector<uint32_t>{100, 100}));
  // Then of the cgroup.
  cgroupPaths[7001] = "/user.slice";
  v.last_ns = 69 * kSec;
  FlowScanResult up2 = t.onScan(Entries{{tcpKey(), v}}, 70 * kSec, 70 * kSec);
  ASSERT_EQ(up2.events.size(), 1u);
  EXPECT_EQ(up2.events[0]->flow().source().binary(), "/usr/bin/curl");
  EXPECT_EQ(up2.events[0]->flow().source().cgroup_path(), "/user.slice");
  EXPECT_EQ(described, (std::vector<uint32_t>{100, 100, 100}));
  // Everything known: not described again, and the event still carries it.
  v.tcp_flags = VIGIL_TCP_RST;
  FlowScanResult end = t.onScan(Entries{{tcpKey(), v}}, 71 * kSec, 71 * kSec);
  ASSERT_EQ(end.events.size(), 1u);
  EXPECT_EQ(end.events[0]->flow().end_reason(), "rst");
  EXPECT_EQ(end.events[0]->flow().source().binary(), "/usr/bin/curl");
  EXPECT_EQ(end.events[0]->flow().source().exec_id(), "exec-100");
  EXPECT_EQ(end.events[0]->flow().source().cgroup_path(), "/user.slice");
  EXPECT_EQ(described, (std::vector<uint32_t>{100, 100, 100}));
}

TEST_F(FlowTrackerTest, OwnerFoundOnALaterEvent) {
  FlowTracker t = tracker();
  ASSERT_NE(accept(t, bytesOf(newRecord(tcpKey(), 10 * kSec))), nullptr);
  EXPECT_EQ(ownerQueries.size(), 6u);  // three tries for each end
  EXPECT_TRUE(described.empty());
  addOwner(sockKey(kServer, 443, kZero, 0, kTcp), 400, "nginx", 8002, 33);
  vigil_flow_value v = flowValue(10 * kSec, 11 * kSec);
  v.tcp_flags = VIGIL_TCP_RST;
  FlowScanResult end = t.onScan(Entries{{tcpKey(), v}}, 12 * kSec, 12 * kSec);
  ASSERT_EQ(end.events.size(), 1u);
  EXPECT_EQ(end.events[0]->flow().source().pid(), 0u);
  EXPECT_EQ(end.events[0]->flow().destination().pid(), 400u);
  EXPECT_EQ(end.events[0]->flow().destination().comm(), "nginx");
  EXPECT_EQ(end.events[0]->flow().destination().ip(), "10.0.0.2");
  EXPECT_EQ(end.events[0]->flow().destination().port(), 443u);
  EXPECT_EQ(ownerQueries.size(), 6u + 3u + 2u);
  EXPECT_EQ(described, (std::vector<uint32_t>{400}));
}

TEST_F(FlowTrackerTest, OwnedEndpointIsNotLookedUpAgain) {
  addOwner(sockKey(kClient, 40000, kServer, 443, kTcp), 100, "curl", 7001);
  binaries[100] = "/usr/bin/curl";
  cgroupPaths[7001] = "/user.slice";
  FlowTracker t = tracker();
  ASSERT_NE(accept(t, bytesOf(newRecord(tcpKey(), 10 * kSec))), nullptr);
  EXPECT_EQ(ownerQueries.size(), 4u);
  // The socket is gone from the owner table by the time the flow ends: still attributed.
  owners.clear();
  vigil_flow_value v = flowValue(10 * kSec, 11 * kSec);
  v.tcp_flags = VIGIL_TCP_FIN | (VIGIL_TCP_FIN << 8);
  FlowScanResult end = t.onScan(Entries{{tcpKey(), v}}, 12 * kSec, 12 * kSec);
  ASSERT_EQ(end.events.size(), 1u);
  EXPECT_EQ(end.events[0]->flow().end_reason(), "fin");
  EXPECT_EQ(end.events[0]->flow().source().pid(), 100u);
  EXPECT_EQ(end.events[0]->flow().source().comm(), "curl");
  EXPECT_EQ(ownerQueries.size(), 4u + 3u);  // the destination only
  EXPECT_EQ(described, (std::vector<uint32_t>{100}));
}

TEST_F(FlowTrackerTest, EvictedFlowKeepsItsOwners) {
  addOwner(sockKey(kClient, 40000, kServer, 443, kTcp), 100, "curl", 7001);
  FlowTracker t = tracker();
  ASSERT_NE(accept(t, bytesOf(newRecord(tcpKey(), 10 * kSec))), nullptr);
  owners.clear();
  FlowScanResult res = t.onScan({}, 11 * kSec, 11 * kSec);
  ASSERT_EQ(res.events.size(), 1u);
  EXPECT_EQ(res.events[0]->flow().end_reason(), "evicted");
  EXPECT_EQ(res.events[0]->flow().source().pid(), 100u);
  EXPECT_EQ(res.events[0]->flow().source().comm(), "curl");
}

// ---- XDP drops as flows ----------------------------------------------------------------------

v1::Event xdpDrop(const std::string& verdict) {
  v1::Event ev;
  ev.mutable_time()->set_seconds(1'795'564'805);
  ev.mutable_time()->set_nanos(123);
  ev.set_node_name("node-7");
  ev.set_type(v1::EVENT_TYPE_DROP);
  v1::DropEvent* d = ev.mutable_drop();
  d->set_policy("edge-filter");
  d->set_rule("no-ssh");
  d->set_verdict(verdict);
  d->set_interface("eth0");
  d->set_ifindex(2);
  d->set_protocol("tcp");
  d->set_source_ip("203.0.113.9");
  d->set_destination_ip("10.0.0.1");
  d->set_source_port(40001);
  d->set_destination_port(22);
  d->set_length(74);
  d->set_fragment(true);
  d->set_suppressed(9);
  return ev;
}

TEST(FlowTrackerXdp, DroppedWithEveryField) {
  EventPtr ev = FlowTracker::fromXdpDrop(xdpDrop("dropped"));
  ASSERT_NE(ev, nullptr);
  EXPECT_EQ(ev->type(), v1::EVENT_TYPE_FLOW);
  EXPECT_EQ(ev->node_name(), "node-7");
  EXPECT_EQ(ev->time().seconds(), 1'795'564'805);
  EXPECT_EQ(ev->time().nanos(), 123);
  EXPECT_FALSE(ev->has_drop());
  ASSERT_TRUE(ev->has_flow());
  const v1::Flow& f = ev->flow();
  EXPECT_EQ(f.event_type(), v1::FLOW_DROP);
  EXPECT_EQ(f.verdict(), v1::DROPPED);
  EXPECT_EQ(f.drop_reason(), "VIGIL_XDP_POLICY");
  EXPECT_EQ(f.policy(), "edge-filter");
  EXPECT_EQ(f.rule(), "no-ssh");
  EXPECT_EQ(f.protocol(), "tcp");
  EXPECT_EQ(f.source().ip(), "203.0.113.9");
  EXPECT_EQ(f.source().port(), 40001u);
  EXPECT_EQ(f.destination().ip(), "10.0.0.1");
  EXPECT_EQ(f.destination().port(), 22u);
  EXPECT_EQ(f.interface(), "eth0");
  EXPECT_EQ(f.ifindex(), 2u);
  EXPECT_EQ(f.direction(), "ingress");
  EXPECT_EQ(f.length(), 74u);
  EXPECT_EQ(f.suppressed(), 9u);
  EXPECT_EQ(f.end_reason(), "");
  EXPECT_TRUE(f.tcp_flags().empty());
}

TEST(FlowTrackerXdp, VerdictsAndReasons) {
  struct Case {
    const char* verdict;
    v1::Verdict want;
    const char* reason;
  };
  for (const Case& c : {Case{"dropped", v1::DROPPED, "VIGIL_XDP_POLICY"},
                        Case{"audit", v1::AUDIT, "VIGIL_XDP_POLICY"},
                        Case{"rate-limited", v1::DROPPED, "VIGIL_XDP_RATE_LIMIT"},
                        Case{"rate-limit-audit", v1::AUDIT, "VIGIL_XDP_RATE_LIMIT"}}) {
    EventPtr ev = FlowTracker::fromXdpDrop(xdpDrop(c.verdict));
    ASSERT_NE(ev, nullptr) << c.verdict;
    EXPECT_EQ(ev->flow().verdict(), c.want) << c.verdict;
    EXPECT_EQ(ev->flow().drop_reason(), c.reason) << c.verdict;
    EXPECT_EQ(ev->flow().event_type(), v1::FLOW_DROP) << c.verdict;
  }
}

TEST(FlowTrackerXdp, Ipv6WithoutPorts) {
  v1::Event drop = xdpDrop("audit");
  drop.mutable_drop()->set_protocol("icmpv6");
  drop.mutable_drop()->set_source_ip("2001:db8::1");
  drop.mutable_drop()->set_destination_ip("2001:db8::2");
  drop.mutable_drop()->set_source_port(0);
  drop.mutable_drop()->set_destination_port(0);
  drop.mutable_drop()->set_interface("if9");
  drop.mutable_drop()->set_ifindex(9);
  drop.mutable_drop()->set_rule("");
  EventPtr ev = FlowTracker::fromXdpDrop(drop);
  ASSERT_NE(ev, nullptr);
  EXPECT_EQ(ev->flow().protocol(), "icmpv6");
  EXPECT_EQ(ev->flow().source().ip(), "2001:db8::1");
  EXPECT_EQ(ev->flow().destination().ip(), "2001:db8::2");
  EXPECT_EQ(ev->flow().source().port(), 0u);
  EXPECT_EQ(ev->flow().interface(), "if9");
  EXPECT_EQ(ev->flow().ifindex(), 9u);
  EXPECT_EQ(ev->flow().rule(), "");
  EXPECT_EQ(ev->flow().verdict(), v1::AUDIT);
}

// ---- TCP flag names --------------------------------------------------------------------------

TEST(FlowTrackerFlags, NoFlags) { EXPECT_TRUE(tcpFlagNames(0).empty()); }

TEST(FlowTrackerFlags, EachBitAlone) {
  const std::pair<uint8_t, const char*> bits[] = {{0x01, "FIN"}, {0x02, "SYN"}, {0x04, "RST"},
                                                  {0x08, "PSH"}, {0x10, "ACK"}, {0x20, "URG"},
                                                  {0x40, "ECE"}, {0x80, "CWR"}};
  for (auto [bit, name] : bits)
    EXPECT_EQ(tcpFlagNames(bit), (std::vector<std::string>{name})) << int(bit);
}

TEST(FlowTrackerFlags, OrderOfSeveral) {
  EXPECT_EQ(tcpFlagNames(0xff),
            (std::vector<std::string>{"SYN", "ACK", "PSH", "FIN", "RST", "URG", "ECE", "CWR"}));
  EXPECT_EQ(tcpFlagNames(VIGIL_TCP_SYN | VIGIL_TCP_ACK), (std::vector<std::string>{"SYN", "ACK"}));
  EXPECT_EQ(tcpFlagNames(VIGIL_TCP_FIN | VIGIL_TCP_ACK | VIGIL_TCP_PSH),
            (std::vector<std::string>{"ACK", "PSH", "FIN"}));
  EXPECT_EQ(tcpFlagNames(VIGIL_TCP_RST | VIGIL_TCP_ACK), (std::vector<std::string>{"ACK", "RST"}));
}

}  // namespace
}  // namespace vigil::events
