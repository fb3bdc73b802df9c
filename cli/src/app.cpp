#include "cli/src/app.hpp"

#include "events/workload_match.hpp"

#include <grpcpp/client_context.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cstdint>
#include <cstdlib>
#include <iostream>

#include "cli/src/flag_values.hpp"
#include "cli/src/time_parse.hpp"
#include "vigil/v1/vigil.grpc.pb.h"

namespace vigil::cli {
namespace {

constexpr const char* kAppFooter = R"(
Examples:
  vigil status                               agent health, capabilities and counters
  vigil events                               the last 20 process events
  vigil events -f --type exec                new execs as they happen (Ctrl-C to stop)
  vigil events --since 10m --binary /usr/bin/curl
  vigil events -f --binary '/tmp/*' -o json | jq .exec.process.args
  vigil events -f --type policy              processes killed or audited by a policy
  vigil observe                              the last 20 network flows and drops
  vigil observe -f --type drop               dropped packets as they happen, with the reason
  vigil observe -f --port 443 --not --ip 10.0.0.0/8
  vigil traffic                              packets and bytes per cgroup, in and out
  vigil top                                  memory per process, refreshing (--by pod)
  vigil policy apply -f deny-tmp.yaml        enforce the policies in a file
  vigil policy list                          policies, their state and rule hit counts

The agent address comes from --server, else $VIGIL_SERVER, else unix:///run/vigil/vigil.sock.
Colour is used only on a terminal, and never with --no-color or when NO_COLOR is set.
Exit status: 0 success, 1 agent unreachable or call failed, 2 bad flags or values.
Run 'vigil <command> --help' for the flags of one command.)";

constexpr const char* kEventsFooter = R"(
Filters: values of one flag are OR'ed (repeat the flag, or for --type and --pid use commas);
different flags are AND'ed. Notices of lost events pass every filter and are always shown.

History: without --last, --since or --follow you get the last 20 matching events. --follow
alone shows only new events; add --last N or --since to start with some history.

Output (-o):
  compact  one line per event (default); times are UTC
  json     one object per line in the protobuf JSON mapping: proto field names (snake_case),
           zero values included, enums as names, 64-bit integers as strings
  table    aligned columns; without --follow it is printed when the stream ends
A line starting with "!!" (type "lost" in the table, EVENT_TYPE_LOST in json) says how many
events were lost and where: in the kernel ring buffer, or because this client read too slowly.
Policy events (--type policy) start with KILL when a rule killed the process, with how
(sigkill, or lsm when the exec was denied), and AUDIT when the match was only reported; the
table shows them as type kill or audit, json as EVENT_TYPE_POLICY with a "policy" object.

Examples:
  vigil events --last 100 --type exit
  vigil events -f --pid 1234,1240
  vigil events --since 2026-11-25T19:00:00Z --binary /usr/sbin/ --binary '/opt/app/bin/*'
  vigil events -f -o table
  vigil events -f --type policy
  vigil events -f --type drop)";

constexpr const char* kPolicyFooter = R"(
A policy is a YAML document (kind: Policy) whose exec rules kill or audit the programs they
match, and whose XDP rules drop, pass or rate-limit packets on network interfaces. A file may
hold several documents separated by '---'; apply takes all of them or none, and when it
returns the rules are in force in the kernel. FILE '-' reads standard input.

  apiVersion: vigil.dev/v1alpha1
  kind: Policy
  metadata:
    name: deny-tmp
  spec:
    mode: enforce          # or audit: report matches, kill nothing
    exec:
      - name: no-tmp
        action: kill       # or audit
        match:             # lists are OR'ed inside, AND'ed with each other
          pathPrefixes: [/tmp/, /dev/shm/]
          # also: binaries, parentBinaries, uids, cgroupPathPrefixes
    xdp:
      interfaces: [eth0]   # omit: every interface but loopback
      rules:               # longest prefix wins, then the first written
        - name: drop-scanners
          action: drop     # or pass
          match:
            sourceCIDRs: [203.0.113.0/24, "2001:db8::/32"]
            # also: destinationCIDRs, protocol (tcp|udp|icmp|icmpv6), destinationPorts
        - name: limit-dns
          match: {protocol: udp, destinationPorts: [53]}
          rateLimit: {packetsPerSecond: 1000, burst: 200, perSourcePrefix: {ipv4: 32, ipv6: 64}}

