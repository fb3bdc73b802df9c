#include "cli/src/observe.hpp"

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cctype>
#include <charconv>
#include <map>
#include <string_view>

#include "cli/src/client.hpp"
#include "cli/src/flag_values.hpp"
#include "events/workload_match.hpp"
#include "policy/document.hpp"
#include "vigil/v1/vigil.grpc.pb.h"

namespace vigil::cli {
namespace {

constexpr const char* kObserveFooter = R"(
Filters: repeat a flag to OR its values (--port 80 --port 443); different flags are AND'ed
(--protocol tcp --port 443). --not negates the one filter flag right after it: the flow must
match none of the negated values (--not --ip 10.0.0.1 --ip 10.0.0.2: flows of .2, none of .1).
--ip, --port, --pid, --binary and --cgroup match either side; --from-* the side that sent the
first packet (for a drop, the packet's source), --to-* the other. Addresses may be CIDRs; an
IPv4 value also matches IPv4-mapped IPv6 addresses, an IPv6 value ("::/0") only IPv6 ones.
--tcp-flags SYN,ACK needs every flag listed, seen in either direction. Notices of lost flows
pass every filter and are always shown.

History: without --last, --first, --since or --follow you get the last 20 matching flows.
--follow alone shows only new flows; add --last N or --since to start with some history.
--first N gives the oldest N the agent still holds. --until (not with --follow) ends the window.

What you see: a flow event is "new" (first packet), "update" (periodic, while it lasts) or
"end" with why (fin, rst, idle, evicted); a drop is one dropped packet with the
kernel's reason (NO_SOCKET, NETFILTER_DROP...) or the XDP policy and rule that dropped it.
Drops are sampled; "+N suppressed" counts the ones not shown. The source is the side that sent
the first packet, with its process as comm(pid) when the socket was attributed. Bytes are IP
bytes (IP header to end of packet) per packet as on the wire: a GSO/GRO super-packet counts as
the segments it stands for, each with its headers; link-layer framing is not included (add 14
bytes per packet for Ethernet). Payload bytes are what follows the TCP, UDP or ICMP header.

Output (-o):
  compact  one line per flow (default); times are UTC; -> for flows, -x> for drops
  table    aligned columns; without --follow it is printed when the stream ends
  json     one object per line in the protobuf JSON mapping (see 'vigil events --help')
  dict     one "KEY: value" block per flow, blocks separated by a line of dashes
Verdicts are coloured on a terminal: FORWARDED green, DROPPED red, AUDIT yellow.

Examples:
  vigil observe                                  the last 20 flows and drops
  vigil observe -f --type drop                   packets dropped, live, with the reason
  vigil observe -f --protocol tcp --port 443 --not --ip 10.0.0.0/8
  vigil observe --since 5m --binary /usr/bin/curl -o dict
  vigil observe -f --tcp-flags SYN --to-port 22  new SSH connections
  vigil observe --first 10 --verdict dropped     the oldest drops still held
  vigil observe -f -o json | jq .flow.destination.ip)";

constexpr const char* kTrafficFooter = R"(
Counters are per cgroup and protocol (tcp, udp, icmp, other) since the agent started, as the
kernel counted them at the cgroup's sockets: IN is received, OUT is sent. PKTS are packets,
BYTES are IP bytes per packet as on the wire (GSO/GRO super-packets count as their segments;
no link-layer framing), PAYLOAD are the bytes after the TCP, UDP or ICMP header.

Examples:
  vigil traffic
  vigil traffic --cgroup /system.slice/
  vigil traffic -o json | jq '.rows[] | select(.protocol == "tcp")')";

// One filter flag: the v1::FlowFilter field it fills, after checking its value.
struct FilterFlag {
  const char* name;
  const char* valueName;
  const char* help;
  // Checks `value` and adds it to `filter`; throws CLI::ValidationError naming `flag`.
  void (*add)(const std::string& flag, const std::string& value, v1::FlowFilter& filter);
};

std::string lower(std::string text) {
  for (char& c : text) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return text;
}

std::string upper(std::string text) {
  for (char& c : text) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return text;
}

[[noreturn]] void badValue(const std::string& flag, const std::string& expected,
                           const std::string& value) {
  throw CLI::ValidationError(flag, "expected " + expected + ", got '" + value + "'");
}

const std::string& checkedCidr(const std::string& flag, const std::string& value) {
  std::string why;
  if (!policy::parseCidr(value, why)) {
    throw CLI::ValidationError(flag, "'" + value + "' " + why);
  }
  return value;
}

std::uint32_t checkedPort(const std::string& flag, const std::string& value) {
  auto port = parseUint32(value);
  if (!port || *port == 0 || *port > 65535) badValue(flag, "a port from 1 to 65535", value);
  return *port;
}

std::uint32_t checkedPid(const std::string& flag, const std::string& value) {
  auto pid = parseUint32(value);
  if (!pid || *pid == 0) badValue(flag, "a process id", value);
  return *pid;
}

std::string checkedProtocol(const std::string& flag, const std::string& value) {
  std::string protocol = lower(value);
  if (protocol != "tcp" && protocol != "udp" && protocol != "icmp") {
    badValue(flag, "tcp, udp or icmp (icmp includes ICMPv6)", value);
  }
  return protocol;
}

v1::Verdict checkedVerdict(const std::string& flag, const std::string& value) {
  v1::Verdict verdict{};
  if (!v1::Verdict_Parse(upper(value), &verdict) || verdict == v1::VERDICT_UNSPECIFIED) {
    badValue(flag, "FORWARDED, DROPPED or AUDIT", value);
  }
  return verdict;
}

std::string checkedType(const std::string& flag, const std::string& value) {
  std::string type = lower(value);
  if (type != "flow" && type != "drop") {
    badValue(flag, "flow (new, update and end events) or drop", value);
  }
  return type;
}

// "syn,ack" -> "SYN,ACK", every name checked.
std::string checkedTcpFlags(const std::string& flag, const std::string& value) {
  static constexpr std::array<std::string_view, 8> kNames = {"SYN", "ACK", "FIN", "RST",
                                                             "PSH", "URG", "ECE", "CWR"};
  std::string flags = upper(value);
  std::string_view rest = flags;
  while (true) {
    std::string_view name = rest.substr(0, rest.find(','));
    if (std::find(kNames.begin(), kNames.end(), name) == kNames.end()) {
      badValue(flag, "TCP flags separated by commas (SYN, ACK, FIN, RST, PSH, URG, ECE, CWR)",
               value);
    }
    if (name.size() == rest.size()) return flags;
    rest.remove_prefix(name.size() + 1);
  }
}

const std::string& checkedBinary(const std::string& flag, const std::string& value) {
  if (value.empty() || (value.front() != '/' && value != "*")) {
    badValue(flag, "an absolute path such as /usr/bin/curl, or a prefix ending in '/' or '*'",
             value);
  }
  return value;
}

const std::string& checkedCgroup(const std::string& flag, const std::string& value) {
  std::uint64_t id = 0;
  auto [ptr, ec] = std::from_chars(value.data(), value.data() + value.size(), id);
  bool isId = !value.empty() && ec == std::errc{} && ptr == value.data() + value.size() && id != 0;
  if (!value.starts_with('/') && !isId) {
    badValue(flag, "a cgroup path prefix such as /system.slice/, or a cgroup id", value);
  }
  return value;
}

const std::string& checkedInterface(const std::string& flag, const std::string& value) {
  if (value.empty()) badValue(flag, "an interface name such as eth0", value);
  return value;
}

const std::string& checkedPod(const std::string& flag, const std::string& value) {
  std::string why;
  if (!events::PodMatch::parse(value, why)) badValue(flag, "NAMESPACE/POD or POD", value);
  return value;
}

const std::string& checkedNamespace(const std::string& flag, const std::string& value) {
  std::string why;
  if (!events::parseNamespace(value, why)) badValue(flag, "a Kubernetes namespace", value);
  return value;
}

using Filter = v1::FlowFilter;
const FilterFlag kFilterFlags[] = {
    {"--ip", "CIDR", "Either side's address: 10.0.0.1, 10.0.0.0/8, 2001:db8::/32",
     [](auto& f, auto& v, Filter& out) { out.add_ip(checkedCidr(f, v)); }},
    {"--from-ip", "CIDR", "The source's address (the side that sent the first packet)",
     [](auto& f, auto& v, Filter& out) { out.add_source_ip(checkedCidr(f, v)); }},
    {"--to-ip", "CIDR", "The destination's address",
     [](auto& f, auto& v, Filter& out) { out.add_destination_ip(checkedCidr(f, v)); }},
    {"--port", "PORT", "Either side's port (1-65535)",
     [](auto& f, auto& v, Filter& out) { out.add_port(checkedPort(f, v)); }},
    {"--from-port", "PORT", "The source's port",
     [](auto& f, auto& v, Filter& out) { out.add_source_port(checkedPort(f, v)); }},
    {"--to-port", "PORT", "The destination's port",
     [](auto& f, auto& v, Filter& out) { out.add_destination_port(checkedPort(f, v)); }},
    {"--protocol", "PROTO", "tcp, udp or icmp (icmp includes ICMPv6)",
     [](auto& f, auto& v, Filter& out) { out.add_protocol(checkedProtocol(f, v)); }},
    {"--verdict", "VERDICT", "FORWARDED, DROPPED or AUDIT (any case)",
     [](auto& f, auto& v, Filter& out) { out.add_verdict(checkedVerdict(f, v)); }},
    {"--type", "TYPE", "flow (new, update, end) or drop (dropped packets)",
     [](auto& f, auto& v, Filter& out) { out.add_type(checkedType(f, v)); }},
    {"--tcp-flags", "FLAGS",
     "TCP flags that must all have been seen: SYN,ACK (also FIN, RST, "
     "PSH, URG, ECE, CWR)",
     [](auto& f, auto& v, Filter& out) { out.add_tcp_flags(checkedTcpFlags(f, v)); }},
    {"--pid", "PID", "Either side's process id",
     [](auto& f, auto& v, Filter& out) { out.add_pid(checkedPid(f, v)); }},
    {"--binary", "PATH", "Either side's binary: exact path, or prefix if it ends in '/' or '*'",
     [](auto& f, auto& v, Filter& out) { out.add_binary(checkedBinary(f, v)); }},
    {"--cgroup", "CGROUP", "Either side's cgroup: a path prefix (/system.slice/) or a cgroup id",
     [](auto& f, auto& v, Filter& out) { out.add_cgroup(checkedCgroup(f, v)); }},
    {"--interface", "NAME", "The network interface (exact name)",
     [](auto& f, auto& v, Filter& out) { out.add_interface(checkedInterface(f, v)); }},
    {"--pod", "[NS/]POD", "Either side's Kubernetes pod: NAMESPACE/POD, or POD in any namespace",
     [](auto& f, auto& v, Filter& out) { out.add_pod(checkedPod(f, v)); }},
    {"--from-pod", "[NS/]POD", "The source's pod",
     [](auto& f, auto& v, Filter& out) { out.add_source_pod(checkedPod(f, v)); }},
    {"--to-pod", "[NS/]POD", "The destination's pod",
     [](auto& f, auto& v, Filter& out) { out.add_destination_pod(checkedPod(f, v)); }},
    {"--namespace", "NS", "Either side's Kubernetes namespace",
     [](auto& f, auto& v, Filter& out) { out.add_namespace_(checkedNamespace(f, v)); }},
};
static_assert(std::size(kFilterFlags) == FlowCommands::kFilterCount);

// The filter flag `arg` gives ("--ip" for "--ip" and "--ip=10.0.0.1"), or nullptr.
const FilterFlag* filterFlagOf(std::string_view arg) {
  for (const FilterFlag& flag : kFilterFlags) {
    std::string_view name = flag.name;
    if (arg == name ||
        (arg.starts_with(name) && arg.size() > name.size() && arg[name.size()] == '=')) {
      return &flag;
    }
  }
  return nullptr;
}

// For each filter flag, whether each of its occurrences, in order, follows --not.
std::map<const FilterFlag*, std::vector<bool>> negations(const std::vector<std::string>& args) {
  std::map<const FilterFlag*, std::vector<bool>> out;
  bool pending = false;
  for (std::size_t i = 0; i < args.size() && args[i] != "--"; ++i) {
    const std::string& arg = args[i];
    if (arg == "--not") {
      if (pending) throw CLI::ValidationError("--not", "given twice in a row");
      pending = true;
    } else if (const FilterFlag* flag = filterFlagOf(arg)) {
      out[flag].push_back(pending);
      pending = false;
      if (arg.find('=') == std::string::npos) ++i;  // its value
    } else if (pending && arg.starts_with('-')) {
      std::string message = "must come right before a filter flag such as --ip, not before ";
      throw CLI::ValidationError("--not", message + arg);
    }
  }
  if (pending) {
    throw CLI::ValidationError("--not", "must come right before a filter flag such as --ip");
  }
  return out;
}

FlowFormat flowFormat(const std::string& name) {
  if (name == "table") return FlowFormat::kTable;
  if (name == "json") return FlowFormat::kJson;
  if (name == "dict") return FlowFormat::kDict;
  return FlowFormat::kCompact;
}

bool before(const google::protobuf::Timestamp& a, const google::protobuf::Timestamp& b) {
  return a.seconds() < b.seconds() || (a.seconds() == b.seconds() && a.nanos() < b.nanos());
}

// --- Formatting -------------------------------------------------------------------------------

bool isIcmp(const v1::Flow& flow) {
  return flow.protocol() == "icmp" || flow.protocol() == "icmpv6";
}

std::string verdictName(v1::Verdict verdict) {
  switch (verdict) {
    case v1::FORWARDED:
      return "FORWARDED";
    case v1::DROPPED:
      return "DROPPED";
    case v1::AUDIT:
      return "AUDIT";
    default:
      return "UNKNOWN";
  }
}

std::string_view verdictColor(v1::Verdict verdict) {
  switch (verdict) {
    case v1::FORWARDED:
      return kGreen;
    case v1::DROPPED:
      return kBoldRed;
    case v1::AUDIT:
      return kYellow;
    default:
      return {};
  }
}

// "curl(1234)" for an attributed endpoint, else "".
std::string processOf(const v1::FlowEndpoint& e) {
  if (e.pid() == 0) return {};
  std::string name = e.comm();
  if (name.empty()) name = e.binary().substr(e.binary().rfind('/') + 1);
  return sanitize(name.empty() ? "?" : name) + "(" + std::to_string(e.pid()) + ")";
}

// "shop/cart-1" for an endpoint in a pod, else "".
std::string podOf(const v1::FlowEndpoint& e) {
  if (e.workload().kind() != "pod" || e.workload().pod().empty()) return {};
  return sanitize(e.workload().namespace_() + "/" + e.workload().pod());
}

// "10.0.0.1:40000 curl(1234)", "10.0.0.1:40000 shop/cart-1 curl(1234)" in a pod; ICMP shows
// no port (it holds the echo identifier).
std::string sideOf(const v1::Flow& flow, const v1::FlowEndpoint& e) {
  std::string out = endpoint(e.ip(), isIcmp(flow) ? 0 : e.port());
  if (std::string pod = podOf(e); !pod.empty()) out += " " + pod;
  if (std::string process = processOf(e); !process.empty()) out += " " + process;
  return out;
}

// Flags seen either way, in a fixed order: "SYN,ACK,FIN".
std::string tcpFlagsOf(const v1::Flow& flow) {
  static constexpr std::array<std::string_view, 8> kOrder = {"SYN", "ACK", "PSH", "URG",
                                                             "ECE", "CWR", "FIN", "RST"};
  std::string out;
  for (std::string_view name : kOrder) {
    auto seen = [&](const auto& list) {
      return std::find(list.begin(), list.end(), name) != list.end();
    };
    if (seen(flow.tcp_flags()) || seen(flow.reply_tcp_flags())) {
      out += (out.empty() ? "" : ",") + std::string(name);
    }
  }
  return out;
}

// "tcp", or "icmp type=8 code=0".
std::string protocolOf(const v1::Flow& flow) {
  std::string out = sanitize(flow.protocol().empty() ? "?" : flow.protocol());
  if (isIcmp(flow)) {
    out +=
        " type=" + std::to_string(flow.icmp_type()) + " code=" + std::to_string(flow.icmp_code());
  }
  return out;
}

// "new", "update", "end (fin)", "drop".
std::string kindOf(const v1::Flow& flow) {
  switch (flow.event_type()) {
    case v1::FLOW_NEW:
      return "new";
    case v1::FLOW_UPDATE:
      return "update";
    case v1::FLOW_END:
      return flow.end_reason().empty() ? "end" : "end (" + sanitize(flow.end_reason()) + ")";
    case v1::FLOW_DROP:
      return "drop";
    default:
      return "unknown";
  }
}

// "NO_SOCKET", or "VIGIL_XDP_POLICY policy=edge rule=scanners", with "+N suppressed".
std::string dropOf(const v1::Flow& flow) {
  std::string out = sanitize(flow.drop_reason().empty() ? "drop" : flow.drop_reason());
  if (!flow.policy().empty()) {
    out += " policy=" + sanitize(flow.policy()) + " rule=" + sanitize(flow.rule());
  }
  if (flow.suppressed() > 0) out += " +" + std::to_string(flow.suppressed()) + " suppressed";
  return out;
}

std::string countersOf(const v1::FlowCounters& c) {
  return std::to_string(c.packets()) + " pkts " + std::to_string(c.bytes()) + " bytes " +
         std::to_string(c.payload_bytes()) + " payload";
}

// "sent 12 pkts 3400 bytes 2800 payload, reply ..." for updates and ends, else "".
std::string trafficOf(const v1::Flow& flow) {
  if (flow.event_type() != v1::FLOW_UPDATE && flow.event_type() != v1::FLOW_END) return {};
  return "sent " + countersOf(flow.sent()) + ", reply " + countersOf(flow.reply());
}

// What happened: the kind of a flow event, or a drop's reason; then a flow's counters.
std::string summaryOf(const v1::Flow& flow) {
  if (flow.event_type() == v1::FLOW_DROP) {
    std::string out = dropOf(flow);
    if (!flow.interface().empty()) out += " on " + sanitize(flow.interface());
    return out;
  }
  std::string out = kindOf(flow);
  if (std::string traffic = trafficOf(flow); !traffic.empty()) out += "  " + traffic;
  return out;
}

std::string timeOf(const v1::Event& event) {
  return event.has_time() ? formatTimestamp(event.time()) : "-";
}

std::string nodeOf(const v1::Event& event) {
  return event.node_name().empty() ? "-" : sanitize(event.node_name());
}

// "curl(1234) /usr/bin/curl uid=1000 cgroup=/user.slice/x" for an attributed side, else "".
std::string processDetail(const v1::FlowEndpoint& e) {
  std::string out = processOf(e);
  if (out.empty()) return out;
  if (!e.binary().empty()) out += " " + sanitize(e.binary());
  out += " uid=" + std::to_string(e.uid());
  if (!e.cgroup_path().empty()) {
    out += " cgroup=" + sanitize(e.cgroup_path());
  } else if (e.cgroup_id() != 0) {
    out += " cgroup=" + std::to_string(e.cgroup_id());
  }
  return out;
}

// Key and value lines of one dict block, keys right-aligned.
void appendDictLine(std::string& out, std::string_view key, const std::string& value) {
  if (value.empty()) return;
  constexpr std::size_t kKeyWidth = 19;  // "DESTINATION PROCESS"
  out += std::string(kKeyWidth - std::min(kKeyWidth, key.size()), ' ');
  out.append(key).append(": ").append(value).append("\n");
}

}  // namespace

