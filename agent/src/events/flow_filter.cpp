#include "events/flow_filter.hpp"

#include "events/workload_match.hpp"

#include <arpa/inet.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <charconv>
#include <string>
#include <string_view>
#include <utility>

#include "policy/document.hpp"

namespace vigil::events {
namespace {

using FieldMatch = std::function<bool(const v1::Flow&)>;

constexpr uint32_t kMaxPort = 65535;
constexpr std::array<std::string_view, 8> kTcpFlagNames = {"FIN", "SYN", "RST", "PSH",
                                                           "ACK", "URG", "ECE", "CWR"};

bool before(const google::protobuf::Timestamp& a, const google::protobuf::Timestamp& b) {
  return a.seconds() < b.seconds() || (a.seconds() == b.seconds() && a.nanos() < b.nanos());
}

bool validTimestamp(const google::protobuf::Timestamp& t) {
  return t.seconds() >= 0 && t.nanos() >= 0 && t.nanos() < 1'000'000'000;
}

// An address as a flow reports it, in the 16-byte form of policy::Cidr (IPv4 as ::ffff:a.b.c.d).
struct Address {
  std::array<uint8_t, 16> bytes{};
  bool v4 = false;
};

std::optional<Address> parseAddress(const std::string& text) {
  Address a;
  uint8_t v4[4];
  if (inet_pton(AF_INET, text.c_str(), v4) == 1) {
    a.v4 = true;
    a.bytes[10] = a.bytes[11] = 0xff;
    std::copy(v4, v4 + 4, a.bytes.begin() + 12);
    return a;
  }
  if (inet_pton(AF_INET6, text.c_str(), a.bytes.data()) == 1) return a;
  return std::nullopt;
}

bool isV4Mapped(const std::array<uint8_t, 16>& bytes) {
  return std::all_of(bytes.begin(), bytes.begin() + 10, [](uint8_t b) { return b == 0; }) &&
         bytes[10] == 0xff && bytes[11] == 0xff;
}

// IPv4 blocks hold IPv4 and IPv4-mapped IPv6 addresses; IPv6 blocks hold IPv6 addresses only.
bool contains(const policy::Cidr& cidr, const Address& address) {
  if (cidr.v4 ? !isV4Mapped(address.bytes) : address.v4) return false;
  const int bits = cidr.prefix + (cidr.v4 ? 96 : 0);
  for (int i = 0; i < 16 && 8 * i < bits; ++i) {
    const int keep = std::min(bits - 8 * i, 8);
    const auto mask = static_cast<uint8_t>(0xff00 >> keep);
    if ((cidr.addr[i] & mask) != (address.bytes[i] & mask)) return false;
  }
  return true;
}

bool inAny(const std::vector<policy::Cidr>& cidrs, const std::string& ip) {
  const std::optional<Address> address = parseAddress(ip);
  return address && std::any_of(cidrs.begin(), cidrs.end(),
                                [&](const policy::Cidr& c) { return contains(c, *address); });
}

template <typename T>
bool listed(const std::vector<T>& values, const T& value) {
  return std::find(values.begin(), values.end(), value) != values.end();
}

// An exact binary path, or a prefix ("/usr/bin/", "/opt/app*" without its '*').
struct BinaryMatch {
  std::string text;
  bool prefix = false;
  bool matches(const std::string& binary) const {
    return prefix ? binary.starts_with(text) : binary == text;
  }
};

// A cgroup path prefix that ends at a path component ("/system.slice" holds
// "/system.slice/ssh.service", not "/system.slice.old"), or a cgroup id.
struct CgroupMatch {
  std::string path;
  uint64_t id = 0;
  bool matches(const v1::FlowEndpoint& e) const {
    if (id != 0) return e.cgroup_id() == id;
    if (!e.cgroup_path().starts_with(path)) return false;
    return path.back() == '/' || e.cgroup_path().size() == path.size() ||
           e.cgroup_path()[path.size()] == '/';
  }
};

uint8_t tcpFlagBit(std::string_view name) {
  for (size_t i = 0; i < kTcpFlagNames.size(); ++i) {
    if (kTcpFlagNames[i] == name) return static_cast<uint8_t>(1u << i);
  }
  return 0;
}

uint8_t tcpFlagsOf(const v1::Flow& flow) {
  uint8_t bits = 0;
  for (const std::string& f : flow.tcp_flags()) bits |= tcpFlagBit(f);
  for (const std::string& f : flow.reply_tcp_flags()) bits |= tcpFlagBit(f);
  return bits;
}

// "SYN,ACK" (any case) -> its bits; nothing for an empty or unknown name.
std::optional<uint8_t> parseTcpFlags(const std::string& text, std::string& why) {
  uint8_t bits = 0;
  std::string_view rest = text;
  while (true) {
    const size_t comma = rest.find(',');
    std::string name(rest.substr(0, comma));
    for (char& c : name) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    const uint8_t bit = tcpFlagBit(name);
    if (bit == 0) {
      why = "has " +
            (name.empty() ? std::string("an empty flag name") : "unknown flag '" + name + "'") +
            " (allowed: comma-separated SYN, ACK, FIN, RST, PSH, URG, ECE, CWR)";
      return std::nullopt;
    }
    bits |= bit;
    if (comma == std::string_view::npos) return bits;
    rest.remove_prefix(comma + 1);
  }
}

std::optional<uint64_t> parseCgroupId(std::string_view text) {
  uint64_t id = 0;
  auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), id);
  if (text.empty() || ec != std::errc{} || ptr != text.data() + text.size() || id == 0) {
    return std::nullopt;
  }
  return id;
}