validate needs no agent: it runs the agent's own parser and prints every problem as
file:line:col: message. apply has the agent check the file again and also resolve the binaries
it names on the agent's node.

Exit status: 0 success; 1 invalid policy, unreadable file, agent unreachable or call failed;
2 bad flags or values.

Examples:
  vigil policy validate -f deny-tmp.yaml        check a file offline, e.g. in CI
  vigil policy apply -f deny-tmp.yaml           validate it and enforce it on this node
  render-policies | vigil policy apply -f -     the same from standard input
  vigil policy list                             policies, their state and rule hit counts
  vigil policy list -o json | jq '.policies[] | {name, state}'
  vigil policy delete deny-tmp                  stop enforcing a policy applied with apply
  vigil events -f --type policy                 kills and audits as they happen)";

constexpr const char* kPolicyDeleteFooter = R"(
Only policies applied with 'vigil policy apply' can be deleted here; for a policy that comes
from a file in the agent's policy directory, remove or edit the file instead.

Examples:
  vigil policy delete deny-tmp
  vigil policy list)";

constexpr const char* kPolicyListFooter = R"(
The table has one row per policy: its SOURCE ("api" for 'vigil policy apply', or the file in
the agent's policy directory), its MODE, its STATE (enforcing, audit, or error: the newest
version was rejected and the previous one, if any, stays in force), and RULES and HITS (execs
that matched plus packets XDP rules decided, from the kernel's counters). Each rule follows on
an indented line:
  name  action  mode  hits=N                                          (exec rules)
  name  action  mode  packets=N bytes=N [over-limit=N]                 (XDP rules)
The first line says how the kernel kills: sigkill, or lsm when BPF LSM denies the exec.

Examples:
  vigil policy list
  vigil policy list -o json | jq '.policies[].rules[] | select(.hits != "0")')";

constexpr const char* kStatusFooter = R"(
Examples:
  vigil status
  vigil status -o json | jq .capabilities)";

// The raw strings from the command line, before checking.
struct Flags {
  std::string server;
  std::string timeout = "5s";
  bool noColor = false;
  std::string statusOutput = "text";
  std::string eventsOutput = "compact";
  bool follow = false;
  std::string last;
  std::vector<std::string> types;
  std::vector<std::string> pids;
  std::vector<std::string> binaries;
  std::vector<std::string> namespaces;
  std::vector<std::string> pods;
  std::string since;
  std::string policyFile;
  std::string policyName;
  std::string policyOutput = "table";
};

v1::GetEventsRequest buildEventsRequest(const Flags& flags, bool lastGiven, bool sinceGiven,
                                        std::chrono::system_clock::time_point now) {
  v1::GetEventsRequest request;
  request.set_follow(flags.follow);
  if (lastGiven) {
    request.set_last(countFlag("--last", flags.last));
  } else if (!sinceGiven && !flags.follow) {
    request.set_last(kDefaultLast);
  }
  for (const auto& type : flags.types) {
    request.add_types(type == "exec"   ? v1::EVENT_TYPE_EXEC
                      : type == "exit" ? v1::EVENT_TYPE_EXIT
                      : type == "drop" ? v1::EVENT_TYPE_DROP
                      : type == "oom"  ? v1::EVENT_TYPE_OOM_KILL
                                       : v1::EVENT_TYPE_POLICY);
  }
  for (const auto& text : flags.pids) {
    auto pid = parseUint32(text);
    if (!pid || *pid == 0)
      throw CLI::ValidationError("--pid", "expected a process id, got '" + text + "'");
    request.add_pids(*pid);
  }
  for (const auto& binary : flags.binaries) {
    if (binary.empty() || (binary.front() != '/' && binary != "*")) {
      throw CLI::ValidationError("--binary",
                                 "expected an absolute path such as /usr/bin/curl, or a prefix "
                                 "ending in '/' or '*', got '" +
                                     binary + "'");
    }
    request.add_binaries(binary);
  }
  for (const auto& ns : flags.namespaces) {
    std::string why;
    if (!events::parseNamespace(ns, why))
      throw CLI::ValidationError("--namespace", "expected a Kubernetes namespace, got '" + ns + "'");
    request.add_namespaces(ns);
  }
  for (const auto& pod : flags.pods) {
    std::string why;
    if (!events::PodMatch::parse(pod, why))
      throw CLI::ValidationError("--pod", "expected NAMESPACE/POD or POD, got '" + pod + "'");
    request.add_pods(pod);
  }
  if (sinceGiven) *request.mutable_since() = timeFlag("--since", flags.since, now);
  return request;
}

