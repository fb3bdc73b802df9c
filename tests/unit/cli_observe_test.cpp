// Unit tests for `vigil observe` and `vigil traffic`: flags into GetFlowsRequest (filters, --not,
// time windows, errors), every output format, colour, the Flows section of `vigil status`, and
// both commands against a fake agent on a TCP port the kernel picks.
// Suite names start with "cli" so that `ctest -R cli` selects them with the other CLI tests.
#include <google/protobuf/text_format.h>
#include <google/protobuf/util/json_util.h>
#include <google/protobuf/util/message_differencer.h>
#include <google/protobuf/util/time_util.h>
#include <grpcpp/server.h>
#include <grpcpp/server_builder.h>
#include <gtest/gtest.h>

#include <mutex>
#include <sstream>
#include <string>
#include <vector>

#include "cli/src/app.hpp"
#include "cli/src/observe.hpp"
#include "cli_test_support.hpp"
#include "vigil/v1/vigil.grpc.pb.h"

namespace vigil::cli {
namespace {

using test_support::testEnvironment;
using test_support::timestamp;

// `vigil observe ARGS...` parsed.
ObserveCommand parseObserve(std::vector<std::string> args) {
  args.insert(args.begin(), "observe");
  return test_support::parseCommand<ObserveCommand>(args);
}

v1::FlowFilter filterFromText(const std::string& text) {
  v1::FlowFilter filter;
  EXPECT_TRUE(google::protobuf::TextFormat::ParseFromString(text, &filter)) << text;
  return filter;
}

void expectFilter(const v1::FlowFilter& actual, const std::string& expected) {
  EXPECT_TRUE(google::protobuf::util::MessageDifferencer::Equals(actual, filterFromText(expected)))
      << "got: " << actual.ShortDebugString() << "\nwant: " << expected;
}

// ---- Flag parsing ----------------------------------------------------------------------------

TEST(cliObserveParse, DefaultsToTheLastTwentyCompactFlows) {
  ObserveCommand c = parseObserve({});
  EXPECT_EQ(c.request.last(), 20u);
  EXPECT_EQ(c.request.first(), 0u);
  EXPECT_FALSE(c.request.follow());
  EXPECT_FALSE(c.request.has_include());
  EXPECT_FALSE(c.request.has_exclude());
  EXPECT_EQ(c.format, FlowFormat::kCompact);
  EXPECT_FALSE(c.printNodeName);

  EXPECT_EQ(parseObserve({"-f"}).request.last(), 0u) << "follow alone: only new flows";
  EXPECT_TRUE(parseObserve({"-f"}).request.follow());
  EXPECT_EQ(parseObserve({"--since", "5m"}).request.last(), 0u);
  EXPECT_EQ(parseObserve({"--last", "7"}).request.last(), 7u);
  ObserveCommand first = parseObserve({"--first", "3"});
  EXPECT_EQ(first.request.first(), 3u);
  EXPECT_EQ(first.request.last(), 0u);
  EXPECT_EQ(parseObserve({"--until", "1m"}).request.last(), 20u);
}

TEST(cliObserveParse, SinceAndUntil) {
  ObserveCommand c = parseObserve({"--since", "10m", "--until", "2026-11-25T19:44:15Z"});
  EXPECT_EQ(c.request.since().seconds(), 1'795'000'000 - 600);
  EXPECT_EQ(c.request.until(), timestamp("2026-11-25T19:44:15Z"));
}

TEST(cliObserveParse, EveryFilterFlagFillsItsField) {
  ObserveCommand c = parseObserve({"--ip",
                                   "10.0.0.1",
                                   "--ip=10.0.0.0/8",
                                   "--from-ip",
                                   "2001:db8::/32",
                                   "--to-ip",
                                   "192.0.2.1",
                                   "--port",
                                   "443",
                                   "--from-port",
                                   "40000",
                                   "--to-port",
                                   "53",
                                   "--protocol",
                                   "TCP",
                                   "--protocol",
                                   "icmp",
                                   "--verdict",
                                   "dropped",
                                   "--verdict",
                                   "AUDIT",
                                   "--type",
                                   "drop",
                                   "--tcp-flags",
                                   "syn,ack",
                                   "--pid",
                                   "1234",
                                   "--binary",
                                   "/usr/bin/",
                                   "--cgroup",
                                   "/system.slice/",
                                   "--cgroup",
                                   "4242",
                                   "--interface",
                                   "eth0",
                                   "--pod",
                                   "shop/cart-1",
                                   "--pod",
                                   "front",
                                   "--from-pod",
                                   "web/a",
                                   "--to-pod",
                                   "db.0",
                                   "--namespace",
                                   "kube-system"});
  expectFilter(c.request.include(), R"(
      ip: "10.0.0.1" ip: "10.0.0.0/8" source_ip: "2001:db8::/32" destination_ip: "192.0.2.1"
      port: 443 source_port: 40000 destination_port: 53 protocol: "tcp" protocol: "icmp"
      verdict: DROPPED verdict: AUDIT type: "drop" tcp_flags: "SYN,ACK" pid: 1234
      binary: "/usr/bin/" cgroup: "/system.slice/" cgroup: "4242" interface: "eth0"
      pod: "shop/cart-1" pod: "front" source_pod: "web/a" destination_pod: "db.0"
      namespace: "kube-system")");
  EXPECT_FALSE(c.request.has_exclude());
}

TEST(cliObserveParse, NotNegatesOnlyTheNextFilterFlag) {
  ObserveCommand c = parseObserve({"--not", "--ip", "10.0.0.1", "--ip", "10.0.0.2"});
  expectFilter(c.request.include(), R"(ip: "10.0.0.2")");
  expectFilter(c.request.exclude(), R"(ip: "10.0.0.1")");

  ObserveCommand mixed =
      parseObserve({"--port", "443", "-f", "--not", "--to-port=22", "--protocol", "tcp", "--not",
                    "--verdict", "forwarded", "--not", "--to-port", "23", "--to-port", "8080"});
  expectFilter(mixed.request.include(), R"(port: 443 protocol: "tcp" destination_port: 8080)");
  expectFilter(mixed.request.exclude(),
               R"(destination_port: 22 destination_port: 23 verdict: FORWARDED)");

  // Global flags before the command and other flags between do not disturb the count.
  ObserveCommand global = test_support::parseCommand<ObserveCommand>(
      {"--server", "/tmp/x.sock", "observe", "--ip", "10.0.0.3", "-o", "json", "--not", "--ip",
       "10.0.0.4"});
  expectFilter(global.request.include(), R"(ip: "10.0.0.3")");
  expectFilter(global.request.exclude(), R"(ip: "10.0.0.4")");
}

TEST(cliObserveParse, OutputFormatsAndNodeName) {
  EXPECT_EQ(parseObserve({"-o", "table"}).format, FlowFormat::kTable);
  EXPECT_EQ(parseObserve({"-o", "json"}).format, FlowFormat::kJson);
  EXPECT_EQ(parseObserve({"--output", "dict"}).format, FlowFormat::kDict);
  EXPECT_TRUE(parseObserve({"--print-node-name"}).printNodeName);
}

TEST(cliObserveParse, Traffic) {
  TrafficCommand c = test_support::parseCommand<TrafficCommand>({"traffic"});
  EXPECT_EQ(c.request.cgroup_prefix(), "");
  EXPECT_EQ(c.format, TrafficFormat::kTable);
  c = test_support::parseCommand<TrafficCommand>(
      {"traffic", "--cgroup", "/system.slice/", "-o", "json"});
  EXPECT_EQ(c.request.cgroup_prefix(), "/system.slice/");
  EXPECT_EQ(c.format, TrafficFormat::kJson);
}

TEST(cliObserveParse, BadFlagsExitTwoWithOneClearMessage) {
  struct Case {
    std::vector<std::string> args;
    std::string message;
  };
  const std::vector<Case> cases = {
      {{"observe", "--ip", "10.0.0.300"},
       "--ip: '10.0.0.300' is not an IPv4 or IPv6 address block"},
      {{"observe", "--from-ip", "10.0.0.1/8"}, "--from-ip: '10.0.0.1/8' has host bits set"},
      {{"observe", "--to-ip", "10.0.0.0/40"}, "--to-ip: '10.0.0.0/40' has an invalid prefix"},
      {{"observe", "--port", "0"}, "--port: expected a port from 1 to 65535, got '0'"},
      {{"observe", "--from-port", "65536"}, "--from-port: expected a port"},
      {{"observe", "--to-port", "http"}, "--to-port: expected a port"},
      {{"observe", "--protocol", "sctp"}, "--protocol: expected tcp, udp or icmp"},
      {{"observe", "--verdict", "allowed"}, "--verdict: expected FORWARDED, DROPPED or AUDIT"},
      {{"observe", "--verdict", "verdict_unspecified"}, "--verdict: expected FORWARDED"},
      {{"observe", "--type", "exec"}, "--type: expected flow"},
      {{"observe", "--tcp-flags", "SYN,BOGUS"}, "--tcp-flags: expected TCP flags"},
      {{"observe", "--tcp-flags", "SYN,"}, "--tcp-flags: expected TCP flags"},
      {{"observe", "--pid", "0"}, "--pid: expected a process id"},
      {{"observe", "--binary", "curl"}, "--binary: expected an absolute path"},
      {{"observe", "--cgroup", "system.slice"}, "--cgroup: expected a cgroup path prefix"},
      {{"observe", "--cgroup", "0"}, "--cgroup: expected a cgroup path prefix"},
      {{"observe", "--interface", ""}, "--interface: expected an interface name"},
      {{"observe", "--pod", "Shop/Cart"}, "--pod: expected NAMESPACE/POD or POD, got 'Shop/Cart'"},
      {{"observe", "--from-pod", "a/b/c"}, "--from-pod: expected NAMESPACE/POD or POD"},
      {{"observe", "--to-pod", "/x"}, "--to-pod: expected NAMESPACE/POD or POD"},
      {{"observe", "--namespace", "kube_system"}, "--namespace: expected a Kubernetes namespace"},
      {{"observe", "--first", "3", "--last", "2"}, "--first: cannot be combined with --last"},
      {{"observe", "--first", "3", "-f"}, "--first: cannot be combined with --follow"},
      {{"observe", "--first", "0"}, "--first: expected a whole number from 1"},
      {{"observe", "--until", "5m", "-f"}, "--until: cannot be combined with --follow"},
      {{"observe", "--since", "5m", "--until", "10m"}, "--since: must be before --until"},
      {{"observe", "--until", "tomorrow"}, "--until: expected a duration"},
      {{"observe", "--last", "x"}, "--last: expected a whole number"},
      {{"observe", "--not"}, "--not: must come right before a filter flag"},
      {{"observe", "--not", "-f", "--ip", "10.0.0.1"},
       "--not: must come right before a filter flag such as --ip, not before -f"},
      {{"observe", "--not", "--not", "--ip", "10.0.0.1"}, "--not: given twice in a row"},
      {{"observe", "-o", "yaml"}, "--output: yaml not in"},
      {{"traffic", "--cgroup", "system.slice"}, "--cgroup: expected a cgroup path prefix"},
      {{"traffic", "-o", "dict"}, "--output: dict not in"},
  };
  for (const auto& c : cases) {
    test_support::expectUsageError(c.args, c.message, "vigil " + c.args[0]);
  }
}

TEST(cliObserveParse, HelpTeaches) {
  std::ostringstream out;
  std::ostringstream err;
  EXPECT_EQ(run({"observe", "--help"}, out, err, testEnvironment()), 0);
  for (const char* text :
       {"--not", "OR", "AND'ed", "GSO", "dict", "Examples:", "--tcp-flags", "IPv4-mapped", "-x>"}) {
    EXPECT_NE(out.str().find(text), std::string::npos) << text;
  }
  out.str("");
  EXPECT_EQ(run({"traffic", "-h"}, out, err, testEnvironment()), 0);
  EXPECT_NE(out.str().find("PAYLOAD"), std::string::npos);
  out.str("");
  EXPECT_EQ(run({"--help"}, out, err, testEnvironment()), 0);
  EXPECT_NE(out.str().find("vigil observe -f --type drop"), std::string::npos);
  EXPECT_NE(out.str().find("vigil traffic"), std::string::npos);
}

// ---- Formats ---------------------------------------------------------------------------------

v1::Event flowEvent(v1::FlowEventType type) {
  v1::Event ev;
  *ev.mutable_time() = timestamp("2026-11-25T19:44:15.123Z");
  ev.set_node_name("node1");
  ev.set_type(v1::EVENT_TYPE_FLOW);
  auto* f = ev.mutable_flow();
  f->set_event_type(type);
  f->set_verdict(v1::FORWARDED);
  f->set_protocol("tcp");
  auto* src = f->mutable_source();
  src->set_ip("10.0.0.1");
  src->set_port(40000);
  src->set_pid(1234);
  src->set_comm("curl");
  src->set_binary("/usr/bin/curl");
  src->set_uid(1000);
  src->set_cgroup_path("/user.slice/session-1.scope");
  f->mutable_destination()->set_ip("192.0.2.10");
  f->mutable_destination()->set_port(443);
  f->set_interface("eth0");
  f->set_direction("egress");
  f->add_tcp_flags("SYN");
  f->add_tcp_flags("ACK");
  f->add_reply_tcp_flags("SYN");
  f->add_reply_tcp_flags("ACK");
  if (type == v1::FLOW_END) {
    f->add_tcp_flags("FIN");
    f->set_end_reason("fin");
  }
  if (type == v1::FLOW_UPDATE || type == v1::FLOW_END) {
    f->mutable_sent()->set_packets(12);
    f->mutable_sent()->set_bytes(3400);
    f->mutable_sent()->set_payload_bytes(2800);
    f->mutable_reply()->set_packets(10);
    f->mutable_reply()->set_bytes(56000);
    f->mutable_reply()->set_payload_bytes(55000);
  }
  return ev;
}

v1::Event xdpDrop() {
  v1::Event ev;
  *ev.mutable_time() = timestamp("2026-11-25T19:45:00Z");
  ev.set_type(v1::EVENT_TYPE_FLOW);
  auto* f = ev.mutable_flow();
  f->set_event_type(v1::FLOW_DROP);
  f->set_verdict(v1::DROPPED);
  f->set_drop_reason("VIGIL_XDP_POLICY");
  f->set_policy("edge");
  f->set_rule("scanners");
  f->set_protocol("tcp");
  f->mutable_source()->set_ip("2001:db8::5");
  f->mutable_source()->set_port(5555);
  f->mutable_destination()->set_ip("2001:db8::1");
  f->mutable_destination()->set_port(22);
  f->set_interface("eth0");
  f->set_length(74);
  f->set_suppressed(3);
  f->add_tcp_flags("SYN");
  return ev;
}

v1::Event icmpAudit() {
  v1::Event ev = flowEvent(v1::FLOW_NEW);
  auto* f = ev.mutable_flow();
  f->set_protocol("icmp");
  f->clear_tcp_flags();
  f->clear_reply_tcp_flags();
  f->set_icmp_type(8);
  f->mutable_source()->set_port(77);  // the echo identifier
  f->mutable_destination()->set_port(77);
  f->set_verdict(v1::AUDIT);
  return ev;
}

v1::Event lostFlows() {
  v1::Event ev;
  *ev.mutable_time() = timestamp("2026-11-25T19:46:00Z");
  ev.set_type(v1::EVENT_TYPE_LOST);
  ev.mutable_lost()->set_source("kernel");
  ev.mutable_lost()->set_count(5);
  ev.mutable_lost()->set_lost_type(v1::EVENT_TYPE_FLOW);
  return ev;
}

TEST(cliObserveFormat, CompactFlowLifecycle) {
  EXPECT_EQ(formatFlowCompact(flowEvent(v1::FLOW_NEW), false, false),
            "2026-11-25T19:44:15.123Z 10.0.0.1:40000 curl(1234) -> 192.0.2.10:443 tcp SYN,ACK "
            "FORWARDED new");
  EXPECT_EQ(formatFlowCompact(flowEvent(v1::FLOW_UPDATE), false, false),
            "2026-11-25T19:44:15.123Z 10.0.0.1:40000 curl(1234) -> 192.0.2.10:443 tcp SYN,ACK "
            "FORWARDED update  sent 12 pkts 3400 bytes 2800 payload, reply 10 pkts 56000 bytes "
            "55000 payload");
  EXPECT_EQ(formatFlowCompact(flowEvent(v1::FLOW_END), false, true),
            "2026-11-25T19:44:15.123Z [node1] 10.0.0.1:40000 curl(1234) -> 192.0.2.10:443 tcp "
            "SYN,ACK,FIN FORWARDED end (fin)  sent 12 pkts 3400 bytes 2800 payload, reply 10 "
            "pkts 56000 bytes 55000 payload");
}

TEST(cliObserveFormat, CompactShowsPods) {
  v1::Event ev = flowEvent(v1::FLOW_NEW);
  auto* w = ev.mutable_flow()->mutable_source()->mutable_workload();
  w->set_kind("pod");
  w->set_namespace_("shop");
  w->set_pod("cart-1");
  ev.mutable_flow()->mutable_destination()->mutable_workload()->set_kind("host");
  EXPECT_EQ(formatFlowCompact(ev, false, false),
            "2026-11-25T19:44:15.123Z 10.0.0.1:40000 shop/cart-1 curl(1234) -> 192.0.2.10:443 "
            "tcp SYN,ACK FORWARDED new");
}

TEST(cliObserveFormat, CompactDropsIcmpAndLost) {
  EXPECT_EQ(formatFlowCompact(xdpDrop(), false, false),
            "2026-11-25T19:45:00.000Z [2001:db8::5]:5555 -x> [2001:db8::1]:22 tcp SYN DROPPED "
            "VIGIL_XDP_POLICY policy=edge rule=scanners +3 suppressed on eth0");
  v1::Event kernel = xdpDrop();
  kernel.mutable_flow()->set_drop_reason("NO_SOCKET");
  kernel.mutable_flow()->clear_policy();
  kernel.mutable_flow()->clear_rule();
  kernel.mutable_flow()->set_suppressed(0);
  kernel.mutable_flow()->clear_interface();
  EXPECT_EQ(formatFlowCompact(kernel, false, false),
            "2026-11-25T19:45:00.000Z [2001:db8::5]:5555 -x> [2001:db8::1]:22 tcp SYN DROPPED "
            "NO_SOCKET");
  EXPECT_EQ(formatFlowCompact(icmpAudit(), false, false),
            "2026-11-25T19:44:15.123Z 10.0.0.1 curl(1234) -> 192.0.2.10 icmp type=8 code=0 AUDIT "
            "new");
  EXPECT_EQ(formatFlowCompact(lostFlows(), false, false),
            "2026-11-25T19:46:00.000Z !! 5 flow events lost (kernel ring buffer full)");
}

TEST(cliObserveFormat, VerdictColoursOnlyWhenAsked) {
  const std::string green = "\x1b[32mFORWARDED\x1b[0m";
  const std::string red = "\x1b[1;31mDROPPED\x1b[0m";
  const std::string yellow = "\x1b[33mAUDIT\x1b[0m";
  EXPECT_NE(formatFlowCompact(flowEvent(v1::FLOW_NEW), true, false).find(green), std::string::npos);
  EXPECT_NE(formatFlowCompact(xdpDrop(), true, false).find(red), std::string::npos);
  EXPECT_NE(formatFlowCompact(icmpAudit(), true, false).find(yellow), std::string::npos);
  EXPECT_NE(formatFlowDict(xdpDrop(), true, false).find(red), std::string::npos);
  for (const auto& ev : {flowEvent(v1::FLOW_NEW), xdpDrop(), icmpAudit(), lostFlows()}) {
    EXPECT_EQ(formatFlowCompact(ev, false, true).find('\x1b'), std::string::npos);
    EXPECT_EQ(formatFlowDict(ev, false, true).find('\x1b'), std::string::npos);
  }
}

TEST(cliObserveFormat, Dict) {
  EXPECT_EQ(formatFlowDict(flowEvent(v1::FLOW_END), false, true),
            "          TIMESTAMP: 2026-11-25T19:44:15.123Z\n"
            "               NODE: node1\n"
            "             SOURCE: 10.0.0.1:40000\n"
            "     SOURCE PROCESS: curl(1234) /usr/bin/curl uid=1000 "
            "cgroup=/user.slice/session-1.scope\n"
            "        DESTINATION: 192.0.2.10:443\n"
            "           PROTOCOL: tcp\n"
            "          TCP FLAGS: SYN,ACK,FIN\n"
            "          INTERFACE: eth0 (egress)\n"
            "            VERDICT: FORWARDED\n"
            "              EVENT: end (fin)\n"
            "               SENT: 12 pkts 3400 bytes 2800 payload\n"
            "              REPLY: 10 pkts 56000 bytes 55000 payload\n");
  EXPECT_EQ(formatFlowDict(xdpDrop(), false, false),
            "          TIMESTAMP: 2026-11-25T19:45:00.000Z\n"
            "             SOURCE: [2001:db8::5]:5555\n"
            "        DESTINATION: [2001:db8::1]:22\n"
            "           PROTOCOL: tcp\n"
            "          TCP FLAGS: SYN\n"
            "          INTERFACE: eth0\n"
            "            VERDICT: DROPPED\n"
            "              EVENT: drop\n"
            "        DROP REASON: VIGIL_XDP_POLICY\n"
            "             POLICY: edge rule scanners\n"
            "             LENGTH: 74 bytes\n"
            "         SUPPRESSED: 3\n");
  EXPECT_EQ(formatFlowDict(lostFlows(), false, false),
            "          TIMESTAMP: 2026-11-25T19:46:00.000Z\n"
            "               LOST: !! 5 flow events lost (kernel ring buffer full)\n");
}

// Every format through the printer: the dict separator, the aligned table, one JSON object per
// line that parses back to the event.
TEST(cliObserveFormat, PrinterInEveryFormat) {
  const std::vector<v1::Event> events = {flowEvent(v1::FLOW_NEW), xdpDrop(), lostFlows()};
  auto print = [&](FlowFormat format, bool streaming, bool nodeName = false) {
    std::ostringstream out;
    FlowPrinter printer(out, format, false, nodeName, streaming);
    for (const auto& ev : events) printer.print(ev);
    printer.finish();
    return out.str();
  };

  std::string compact = print(FlowFormat::kCompact, false);
  EXPECT_EQ(std::count(compact.begin(), compact.end(), '\n'), 3);

  std::string dict = print(FlowFormat::kDict, false);
  size_t separators = 0;
  for (size_t pos = 0; (pos = dict.find(std::string(40, '-') + "\n", pos)) != std::string::npos;
       ++pos) {
    ++separators;
  }
  EXPECT_EQ(separators, 2u) << dict;
  EXPECT_EQ(dict.rfind("          TIMESTAMP", 0), 0u) << "no separator before the first block";

  std::istringstream json(print(FlowFormat::kJson, false));
  std::string line;
  size_t n = 0;
  while (std::getline(json, line)) {
    v1::Event parsed;
    ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(line, &parsed).ok()) << line;
    EXPECT_TRUE(google::protobuf::util::MessageDifferencer::Equals(parsed, events[n])) << line;
    if (events[n].has_flow()) {
      EXPECT_NE(line.find("\"event_type\":\"FLOW_"), std::string::npos) << line;
    }
    ++n;
  }
  EXPECT_EQ(n, events.size());

  std::string table = print(FlowFormat::kTable, false);
  std::istringstream rows(table);
  std::vector<std::string> lines;
  while (std::getline(rows, line)) lines.push_back(line);
  ASSERT_EQ(lines.size(), 4u) << table;
  EXPECT_EQ(lines[0].rfind("TIME", 0), 0u);
  // Aligned: every row's VERDICT cell starts where the header's does.
  const size_t verdict = lines[0].find("VERDICT");
  EXPECT_EQ(lines[1].find("FORWARDED"), verdict) << table;
  EXPECT_EQ(lines[2].find("DROPPED"), verdict) << table;
  EXPECT_EQ(lines[3].find("LOST"), verdict) << table;
  EXPECT_NE(lines[3].find("!! 5 flow events lost"), std::string::npos);

  std::string streamed = print(FlowFormat::kTable, true, true);
  EXPECT_EQ(streamed.rfind("TIME                      NODE", 0), 0u) << streamed;
  EXPECT_NE(streamed.find("node1"), std::string::npos);
}

TEST(cliObserveFormat, TableColoursVerdicts) {
  std::ostringstream out;
  FlowPrinter printer(out, FlowFormat::kTable, true, false, true);
  printer.print(xdpDrop());
  printer.finish();
  EXPECT_NE(out.str().find("\x1b[1;31mDROPPED\x1b[0m"), std::string::npos) << out.str();
}

TEST(cliObserveFormat, Traffic) {
  v1::GetTrafficResponse traffic;
  traffic.set_source("cgroup_skb on /sys/fs/cgroup");
  auto* row = traffic.add_rows();
  row->set_cgroup_path("/system.slice/nginx.service");
  row->set_protocol("tcp");
  row->mutable_ingress()->set_packets(10);
  row->mutable_ingress()->set_bytes(5000);
  row->mutable_ingress()->set_payload_bytes(4400);
  row->mutable_egress()->set_packets(8);
  row->mutable_egress()->set_bytes(90000);
  row->mutable_egress()->set_payload_bytes(89000);
  auto* other = traffic.add_rows();
  other->set_cgroup_id(99);
  other->set_protocol("udp");
  EXPECT_EQ(formatTraffic(traffic, false),
            "Source:         cgroup_skb on /sys/fs/cgroup\n"
            "CGROUP                       PROTO  IN PKTS  IN BYTES  IN PAYLOAD  OUT PKTS  "
            "OUT BYTES  OUT PAYLOAD\n"
            "/system.slice/nginx.service  tcp    10       5000      4400        8         "
            "90000      89000\n"
            "99                           udp    0        0         0           0         "
            "0          0\n");
  v1::GetTrafficResponse none;
  none.set_source("unavailable: no cgroup v2");
  EXPECT_EQ(formatTraffic(none, false),
            "Source:         unavailable: no cgroup v2\nNo traffic counted.\n");
}

TEST(cliObserveFormat, StatusShowsTheFlowsSection) {
  v1::GetStatusResponse status;
  auto* f = status.mutable_flows();
  f->set_state("tracking");
  auto* i = f->add_interfaces();
  i->set_name("eth0");
  i->set_ifindex(2);
  i->set_mode("tcx");
  f->set_flows_seen(1000);
  f->set_ring_size(800);
  f->set_ring_capacity(8192);
  f->set_flows_lost(4);
  f->set_table_entries(120);
  f->set_table_capacity(65536);
  f->set_table_evictions(7);
  auto* d = f->add_drops();
  d->set_reason("NO_SOCKET");
  d->set_packets(33);
  f->set_attribution("socket tracepoints; no NAT'ed flows");
  f->set_cgroup_accounting("cgroup_skb on /sys/fs/cgroup");
  auto* st = f->add_stats();
  st->set_name("flow_table_full");
  st->set_value(2);
  f->add_stats()->set_name("zero");
  std::string text = formatStatusText(status, false);
  for (const char* want :
       {"\nFlows: tracking\n", "  eth0       2        tcx\n",
        "  Flow events:  1000 seen, 800 / 8192 in the ring, 4 lost\n",
        "  Kernel table: 120 / 65536 flows, 7 evictions\n", "  NO_SOCKET    33\n",
        "  Attribution:  socket tracepoints; no NAT'ed flows\n",
        "  Traffic:      cgroup_skb on /sys/fs/cgroup\n", "  Counters:     flow_table_full=2\n"}) {
    EXPECT_NE(text.find(want), std::string::npos) << want << "\nin:\n" << text;
  }
  EXPECT_NE(formatStatusText(status, true).find("\x1b[32mtracking\x1b[0m"), std::string::npos);
  EXPECT_EQ(formatStatusText(v1::GetStatusResponse{}, false).find("Flows:"), std::string::npos);
}

// ---- Against a fake agent --------------------------------------------------------------------

class FakeFlowAgent final : public v1::Vigil::Service {
 public:
  grpc::Status GetFlows(grpc::ServerContext*, const v1::GetFlowsRequest* request,
                        grpc::ServerWriter<v1::GetFlowsResponse>* writer) override {
    {
      std::lock_guard lock(mutex_);
      flowsRequest_ = *request;
    }
    if (!flowsError_.ok()) return flowsError_;
    for (const auto& ev : {flowEvent(v1::FLOW_NEW), xdpDrop()}) {
      v1::GetFlowsResponse response;
      *response.mutable_event() = ev;
      writer->Write(response);
    }
    return grpc::Status::OK;
  }
  grpc::Status GetTraffic(grpc::ServerContext*, const v1::GetTrafficRequest* request,
                          v1::GetTrafficResponse* response) override {
    {
      std::lock_guard lock(mutex_);
      trafficRequest_ = *request;
    }
    response->set_source("cgroup_skb on /sys/fs/cgroup");
    response->add_rows()->set_cgroup_path(request->cgroup_prefix() + "x.service");
    return grpc::Status::OK;
  }