// A rejected value as an error message shows it.
std::string shown(const std::string& value) { return "'" + value + "'"; }
std::string shown(uint32_t value) { return std::to_string(value); }
std::string shown(int value) { return std::to_string(value); }

std::optional<policy::Cidr> cidrValue(const std::string& text, std::string& why) {
  return policy::parseCidr(text, why);
}

std::optional<uint32_t> portValue(uint32_t port, std::string& why) {
  if (port >= 1 && port <= kMaxPort) return port;
  why = "is not a port (allowed: 1-65535)";
  return std::nullopt;
}

std::optional<uint32_t> pidValue(uint32_t pid, std::string& why) {
  if (pid != 0) return pid;
  why = "matches no process";
  return std::nullopt;
}

std::optional<std::string> protocolValue(const std::string& text, std::string& why) {
  if (text == "tcp" || text == "udp" || text == "icmp" || text == "icmpv6") return text;
  why = "is not a protocol (allowed: tcp, udp, icmp, icmpv6)";
  return std::nullopt;
}

std::optional<v1::Verdict> verdictValue(int verdict, std::string& why) {
  if (verdict == v1::FORWARDED || verdict == v1::DROPPED || verdict == v1::AUDIT) {
    return static_cast<v1::Verdict>(verdict);
  }
  why = "is not a verdict (allowed: FORWARDED, DROPPED, AUDIT)";
  return std::nullopt;
}

// "flow" -> false, "drop" -> true: whether the value selects FLOW_DROP.
std::optional<bool> typeValue(const std::string& text, std::string& why) {
  if (text == "flow" || text == "drop") return text == "drop";
  why = "is not a flow event type (allowed: flow, drop)";
  return std::nullopt;
}

std::optional<BinaryMatch> binaryValue(const std::string& text, std::string& why) {
  if (text.empty() || (text.front() != '/' && text != "*")) {
    why = "is not an absolute path, or a prefix ending in '/' or '*'";
    return std::nullopt;
  }
  if (text.back() == '*') return BinaryMatch{text.substr(0, text.size() - 1), true};
  return BinaryMatch{text, text.back() == '/'};
}

std::optional<CgroupMatch> cgroupValue(const std::string& text, std::string& why) {
  if (!text.empty() && text.front() == '/') return CgroupMatch{text, 0};
  if (auto id = parseCgroupId(text)) return CgroupMatch{{}, *id};
  why = "is neither a cgroup path (starting with '/') nor a cgroup id (a decimal number)";
  return std::nullopt;
}

