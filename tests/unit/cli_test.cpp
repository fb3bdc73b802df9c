// Unit tests for the `vigil` CLI: flag parsing, formatting, error paths, and whole commands
// against a fake agent served in-process on a unix socket in a temporary directory.
// Suite names start with a lowercase "cli" so that `ctest -R cli` selects exactly these.
#include <google/protobuf/util/json_util.h>
#include <google/protobuf/util/message_differencer.h>
#include <google/protobuf/util/time_util.h>
#include <grpcpp/server.h>
#include <grpcpp/server_builder.h>
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <regex>
#include <sstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "cli/src/app.hpp"
#include "cli/src/format.hpp"
#include "cli/src/policy.hpp"
#include "cli/src/time_parse.hpp"
#include "cli_test_support.hpp"
#include "vigil/v1/vigil.grpc.pb.h"

namespace vigil::cli {
namespace {

using google::protobuf::util::TimeUtil;
using namespace std::chrono_literals;

using test_support::parseCommand;
using test_support::testEnvironment;
using test_support::timestamp;

// Parses `args` and returns the events command; fails the test if there is none.
EventsCommand parseEvents(const std::vector<std::string>& args,
                          const Environment& env = testEnvironment()) {
  std::ostringstream out;
  std::ostringstream err;
  ParseResult result = parseCommandLine(args, out, err, env);
  EXPECT_TRUE(result.invocation.has_value()) << err.str();
  if (!result.invocation) return {};
  const auto* events = std::get_if<EventsCommand>(&result.invocation->command);
  EXPECT_NE(events, nullptr);
  return events != nullptr ? *events : EventsCommand{};
}

v1::Event execEvent() {
  v1::Event event;
  *event.mutable_time() = timestamp("2026-11-25T19:44:15.123456Z");
  event.set_node_name("node1");
  event.set_type(v1::EVENT_TYPE_EXEC);
  auto* process = event.mutable_exec()->mutable_process();
  process->set_pid(1234);
  process->set_ppid(1200);
  process->set_uid(0);
  process->set_binary("/usr/bin/curl");
  process->add_args("curl");
  process->add_args("-s");
  process->add_args("http://x");
  process->set_cwd("/root");
  auto* parent = event.add_ancestors();
  parent->set_pid(1200);
  parent->set_binary("/usr/bin/bash");
  event.add_ancestors()->set_pid(1);
  return event;
}

v1::Event exitEvent(int code, int signal) {
  v1::Event event;
  *event.mutable_time() = timestamp("2026-11-25T19:44:16.323Z");
  event.set_type(v1::EVENT_TYPE_EXIT);
  auto* exit = event.mutable_exit();
  exit->mutable_process()->set_pid(1234);
  exit->mutable_process()->set_ppid(1200);
  exit->mutable_process()->set_binary("/usr/bin/curl");
  exit->set_exit_code(code);
  exit->set_signal(signal);
  *exit->mutable_lifetime() = TimeUtil::MillisecondsToDuration(1200);
  return event;
}

v1::Event lostEvent(const std::string& source, std::uint64_t count) {
  v1::Event event;
  *event.mutable_time() = timestamp("2026-11-25T19:44:17Z");
  event.set_type(v1::EVENT_TYPE_LOST);
  event.mutable_lost()->set_source(source);
  event.mutable_lost()->set_count(count);
  return event;
}

// A process that a policy rule matched: killed ("kill") or reported ("audit").
v1::Event policyEvent(const std::string& action, const std::string& mechanism) {
  v1::Event event;
  *event.mutable_time() = timestamp("2026-11-25T20:00:00Z");
  event.set_node_name("node1");
  event.set_type(v1::EVENT_TYPE_POLICY);
  auto* policy = event.mutable_policy();
  auto* process = policy->mutable_process();
  process->set_pid(1234);
  process->set_ppid(1200);
  process->set_uid(1000);
  process->set_euid(1000);
  process->set_binary("/tmp/x/evil");
  process->add_args("evil");
  process->add_args("--arg");
  policy->set_policy("deny-tmp");
  policy->set_rule("no-tmp");
  policy->set_action(action);
  policy->set_mechanism(mechanism);
  auto* parent = event.add_ancestors();
  parent->set_pid(1200);
  parent->set_binary("/usr/bin/bash");
  return event;
}

// A packet an XDP rule decided on: an IPv4 TCP packet to port 22 with the given verdict.
v1::Event dropEvent(const std::string& verdict) {
  v1::Event event;
  *event.mutable_time() = timestamp("2026-11-25T21:00:00Z");
  event.set_node_name("node1");
  event.set_type(v1::EVENT_TYPE_DROP);
  auto* drop = event.mutable_drop();
  drop->set_policy("edge");
  drop->set_rule("no-ssh");
  drop->set_verdict(verdict);
  drop->set_interface("eth0");
  drop->set_ifindex(2);
  drop->set_protocol("tcp");
  drop->set_source_ip("203.0.113.9");
  drop->set_destination_ip("10.0.0.1");
  drop->set_source_port(40001);
  drop->set_destination_port(22);
  drop->set_length(74);
  return event;
}

// An IPv6 UDP packet, a non-first fragment without ports, seen on a VLAN, after 12 unreported.
v1::Event ipv6FragmentDrop() {
  v1::Event event = dropEvent("rate-limit-audit");
  auto* drop = event.mutable_drop();
  drop->set_rule("flood");
  drop->set_interface("veth1");
  drop->set_ifindex(5);
  drop->set_protocol("udp");
  drop->set_source_ip("2001:db8::1");
  drop->set_destination_ip("2001:db8:ffff::2");
  drop->set_source_port(0);
  drop->set_destination_port(0);
  drop->set_length(1514);
  drop->set_fragment(true);
  drop->set_l4_missing(true);
  drop->set_vlan(true);
  drop->set_suppressed(12);
  return event;
}

// ---- Flag parsing ----------------------------------------------------------------------------

TEST(cliParse, DefaultsToTheLastTwentyCompactEvents) {
  EventsCommand command = parseEvents({"events"});
  EXPECT_EQ(command.request.last(), 20u);
  EXPECT_FALSE(command.request.follow());
  EXPECT_FALSE(command.request.has_since());
  EXPECT_EQ(command.request.types_size(), 0);
  EXPECT_EQ(command.format, EventFormat::kCompact);
}

TEST(cliParse, FollowAloneAsksForNewEventsOnly) {
  EventsCommand command = parseEvents({"events", "-f"});
  EXPECT_TRUE(command.request.follow());
  EXPECT_EQ(command.request.last(), 0u);

  command = parseEvents({"events", "--follow", "--last", "5"});
  EXPECT_TRUE(command.request.follow());
  EXPECT_EQ(command.request.last(), 5u);

  EXPECT_EQ(parseEvents({"events", "--last", "0"}).request.last(), 0u);
}

TEST(cliParse, TypesAreRepeatableAndCommaSeparated) {
  EventsCommand command = parseEvents({"events", "--type", "exit"});
  ASSERT_EQ(command.request.types_size(), 1);
  EXPECT_EQ(command.request.types(0), v1::EVENT_TYPE_EXIT);

  for (const auto& args : std::vector<std::vector<std::string>>{
           {"events", "--type", "exec", "--type", "exit"}, {"events", "--type", "exec,exit"}}) {
    command = parseEvents(args);
    ASSERT_EQ(command.request.types_size(), 2);
    EXPECT_EQ(command.request.types(0), v1::EVENT_TYPE_EXEC);
    EXPECT_EQ(command.request.types(1), v1::EVENT_TYPE_EXIT);
  }
}

TEST(cliParse, TypePolicySelectsKillsAndAudits) {
  EventsCommand command = parseEvents({"events", "--type", "policy"});
  ASSERT_EQ(command.request.types_size(), 1);
  EXPECT_EQ(command.request.types(0), v1::EVENT_TYPE_POLICY);

  command = parseEvents({"events", "-f", "--type", "exec,exit,policy"});
  ASSERT_EQ(command.request.types_size(), 3);
  EXPECT_EQ(command.request.types(2), v1::EVENT_TYPE_POLICY);
}

TEST(cliParse, TypeDropSelectsXdpDrops) {
  EventsCommand command = parseEvents({"events", "--type", "drop"});
  ASSERT_EQ(command.request.types_size(), 1);
  EXPECT_EQ(command.request.types(0), v1::EVENT_TYPE_DROP);

  command = parseEvents({"events", "-f", "--type", "policy,drop", "--type", "exec"});
  ASSERT_EQ(command.request.types_size(), 3);
  EXPECT_EQ(command.request.types(0), v1::EVENT_TYPE_POLICY);
  EXPECT_EQ(command.request.types(1), v1::EVENT_TYPE_DROP);
  EXPECT_EQ(command.request.types(2), v1::EVENT_TYPE_EXEC);
  EXPECT_TRUE(command.request.follow());
}

TEST(cliParse, PolicyCommands) {
  EXPECT_EQ(parseCommand<PolicyValidateCommand>({"policy", "validate", "-f", "p.yaml"}).file,
            "p.yaml");
  EXPECT_EQ(parseCommand<PolicyValidateCommand>({"policy", "validate", "-f", "-"}).file, "-");
  EXPECT_EQ(parseCommand<PolicyApplyCommand>({"policy", "apply", "--file", "/etc/p.yaml"}).file,
            "/etc/p.yaml");
  EXPECT_EQ(parseCommand<PolicyDeleteCommand>({"policy", "delete", "deny-tmp"}).name, "deny-tmp");
  EXPECT_EQ(parseCommand<PolicyListCommand>({"policy", "list"}).format, PolicyListFormat::kTable);
  EXPECT_EQ(parseCommand<PolicyListCommand>({"policy", "list", "-o", "json"}).format,
            PolicyListFormat::kJson);

  // Global flags work before the command and after the policy command.
  for (const auto& args : std::vector<std::vector<std::string>>{
           {"--server", "/tmp/a.sock", "--timeout", "2s", "policy", "list"},
           {"policy", "list", "--server", "/tmp/a.sock", "--timeout", "2s"},
           {"policy", "--server", "/tmp/a.sock", "list", "--timeout", "2s"}}) {
    std::ostringstream out;
    std::ostringstream err;
    ParseResult result = parseCommandLine(args, out, err, testEnvironment());
    ASSERT_TRUE(result.invocation) << err.str();
    EXPECT_EQ(result.invocation->server.target, "unix:///tmp/a.sock");
    EXPECT_EQ(result.invocation->timeout, 2s);
    EXPECT_TRUE(std::holds_alternative<PolicyListCommand>(result.invocation->command));
  }
}

TEST(cliParse, BadPolicyFlagsExitTwoAndPointAtTheirCommand) {
  struct Case {
    std::vector<std::string> args;
    std::string message;
    std::string help;
  };
  const std::vector<Case> cases = {
      {{"policy"},
       "A policy command (validate, apply, list or delete) is required",
       "vigil policy"},
      {{"policy", "frobnicate"}, "frobnicate", "vigil policy"},
      {{"policy", "validate"}, "--file is required", "vigil policy validate"},
      {{"policy", "apply"}, "--file is required", "vigil policy apply"},
      {{"policy", "apply", "-f"}, "--file", "vigil policy apply"},
      {{"policy", "apply", "-f", "a.yaml", "b.yaml"}, "b.yaml", "vigil policy apply"},
      {{"policy", "delete"}, "NAME is required", "vigil policy delete"},
      {{"policy", "delete", "a", "b"}, "b", "vigil policy delete"},
      {{"policy", "list", "-o", "yaml"}, "--output: yaml not in {table,json}", "vigil policy list"},
      {{"events", "--type", "kill"}, "--type: kill not in {exec,exit,policy,drop,oom}", "vigil events"},
  };
  for (const auto& c : cases) test_support::expectUsageError(c.args, c.message, c.help);
}

TEST(cliParse, PolicyHelpTeaches) {
  std::ostringstream out;
  std::ostringstream err;
  EXPECT_EQ(run({"policy", "--help"}, out, err, testEnvironment()), 0);
  for (const char* expected :
       {"validate", "apply", "delete", "list", "Examples:", "vigil policy validate -f",
        "vigil policy apply -f", "vigil policy apply -f -", "vigil policy list -o json",
        "vigil policy delete deny-tmp", "vigil events -f --type policy", "file:line:col",
        "all of them"}) {
    EXPECT_NE(out.str().find(expected), std::string::npos) << expected << "\n" << out.str();
  }

  out.str("");
  EXPECT_EQ(run({"policy", "list", "-h"}, out, err, testEnvironment()), 0);
  EXPECT_NE(out.str().find("hits=N"), std::string::npos) << out.str();
  EXPECT_NE(out.str().find("--output"), std::string::npos) << out.str();

  out.str("");
  EXPECT_EQ(run({"policy", "apply", "--help"}, out, err, testEnvironment()), 0);
  EXPECT_NE(out.str().find("--file"), std::string::npos) << out.str();

  out.str("");
  EXPECT_EQ(run({"--help"}, out, err, testEnvironment()), 0);
  EXPECT_NE(out.str().find("policy"), std::string::npos) << out.str();
  out.str("");
  EXPECT_EQ(run({"events", "--help"}, out, err, testEnvironment()), 0);
  EXPECT_NE(out.str().find("exec, exit, policy (kills and audits), drop"), std::string::npos)
      << out.str();
  EXPECT_EQ(err.str(), "");
}

TEST(cliParse, PidsAndBinaries) {
  EventsCommand command =
      parseEvents({"events", "--pid", "10", "--pid", "20,30", "--binary", "/usr/bin/curl",
                   "--binary", "/tmp/", "--binary", "/opt/app*"});
  EXPECT_EQ(
      std::vector<std::uint32_t>(command.request.pids().begin(), command.request.pids().end()),
      (std::vector<std::uint32_t>{10, 20, 30}));
  EXPECT_EQ(std::vector<std::string>(command.request.binaries().begin(),
                                     command.request.binaries().end()),
            (std::vector<std::string>{"/usr/bin/curl", "/tmp/", "/opt/app*"}));
}

TEST(cliParse, NamespacesAndPods) {
  EventsCommand command = parseEvents(
      {"events", "--namespace", "shop,web", "--pod", "shop/cart-1", "--pod", "front"});
  EXPECT_EQ(std::vector<std::string>(command.request.namespaces().begin(),
                                     command.request.namespaces().end()),
            (std::vector<std::string>{"shop", "web"}));
  EXPECT_EQ(std::vector<std::string>(command.request.pods().begin(), command.request.pods().end()),
            (std::vector<std::string>{"shop/cart-1", "front"}));
}

TEST(cliFormat, CompactExecShowsItsPodOrContainer) {
  v1::Event event = execEvent();
  auto* w = event.mutable_exec()->mutable_process()->mutable_workload();
  w->set_kind("pod");
  w->set_namespace_("shop");
  w->set_pod("cart-1");
  w->set_container("api");
  EXPECT_EQ(formatCompact(event, false),
            "2026-11-25T19:44:15.123Z exec  pid=1234 uid=0 pod=shop/cart-1/api /usr/bin/curl -s "
            "http://x  cwd=/root  parent=bash(1200)");
  w->Clear();
  w->set_kind("pod");
  w->set_pod_uid("0bfe0093-a56e-48e8-85f0-20c884cd38df");
  EXPECT_NE(formatCompact(event, false).find(" pod=uid:0bfe0093-a56e-48e8-85f0-20c884cd38df "),
            std::string::npos);
  w->Clear();
  w->set_kind("container");
  w->set_runtime("docker");
  w->set_container_id("0123456789abcdef0123");
  EXPECT_NE(formatCompact(event, false).find(" container=docker/0123456789ab "),
            std::string::npos);
  w->Clear();
  w->set_kind("host");
  EXPECT_EQ(formatCompact(event, false).find("pod="), std::string::npos);
}

TEST(cliParse, SinceRelativeCountsBackFromNow) {
  Environment env = testEnvironment();
  EventsCommand command = parseEvents({"events", "--since", "5m"}, env);
  ASSERT_TRUE(command.request.has_since());
  EXPECT_EQ(command.request.since().seconds(), 1'795'000'000 - 300);
  EXPECT_EQ(command.request.since().nanos(), 0);
  // --since replaces the default --last 20: everything since then.
  EXPECT_EQ(command.request.last(), 0u);

  EXPECT_EQ(parseEvents({"events", "--since", "30s"}, env).request.since().seconds(),
            1'795'000'000 - 30);
  EXPECT_EQ(parseEvents({"events", "--since", "2h"}, env).request.since().seconds(),
            1'795'000'000 - 7200);
  EXPECT_EQ(parseEvents({"events", "--since", "1h30m"}, env).request.since().seconds(),
            1'795'000'000 - 5400);
}

TEST(cliParse, SinceRfc3339) {
  EventsCommand command = parseEvents({"events", "--since", "2026-11-25T19:44:15Z"});
  EXPECT_EQ(TimeUtil::ToString(command.request.since()), "2026-11-25T19:44:15Z");

  command = parseEvents({"events", "--since", "2026-11-25T21:44:15.250+02:00", "-f"});
  EXPECT_EQ(TimeUtil::ToString(command.request.since()), "2026-11-25T19:44:15.250Z");
  EXPECT_TRUE(command.request.follow());
}

TEST(cliParse, OutputFormats) {
  EXPECT_EQ(parseEvents({"events", "-o", "json"}).format, EventFormat::kJson);
  EXPECT_EQ(parseEvents({"events", "--output", "table"}).format, EventFormat::kTable);

  std::ostringstream out;
  std::ostringstream err;
  ParseResult result = parseCommandLine({"status", "-o", "json"}, out, err, testEnvironment());
  ASSERT_TRUE(result.invocation);
  EXPECT_EQ(std::get<StatusCommand>(result.invocation->command).format, StatusFormat::kJson);
}

TEST(cliParse, ServerFromFlagThenEnvironmentThenDefault) {
  std::ostringstream out;
  std::ostringstream err;
  Environment env = testEnvironment();
  ParseResult result = parseCommandLine({"status"}, out, err, env);
  ASSERT_TRUE(result.invocation);
  EXPECT_EQ(result.invocation->server.display, "unix:///run/vigil/vigil.sock");
  EXPECT_EQ(result.invocation->server.unixPath, "/run/vigil/vigil.sock");
  EXPECT_EQ(result.invocation->timeout, 5s);

  env.server = "tcp://127.0.0.1:4245";
  result = parseCommandLine({"status"}, out, err, env);
  ASSERT_TRUE(result.invocation);
  EXPECT_EQ(result.invocation->server.target, "127.0.0.1:4245");
  EXPECT_TRUE(result.invocation->server.unixPath.empty());

  // Global flags work before or after the command.
  result =
      parseCommandLine({"status", "--server", "/tmp/a.sock", "--timeout", "250ms"}, out, err, env);
  ASSERT_TRUE(result.invocation);
  EXPECT_EQ(result.invocation->server.target, "unix:///tmp/a.sock");
  EXPECT_EQ(result.invocation->timeout, 250ms);
}

TEST(cliParse, BadFlagsExitTwoWithOneClearMessage) {
  struct Case {
    std::vector<std::string> args;
    std::string message;
  };
  const std::vector<Case> cases = {
      {{"events", "--type", "fork"}, "--type: fork not in {exec,exit,policy,drop,oom}"},
      {{"events", "--type", "exec,bogus"}, "bogus"},
      {{"events", "--since", "yesterday"}, "--since: expected a duration"},
      {{"events", "--since", "5"}, "--since"},
      {{"events", "--last", "-1"}, "--last: expected a whole number"},
      {{"events", "--last", "ten"}, "--last"},
      {{"events", "-o", "xml"}, "--output: xml not in"},
      {{"status", "-o", "table"}, "--output: table not in"},
      {{"events", "--pid", "abc"}, "--pid: expected a process id"},
      {{"events", "--pid", "0"}, "--pid"},
      {{"events", "--binary", "curl"}, "--binary: expected an absolute path"},
      {{"events", "--pod", "A/b"}, "--pod: expected NAMESPACE/POD or POD, got 'A/b'"},
      {{"events", "--namespace", "x y"}, "--namespace: expected a Kubernetes namespace"},
      {{"events", "--bogus"}, "--bogus"},
      {{"--timeout", "0s", "status"}, "--timeout"},
      {{"frobnicate"}, "frobnicate"},
      {{}, "A command (status, events, observe, traffic, top or policy) is required"},
  };
  for (const auto& c : cases) {
    std::ostringstream out;
    std::ostringstream err;
    EXPECT_EQ(run(c.args, out, err, testEnvironment()), 2) << c.message;
    EXPECT_NE(err.str().find(c.message), std::string::npos) << err.str();
    EXPECT_EQ(err.str().rfind("vigil: ", 0), 0u) << err.str();
    EXPECT_NE(err.str().find("--help"), std::string::npos) << err.str();
    EXPECT_EQ(out.str(), "");
  }
}

TEST(cliParse, HelpExitsZeroAndTeaches) {
  std::ostringstream out;
  std::ostringstream err;
  EXPECT_EQ(run({"--help"}, out, err, testEnvironment()), 0);
  EXPECT_NE(out.str().find("Examples:"), std::string::npos);
  EXPECT_NE(out.str().find("VIGIL_SERVER"), std::string::npos);

  out.str("");
  EXPECT_EQ(run({"events", "-h"}, out, err, testEnvironment()), 0);
  EXPECT_NE(out.str().find("--since"), std::string::npos);
  EXPECT_NE(out.str().find("snake_case"), std::string::npos);
  EXPECT_EQ(err.str(), "");
}

TEST(cliParse, ColourOnlyOnATerminalWithoutOptOut) {
  EXPECT_TRUE(shouldUseColor(false, false, true));
  EXPECT_FALSE(shouldUseColor(false, false, false));
  EXPECT_FALSE(shouldUseColor(true, false, true));
  EXPECT_FALSE(shouldUseColor(false, true, true));

  auto color = [](const std::vector<std::string>& args, const Environment& env) {
    std::ostringstream out;
    std::ostringstream err;
    ParseResult result = parseCommandLine(args, out, err, env);
    EXPECT_TRUE(result.invocation);
    return result.invocation && result.invocation->color;
  };
  Environment env = testEnvironment();
  EXPECT_FALSE(color({"events"}, env));
  env.stdoutIsTty = true;
  EXPECT_TRUE(color({"events"}, env));
  EXPECT_FALSE(color({"--no-color", "events"}, env));
  env.noColor = true;
  EXPECT_FALSE(color({"events"}, env));
}

// ---- Time parsing and small formatters --------------------------------------------------------

TEST(cliTime, Durations) {
  EXPECT_EQ(parseDuration("30s"), 30s);
  EXPECT_EQ(parseDuration("250ms"), 250ms);
  EXPECT_EQ(parseDuration("1.5s"), 1500ms);
  EXPECT_EQ(parseDuration("2h30m"), 150min);
  EXPECT_EQ(parseDuration("1d"), 24h);
  for (const char* bad : {"", "5", "s", "-5m", "5 m", "5x", "1.2.3s", "m5", "99999999999d"}) {
    EXPECT_FALSE(parseDuration(bad).has_value()) << bad;
  }
}

TEST(cliFormat, SmallPieces) {
  EXPECT_EQ(formatTimestamp(timestamp("2026-11-25T19:44:15.123999Z")), "2026-11-25T19:44:15.123Z");
  EXPECT_EQ(formatDuration(std::chrono::nanoseconds(850'000)), "850us");
  EXPECT_EQ(formatDuration(120ms), "120ms");
  EXPECT_EQ(formatDuration(1200ms), "1.2s");
  EXPECT_EQ(formatDuration(184s), "3m4s");
  EXPECT_EQ(formatDuration(125min), "2h5m");
  EXPECT_EQ(formatDuration(76h), "3d4h");
  EXPECT_EQ(signalName(9), "SIGKILL");
  EXPECT_EQ(signalName(15), "SIGTERM");
  EXPECT_EQ(signalName(70), "SIG70");
  EXPECT_EQ(quoteArg("-s"), "-s");
  EXPECT_EQ(quoteArg("a b"), "'a b'");
  EXPECT_EQ(quoteArg("it's"), "'it'\\''s'");
  EXPECT_EQ(quoteArg(""), "''");
  EXPECT_EQ(quoteArg("\x1b[31mred"), "'\\x1b[31mred'");
}

// ---- Event formatting -------------------------------------------------------------------------

TEST(cliFormat, CompactExec) {
  EXPECT_EQ(formatCompact(execEvent(), false),
            "2026-11-25T19:44:15.123Z exec  pid=1234 uid=0 /usr/bin/curl -s http://x  cwd=/root"
            "  parent=bash(1200)");
}

TEST(cliFormat, CompactExecScriptTruncatedAndQuoted) {
  v1::Event event = execEvent();
  auto* process = event.mutable_exec()->mutable_process();
  process->set_binary("/usr/bin/python3.11");
  process->set_script("/root/deploy.py");
  process->set_interpreter("/usr/bin/env python3");
  process->set_uid(1000);
  process->set_euid(0);
  process->clear_args();
  process->add_args("/root/deploy.py");
  process->add_args("--msg");
  process->add_args("hello world");
  process->set_args_truncated(true);
  std::string line = formatCompact(event, false);
  EXPECT_NE(line.find("uid=1000 euid=0 /root/deploy.py --msg 'hello world' …[truncated]"),
            std::string::npos)
      << line;
  EXPECT_NE(line.find("interp=/usr/bin/env python3"), std::string::npos) << line;
}

TEST(cliFormat, CompactExit) {
  EXPECT_EQ(formatCompact(exitEvent(0, 0), false),
            "2026-11-25T19:44:16.323Z exit  pid=1234 /usr/bin/curl code=0 lifetime=1.2s");
  EXPECT_EQ(formatCompact(exitEvent(3, 0), false),
            "2026-11-25T19:44:16.323Z exit  pid=1234 /usr/bin/curl code=3 lifetime=1.2s");
  v1::Event killed = exitEvent(0, 9);
  EXPECT_EQ(formatCompact(killed, false),
            "2026-11-25T19:44:16.323Z exit  pid=1234 /usr/bin/curl signal=SIGKILL lifetime=1.2s");
  v1::Event crashed = exitEvent(0, 11);
  crashed.mutable_exit()->set_core_dumped(true);
  EXPECT_NE(formatCompact(crashed, false).find("signal=SIGSEGV (core dumped)"), std::string::npos);
  // Memory at exit, when the kernel told it: the RSS only where its tracepoint saw the mm.
  v1::Event withMemory = exitEvent(0, 0);
  withMemory.mutable_exit()->set_peak_rss_bytes(8192);
  EXPECT_EQ(formatCompact(withMemory, false),
            "2026-11-25T19:44:16.323Z exit  pid=1234 /usr/bin/curl code=0 lifetime=1.2s peak=8192");
  withMemory.mutable_exit()->set_rss_bytes(4096);
  EXPECT_EQ(formatCompact(withMemory, false),
            "2026-11-25T19:44:16.323Z exit  pid=1234 /usr/bin/curl code=0 lifetime=1.2s rss=4096 "
            "peak=8192");
}

TEST(cliFormat, CompactLost) {
  EXPECT_EQ(formatCompact(lostEvent("kernel", 42), false),
            "2026-11-25T19:44:17.000Z !! 42 events lost (kernel ring buffer full)");
  v1::Event client = lostEvent("client", 1);
  client.mutable_lost()->set_lost_type(v1::EVENT_TYPE_EXEC);
  EXPECT_EQ(formatCompact(client, false),
            "2026-11-25T19:44:17.000Z !! 1 exec event lost (this client read too slowly)");
}

TEST(cliFormat, ColourIsAnsiOnlyWhenAsked) {
  for (const v1::Event& event : {execEvent(), exitEvent(0, 9), lostEvent("kernel", 1)}) {
    EXPECT_EQ(formatCompact(event, false).find('\x1b'), std::string::npos);
    EXPECT_NE(formatCompact(event, true).find("\x1b["), std::string::npos);
  }
  // Control characters from the traced process never reach the terminal raw.
  v1::Event event = execEvent();
  event.mutable_exec()->mutable_process()->set_cwd("/tmp/\x1b]0;pwned\x07");
  EXPECT_EQ(formatCompact(event, false).find('\x1b'), std::string::npos);
}

TEST(cliFormat, JsonIsOneRoundTrippingObjectPerLine) {
  for (const v1::Event& event : {execEvent(), exitEvent(0, 0), lostEvent("kernel", 42)}) {
    std::string json = formatJson(event);
    EXPECT_EQ(json.find('\n'), std::string::npos);
    v1::Event parsed;
    ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(json, &parsed).ok()) << json;
    EXPECT_TRUE(google::protobuf::util::MessageDifferencer::Equals(parsed, event)) << json;
  }
  std::string exitJson = formatJson(exitEvent(0, 0));
  EXPECT_NE(exitJson.find(R"("exit_code":0)"), std::string::npos) << exitJson;
  EXPECT_NE(exitJson.find(R"("type":"EVENT_TYPE_EXIT")"), std::string::npos) << exitJson;
  std::string lostJson = formatJson(lostEvent("client", 42));
  EXPECT_NE(lostJson.find(R"("lost":{"source":"client","count":"42")"), std::string::npos)
      << lostJson;
}

TEST(cliFormat, PrinterWritesLostEventsInEveryFormat) {
  for (EventFormat format : {EventFormat::kCompact, EventFormat::kJson, EventFormat::kTable}) {
    for (bool streaming : {false, true}) {
      std::ostringstream out;
      EventPrinter printer(out, format, false, streaming);
      printer.print(execEvent());
      printer.print(lostEvent("kernel", 42));
      printer.finish();
      std::string text = out.str();
      bool lostShown = text.find("42 events lost") != std::string::npos ||
                       text.find(R"("count":"42")") != std::string::npos;
      EXPECT_TRUE(lostShown) << text;
    }
  }
}

TEST(cliFormat, TableAlignsColumns) {
  std::ostringstream out;
  EventPrinter printer(out, EventFormat::kTable, false, false);
  printer.print(execEvent());
  printer.print(exitEvent(0, 9));
  printer.print(lostEvent("client", 7));
  printer.finish();

  std::vector<std::string> lines;
  std::istringstream in(out.str());
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  ASSERT_EQ(lines.size(), 4u) << out.str();
  EXPECT_EQ(lines[0].rfind("TIME", 0), 0u);
  auto column = lines[0].find("BINARY");
  ASSERT_NE(column, std::string::npos);
  EXPECT_EQ(lines[1].find("/usr/bin/curl"), column) << out.str();
  EXPECT_EQ(lines[2].find("/usr/bin/curl"), column) << out.str();
  auto result = lines[0].find("ARGS/RESULT");
  EXPECT_EQ(lines[1].substr(result), "-s http://x");
  EXPECT_EQ(lines[2].substr(result), "signal=SIGKILL lifetime=1.2s");
  EXPECT_NE(lines[3].find("lost"), std::string::npos);
  EXPECT_NE(lines[3].find("!! 7 events lost (this client read too slowly)"), std::string::npos);
  for (const auto& line : lines) EXPECT_NE(line.back(), ' ') << line;
}

// ---- Policy events ----------------------------------------------------------------------------

TEST(cliFormat, CompactPolicyKillAndAudit) {
  EXPECT_EQ(formatCompact(policyEvent("kill", "sigkill"), false),
            "2026-11-25T20:00:00.000Z KILL  pid=1234 uid=1000 /tmp/x/evil --arg  policy=deny-tmp "
            "rule=no-tmp (sigkill)  parent=bash(1200)");
  EXPECT_EQ(formatCompact(policyEvent("kill", "lsm"), false),
            "2026-11-25T20:00:00.000Z KILL  pid=1234 uid=1000 /tmp/x/evil --arg  policy=deny-tmp "
            "rule=no-tmp (lsm)  parent=bash(1200)");
  EXPECT_EQ(formatCompact(policyEvent("audit", ""), false),
            "2026-11-25T20:00:00.000Z AUDIT pid=1234 uid=1000 /tmp/x/evil --arg  policy=deny-tmp "
            "rule=no-tmp  parent=bash(1200)");
  // An action this client does not know yet is still shown, under a neutral label.
  EXPECT_EQ(formatCompact(policyEvent("quarantine", ""), false),
            "2026-11-25T20:00:00.000Z POLICY pid=1234 uid=1000 /tmp/x/evil --arg  "
            "policy=deny-tmp rule=no-tmp action=quarantine  parent=bash(1200)");
}

TEST(cliFormat, CompactPolicyShowsEuidScriptAndPpid) {
  v1::Event event = policyEvent("audit", "");
  event.clear_ancestors();
  auto* process = event.mutable_policy()->mutable_process();
  process->set_euid(0);
  process->set_binary("/usr/bin/bash");
  process->set_script("/tmp/x/run.sh");
  process->set_interpreter("/bin/sh");
  std::string line = formatCompact(event, false);
  EXPECT_NE(line.find("AUDIT pid=1234 uid=1000 euid=0 /tmp/x/run.sh --arg  interp=/bin/sh  "
                      "policy=deny-tmp rule=no-tmp  ppid=1200"),
            std::string::npos)
      << line;
}

TEST(cliFormat, PolicyColoursKillRedAndAuditYellow) {
  std::string kill = formatCompact(policyEvent("kill", "sigkill"), true);
  EXPECT_NE(kill.find("\x1b[1;31mKILL\x1b[0m"), std::string::npos) << kill;
  EXPECT_NE(kill.find("\x1b[1;31mpolicy=deny-tmp rule=no-tmp (sigkill)\x1b[0m"), std::string::npos)
      << kill;
  std::string audit = formatCompact(policyEvent("audit", ""), true);
  EXPECT_NE(audit.find("\x1b[33mAUDIT\x1b[0m"), std::string::npos) << audit;
  EXPECT_EQ(formatCompact(policyEvent("kill", "sigkill"), false).find('\x1b'), std::string::npos);

  // Names from the agent never drive the terminal.
  v1::Event event = policyEvent("kill", "sigkill");
  event.mutable_policy()->set_rule("r\x1b[2J");
  EXPECT_EQ(formatCompact(event, false).find('\x1b'), std::string::npos);
}

TEST(cliFormat, PolicyJsonRoundTrips) {
  v1::Event event = policyEvent("kill", "lsm");
  std::string json = formatJson(event);
  EXPECT_EQ(json.find('\n'), std::string::npos);
  EXPECT_NE(json.find(R"("type":"EVENT_TYPE_POLICY")"), std::string::npos) << json;
  EXPECT_NE(json.find(R"("policy":"deny-tmp","rule":"no-tmp","action":"kill","mechanism":"lsm")"),
            std::string::npos)
      << json;
  EXPECT_NE(json.find(R"("policy":{"process":{)"), std::string::npos) << json;
  v1::Event parsed;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(json, &parsed).ok()) << json;
  EXPECT_TRUE(google::protobuf::util::MessageDifferencer::Equals(parsed, event)) << json;
}

TEST(cliFormat, PolicyTableRows) {
  std::vector<std::string> kill = eventTableRow(policyEvent("kill", "sigkill"));
  EXPECT_EQ(kill, (std::vector<std::string>{"2026-11-25T20:00:00.000Z", "kill", "1234", "1200",
                                            "1000", "/tmp/x/evil",
                                            "--arg  policy=deny-tmp rule=no-tmp (sigkill)"}));
  std::vector<std::string> audit = eventTableRow(policyEvent("audit", ""));
  EXPECT_EQ(audit[1], "audit");
  EXPECT_EQ(audit[6], "--arg  policy=deny-tmp rule=no-tmp");

  for (bool streaming : {false, true}) {
    std::ostringstream out;
    EventPrinter printer(out, EventFormat::kTable, false, streaming);
    printer.print(execEvent());
    printer.print(policyEvent("kill", "sigkill"));
    printer.print(policyEvent("audit", ""));
    printer.finish();
    std::vector<std::string> lines;
    std::istringstream in(out.str());
    for (std::string line; std::getline(in, line);) lines.push_back(line);
    ASSERT_EQ(lines.size(), 4u) << out.str();
    // "audit" fits the TYPE column, also with the fixed widths of a stream.
    auto column = lines[0].find("PID");
    for (std::size_t i = 1; i < lines.size(); ++i) {
      EXPECT_EQ(lines[i].find("1234"), column) << out.str();
    }
    EXPECT_NE(lines[2].find(" kill "), std::string::npos) << out.str();
    EXPECT_NE(lines[3].find(" audit "), std::string::npos) << out.str();
    EXPECT_NE(lines[2].find("policy=deny-tmp rule=no-tmp (sigkill)"), std::string::npos);
  }

  std::ostringstream colored;
  EventPrinter printer(colored, EventFormat::kTable, true, true);
  printer.print(policyEvent("kill", "sigkill"));
  printer.print(policyEvent("audit", ""));
  EXPECT_NE(colored.str().find("\x1b[1;31mkill\x1b[0m"), std::string::npos) << colored.str();
  EXPECT_NE(colored.str().find("\x1b[33maudit\x1b[0m"), std::string::npos) << colored.str();
}

TEST(cliFormat, PolicyEventsInEveryFormatAndLostPolicyEvents) {
  for (EventFormat format : {EventFormat::kCompact, EventFormat::kJson, EventFormat::kTable}) {
    std::ostringstream out;
    EventPrinter printer(out, format, false, false);
    printer.print(policyEvent("kill", "sigkill"));
    printer.finish();
    EXPECT_NE(out.str().find("deny-tmp"), std::string::npos) << out.str();
    EXPECT_NE(out.str().find("no-tmp"), std::string::npos) << out.str();
  }
  v1::Event lost = lostEvent("kernel", 3);
  lost.mutable_lost()->set_lost_type(v1::EVENT_TYPE_POLICY);
  EXPECT_EQ(formatCompact(lost, false),
            "2026-11-25T19:44:17.000Z !! 3 policy events lost (kernel ring buffer full)");
  EXPECT_EQ(eventTypeName(v1::EVENT_TYPE_POLICY), "policy");
}

// ---- Drop events (XDP) ------------------------------------------------------------------------

TEST(cliFormat, CompactDropLabelsEachVerdict) {
  EXPECT_EQ(formatCompact(dropEvent("dropped"), false),
            "2026-11-25T21:00:00.000Z DROP  tcp 203.0.113.9:40001 -> 10.0.0.1:22 on eth0 len=74  "
            "policy=edge rule=no-ssh");
  EXPECT_EQ(formatCompact(dropEvent("audit"), false),
            "2026-11-25T21:00:00.000Z AUDIT tcp 203.0.113.9:40001 -> 10.0.0.1:22 on eth0 len=74  "
            "policy=edge rule=no-ssh");
  EXPECT_EQ(formatCompact(dropEvent("rate-limited"), false),
            "2026-11-25T21:00:00.000Z RATE  tcp 203.0.113.9:40001 -> 10.0.0.1:22 on eth0 len=74  "
            "policy=edge rule=no-ssh");
  EXPECT_EQ(formatCompact(dropEvent("rate-limit-audit"), false),
            "2026-11-25T21:00:00.000Z RATE-AUDIT tcp 203.0.113.9:40001 -> 10.0.0.1:22 on eth0 "
            "len=74  policy=edge rule=no-ssh");
  // A verdict this client does not know is still shown, marked as such.
  EXPECT_EQ(formatCompact(dropEvent("redirected"), false)
                .rfind("2026-11-25T21:00:00.000Z DROP? tcp 203.0.113.9:40001", 0),
            0u)
      << formatCompact(dropEvent("redirected"), false);
}

TEST(cliFormat, CompactDropIpv6FlagsAndSuppressed) {
  EXPECT_EQ(formatCompact(ipv6FragmentDrop(), false),
            "2026-11-25T21:00:00.000Z RATE-AUDIT udp [2001:db8::1] -> [2001:db8:ffff::2] on veth1 "
            "len=1514 [fragment] [no L4 header] [vlan]  policy=edge rule=flood suppressed=12");
  v1::Event withPorts = ipv6FragmentDrop();
  auto* drop = withPorts.mutable_drop();
  drop->set_source_port(5353);
  drop->set_destination_port(53);
  drop->set_fragment(false);
  drop->set_l4_missing(false);
  drop->set_vlan(false);
  drop->set_suppressed(0);
  EXPECT_EQ(formatCompact(withPorts, false),
            "2026-11-25T21:00:00.000Z RATE-AUDIT udp [2001:db8::1]:5353 -> [2001:db8:ffff::2]:53 "
            "on veth1 len=1514  policy=edge rule=flood");
  // A rule that is gone since the packet was seen.
  v1::Event orphan = dropEvent("dropped");
  orphan.mutable_drop()->clear_policy();
  orphan.mutable_drop()->set_rule("slot 9 (rule since removed)");
  orphan.mutable_drop()->set_interface("if7");
  const std::string line = formatCompact(orphan, false);
  EXPECT_NE(line.find(" on if7 len=74 "), std::string::npos) << line;
  EXPECT_NE(line.find("rule=slot 9 (rule since removed)"), std::string::npos) << line;
}

TEST(cliFormat, DropColoursAndSanitising) {
  EXPECT_NE(formatCompact(dropEvent("dropped"), true).find("\x1b[1;31mDROP\x1b[0m"),
            std::string::npos);
  EXPECT_NE(formatCompact(dropEvent("rate-limited"), true).find("\x1b[1;31mRATE\x1b[0m"),
            std::string::npos);
  EXPECT_NE(formatCompact(dropEvent("audit"), true).find("\x1b[33mAUDIT\x1b[0m"),
            std::string::npos);
  EXPECT_NE(formatCompact(dropEvent("rate-limit-audit"), true).find("\x1b[33mRATE-AUDIT\x1b[0m"),
            std::string::npos);
  EXPECT_EQ(formatCompact(dropEvent("dropped"), false).find('\x1b'), std::string::npos);

  // Names from the agent never drive the terminal.
  v1::Event event = dropEvent("dropped");
  event.mutable_drop()->set_interface("eth0\x1b[2J");
  event.mutable_drop()->set_rule("r\x1b]0;x\x07");
  event.mutable_drop()->set_source_ip("\x1b[31m");
  EXPECT_EQ(formatCompact(event, false).find('\x1b'), std::string::npos);
  for (const auto& cell : eventTableRow(event)) {
    EXPECT_EQ(cell.find('\x1b'), std::string::npos) << cell;
  }
}

TEST(cliFormat, DropTableRows) {
  EXPECT_EQ(eventTableRow(dropEvent("dropped")),
            (std::vector<std::string>{
                "2026-11-25T21:00:00.000Z", "drop", "-", "-", "-", "eth0",
                "tcp 203.0.113.9:40001 -> 10.0.0.1:22 on eth0 len=74  policy=edge rule=no-ssh"}));
  EXPECT_EQ(eventTableRow(dropEvent("audit"))[1], "audit");
  EXPECT_EQ(eventTableRow(dropEvent("rate-limited"))[1], "rate");
  EXPECT_EQ(eventTableRow(ipv6FragmentDrop())[1], "rate-audit");
  EXPECT_EQ(eventTableRow(ipv6FragmentDrop())[5], "veth1");
  EXPECT_EQ(eventTableRow(ipv6FragmentDrop())[6],
            "udp [2001:db8::1] -> [2001:db8:ffff::2] on veth1 len=1514 [fragment] [no L4 header] "
            "[vlan]  policy=edge rule=flood suppressed=12");

  for (bool streaming : {false, true}) {
    std::ostringstream out;
    EventPrinter printer(out, EventFormat::kTable, false, streaming);
    printer.print(execEvent());
    printer.print(dropEvent("dropped"));
    printer.print(dropEvent("audit"));
    printer.finish();
    std::vector<std::string> lines;
    std::istringstream in(out.str());
    for (std::string line; std::getline(in, line);) lines.push_back(line);
    ASSERT_EQ(lines.size(), 3u + 1) << out.str();
    const auto binary = lines[0].find("BINARY");
    EXPECT_EQ(lines[2].find("eth0"), binary) << out.str();
    EXPECT_EQ(lines[3].find("eth0"), binary) << out.str();
    EXPECT_NE(lines[2].find(" drop "), std::string::npos) << out.str();
    EXPECT_NE(lines[3].find(" audit "), std::string::npos) << out.str();
    EXPECT_EQ(lines[2].substr(lines[0].find("ARGS/RESULT")),
              "tcp 203.0.113.9:40001 -> 10.0.0.1:22 on eth0 len=74  policy=edge rule=no-ssh");
    for (const auto& line : lines) EXPECT_NE(line.back(), ' ') << line;
  }
}

TEST(cliFormat, DropJsonHasADropObjectAndRoundTrips) {
  for (const v1::Event& event : {dropEvent("dropped"), ipv6FragmentDrop()}) {
    std::string json = formatJson(event);
    EXPECT_EQ(json.find('\n'), std::string::npos);
    v1::Event parsed;
    ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(json, &parsed).ok()) << json;
    EXPECT_TRUE(google::protobuf::util::MessageDifferencer::Equals(parsed, event)) << json;
  }
  std::string json = formatJson(dropEvent("dropped"));
  EXPECT_NE(json.find(R"("type":"EVENT_TYPE_DROP")"), std::string::npos) << json;
  EXPECT_NE(json.find(R"("drop":{"policy":"edge","rule":"no-ssh","verdict":"dropped",)"
                      R"("interface":"eth0","ifindex":2,"protocol":"tcp",)"
                      R"("source_ip":"203.0.113.9","destination_ip":"10.0.0.1",)"
                      R"("source_port":40001,"destination_port":22,"length":74,)"
                      R"("fragment":false,"l4_missing":false,"vlan":false,"suppressed":"0"})"),
            std::string::npos)
      << json;
  std::string v6 = formatJson(ipv6FragmentDrop());
  EXPECT_NE(v6.find(R"("fragment":true,"l4_missing":true,"vlan":true,"suppressed":"12")"),
            std::string::npos)
      << v6;
}

TEST(cliFormat, DropEventsInEveryFormatAndLostDropEvents) {
  for (EventFormat format : {EventFormat::kCompact, EventFormat::kJson, EventFormat::kTable}) {
    for (bool streaming : {false, true}) {
      std::ostringstream out;
      EventPrinter printer(out, format, false, streaming);
      printer.print(dropEvent("dropped"));
      printer.finish();
      EXPECT_NE(out.str().find("no-ssh"), std::string::npos) << out.str();
      EXPECT_NE(out.str().find("203.0.113.9"), std::string::npos) << out.str();
    }
  }
  v1::Event lost = lostEvent("kernel", 5);
  lost.mutable_lost()->set_lost_type(v1::EVENT_TYPE_DROP);
  EXPECT_EQ(formatCompact(lost, false),
            "2026-11-25T19:44:17.000Z !! 5 drop events lost (kernel ring buffer full)");
  lost.mutable_lost()->set_count(1);
  lost.mutable_lost()->set_source("client");
  EXPECT_EQ(eventTableRow(lost),
            (std::vector<std::string>{"2026-11-25T19:44:17.000Z", "lost", "-", "-", "-", "-",
                                      "!! 1 drop event lost (this client read too slowly)"}));
  EXPECT_EQ(eventTypeName(v1::EVENT_TYPE_DROP), "drop");
}

// ---- Policy list and apply rendering ---------------------------------------------------------

v1::ListPoliciesResponse sampleList() {
  v1::ListPoliciesResponse list;
  list.set_enforcement("sigkill (bpf_lsm unavailable: bpf not listed in /sys/kernel/security/lsm)");
  auto* deny = list.add_policies();
  deny->set_name("deny-tmp");
  deny->set_source("api");
  deny->set_mode("enforce");
  deny->set_state("enforcing");
  auto* rule = deny->add_rules();
  rule->set_name("no-tmp");
  rule->set_action("kill");
  rule->set_mode("enforce");
  rule->set_hits(12);
  rule = deny->add_rules();
  rule->set_name("curl-watch");
  rule->set_action("audit");
  rule->set_mode("audit");
  rule->set_hits(0);
  auto* legacy = list.add_policies();
  legacy->set_name("legacy");
  legacy->set_source("file:/etc/vigil/policies/legacy.yaml");
  legacy->set_mode("audit");
  legacy->set_state("error");
  legacy->set_error(
      "/etc/vigil/policies/legacy.yaml:7:9: unknown key 'binarys'\n"
      "/etc/vigil/policies/legacy.yaml:9:15: bad action");
  rule = legacy->add_rules();
  rule->set_name("old-rule");
  rule->set_action("kill");
  rule->set_mode("audit");
  rule->set_hits(3);
  return list;
}

TEST(cliPolicy, ListTable) {
  EXPECT_EQ(formatPolicyList(sampleList(), false),
            "Enforcement: sigkill (bpf_lsm unavailable: bpf not listed in "
            "/sys/kernel/security/lsm)\n"
            "\n"
            "POLICY    SOURCE                                MODE     STATE      RULES  HITS\n"
            "deny-tmp  api                                   enforce  enforcing  2      12\n"
            "  no-tmp      kill   enforce  hits=12\n"
            "  curl-watch  audit  audit    hits=0\n"
            "legacy    file:/etc/vigil/policies/legacy.yaml  audit    error      1      3\n"
            "  error: /etc/vigil/policies/legacy.yaml:7:9: unknown key 'binarys'\n"
            "  error: /etc/vigil/policies/legacy.yaml:9:15: bad action\n"
            "  old-rule    kill   audit    hits=3\n");
}

TEST(cliPolicy, ListEmptyAndColoured) {
  v1::ListPoliciesResponse empty;
  empty.set_enforcement("lsm (bpf_lsm available)");
  EXPECT_EQ(formatPolicyList(empty, false),
            "Enforcement: lsm (bpf_lsm available)\n\n"
            "No policies. Apply one with 'vigil policy apply -f FILE'.\n");

  std::string colored = formatPolicyList(sampleList(), true);
  EXPECT_NE(colored.find("\x1b[32menforcing\x1b[0m"), std::string::npos) << colored;
  EXPECT_NE(colored.find("\x1b[1;31merror\x1b[0m"), std::string::npos) << colored;
  EXPECT_NE(colored.find("\x1b[31mkill\x1b[0m"), std::string::npos) << colored;
  EXPECT_EQ(formatPolicyList(sampleList(), false).find('\x1b'), std::string::npos);
}

TEST(cliPolicy, AppliedLines) {
  v1::ApplyPolicyResponse applied;
  *applied.add_policies() = sampleList().policies(0);
  auto* one = applied.add_policies();
  one->set_name("audit-curl");
  one->set_state("audit");
  one->add_rules()->set_name("r");
  EXPECT_EQ(formatPolicyApplied(applied, false),
            "deny-tmp: applied (enforcing, 2 rules)\n"
            "audit-curl: applied (audit, 1 rule)\n");

  *applied.add_policies() = sampleList().policies(1);
  EXPECT_NE(formatPolicyApplied(applied, false)
                .find("legacy: not applied (error, 1 rule)\n"
                      "  error: /etc/vigil/policies/legacy.yaml:7:9: unknown key 'binarys'\n"),
            std::string::npos)
      << formatPolicyApplied(applied, false);
}

// One policy with XDP rules only, and one from an older agent whose exec rule has no kind.
v1::ListPoliciesResponse xdpList() {
  v1::ListPoliciesResponse list;
  list.set_enforcement("lsm (test)");
  auto* edge = list.add_policies();
  edge->set_name("edge");
  edge->set_source("api");
  edge->set_mode("enforce");
  edge->set_state("enforcing");
  auto* rule = edge->add_rules();
  rule->set_name("scanners");
  rule->set_kind("xdp");
  rule->set_action("drop");
  rule->set_mode("enforce");
  rule->set_packets(1000);
  rule->set_bytes(64000);
  rule = edge->add_rules();
  rule->set_name("flood");
  rule->set_kind("xdp");
  rule->set_action("drop");
  rule->set_mode("audit");
  rule->set_rate_limited(true);
  rule->set_packets(5000);
  rule->set_bytes(700000);
  rule->set_limited_packets(1200);
  rule->set_limited_bytes(96000);
  rule = edge->add_rules();
  rule->set_name("monitoring");
  rule->set_kind("xdp");
  rule->set_action("pass");
  rule->set_mode("enforce");
  // Not rate limited: over-limit counts are not shown even when set.
  rule->set_limited_packets(3);
  auto* old = list.add_policies();
  old->set_name("legacy-exec");
  old->set_source("api");
  old->set_mode("enforce");
  old->set_state("enforcing");
  rule = old->add_rules();
  rule->set_name("no-shell");
  rule->set_action("kill");
  rule->set_mode("enforce");
  rule->set_hits(4);
  return list;
}

TEST(cliPolicy, ListXdpRulesWithPacketCounters) {
  EXPECT_EQ(formatPolicyList(xdpList(), false),
            "Enforcement: lsm (test)\n"
            "\n"
            "POLICY       SOURCE  MODE     STATE      RULES  HITS\n"
            "edge         api     enforce  enforcing  3      6000\n"
            "  scanners    drop  enforce  packets=1000 bytes=64000\n"
            "  flood       drop  audit    packets=5000 bytes=700000 over-limit=1200\n"
            "  monitoring  pass  enforce  packets=0 bytes=0\n"
            "legacy-exec  api     enforce  enforcing  1      4\n"
            "  no-shell    kill  enforce  hits=4\n");
  std::string colored = formatPolicyList(xdpList(), true);
  EXPECT_NE(colored.find("\x1b[31mdrop\x1b[0m"), std::string::npos) << colored;
  EXPECT_EQ(colored.find("\x1b[31mpass"), std::string::npos) << colored;
}

// ---- Status rendering -------------------------------------------------------------------------

v1::GetStatusResponse sampleStatus() {
  v1::GetStatusResponse status;
  status.set_version("0.1.0");
  status.set_node_name("node1");
  status.set_kernel("6.1.0-27-amd64");
  *status.mutable_uptime() = TimeUtil::SecondsToDuration(7500);
  auto* ring = status.add_capabilities();
  ring->set_name("ring_buffer");
  ring->set_available(true);
  ring->set_in_use(true);
  ring->set_detail("BPF_MAP_TYPE_RINGBUF probe ok");
  auto* lsm = status.add_capabilities();
  lsm->set_name("bpf_lsm");
  lsm->set_detail("bpf not listed in /sys/kernel/security/lsm");
  auto* prog = status.add_programs();
  prog->set_name("vigil_exec");
  prog->set_type("tracing/tp_btf");
  prog->set_attach_to("sched_process_exec");
  prog->set_id(42);
  auto* counter = status.add_events();
  counter->set_type(v1::EVENT_TYPE_EXEC);
  counter->set_seen(1000);
  counter->set_lost_kernel(3);
  counter->set_malformed(1);
  auto* stat = status.add_kernel_stats();
  stat->set_name("ringbuf_reserve_failed");
  stat->set_value(3);
  status.set_clients(2);
  status.set_client_events_dropped(17);
  status.set_event_ring_size(1200);
  status.set_event_ring_capacity(65536);
  status.set_process_table_size(340);
  status.set_process_table_capacity(32768);
  status.set_process_table_evictions(5);
  return status;
}

TEST(cliStatus, TextShowsEverySection) {
  std::string text = formatStatusText(sampleStatus(), false);
  for (const char* expected :
       {"Version:        0.1.0", "Node:           node1", "Kernel:         6.1.0-27-amd64",
        "Uptime:         2h5m", "BPF_MAP_TYPE_RINGBUF probe ok",
        "bpf not listed in /sys/kernel/security/lsm", "Programs (1 attached):", "vigil_exec",
        "tracing/tp_btf", "sched_process_exec", "ringbuf_reserve_failed",
        "2 connected, 17 events dropped", "1200 / 65536", "340 / 32768", "5 evictions"}) {
    EXPECT_NE(text.find(expected), std::string::npos) << expected << "\n" << text;
  }
  // The capability row says whether it is available and in use, then why.
  std::istringstream in(text);
  bool found = false;
  for (std::string line; std::getline(in, line);) {
    if (line.find("bpf_lsm") == std::string::npos) continue;
    found = true;
    EXPECT_NE(line.find("no"), std::string::npos) << line;
    EXPECT_LT(line.find("no"), line.find("bpf not listed")) << line;
  }
  EXPECT_TRUE(found);
  EXPECT_EQ(text.find('\x1b'), std::string::npos);
  EXPECT_NE(formatStatusText(sampleStatus(), true).find("\x1b["), std::string::npos);
  EXPECT_EQ(text.find("JSON export"), std::string::npos);  // none configured
}

TEST(cliStatus, TextShowsTheJsonExport) {
  auto status = sampleStatus();
  status.mutable_export_()->set_path("/var/log/vigil/events.json");
  status.mutable_export_()->set_lines(1234);
  status.mutable_export_()->set_rotations(3);
  std::string text = formatStatusText(status, false);
  EXPECT_NE(text.find("JSON export:    /var/log/vigil/events.json: 1234 lines, 3 rotations\n"),
            std::string::npos)
      << text;
  status.mutable_export_()->set_write_errors(2);
  status.mutable_export_()->set_last_error("write /var/log/vigil/events.json: No space left");
  text = formatStatusText(status, false);
  EXPECT_NE(text.find("3 rotations, 2 failed writes (write /var/log/vigil/events.json: No space "
                      "left)"),
            std::string::npos)
      << text;
}

TEST(cliStatus, TextShowsTheXdpSection) {
  v1::GetStatusResponse status = sampleStatus();
  auto* xdp = status.mutable_xdp();
  xdp->set_state("enforcing");
  xdp->set_pin_dir("/sys/fs/bpf/vigil");
  xdp->set_program_id(77);
  auto* eth0 = xdp->add_interfaces();
  eth0->set_name("eth0");
  eth0->set_ifindex(2);
  eth0->set_mode("native");
  eth0->set_link_id(12);
  auto* veth = xdp->add_interfaces();
  veth->set_name("veth1");
  veth->set_ifindex(5);
  veth->set_mode("generic");
  veth->set_link_id(13);
  auto* rule = xdp->add_rules();
  rule->set_policy("edge");
  rule->set_rule("scanners");
  rule->set_packets(1000);
  rule->set_bytes(64000);
  rule = xdp->add_rules();
  rule->set_policy("edge");
  rule->set_rule("flood");
  rule->set_packets(5000);
  rule->set_bytes(700000);
  rule->set_limited_packets(1200);
  rule->set_limited_bytes(96000);
  for (const auto& [name, value] : std::vector<std::pair<std::string, std::uint64_t>>{
           {"xdp_not_ip", 0}, {"xdp_fragments", 3}, {"xdp_records_lost_ringbuf_full", 1}}) {
    auto* stat = xdp->add_stats();
    stat->set_name(name);
    stat->set_value(value);
  }
  xdp->set_records_received(40);
  xdp->set_records_malformed(1);

  std::string text = formatStatusText(status, false);
  EXPECT_NE(text.find("\n\n"
                      "XDP filter: enforcing (program id 77)\n"
                      "  Pinned under: /sys/fs/bpf/vigil\n"
                      "  INTERFACE  IFINDEX  MODE     LINK\n"
                      "  eth0       2        native   12\n"
                      "  veth1      5        generic  13\n"
                      "  POLICY  RULE      PACKETS  BYTES   OVER LIMIT\n"
                      "  edge    scanners  1000     64000   0\n"
                      "  edge    flood     5000     700000  1200\n"
                      "  Counters:     xdp_fragments=3, xdp_records_lost_ringbuf_full=1\n"
                      "  Drop records: 40 received, 1 malformed\n"
                      "\n"
                      "Clients:"),
            std::string::npos)
      << text;
  EXPECT_EQ(text.find("xdp_not_ip"), std::string::npos) << "zero counters are left out";
  std::string colored = formatStatusText(status, true);
  EXPECT_NE(colored.find("\x1b[33mgeneric\x1b[0m"), std::string::npos) << colored;
  EXPECT_NE(colored.find("\x1b[32mnative\x1b[0m"), std::string::npos) << colored;

  // No rules: no tables, and counters that are all zero say so.
  v1::GetStatusResponse idle = sampleStatus();
  idle.mutable_xdp()->set_state("idle");
  idle.mutable_xdp()->set_pin_dir("/sys/fs/bpf/vigil");
  idle.mutable_xdp()->add_stats()->set_name("xdp_not_ip");
  EXPECT_NE(formatStatusText(idle, false)
                .find("\n\nXDP filter: idle\n"
                      "  Pinned under: /sys/fs/bpf/vigil\n"
                      "  Counters:     all zero\n"
                      "  Drop records: 0 received, 0 malformed\n\n"),
            std::string::npos)
      << formatStatusText(idle, false);

  // An agent without XDP status (an older one) shows no XDP section.
  EXPECT_EQ(formatStatusText(sampleStatus(), false).find("XDP"), std::string::npos);
}

// ---- Whole commands ---------------------------------------------------------------------------

class TempDir {
 public:
  TempDir() {
    std::string pattern = (std::filesystem::temp_directory_path() / "vigil_cli_test.XXXXXX");
    path_ = ::mkdtemp(pattern.data());
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  std::string socket() const { return (path_ / "vigil.sock").string(); }
  std::string path() const { return path_.string(); }
  // Writes `name` in the directory and returns its path.
  std::string write(const std::string& name, const std::string& content) const {
    std::string file = (path_ / name).string();
    std::ofstream(file, std::ios::binary) << content;
    return file;
  }

 private:
  std::filesystem::path path_;
};

TEST(cliCommand, AgentNotRunningNamesTheSocket) {
  TempDir dir;
  std::string server = "unix://" + dir.socket();
  for (const auto& command : std::vector<std::string>{"status", "events"}) {
    std::ostringstream out;
    std::ostringstream err;
    EXPECT_EQ(run({"--server", server, command}, out, err, testEnvironment()), 1);
    EXPECT_EQ(err.str().rfind("vigil: cannot reach the agent at " + server + ": ", 0), 0u)
        << err.str();
    EXPECT_NE(err.str().find("Is vigil-agent running?"), std::string::npos) << err.str();
    EXPECT_EQ(out.str(), "");
  }

  // The same through VIGIL_SERVER.
  Environment env = testEnvironment();
  env.server = server;
  std::ostringstream out;
  std::ostringstream err;
  EXPECT_EQ(run({"status"}, out, err, env), 1);
  EXPECT_NE(err.str().find(dir.socket()), std::string::npos) << err.str();
}

TEST(cliCommand, ConnectionRefusedIsUnreachable) {
  // A socket file that nobody listens on: connect() gets ECONNREFUSED inside gRPC.
  TempDir dir;
  int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
  ASSERT_GE(fd, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::string path = dir.socket();
  ASSERT_LT(path.size(), sizeof(addr.sun_path));
  path.copy(addr.sun_path, path.size());
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);

  std::ostringstream out;
  std::ostringstream err;
  auto started = std::chrono::steady_clock::now();
  EXPECT_EQ(run({"--server", "unix://" + path, "events"}, out, err, testEnvironment()), 1);
  EXPECT_LT(std::chrono::steady_clock::now() - started, 5s) << "should fail fast";
  EXPECT_NE(err.str().find("cannot reach the agent at unix://" + path), std::string::npos)
      << err.str();
  ::close(fd);
}

TEST(cliPolicy, ReadInputFromFileOrStdin) {
  TempDir dir;
  std::istringstream unused;
  std::string error;
  std::string file = dir.write("p.yaml", "kind: Policy\n");
  auto input = readPolicyInput(file, unused, error);
  ASSERT_TRUE(input) << error;
  EXPECT_EQ(input->text, "kind: Policy\n");
  EXPECT_EQ(input->sourceName, file);

  std::istringstream stdinText("a: b\n");
  input = readPolicyInput("-", stdinText, error);
  ASSERT_TRUE(input) << error;
  EXPECT_EQ(input->text, "a: b\n");
  EXPECT_EQ(input->sourceName, "<stdin>");

  // Exactly 1 MiB is fine; one byte more is not.
  std::string limit(1 << 20, '#');
  input = readPolicyInput(dir.write("big.yaml", limit), unused, error);
  ASSERT_TRUE(input) << error;
  EXPECT_EQ(input->text.size(), limit.size());
  std::istringstream bigStdin(limit + "#");
  EXPECT_FALSE(readPolicyInput("-", bigStdin, error));
  EXPECT_EQ(error, "<stdin> is larger than 1 MiB, the most a policy file may hold");
  std::string tooBig = dir.write("too-big.yaml", limit + "#");
  EXPECT_FALSE(readPolicyInput(tooBig, unused, error));
  EXPECT_EQ(error, tooBig + " is larger than 1 MiB, the most a policy file may hold");
}

TEST(cliPolicy, UnreadableInputNamesTheFile) {
  TempDir dir;
  std::istringstream unused;
  std::string error;
  std::string missing = dir.path() + "/missing.yaml";
  EXPECT_FALSE(readPolicyInput(missing, unused, error));
  EXPECT_EQ(error, "cannot read " + missing + ": No such file or directory");
  EXPECT_FALSE(readPolicyInput(dir.path(), unused, error));
  EXPECT_EQ(error, "cannot read " + dir.path() + ": Is a directory");
}

// A stand-in agent: records requests and answers with canned events, status and policies.
class FakeAgent final : public v1::Vigil::Service {
 public:
  grpc::Status GetEvents(grpc::ServerContext* context, const v1::GetEventsRequest* request,
                         grpc::ServerWriter<v1::GetEventsResponse>* writer) override {
    {
      std::lock_guard lock(mutex_);
      lastRequest_ = *request;
    }
    for (const auto& event : events_) {
      v1::GetEventsResponse response;
      *response.mutable_event() = event;
      writer->Write(response);
    }
    if (request->follow()) {
      while (!context->IsCancelled()) std::this_thread::sleep_for(10ms);
      return grpc::Status::CANCELLED;
    }
    return grpc::Status::OK;
  }

  grpc::Status GetStatus(grpc::ServerContext*, const v1::GetStatusRequest*,
                         v1::GetStatusResponse* response) override {
    if (!statusError_.ok()) return statusError_;
    *response = sampleStatus();
    return grpc::Status::OK;
  }

  grpc::Status ApplyPolicy(grpc::ServerContext*, const v1::ApplyPolicyRequest* request,
                           v1::ApplyPolicyResponse* response) override {
    {
      std::lock_guard lock(mutex_);
      applyRequests_.push_back(*request);
    }
    if (!policyError_.ok()) return policyError_;
    *response = applyResponse_;
    return grpc::Status::OK;
  }

  grpc::Status DeletePolicy(grpc::ServerContext*, const v1::DeletePolicyRequest* request,
                            v1::DeletePolicyResponse*) override {
    {
      std::lock_guard lock(mutex_);
      deleted_.push_back(request->name());
    }
    return policyError_;
  }

  grpc::Status ListPolicies(grpc::ServerContext*, const v1::ListPoliciesRequest*,
                            v1::ListPoliciesResponse* response) override {
    if (!policyError_.ok()) return policyError_;
    *response = sampleList();
    return grpc::Status::OK;
  }

  v1::GetEventsRequest lastRequest() {
    std::lock_guard lock(mutex_);
    return lastRequest_;
  }
  std::vector<v1::ApplyPolicyRequest> applyRequests() {
    std::lock_guard lock(mutex_);
    return applyRequests_;
  }
  std::vector<std::string> deleted() {
    std::lock_guard lock(mutex_);
    return deleted_;
  }

  // Set before the calls that use them.
  std::vector<v1::Event> events_;
  grpc::Status statusError_ = grpc::Status::OK;
  grpc::Status policyError_ = grpc::Status::OK;
  v1::ApplyPolicyResponse applyResponse_;

 private:
  std::mutex mutex_;
  v1::GetEventsRequest lastRequest_;                   // Guarded by mutex_.
  std::vector<v1::ApplyPolicyRequest> applyRequests_;  // Guarded by mutex_.
  std::vector<std::string> deleted_;                   // Guarded by mutex_.
};

// FakeAgent served on a unix socket in a temporary directory.
class AgentServer {
 public:
  AgentServer() {
    agent_.events_ = {execEvent(), lostEvent("kernel", 42), exitEvent(0, 0)};
    grpc::ServerBuilder builder;
    builder.AddListeningPort(address(), grpc::InsecureServerCredentials());
    builder.RegisterService(&agent_);
    server_ = builder.BuildAndStart();
    if (server_ == nullptr) ADD_FAILURE() << "cannot serve on " << address();
  }
  ~AgentServer() {
    if (server_ != nullptr) server_->Shutdown(std::chrono::system_clock::now() + 1s);
  }
  std::string address() const { return "unix://" + dir_.socket(); }
  std::string directory() const { return dir_.path(); }
  FakeAgent& agent() { return agent_; }

 private:
  TempDir dir_;
  FakeAgent agent_;
  std::unique_ptr<grpc::Server> server_;
};

class CliAgentTest : public testing::Test {
 protected:
  // Runs vigil against the fake agent; `in` is its standard input.
  int vigil(std::vector<std::string> args, std::istream* in = nullptr) {
    out_.str("");
    err_.str("");
    args.insert(args.begin(), {"--server", server_.address()});
    Environment env = testEnvironment();
    std::istringstream empty;
    env.in = in != nullptr ? in : &empty;
    return run(args, out_, err_, env);
  }
  FakeAgent& agent() { return server_.agent(); }

  AgentServer server_;
  std::ostringstream out_;
  std::ostringstream err_;
};
using cliAgent = CliAgentTest;

TEST_F(cliAgent, EventsSendsTheRequestAndPrintsEveryEvent) {
  ASSERT_EQ(vigil({"events", "--type", "exec", "--pid", "1234", "--binary", "/usr/bin/"}), 0)
      << err_.str();
  v1::GetEventsRequest request = agent().lastRequest();
  EXPECT_EQ(request.last(), 20u);
  ASSERT_EQ(request.types_size(), 1);
  EXPECT_EQ(request.types(0), v1::EVENT_TYPE_EXEC);
  ASSERT_EQ(request.pids_size(), 1);
  EXPECT_EQ(request.pids(0), 1234u);
  ASSERT_EQ(request.binaries_size(), 1);
  EXPECT_EQ(request.binaries(0), "/usr/bin/");

  EXPECT_EQ(out_.str(), formatCompact(execEvent(), false) + "\n" +
                            formatCompact(lostEvent("kernel", 42), false) + "\n" +
                            formatCompact(exitEvent(0, 0), false) + "\n");
  EXPECT_EQ(err_.str(), "");
}

TEST_F(cliAgent, EventsJsonIsOneObjectPerLine) {
  ASSERT_EQ(vigil({"events", "-o", "json"}), 0) << err_.str();
  std::istringstream in(out_.str());
  int lines = 0;
  for (std::string line; std::getline(in, line); ++lines) {
    v1::Event event;
    EXPECT_TRUE(google::protobuf::util::JsonStringToMessage(line, &event).ok()) << line;
  }
  EXPECT_EQ(lines, 3);
}

TEST_F(cliAgent, StatusTextAndJson) {
  ASSERT_EQ(vigil({"status"}), 0) << err_.str();
  EXPECT_NE(out_.str().find("bpf not listed in /sys/kernel/security/lsm"), std::string::npos);

  ASSERT_EQ(vigil({"status", "-o", "json"}), 0) << err_.str();
  EXPECT_EQ(out_.str(), formatJson(sampleStatus()) + "\n");
}

TEST_F(cliAgent, OtherErrorsPrintCodeAndMessage) {
  agent().statusError_ = grpc::Status(grpc::StatusCode::PERMISSION_DENIED, "not for you");
  EXPECT_EQ(vigil({"status"}), 1);
  EXPECT_EQ(err_.str(), "vigil: GetStatus failed: PERMISSION_DENIED: not for you\n");
  EXPECT_EQ(out_.str(), "");
}

TEST_F(cliAgent, EventsTypePolicy) {
  agent().events_ = {policyEvent("kill", "sigkill"), policyEvent("audit", "")};
  ASSERT_EQ(vigil({"events", "--type", "policy"}), 0) << err_.str();
  v1::GetEventsRequest request = agent().lastRequest();
  ASSERT_EQ(request.types_size(), 1);
  EXPECT_EQ(request.types(0), v1::EVENT_TYPE_POLICY);
  EXPECT_EQ(out_.str(), formatCompact(policyEvent("kill", "sigkill"), false) + "\n" +
                            formatCompact(policyEvent("audit", ""), false) + "\n");
}

TEST_F(cliAgent, EventsTypeDrop) {
  agent().events_ = {dropEvent("dropped"), ipv6FragmentDrop()};
  ASSERT_EQ(vigil({"events", "--type", "drop"}), 0) << err_.str();
  v1::GetEventsRequest request = agent().lastRequest();
  ASSERT_EQ(request.types_size(), 1);
  EXPECT_EQ(request.types(0), v1::EVENT_TYPE_DROP);
  EXPECT_EQ(out_.str(), formatCompact(dropEvent("dropped"), false) + "\n" +
                            formatCompact(ipv6FragmentDrop(), false) + "\n");

  ASSERT_EQ(vigil({"events", "--type", "drop", "-o", "json"}), 0) << err_.str();
  std::istringstream in(out_.str());
  int lines = 0;
  for (std::string line; std::getline(in, line); ++lines) {
    v1::Event event;
    EXPECT_TRUE(google::protobuf::util::JsonStringToMessage(line, &event).ok()) << line;
    EXPECT_TRUE(event.has_drop()) << line;
  }
  EXPECT_EQ(lines, 2);
}

// A valid policy file for the fake agent (which does not parse it).
constexpr const char* kSomeYaml = "apiVersion: vigil.dev/v1alpha1\nkind: Policy\n";

v1::ApplyPolicyResponse sampleApplied() {
  v1::ApplyPolicyResponse applied;
  *applied.add_policies() = sampleList().policies(0);
  return applied;
}

TEST_F(cliAgent, PolicyApplySendsTheFileAndPrintsWhatIsInForce) {
  TempDir dir;
  std::string file = dir.write("deny-tmp.yaml", kSomeYaml);
  agent().applyResponse_ = sampleApplied();
  agent().applyResponse_.add_warnings(file + ":12:9: /opt/tool does not exist on this node");
  ASSERT_EQ(vigil({"policy", "apply", "-f", file}), 0) << err_.str();
  auto requests = agent().applyRequests();
  ASSERT_EQ(requests.size(), 1u);
  EXPECT_EQ(requests[0].yaml(), kSomeYaml);
  EXPECT_EQ(requests[0].source_name(), file);
  EXPECT_EQ(out_.str(), "deny-tmp: applied (enforcing, 2 rules)\n");
  EXPECT_EQ(err_.str(), "warning: " + file + ":12:9: /opt/tool does not exist on this node\n");
}

TEST_F(cliAgent, PolicyApplyFromStdin) {
  agent().applyResponse_ = sampleApplied();
  std::istringstream in(kSomeYaml);
  ASSERT_EQ(vigil({"policy", "apply", "-f", "-"}, &in), 0) << err_.str();
  auto requests = agent().applyRequests();
  ASSERT_EQ(requests.size(), 1u);
  EXPECT_EQ(requests[0].yaml(), kSomeYaml);
  EXPECT_EQ(requests[0].source_name(), "<stdin>");
  EXPECT_EQ(out_.str(), "deny-tmp: applied (enforcing, 2 rules)\n");
}

TEST_F(cliAgent, PolicyApplyRejectedPrintsTheAgentsLines) {
  TempDir dir;
  std::string file = dir.write("bad.yaml", kSomeYaml);
  agent().policyError_ =
      grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, file + ":3:5: unknown key 'kinds'\n" + file +
                                                           ":9:15: action must be kill or audit");
  EXPECT_EQ(vigil({"policy", "apply", "-f", file}), 1);
  EXPECT_EQ(err_.str(),
            file + ":3:5: unknown key 'kinds'\n" + file + ":9:15: action must be kill or audit\n");
  EXPECT_EQ(out_.str(), "");

  agent().policyError_ = grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED, "policy map full");
  EXPECT_EQ(vigil({"policy", "apply", "-f", file}), 1);
  EXPECT_EQ(err_.str(), "vigil: ApplyPolicy failed: RESOURCE_EXHAUSTED: policy map full\n");

  // A policy the agent reports in state "error" is a failure too.
  agent().policyError_ = grpc::Status::OK;
  agent().applyResponse_.Clear();
  *agent().applyResponse_.add_policies() = sampleList().policies(1);
  EXPECT_EQ(vigil({"policy", "apply", "-f", file}), 1);
  EXPECT_NE(out_.str().find("legacy: not applied (error"), std::string::npos) << out_.str();
}

TEST_F(cliAgent, PolicyApplyUnreadableFileNeverReachesTheAgent) {
  TempDir dir;
  std::string missing = dir.path() + "/nope.yaml";
  EXPECT_EQ(vigil({"policy", "apply", "-f", missing}), 1);
  EXPECT_EQ(err_.str(), "vigil: cannot read " + missing + ": No such file or directory\n");
  EXPECT_EQ(out_.str(), "");
  EXPECT_TRUE(agent().applyRequests().empty());

  std::string big = dir.write("big.yaml", std::string((1 << 20) + 1, '#'));
  EXPECT_EQ(vigil({"policy", "apply", "-f", big}), 1);
  EXPECT_NE(err_.str().find(big + " is larger than 1 MiB"), std::string::npos) << err_.str();
  EXPECT_TRUE(agent().applyRequests().empty());
}

TEST_F(cliAgent, PolicyDelete) {
  ASSERT_EQ(vigil({"policy", "delete", "deny-tmp"}), 0) << err_.str();
  EXPECT_EQ(agent().deleted(), std::vector<std::string>{"deny-tmp"});
  EXPECT_EQ(out_.str(), "deny-tmp: deleted\n");
  EXPECT_EQ(err_.str(), "");

  agent().policyError_ = grpc::Status(grpc::StatusCode::NOT_FOUND, "policy \"ghost\" not found");
  EXPECT_EQ(vigil({"policy", "delete", "ghost"}), 1);
  EXPECT_EQ(err_.str(), "vigil: no policy named ghost\n");
  EXPECT_EQ(out_.str(), "");

  agent().policyError_ =
      grpc::Status(grpc::StatusCode::FAILED_PRECONDITION,
                   "policy legacy comes from /etc/vigil/policies/legacy.yaml: remove the file");
  EXPECT_EQ(vigil({"policy", "delete", "legacy"}), 1);
  EXPECT_EQ(err_.str(),
            "vigil: policy legacy comes from /etc/vigil/policies/legacy.yaml: remove the file\n");
}

TEST_F(cliAgent, PolicyListTableAndJson) {
  ASSERT_EQ(vigil({"policy", "list"}), 0) << err_.str();
  EXPECT_EQ(out_.str(), formatPolicyList(sampleList(), false));
  EXPECT_EQ(err_.str(), "");

  ASSERT_EQ(vigil({"policy", "list", "-o", "json"}), 0) << err_.str();
  EXPECT_EQ(out_.str(), formatJson(sampleList()) + "\n");
  v1::ListPoliciesResponse parsed;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(out_.str(), &parsed).ok());
  EXPECT_TRUE(google::protobuf::util::MessageDifferencer::Equals(parsed, sampleList()));
  EXPECT_NE(out_.str().find(R"("hits":"12")"), std::string::npos) << out_.str();
}

TEST_F(cliAgent, PolicyCallsToAnAgentWithoutPolicies) {
  agent().policyError_ = grpc::Status(grpc::StatusCode::UNIMPLEMENTED, "");
  EXPECT_EQ(vigil({"policy", "list"}), 1);
  EXPECT_EQ(err_.str(), "vigil: the agent at " + server_.address() +
                            " does not support policies (ListPolicies: UNIMPLEMENTED); it is "
                            "older than this vigil\n");

  agent().policyError_ = grpc::Status(grpc::StatusCode::PERMISSION_DENIED, "root only");
  EXPECT_EQ(vigil({"policy", "list"}), 1);
  EXPECT_EQ(err_.str(), "vigil: ListPolicies failed: PERMISSION_DENIED: root only\n");
}

TEST(cliCommand, PolicyCommandsNeedAReachableAgent) {
  TempDir dir;
  std::string server = "unix://" + dir.socket();
  std::string file = dir.write("p.yaml", kSomeYaml);
  for (const auto& args : std::vector<std::vector<std::string>>{
           {"policy", "list"}, {"policy", "delete", "x"}, {"policy", "apply", "-f", file}}) {
    std::vector<std::string> full = {"--server", server};
    full.insert(full.end(), args.begin(), args.end());
    std::ostringstream out;
    std::ostringstream err;
    EXPECT_EQ(run(full, out, err, testEnvironment()), 1) << args[1];
    EXPECT_EQ(err.str().rfind("vigil: cannot reach the agent at " + server + ": ", 0), 0u)
        << err.str();
    EXPECT_EQ(out.str(), "");
  }
}

// ---- Offline validation with the agent's policy parser ----------------------------------------
// These need the policy library (agent/src/policy/document.cpp) to work, not only to link.

constexpr const char* kGoodPolicies = R"(apiVersion: vigil.dev/v1alpha1
kind: Policy
metadata:
  name: deny-tmp
spec:
  mode: enforce
  exec:
    - name: no-tmp
      action: kill
      match:
        pathPrefixes: [/tmp/, /dev/shm/]
    - name: no-curl-as-root
      action: kill
      match:
        binaries: [/bin/sh]  # validation resolves binaries: use files every host has
        uids: [0]
---
apiVersion: vigil.dev/v1alpha1
kind: Policy
metadata:
  name: watch-shells
spec:
  mode: audit
  exec:
    - name: shells-from-web
      action: audit
      match:
        parentBinaries: [/bin/true]
)";

// Line 9 holds an unknown action.
constexpr const char* kBadPolicy = R"(apiVersion: vigil.dev/v1alpha1
kind: Policy
metadata:
  name: deny-tmp
spec:
  mode: enforce
  exec:
    - name: no-tmp
      action: block
      match:
        pathPrefixes: [/tmp/]
)";

// Runs `vigil ARGS` with an agent address where nothing listens: validation must not need one.
int runOffline(std::vector<std::string> args, std::ostream& out, std::ostream& err,
               std::istream* in = nullptr) {
  TempDir nowhere;
  args.insert(args.begin(), {"--server", "unix://" + nowhere.socket()});
  Environment env = testEnvironment();
  env.in = in;
  return run(args, out, err, env);
}

TEST(cliValidate, GoodFileOfflineExitsZero) {
  TempDir dir;
  std::string file = dir.write("good.yaml", kGoodPolicies);
  std::ostringstream out;
  std::ostringstream err;
  EXPECT_EQ(runOffline({"policy", "validate", "-f", file}, out, err), 0) << err.str();
  EXPECT_EQ(out.str(),
            "deny-tmp: valid (enforce, 2 exec rules)\n"
            "watch-shells: valid (audit, 1 exec rule)\n");
  EXPECT_EQ(err.str(), "");
}

TEST(cliValidate, BadFileNamesFileLineAndColumnAndExitsOne) {
  TempDir dir;
  std::string file = dir.write("bad.yaml", kBadPolicy);
  std::ostringstream out;
  std::ostringstream err;
  EXPECT_EQ(runOffline({"policy", "validate", "-f", file}, out, err), 1);
  EXPECT_EQ(out.str(), "");
  std::istringstream lines(err.str());
  int count = 0;
  for (std::string line; std::getline(lines, line); ++count) {
    EXPECT_TRUE(std::regex_search(line, std::regex("^" + file + R"(:\d+:\d+: .+)"))) << line;
  }
  EXPECT_GE(count, 1);
  EXPECT_EQ(err.str().rfind(file + ":9:", 0), 0u) << err.str();
  EXPECT_NE(err.str().find("block"), std::string::npos) << err.str();
}

TEST(cliValidate, StdinIsCalledStdin) {
  std::istringstream good(kGoodPolicies);
  std::ostringstream out;
  std::ostringstream err;
  EXPECT_EQ(runOffline({"policy", "validate", "-f", "-"}, out, err, &good), 0) << err.str();
  EXPECT_NE(out.str().find("deny-tmp: valid"), std::string::npos) << out.str();

  std::istringstream bad(kBadPolicy);
  out.str("");
  EXPECT_EQ(runOffline({"policy", "validate", "-f", "-"}, out, err, &bad), 1);
  EXPECT_EQ(err.str().rfind("<stdin>:9:", 0), 0u) << err.str();
}

TEST(cliValidate, UnreadableOrEmptyFileExitsOne) {
  TempDir dir;
  std::ostringstream out;
  std::ostringstream err;
  std::string missing = dir.path() + "/missing.yaml";
  EXPECT_EQ(runOffline({"policy", "validate", "-f", missing}, out, err), 1);
  EXPECT_EQ(err.str(), "vigil: cannot read " + missing + ": No such file or directory\n");

  // Nothing to apply is not a valid policy file, whether the parser calls it an error or not.
  err.str("");
  std::string empty = dir.write("empty.yaml", "# nothing yet\n");
  EXPECT_EQ(runOffline({"policy", "validate", "-f", empty}, out, err), 1);
  EXPECT_NE(err.str().find(empty), std::string::npos) << err.str();
  EXPECT_EQ(out.str(), "");
}

TEST(cliCommand, CtrlCEndsFollowQuietlyWithZero) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  // In a child process of its own, so that the signal mask and the SIGINT stay there.
  // The child ends with _Exit (no destructors run), so it removes its temp dir itself first.
  auto followUntilInterrupted = [] {
    // First, so that SIGINT is blocked in every thread started below, gRPC's included.
    Interrupt interrupt;
    int code = -1;
    bool allPrinted = false;
    {
      AgentServer server;
      const std::string dir = server.directory();
      std::atomic<bool> done{false};
      std::thread ctrlC([&done, dir] {
        std::this_thread::sleep_for(300ms);
        ::kill(::getpid(), SIGINT);
        // If the signal did not end the stream, fail instead of hanging.
        for (int i = 0; i < 500 && !done.load(); ++i) std::this_thread::sleep_for(10ms);
        if (!done.load()) {
          std::error_code ec;
          std::filesystem::remove_all(dir, ec);
          std::_Exit(99);
        }
      });
      Environment env = testEnvironment();
      env.interrupt = &interrupt;
      std::ostringstream out;
      std::ostringstream err;
      code = run({"--server", server.address(), "events", "-f"}, out, err, env);
      done.store(true);
      ctrlC.join();
      allPrinted =
          code == 0 && err.str().empty() && out.str().find("exit  pid=1234") != std::string::npos;
    }  // the fake agent stops and its temp dir goes
    std::_Exit(allPrinted ? 0 : 10 + code);
  };
  EXPECT_EXIT(followUntilInterrupted(), testing::ExitedWithCode(0), "");
}

}  // namespace
}  // namespace vigil::cli