FlowCommands::FlowCommands(CLI::App& app) {
  observe_ = app.add_subcommand(
      "observe",
      "Show network flows and dropped packets, filtered like hubble observe: recent "
      "history, or live with -f");
  observe_->footer(kObserveFooter);
  observe_->add_flag("-f,--follow", follow_, "Keep streaming new flows until Ctrl-C");
  observe_->add_option("--last", last_, "Start with the N most recent matches (0: all)")
      ->type_name("N");
  observe_->add_option("--first", first_, "The N oldest matches the agent holds")->type_name("N");
  observe_->add_option("--since", since_, "Only flows after TIME: 30s, 5m, 2h ago or RFC 3339")
      ->type_name("TIME");
  observe_->add_option("--until", until_, "Only flows before TIME (not with --follow)")
      ->type_name("TIME");
  // CLI11 takes a const string here as the help text of a flag without a variable.
  static const std::string kNotHelp = "Negate the filter flag that comes right after it";
  observe_->add_flag("--not", kNotHelp);
  for (std::size_t i = 0; i < std::size(kFilterFlags); ++i) {
    observe_->add_option(kFilterFlags[i].name, filters_[i], kFilterFlags[i].help)
        ->type_name(kFilterFlags[i].valueName)
        ->allow_extra_args(false);
  }
  observe_->add_option("-o,--output", output_, "Output format: compact, table, json or dict")
      ->type_name("FORMAT")
      ->check(CLI::IsMember({"compact", "table", "json", "dict"}))
      ->capture_default_str();
  observe_->add_flag("--print-node-name", printNodeName_, "Show the node each flow was seen on");

  traffic_ = app.add_subcommand(
      "traffic", "Show network packets and bytes per cgroup and protocol, in and out");
  traffic_->footer(kTrafficFooter);
  traffic_->add_option("--cgroup", trafficCgroup_, "Only cgroups under this path prefix")
      ->type_name("PREFIX");
  traffic_->add_option("-o,--output", trafficOutput_, "Output format: table or json")
      ->type_name("FORMAT")
      ->check(CLI::IsMember({"table", "json"}))
      ->capture_default_str();
}

