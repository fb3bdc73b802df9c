// XDP rules -> the kernel rule set (bpf/abi/vigil/xdp.h): slots, entry fields, expansion,
// ranks, interface scopes, the two tries' candidate lists and every compile error. Policies are
// built in code and interfaces come from a fake host, so neither the YAML parser nor the
// kernel is involved. A reference model of the kernel's lookup is checked against brute force
// on random rules and packets.

#include "policy/xdp_rules.hpp"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <net/if.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <iostream>
#include <map>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "policy/exec_rules.hpp"
#include "policy/model.hpp"

namespace vigil::policy {
namespace {

using Addr = std::array<uint8_t, 16>;

constexpr const char* kFile = "xdp.yaml";
constexpr uint64_t kAll = kScopeAllButLoopback;

Position at(int line, int column = 7) { return Position{kFile, line, column}; }

// The test's own bit arithmetic, so that the compiler's is not checked against itself.
Addr onesPrefix(uint32_t bits) {
  Addr m{};
  for (uint32_t b = 0; b < bits && b < 128; b++) m[b / 8] |= static_cast<uint8_t>(0x80 >> (b % 8));
  return m;
}

Addr andAddr(const Addr& a, const Addr& m) {
  Addr out{};
  for (size_t i = 0; i < out.size(); i++) out[i] = a[i] & m[i];
  return out;
}

Addr toAddr(const uint8_t (&bytes)[16]) {
  Addr a{};
  std::memcpy(a.data(), bytes, a.size());
  return a;
}

// "10.1.0.0/16" or "2001:db8::/32", as the parser would produce it (IPv4-mapped, host bits 0).
Cidr cidr(const std::string& text, int line = 0) {
  const size_t slash = text.find('/');
  const std::string address = text.substr(0, slash);
  Cidr c;
  c.prefix = std::stoi(text.substr(slash + 1));
  c.position = at(line);
  uint8_t v4[4];
  if (inet_pton(AF_INET, address.c_str(), v4) == 1) {
    c.v4 = true;
    c.addr[10] = c.addr[11] = 0xff;
    std::memcpy(c.addr.data() + 12, v4, 4);
  } else {
    EXPECT_EQ(inet_pton(AF_INET6, address.c_str(), c.addr.data()), 1) << text;
  }
  c.addr = andAddr(c.addr, onesPrefix(c.v4 ? 96 + c.prefix : c.prefix));
  return c;
}

Addr address(const std::string& text) {
  Cidr c = cidr(text + (text.find(':') == std::string::npos ? "/32" : "/128"));
  return c.addr;
}

LpmPrefix key(const std::string& text) {
  Cidr c = cidr(text);
  return LpmPrefix{c.addr, static_cast<uint32_t>(c.v4 ? 96 + c.prefix : c.prefix)};
}

PortRange ports(uint16_t lo, uint16_t hi, int line = 0) { return PortRange{lo, hi, at(line)}; }

XdpRule rule(const std::string& name, int line, XdpAction action = XdpAction::drop) {
  XdpRule r;
  r.name = name;
  r.action = action;
  r.position = at(line, 7);
  return r;
}

// "r" and 7 -> "r7" (one function, so that GCC 12 sees no literal + string temporaries, which
// it warns about wrongly with -Wrestrict).
std::string numbered(const std::string& stem, int i) { return stem + std::to_string(i); }

// A rule on one source block.
XdpRule sourceRule(const std::string& name, int line, const std::string& block) {
  XdpRule r = rule(name, line);
  r.match.sources = {cidr(block, line + 2)};
  return r;
}

Policy policy(const std::string& name, std::vector<XdpRule> rules,
              std::vector<std::string> interfaces = {}, Mode mode = Mode::enforce, int line = 1) {
  Policy p;
  p.name = name;
  p.mode = mode;
  p.position = at(line, 1);
  XdpSpec spec;
  spec.position = at(line + 5, 3);
  for (size_t i = 0; i < interfaces.size(); i++) {
    spec.interfacePositions.push_back(at(line + 6, 20 + 8 * static_cast<int>(i)));
  }
  spec.interfaces = std::move(interfaces);
  spec.rules = std::move(rules);
  p.xdp = std::move(spec);
  return p;
}

// A node's interfaces: lo, eth0..eth2, and veth<N> for any N (ifindex 100 + N).
struct FakeInterfaces {
  std::map<std::string, InterfaceInfo> byName = {
      {"lo", {1, true}}, {"eth0", {2, false}}, {"eth1", {3, false}}, {"eth2", {4, false}}};
  mutable int lookups = 0;

