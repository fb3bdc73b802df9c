// vigil_xdp_cost: the per-packet cost of XDP programs, measured in the kernel with
// BPF_PROG_TEST_RUN, and printed as one JSON object on stdout (progress goes to stderr).
//
// Every program runs on a crafted frame `repeat` times in one BPF_PROG_TEST_RUN call; the kernel
// reports the average run time per packet in ns (its timer pauses while the task is scheduled
// out). Three kinds of program are measured side by side in the same process:
//
//   floor       a bare `return XDP_DROP` built from two raw instructions: what any XDP program
//               costs through the test-run loop before it looks at the packet
//   xdp-filter  the programs Debian's xdp-tools installs (xdpfilt_*.o), loaded with libbpf, their
//               maps filled the way `xdp-filter ip|port` fills them
//   vigil       Vigil's data path (XdpDataPath, not attached, nothing pinned) with N random
//               source-CIDR drop rules compiled by compileXdpRules, and with one UDP port rule
//
// Cases are interleaved in rounds (the order rotates every round) so that drift on a shared
// machine hits all of them alike; the summary uses the median over rounds. Each case also checks
// the program's verdict (XDP_DROP for a packet a rule matches, XDP_PASS otherwise).
//
// Exit status: 0 when the floor could be measured (parts that could not run are reported in the
// JSON with the reason), 1 when nothing could be measured, 2 on a usage error.

#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <linux/bpf.h>
#include <sched.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <array>
#include <chrono>
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <memory>
#include <optional>
#include <random>
#include <set>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "bpf/xdp_datapath.hpp"
#include "common/unique_fd.hpp"
#include "policy/exec_rules.hpp"
#include "policy/model.hpp"
#include "policy/xdp_rules.hpp"
#include "support/frames.hpp"

namespace {

using Bytes16 = std::array<uint8_t, 16>;
using Frame = std::vector<uint8_t>;
using Clock = std::chrono::steady_clock;

// --- Addresses and frames ------------------------------------------------------------------

// An address as Vigil's model keeps it: IPv6, IPv4 as IPv4-mapped (::ffff:a.b.c.d).
struct Address {
  Bytes16 bytes{};
  bool v4 = false;
};

Address v4Address(uint32_t hostOrder) {
  Address a;
  a.v4 = true;
  a.bytes[10] = 0xff;
  a.bytes[11] = 0xff;
  uint32_t be = htonl(hostOrder);
  std::memcpy(&a.bytes[12], &be, 4);
  return a;
}

Address parseAddress(const std::string& text) {
  Address a;
  in_addr v4{};
  if (inet_pton(AF_INET, text.c_str(), &v4) == 1) return v4Address(ntohl(v4.s_addr));
  if (inet_pton(AF_INET6, text.c_str(), a.bytes.data()) != 1) {
    throw std::runtime_error("not an IP address: " + text);
  }
  return a;
}

std::string addressText(const Address& a) {
  char buf[INET6_ADDRSTRLEN] = {};
  if (a.v4) {
    inet_ntop(AF_INET, &a.bytes[12], buf, sizeof buf);
  } else {
    inet_ntop(AF_INET6, a.bytes.data(), buf, sizeof buf);
  }
  return buf;
}

void put16(Frame& f, size_t at, uint16_t hostOrder) {
  f[at] = uint8_t(hostOrder >> 8);
  f[at + 1] = uint8_t(hostOrder);
}

// One's complement sum of 16-bit big-endian words, not yet folded or inverted.
uint32_t sum16(const uint8_t* p, size_t n, uint32_t acc = 0) {
  for (size_t i = 0; i + 1 < n; i += 2) acc += uint32_t(p[i]) << 8 | p[i + 1];
  if (n & 1) acc += uint32_t(p[n - 1]) << 8;
  return acc;
}

uint16_t fold(uint32_t acc) {
  while (acc >> 16) acc = (acc & 0xffff) + (acc >> 16);
  return uint16_t(~acc);
}

constexpr size_t kPayloadBytes = 18;  // an IPv4 frame of 60 bytes, the Ethernet minimum

// Ethernet + IPv4 or IPv6 + UDP + payload, checksums filled in.
Frame udpFrame(const Address& src, const Address& dst, uint16_t sport, uint16_t dport) {
  const bool v4 = src.v4;
  const size_t l3 = 14, ipLen = v4 ? 20 : 40, l4 = l3 + ipLen, udpLen = 8 + kPayloadBytes;
  Frame f(l4 + udpLen, 0);
  const uint8_t dmac[6] = {0x02, 0, 0, 0, 0, 0x02}, smac[6] = {0x02, 0, 0, 0, 0, 0x01};
  std::memcpy(&f[0], dmac, 6);
  std::memcpy(&f[6], smac, 6);
  put16(f, 12, v4 ? 0x0800 : 0x86dd);
  uint32_t pseudo = 0;
  if (v4) {
    f[l3] = 0x45;
    put16(f, l3 + 2, uint16_t(ipLen + udpLen));
    put16(f, l3 + 6, 0x4000);  // don't fragment
    f[l3 + 8] = 64;
    f[l3 + 9] = IPPROTO_UDP;
    std::memcpy(&f[l3 + 12], &src.bytes[12], 4);
    std::memcpy(&f[l3 + 16], &dst.bytes[12], 4);
    put16(f, l3 + 10, fold(sum16(&f[l3], 20)));
    pseudo = sum16(&f[l3 + 12], 8, IPPROTO_UDP + uint32_t(udpLen));
  } else {
    f[l3] = 0x60;
    put16(f, l3 + 4, uint16_t(udpLen));
    f[l3 + 6] = IPPROTO_UDP;
    f[l3 + 7] = 64;
    std::memcpy(&f[l3 + 8], src.bytes.data(), 16);
    std::memcpy(&f[l3 + 24], dst.bytes.data(), 16);
    pseudo = sum16(&f[l3 + 8], 32, IPPROTO_UDP + uint32_t(udpLen));
  }
  put16(f, l4, sport);
  put16(f, l4 + 2, dport);
  put16(f, l4 + 4, uint16_t(udpLen));
  for (size_t i = 0; i < kPayloadBytes; ++i) f[l4 + 8 + i] = uint8_t('A' + i);
  uint16_t csum = fold(sum16(&f[l4], udpLen, pseudo));
  put16(f, l4 + 6, csum == 0 ? 0xffff : csum);
  return f;
}

// --- JSON output ---------------------------------------------------------------------------

std::string jsonString(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (uint8_t(c) < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", c);
          out += buf;
        } else {
          out += c;
        }
    }
  }
  return out + "\"";
}