EventFormat eventFormat(const std::string& name) {
  if (name == "json") return EventFormat::kJson;
  if (name == "table") return EventFormat::kTable;
  return EventFormat::kCompact;
}

int runStatus(const Invocation& invocation, const StatusCommand& command, std::ostream& out,
              std::ostream& err, const Environment& env) {
  auto stub = v1::Vigil::NewStub(makeChannel(invocation.server));
  UnaryCall call(invocation.timeout, env.interrupt);
  v1::GetStatusResponse response;
  grpc::Status status = stub->GetStatus(call.context(), v1::GetStatusRequest{}, &response);
  if (call.finish()) return 130;
  if (!status.ok()) return reportRpcError(err, "GetStatus", invocation.server, status);
  if (command.format == StatusFormat::kJson) {
    out << formatJson(response) << '\n';
  } else {
    out << formatStatusText(response, invocation.color);
  }
  out.flush();
  return 0;
}

int runEvents(const Invocation& invocation, const EventsCommand& command, std::ostream& out,
              std::ostream& err, const Environment& env) {
  auto stub = v1::Vigil::NewStub(makeChannel(invocation.server));
  EventPrinter printer(out, command.format, invocation.color, command.request.follow());
  int code = streamEvents<v1::GetEventsResponse>(
      invocation.server, env.interrupt, "GetEvents",
      [&](grpc::ClientContext* context) { return stub->GetEvents(context, command.request); },
      [&](const v1::Event& event) { printer.print(event); }, err);
  printer.finish();
  return code;
}

}  // namespace

Environment processEnvironment(Interrupt* interrupt) {
  Environment env;
  if (const char* server = std::getenv("VIGIL_SERVER"); server != nullptr) env.server = server;
  env.noColor = std::getenv("NO_COLOR") != nullptr;
  env.stdoutIsTty = ::isatty(STDOUT_FILENO) == 1;
  env.now = std::chrono::system_clock::now();
  env.interrupt = interrupt;
  env.in = &std::cin;
  return env;
}

