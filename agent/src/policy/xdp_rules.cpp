#include "policy/xdp_rules.hpp"

#include <net/if.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <fstream>
#include <limits>
#include <utility>

namespace vigil::policy {
namespace {

using Addr = std::array<uint8_t, 16>;

// Errors about over-full candidate lists are reported for this many address blocks; the rest
// are summed up in one more issue (a bad rule can put thousands of blocks over the limit).
constexpr size_t kMaxCandidateIssues = 8;

enum class Family { any, v4, v6 };

Addr leadingOnes(uint32_t bits) {
  Addr m{};
  for (uint32_t i = 0; i < 16; i++) {
    if (bits >= 8 * (i + 1)) {
      m[i] = 0xff;
    } else if (bits > 8 * i) {
      m[i] = static_cast<uint8_t>(0xff << (8 - (bits - 8 * i)));
    }
  }
  return m;
}

Addr masked(const Addr& a, uint32_t bits) {
  Addr m = leadingOnes(bits);
  for (size_t i = 0; i < a.size(); i++) m[i] &= a[i];
  return m;
}

// Bits of the IPv4-mapped form: an IPv4 /n is /(96 + n).
uint32_t mappedBits(const Cidr& c) {
  const int familyBits = c.v4 ? 32 : 128;
  const int n = std::clamp(c.prefix, 0, familyBits);
  return static_cast<uint32_t>(c.v4 ? 96 + n : n);
}

LpmPrefix keyOf(const Cidr& c) {
  const uint32_t bits = mappedBits(c);
  return LpmPrefix{masked(c.addr, bits), bits};
}

// True when block q holds every address of block p.
bool encloses(const LpmPrefix& q, const LpmPrefix& p) {
  return q.bits <= p.bits && masked(p.addr, q.bits) == q.addr;
}

Family familyOf(const Cidr* c) {
  if (c == nullptr) return Family::any;
  return c->v4 ? Family::v4 : Family::v6;
}

Family familyOf(std::optional<Protocol> p) {
  if (p == Protocol::icmp) return Family::v4;
  if (p == Protocol::icmpv6) return Family::v6;
  return Family::any;
}

bool compatible(Family a, Family b) { return a == Family::any || b == Family::any || a == b; }

uint8_t protocolNumber(std::optional<Protocol> p) {
  if (!p) return 0;
  switch (*p) {
    case Protocol::tcp:
      return 6;
    case Protocol::udp:
      return 17;
    case Protocol::icmp:
      return 1;
    case Protocol::icmpv6:
      return 58;
  }
  return 0;
}

int prefixLength(const Cidr* c) { return c == nullptr ? 0 : c->prefix; }

void setAddress(const Cidr* c, uint8_t (&net)[16], uint8_t (&mask)[16]) {
  if (c == nullptr) {
    std::memset(net, 0, sizeof net);
    std::memset(mask, 0, sizeof mask);
    return;
  }
  const uint32_t bits = mappedBits(*c);
  const Addr m = leadingOnes(bits);
  const Addr n = masked(c->addr, bits);
  std::memcpy(net, n.data(), sizeof net);
  std::memcpy(mask, m.data(), sizeof mask);
}

// The address block of a trie key, as an operator wrote it.
std::string prefixText(const LpmPrefix& key) {
  static constexpr uint8_t kMapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  Cidr c;
  c.addr = key.addr;
  if (key.bits >= 96 && std::memcmp(key.addr.data(), kMapped, sizeof kMapped) == 0) {
    c.v4 = true;
    c.prefix = static_cast<int>(key.bits) - 96;
  } else {
    c.prefix = static_cast<int>(key.bits);
  }
  std::string text = c.str();
  return key.bits == 0 ? text + " (any address)" : text;
}

// What the compiler keeps about each entry beside what goes to the kernel.
struct EntryInfo {
  uint32_t order = 0;  // of its rule, over all policies
  int longer = 0;      // prefix lengths, family bits
  int shorter = 0;
  bool inDestinationTrie = false;
  LpmPrefix key;
};

// Fills one trie: each distinct key gets every entry indexed at it or at an enclosing key of
// the same trie, by rank. Keys sorted by (address, length) list every block right after the
// blocks that enclose it, and the blocks inside one block are contiguous, so one sweep with a
// stack of the enclosing keys sees each key's enclosing entries at once.
class TrieBuilder {
 public:
  TrieBuilder(const std::vector<vigil_xdp_entry>& entries, const std::vector<EntryInfo>& info,
              const std::vector<const XdpRule*>& rules, const char* what)
      : entries_(entries), info_(info), rules_(rules), what_(what) {}