// A flat JSON object built field by field; nested values are passed in already rendered.
class JsonObject {
 public:
  JsonObject& raw(const std::string& key, const std::string& rendered) {
    fields_.push_back(jsonString(key) + ": " + rendered);
    return *this;
  }
  JsonObject& str(const std::string& key, const std::string& v) { return raw(key, jsonString(v)); }
  JsonObject& num(const std::string& key, double v) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.10g", v);
    return raw(key, buf);
  }
  JsonObject& num(const std::string& key, uint64_t v) { return raw(key, std::to_string(v)); }
  JsonObject& boolean(const std::string& key, bool v) { return raw(key, v ? "true" : "false"); }
  JsonObject& optStr(const std::string& key, const std::optional<std::string>& v) {
    return raw(key, v ? jsonString(*v) : "null");
  }
  std::string render(const std::string& indent = "") const {
    std::string out = "{";
    for (size_t i = 0; i < fields_.size(); ++i) {
      out += (i ? ",\n" : "\n") + indent + "  " + fields_[i];
    }
    return out + "\n" + indent + "}";
  }

 private:
  std::vector<std::string> fields_;
};

std::string jsonArray(const std::vector<std::string>& rendered, const std::string& indent = "") {
  if (rendered.empty()) return "[]";
  std::string out = "[";
  for (size_t i = 0; i < rendered.size(); ++i) {
    out += (i ? ",\n" : "\n") + indent + "  " + rendered[i];
  }
  return out + "\n" + indent + "]";
}

void note(const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  std::fprintf(stderr, "[xdp_cost] ");
  std::vfprintf(stderr, fmt, ap);
  std::fputc('\n', stderr);
  va_end(ap);
}

// --- Programs ------------------------------------------------------------------------------

using Fd = vigil::UniqueFd;

// The floor: r0 = XDP_DROP; exit.
vigil::Expected<Fd> loadFloorProgram() {
  bpf_insn insns[2] = {};
  insns[0].code = BPF_ALU64 | BPF_MOV | BPF_K;
  insns[0].dst_reg = BPF_REG_0;
  insns[0].imm = XDP_DROP;
  insns[1].code = BPF_JMP | BPF_EXIT;
  int fd = bpf_prog_load(BPF_PROG_TYPE_XDP, "bench_floor", "GPL", insns, 2, nullptr);
  if (fd < 0) return vigil::Error(fd, "load the bare XDP_DROP program");
  return Fd(fd);
}

struct ObjectCloser {
  void operator()(bpf_object* obj) const { bpf_object__close(obj); }
};
using ObjectPtr = std::unique_ptr<bpf_object, ObjectCloser>;

// Map value bits of xdp-filter's filter maps (xdp-filter/common_kern_user.h in xdp-tools): a
// lookup hits when every bit the program asks for is set. The bits above carry a hit counter.
constexpr uint64_t kFiltSrc = 1u << 0;
constexpr uint64_t kFiltDst = 1u << 1;
constexpr uint64_t kFiltUdp = 1u << 3;

// What `xdp-filter ip ADDR --mode src` and `xdp-filter port P --proto udp` put in the maps.
struct FilterRules {
  std::optional<Address> srcV4;
  std::optional<Address> srcV6;
  std::optional<uint16_t> udpDstPort;
};

// One xdp-filter program variant with its own maps (nothing pinned).
struct FilterProgram {
  std::string name;  // object file name without .o, e.g. xdpfilt_alw_ip
  ObjectPtr obj;
  int fd = -1;
};