ObserveCommand FlowCommands::observeCommand(const std::vector<std::string>& args,
                                            std::chrono::system_clock::time_point now) const {
  ObserveCommand command;
  v1::GetFlowsRequest& request = command.request;
  const bool lastGiven = observe_->count("--last") > 0;
  const bool firstGiven = observe_->count("--first") > 0;
  const bool sinceGiven = observe_->count("--since") > 0;
  const bool untilGiven = observe_->count("--until") > 0;
  if (firstGiven && lastGiven) {
    throw CLI::ValidationError("--first",
                               "cannot be combined with --last: ask for the oldest "
                               "or the newest flows");
  }
  if (firstGiven && follow_) {
    throw CLI::ValidationError("--first", "cannot be combined with --follow");
  }
  if (untilGiven && follow_) {
    throw CLI::ValidationError("--until",
                               "cannot be combined with --follow: new flows come "
                               "after it");
  }
  request.set_follow(follow_);
  if (lastGiven) {
    request.set_last(countFlag("--last", last_));
  } else if (firstGiven) {
    request.set_first(countFlag("--first", first_));
    if (request.first() == 0) badValue("--first", "a whole number from 1", first_);
  } else if (!sinceGiven && !follow_) {
    request.set_last(kDefaultLast);
  }
  if (sinceGiven) *request.mutable_since() = timeFlag("--since", since_, now);
  if (untilGiven) *request.mutable_until() = timeFlag("--until", until_, now);
  if (sinceGiven && untilGiven && !before(request.since(), request.until())) {
    throw CLI::ValidationError("--since", "must be before --until");
  }

  const auto negated = negations(args);
  for (std::size_t i = 0; i < std::size(kFilterFlags); ++i) {
    const FilterFlag& flag = kFilterFlags[i];
    auto it = negated.find(&flag);
    for (std::size_t n = 0; n < filters_[i].size(); ++n) {
      bool exclude = it != negated.end() && n < it->second.size() && it->second[n];
      flag.add(flag.name, filters_[i][n],
               exclude ? *request.mutable_exclude() : *request.mutable_include());
    }
  }
  command.format = flowFormat(output_);
  command.printNodeName = printNodeName_;
  return command;
}