  void add(uint32_t entry) { indexed_.push_back(entry); }

  // Fills `trie`. A key covered by more than VIGIL_XDP_CANDIDATES entries is left out and
  // counted in `overfull`; the first few of those get an issue each.
  void build(std::map<LpmPrefix, std::vector<uint32_t>>& trie, std::vector<ParseIssue>& issues,
             size_t& overfull) {
    std::sort(indexed_.begin(), indexed_.end(), [&](uint32_t a, uint32_t b) {
      if (info_[a].key != info_[b].key) return info_[a].key < info_[b].key;
      return entries_[a].rank < entries_[b].rank;
    });
    std::vector<Frame> stack;
    for (size_t first = 0; first < indexed_.size();) {
      const LpmPrefix& key = info_[indexed_[first]].key;
      size_t last = first;
      while (last < indexed_.size() && info_[indexed_[last]].key == key) last++;
      while (!stack.empty() && !encloses(stack.back().key, key)) stack.pop_back();

      Frame frame{key, first, last, 0, {}};
      const std::vector<uint32_t> none;
      const std::vector<uint32_t>& outer = stack.empty() ? none : stack.back().best;
      frame.count = (stack.empty() ? 0 : stack.back().count) + (last - first);
      // Merge by rank; only the first VIGIL_XDP_CANDIDATES can ever be used.
      size_t i = 0, j = first;
      while (frame.best.size() < VIGIL_XDP_CANDIDATES && (i < outer.size() || j < last)) {
        if (j == last ||
            (i < outer.size() && entries_[outer[i]].rank < entries_[indexed_[j]].rank)) {
          frame.best.push_back(outer[i++]);
        } else {
          frame.best.push_back(indexed_[j++]);
        }
      }
      if (frame.count > VIGIL_XDP_CANDIDATES) {
        if (overfull++ < kMaxCandidateIssues) issues.push_back(overfullIssue(stack, frame));
        if (overfull == kMaxCandidateIssues + 1) firstUnreported_ = positionOf(frame);
      } else {
        trie.emplace_hint(trie.end(), key, frame.best);
      }
      stack.push_back(std::move(frame));
      first = last;
    }
  }

  const Position& firstUnreported() const { return firstUnreported_; }

 private:
  struct Frame {
    LpmPrefix key;
    size_t first = 0, last = 0;  // entries indexed at exactly this key, in indexed_
    uint64_t count = 0;          // entries indexed here or at an enclosing key
    std::vector<uint32_t> best;  // the first VIGIL_XDP_CANDIDATES of them by rank
  };

  // The rule to blame: the last one written among those indexed at exactly this block.
  const Position& positionOf(const Frame& f) const {
    uint32_t order = 0;
    for (size_t k = f.first; k < f.last; k++) order = std::max(order, info_[indexed_[k]].order);
    return rules_[order]->position;
  }

  ParseIssue overfullIssue(const std::vector<Frame>& stack, const Frame& f) const {
    std::set<uint32_t> orders;
    auto collect = [&](const Frame& g) {
      for (size_t k = g.first; k < g.last; k++) orders.insert(info_[indexed_[k]].order);
    };
    for (const Frame& g : stack) collect(g);
    collect(f);
    std::string msg = std::string(what_) + " " + prefixText(f.key) + " is covered by ";
    if (orders.size() == f.count) {
      msg += std::to_string(f.count) + " XDP rules";
    } else {
      // A rule has one entry per source, destination and port range.
      msg += std::to_string(f.count) + " XDP rule entries of " + std::to_string(orders.size()) +
             " rules";
    }
    msg += "; at most " + std::to_string(VIGIL_XDP_CANDIDATES) + " may cover one address";
    return ParseIssue{positionOf(f), msg};
  }