// The maps are per-CPU: xdp-filter writes the same flags for every possible CPU.
vigil::Status setPerCpuFlags(bpf_map* map, const void* key, uint64_t flags) {
  int ncpu = libbpf_num_possible_cpus();
  if (ncpu <= 0) return vigil::Error(ncpu, "count possible CPUs");
  std::vector<uint64_t> values(size_t(ncpu), flags);
  int err = bpf_map__update_elem(map, key, bpf_map__key_size(map), values.data(),
                                 values.size() * sizeof(uint64_t), BPF_ANY);
  if (err) return vigil::Error(err, std::string("update ") + bpf_map__name(map));
  return {};
}

// Checks the layout this benchmark relies on, so that another xdp-tools version fails clearly.
vigil::Status checkMap(bpf_map* map, const char* name, bpf_map_type type, uint32_t keySize) {
  if (!map) return vigil::Error(0, std::string("the object has no map ") + name);
  if (bpf_map__type(map) != type || bpf_map__key_size(map) != keySize ||
      bpf_map__value_size(map) != sizeof(uint64_t)) {
    return vigil::Error(0, std::string("map ") + name + " has an unexpected layout (type " +
                               std::to_string(bpf_map__type(map)) + ", key " +
                               std::to_string(bpf_map__key_size(map)) + " bytes, value " +
                               std::to_string(bpf_map__value_size(map)) + " bytes)");
  }
  return {};
}

vigil::Expected<FilterProgram> loadXdpFilter(const std::string& dir, const std::string& name,
                                             const FilterRules& rules) {
  const std::string path = dir + "/" + name + ".o";
  if (access(path.c_str(), R_OK) != 0) return vigil::Error(errno, "open " + path);
  FilterProgram p;
  p.name = name;
  p.obj.reset(bpf_object__open_file(path.c_str(), nullptr));
  if (!p.obj) return vigil::Error(errno, "open BPF object " + path);
  // The maps are declared LIBBPF_PIN_BY_NAME; without a pin path libbpf creates private ones.
  bpf_map* map = nullptr;
  bpf_object__for_each_map(map, p.obj.get()) bpf_map__set_pin_path(map, nullptr);
  if (int err = bpf_object__load(p.obj.get())) return vigil::Error(err, "load " + path);
  bpf_program* prog = bpf_object__next_program(p.obj.get(), nullptr);
  if (!prog) return vigil::Error(0, path + " holds no program");
  p.fd = bpf_program__fd(prog);

  if (rules.srcV4 || rules.srcV6) {
    bpf_map* m4 = bpf_object__find_map_by_name(p.obj.get(), "filter_ipv4");
    bpf_map* m6 = bpf_object__find_map_by_name(p.obj.get(), "filter_ipv6");
    if (auto st = checkMap(m4, "filter_ipv4", BPF_MAP_TYPE_PERCPU_HASH, 4); !st) return st.error();
    if (auto st = checkMap(m6, "filter_ipv6", BPF_MAP_TYPE_PERCPU_HASH, 16); !st) {
      return st.error();
    }
    if (rules.srcV4) {
      if (auto st = setPerCpuFlags(m4, &rules.srcV4->bytes[12], kFiltSrc); !st) return st.error();
    }
    if (rules.srcV6) {
      if (auto st = setPerCpuFlags(m6, rules.srcV6->bytes.data(), kFiltSrc); !st) {
        return st.error();
      }
    }
  }
  if (rules.udpDstPort) {
    bpf_map* mp = bpf_object__find_map_by_name(p.obj.get(), "filter_ports");
    if (auto st = checkMap(mp, "filter_ports", BPF_MAP_TYPE_PERCPU_ARRAY, 4); !st) {
      return st.error();
    }
    uint32_t key = htons(*rules.udpDstPort);  // the program looks up the port as on the wire
    if (auto st = setPerCpuFlags(mp, &key, kFiltDst | kFiltUdp); !st) return st.error();
  }
  return p;
}

// --- Vigil rule sets -----------------------------------------------------------------------

vigil::policy::Cidr makeCidr(const Address& a, int prefix) {
  vigil::policy::Cidr c;
  c.v4 = a.v4;
  c.prefix = prefix;
  c.addr = a.bytes;
  // Host bits zero, counted in the family's own address bits.
  const int total = a.v4 ? 32 : 128, first = a.v4 ? 96 : 0;
  for (int bit = prefix; bit < total; ++bit) {
    int i = first + bit;
    c.addr[i / 8] &= uint8_t(~(0x80u >> (i % 8)));
  }
  return c;
}

bool covers(const vigil::policy::Cidr& c, const Address& a) {
  if (c.v4 != a.v4) return false;
  const int first = a.v4 ? 96 : 0;
  for (int bit = 0; bit < c.prefix; ++bit) {
    int i = first + bit;
    uint8_t m = uint8_t(0x80u >> (i % 8));
    if ((c.addr[i / 8] & m) != (a.bytes[i / 8] & m)) return false;
  }
  return true;
}