TrafficCommand FlowCommands::trafficCommand() const {
  if (!trafficCgroup_.empty() && !trafficCgroup_.starts_with('/')) {
    badValue("--cgroup", "a cgroup path prefix starting with '/', such as /system.slice/",
             trafficCgroup_);
  }
  TrafficCommand command;
  command.request.set_cgroup_prefix(trafficCgroup_);
  command.format = trafficOutput_ == "json" ? TrafficFormat::kJson : TrafficFormat::kTable;
  return command;
}

std::string formatFlowCompact(const v1::Event& event, bool color, bool nodeName) {
  std::string out = paint(timeOf(event), kDim, color) + " ";
  if (nodeName) out += "[" + nodeOf(event) + "] ";
  if (event.has_lost()) return out + paint(lostText(event.lost()), kBoldRed, color);
  if (!event.has_flow()) return out + eventTypeName(event.type()) + " (no details)";

  const v1::Flow& flow = event.flow();
  const bool drop = flow.event_type() == v1::FLOW_DROP;
  out += sideOf(flow, flow.source()) + (drop ? " -x> " : " -> ") +
         sideOf(flow, flow.destination()) + " " + protocolOf(flow);
  if (std::string flags = tcpFlagsOf(flow); !flags.empty()) out += " " + flags;
  out += " " + paint(verdictName(flow.verdict()), verdictColor(flow.verdict()), color);
  return out + " " + summaryOf(flow);
}