  const std::vector<vigil_xdp_entry>& entries_;
  const std::vector<EntryInfo>& info_;
  const std::vector<const XdpRule*>& rules_;
  const char* what_;
  std::vector<uint32_t> indexed_;
  Position firstUnreported_;
};

// Fills the ABI entry fields every expansion of a rule shares.
vigil_xdp_entry entryTemplate(const XdpRule& r, Mode mode, uint32_t slot, uint64_t scopes) {
  vigil_xdp_entry e{};
  e.slot = slot;
  e.scopes = scopes;
  e.proto = protocolNumber(r.match.protocol);
  e.action = r.action == XdpAction::drop ? VIGIL_XDP_ACT_DROP : VIGIL_XDP_ACT_PASS;
  if (mode == Mode::audit) e.flags |= VIGIL_XDP_F_AUDIT;
  const Family pf = familyOf(r.match.protocol);
  if (pf == Family::v4) e.flags |= VIGIL_XDP_F_V4;
  if (pf == Family::v6) e.flags |= VIGIL_XDP_F_V6;
  if (r.rateLimit) {
    const RateLimit& rl = *r.rateLimit;
    const uint64_t interval = std::max<uint64_t>(1, 1000000000ull / rl.packetsPerSecond);
    const uint64_t burst = rl.burst == 0 ? rl.packetsPerSecond : rl.burst;
    const uint64_t maxSteps = std::numeric_limits<uint64_t>::max() / interval;
    e.flags |= VIGIL_XDP_F_RATELIMIT;
    e.rate_interval_ns = interval;
    e.rate_burst_ns =
        burst - 1 > maxSteps ? std::numeric_limits<uint64_t>::max() : (burst - 1) * interval;
    e.rate_prefix_v4 = static_cast<uint8_t>(std::clamp(rl.ipv4Prefix, 0, 32));
    e.rate_prefix_v6 = static_cast<uint8_t>(std::clamp(rl.ipv6Prefix, 0, 128));
  }
  return e;
}

// How many entries a rule expands to: the (source, destination) pairs of compatible families,
// times the port ranges. Counted before anything is built, so that a huge cross product is
// refused without being materialised.
uint64_t expansionSize(const XdpMatch& m) {
  const Family pf = familyOf(m.protocol);
  auto tally = [&](const std::vector<Cidr>& list) {
    std::array<uint64_t, 3> n{};  // any, v4, v6
    if (list.empty()) n[0] = 1;
    for (const Cidr& c : list) n[c.v4 ? 1 : 2]++;
    // A protocol of one family rules the other family out.
    if (pf == Family::v4) n[2] = 0;
    if (pf == Family::v6) n[1] = 0;
    return n;
  };
  const auto s = tally(m.sources);
  const auto d = tally(m.destinations);
  const uint64_t pairs =
      s[0] * (d[0] + d[1] + d[2]) + d[0] * (s[1] + s[2]) + s[1] * d[1] + s[2] * d[2];
  return pairs * std::max<uint64_t>(1, m.ports.size());
}

bool isLoopback(const std::string& name) {
  int fd = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd >= 0) {
    struct ifreq ifr {};
    std::memcpy(ifr.ifr_name, name.data(), std::min(name.size(), sizeof ifr.ifr_name - 1));
    const int rc = ::ioctl(fd, SIOCGIFFLAGS, &ifr);
    ::close(fd);
    if (rc == 0) return (ifr.ifr_flags & IFF_LOOPBACK) != 0;
  }
  // No socket (seccomp, no IPv4): sysfs has the same flags, in hex.
  std::ifstream in("/sys/class/net/" + name + "/flags");
  unsigned long flags = 0;
  if (in >> std::hex >> flags) return (flags & IFF_LOOPBACK) != 0;
  return false;
}

}  // namespace