// Random prefixes, IPv4 /24../32 and IPv6 /48../128 alternating, no two alike. A rule set of
// size N uses the first N, so the sets are nested and one address outside all of them serves
// every size.
std::vector<vigil::policy::Cidr> randomCidrs(size_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int> p4(24, 32), p6(48, 128);
  std::vector<vigil::policy::Cidr> out;
  std::set<vigil::policy::Cidr> seen;
  out.reserve(n);
  while (out.size() < n) {
    vigil::policy::Cidr c;
    if (out.size() % 2 == 0) {
      c = makeCidr(v4Address(uint32_t(rng())), p4(rng));
    } else {
      Address a;
      uint64_t hi = rng(), lo = rng();
      std::memcpy(&a.bytes[0], &hi, 8);
      std::memcpy(&a.bytes[8], &lo, 8);
      c = makeCidr(a, p6(rng));
    }
    if (seen.insert(c).second) out.push_back(c);
  }
  return out;
}

// An address inside c, host bits random.
Address inside(const vigil::policy::Cidr& c, std::mt19937_64& rng) {
  Address a;
  a.v4 = c.v4;
  a.bytes = c.addr;
  const int total = c.v4 ? 32 : 128, first = c.v4 ? 96 : 0;
  for (int bit = c.prefix; bit < total; ++bit) {
    int i = first + bit;
    if (rng() & 1) a.bytes[i / 8] |= uint8_t(0x80u >> (i % 8));
  }
  return a;
}

Address outsideAll(const std::vector<vigil::policy::Cidr>& cidrs, bool v4, std::mt19937_64& rng) {
  for (;;) {
    Address a;
    if (v4) {
      a = v4Address(uint32_t(rng()));
    } else {
      uint64_t hi = rng(), lo = rng();
      std::memcpy(&a.bytes[0], &hi, 8);
      std::memcpy(&a.bytes[8], &lo, 8);
    }
    if (std::none_of(cidrs.begin(), cidrs.end(), [&](const auto& c) { return covers(c, a); })) {
      return a;
    }
  }
}

struct VigilSetup {
  std::string label;
  size_t cidrs = 0;
  size_t rules = 0;
  size_t policies = 0;
  size_t cidrsPerRule = 0;
  size_t entries = 0;
  size_t sourcePrefixes = 0;
  double compileMs = 0, openMs = 0, applyMs = 0;
  std::optional<std::string> error;
  std::unique_ptr<vigil::bpf::XdpDataPath> path;
};

