#pragma once

// Policies as validated C++ values. The YAML parser (document.hpp) produces these; the
// compiler (exec_rules.hpp) turns them into BPF map contents. Pure data: no libbpf, no I/O.

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace vigil::policy {

// Where something was written: 1-based line and column, as editors show them.
struct Position {
  std::string file;
  int line = 0;
  int column = 0;
  std::string str() const;  // "file:line:col"
};

enum class Mode { enforce, audit };
enum class ExecAction { kill, audit };

// Every list is OR'ed inside itself; the lists a rule sets are AND'ed. An unset list does not
// constrain. At least one list must be set.
struct ExecMatch {
  std::vector<std::string> binaries;            // absolute paths, matched by file identity
  std::vector<std::string> pathPrefixes;        // absolute, the resolved path starts with it
  std::vector<std::string> parentBinaries;      // absolute paths, the parent's executable
  std::vector<uint32_t> uids;                   // real uid of the new program
  std::vector<std::string> cgroupPathPrefixes;  // cgroup v2 paths, e.g. /kubepods.slice
  // Where each entry of binaries and parentBinaries was written (same order), so that a
  // binary that cannot be resolved is reported at its own line.
  std::vector<Position> binaryPositions;
  std::vector<Position> parentBinaryPositions;
  bool empty() const;
};

struct ExecRule {
  std::string name;
  ExecMatch match;
  ExecAction action = ExecAction::kill;
  std::optional<Mode> mode;  // overrides the policy's
  Position position;         // of the rule's mapping
  Mode effectiveMode(Mode policyMode) const { return mode.value_or(policyMode); }
};

// --- XDP packet filter (spec.xdp) ---------------------------------------------------------

enum class XdpAction { drop, pass };
enum class Protocol { tcp, udp, icmp, icmpv6 };

// An address block. The address is kept as IPv6, IPv4 as IPv4-mapped (::ffff:a.b.c.d), with
// the host bits zero; prefix counts bits of the family's own address (0..32 or 0..128).
struct Cidr {
  std::array<uint8_t, 16> addr{};
  int prefix = 0;
  bool v4 = false;
  Position position;
  std::string str() const;  // "10.0.0.0/8", "2001:db8::/32"
  auto operator<=>(const Cidr& o) const {
    if (auto c = v4 <=> o.v4; c != 0) return c;
    if (auto c = addr <=> o.addr; c != 0) return c;
    return prefix <=> o.prefix;
  }
  bool operator==(const Cidr& o) const { return v4 == o.v4 && addr == o.addr && prefix == o.prefix; }
};

// Destination ports lo..hi, inclusive.
struct PortRange {
  uint16_t lo = 0;
  uint16_t hi = 0;
  Position position;
};

// Every list is OR'ed inside itself; what is set is AND'ed. An empty match matches every IP
// packet. Ports need the protocol tcp or udp, or no protocol (then TCP and UDP both match).
struct XdpMatch {
  std::vector<Cidr> sources;
  std::vector<Cidr> destinations;
  std::optional<Protocol> protocol;
  Position protocolPosition;
  std::vector<PortRange> ports;
};

// Packets over the rate, per source address masked to the prefix lengths, get the rule's
// action (drop, or counted in audit mode); packets under it pass.
struct RateLimit {
  uint64_t packetsPerSecond = 0;
  uint64_t burst = 0;  // 0 in YAML means "not given": the default is packetsPerSecond
  int ipv4Prefix = 32;
  int ipv6Prefix = 64;
  Position position;
};

struct XdpRule {
  std::string name;
  XdpMatch match;
  XdpAction action = XdpAction::drop;
  std::optional<Mode> mode;  // overrides the policy's
  std::optional<RateLimit> rateLimit;
  Position position;
  Mode effectiveMode(Mode policyMode) const { return mode.value_or(policyMode); }
};

struct XdpSpec {
  // Interface names; empty means every interface but loopback, including ones that appear
  // later.
  std::vector<std::string> interfaces;
  std::vector<Position> interfacePositions;  // same order as interfaces
  std::vector<XdpRule> rules;
  Position position;  // of spec.xdp
};

struct Policy {
  std::string name;
  Mode mode = Mode::enforce;
  std::vector<ExecRule> exec;
  std::optional<XdpSpec> xdp;
  Position position;  // of the document
};

// Limits, enforced with errors, never by truncation.
inline constexpr size_t kMaxFileBytes = 1 << 20;
inline constexpr size_t kMaxRulesPerPolicy = 1024;
inline constexpr size_t kMaxValuesPerList = 256;
inline constexpr size_t kMaxNameLength = 63;

// spec.xdp lists may be long (address block lists); the file size limit still applies.
inline constexpr size_t kMaxXdpListValues = 65536;
inline constexpr size_t kMaxInterfaceNameLength = 15;  // IFNAMSIZ - 1

const char* toString(Mode m);
const char* toString(ExecAction a);
const char* toString(XdpAction a);
const char* toString(Protocol p);

}  // namespace vigil::policy