Row flowTableHeader(bool nodeName) {
  std::vector<std::string> names = {"TIME",  "SOURCE",  "DESTINATION", "PROTO",
                                    "FLAGS", "VERDICT", "SUMMARY"};
  if (nodeName) names.insert(names.begin() + 1, "NODE");
  return headerRow(names);
}

Row flowTableRow(const v1::Event& event, bool nodeName) {
  Row row;
  if (event.has_lost()) {
    row = {{timeOf(event), kDim},
           {"-"},
           {"-"},
           {"-"},
           {"-"},
           {"LOST", kBoldRed},
           {lostText(event.lost()), kBoldRed}};
  } else if (!event.has_flow()) {
    row = {{timeOf(event), kDim}, {"-"}, {"-"}, {"-"}, {"-"}, {"-"}, {eventTypeName(event.type())}};
  } else {
    const v1::Flow& flow = event.flow();
    row = {{timeOf(event), kDim},
           {sideOf(flow, flow.source())},
           {sideOf(flow, flow.destination())},
           {protocolOf(flow)},
           {tcpFlagsOf(flow)},
           {verdictName(flow.verdict()), verdictColor(flow.verdict())},
           {summaryOf(flow)}};
  }
  if (nodeName) row.insert(row.begin() + 1, Cell{nodeOf(event)});
  return row;
}