ParseResult parseCommandLine(const std::vector<std::string>& args, std::ostream& out,
                             std::ostream& err, const Environment& env) {
  Flags flags;
  flags.server = env.server.empty() ? std::string(kDefaultServer) : env.server;

  CLI::App app{
      "vigil: see the processes that start and end on this node and its network flows, as "
      "recorded by vigil-agent, and manage the policies that kill or audit them.",
      "vigil"};
  app.set_version_flag("--version", "vigil " VIGIL_VERSION, "Print the version and exit");
  app.require_subcommand(0, 1);
  app.fallthrough();
  app.footer(kAppFooter);
  app.add_option("--server", flags.server,
                 "Agent address: unix:///path, /path, host:port or tcp://host:port")
      ->type_name("ADDR")
      ->capture_default_str();
  app.add_option("--timeout", flags.timeout,
                 "Deadline for one-shot calls (status, policy): 500ms, 5s, 1m")
      ->type_name("DURATION")
      ->capture_default_str();
  app.add_flag("--no-color", flags.noColor, "Never colour the output");

  CLI::App* status =
      app.add_subcommand("status", "Show the agent's version, capabilities, programs and counters");
  status->footer(kStatusFooter);
  status->add_option("-o,--output", flags.statusOutput, "Output format: text or json")
      ->type_name("FORMAT")
      ->check(CLI::IsMember({"text", "json"}))
      ->capture_default_str();

  CLI::App* events = app.add_subcommand(
      "events", "Show process exec and exit events, policy kills and XDP drops: recent history, or live with -f");
  events->footer(kEventsFooter);
  events->add_flag("-f,--follow", flags.follow, "Keep streaming new events until Ctrl-C");
  CLI::Option* last =
      events->add_option("--last", flags.last, "Start with the N most recent matches (0: all)")
          ->type_name("N");
  events
      ->add_option("--type", flags.types,
                   "Only this event type: exec, exit, policy (kills and audits), drop "
                   "(packets XDP rules dropped, sampled) or oom (OOM kills)")
      ->type_name("TYPE")
      ->delimiter(',')
      ->allow_extra_args(false)
      ->check(CLI::IsMember({"exec", "exit", "policy", "drop", "oom"}));
  events->add_option("--pid", flags.pids, "Only events of this process id")
      ->type_name("PID")
      ->delimiter(',')
      ->allow_extra_args(false);
  events
      ->add_option("--binary", flags.binaries,
                   "Only this binary: exact path, or prefix if it ends in '/' or '*'")
      ->type_name("PATH")
      ->allow_extra_args(false);
  events
      ->add_option("--namespace", flags.namespaces,
                   "Only processes in pods of this Kubernetes namespace (with --pod: either)")
      ->type_name("NS")
      ->delimiter(',')
      ->allow_extra_args(false);
  events
      ->add_option("--pod", flags.pods,
                   "Only processes of this pod: NAMESPACE/POD, or POD in any namespace")
      ->type_name("[NS/]POD")
      ->delimiter(',')
      ->allow_extra_args(false);
  CLI::Option* since = events
                           ->add_option("--since", flags.since,
                                        "Only events after TIME: 30s, 5m, 2h ago or RFC 3339")
                           ->type_name("TIME");
  events->add_option("-o,--output", flags.eventsOutput, "Output format: compact, json or table")
      ->type_name("FORMAT")
      ->check(CLI::IsMember({"compact", "json", "table"}))
      ->capture_default_str();

  FlowCommands flows(app);
  TopCommands top(app);

  CLI::App* policy = app.add_subcommand(
      "policy", "Validate, apply, list and delete policies that kill or audit execs");
  policy->footer(kPolicyFooter);
  policy->require_subcommand(0, 1);
  CLI::App* validate = policy->add_subcommand(
      "validate", "Check policy YAML offline with the agent's parser (no agent needed)");
  validate->footer(kPolicyFooter);
  validate->add_option("-f,--file", flags.policyFile, "Policy YAML file, or - for standard input")
      ->type_name("FILE")
      ->required();
  CLI::App* apply =
      policy->add_subcommand("apply", "Validate and apply the policies in a file, all or none");
  apply->footer(kPolicyFooter);
  apply->add_option("-f,--file", flags.policyFile, "Policy YAML file, or - for standard input")
      ->type_name("FILE")
      ->required();
  CLI::App* remove = policy->add_subcommand(
      "delete", "Remove a policy that was applied with 'vigil policy apply'");
  remove->footer(kPolicyDeleteFooter);
  remove->add_option("NAME", flags.policyName, "The policy's name")->type_name("")->required();
  CLI::App* list =
      policy->add_subcommand("list", "Show the policies, their state and per-rule hit counts");
  list->footer(kPolicyListFooter);
  list->add_option("-o,--output", flags.policyOutput, "Output format: table or json")
      ->type_name("FORMAT")
      ->check(CLI::IsMember({"table", "json"}))
      ->capture_default_str();

  ParseResult result;
  try {
    std::vector<std::string> reversed(args.rbegin(), args.rend());
    app.parse(reversed);
    if (app.get_subcommands().empty()) {
      throw CLI::RequiredError("A command (status, events, observe, traffic, top or policy)");
    }
    if (policy->parsed() && policy->get_subcommands().empty()) {
      throw CLI::RequiredError("A policy command (validate, apply, list or delete)");
    }

    Invocation invocation;
    invocation.server = parseServerAddress(flags.server);
    auto timeout = parseDuration(flags.timeout);
    if (!timeout || timeout->count() <= 0) {
      throw CLI::ValidationError(
          "--timeout", "expected a duration such as 500ms, 5s or 1m, got '" + flags.timeout + "'");
    }
    invocation.timeout = *timeout;
    invocation.color = shouldUseColor(flags.noColor, env.noColor, env.stdoutIsTty);
    if (events->parsed()) {
      EventsCommand command;
      command.request = buildEventsRequest(flags, last->count() > 0, since->count() > 0, env.now);
      command.format = eventFormat(flags.eventsOutput);
      invocation.command = std::move(command);
    } else if (flows.observe()->parsed()) {
      invocation.command = flows.observeCommand(args, env.now);
    } else if (flows.traffic()->parsed()) {
      invocation.command = flows.trafficCommand();
    } else if (top.top()->parsed()) {
      invocation.command = top.command(env.stdoutIsTty);
    } else if (validate->parsed()) {
      invocation.command = PolicyValidateCommand{flags.policyFile};
    } else if (apply->parsed()) {
      invocation.command = PolicyApplyCommand{flags.policyFile};
    } else if (remove->parsed()) {
      invocation.command = PolicyDeleteCommand{flags.policyName};
    } else if (list->parsed()) {
      invocation.command = PolicyListCommand{
          flags.policyOutput == "json" ? PolicyListFormat::kJson : PolicyListFormat::kTable};
    } else {
      invocation.command =
          StatusCommand{flags.statusOutput == "json" ? StatusFormat::kJson : StatusFormat::kText};
    }
    result.invocation = std::move(invocation);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == static_cast<int>(CLI::ExitCodes::Success)) {
      result.exitCode = app.exit(e, out, err);
      return result;
    }
    // The command whose --help explains the flag: "vigil policy apply", "vigil events", ...
    std::string command = "vigil";
    for (const CLI::App* sub : std::initializer_list<const CLI::App*>{
             events, flows.observe(), flows.traffic(), top.top(), status, policy}) {
      if (sub->parsed()) command += " " + sub->get_name();
    }
    for (const CLI::App* sub : {validate, apply, remove, list}) {
      if (sub->parsed()) command += " " + sub->get_name();
    }
    err << "vigil: " << e.what() << "\nRun '" << command << " --help' for usage.\n";
    result.exitCode = 2;
  }
  return result;
}