  XdpResolver resolver() const {
    return XdpResolver{[this](const std::string& name) -> std::optional<InterfaceInfo> {
      lookups++;
      if (auto it = byName.find(name); it != byName.end()) return it->second;
      if (name.rfind("veth", 0) == 0 && name.size() > 4) {
        return InterfaceInfo{100 + static_cast<uint32_t>(std::stoul(name.substr(4))), false};
      }
      return std::nullopt;
    }};
  }
};

std::vector<const Policy*> pointers(const std::vector<Policy>& policies) {
  std::vector<const Policy*> out;
  for (const auto& p : policies) out.push_back(&p);
  return out;
}

std::string issuesText(const std::vector<ParseIssue>& issues) {
  std::string out;
  for (const auto& i : issues) out += i.str() + "\n";
  return out;
}

XdpCompileResult compile(const std::vector<Policy>& policies, SlotTable& slots,
                         const FakeInterfaces& host = FakeInterfaces{}) {
  return compileXdpRules(pointers(policies), slots, host.resolver());
}

XdpCompileResult compile(const std::vector<Policy>& policies,
                         const FakeInterfaces& host = FakeInterfaces{}) {
  SlotTable slots(VIGIL_XDP_MAX_RULES);
  return compile(policies, slots, host);
}

// Compiles what must compile; the rule set, or an empty one after a failed assertion.
CompiledXdp compileOk(const std::vector<Policy>& policies,
                      const FakeInterfaces& host = FakeInterfaces{}) {
  XdpCompileResult r = compile(policies, host);
  EXPECT_TRUE(r.errors.empty()) << issuesText(r.errors);
  return r.rules;
}

uint32_t slotOf(const CompiledXdp& c, const std::string& policyName, const std::string& ruleName) {
  for (const auto& [slot, ref] : c.slots) {
    if (ref.policy == policyName && ref.rule == ruleName) return slot;
  }
  ADD_FAILURE() << "no slot for " << policyName << "/" << ruleName;
  return VIGIL_XDP_MAX_RULES;
}

// The entry indexes of one rule, in creation order.
std::vector<uint32_t> entriesOf(const CompiledXdp& c, const std::string& policyName,
                                const std::string& ruleName) {
  const uint32_t slot = slotOf(c, policyName, ruleName);
  std::vector<uint32_t> out;
  for (uint32_t i = 0; i < c.entries.size(); i++) {
    if (c.entries[i].slot == slot) out.push_back(i);
  }
  return out;
}

const vigil_xdp_entry& onlyEntry(const CompiledXdp& c, const std::string& policyName,
                                 const std::string& ruleName) {
  static const vigil_xdp_entry kNone{};
  auto idx = entriesOf(c, policyName, ruleName);
  EXPECT_EQ(idx.size(), 1u) << policyName << "/" << ruleName;
  return idx.empty() ? kNone : c.entries[idx[0]];
}

std::vector<uint32_t> listAt(const std::map<LpmPrefix, std::vector<uint32_t>>& trie,
                             const LpmPrefix& k) {
  auto it = trie.find(k);
  if (it == trie.end()) {
    ADD_FAILURE() << "no trie key /" << k.bits;
    return {};
  }
  return it->second;
}

bool hasIssue(const std::vector<ParseIssue>& issues, const Position& pos,
              const std::string& fragment) {
  for (const auto& i : issues) {
    if (i.position.str() == pos.str() && i.message.find(fragment) != std::string::npos) return true;
  }
  return false;
}

// --- slots and rule references ------------------------------------------------------------

TEST(XdpRules, NoXdpPoliciesGiveAnEmptyRuleSet) {
  Policy execOnly;
  execOnly.name = "exec-only";
  CompiledXdp c = compileOk({execOnly});
  EXPECT_TRUE(c.empty());
  EXPECT_TRUE(c.entries.empty());
  EXPECT_TRUE(c.sourceTrie.empty());
  EXPECT_TRUE(c.destinationTrie.empty());
  EXPECT_FALSE(c.allInterfaces);
  EXPECT_FALSE(c.scoped());
  EXPECT_TRUE(compileOk({}).empty());
}

TEST(XdpRules, EveryRuleGetsItsOwnSlotAndReference) {
  XdpRule plain = rule("plain", 10);
  plain.match.sources = {cidr("10.0.0.0/8")};
  XdpRule passing = rule("passing", 14, XdpAction::pass);
  passing.match.sources = {cidr("10.1.0.0/16")};
  XdpRule audited = rule("audited", 18);
  audited.mode = Mode::audit;
  audited.match.protocol = Protocol::udp;
  XdpRule limited = rule("limited", 22);
  limited.rateLimit = RateLimit{100, 0, 32, 64, at(24)};
  XdpRule enforced = rule("enforced", 30);
  enforced.mode = Mode::enforce;
  enforced.match.protocol = Protocol::tcp;
  XdpRule inherits = rule("inherits", 34);
  inherits.match.protocol = Protocol::icmp;

  Policy other;
  other.name = "b-exec";  // no xdp: skipped
  CompiledXdp c = compileOk({policy("a", {plain, passing, audited, limited}), other,
                             policy("c", {enforced, inherits}, {}, Mode::audit, 40)});
  ASSERT_EQ(c.slots.size(), 6u);
  std::set<uint32_t> distinct;
  for (const auto& [slot, ref] : c.slots) distinct.insert(slot);
  EXPECT_EQ(distinct.size(), 6u);

  auto ref = [&](const std::string& p, const std::string& r) {
    return c.slots.at(slotOf(c, p, r));
  };
  EXPECT_EQ(ref("a", "plain").action, XdpAction::drop);
  EXPECT_EQ(ref("a", "plain").mode, Mode::enforce);
  EXPECT_FALSE(ref("a", "plain").rateLimited);
  EXPECT_EQ(ref("a", "passing").action, XdpAction::pass);
  EXPECT_EQ(ref("a", "audited").mode, Mode::audit);
  EXPECT_TRUE(ref("a", "limited").rateLimited);
  EXPECT_EQ(ref("c", "enforced").mode, Mode::enforce);  // the rule's mode wins
  EXPECT_EQ(ref("c", "inherits").mode, Mode::audit);    // the policy's
  EXPECT_EQ(ref("c", "inherits").policy, "c");
  EXPECT_EQ(ref("c", "inherits").rule, "inherits");

  // Each entry carries its rule's slot.
  for (const auto& [slot, r] : c.slots) {
    EXPECT_FALSE(entriesOf(c, r.policy, r.rule).empty()) << r.rule;
  }
}

TEST(XdpRules, SlotsStayWithTheirRuleAcrossCompilesAndFreedOnesAreReused) {
  auto ruleSet = [](std::vector<std::string> names) {
    std::vector<XdpRule> rules;
    int line = 10;
    for (const auto& n : names) {
      XdpRule r = rule(n, line += 4);
      r.match.protocol = Protocol::tcp;
      rules.push_back(r);
    }
    return std::vector<Policy>{policy("p", rules)};
  };
  SlotTable slots(VIGIL_XDP_MAX_RULES);
  XdpCompileResult first = compile(ruleSet({"r1", "r2"}), slots);
  ASSERT_TRUE(first.errors.empty()) << issuesText(first.errors);
  const uint32_t r1 = slotOf(first.rules, "p", "r1"), r2 = slotOf(first.rules, "p", "r2");
  EXPECT_EQ(slots.commit(first.rules.slots), (std::vector<uint32_t>{r1, r2}));

  XdpCompileResult same = compile(ruleSet({"r1", "r2"}), slots);
  EXPECT_EQ(slotOf(same.rules, "p", "r1"), r1);
  EXPECT_EQ(slotOf(same.rules, "p", "r2"), r2);
  EXPECT_TRUE(slots.commit(same.rules.slots).empty());

  // r1 goes away: r2 keeps its slot; r3 is new, and r1's slot is still held until the commit.
  XdpCompileResult second = compile(ruleSet({"r2", "r3"}), slots);
  ASSERT_TRUE(second.errors.empty());
  EXPECT_EQ(slotOf(second.rules, "p", "r2"), r2);
  const uint32_t r3 = slotOf(second.rules, "p", "r3");
  EXPECT_NE(r3, r1);
  EXPECT_EQ(slots.commit(second.rules.slots), std::vector<uint32_t>{r3});

  // After the commit r1's slot is free again and goes to the next new rule.
  XdpCompileResult third = compile(ruleSet({"r2", "r3", "r4"}), slots);
  ASSERT_TRUE(third.errors.empty());
  EXPECT_EQ(slotOf(third.rules, "p", "r4"), r1);
  EXPECT_EQ(slotOf(third.rules, "p", "r2"), r2);
  EXPECT_EQ(slotOf(third.rules, "p", "r3"), r3);
}

// --- entry fields ------------------------------------------------------------------------

TEST(XdpRules, Ipv4SourceEntry) {
  XdpRule r = rule("v4", 10);
  r.match.sources = {cidr("10.1.0.0/16")};
  CompiledXdp c = compileOk({policy("p", {r})});
  ASSERT_EQ(c.entries.size(), 1u);
  const vigil_xdp_entry& e = c.entries[0];
  EXPECT_EQ(toAddr(e.src_net), address("10.1.0.0"));
  EXPECT_EQ(toAddr(e.src_mask), onesPrefix(112));
  EXPECT_EQ(toAddr(e.dst_net), Addr{});
  EXPECT_EQ(toAddr(e.dst_mask), Addr{});
  EXPECT_EQ(e.slot, slotOf(c, "p", "v4"));
  EXPECT_EQ(e.rank, 0u);
  EXPECT_EQ(e.scopes, kAll);
  EXPECT_EQ(e.proto, 0);
  EXPECT_EQ(e.action, VIGIL_XDP_ACT_DROP);
  EXPECT_EQ(e.flags, VIGIL_XDP_F_V4);
  EXPECT_EQ(e.port_lo, 0);
  EXPECT_EQ(e.port_hi, 0);
  EXPECT_EQ(e.rate_interval_ns, 0u);
  EXPECT_EQ(e.rate_burst_ns, 0u);

  ASSERT_EQ(c.sourceTrie.size(), 1u);
  EXPECT_EQ(c.sourceTrie.begin()->first, (LpmPrefix{address("10.1.0.0"), 112}));
  EXPECT_EQ(c.sourceTrie.begin()->second, std::vector<uint32_t>{0});
  EXPECT_TRUE(c.destinationTrie.empty());
  EXPECT_TRUE(c.allInterfaces);
  EXPECT_FALSE(c.scoped());
}

TEST(XdpRules, Ipv6DestinationEntry) {
  XdpRule r = rule("v6", 10, XdpAction::pass);
  r.match.destinations = {cidr("2001:db8:ab00::/40")};
  CompiledXdp c = compileOk({policy("p", {r})});
  ASSERT_EQ(c.entries.size(), 1u);
  const vigil_xdp_entry& e = c.entries[0];
  EXPECT_EQ(toAddr(e.src_mask), Addr{});
  EXPECT_EQ(toAddr(e.src_net), Addr{});
  EXPECT_EQ(toAddr(e.dst_net), address("2001:db8:ab00::"));
  EXPECT_EQ(toAddr(e.dst_mask), onesPrefix(40));
  EXPECT_EQ(e.action, VIGIL_XDP_ACT_PASS);
  EXPECT_EQ(e.flags, VIGIL_XDP_F_V6);
  EXPECT_TRUE(c.sourceTrie.empty());
  ASSERT_EQ(c.destinationTrie.size(), 1u);
  EXPECT_EQ(c.destinationTrie.begin()->first, (LpmPrefix{address("2001:db8:ab00::"), 40}));
  EXPECT_EQ(c.destinationTrie.begin()->second, std::vector<uint32_t>{0});
}

TEST(XdpRules, RuleWithoutAddressesMatchesEveryAddressFromTheSourceTrieRoot) {
  XdpRule r = rule("everything", 10);
  CompiledXdp c = compileOk({policy("p", {r})});
  ASSERT_EQ(c.entries.size(), 1u);
  const vigil_xdp_entry& e = c.entries[0];
  EXPECT_EQ(toAddr(e.src_mask), Addr{});
  EXPECT_EQ(toAddr(e.dst_mask), Addr{});
  EXPECT_EQ(e.flags, 0);  // both families
  EXPECT_EQ(e.proto, 0);
  ASSERT_EQ(c.sourceTrie.size(), 1u);
  EXPECT_EQ(c.sourceTrie.begin()->first, (LpmPrefix{Addr{}, 0}));
  EXPECT_TRUE(c.destinationTrie.empty());
}

TEST(XdpRules, Ipv4AndIpv6CatchAllBlocksKeepTheirFamily) {
  XdpRule v4 = rule("all-v4", 10);
  v4.match.sources = {cidr("0.0.0.0/0")};
  XdpRule v6 = rule("all-v6", 14);
  v6.match.destinations = {cidr("::/0")};
  CompiledXdp c = compileOk({policy("p", {v4, v6})});
  const vigil_xdp_entry& a = onlyEntry(c, "p", "all-v4");
  EXPECT_EQ(toAddr(a.src_mask), onesPrefix(96));  // still only IPv4-mapped addresses
  EXPECT_EQ(toAddr(a.src_net), address("0.0.0.0"));
  EXPECT_EQ(a.flags, VIGIL_XDP_F_V4);
  EXPECT_EQ(c.sourceTrie.count(LpmPrefix{address("0.0.0.0"), 96}), 1u);
  const vigil_xdp_entry& b = onlyEntry(c, "p", "all-v6");
  EXPECT_EQ(toAddr(b.dst_mask), Addr{});
  EXPECT_EQ(b.flags, VIGIL_XDP_F_V6);
  EXPECT_EQ(c.destinationTrie.count(LpmPrefix{Addr{}, 0}), 1u);
}

TEST(XdpRules, ProtocolsAndPorts) {
  XdpRule tcp = rule("tcp", 10);
  tcp.match.protocol = Protocol::tcp;
  tcp.match.ports = {ports(22, 22), ports(8000, 8080)};
  XdpRule udp = rule("udp", 14);
  udp.match.protocol = Protocol::udp;
  XdpRule icmp = rule("icmp", 18);
  icmp.match.protocol = Protocol::icmp;
  XdpRule icmp6 = rule("icmpv6", 22);
  icmp6.match.protocol = Protocol::icmpv6;
  XdpRule anyPorts = rule("any-l4-ports", 26);
  anyPorts.match.ports = {ports(53, 53)};
  CompiledXdp c = compileOk({policy("p", {tcp, udp, icmp, icmp6, anyPorts})});

  auto t = entriesOf(c, "p", "tcp");
  ASSERT_EQ(t.size(), 2u);
  EXPECT_EQ(c.entries[t[0]].proto, 6);
  EXPECT_EQ(c.entries[t[0]].flags, VIGIL_XDP_F_PORTS);
  EXPECT_EQ(c.entries[t[0]].port_lo, 22);
  EXPECT_EQ(c.entries[t[0]].port_hi, 22);
  EXPECT_EQ(c.entries[t[1]].proto, 6);
  EXPECT_EQ(c.entries[t[1]].port_lo, 8000);
  EXPECT_EQ(c.entries[t[1]].port_hi, 8080);

  const vigil_xdp_entry& u = onlyEntry(c, "p", "udp");
  EXPECT_EQ(u.proto, 17);
  EXPECT_EQ(u.flags, 0);
  const vigil_xdp_entry& i4 = onlyEntry(c, "p", "icmp");
  EXPECT_EQ(i4.proto, 1);
  EXPECT_EQ(i4.flags, VIGIL_XDP_F_V4);  // ICMP is IPv4's
  const vigil_xdp_entry& i6 = onlyEntry(c, "p", "icmpv6");
  EXPECT_EQ(i6.proto, 58);
  EXPECT_EQ(i6.flags, VIGIL_XDP_F_V6);
  const vigil_xdp_entry& dns = onlyEntry(c, "p", "any-l4-ports");
  EXPECT_EQ(dns.proto, 0);  // TCP or UDP
  EXPECT_EQ(dns.flags, VIGIL_XDP_F_PORTS);
  EXPECT_EQ(dns.port_lo, 53);
  EXPECT_EQ(dns.port_hi, 53);
}

TEST(XdpRules, AuditModeAndActions) {
  XdpRule inherits = rule("inherits", 10);
  XdpRule enforced = rule("enforced", 14, XdpAction::pass);
  enforced.mode = Mode::enforce;
  XdpRule audited = rule("audited", 20);
  audited.mode = Mode::audit;
  XdpRule plain = rule("plain", 24, XdpAction::pass);
  CompiledXdp c = compileOk({policy("a", {inherits, enforced}, {}, Mode::audit),
                             policy("b", {audited, plain}, {}, Mode::enforce, 18)});
  EXPECT_EQ(onlyEntry(c, "a", "inherits").flags, VIGIL_XDP_F_AUDIT);
  EXPECT_EQ(onlyEntry(c, "a", "inherits").action, VIGIL_XDP_ACT_DROP);
  EXPECT_EQ(onlyEntry(c, "a", "enforced").flags, 0);
  EXPECT_EQ(onlyEntry(c, "a", "enforced").action, VIGIL_XDP_ACT_PASS);
  EXPECT_EQ(onlyEntry(c, "b", "audited").flags, VIGIL_XDP_F_AUDIT);
  EXPECT_EQ(onlyEntry(c, "b", "plain").flags, 0);
}

TEST(XdpRules, RateLimitMath) {
  auto limited = [](const std::string& name, int line, uint64_t pps, uint64_t burst, int p4,
                    int p6) {
    XdpRule r = rule(name, line);
    r.match.protocol = Protocol::udp;
    r.rateLimit = RateLimit{pps, burst, p4, p6, at(line + 2)};
    return r;
  };
  CompiledXdp c = compileOk({policy(
      "p", {limited("default-burst", 10, 1000, 0, 32, 64), limited("odd", 20, 3, 10, 24, 48),
            limited("burst-one", 30, 50, 1, 16, 128), limited("very-fast", 40, 3000000000, 0, 0, 0),
            limited("per-network", 50, 1000000000, 5, 8, 56)})});
  const vigil_xdp_entry& d = onlyEntry(c, "p", "default-burst");
  EXPECT_EQ(d.flags, VIGIL_XDP_F_RATELIMIT);
  EXPECT_EQ(d.rate_interval_ns, 1000000u);
  EXPECT_EQ(d.rate_burst_ns, 999u * 1000000u);  // burst 0: the rate itself
  EXPECT_EQ(d.rate_prefix_v4, 32);
  EXPECT_EQ(d.rate_prefix_v6, 64);
  const vigil_xdp_entry& o = onlyEntry(c, "p", "odd");
  EXPECT_EQ(o.rate_interval_ns, 333333333u);  // integer division
  EXPECT_EQ(o.rate_burst_ns, 9u * 333333333u);
  EXPECT_EQ(o.rate_prefix_v4, 24);
  EXPECT_EQ(o.rate_prefix_v6, 48);
  const vigil_xdp_entry& b = onlyEntry(c, "p", "burst-one");
  EXPECT_EQ(b.rate_interval_ns, 20000000u);
  EXPECT_EQ(b.rate_burst_ns, 0u);
  EXPECT_EQ(b.rate_prefix_v4, 16);
  EXPECT_EQ(b.rate_prefix_v6, 128);
  const vigil_xdp_entry& f = onlyEntry(c, "p", "very-fast");
  EXPECT_EQ(f.rate_interval_ns, 1u);  // never 0
  EXPECT_EQ(f.rate_burst_ns, 2999999999u);
  const vigil_xdp_entry& n = onlyEntry(c, "p", "per-network");
  EXPECT_EQ(n.rate_interval_ns, 1u);
  EXPECT_EQ(n.rate_burst_ns, 4u);
  EXPECT_EQ(n.rate_prefix_v4, 8);
  EXPECT_EQ(n.rate_prefix_v6, 56);
  for (const auto& [slot, ref] : c.slots) EXPECT_TRUE(ref.rateLimited) << ref.rule;
}

// --- expansion ---------------------------------------------------------------------------

TEST(XdpRules, ExpansionIsTheCrossProductOfSameFamilyAddressesAndPortRanges) {
  XdpRule r = rule("cross", 10);
  r.match.sources = {cidr("10.0.0.0/8"), cidr("2001:db8::/32"), cidr("192.168.0.0/16")};
  r.match.destinations = {cidr("172.16.0.0/12"), cidr("fd00::/8")};
  r.match.protocol = Protocol::tcp;
  r.match.ports = {ports(80, 80), ports(443, 443)};
  CompiledXdp c = compileOk({policy("p", {r})});

  using Row = std::tuple<Addr, Addr, uint16_t, uint8_t>;  // src, dst, port, flags
  std::vector<Row> got;
  for (const auto& e : c.entries) {
    EXPECT_EQ(e.proto, 6);
    got.emplace_back(toAddr(e.src_net), toAddr(e.dst_net), e.port_lo, e.flags);
  }
  const uint8_t v4 = VIGIL_XDP_F_V4 | VIGIL_XDP_F_PORTS, v6 = VIGIL_XDP_F_V6 | VIGIL_XDP_F_PORTS;
  const Addr a10 = address("10.0.0.0"), a192 = address("192.168.0.0"), a172 = address("172.16.0.0"),
             db8 = address("2001:db8::"), fd = address("fd00::");
  // Sources outermost, then destinations, then ports; IPv4 x IPv6 pairs are left out.
  std::vector<Row> want = {{a10, a172, 80, v4}, {a10, a172, 443, v4}, {db8, fd, 80, v6},
                           {db8, fd, 443, v6},  {a192, a172, 80, v4}, {a192, a172, 443, v4}};
  EXPECT_EQ(got, want);
  // Every entry is indexed by its source.
  EXPECT_EQ(c.sourceTrie.size(), 3u);
  EXPECT_TRUE(c.destinationTrie.empty());
  EXPECT_EQ(listAt(c.sourceTrie, key("10.0.0.0/8")).size(), 2u);
}

TEST(XdpRules, SingleFamilyAddressesCombineWithOmittedOnes) {
  XdpRule r = rule("mixed", 10);
  r.match.destinations = {cidr("10.0.0.0/8"), cidr("2001:db8::/32")};
  r.match.ports = {ports(53, 53)};
  CompiledXdp c = compileOk({policy("p", {r})});
  ASSERT_EQ(c.entries.size(), 2u);
  EXPECT_EQ(c.entries[0].flags, VIGIL_XDP_F_V4 | VIGIL_XDP_F_PORTS);
  EXPECT_EQ(c.entries[1].flags, VIGIL_XDP_F_V6 | VIGIL_XDP_F_PORTS);
  EXPECT_EQ(c.destinationTrie.size(), 2u);
}

TEST(XdpRules, ProtocolOfOneFamilyLeavesTheOtherFamilysAddressesOut) {
  XdpRule ping = rule("ping", 10);
  ping.match.sources = {cidr("10.0.0.0/8"), cidr("2001:db8::/32")};
  ping.match.protocol = Protocol::icmp;
  XdpRule ping6 = rule("ping6", 14);
  ping6.match.destinations = {cidr("10.0.0.0/8"), cidr("2001:db8::/32")};
  ping6.match.protocol = Protocol::icmpv6;
  CompiledXdp c = compileOk({policy("p", {ping, ping6})});
  const vigil_xdp_entry& a = onlyEntry(c, "p", "ping");
  EXPECT_EQ(toAddr(a.src_net), address("10.0.0.0"));
  EXPECT_EQ(a.flags, VIGIL_XDP_F_V4);
  const vigil_xdp_entry& b = onlyEntry(c, "p", "ping6");
  EXPECT_EQ(toAddr(b.dst_net), address("2001:db8::"));
  EXPECT_EQ(b.flags, VIGIL_XDP_F_V6);
}

// --- rank and candidate lists ------------------------------------------------------------

TEST(XdpRules, RankPrefersTheLongestPrefixThenTheShorterOneThenTheRuleWrittenFirst) {
  XdpRule first24 = rule("first24", 10);
  first24.match.sources = {cidr("172.16.0.0/24")};
  XdpRule wide = rule("wide", 10);
  wide.match.sources = {cidr("10.0.0.0/8")};
  XdpRule any = rule("any", 14);
  XdpRule dst24 = rule("dst24", 18);
  dst24.match.destinations = {cidr("10.1.2.0/24")};
  XdpRule both = rule("src16-dst24", 22);
  both.match.sources = {cidr("10.1.0.0/16")};
  both.match.destinations = {cidr("10.1.2.0/24")};
  XdpRule src24 = rule("src24", 26);
  src24.match.sources = {cidr("192.168.1.0/24")};
  XdpRule v6 = rule("v6-64", 30);
  v6.match.sources = {cidr("2001:db8::/64")};
  XdpRule host = rule("host", 34);
  host.match.sources = {cidr("10.1.2.3/32")};
  host.match.ports = {ports(22, 22), ports(80, 90)};

  // Policy "a" comes first (the caller sorts by name), so its rule wins ties.
  CompiledXdp c =
      compileOk({policy("a", {first24}),
                 policy("p", {wide, any, dst24, both, src24, v6, host}, {}, Mode::enforce, 8)});
  std::vector<std::string> byRank(c.entries.size());
  for (const auto& e : c.entries) {
    ASSERT_LT(e.rank, byRank.size());
    ASSERT_TRUE(byRank[e.rank].empty()) << "rank " << e.rank << " given twice";
    byRank[e.rank] = c.slots.at(e.slot).rule + (e.port_lo ? ":" + std::to_string(e.port_lo) : "");
  }
  EXPECT_EQ(byRank, (std::vector<std::string>{"v6-64", "host:22", "host:80", "src16-dst24",
                                              "first24", "dst24", "src24", "wide", "any"}));
}

TEST(XdpRules, EachKeyListsTheEntriesOfEveryEnclosingKeyOfTheSameTrieByRank) {
  auto src = [](const std::string& name, int line, const std::string& block) {
    XdpRule r = rule(name, line);
    r.match.sources = {cidr(block)};
    return r;
  };
  auto dst = [](const std::string& name, int line, const std::string& block) {
    XdpRule r = rule(name, line);
    r.match.destinations = {cidr(block)};
    return r;
  };
  CompiledXdp c = compileOk({policy(
      "p", {src("A", 10, "10.0.0.0/8"), src("B", 12, "10.1.0.0/16"), src("C", 14, "10.1.2.0/24"),
            src("D", 16, "10.2.0.0/16"), rule("W", 18), src("E", 20, "2001:db8::/32"),
            src("F", 22, "2001:db8:1::/48"), src("A2", 24, "10.0.0.0/8"),
            src("V4", 26, "0.0.0.0/0"), src("J", 27, "10.5.3.0/24"), dst("G", 28, "10.1.0.0/16"),
            dst("H", 30, "10.1.2.0/24"), dst("I", 32, "10.3.0.0/16")})});
  auto e = [&](const std::string& r) { return entriesOf(c, "p", r).at(0); };
  using V = std::vector<uint32_t>;
  EXPECT_EQ(c.sourceTrie.size(), 9u);
  EXPECT_EQ(listAt(c.sourceTrie, LpmPrefix{Addr{}, 0}), V({e("W")}));
  EXPECT_EQ(listAt(c.sourceTrie, key("0.0.0.0/0")), V({e("W"), e("V4")}));
  EXPECT_EQ(listAt(c.sourceTrie, key("10.0.0.0/8")), V({e("A"), e("A2"), e("W"), e("V4")}));
  EXPECT_EQ(listAt(c.sourceTrie, key("10.1.0.0/16")),
            V({e("B"), e("A"), e("A2"), e("W"), e("V4")}));
  EXPECT_EQ(listAt(c.sourceTrie, key("10.1.2.0/24")),
            V({e("C"), e("B"), e("A"), e("A2"), e("W"), e("V4")}));
  // W and V4 tie (both /0 in their family's bits): the rule written first wins.
  // A sibling after a deeper key: the sweep must have left 10.1.0.0/16 behind.
  EXPECT_EQ(listAt(c.sourceTrie, key("10.2.0.0/16")),
            V({e("D"), e("A"), e("A2"), e("W"), e("V4")}));
  // 10.2.0.0/16 is on top of the stack then: shorter, but it does not enclose this one.
  EXPECT_EQ(listAt(c.sourceTrie, key("10.5.3.0/24")),
            V({e("J"), e("A"), e("A2"), e("W"), e("V4")}));
  EXPECT_EQ(listAt(c.sourceTrie, key("2001:db8::/32")), V({e("E"), e("W")}));
  EXPECT_EQ(listAt(c.sourceTrie, key("2001:db8:1::/48")), V({e("F"), e("E"), e("W")}));
  // The destination trie knows nothing of the source trie's entries.
  EXPECT_EQ(c.destinationTrie.size(), 3u);
  EXPECT_EQ(listAt(c.destinationTrie, key("10.1.0.0/16")), V({e("G")}));
  EXPECT_EQ(listAt(c.destinationTrie, key("10.1.2.0/24")), V({e("H"), e("G")}));
  EXPECT_EQ(listAt(c.destinationTrie, key("10.3.0.0/16")), V({e("I")}));
}

TEST(XdpRules, ExactlyTheCandidateLimitFits) {
  std::vector<XdpRule> rules;
  for (int i = 0; i < VIGIL_XDP_CANDIDATES; i++) rules.push_back(rule(numbered("r", i), i));
  CompiledXdp c = compileOk({policy("p", rules)});
  EXPECT_EQ(listAt(c.sourceTrie, LpmPrefix{Addr{}, 0}).size(), size_t{VIGIL_XDP_CANDIDATES});
}

// --- interfaces and scopes ---------------------------------------------------------------

TEST(XdpRules, ScopesOfNamedAndUnnamedInterfaceLists) {
  FakeInterfaces host;
  auto one = [](const std::string& name, int line) {
    XdpRule r = rule(name, line);
    r.match.protocol = Protocol::tcp;
    return std::vector<XdpRule>{r};
  };
  CompiledXdp c =
      compileOk({policy("a-everywhere", one("r", 10)),
                 policy("b-pair", one("r", 20), {"eth0", "eth1"}, Mode::enforce, 20),
                 policy("c-same-pair", one("r", 30), {"eth1", "eth0", "eth1"}, Mode::enforce, 30),
                 policy("d-loop", one("r", 40), {"lo", "eth1"}, Mode::enforce, 40),
                 policy("e-norules", {}, {}, Mode::enforce, 50)},
                host);
  EXPECT_TRUE(c.allInterfaces);
  EXPECT_TRUE(c.scoped());
  EXPECT_EQ(c.interfaces, (std::map<std::string, uint32_t>{{"eth0", 2}, {"eth1", 3}, {"lo", 1}}));
  const uint64_t pair = 1, loop = 2;  // bits by first appearance
  EXPECT_EQ(c.scopes,
            (std::map<uint32_t, uint64_t>{{2, pair | kAll}, {3, pair | loop | kAll}, {1, loop}}));
  EXPECT_EQ(onlyEntry(c, "a-everywhere", "r").scopes, kAll);
  EXPECT_EQ(onlyEntry(c, "b-pair", "r").scopes, pair);
  EXPECT_EQ(onlyEntry(c, "c-same-pair", "r").scopes, pair);  // the same set, the same bit
  EXPECT_EQ(onlyEntry(c, "d-loop", "r").scopes, loop);
  EXPECT_EQ(host.lookups, 3) << "one lookup per interface name";
}

TEST(XdpRules, OnlyNamedInterfaces) {
  XdpRule r = rule("r", 10);
  CompiledXdp c = compileOk({policy("p", {r}, {"eth2"})});
  EXPECT_FALSE(c.allInterfaces);
  EXPECT_EQ(c.interfaces, (std::map<std::string, uint32_t>{{"eth2", 4}}));
  EXPECT_EQ(c.scopes, (std::map<uint32_t, uint64_t>{{4, 1 | kAll}}));
  EXPECT_EQ(c.entries.at(0).scopes, 1u);
}

TEST(XdpRules, NoNamedInterfacesMeansNoScopeTable) {
  XdpRule r = rule("r", 10);
  CompiledXdp c = compileOk({policy("p", {r}), policy("q", {rule("s", 20)})});
  EXPECT_TRUE(c.allInterfaces);
  EXPECT_TRUE(c.interfaces.empty());
  EXPECT_TRUE(c.scopes.empty());
  EXPECT_FALSE(c.scoped());
}

TEST(XdpRules, SixtyThreeInterfaceListsFit) {
  std::vector<Policy> ps;
  for (int i = 0; i < VIGIL_XDP_MAX_SCOPES - 1; i++) {
    ps.push_back(policy(numbered("p", i),
                        {sourceRule("r", i * 10, "10." + std::to_string(i) + ".0.0/16")},
                        {numbered("veth", i)}, Mode::enforce, i * 10));
  }
  CompiledXdp c = compileOk(ps);
  EXPECT_EQ(c.scopes.size(), size_t{VIGIL_XDP_MAX_SCOPES - 1});
  EXPECT_EQ(c.scopes.at(100 + 62), (1ull << 62) | kAll);
}

// --- errors ------------------------------------------------------------------------------

TEST(XdpRules, MissingInterfaceIsAnErrorAtItsName) {
  XdpRule r = rule("r", 10);
  XdpCompileResult res = compile({policy("p", {r}, {"eth0", "wlan9"}, Mode::enforce, 1)});
  ASSERT_EQ(res.errors.size(), 1u) << issuesText(res.errors);
  EXPECT_EQ(res.errors[0].position.str(), at(7, 28).str());
  EXPECT_EQ(res.errors[0].message, "no interface named \"wlan9\" on this node");
  EXPECT_TRUE(res.rules.empty()) << "nothing is applied when there are errors";
  EXPECT_TRUE(res.rules.entries.empty());
}

TEST(XdpRules, MoreThanSixtyThreeInterfaceListsIsAnError) {
  std::vector<Policy> ps;
  for (int i = 0; i < VIGIL_XDP_MAX_SCOPES; i++) {
    ps.push_back(policy(numbered("p", i),
                        {sourceRule("r", i * 10 + 2, "10." + std::to_string(i) + ".0.0/16")},
                        {numbered("veth", i)}, Mode::enforce, i * 10));
  }
  XdpCompileResult res = compile(ps);
  ASSERT_EQ(res.errors.size(), 1u) << issuesText(res.errors);
  EXPECT_EQ(res.errors[0].position.str(), ps.back().xdp->position.str());
  EXPECT_NE(res.errors[0].message.find("more than 63 distinct XDP interface lists"),
            std::string::npos)
      << res.errors[0].message;
}

TEST(XdpRules, RunningOutOfSlotsIsAnErrorAtTheRule) {
  SlotTable slots(2);
  XdpCompileResult res =
      compile({policy("p", {rule("a", 10), rule("b", 14), rule("c", 18), rule("d", 22)})}, slots);
  ASSERT_EQ(res.errors.size(), 2u) << issuesText(res.errors);
  EXPECT_EQ(res.errors[0].position.str(), at(18).str());
  EXPECT_EQ(res.errors[0].message, "more than 2 XDP rules in force");
  EXPECT_EQ(res.errors[1].position.str(), at(22).str());
}

TEST(XdpRules, RuleThatCanNeverMatchIsAnError) {
  XdpRule crossed = rule("crossed", 10);
  crossed.match.sources = {cidr("10.0.0.0/8")};
  crossed.match.destinations = {cidr("2001:db8::/32")};
  XdpRule fine = rule("fine", 14);
  fine.match.sources = {cidr("10.0.0.0/8"), cidr("2001:db8::/32")};
  fine.match.destinations = {cidr("2001:db8::/32")};
  XdpRule ping6 = rule("ping6-v4", 18);
  ping6.match.sources = {cidr("10.0.0.0/8")};
  ping6.match.protocol = Protocol::icmpv6;
  XdpCompileResult res = compile({policy("p", {crossed, fine, ping6})});
  ASSERT_EQ(res.errors.size(), 2u) << issuesText(res.errors);
  EXPECT_TRUE(hasIssue(res.errors, at(10), "\"crossed\" can never match"))
      << issuesText(res.errors);
  EXPECT_TRUE(hasIssue(res.errors, at(18), "\"ping6-v4\" can never match"))
      << issuesText(res.errors);
}

TEST(XdpRules, TooManyEntriesIsAnErrorAtTheRuleThatOverflows) {
  // 65536 destinations x 4 port ranges fill the entry array exactly.
  XdpRule big = rule("big", 10);
  for (uint32_t i = 0; i < 65536; i++) {
    big.match.destinations.push_back(
        cidr("10.0." + std::to_string(i >> 8) + "." + std::to_string(i & 255) + "/32"));
  }
  big.match.ports = {ports(1, 1), ports(2, 2), ports(3, 3), ports(4, 4)};
  XdpRule fits = rule("fits", 20);
  fits.match.destinations = {cidr("10.9.0.0/16")};
  XdpRule again = rule("again", 30);
  XdpRule later = rule("later", 40);
  {
    XdpCompileResult ok = compile({policy("p", {big})});
    ASSERT_TRUE(ok.errors.empty()) << issuesText(ok.errors);
    EXPECT_EQ(ok.rules.entries.size(), size_t{VIGIL_XDP_MAX_ENTRIES});
  }
  XdpCompileResult res = compile({policy("p", {big, fits, again, later})});
  ASSERT_EQ(res.errors.size(), 1u) << issuesText(res.errors);
  EXPECT_EQ(res.errors[0].position.str(), at(20).str());
  EXPECT_NE(res.errors[0].message.find("up to \"fits\" expand to 262145 entries"),
            std::string::npos)
      << res.errors[0].message;
  EXPECT_NE(res.errors[0].message.find("262144"), std::string::npos);
}

TEST(XdpRules, HugeCrossProductIsRefusedWithoutBeingBuilt) {
  XdpRule huge = rule("huge", 10);
  for (uint32_t i = 0; i < 4096; i++) {
    huge.match.sources.push_back(cidr("2001:db8:" + std::to_string(i) + "::/48"));
    huge.match.destinations.push_back(cidr("fd00:" + std::to_string(i) + "::/32"));
  }
  huge.match.ports = {ports(1, 1), ports(2, 2)};
  XdpCompileResult res = compile({policy("p", {huge})});
  ASSERT_EQ(res.errors.size(), 1u) << issuesText(res.errors);
  EXPECT_EQ(res.errors[0].position.str(), at(10).str());
  EXPECT_NE(res.errors[0].message.find("up to \"huge\" expand to 33554432 entries"),
            std::string::npos)
      << res.errors[0].message;
}

TEST(XdpRules, TooManyRulesCoveringOneAddressIsAnError) {
  std::vector<XdpRule> rules;
  for (int i = 0; i <= VIGIL_XDP_CANDIDATES; i++) {
    rules.push_back(rule(numbered("r", i), 10 + 4 * i));
  }
  XdpCompileResult res = compile({policy("p", rules)});
  ASSERT_EQ(res.errors.size(), 1u) << issuesText(res.errors);
  // Blamed on the last rule written at that block.
  EXPECT_EQ(res.errors[0].position.str(), at(10 + 4 * VIGIL_XDP_CANDIDATES).str());
  EXPECT_EQ(res.errors[0].message,
            "source ::/0 (any address) is covered by 33 XDP rules; at most 32 may cover one "
            "address");
  EXPECT_TRUE(res.rules.sourceTrie.empty());
}

TEST(XdpRules, CandidateLimitCountsEnclosingBlocksAndEntriesOfOneRule) {
  // 20 rules on 10.0.0.0/8, then one rule with 13 port ranges on 10.1.0.0/16: the /16 is
  // covered by 33 entries of 21 rules; the /8 alone is fine.
  std::vector<XdpRule> rules;
  for (int i = 0; i < 20; i++) {
    XdpRule r = rule(numbered("wide", i), 10 + i);
    r.match.destinations = {cidr("10.0.0.0/8")};
    rules.push_back(r);
  }
  XdpRule narrow = rule("narrow", 50);
  narrow.match.destinations = {cidr("10.1.0.0/16")};
  for (uint16_t p = 0; p < 13; p++) narrow.match.ports.push_back(ports(1000 + p, 1000 + p));
  rules.push_back(narrow);
  XdpCompileResult res = compile({policy("p", rules)});
  ASSERT_EQ(res.errors.size(), 1u) << issuesText(res.errors);
  EXPECT_EQ(res.errors[0].position.str(), at(50).str());
  EXPECT_NE(res.errors[0].message.find("destination 10.1.0.0/16 is covered by 33 XDP rule "
                                       "entries"),
            std::string::npos)
      << res.errors[0].message;
  EXPECT_NE(res.errors[0].message.find("of 21 rules"), std::string::npos) << res.errors[0].message;
}

TEST(XdpRules, ManyOverfullBlocksAreSummedUp) {
  std::vector<XdpRule> rules;
  for (int i = 0; i < VIGIL_XDP_CANDIDATES; i++) rules.push_back(rule(numbered("any", i), i));
  XdpRule many = rule("many", 100);
  for (int i = 0; i < 20; i++)
    many.match.sources.push_back(cidr("10.0." + std::to_string(i) + ".0/24"));
  rules.push_back(many);
  XdpCompileResult res = compile({policy("p", rules)});
  ASSERT_EQ(res.errors.size(), 9u) << issuesText(res.errors);
  for (const auto& e : res.errors) EXPECT_EQ(e.position.str(), at(100).str()) << e.message;
  EXPECT_NE(res.errors[0].message.find("source 10.0.0.0/24 is covered by 33 XDP rules"),
            std::string::npos)
      << res.errors[0].message;
  EXPECT_EQ(res.errors.back().message,
            "and 12 more address blocks covered by more than 32 XDP rule entries");
}

TEST(XdpRules, ZeroRateIsAnErrorAtTheRateLimit) {
  XdpRule r = rule("r", 10);
  r.rateLimit = RateLimit{0, 0, 32, 64, at(12)};
  XdpCompileResult res = compile({policy("p", {r})});
  ASSERT_EQ(res.errors.size(), 1u) << issuesText(res.errors);
  EXPECT_EQ(res.errors[0].position.str(), at(12).str());
}

// --- the host resolver -------------------------------------------------------------------

TEST(XdpRules, HostResolverFindsLoopback) {
  XdpResolver host = hostXdpResolver();
  EXPECT_FALSE(host.interface("vigil-nope0").has_value());
  EXPECT_FALSE(host.interface("").has_value());
  EXPECT_FALSE(host.interface("../../etc").has_value());
  const unsigned lo = if_nametoindex("lo");
  if (lo == 0) GTEST_SKIP() << "no loopback interface in this network namespace";
  auto info = host.interface("lo");
  ASSERT_TRUE(info.has_value());
  EXPECT_EQ(info->ifindex, lo);
  EXPECT_TRUE(info->loopback);
}

// --- the kernel's lookup, modelled -------------------------------------------------------

struct Packet {
  bool v4 = true;
  Addr src{}, dst{};
  uint8_t proto = 0;
  bool hasPorts = false;  // TCP or UDP, and not a later fragment
  uint16_t dport = 0;
  uint32_t ifindex = 0;
};

// The interface's scope bits: from the table when some rule is scoped, else (and for an
// interface not in it) every interface but loopback.
uint64_t interfaceScope(const CompiledXdp& c, uint32_t ifindex) {
  auto it = c.scopes.find(ifindex);
  return !c.scoped() || it == c.scopes.end() ? kAll : it->second;
}

bool masksMatch(const uint8_t (&net)[16], const uint8_t (&mask)[16], const Addr& a) {
  for (size_t i = 0; i < a.size(); i++) {
    if ((a[i] & mask[i]) != net[i]) return false;
  }
  return true;
}

bool entryMatches(const CompiledXdp& c, const vigil_xdp_entry& e, const Packet& p) {
  if ((e.scopes & interfaceScope(c, p.ifindex)) == 0) return false;
  if ((e.flags & VIGIL_XDP_F_V4) && !p.v4) return false;
  if ((e.flags & VIGIL_XDP_F_V6) && p.v4) return false;
  if (!masksMatch(e.src_net, e.src_mask, p.src) || !masksMatch(e.dst_net, e.dst_mask, p.dst))
    return false;
  if (e.proto != 0 && e.proto != p.proto) return false;
  if (e.flags & VIGIL_XDP_F_PORTS) {
    if (!p.hasPorts || p.dport < e.port_lo || p.dport > e.port_hi) return false;
  }
  return true;
}

struct LookupStats {
  size_t scanned = 0;   // candidates looked at
  size_t deepWins = 0;  // list winners that were not the list's first candidate
};

// One trie as the kernel uses it: the longest key holding the address, then its list.
std::optional<uint32_t> trieBest(const CompiledXdp& c,
                                 const std::map<LpmPrefix, std::vector<uint32_t>>& trie,
                                 const Addr& a, const Packet& p, LookupStats& stats) {
  for (int bits = 128; bits >= 0; bits--) {
    auto it = trie.find(LpmPrefix{andAddr(a, onesPrefix(bits)), static_cast<uint32_t>(bits)});
    if (it == trie.end()) continue;
    for (size_t i = 0; i < it->second.size(); i++) {
      stats.scanned++;
      const uint32_t e = it->second[i];
      if (entryMatches(c, c.entries[e], p)) {
        if (i > 0) stats.deepWins++;
        return e;
      }
    }
    return std::nullopt;
  }
  return std::nullopt;
}

std::optional<uint32_t> kernelLookup(const CompiledXdp& c, const Packet& p, LookupStats& stats) {
  auto s = trieBest(c, c.sourceTrie, p.src, p, stats);
  auto d = trieBest(c, c.destinationTrie, p.dst, p, stats);
  if (s && d) return c.entries[*s].rank < c.entries[*d].rank ? s : d;
  return s ? s : d;
}

std::optional<uint32_t> bruteForce(const CompiledXdp& c, const Packet& p) {
  std::optional<uint32_t> best;
  for (uint32_t i = 0; i < c.entries.size(); i++) {
    if (!entryMatches(c, c.entries[i], p)) continue;
    if (!best || c.entries[i].rank < c.entries[*best].rank) best = i;
  }
  return best;
}

// A block inside `outer`, `prefix` bits long in its family, random where outer leaves it open.
Cidr within(std::mt19937_64& rng, const Cidr& outer, int prefix) {
  Cidr c = outer;
  c.prefix = prefix;
  const uint32_t from = outer.v4 ? 96 + outer.prefix : outer.prefix;
  const uint32_t to = outer.v4 ? 96 + prefix : prefix;
  for (uint32_t b = from; b < to; b++) {
    if (rng() & 1) c.addr[b / 8] |= static_cast<uint8_t>(0x80 >> (b % 8));
  }
  return c;
}

// An address inside a block.
Addr addressIn(std::mt19937_64& rng, const Cidr& block) {
  return within(rng, block, block.v4 ? 32 : 128).addr;
}

TEST(XdpRulesProperty, KernelLookupModelAgreesWithBruteForce) {
  std::mt19937_64 rng(20240611);
  auto pick = [&](size_t n) { return static_cast<size_t>(rng() % n); };
  const Cidr net10 = cidr("10.0.0.0/8"), db8 = cidr("2001:db8::/32");
  std::vector<Cidr> v4Roots, v6Roots;
  for (int i = 0; i < 160; i++) v4Roots.push_back(within(rng, net10, 16));
  for (int i = 0; i < 80; i++) v6Roots.push_back(within(rng, db8, 48));
  const std::vector<Cidr> shortBlocks = {cidr("0.0.0.0/0"), cidr("10.0.0.0/8"),
                                         within(rng, net10, 12), cidr("::/0"), db8};

  auto randomBlock = [&](bool v4) {
    if (v4) return within(rng, v4Roots[pick(v4Roots.size())], 16 + static_cast<int>(pick(17)));
    return within(rng, v6Roots[pick(v6Roots.size())], 48 + static_cast<int>(pick(81)));
  };
  auto randomBlocks = [&](size_t n, std::optional<bool> family) {
    std::vector<Cidr> out;
    for (size_t i = 0; i < n; i++) out.push_back(randomBlock(family.value_or(pick(10) < 7)));
    return out;
  };

  // Policies: everywhere, and four interface lists (one of them with loopback).
  const std::vector<std::vector<std::string>> lists = {
      {}, {"eth0"}, {"eth0", "eth1"}, {"lo"}, {"eth2", "lo"}};
  std::vector<Policy> policies;
  for (size_t i = 0; i < lists.size(); i++) {
    policies.push_back(
        policy(numbered("p", i), {}, lists[i], pick(4) == 0 ? Mode::audit : Mode::enforce, 1));
  }
  const int kRules = 3000;
  size_t shortUsed = 0;
  for (int i = 0; i < kRules; i++) {
    XdpRule r = rule(numbered("r", i), 10 + i, pick(5) == 0 ? XdpAction::pass : XdpAction::drop);
    if (pick(10) == 0) r.mode = pick(2) ? Mode::audit : Mode::enforce;
    XdpMatch& m = r.match;
    const size_t shape = pick(100);
    // Each rule sticks to one family most of the time, so that it expands to something.
    std::optional<bool> family;
    if (pick(4) != 0) family = pick(10) < 7;
    if (i % 500 == 7) {
      // A rule without addresses (covers every address of the source trie).
    } else if (i % 150 == 3 && shortUsed < 12) {
      m.sources = {shortBlocks[shortUsed++ % shortBlocks.size()]};
    } else if (shape < 70) {
      m.sources = randomBlocks(1 + pick(2), family);
      if (pick(2)) m.destinations = randomBlocks(1 + pick(2), family);
    } else {
      m.destinations = randomBlocks(1 + pick(2), family);
    }
    const bool shortBlock = i % 150 == 3 && !m.sources.empty();
    switch (pick(6)) {
      case 0:
        m.protocol = Protocol::tcp;
        break;
      case 1:
        m.protocol = Protocol::udp;
        break;
      case 2:
        m.protocol = Protocol::icmp;
        break;
      case 3:
        m.protocol = Protocol::icmpv6;
        break;
      default:
        break;
    }
    const bool portsAllowed =
        !m.protocol || *m.protocol == Protocol::tcp || *m.protocol == Protocol::udp;
    if (portsAllowed && !shortBlock && pick(2)) {
      for (size_t k = 1 + pick(2); k > 0; k--) {
        const uint16_t lo = static_cast<uint16_t>(pick(1000));
        m.ports.push_back(ports(lo, static_cast<uint16_t>(lo + pick(50))));
      }
    }
    // Keep only rules that can match something (the rest are an error, tested above):
    // sources and destinations need a family in common, and an ICMP protocol needs its own.
    auto has = [](const std::vector<Cidr>& list, bool v4) {
      return list.empty() ||
             std::any_of(list.begin(), list.end(), [&](const Cidr& c) { return c.v4 == v4; });
    };
    if (!(has(m.sources, true) && has(m.destinations, true)) &&
        !(has(m.sources, false) && has(m.destinations, false)))
      m.destinations.clear();
    const bool v4 = has(m.sources, true) && has(m.destinations, true);
    const bool v6 = has(m.sources, false) && has(m.destinations, false);
    if (m.protocol == Protocol::icmp && !v4) m.protocol = Protocol::tcp;
    if (m.protocol == Protocol::icmpv6 && !v6) m.protocol = Protocol::udp;
    policies[pick(policies.size())].xdp->rules.push_back(std::move(r));
  }

  FakeInterfaces host;
  const auto start = std::chrono::steady_clock::now();
  XdpCompileResult res = compile(policies, host);
  const auto ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  ASSERT_TRUE(res.errors.empty()) << issuesText(res.errors);
  const CompiledXdp& c = res.rules;

  // The lists themselves: within the limit and by rank.
  size_t longest = 0;
  for (const auto* trie : {&c.sourceTrie, &c.destinationTrie}) {
    for (const auto& [k, list] : *trie) {
      longest = std::max(longest, list.size());
      ASSERT_LE(list.size(), size_t{VIGIL_XDP_CANDIDATES});
      for (size_t i = 1; i < list.size(); i++) {
        ASSERT_LT(c.entries[list[i - 1]].rank, c.entries[list[i]].rank);
      }
    }
  }

  // Packets: mostly inside the rules' own blocks, so that rules overlap on them.
  std::vector<Cidr> v4Blocks, v6Blocks;
  std::vector<PortRange> portPool;
  for (const Policy& p : policies) {
    for (const XdpRule& r : p.xdp->rules) {
      for (const auto* list : {&r.match.sources, &r.match.destinations}) {
        for (const Cidr& b : *list) (b.v4 ? v4Blocks : v6Blocks).push_back(b);
      }
      for (const PortRange& pr : r.match.ports) portPool.push_back(pr);
    }
  }
  const std::vector<uint32_t> ifindexes = {1, 2, 3, 4, 9};
  auto randomAddress = [&](bool v4) {
    const auto& pool = v4 ? v4Blocks : v6Blocks;
    switch (pick(4)) {
      case 0:
        return addressIn(rng, v4 ? v4Roots[pick(v4Roots.size())] : v6Roots[pick(v6Roots.size())]);
      case 1:
        return addressIn(rng, v4 ? cidr("0.0.0.0/0") : cidr("::/0"));
      default:
        return addressIn(rng, pool[pick(pool.size())]);
    }
  };

  const int kPackets = 5000;
  LookupStats stats;
  size_t matched = 0, bothTries = 0;
  for (int i = 0; i < kPackets; i++) {
    Packet p;
    p.v4 = pick(10) < 6;
    p.src = randomAddress(p.v4);
    p.dst = randomAddress(p.v4);
    static constexpr uint8_t kProtos[] = {6, 17, 1, 58, 47};
    p.proto = kProtos[pick(5)];
    const bool fragment = pick(8) == 0;
    p.hasPorts = (p.proto == 6 || p.proto == 17) && !fragment;
    if (p.hasPorts) {
      const PortRange& pr = portPool[pick(portPool.size())];
      p.dport = pick(3) == 0 ? static_cast<uint16_t>(rng())
                             : static_cast<uint16_t>(pr.lo + pick(pr.hi - pr.lo + 1));
    }
    p.ifindex = ifindexes[pick(ifindexes.size())];

    const auto want = bruteForce(c, p);
    LookupStats one;
    const auto got = kernelLookup(c, p, one);
    stats.scanned += one.scanned;
    stats.deepWins += one.deepWins;
    ASSERT_EQ(got.has_value(), want.has_value()) << "packet " << i;
    if (want) {
      ASSERT_EQ(*got, *want) << "packet " << i;
      matched++;
      LookupStats ignore;
      if (trieBest(c, c.sourceTrie, p.src, p, ignore) &&
          trieBest(c, c.destinationTrie, p.dst, p, ignore))
        bothTries++;
    }
  }
  std::cout << "[ property ] " << c.slots.size() << " rules, " << c.entries.size() << " entries, "
            << c.sourceTrie.size() << "+" << c.destinationTrie.size() << " keys, longest list "
            << longest << ", compiled in " << ms << " ms; " << matched << "/" << kPackets
            << " packets matched, " << bothTries << " with a winner in both tries, "
            << stats.deepWins << " list winners past the first candidate, "
            << static_cast<double>(stats.scanned) / kPackets << " candidates per packet\n";
  // The test only means something if the interesting cases happen.
  EXPECT_GT(matched, size_t{kPackets / 5});
  EXPECT_GT(bothTries, size_t{kPackets / 50});
  EXPECT_GT(stats.deepWins, size_t{kPackets / 10});
  EXPECT_GE(longest, size_t{10});
}

// --- scale -------------------------------------------------------------------------------

TEST(XdpRulesScale, HundredThousandPrefixesCompileQuickly) {
  std::mt19937_64 rng(7);
  const Cidr all4 = cidr("0.0.0.0/0"), all6 = cidr("2000::/3");
  // 20 rules of 5000 blocks each: 16 by source, 4 by destination.
  std::vector<XdpRule> blocks;
  for (int i = 0; i < 20; i++) {
    XdpRule r = rule(numbered("block", i), 100 + i);
    auto& list = i < 16 ? r.match.sources : r.match.destinations;
    for (int k = 0; k < 5000; k++) {
      const bool v4 = rng() & 1;
      const int prefix = 24 + static_cast<int>(rng() % 9);
      list.push_back(within(rng, v4 ? all4 : all6, prefix));
    }
    blocks.push_back(std::move(r));
  }
  std::vector<XdpRule> base;
  for (int i = 0; i < 6; i++) {
    XdpRule r = rule(numbered("wild", i), 10 + i, i % 2 ? XdpAction::pass : XdpAction::drop);
    r.match.protocol = i % 3 == 0 ? Protocol::udp : Protocol::tcp;
    r.match.ports = {
        ports(static_cast<uint16_t>(1000 * i + 1), static_cast<uint16_t>(1000 * i + 2))};
    base.push_back(std::move(r));
  }
  std::vector<Policy> policies = {policy("base", base), policy("blocklist", blocks)};

  const auto start = std::chrono::steady_clock::now();
  XdpCompileResult res = compile(policies);
  const auto ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  ASSERT_TRUE(res.errors.empty()) << issuesText(res.errors);
  const CompiledXdp& c = res.rules;
  EXPECT_EQ(c.entries.size(), 100006u);
  size_t indexed = 0;
  std::set<uint32_t> seen;
  for (const auto* trie : {&c.sourceTrie, &c.destinationTrie}) {
    for (const auto& [k, list] : *trie) {
      for (uint32_t e : list) seen.insert(e);
    }
    indexed += trie->size();
  }
  EXPECT_EQ(seen.size(), c.entries.size()) << "every entry is in some list";
  std::cout << "[ scale ] " << c.entries.size() << " entries, " << indexed << " trie keys, "
            << "compiled in " << ms << " ms\n";
}

}  // namespace
}  // namespace vigil::policy
