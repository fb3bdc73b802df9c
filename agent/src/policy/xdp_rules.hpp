#pragma once

// XDP rules (spec.xdp of every policy in force) -> the contents of one kernel rule set: the
// entry array, the source and destination LPM tries with their candidate lists, and the
// interface table (see bpf/abi/vigil/xdp.h for how the kernel uses them). Pure: interfaces are
// looked up through an XdpResolver, so this is unit-tested without a kernel.

#include <array>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include <vigil/xdp.h>

#include "policy/document.hpp"
#include "policy/exec_rules.hpp"
#include "policy/model.hpp"

namespace vigil::policy {

struct InterfaceInfo {
  uint32_t ifindex = 0;
  bool loopback = false;
};

struct XdpResolver {
  // The interface of that name in the agent's network namespace, or nothing.
  std::function<std::optional<InterfaceInfo>(const std::string& name)> interface;
};

// Looks interfaces up on this host (if_nametoindex, IFF_LOOPBACK).
XdpResolver hostXdpResolver();

struct XdpRuleRef {
  std::string policy;
  std::string rule;
  XdpAction action = XdpAction::drop;
  Mode mode = Mode::enforce;
  bool rateLimited = false;
};

// A trie key: the address as IPv6 (IPv4-mapped) and the trie prefix length (96 + n for an
// IPv4 /n).
struct LpmPrefix {
  std::array<uint8_t, 16> addr{};
  uint32_t bits = 0;
  auto operator<=>(const LpmPrefix&) const = default;
};

// Scope bit of the policies that name no interface: every interface but loopback.
inline constexpr uint64_t kScopeAllButLoopback = 1ull << (VIGIL_XDP_MAX_SCOPES - 1);

struct CompiledXdp {
  std::map<uint32_t, XdpRuleRef> slots;        // every rule by slot
  std::vector<vigil_xdp_entry> entries;        // by entry index
  std::map<LpmPrefix, std::vector<uint32_t>> sourceTrie;       // entry indexes, best first
  std::map<LpmPrefix, std::vector<uint32_t>> destinationTrie;  // idem
  // Interfaces to attach to: the named ones, and with allInterfaces every non-loopback one.
  bool allInterfaces = false;
  std::map<std::string, uint32_t> interfaces;  // named interface -> ifindex
  // Scope bits per named interface; an interface that is not here has kScopeAllButLoopback.
  std::map<uint32_t, uint64_t> scopes;
  bool scoped() const { return !scopes.empty(); }
  bool empty() const { return slots.empty(); }
};

struct XdpCompileResult {
  CompiledXdp rules;
  std::vector<ParseIssue> errors;  // nothing may be applied when there are any
  std::vector<ParseIssue> warnings;
};

// Policies in precedence order for ties (by name); rules in file order.
XdpCompileResult compileXdpRules(const std::vector<const Policy*>& policies, SlotTable& slots,
                                 const XdpResolver& resolver);

}  // namespace vigil::policy