int execute(const Invocation& invocation, std::ostream& out, std::ostream& err,
            const Environment& env) {
  std::istream& in = env.in != nullptr ? *env.in : std::cin;
  // Offline: the one command that never talks to the agent.
  if (const auto* validate = std::get_if<PolicyValidateCommand>(&invocation.command)) {
    return validatePolicies(*validate, in, out, err);
  }
  AgentCall call{invocation.server, invocation.timeout, env.interrupt, invocation.color};
  // Reads its file before it contacts the agent, so a local problem is reported as such.
  if (const auto* apply = std::get_if<PolicyApplyCommand>(&invocation.command)) {
    return applyPolicies(call, *apply, in, out, err);
  }
  if (const auto* remove = std::get_if<PolicyDeleteCommand>(&invocation.command)) {
    return deletePolicy(call, *remove, out, err);
  }
  if (const auto* list = std::get_if<PolicyListCommand>(&invocation.command)) {
    return listPolicies(call, *list, out, err);
  }
  if (std::string reason = unreachableReason(invocation.server); !reason.empty()) {
    return reportUnreachable(err, invocation.server, reason);
  }
  if (const auto* events = std::get_if<EventsCommand>(&invocation.command)) {
    return runEvents(invocation, *events, out, err, env);
  }
  if (const auto* observe = std::get_if<ObserveCommand>(&invocation.command)) {
    return runObserve(call, *observe, out, err);
  }
  if (const auto* traffic = std::get_if<TrafficCommand>(&invocation.command)) {
    return runTraffic(call, *traffic, out, err);
  }
  if (const auto* top = std::get_if<TopCommand>(&invocation.command)) {
    return runTop(call, *top, out, err);
  }
  return runStatus(invocation, std::get<StatusCommand>(invocation.command), out, err, env);
}

int run(const std::vector<std::string>& args, std::ostream& out, std::ostream& err,
        const Environment& env) {
  ParseResult parsed = parseCommandLine(args, out, err, env);
  if (!parsed.invocation) return parsed.exitCode;
  return execute(*parsed.invocation, out, err, env);
}

}  // namespace vigil::cli