double msSince(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

// Compiles the policies (no interface named: every interface but loopback) and puts them into
// a data path of their own that is loaded but never attached and pins nothing.
void buildDataPath(VigilSetup& s, const std::vector<vigil::policy::Policy>& policies) {
  std::vector<const vigil::policy::Policy*> ptrs;
  for (const auto& p : policies) ptrs.push_back(&p);
  vigil::policy::SlotTable slots(VIGIL_XDP_MAX_RULES);
  vigil::policy::XdpResolver resolver;
  resolver.interface = [](const std::string&) -> std::optional<vigil::policy::InterfaceInfo> {
    return std::nullopt;
  };
  auto t0 = Clock::now();
  auto compiled = vigil::policy::compileXdpRules(ptrs, slots, resolver);
  s.compileMs = msSince(t0);
  if (!compiled.errors.empty()) {
    std::string msg = "compileXdpRules: " + compiled.errors.front().str();
    if (compiled.errors.size() > 1) {
      msg += " (and " + std::to_string(compiled.errors.size() - 1) + " more)";
    }
    s.error = msg;
    return;
  }
  if (compiled.rules.empty()) {
    s.error = "compileXdpRules produced no rules";
    return;
  }
  s.entries = compiled.rules.entries.size();
  s.sourcePrefixes = compiled.rules.sourceTrie.size();
  std::vector<uint32_t> fresh = slots.commit(compiled.rules.slots);

  t0 = Clock::now();
  auto opened = vigil::bpf::XdpDataPath::open({.pinDir = "", .attach = false});
  s.openMs = msSince(t0);
  if (!opened) {
    s.error = "XdpDataPath::open: " + opened.error().message();
    return;
  }
  t0 = Clock::now();
  vigil::Status st = (*opened)->apply(compiled.rules, fresh);
  s.applyMs = msSince(t0);
  if (!st) {
    s.error = "XdpDataPath::apply: " + st.error().message();
    return;
  }
  s.path = std::move(opened.value());
}

vigil::policy::XdpRule dropRule(std::string name) {
  vigil::policy::XdpRule r;
  r.name = std::move(name);
  r.action = vigil::policy::XdpAction::drop;
  return r;
}

// N source CIDRs as drop rules: cidrsPerRule CIDRs per rule, at most rulesPerPolicy rules per
// policy, in policies named bench-<N>-<k>.
std::vector<vigil::policy::Policy> cidrPolicies(const std::vector<vigil::policy::Cidr>& cidrs,
                                                size_t cidrsPerRule, size_t rulesPerPolicy) {
  std::vector<vigil::policy::Policy> policies;
  const size_t n = cidrs.size();
  size_t rule = 0;
  for (size_t at = 0; at < n; at += cidrsPerRule, ++rule) {
    if (rule % rulesPerPolicy == 0) {
      vigil::policy::Policy p;
      char name[64];
      std::snprintf(name, sizeof name, "bench-%zu-%03zu", n, rule / rulesPerPolicy);
      p.name = name;
      p.mode = vigil::policy::Mode::enforce;
      p.xdp.emplace();
      policies.push_back(std::move(p));
    }
    auto r = dropRule("cidrs-" + std::to_string(rule));
    for (size_t i = at; i < std::min(n, at + cidrsPerRule); ++i) {
      r.match.sources.push_back(cidrs[i]);
    }
    policies.back().xdp->rules.push_back(std::move(r));
  }
  return policies;
}

// --- Cases ---------------------------------------------------------------------------------

struct Case {
  std::string group;   // floor, xdp-filter, vigil
  std::string config;  // what is loaded, e.g. "xdpfilt_alw_ip" or "vigil 1000 CIDRs"
  std::string rules;   // the rule set in words
  uint64_t ruleCount = 0;
  std::string family;  // ipv4, ipv6
  std::string packet;  // match, no match
  std::string packetDesc;
  int fd = -1;
  Frame frame;
  uint32_t expected = XDP_PASS;
  std::vector<double> ns;  // per round
  std::vector<uint32_t> retvals;
  std::optional<std::string> error;
};

double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  size_t n = v.size();
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

struct Options {
  uint32_t repeat = 1000000;
  unsigned rounds = 5;
  std::vector<size_t> sizes = {10, 1000, 10000, 100000};
  size_t cidrsPerRule = 0;  // 0: 1, or as few as keep the rules at or under maxRules
  size_t maxRules = 10000;
  size_t rulesPerPolicy = 1000;
  uint64_t seed = 1;
  int cpu = -1;
  std::string filterDir = "/usr/lib/x86_64-linux-gnu/bpf";
  bool vigil = true;
  bool xdpFilter = true;
};

// The frames: every packet is UDP from some source to one destination per family.
const Address kDstV4 = parseAddress("10.203.0.2");
const Address kDstV6 = parseAddress("fd00:203::2");
constexpr uint16_t kSourcePort = 40000;
constexpr uint16_t kRulePort = 9;    // the port rules' port (the flood's)
constexpr uint16_t kOtherPort = 10;  // every other packet's destination port

Case makeCase(std::string group, std::string config, std::string rules, uint64_t ruleCount,
              std::string packet, const Address& src, uint16_t dport, int fd, uint32_t expected) {
  Case c;
  c.group = std::move(group);
  c.config = std::move(config);
  c.rules = std::move(rules);
  c.ruleCount = ruleCount;
  c.family = src.v4 ? "ipv4" : "ipv6";
  c.packet = std::move(packet);
  c.packetDesc = "UDP from " + addressText(src) + " to port " + std::to_string(dport);
  c.fd = fd;
  c.frame = udpFrame(src, src.v4 ? kDstV4 : kDstV6, kSourcePort, dport);
  c.expected = expected;
  return c;
}

// Everything measured, and what could not be.
struct Bench {
  Fd floor;
  std::vector<FilterProgram> filters;  // keep the programs loaded
  std::vector<std::string> filterSetups;
  std::vector<VigilSetup> vigil;
  std::vector<Case> cases;
  std::vector<std::string> errors;
};

void addFloorCases(Bench& b) {
  for (const char* src : {"198.51.100.7", "2001:db8:ff::7"}) {
    b.cases.push_back(makeCase("floor", "bare XDP_DROP", "none (r0 = XDP_DROP; exit)", 0, "any",
                               parseAddress(src), kOtherPort, b.floor.get(), XDP_DROP));
  }
}

// xdp-filter: the variants `xdp-filter load` picks for a feature set (default policy allow: the
// rules drop, everything else passes).
void addXdpFilterCases(Bench& b, const Options& opt) {
  const Address denyV4 = parseAddress("192.0.2.1"), denyV6 = parseAddress("2001:db8::1");
  const Address otherV4 = parseAddress("192.0.2.99"), otherV6 = parseAddress("2001:db8::99");
  struct Variant {
    const char* name;
    const char* how;
    FilterRules rules;
  };
  const Variant variants[] = {
      {"xdpfilt_alw_ip",
       "xdp-filter load --features ipv4,ipv6; xdp-filter ip 192.0.2.1 --mode src; "
       "xdp-filter ip 2001:db8::1 --mode src",
       {denyV4, denyV6, std::nullopt}},
      {"xdpfilt_alw_udp",
       "xdp-filter load --features udp; xdp-filter port 9 --proto udp",
       {std::nullopt, std::nullopt, kRulePort}},
      {"xdpfilt_alw_all",
       "xdp-filter load (all features, the default); the two ip rules and the port rule",
       {denyV4, denyV6, kRulePort}},
  };
  for (const auto& v : variants) {
    auto loaded = loadXdpFilter(opt.filterDir, v.name, v.rules);
    JsonObject setup;
    setup.str("program", v.name).str("equivalent_to", v.how);
    if (!loaded) {
      note("xdp-filter %s: %s", v.name, loaded.error().message().c_str());
      b.errors.push_back(std::string(v.name) + ": " + loaded.error().message());
      b.filterSetups.push_back(setup.str("error", loaded.error().message()).render("    "));
      continue;
    }
    b.filterSetups.push_back(setup.raw("error", "null").render("    "));
    b.filters.push_back(std::move(loaded.value()));
    const int fd = b.filters.back().fd;
    auto add = [&](const char* rules, uint64_t count, const char* packet, const Address& src,
                   uint16_t dport, uint32_t expected) {
      b.cases.push_back(
          makeCase("xdp-filter", v.name, rules, count, packet, src, dport, fd, expected));
    };
    if (v.rules.srcV4) {
      const bool port = v.rules.udpDstPort.has_value();
      const char* rules =
          port ? "2 source addresses + UDP port 9" : "1 IPv4 + 1 IPv6 source address";
      const uint64_t count = port ? 3 : 2;
      add(rules, count, "match", denyV4, kOtherPort, XDP_DROP);
      add(rules, count, "no match", otherV4, kOtherPort, XDP_PASS);
      add(rules, count, "match", denyV6, kOtherPort, XDP_DROP);
      add(rules, count, "no match", otherV6, kOtherPort, XDP_PASS);
    } else {
      add("UDP destination port 9", 1, "match", otherV4, kRulePort, XDP_DROP);
      add("UDP destination port 9", 1, "no match", otherV4, kOtherPort, XDP_PASS);
    }
  }
}

// Vigil with one UDP port rule, as in the end-to-end flood.
void addVigilPortCases(Bench& b) {
  VigilSetup s;
  s.label = "vigil UDP port 9";
  s.rules = 1;
  s.policies = 1;
  vigil::policy::Policy p;
  p.name = "bench-port";
  p.xdp.emplace();
  auto r = dropRule("drop-flood");
  r.match.protocol = vigil::policy::Protocol::udp;
  r.match.ports.push_back(vigil::policy::PortRange{kRulePort, kRulePort, {}});
  p.xdp->rules.push_back(std::move(r));
  note("vigil: compiling and loading 1 port rule");
  buildDataPath(s, {p});
  if (s.error) {
    note("vigil port rule: %s", s.error->c_str());
    b.errors.push_back("vigil port rule: " + *s.error);
  } else {
    const Address src = parseAddress("192.0.2.99");
    for (bool match : {true, false}) {
      b.cases.push_back(makeCase("vigil", s.label, "1 rule: protocol udp, destinationPorts [9]", 1,
                                 match ? "match" : "no match", src, match ? kRulePort : kOtherPort,
                                 s.path->programFd(), match ? XDP_DROP : XDP_PASS));
    }
  }
  b.vigil.push_back(std::move(s));
}

// Vigil with N random source CIDRs, for every size.
void addVigilCidrCases(Bench& b, Options& opt) {
  std::sort(opt.sizes.begin(), opt.sizes.end());
  opt.sizes.erase(std::unique(opt.sizes.begin(), opt.sizes.end()), opt.sizes.end());
  opt.sizes.erase(std::remove(opt.sizes.begin(), opt.sizes.end(), size_t{0}), opt.sizes.end());
  if (opt.sizes.empty()) return;
  note("generating %zu random prefixes", opt.sizes.back());
  const auto all = randomCidrs(opt.sizes.back(), opt.seed);
  std::mt19937_64 rng(opt.seed ^ 0x5eedull);
  const Address missV4 = outsideAll(all, true, rng), missV6 = outsideAll(all, false, rng);

  for (size_t n : opt.sizes) {
    VigilSetup s;
    s.cidrs = n;
    s.cidrsPerRule = opt.cidrsPerRule ? opt.cidrsPerRule : (n + opt.maxRules - 1) / opt.maxRules;
    s.rules = (n + s.cidrsPerRule - 1) / s.cidrsPerRule;
    s.policies = (s.rules + opt.rulesPerPolicy - 1) / opt.rulesPerPolicy;
    s.label = "vigil " + std::to_string(n) + " CIDRs";
    const std::vector<vigil::policy::Cidr> cidrs(all.begin(), all.begin() + long(n));
    note("vigil: compiling and loading %zu CIDRs (%zu rules, %zu policies)", n, s.rules,
         s.policies);
    buildDataPath(s, cidrPolicies(cidrs, s.cidrsPerRule, opt.rulesPerPolicy));
    if (s.error) {
      note("vigil %zu: %s", n, s.error->c_str());
      b.errors.push_back(s.label + ": " + *s.error);
      b.vigil.push_back(std::move(s));
      continue;
    }
    note("vigil %zu: %zu entries, compile %.0f ms, open %.0f ms, apply %.0f ms", n, s.entries,
         s.compileMs, s.openMs, s.applyMs);
    const std::string rules = std::to_string(n) + " source CIDRs in " + std::to_string(s.rules) +
                              (s.rules == 1 ? " rule, " : " rules, ") + std::to_string(s.policies) +
                              (s.policies == 1 ? " policy" : " policies");
    // A hit is an address inside the middle prefix of its family (IPv4 at even indexes).
    const vigil::policy::Cidr& hit4 = cidrs[(n / 2) & ~size_t{1}];
    const vigil::policy::Cidr& hit6 = cidrs[n > 1 ? ((n / 2) | 1) : 0];
    for (bool v4 : {true, false}) {
      if (!v4 && n < 2) continue;
      const vigil::policy::Cidr& hit = v4 ? hit4 : hit6;
      Case c = makeCase("vigil", s.label, rules, n, "match", inside(hit, rng), kOtherPort,
                        s.path->programFd(), XDP_DROP);
      c.packetDesc += " (in " + hit.str() + ")";
      b.cases.push_back(std::move(c));
      b.cases.push_back(makeCase("vigil", s.label, rules, n, "no match", v4 ? missV4 : missV6,
                                 kOtherPort, s.path->programFd(), XDP_PASS));
    }
    b.vigil.push_back(std::move(s));
  }
}

// Every case once per round, the order rotated by one every round. Returns the seconds spent.
double runRounds(std::vector<Case>& cases, const Options& opt) {
  note("%zu cases x %u rounds, %u runs each", cases.size(), opt.rounds, opt.repeat);
  const auto started = Clock::now();
  for (unsigned round = 0; round < opt.rounds; ++round) {
    for (size_t k = 0; k < cases.size(); ++k) {
      Case& c = cases[(k + round) % cases.size()];
      if (c.error) continue;
      LIBBPF_OPTS(bpf_test_run_opts, run, .data_in = c.frame.data(),
                  .data_size_in = uint32_t(c.frame.size()), .repeat = int(opt.repeat));
      int err = bpf_prog_test_run_opts(c.fd, &run);
      if (err) {
        c.error = std::string("BPF_PROG_TEST_RUN: ") + std::strerror(-err);
        note("%s %s %s: %s", c.config.c_str(), c.family.c_str(), c.packet.c_str(),
             c.error->c_str());
        continue;
      }
      c.ns.push_back(double(run.duration));
      c.retvals.push_back(run.retval);
    }
  }
  return std::chrono::duration<double>(Clock::now() - started).count();
}

// With kernel BPF run-time statistics on (someone holds a BPF_ENABLE_STATS fd, or
// kernel.bpf_stats_enabled is 1), every run also reads the clock twice. A program's run counter
// only moves while they are on.
bool statsWereOn(int progFd) {
  bpf_prog_info info{};
  uint32_t len = sizeof info;
  return bpf_obj_get_info_by_fd(progFd, &info, &len) == 0 && info.run_cnt > 0;
}

bool verdictOk(const Case& c) {
  return !c.retvals.empty() && std::all_of(c.retvals.begin(), c.retvals.end(),
                                           [&](uint32_t r) { return r == c.expected; });
}

std::string caseJson(const Case& c) {
  JsonObject o;
  o.str("group", c.group)
      .str("config", c.config)
      .str("rules", c.rules)
      .num("rule_count", c.ruleCount)
      .str("family", c.family)
      .str("packet", c.packet)
      .str("packet_desc", c.packetDesc)
      .num("frame_bytes", uint64_t(c.frame.size()))
      .str("expected", vigil::testing::xdpActionName(c.expected));
  std::string ns, rv;
  for (size_t i = 0; i < c.ns.size(); ++i) {
    ns += (i ? ", " : "") + std::to_string(uint64_t(c.ns[i]));
  }
  for (size_t i = 0; i < c.retvals.size(); ++i) {
    rv += (i ? ", " : "") + jsonString(vigil::testing::xdpActionName(c.retvals[i]));
  }
  o.raw("ns", "[" + ns + "]").raw("verdicts", "[" + rv + "]").boolean("verdict_ok", verdictOk(c));
  if (c.ns.empty()) {
    o.raw("median_ns", "null").raw("min_ns", "null").raw("max_ns", "null");
  } else {
    o.num("median_ns", median(c.ns))
        .num("min_ns", *std::min_element(c.ns.begin(), c.ns.end()))
        .num("max_ns", *std::max_element(c.ns.begin(), c.ns.end()));
  }
  return o.optStr("error", c.error).render("    ");
}

std::string setupJson(const VigilSetup& s) {
  return JsonObject()
      .str("config", s.label)
      .num("cidrs", uint64_t(s.cidrs))
      .num("rules", uint64_t(s.rules))
      .num("policies", uint64_t(s.policies))
      .num("cidrs_per_rule", uint64_t(s.cidrsPerRule))
      .num("entries", uint64_t(s.entries))
      .num("source_trie_prefixes", uint64_t(s.sourcePrefixes))
      .num("compile_ms", s.compileMs)
      .num("open_ms", s.openMs)
      .num("apply_ms", s.applyMs)
      .optStr("error", s.error)
      .render("    ");
}

}  // namespace