XdpResolver hostXdpResolver() {
  return XdpResolver{[](const std::string& name) -> std::optional<InterfaceInfo> {
    if (name.empty() || name.size() >= IFNAMSIZ || name.find('/') != std::string::npos)
      return std::nullopt;
    const unsigned index = ::if_nametoindex(name.c_str());
    if (index == 0) return std::nullopt;
    return InterfaceInfo{index, isLoopback(name)};
  }};
}

XdpCompileResult compileXdpRules(const std::vector<const Policy*>& policies, SlotTable& slots,
                                 const XdpResolver& resolver) {
  XdpCompileResult out;
  CompiledXdp& c = out.rules;
  std::vector<const XdpRule*> rules;                           // by order
  std::vector<EntryInfo> info;                                 // by entry index
  std::map<std::set<std::string>, uint64_t> scopeBits;         // interface list -> its bit
  std::map<std::string, std::optional<InterfaceInfo>> looked;  // one lookup per name
  bool entriesFull = false;

  for (const Policy* p : policies) {
    if (!p->xdp) continue;
    const XdpSpec& spec = *p->xdp;

    uint64_t scope = kScopeAllButLoopback;
    if (spec.interfaces.empty()) {
      c.allInterfaces = true;
    } else {
      std::set<std::string> names(spec.interfaces.begin(), spec.interfaces.end());
      auto it = scopeBits.find(names);
      if (it == scopeBits.end()) {
        if (scopeBits.size() >= VIGIL_XDP_MAX_SCOPES - 1) {
          out.errors.push_back(
              {spec.position, "more than " + std::to_string(VIGIL_XDP_MAX_SCOPES - 1) +
                                  " distinct XDP interface lists among the policies in force"});
          scope = 0;
        } else {
          const uint64_t bit = 1ull << scopeBits.size();
          it = scopeBits.emplace(std::move(names), bit).first;
        }
      }
      if (it != scopeBits.end()) scope = it->second;
      for (size_t i = 0; i < spec.interfaces.size(); i++) {
        const std::string& name = spec.interfaces[i];
        auto found = looked.find(name);
        if (found == looked.end()) found = looked.emplace(name, resolver.interface(name)).first;
        if (!found->second) {
          const Position& pos =
              i < spec.interfacePositions.size() ? spec.interfacePositions[i] : spec.position;
          out.errors.push_back({pos, "no interface named \"" + name + "\" on this node"});
          continue;
        }
        const InterfaceInfo& iface = *found->second;
        c.interfaces[name] = iface.ifindex;
        uint64_t& bits = c.scopes[iface.ifindex];
        bits |= scope;
        if (!iface.loopback) bits |= kScopeAllButLoopback;
      }
    }

    for (const XdpRule& r : spec.rules) {
      const uint32_t order = static_cast<uint32_t>(rules.size());
      rules.push_back(&r);
      auto slot = slots.slotFor(p->name, r.name);
      if (!slot) {
        out.errors.push_back(
            {r.position, "more than " + std::to_string(slots.capacity()) + " XDP rules in force"});
        continue;
      }
      const Mode mode = r.effectiveMode(p->mode);
      c.slots[*slot] = XdpRuleRef{p->name, r.name, r.action, mode, r.rateLimit.has_value()};
      if (r.rateLimit && r.rateLimit->packetsPerSecond == 0) {
        out.errors.push_back({r.rateLimit->position, "rate limit of 0 packets per second"});
        continue;
      }

      const XdpMatch& m = r.match;
      const uint64_t n = expansionSize(m);
      if (n == 0) {
        out.errors.push_back(
            {r.position, "XDP rule \"" + r.name +
                             "\" can never match: its sources, destinations and protocol have "
                             "no address family in common"});
        continue;
      }
      if (entriesFull) continue;
      if (c.entries.size() + n > VIGIL_XDP_MAX_ENTRIES) {
        out.errors.push_back({r.position, "the XDP rules up to \"" + r.name + "\" expand to " +
                                              std::to_string(c.entries.size() + n) +
                                              " entries (sources x destinations x port ranges); "
                                              "at most " +
                                              std::to_string(VIGIL_XDP_MAX_ENTRIES)});
        entriesFull = true;
        continue;
      }

      const vigil_xdp_entry base = entryTemplate(r, mode, *slot, scope);
      const Family pf = familyOf(m.protocol);
      std::vector<const Cidr*> srcs, dsts;
      std::vector<const PortRange*> ports;
      for (const Cidr& s : m.sources) srcs.push_back(&s);
      for (const Cidr& d : m.destinations) dsts.push_back(&d);
      for (const PortRange& pr : m.ports) ports.push_back(&pr);
      if (srcs.empty()) srcs.push_back(nullptr);
      if (dsts.empty()) dsts.push_back(nullptr);
      if (ports.empty()) ports.push_back(nullptr);

      for (const Cidr* s : srcs) {
        for (const Cidr* d : dsts) {
          const Family sf = familyOf(s), df = familyOf(d);
          if (!compatible(sf, df) || !compatible(sf, pf) || !compatible(df, pf)) continue;
          vigil_xdp_entry e = base;
          setAddress(s, e.src_net, e.src_mask);
          setAddress(d, e.dst_net, e.dst_mask);
          if (sf == Family::v4 || df == Family::v4) e.flags |= VIGIL_XDP_F_V4;
          if (sf == Family::v6 || df == Family::v6) e.flags |= VIGIL_XDP_F_V6;
          EntryInfo ei;
          ei.order = order;
          ei.longer = std::max(prefixLength(s), prefixLength(d));
          ei.shorter = std::min(prefixLength(s), prefixLength(d));
          if (s != nullptr) {
            ei.key = keyOf(*s);
          } else if (d != nullptr) {
            ei.key = keyOf(*d);
            ei.inDestinationTrie = true;
          }
          for (const PortRange* pr : ports) {
            vigil_xdp_entry pe = e;
            if (pr != nullptr) {
              pe.flags |= VIGIL_XDP_F_PORTS;
              pe.port_lo = pr->lo;
              pe.port_hi = pr->hi;
            }
            c.entries.push_back(pe);
            info.push_back(ei);
          }
        }
      }
    }
  }

  // Rank: longest prefix first, then the rule written first, then expansion order.
  std::vector<uint32_t> byRank(c.entries.size());
  for (uint32_t i = 0; i < byRank.size(); i++) byRank[i] = i;
  std::sort(byRank.begin(), byRank.end(), [&](uint32_t a, uint32_t b) {
    const EntryInfo &x = info[a], &y = info[b];
    if (x.longer != y.longer) return x.longer > y.longer;
    if (x.shorter != y.shorter) return x.shorter > y.shorter;
    if (x.order != y.order) return x.order < y.order;
    return a < b;
  });
  for (uint32_t r = 0; r < byRank.size(); r++) c.entries[byRank[r]].rank = r;

  TrieBuilder source(c.entries, info, rules, "source");
  TrieBuilder destination(c.entries, info, rules, "destination");
  for (uint32_t i = 0; i < c.entries.size(); i++) {
    (info[i].inDestinationTrie ? destination : source).add(i);
  }
  size_t overfull = 0;
  source.build(c.sourceTrie, out.errors, overfull);
  const size_t overfullSources = overfull;
  destination.build(c.destinationTrie, out.errors, overfull);
  if (overfull > kMaxCandidateIssues) {
    const Position& pos = overfullSources > kMaxCandidateIssues ? source.firstUnreported()
                                                                : destination.firstUnreported();
    out.errors.push_back({pos, "and " + std::to_string(overfull - kMaxCandidateIssues) +
                                   " more address blocks covered by more than " +
                                   std::to_string(VIGIL_XDP_CANDIDATES) + " XDP rule entries"});
  }

  if (!out.errors.empty()) out.rules = CompiledXdp{};
  return out;
}

}  // namespace vigil::policy