std::string formatFlowDict(const v1::Event& event, bool color, bool nodeName) {
  std::string out;
  appendDictLine(out, "TIMESTAMP", timeOf(event));
  if (nodeName) appendDictLine(out, "NODE", nodeOf(event));
  if (event.has_lost()) {
    appendDictLine(out, "LOST", paint(lostText(event.lost()), kBoldRed, color));
    return out;
  }
  if (!event.has_flow()) {
    appendDictLine(out, "TYPE", eventTypeName(event.type()));
    return out;
  }
  const v1::Flow& flow = event.flow();
  appendDictLine(out, "SOURCE",
                 endpoint(flow.source().ip(), isIcmp(flow) ? 0 : flow.source().port()));
  appendDictLine(out, "SOURCE PROCESS", processDetail(flow.source()));
  appendDictLine(out, "DESTINATION",
                 endpoint(flow.destination().ip(), isIcmp(flow) ? 0 : flow.destination().port()));
  appendDictLine(out, "DESTINATION PROCESS", processDetail(flow.destination()));
  appendDictLine(out, "PROTOCOL", protocolOf(flow));
  appendDictLine(out, "TCP FLAGS", tcpFlagsOf(flow));
  std::string where = sanitize(flow.interface());
  if (!flow.direction().empty()) where += " (" + sanitize(flow.direction()) + ")";
  appendDictLine(out, "INTERFACE", where);
  appendDictLine(out, "VERDICT",
                 paint(verdictName(flow.verdict()), verdictColor(flow.verdict()), color));
  appendDictLine(out, "EVENT", kindOf(flow));
  if (flow.event_type() == v1::FLOW_DROP) {
    appendDictLine(out, "DROP REASON", sanitize(flow.drop_reason()));
    if (!flow.policy().empty()) {
      appendDictLine(out, "POLICY", sanitize(flow.policy()) + " rule " + sanitize(flow.rule()));
    }
    appendDictLine(out, "LENGTH", std::to_string(flow.length()) + " bytes");
    if (flow.suppressed() > 0) appendDictLine(out, "SUPPRESSED", std::to_string(flow.suppressed()));
  } else if (!trafficOf(flow).empty()) {
    appendDictLine(out, "SENT", countersOf(flow.sent()));
    appendDictLine(out, "REPLY", countersOf(flow.reply()));
  }
  appendDictLine(out, "FIRST SEEN",
                 flow.has_first_seen() ? formatTimestamp(flow.first_seen()) : "");
  appendDictLine(out, "LAST SEEN", flow.has_last_seen() ? formatTimestamp(flow.last_seen()) : "");
  return out;
}