int main(int argc, char** argv) {
  Options opt;
  CLI::App app{
      "vigil_xdp_cost: per-packet cost of XDP programs through BPF_PROG_TEST_RUN (ns per packet, "
      "as the kernel measures it), Vigil's data path next to a bare XDP_DROP and xdp-filter. "
      "Prints JSON on stdout. Needs root.",
      "vigil_xdp_cost"};
  app.add_option("--repeat", opt.repeat, "Runs per measurement (the kernel averages them)")
      ->capture_default_str()
      ->check(CLI::Range(1u, 100000000u));
  app.add_option("--rounds", opt.rounds, "Rounds; every case runs once per round")
      ->capture_default_str()
      ->check(CLI::Range(1u, 1000u));
  app.add_option("--sizes", opt.sizes, "Vigil rule set sizes, in source CIDRs")
      ->delimiter(',')
      ->capture_default_str();
  app.add_option("--cidrs-per-rule", opt.cidrsPerRule,
                 "CIDRs per rule; 0: one, or as few as keep a set at --max-rules rules")
      ->capture_default_str();
  app.add_option("--max-rules", opt.maxRules, "Rules per set when --cidrs-per-rule is 0")
      ->capture_default_str()
      ->check(CLI::Range(size_t{1}, size_t{VIGIL_XDP_MAX_RULES}));
  app.add_option("--rules-per-policy", opt.rulesPerPolicy, "Rules per policy document")
      ->capture_default_str()
      ->check(CLI::Range(size_t{1}, vigil::policy::kMaxRulesPerPolicy));
  app.add_option("--seed", opt.seed, "Seed of the random prefixes")->capture_default_str();
  app.add_option("--cpu", opt.cpu, "Pin to this CPU (-1: do not pin)")->capture_default_str();
  app.add_option("--xdp-filter-dir", opt.filterDir, "Where xdp-tools installs xdpfilt_*.o")
      ->capture_default_str();
  app.add_flag("!--no-vigil", opt.vigil, "Skip Vigil's data path");
  app.add_flag("!--no-xdp-filter", opt.xdpFilter, "Skip xdp-filter");
  CLI11_PARSE(app, argc, argv);

  if (geteuid() != 0) note("not running as root: loading BPF programs will likely fail");
  if (opt.cpu >= 0) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(opt.cpu, &set);
    if (sched_setaffinity(0, sizeof set, &set) != 0) {
      note("cannot pin to CPU %d: %s", opt.cpu, std::strerror(errno));
      return 2;
    }
  }
  libbpf_set_print([](enum libbpf_print_level level, const char* fmt, va_list ap) -> int {
    if (level != LIBBPF_WARN) return 0;
    std::fprintf(stderr, "[xdp_cost] libbpf: ");
    return std::vfprintf(stderr, fmt, ap);
  });

  Bench b;
  auto floorProg = loadFloorProgram();
  if (!floorProg) {
    note("%s", floorProg.error().message().c_str());
    std::printf("%s\n", JsonObject().str("error", floorProg.error().message()).render().c_str());
    return 1;
  }
  b.floor = std::move(floorProg.value());
  addFloorCases(b);
  if (opt.xdpFilter) addXdpFilterCases(b, opt);
  if (opt.vigil) {
    addVigilPortCases(b);
    addVigilCidrCases(b, opt);
  }
  const double seconds = runRounds(b.cases, opt);
  const bool statsOn = statsWereOn(b.floor.get());
  if (statsOn) note("warning: kernel BPF run-time statistics were on: all figures include them");

  std::fprintf(stderr, "%-20s %-6s %-9s %10s  %s\n", "config", "family", "packet", "median ns",
               "verdict");
  std::vector<std::string> cases, setups, errors;
  for (const auto& c : b.cases) {
    cases.push_back(caseJson(c));
    std::fprintf(stderr, "%-20s %-6s %-9s %10.1f  %s%s\n", c.config.c_str(), c.family.c_str(),
                 c.packet.c_str(), median(c.ns),
                 c.retvals.empty() ? "-" : vigil::testing::xdpActionName(c.retvals.back()).c_str(),
                 verdictOk(c) ? "" : "  (UNEXPECTED)");
  }
  for (const auto& s : b.vigil) setups.push_back(setupJson(s));
  for (const auto& e : b.errors) errors.push_back(jsonString(e));

  utsname uts{};
  uname(&uts);
  JsonObject top;
  top.str("tool", "vigil_xdp_cost")
      .str("kernel", uts.release)
      .num("cpus", uint64_t(sysconf(_SC_NPROCESSORS_ONLN)))
      .raw("pinned_cpu", opt.cpu >= 0 ? std::to_string(opt.cpu) : "null")
      .num("repeat", uint64_t(opt.repeat))
      .num("rounds", uint64_t(opt.rounds))
      .num("seed", opt.seed)
      .num("rules_per_policy", uint64_t(opt.rulesPerPolicy))
      .num("max_rules", uint64_t(opt.maxRules))
      .str("xdp_filter_dir", opt.filterDir)
      .num("measure_seconds", seconds)
      .boolean("bpf_stats_were_on", statsOn)
      .raw("vigil_setups", jsonArray(setups, "  "))
      .raw("xdp_filter_setups", jsonArray(b.filterSetups, "  "))
      .raw("errors", jsonArray(errors, "  "))
      .raw("cases", jsonArray(cases, "  "));
  std::printf("%s\n", top.render().c_str());
  return 0;
}