std::optional<std::string> interfaceValue(const std::string& text, std::string& why) {
  if (!text.empty()) return text;
  why = "is not an interface name";
  return std::nullopt;
}

bool podIn(const std::vector<PodMatch>& pods, const v1::FlowEndpoint& e) {
  return std::any_of(pods.begin(), pods.end(),
                     [&](const PodMatch& p) { return p.matches(e.workload()); });
}

bool eitherSide(const v1::Flow& flow, const std::function<bool(const v1::FlowEndpoint&)>& test) {
  return test(flow.source()) || test(flow.destination());
}

// Appends one FieldMatch per field of `filter` that has values. `side` ("include" or
// "exclude") starts the field's name in errors.
Status compileFields(const v1::FlowFilter& filter, const std::string& side,
                     std::vector<FieldMatch>& out) {
  // Compiles the values of one field with `parse(value, why)`, which returns the compiled
  // value or nothing with `why` saying what is wrong, and appends `test(values, flow)`.
  auto add = [&](const auto& values, const char* name, auto parse, auto test) -> Status {
    using Value =
        typename decltype(parse(*values.begin(), std::declval<std::string&>()))::value_type;
    std::vector<Value> list;
    for (const auto& value : values) {
      std::string why;
      auto parsed = parse(value, why);
      if (!parsed) return Error(EINVAL, side + "." + name + ": " + shown(value) + " " + why);
      list.push_back(std::move(*parsed));
    }
    if (!list.empty()) {
      out.push_back([list = std::move(list), test](const v1::Flow& f) { return test(list, f); });
    }
    return {};
  };
  using Cidrs = std::vector<policy::Cidr>;
  using Ports = std::vector<uint32_t>;
  const Status statuses[] = {
      add(filter.ip(), "ip", cidrValue,
          [](const Cidrs& l, const v1::Flow& f) {
            return inAny(l, f.source().ip()) || inAny(l, f.destination().ip());
          }),
      add(filter.source_ip(), "source_ip", cidrValue,
          [](const Cidrs& l, const v1::Flow& f) { return inAny(l, f.source().ip()); }),
      add(filter.destination_ip(), "destination_ip", cidrValue,
          [](const Cidrs& l, const v1::Flow& f) { return inAny(l, f.destination().ip()); }),
      add(filter.port(), "port", portValue,
          [](const Ports& l, const v1::Flow& f) {
            return listed(l, f.source().port()) || listed(l, f.destination().port());
          }),
      add(filter.source_port(), "source_port", portValue,
          [](const Ports& l, const v1::Flow& f) { return listed(l, f.source().port()); }),
      add(filter.destination_port(), "destination_port", portValue,
          [](const Ports& l, const v1::Flow& f) { return listed(l, f.destination().port()); }),
      add(filter.protocol(), "protocol", protocolValue,
          [](const std::vector<std::string>& l, const v1::Flow& f) {
            return listed(l, f.protocol()) ||
                   (f.protocol() == "icmpv6" && listed(l, std::string("icmp")));
          }),
      add(filter.verdict(), "verdict", verdictValue,
          [](const std::vector<v1::Verdict>& l, const v1::Flow& f) {
            return listed(l, f.verdict());
          }),
      add(filter.type(), "type", typeValue,
          [](const std::vector<bool>& l, const v1::Flow& f) {
            return f.event_type() != v1::FLOW_EVENT_UNSPECIFIED &&
                   listed(l, f.event_type() == v1::FLOW_DROP);
          }),
      add(filter.tcp_flags(), "tcp_flags", parseTcpFlags,
          [](const std::vector<uint8_t>& l, const v1::Flow& f) {
            const uint8_t seen = tcpFlagsOf(f);
            return std::any_of(l.begin(), l.end(),
                               [&](uint8_t set) { return (seen & set) == set; });
          }),
      add(filter.pid(), "pid", pidValue,
          [](const Ports& l, const v1::Flow& f) {
            return eitherSide(f, [&](const v1::FlowEndpoint& e) { return listed(l, e.pid()); });
          }),
      add(filter.binary(), "binary", binaryValue,
          [](const std::vector<BinaryMatch>& l, const v1::Flow& f) {
            return eitherSide(f, [&](const v1::FlowEndpoint& e) {
              return !e.binary().empty() &&
                     std::any_of(l.begin(), l.end(),
                                 [&](const BinaryMatch& b) { return b.matches(e.binary()); });
            });
          }),
      add(filter.cgroup(), "cgroup", cgroupValue,
          [](const std::vector<CgroupMatch>& l, const v1::Flow& f) {
            return eitherSide(f, [&](const v1::FlowEndpoint& e) {
              return std::any_of(l.begin(), l.end(),
                                 [&](const CgroupMatch& c) { return c.matches(e); });
            });
          }),
      add(filter.interface(), "interface", interfaceValue,
          [](const std::vector<std::string>& l, const v1::Flow& f) {
            return listed(l, f.interface());
          }),
      add(filter.pod(), "pod", PodMatch::parse,
          [](const std::vector<PodMatch>& l, const v1::Flow& f) {
            return eitherSide(f, [&](const v1::FlowEndpoint& e) { return podIn(l, e); });
          }),
      add(filter.source_pod(), "source_pod", PodMatch::parse,
          [](const std::vector<PodMatch>& l, const v1::Flow& f) { return podIn(l, f.source()); }),
      add(filter.destination_pod(), "destination_pod", PodMatch::parse,
          [](const std::vector<PodMatch>& l, const v1::Flow& f) {
            return podIn(l, f.destination());
          }),
      add(filter.namespace_(), "namespace", parseNamespace,
          [](const std::vector<std::string>& l, const v1::Flow& f) {
            return eitherSide(f, [&](const v1::FlowEndpoint& e) {
              return std::any_of(l.begin(), l.end(), [&](const std::string& ns) {
                return inNamespace(e.workload(), ns);
              });
            });
          }),
  };
  for (const Status& s : statuses) {
    if (!s) return s;
  }
  return {};
}

}  // namespace

