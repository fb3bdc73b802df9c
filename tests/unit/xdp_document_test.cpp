// spec.xdp YAML -> XdpSpec: the valid schema with every value and position checked, the
// defaults, and one test per class of rejection, each at the line and column an operator would
// be sent to. The rule compiler has its own tests (xdp_rules_test.cpp, suites XdpRules*).

#include <gtest/gtest.h>

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "policy/document.hpp"
#include "policy/model.hpp"

namespace vigil::policy {
namespace {

constexpr const char* kFile = "xdp.yaml";

ParseResult parse(const std::string& text) { return parsePolicies(text, kFile); }

// A policy whose spec is `spec`: the first line of `spec` is line 5 of the document.
ParseResult parseSpec(const std::string& spec) {
  return parse("apiVersion: vigil.dev/v1alpha1\nkind: Policy\nmetadata: {name: a}\nspec:\n" + spec);
}

// A policy with one xdp rule whose match is `match` (a flow mapping body), written on line 7
// from column 16: "      - {name: r, match: {<match>}}".
ParseResult parseMatch(const std::string& match) {
  return parseSpec("  xdp:\n    rules:\n      - {name: r, match: {" + match + "}}\n");
}

// Asserts that parsing failed, that no policy came back, and that the first error is at
// line:column and contains `substring`.
void expectFirstError(const ParseResult& r, int line, int column, const std::string& substring) {
  ASSERT_FALSE(r.ok()) << "expected an error containing: " << substring;
  EXPECT_TRUE(r.policies.empty());
  EXPECT_EQ(r.errors[0].position.file, kFile);
  EXPECT_EQ(r.errors[0].position.line, line) << r.errorText();
  EXPECT_EQ(r.errors[0].position.column, column) << r.errorText();
  EXPECT_NE(r.errors[0].message.find(substring), std::string::npos) << r.errorText();
}

// Asserts that error `index` is at line:column and contains `substring`.
void expectError(const ParseResult& r, size_t index, int line, int column,
                 const std::string& substring) {
  ASSERT_GT(r.errors.size(), index) << r.errorText();
  EXPECT_EQ(r.errors[index].position.line, line) << r.errorText();
  EXPECT_EQ(r.errors[index].position.column, column) << r.errorText();
  EXPECT_NE(r.errors[index].message.find(substring), std::string::npos) << r.errorText();
}

void expectPosition(const Position& p, int line, int column) {
  EXPECT_EQ(p.line, line);
  EXPECT_EQ(p.column, column);
}

std::array<uint8_t, 16> v4Mapped(uint8_t a, uint8_t b, uint8_t c, uint8_t d) {
  return {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, a, b, c, d};
}

// --- Valid input -----------------------------------------------------------------------------

TEST(XdpDocument, ValidFileWithEveryField) {
  const std::string path = std::string(VIGIL_POLICY_TESTDATA) + "/xdp-valid.yaml";
  const ParseResult r = parsePolicyFile(path);
  ASSERT_TRUE(r.ok()) << r.errorText();
  ASSERT_EQ(r.policies.size(), 1u);
  const Policy& p = r.policies[0];
  EXPECT_EQ(p.name, "edge-filter");
  EXPECT_EQ(p.mode, Mode::enforce);
  EXPECT_TRUE(p.exec.empty());
  ASSERT_TRUE(p.xdp.has_value());
  const XdpSpec& xdp = *p.xdp;
  EXPECT_EQ(xdp.position.file, path);
  expectPosition(xdp.position, 9, 5);
  EXPECT_EQ(xdp.interfaces, (std::vector<std::string>{"eth0", "veth1"}));
  ASSERT_EQ(xdp.interfacePositions.size(), 2u);
  EXPECT_EQ(xdp.interfacePositions[0].file, path);
  expectPosition(xdp.interfacePositions[0], 9, 18);
  expectPosition(xdp.interfacePositions[1], 9, 24);
  ASSERT_EQ(xdp.rules.size(), 3u);

  const XdpRule& scanners = xdp.rules[0];
  EXPECT_EQ(scanners.name, "block-scanners");
  EXPECT_EQ(scanners.action, XdpAction::drop);
  EXPECT_EQ(scanners.mode, Mode::audit);
  EXPECT_EQ(scanners.effectiveMode(p.mode), Mode::audit);
  expectPosition(scanners.position, 11, 9);
  const XdpMatch& m = scanners.match;
  ASSERT_EQ(m.sources.size(), 3u);
  EXPECT_TRUE(m.sources[0].v4);
  EXPECT_EQ(m.sources[0].addr, v4Mapped(203, 0, 113, 0));
  EXPECT_EQ(m.sources[0].prefix, 24);
  EXPECT_EQ(m.sources[0].str(), "203.0.113.0/24");
  EXPECT_EQ(m.sources[0].position.file, path);
  expectPosition(m.sources[0].position, 15, 25);
  EXPECT_FALSE(m.sources[1].v4);
  EXPECT_EQ(m.sources[1].addr, (std::array<uint8_t, 16>{0x20, 0x01, 0x0d, 0xb8}));
  EXPECT_EQ(m.sources[1].prefix, 32);
  EXPECT_EQ(m.sources[1].str(), "2001:db8::/32");
  expectPosition(m.sources[1].position, 15, 41);  // the opening quote
  EXPECT_TRUE(m.sources[2].v4);
  EXPECT_EQ(m.sources[2].addr, v4Mapped(198, 51, 100, 7));
  EXPECT_EQ(m.sources[2].prefix, 32);  // an address alone is a /32
  expectPosition(m.sources[2].position, 15, 58);
  ASSERT_EQ(m.destinations.size(), 1u);
  EXPECT_TRUE(m.destinations[0].v4);
  EXPECT_EQ(m.destinations[0].addr, v4Mapped(10, 0, 0, 0));
  EXPECT_EQ(m.destinations[0].prefix, 8);
  expectPosition(m.destinations[0].position, 16, 30);
  EXPECT_EQ(m.protocol, Protocol::tcp);
  expectPosition(m.protocolPosition, 17, 21);
  ASSERT_EQ(m.ports.size(), 3u);
  EXPECT_EQ(m.ports[0].lo, 22);
  EXPECT_EQ(m.ports[0].hi, 22);
  expectPosition(m.ports[0].position, 18, 30);
  EXPECT_EQ(m.ports[1].lo, 443);
  EXPECT_EQ(m.ports[1].hi, 443);
  expectPosition(m.ports[1].position, 18, 34);
  EXPECT_EQ(m.ports[2].lo, 8000);
  EXPECT_EQ(m.ports[2].hi, 8080);
  expectPosition(m.ports[2].position, 18, 39);
  ASSERT_TRUE(scanners.rateLimit.has_value());
  EXPECT_EQ(scanners.rateLimit->packetsPerSecond, 1000u);
  EXPECT_EQ(scanners.rateLimit->burst, 200u);
  EXPECT_EQ(scanners.rateLimit->ipv4Prefix, 24);
  EXPECT_EQ(scanners.rateLimit->ipv6Prefix, 48);
  expectPosition(scanners.rateLimit->position, 20, 11);

  const XdpRule& monitoring = xdp.rules[1];
  EXPECT_EQ(monitoring.name, "allow-monitoring");
  EXPECT_EQ(monitoring.action, XdpAction::pass);
  EXPECT_FALSE(monitoring.mode.has_value());
  EXPECT_EQ(monitoring.effectiveMode(p.mode), Mode::enforce);
  expectPosition(monitoring.position, 25, 9);
  ASSERT_EQ(monitoring.match.sources.size(), 2u);
  EXPECT_EQ(monitoring.match.sources[0].addr, v4Mapped(192, 0, 2, 10));
  EXPECT_EQ(monitoring.match.sources[0].prefix, 32);
  expectPosition(monitoring.match.sources[0].position, 29, 15);
  EXPECT_FALSE(monitoring.match.sources[1].v4);
  EXPECT_EQ(monitoring.match.sources[1].prefix, 128);
  EXPECT_EQ(monitoring.match.sources[1].str(), "2001:db8:1::1/128");
  expectPosition(monitoring.match.sources[1].position, 30, 15);
  EXPECT_TRUE(monitoring.match.destinations.empty());
  EXPECT_EQ(monitoring.match.protocol, Protocol::icmpv6);
  expectPosition(monitoring.match.protocolPosition, 31, 21);
  EXPECT_TRUE(monitoring.match.ports.empty());
  EXPECT_FALSE(monitoring.rateLimit.has_value());

  // A rule with a rate limit may leave out match: it limits every packet.
  const XdpRule& flood = xdp.rules[2];
  EXPECT_EQ(flood.name, "flood-guard");
  expectPosition(flood.position, 32, 9);
  EXPECT_TRUE(flood.match.sources.empty());
  EXPECT_TRUE(flood.match.destinations.empty());
  EXPECT_FALSE(flood.match.protocol.has_value());
  EXPECT_TRUE(flood.match.ports.empty());
  ASSERT_TRUE(flood.rateLimit.has_value());
  EXPECT_EQ(flood.rateLimit->packetsPerSecond, 100000000u);  // the maximum
  EXPECT_EQ(flood.rateLimit->burst, 1000000000u);            // the maximum
  expectPosition(flood.rateLimit->position, 33, 20);
}

TEST(XdpDocument, DefaultsWhenOptionalFieldsAreOmitted) {
  const ParseResult r = parseSpec(R"(  mode: audit
  xdp:
    rules:
      - name: limit-dns
        action:
        mode: ~
        match:
          protocol: udp
          destinationPorts: [53]
        rateLimit:
          packetsPerSecond: 50
          burst:
)");
  ASSERT_TRUE(r.ok()) << r.errorText();
  ASSERT_EQ(r.policies.size(), 1u);
  const Policy& p = r.policies[0];
  ASSERT_TRUE(p.xdp.has_value());
  EXPECT_TRUE(p.xdp->interfaces.empty());  // every interface but loopback
  EXPECT_TRUE(p.xdp->interfacePositions.empty());
  ASSERT_EQ(p.xdp->rules.size(), 1u);
  const XdpRule& rule = p.xdp->rules[0];
  EXPECT_EQ(rule.action, XdpAction::drop);
  EXPECT_FALSE(rule.mode.has_value());
  EXPECT_EQ(rule.effectiveMode(p.mode), Mode::audit);
  EXPECT_TRUE(rule.match.sources.empty());
  EXPECT_TRUE(rule.match.destinations.empty());
  EXPECT_EQ(rule.match.protocol, Protocol::udp);
  ASSERT_EQ(rule.match.ports.size(), 1u);
  EXPECT_EQ(rule.match.ports[0].lo, 53);
  EXPECT_EQ(rule.match.ports[0].hi, 53);
  ASSERT_TRUE(rule.rateLimit.has_value());
  EXPECT_EQ(rule.rateLimit->packetsPerSecond, 50u);
  EXPECT_EQ(rule.rateLimit->burst, 0u);  // not given: the compiler uses packetsPerSecond
  EXPECT_EQ(rule.rateLimit->ipv4Prefix, 32);
  EXPECT_EQ(rule.rateLimit->ipv6Prefix, 64);
}

TEST(XdpDocument, PerSourcePrefixKeepsTheDefaultItDoesNotSet) {
  const ParseResult r = parseSpec(R"(  xdp:
    rules:
      - name: a
        rateLimit: {packetsPerSecond: 1, perSourcePrefix: {ipv4: 0}}
      - name: b
        rateLimit: {packetsPerSecond: 1, perSourcePrefix: {ipv6: 128}}
)");
  ASSERT_TRUE(r.ok()) << r.errorText();
  const std::vector<XdpRule>& rules = r.policies[0].xdp->rules;
  ASSERT_EQ(rules.size(), 2u);
  EXPECT_EQ(rules[0].rateLimit->ipv4Prefix, 0);  // one bucket for every IPv4 source
  EXPECT_EQ(rules[0].rateLimit->ipv6Prefix, 64);
  EXPECT_EQ(rules[1].rateLimit->ipv4Prefix, 32);
  EXPECT_EQ(rules[1].rateLimit->ipv6Prefix, 128);
  EXPECT_EQ(rules[1].rateLimit->burst, 0u);
}

TEST(XdpDocument, ExecAndXdpInOnePolicy) {
  const ParseResult r = parse(R"(apiVersion: vigil.dev/v1alpha1
kind: Policy
metadata: {name: both}
spec:
  mode: audit
  exec:
    - {name: same, action: kill, match: {binaries: [/usr/bin/nc]}}
  xdp:
    interfaces: [eth0]
    rules:
      - {name: same, mode: enforce, match: {destinationPorts: [22]}}
---
apiVersion: vigil.dev/v1alpha1
kind: Policy
metadata: {name: exec-only}
spec:
  exec:
    - {name: r, action: audit, match: {uids: [0]}}
)");
  ASSERT_TRUE(r.ok()) << r.errorText();
  ASSERT_EQ(r.policies.size(), 2u);
  const Policy& both = r.policies[0];
  ASSERT_EQ(both.exec.size(), 1u);
  EXPECT_EQ(both.exec[0].name, "same");
  EXPECT_EQ(both.exec[0].match.binaries, (std::vector<std::string>{"/usr/bin/nc"}));
  ASSERT_TRUE(both.xdp.has_value());
  expectPosition(both.xdp->position, 9, 5);
  EXPECT_EQ(both.xdp->interfaces, (std::vector<std::string>{"eth0"}));
  ASSERT_EQ(both.xdp->rules.size(), 1u);
  // Names are unique per section: an xdp rule may share its name with an exec rule.
  EXPECT_EQ(both.xdp->rules[0].name, "same");
  EXPECT_EQ(both.xdp->rules[0].effectiveMode(both.mode), Mode::enforce);
  // No protocol: ports then mean TCP and UDP.
  EXPECT_FALSE(both.xdp->rules[0].match.protocol.has_value());
  ASSERT_EQ(both.xdp->rules[0].match.ports.size(), 1u);
  expectPosition(both.xdp->rules[0].match.ports[0].position, 11, 64);

  EXPECT_FALSE(r.policies[1].xdp.has_value());
  EXPECT_EQ(r.policies[1].exec.size(), 1u);
}

TEST(XdpDocument, AddressForms) {
  const ParseResult r = parseMatch(
      "sourceCIDRs: [0.0.0.0/0, \"::/0\", 10.1.2.3, 10.1.2.2/31, \"fe80::/10\", \"::1\", "
      "\"2001:db8::ffff:0:0/96\", \"64:ff9b::192.0.2.0/120\"]");
  ASSERT_TRUE(r.ok()) << r.errorText();
  const std::vector<Cidr>& s = r.policies[0].xdp->rules[0].match.sources;
  ASSERT_EQ(s.size(), 8u);
  EXPECT_TRUE(s[0].v4);
  EXPECT_EQ(s[0].prefix, 0);
  EXPECT_EQ(s[0].addr, v4Mapped(0, 0, 0, 0));
  EXPECT_FALSE(s[1].v4);
  EXPECT_EQ(s[1].prefix, 0);
  EXPECT_EQ(s[1].addr, (std::array<uint8_t, 16>{}));
  EXPECT_EQ(s[2].str(), "10.1.2.3/32");
  EXPECT_EQ(s[3].str(), "10.1.2.2/31");
  EXPECT_EQ(s[4].str(), "fe80::/10");
  EXPECT_EQ(s[4].addr[0], 0xfe);
  EXPECT_EQ(s[4].addr[1], 0x80);
  EXPECT_EQ(s[5].str(), "::1/128");
  // Only ::ffff:0:0/96 is IPv4-mapped; other /96 blocks and NAT64 are plain IPv6.
  EXPECT_FALSE(s[6].v4);
  EXPECT_EQ(s[6].prefix, 96);
  EXPECT_FALSE(s[7].v4);
  EXPECT_EQ(s[7].str(), "64:ff9b::c000:200/120");
}

TEST(XdpDocument, PortForms) {
  const ParseResult r = parseMatch(
      "protocol: udp, destinationPorts: [1, 65535, \"7\", \"1000-2000\", 3000-3001, "
      "'5-5', !!int \"9\"]");
  ASSERT_TRUE(r.ok()) << r.errorText();
  const std::vector<PortRange>& p = r.policies[0].xdp->rules[0].match.ports;
  ASSERT_EQ(p.size(), 7u);
  const std::vector<std::pair<int, int>> want = {{1, 1},       {65535, 65535}, {7, 7}, {1000, 2000},
                                                 {3000, 3001}, {5, 5},         {9, 9}};
  for (size_t i = 0; i < want.size(); ++i) {
    EXPECT_EQ(p[i].lo, want[i].first) << i;
    EXPECT_EQ(p[i].hi, want[i].second) << i;
    EXPECT_EQ(p[i].position.line, 7) << i;
  }
}

TEST(XdpDocument, IcmpWithMixedFamiliesIsAccepted) {
  EXPECT_TRUE(parseMatch("sourceCIDRs: [10.0.0.0/8, \"2001:db8::/32\"], protocol: icmp").ok());
  EXPECT_TRUE(parseMatch("sourceCIDRs: [10.0.0.0/8, \"2001:db8::/32\"], protocol: icmpv6").ok());
  EXPECT_TRUE(parseMatch("destinationCIDRs: [10.0.0.0/8], protocol: icmp").ok());
  EXPECT_TRUE(parseMatch("sourceCIDRs: [10.0.0.0/8, \"2001:db8::/32\"], "
                         "destinationCIDRs: [\"fd00::/8\"]")
                  .ok());
}

TEST(XdpDocument, InterfaceNamesUpToTheKernelLimit) {
  const ParseResult r = parseSpec(R"(  xdp:
    interfaces: [abcdefghijklmno, "eth0.100", veth-x_1@, "é"]
    rules: [{name: r, match: {protocol: tcp}}]
)");
  ASSERT_TRUE(r.ok()) << r.errorText();
  EXPECT_EQ(r.policies[0].xdp->interfaces,
            (std::vector<std::string>{"abcdefghijklmno", "eth0.100", "veth-x_1@", "é"}));
}

// --- spec.xdp and its rules list ---------------------------------------------------------------

TEST(XdpDocument, RejectsSpecXdpWithoutRules) {
  expectFirstError(parseSpec("  xdp:\n"), 5, 3,
                   "spec.xdp: must not be empty; remove spec.xdp or add a rule");
  expectFirstError(parseSpec("  xdp: {}\n"), 5, 8,
                   "spec.xdp: missing required field \"rules\"; remove spec.xdp or add a rule");
  expectFirstError(parseSpec("  xdp:\n    interfaces: [eth0]\n"), 6, 5,
                   "spec.xdp: missing required field \"rules\"");
  expectFirstError(parseSpec("  xdp:\n    rules: []\n"), 6, 12,
                   "spec.xdp.rules: must not be empty; remove spec.xdp or add a rule");
  expectFirstError(parseSpec("  xdp:\n    rules:\n"), 6, 5,
                   "spec.xdp.rules: must not be empty; remove spec.xdp or add a rule");
}

TEST(XdpDocument, RejectsWrongTypesForSections) {
  expectFirstError(parseSpec("  xdp: [a]\n"), 5, 8, "spec.xdp: expected a mapping, got a list");
  expectFirstError(parseSpec("  xdp: drop\n"), 5, 8, "spec.xdp: expected a mapping, got a string");
  expectFirstError(parseSpec("  xdp:\n    rules: {name: r}\n"), 6, 12,
                   "spec.xdp.rules: expected a list, got a mapping");
  expectFirstError(parseSpec("  xdp:\n    rules: [drop]\n"), 6, 13,
                   "spec.xdp.rules[0]: expected a mapping (a rule), got a string");
  expectFirstError(parseSpec("  xdp:\n    rules: [{name: r, match: [22]}]\n"), 6, 30,
                   "spec.xdp.rules[0].match: expected a mapping, got a list");
  expectFirstError(parseSpec("  xdp:\n    rules: [{name: r, rateLimit: 1000}]\n"), 6, 34,
                   "spec.xdp.rules[0].rateLimit: expected a mapping, got an integer");
  expectFirstError(parseMatch("sourceCIDRs: 10.0.0.0/8"), 7, 40,
                   "spec.xdp.rules[0].match.sourceCIDRs: expected a list, got a string");
  expectFirstError(parseMatch("protocol: [tcp]"), 7, 37,
                   "spec.xdp.rules[0].match.protocol: expected a string, got a list");
}

TEST(XdpDocument, RejectsUnknownFieldsAtEveryLevel) {
  const ParseResult r = parseSpec(R"(  xdp:
    interface: [eth0]
    rules:
      - name: r
        drop: true
        match: {protocol: tcp, port: 22}
        rateLimit: {packetsPerSecond: 1, perSource: {ipv4: 1}}
      - name: s
        rateLimit: {packetsPerSecond: 1, perSourcePrefix: {v4: 1}}
)");
  expectFirstError(r, 6, 5, "spec.xdp: unknown field \"interface\" (allowed: interfaces, rules)");
  ASSERT_EQ(r.errors.size(), 5u) << r.errorText();
  expectError(r, 1, 9, 9,
              "spec.xdp.rules[0]: unknown field \"drop\" (allowed: name, action, mode, match, "
              "rateLimit)");
  expectError(r, 2, 10, 32,
              "spec.xdp.rules[0].match: unknown field \"port\" (allowed: sourceCIDRs, "
              "destinationCIDRs, protocol, destinationPorts)");
  expectError(r, 3, 11, 42,
              "spec.xdp.rules[0].rateLimit: unknown field \"perSource\" (allowed: "
              "packetsPerSecond, burst, perSourcePrefix)");
  expectError(r, 4, 13, 60,
              "spec.xdp.rules[1].rateLimit.perSourcePrefix: unknown field \"v4\" (allowed: ipv4, "
              "ipv6)");
}

TEST(XdpDocument, RejectsTooManyRules) {
  std::string text = "  xdp:\n    rules:\n";
  for (size_t i = 0; i <= kMaxRulesPerPolicy; ++i) {
    text += "      - {name: r" + std::to_string(i) + ", match: {protocol: tcp}}\n";
  }
  const ParseResult r = parseSpec(text);
  expectFirstError(r, 7, 7, "spec.xdp.rules: 1025 entries, over the limit of 1024");
  EXPECT_EQ(r.errors.size(), 1u);
}

// --- Rules -------------------------------------------------------------------------------------

TEST(XdpDocument, RejectsBadNameActionAndMode) {
  const ParseResult r = parseSpec(R"(  xdp:
    rules:
      - name: Block_SSH
        action: reject
        mode: warn
        match: {protocol: tcp}
      - action: drop
        match: {protocol: tcp}
)");
  expectFirstError(r, 7, 15, "spec.xdp.rules[0].name: \"Block_SSH\" is not a valid name");
  ASSERT_EQ(r.errors.size(), 4u) << r.errorText();
  expectError(r, 1, 8, 17,
              "spec.xdp.rules[0].action: unknown action \"reject\" (allowed: drop, pass)");
  expectError(r, 2, 9, 15,
              "spec.xdp.rules[0].mode: unknown mode \"warn\" (allowed: enforce, audit)");
  expectError(r, 3, 11, 9, "spec.xdp.rules[1]: missing required field \"name\"");
}

TEST(XdpDocument, RejectsDuplicateRuleName) {
  expectFirstError(parseSpec(R"(  xdp:
    rules:
      - {name: r, match: {protocol: tcp}}
      - {name: r, match: {protocol: udp}}
)"),
                   8, 16,
                   "spec.xdp.rules[1].name: duplicate rule name \"r\" (first used at line 7)");
}

TEST(XdpDocument, RejectsRuleWithoutMatchOrRateLimit) {
  expectFirstError(parseSpec("  xdp:\n    rules:\n      - name: r\n        action: drop\n"), 7, 9,
                   "spec.xdp.rules[0]: missing required field \"match\" (only a rule with a "
                   "rateLimit may omit it");
}

TEST(XdpDocument, RejectsEmptyMatch) {
  expectFirstError(parseMatch(""), 7, 26,
                   "spec.xdp.rules[0].match: no conditions: set at least one of sourceCIDRs, "
                   "destinationCIDRs, protocol, destinationPorts");
  expectFirstError(parseMatch("protocol: ~"), 7, 26, "no conditions");
  // Even with a rate limit: omit match to limit every packet.
  expectFirstError(
      parseSpec("  xdp:\n    rules:\n      - {name: r, match: {}, rateLimit: {packetsPerSecond: "
                "1}}\n"),
      7, 26, "no conditions");
  expectFirstError(parseSpec("  xdp:\n    rules:\n      - name: r\n        match:\n"), 8, 9,
                   "spec.xdp.rules[0].match: must not be empty; set at least one condition");
}

TEST(XdpDocument, RejectsRateLimitOnAPassRule) {
  expectFirstError(parseSpec(R"(  xdp:
    rules:
      - name: r
        action: pass
        match: {sourceCIDRs: [192.0.2.0/24]}
        rateLimit:
          packetsPerSecond: 10
)"),
                   11, 11,
                   "spec.xdp.rules[0].rateLimit: a rate limit needs action drop: the packets over "
                   "the rate are dropped");
}

// --- Interfaces ---------------------------------------------------------------------------------

TEST(XdpDocument, RejectsAnEmptyInterfaceList) {
  expectFirstError(parseSpec("  xdp:\n    interfaces: []\n    rules: [{name: r, match: {protocol: "
                             "tcp}}]\n"),
                   6, 17,
                   "spec.xdp.interfaces: must not be empty; omit interfaces to attach to every "
                   "interface but loopback");
  expectFirstError(parseSpec("  xdp:\n    interfaces:\n    rules: [{name: r, match: {protocol: "
                             "tcp}}]\n"),
                   6, 5, "spec.xdp.interfaces: must not be empty; omit interfaces");
  expectFirstError(parseSpec("  xdp:\n    interfaces: eth0\n    rules: [{name: r, match: "
                             "{protocol: tcp}}]\n"),
                   6, 17, "spec.xdp.interfaces: expected a list, got a string");
}

TEST(XdpDocument, RejectsBadInterfaceNames) {
  const ParseResult r = parseSpec(R"(  xdp:
    interfaces:
      - abcdefghijklmnop
      - .
      - ".."
      - a/b
      - "a:b"
      - "a b"
      - "a\tb"
      - 0
      - ""
      - eth0
      - eth0
    rules: [{name: r, match: {protocol: tcp}}]
)");
  expectFirstError(r, 7, 9,
                   "spec.xdp.interfaces[0]: \"abcdefghijklmnop\" is 16 bytes long, over the limit "
                   "of 15");
  ASSERT_EQ(r.errors.size(), 10u) << r.errorText();
  expectError(r, 1, 8, 9, "spec.xdp.interfaces[1]: \".\" is not a valid interface name");
  expectError(r, 2, 9, 9, "\"..\" is not a valid interface name");
  expectError(r, 3, 10, 9, "\"a/b\" contains '/'");
  expectError(r, 4, 11, 9, "\"a:b\" contains ':'");
  expectError(r, 5, 12, 9, "\"a b\" contains whitespace");
  expectError(r, 6, 13, 9, "contains whitespace");
  expectError(r, 7, 14, 9, "spec.xdp.interfaces[7]: expected a string, got an integer");
  expectError(r, 8, 15, 9, "spec.xdp.interfaces[8]: must not be empty");
  expectError(r, 9, 17, 9,
              "spec.xdp.interfaces[10]: duplicate interface \"eth0\" (first at line 16, column 9)");
}

TEST(XdpDocument, RejectsNulAndTheKernelsOtherWhitespaceInInterfaceNames) {
  // A double-quoted escape can put a NUL in a value; the kernel's isspace() also counts byte
  // 0xa0, which UTF-8 uses in U+00A0 (and other characters) as a continuation byte.
  const ParseResult r = parseSpec(
      "  xdp:\n    interfaces: [\"a\\0b\", \"a\\u00a0b\"]\n"
      "    rules: [{name: r, match: {protocol: tcp}}]\n");
  expectFirstError(r, 6, 18, "spec.xdp.interfaces[0]: \"a\\0b\" contains a NUL character");
  ASSERT_EQ(r.errors.size(), 2u) << r.errorText();
  expectError(r, 1, 6, 26,
              "spec.xdp.interfaces[1]: \"a\xc2\xa0"
              "b\" contains whitespace");
}

// --- Address blocks -----------------------------------------------------------------------------

TEST(XdpDocument, RejectsHostBitsWithTheNetworkAddress) {
  const ParseResult r =
      parseMatch("sourceCIDRs: [10.0.0.1/8], destinationCIDRs: [\"2001:db8::1/32\"]");
  expectFirstError(r, 7, 41,
                   "spec.xdp.rules[0].match.sourceCIDRs[0]: \"10.0.0.1/8\" has host bits set; did "
                   "you mean 10.0.0.0/8?");
  ASSERT_EQ(r.errors.size(), 2u) << r.errorText();
  expectError(r, 1, 7, 73,
              "destinationCIDRs[0]: \"2001:db8::1/32\" has host bits set; did you mean "
              "2001:db8::/32?");
}

TEST(XdpDocument, RejectsIpv4MappedIpv6) {
  const ParseResult r =
      parseMatch("sourceCIDRs: [\"::ffff:0:0/96\", \"::ffff:10.0.0.0/104\", \"::ffff:192.0.2.1\"]");
  expectFirstError(r, 7, 41,
                   "\"::ffff:0:0/96\" is an IPv4-mapped IPv6 address block; write IPv4 in dotted "
                   "form: 0.0.0.0/0");
  ASSERT_EQ(r.errors.size(), 3u) << r.errorText();
  expectError(r, 1, 7, 58, "write IPv4 in dotted form: 10.0.0.0/8");
  expectError(r, 2, 7, 81, "write IPv4 in dotted form: 192.0.2.1/32");
}

TEST(XdpDocument, RejectsBadPrefixLengths) {
  const ParseResult r = parseMatch(
      "sourceCIDRs: [10.0.0.0/33, \"::/129\", 10.0.0.0/, 10.0.0.0/08, \"10.0.0.0/+8\", "
      "\"10.0.0.0/ 8\", 10.0.0.0/8/8, 10.0.0.0/x]");
  expectFirstError(r, 7, 41,
                   "sourceCIDRs[0]: \"10.0.0.0/33\" has an invalid prefix length \"33\" (allowed: "
                   "0..32 for IPv4");
  ASSERT_EQ(r.errors.size(), 8u) << r.errorText();
  expectError(r, 1, 7, 54,
              "\"::/129\" has an invalid prefix length \"129\" (allowed: 0..128 for IPv6");
  expectError(r, 2, 7, 64, "\"10.0.0.0/\" has an invalid prefix length \"\"");
  expectError(r, 3, 7, 75, "\"10.0.0.0/08\" has an invalid prefix length \"08\"");
  expectError(r, 4, 7, 88, "invalid prefix length \"+8\"");
  expectError(r, 5, 7, 103, "invalid prefix length \" 8\"");
  expectError(r, 6, 7, 118, "invalid prefix length \"8/8\"");
  expectError(r, 7, 7, 132, "invalid prefix length \"x\"");
}

TEST(XdpDocument, RejectsWhatIsNotAnAddress) {
  const ParseResult r = parseMatch(
      "sourceCIDRs: [10.0.0, 10.0.0.256, 010.0.0.1, \"fe80::1%eth0\", example.com, \" 10.0.0.0\", "
      "\"\", 10, 1.5, true, [10.0.0.0/8]]");
  expectFirstError(r, 7, 41,
                   "sourceCIDRs[0]: \"10.0.0\" is not an IPv4 or IPv6 address block (write "
                   "a.b.c.d/n, a.b.c.d, x::/n or an IPv6 address)");
  // Eleven problems; the first ten are kept.
  ASSERT_EQ(r.errors.size(), 10u) << r.errorText();
  expectError(r, 1, 7, 49, "\"10.0.0.256\" is not an IPv4 or IPv6 address block");
  expectError(r, 2, 7, 61, "\"010.0.0.1\" is not an IPv4 or IPv6 address block");
  expectError(r, 3, 7, 72, "\"fe80::1%eth0\" is not");
  expectError(r, 4, 7, 88, "\"example.com\" is not");
  expectError(r, 5, 7, 101, "\" 10.0.0.0\" is not");
  expectError(r, 6, 7, 114, "\"\" is not");
  expectError(r, 7, 7, 118,
              "sourceCIDRs[7]: expected an address block (a.b.c.d/n, a.b.c.d, x::/n or an IPv6 "
              "address), got an integer");
  expectError(r, 8, 7, 122, "got a number");
  expectError(r, 9, 7, 127, "got a boolean");
}

TEST(XdpDocument, RejectsDuplicateAddressBlocks) {
  const ParseResult r = parseMatch(
      "sourceCIDRs: [198.51.100.7, 10.0.0.0/8, 198.51.100.7/32], "
      "destinationCIDRs: [\"2001:db8::/32\", \"2001:0db8::/32\"]");
  expectFirstError(r, 7, 67,
                   "sourceCIDRs[2]: duplicate address block 198.51.100.7/32 (first at line 7, "
                   "column 41)");
  ASSERT_EQ(r.errors.size(), 2u) << r.errorText();
  expectError(r, 1, 7, 121,
              "destinationCIDRs[1]: duplicate address block 2001:db8::/32 (first at line 7, "
              "column 104)");
}

TEST(XdpDocument, RejectsEmptyAddressLists) {
  expectFirstError(parseMatch("sourceCIDRs: [], protocol: tcp"), 7, 40,
                   "spec.xdp.rules[0].match.sourceCIDRs: must not be empty; omit it to match any "
                   "address");
  expectFirstError(parseSpec(R"(  xdp:
    rules:
      - name: r
        match:
          protocol: tcp
          destinationCIDRs:
)"),
                   10, 11, "spec.xdp.rules[0].match.destinationCIDRs: must not be empty");
}

TEST(XdpDocument, RejectsTooManyListValues) {
  // A list over the limit is refused before its entries are looked at.
  std::string ports;
  for (size_t i = 0; i <= kMaxXdpListValues; ++i) ports += "1,";
  expectFirstError(parseMatch("destinationPorts: [" + ports + "]"), 7, 45,
                   "spec.xdp.rules[0].match.destinationPorts: 65537 entries, over the limit of "
                   "65536");
}

TEST(XdpDocument, RejectsFamiliesThatCanNeverMeet) {
  expectFirstError(
      parseMatch("sourceCIDRs: [10.0.0.0/8, 192.0.2.1], destinationCIDRs: [\"2001:db8::/32\"]"), 7,
      83,
      "spec.xdp.rules[0].match.destinationCIDRs: all blocks are IPv6 but all sourceCIDRs blocks "
      "are IPv4: a packet is one or the other, so the rule can never match");
  expectFirstError(parseMatch("sourceCIDRs: [\"::/0\"], destinationCIDRs: [0.0.0.0/0]"), 7, 68,
                   "all blocks are IPv4 but all sourceCIDRs blocks are IPv6");
}

// --- Protocol and ports -------------------------------------------------------------------------

TEST(XdpDocument, RejectsUnknownProtocol) {
  expectFirstError(parseMatch("protocol: TCP"), 7, 37,
                   "spec.xdp.rules[0].match.protocol: unknown protocol \"TCP\" (allowed: tcp, udp, "
                   "icmp, icmpv6)");
  expectFirstError(parseMatch("protocol: 6"), 7, 37,
                   "spec.xdp.rules[0].match.protocol: expected a string, got an integer");
}

TEST(XdpDocument, RejectsIcmpThatCanNeverMatch) {
  expectFirstError(parseMatch("sourceCIDRs: [\"2001:db8::/32\"], protocol: icmp"), 7, 69,
                   "spec.xdp.rules[0].match.protocol: icmp is IPv4 only, but sourceCIDRs has no "
                   "IPv4 block, so the rule can never match (use icmpv6 for IPv6)");
  expectFirstError(parseMatch("destinationCIDRs: [10.0.0.0/8], protocol: icmpv6"), 7, 69,
                   "icmpv6 is IPv6 only, but destinationCIDRs has no IPv6 block, so the rule can "
                   "never match (use icmp for IPv4)");
  // An IPv4 source could match, but then the destination must be IPv4 too.
  expectFirstError(parseMatch("sourceCIDRs: [10.0.0.0/8, \"::/0\"], destinationCIDRs: "
                              "[\"2001:db8::/32\"], protocol: icmp"),
                   7, 109, "icmp is IPv4 only, but destinationCIDRs has no IPv4 block");
}

TEST(XdpDocument, RejectsPortsWithIcmp) {
  expectFirstError(parseMatch("protocol: icmp, destinationPorts: [22]"), 7, 61,
                   "spec.xdp.rules[0].match.destinationPorts: protocol icmp has no ports; ports "
                   "need protocol tcp or udp, or no protocol");
  expectFirstError(parseMatch("protocol: icmpv6, destinationPorts: [22]"), 7, 63,
                   "protocol icmpv6 has no ports");
}

TEST(XdpDocument, RejectsBadPorts) {
  const ParseResult r = parseMatch(
      "destinationPorts: [0, 65536, -1, \"0\", \"+80\", \" 80\", \"080\", \"8080-80\", \"1-2-3\", "
      "\"-5\", 0x50, 1.5]");
  expectFirstError(r, 7, 46, "destinationPorts[0]: port 0 is under the minimum of 1");
  // Twelve problems; the first ten are kept.
  ASSERT_EQ(r.errors.size(), 10u) << r.errorText();
  expectError(r, 1, 7, 49, "destinationPorts[1]: port 65536 is over the maximum of 65535");
  expectError(r, 2, 7, 56, "port -1 is negative");
  expectError(r, 3, 7, 60,
              "\"0\" is not a port or a port range (allowed: N or lo-hi, decimal, 1 <= lo <= hi <= "
              "65535");
  expectError(r, 4, 7, 65, "\"+80\" is not a port or a port range");
  expectError(r, 5, 7, 72, "\" 80\" is not a port or a port range");
  expectError(r, 6, 7, 79, "\"080\" is not a port or a port range");
  expectError(r, 7, 7, 86,
              "\"8080-80\" is a backwards range (lo must not be over hi: write 80-8080)");
  expectError(r, 8, 7, 97, "\"1-2-3\" is not a port or a port range");
  expectError(r, 9, 7, 106, "\"-5\" is not a port or a port range");
}

TEST(XdpDocument, RejectsPortsOfTheWrongType) {
  const ParseResult r = parseMatch("destinationPorts: [0x50, 1.5, true, [22], \"\"]");
  expectFirstError(r, 7, 46, "write port values as plain decimal numbers, got 0x50");
  ASSERT_EQ(r.errors.size(), 5u) << r.errorText();
  expectError(r, 1, 7, 52,
              "destinationPorts[1]: expected a port (an integer 1..65535) or a range (\"lo-hi\"), "
              "got a number");
  expectError(r, 2, 7, 57, "got a boolean");
  expectError(r, 3, 7, 63, "got a list");
  expectError(r, 4, 7, 69, "\"\" is not a port or a port range");
}

TEST(XdpDocument, RejectsDuplicatePorts) {
  const ParseResult r = parseMatch("destinationPorts: [443, \"443\", 80-90, \"80-90\", 7, 7-7]");
  expectFirstError(r, 7, 51,
                   "destinationPorts[1]: duplicate port 443 (first at line 7, column 46)");
  ASSERT_EQ(r.errors.size(), 3u) << r.errorText();
  expectError(r, 1, 7, 65, "duplicate port 80-90 (first at line 7, column 58)");
  expectError(r, 2, 7, 77, "duplicate port 7 (first at line 7, column 74)");
}

TEST(XdpDocument, RejectsEmptyPortList) {
  expectFirstError(parseMatch("destinationPorts: []"), 7, 45,
                   "spec.xdp.rules[0].match.destinationPorts: must not be empty; omit it to match "
                   "any port");
}

// --- Rate limits --------------------------------------------------------------------------------

TEST(XdpDocument, RejectsBadRateLimitIntegers) {
  const ParseResult r = parseSpec(R"(  xdp:
    rules:
      - {name: a, rateLimit: {packetsPerSecond: 0}}
      - {name: b, rateLimit: {packetsPerSecond: 100000001}}
      - {name: c, rateLimit: {packetsPerSecond: 1.5}}
      - {name: d, rateLimit: {packetsPerSecond: "1000"}}
      - {name: e, rateLimit: {packetsPerSecond: true}}
      - {name: f, rateLimit: {packetsPerSecond: -5}}
      - {name: g, rateLimit: {packetsPerSecond: 010}}
      - {name: h, rateLimit: {packetsPerSecond: 99999999999999999999999}}
)");
  expectFirstError(r, 7, 49,
                   "spec.xdp.rules[0].rateLimit.packetsPerSecond: packetsPerSecond 0 is under the "
                   "minimum of 1");
  ASSERT_EQ(r.errors.size(), 8u) << r.errorText();
  expectError(r, 1, 8, 49, "packetsPerSecond 100000001 is over the maximum of 100000000");
  expectError(r, 2, 9, 49, "expected an integer 1..100000000, got a number");
  expectError(r, 3, 10, 49, "expected an integer 1..100000000, got a string (remove the quotes)");
  expectError(r, 4, 11, 49, "got a boolean");
  expectError(r, 5, 12, 49, "packetsPerSecond -5 is negative");
  expectError(r, 6, 13, 49, "packetsPerSecond 010 has a leading zero");
  expectError(r, 7, 14, 49, "is over the maximum of 100000000");
}

TEST(XdpDocument, RejectsBadBurstAndPrefixes) {
  const ParseResult r = parseSpec(R"(  xdp:
    rules:
      - name: r
        rateLimit:
          packetsPerSecond: 10
          burst: 0
      - name: s
        rateLimit:
          packetsPerSecond: 10
          burst: 1000000001
          perSourcePrefix: {ipv4: 33, ipv6: 129}
      - name: t
        rateLimit:
          packetsPerSecond: 10
          perSourcePrefix: {ipv4: -1, ipv6: "64"}
)");
  expectFirstError(r, 10, 18,
                   "spec.xdp.rules[0].rateLimit.burst: burst 0 is under the minimum of 1");
  ASSERT_EQ(r.errors.size(), 6u) << r.errorText();
  expectError(r, 1, 14, 18, "burst 1000000001 is over the maximum of 1000000000");
  expectError(r, 2, 15, 35,
              "spec.xdp.rules[1].rateLimit.perSourcePrefix.ipv4: ipv4 33 is over the maximum of "
              "32");
  expectError(r, 3, 15, 45, "perSourcePrefix.ipv6: ipv6 129 is over the maximum of 128");
  expectError(r, 4, 19, 35, "perSourcePrefix.ipv4: ipv4 -1 is negative");
  expectError(r, 5, 19, 45,
              "perSourcePrefix.ipv6: expected an integer 0..128, got a string (remove the quotes)");
}

TEST(XdpDocument, RejectsMissingOrEmptyRateLimitParts) {
  expectFirstError(parseSpec("  xdp:\n    rules:\n      - {name: r, rateLimit: {burst: 5}}\n"), 7,
                   30, "spec.xdp.rules[0].rateLimit: missing required field \"packetsPerSecond\"");
  expectFirstError(parseSpec("  xdp:\n    rules:\n      - {name: r, rateLimit: {packetsPerSecond: "
                             "~}}\n"),
                   7, 31, "spec.xdp.rules[0].rateLimit.packetsPerSecond: must not be empty");
  expectFirstError(parseSpec("  xdp:\n    rules:\n      - name: r\n        rateLimit:\n"), 8, 9,
                   "spec.xdp.rules[0].rateLimit: must not be empty; remove it for no rate limit");
  expectFirstError(parseSpec("  xdp:\n    rules:\n      - {name: r, rateLimit: {packetsPerSecond: "
                             "1, perSourcePrefix: {}}}\n"),
                   7, 69,
                   "spec.xdp.rules[0].rateLimit.perSourcePrefix: must not be empty; set ipv4, ipv6 "
                   "or both");
  expectFirstError(parseSpec("  xdp:\n    rules:\n      - {name: r, rateLimit: {packetsPerSecond: "
                             "1, perSourcePrefix: ~}}\n"),
                   7, 52, "spec.xdp.rules[0].rateLimit.perSourcePrefix: must not be empty");
}

// --- The whole document -------------------------------------------------------------------------

TEST(XdpDocument, AnXdpErrorRejectsTheWholeDocument) {
  const ParseResult r = parse(R"(apiVersion: vigil.dev/v1alpha1
kind: Policy
metadata: {name: a}
spec:
  exec:
    - {name: r, action: kill, match: {binaries: [/usr/bin/nc]}}
  xdp:
    rules:
      - {name: r, match: {sourceCIDRs: [10.0.0.1/8]}}
)");
  expectFirstError(r, 9, 41, "did you mean 10.0.0.0/8?");
  EXPECT_EQ(r.errors.size(), 1u) << r.errorText();
}

TEST(XdpDocument, UnknownSpecFieldListsXdp) {
  expectFirstError(parseSpec("  xpd: {}\n"), 5, 3,
                   "spec: unknown field \"xpd\" (allowed: mode, exec, xdp)");
}

}  // namespace
}  // namespace vigil::policy