  v1::GetFlowsRequest flowsRequest() {
    std::lock_guard lock(mutex_);
    return flowsRequest_;
  }
  v1::GetTrafficRequest trafficRequest() {
    std::lock_guard lock(mutex_);
    return trafficRequest_;
  }

  grpc::Status flowsError_ = grpc::Status::OK;  // set before the calls

 private:
  std::mutex mutex_;
  v1::GetFlowsRequest flowsRequest_;      // Guarded by mutex_.
  v1::GetTrafficRequest trafficRequest_;  // Guarded by mutex_.
};

class CliFlowAgentTest : public testing::Test {
 protected:
  void SetUp() override {
    grpc::ServerBuilder builder;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port_);
    builder.RegisterService(&agent_);
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    ASSERT_NE(port_, 0);
  }
  void TearDown() override { server_->Shutdown(std::chrono::system_clock::now()); }

  int vigil(std::vector<std::string> args) {
    out_.str("");
    err_.str("");
    args.insert(args.begin(), {"--server", "127.0.0.1:" + std::to_string(port_)});
    return run(args, out_, err_, testEnvironment());
  }

  FakeFlowAgent agent_;
  int port_ = 0;
  std::unique_ptr<grpc::Server> server_;
  std::ostringstream out_;
  std::ostringstream err_;
};
using cliFlowAgent = CliFlowAgentTest;

TEST_F(cliFlowAgent, ObserveSendsTheRequestAndPrintsEveryFlow) {
  ASSERT_EQ(vigil({"observe", "--port", "443", "--not", "--ip", "10.0.0.9", "--first", "5"}), 0)
      << err_.str();
  v1::GetFlowsRequest sent = agent_.flowsRequest();
  EXPECT_EQ(sent.first(), 5u);
  EXPECT_EQ(sent.last(), 0u);
  expectFilter(sent.include(), "port: 443");
  expectFilter(sent.exclude(), R"(ip: "10.0.0.9")");
  EXPECT_EQ(out_.str(), formatFlowCompact(flowEvent(v1::FLOW_NEW), false, false) + "\n" +
                            formatFlowCompact(xdpDrop(), false, false) + "\n");
  EXPECT_EQ(err_.str(), "");
}

TEST_F(cliFlowAgent, ObserveErrorsExitOneWithTheCall) {
  agent_.flowsError_ = {grpc::StatusCode::UNIMPLEMENTED,
                        "flow tracking is not running on this agent"};
  EXPECT_EQ(vigil({"observe"}), 1);
  EXPECT_NE(err_.str().find("GetFlows"), std::string::npos) << err_.str();
  EXPECT_NE(err_.str().find("flow tracking is not running on this agent"), std::string::npos);
}

TEST_F(cliFlowAgent, TrafficTableAndJson) {
  ASSERT_EQ(vigil({"traffic", "--cgroup", "/system.slice/"}), 0) << err_.str();
  EXPECT_EQ(agent_.trafficRequest().cgroup_prefix(), "/system.slice/");
  EXPECT_NE(out_.str().find("/system.slice/x.service"), std::string::npos) << out_.str();
  ASSERT_EQ(vigil({"traffic", "-o", "json"}), 0) << err_.str();
  v1::GetTrafficResponse parsed;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(out_.str(), &parsed).ok()) << out_.str();
  EXPECT_EQ(parsed.source(), "cgroup_skb on /sys/fs/cgroup");
}

}  // namespace
}  // namespace vigil::cli