Expected<FlowFilter> FlowFilter::fromRequest(const v1::GetFlowsRequest& request) {
  if (request.first() > 0 && request.last() > 0) {
    return Error(EINVAL, "first: cannot be combined with last (oldest or newest, not both)");
  }
  if (request.first() > 0 && request.follow()) {
    return Error(EINVAL, "first: cannot be combined with follow");
  }
  if (request.has_until() && request.follow()) {
    return Error(EINVAL, "until: cannot be combined with follow (new flows are never before it)");
  }
  FlowFilter f;
  if (request.has_since()) {
    if (!validTimestamp(request.since())) return Error(EINVAL, "since: not a valid timestamp");
    f.since_ = request.since();
  }
  if (request.has_until()) {
    if (!validTimestamp(request.until())) return Error(EINVAL, "until: not a valid timestamp");
    f.until_ = request.until();
  }
  if (f.since_ && f.until_ && !before(*f.since_, *f.until_)) {
    return Error(EINVAL, "since: must be before until");
  }
  if (Status s = compileFields(request.include(), "include", f.include_); !s) return s.error();
  if (Status s = compileFields(request.exclude(), "exclude", f.exclude_); !s) return s.error();
  return f;
}

bool FlowFilter::matches(const v1::Event& event) const {
  if (event.type() == v1::EVENT_TYPE_LOST) return true;
  if (!event.has_flow()) return false;
  if (since_ && before(event.time(), *since_)) return false;
  if (until_ && !before(event.time(), *until_)) return false;
  const v1::Flow& flow = event.flow();
  return std::all_of(include_.begin(), include_.end(), [&](const auto& m) { return m(flow); }) &&
         std::none_of(exclude_.begin(), exclude_.end(), [&](const auto& m) { return m(flow); });
}

}  // namespace vigil::events