FlowPrinter::FlowPrinter(std::ostream& out, FlowFormat format, bool color, bool nodeName,
                         bool streaming)
    : out_(out),
      format_(format),
      color_(color),
      nodeName_(nodeName),
      streaming_(streaming),
      table_(out, flowTableHeader(nodeName),
             nodeName ? std::vector<std::size_t>{24, 12, 32, 32, 5, 11, 9, 0}
                      : std::vector<std::size_t>{24, 32, 32, 5, 11, 9, 0},
             color, streaming) {}

void FlowPrinter::print(const v1::Event& event) {
  switch (format_) {
    case FlowFormat::kJson:
      out_ << formatJson(event) << '\n';
      break;
    case FlowFormat::kCompact:
      out_ << formatFlowCompact(event, color_, nodeName_) << '\n';
      break;
    case FlowFormat::kDict:
      if (printedOne_) out_ << std::string(40, '-') << '\n';
      out_ << formatFlowDict(event, color_, nodeName_);
      break;
    case FlowFormat::kTable:
      table_.add(flowTableRow(event, nodeName_));
      break;
  }
  printedOne_ = true;
  if (streaming_) out_.flush();
}

void FlowPrinter::finish() {
  if (format_ == FlowFormat::kTable) table_.finish();
  out_.flush();
}

std::string formatTraffic(const v1::GetTrafficResponse& traffic, bool color) {
  std::string out = labelled("Source", sanitize(traffic.source()));
  if (traffic.rows_size() == 0) return out + "No traffic counted.\n";
  std::vector<Row> rows = {headerRow({"CGROUP", "PROTO", "IN PKTS", "IN BYTES", "IN PAYLOAD",
                                      "OUT PKTS", "OUT BYTES", "OUT PAYLOAD"})};
  for (const auto& r : traffic.rows()) {
    rows.push_back(
        {{r.cgroup_path().empty() ? std::to_string(r.cgroup_id()) : sanitize(r.cgroup_path())},
         {sanitize(r.protocol())},
         {std::to_string(r.ingress().packets())},
         {std::to_string(r.ingress().bytes())},
         {std::to_string(r.ingress().payload_bytes())},
         {std::to_string(r.egress().packets())},
         {std::to_string(r.egress().bytes())},
         {std::to_string(r.egress().payload_bytes())}});
  }
  auto widths = columnWidths(rows);
  for (const auto& row : rows) appendRow(out, row, widths, "", color);
  return out;
}

int runObserve(const AgentCall& call, const ObserveCommand& command, std::ostream& out,
               std::ostream& err) {
  auto stub = v1::Vigil::NewStub(makeChannel(call.server));
  FlowPrinter printer(out, command.format, call.color, command.printNodeName,
                      command.request.follow());
  int code = streamEvents<v1::GetFlowsResponse>(
      call.server, call.interrupt, "GetFlows",
      [&](grpc::ClientContext* context) { return stub->GetFlows(context, command.request); },
      [&](const v1::Event& event) { printer.print(event); }, err);
  printer.finish();
  return code;
}

int runTraffic(const AgentCall& call, const TrafficCommand& command, std::ostream& out,
               std::ostream& err) {
  auto stub = v1::Vigil::NewStub(makeChannel(call.server));
  UnaryCall rpc(call.timeout, call.interrupt);
  v1::GetTrafficResponse response;
  grpc::Status status = stub->GetTraffic(rpc.context(), command.request, &response);
  if (rpc.finish()) return 130;
  if (!status.ok()) return reportRpcError(err, "GetTraffic", call.server, status);
  if (command.format == TrafficFormat::kJson) {
    out << formatJson(response) << '\n';
  } else {
    out << formatTraffic(response, call.color);
  }
  out.flush();
  return 0;
}

}  // namespace vigil::cli
