#include "cli/src/app.hpp"

#include <grpcpp/client_context.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <charconv>
#include <cstdint>
#include <cstdlib>
#include <limits>

#include "cli/src/time_parse.hpp"
#include "vigil/v1/vigil.grpc.pb.h"

namespace vigil::cli {
namespace {

constexpr std::uint32_t kDefaultLast = 20;

constexpr const char* kAppFooter = R"(
Examples:
  vigil status                               agent health, capabilities and counters
  vigil events                               the last 20 process events
  vigil events -f --type exec                new execs as they happen (Ctrl-C to stop)
  vigil events --since 10m --binary /usr/bin/curl
  vigil events -f --binary '/tmp/*' -o json | jq .exec.process.args

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

Examples:
  vigil events --last 100 --type exit
  vigil events -f --pid 1234,1240
  vigil events --since 2026-11-25T19:00:00Z --binary /usr/sbin/ --binary '/opt/app/bin/*'
  vigil events -f -o table)";

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
  std::string since;
};

std::optional<std::uint32_t> parseUint32(std::string_view text) {
  std::uint32_t value = 0;
  auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (text.empty() || ec != std::errc{} || ptr != text.data() + text.size()) return std::nullopt;
  return value;
}

v1::GetEventsRequest buildEventsRequest(const Flags& flags, bool lastGiven, bool sinceGiven,
                                        std::chrono::system_clock::time_point now) {
  v1::GetEventsRequest request;
  request.set_follow(flags.follow);
  if (lastGiven) {
    auto last = parseUint32(flags.last);
    if (!last) {
      throw CLI::ValidationError(
          "--last", "expected a whole number from 0 to " +
                        std::to_string(std::numeric_limits<std::uint32_t>::max()) + ", got '" +
                        flags.last + "'");
    }
    request.set_last(*last);
  } else if (!sinceGiven && !flags.follow) {
    request.set_last(kDefaultLast);
  }
  for (const auto& type : flags.types) {
    request.add_types(type == "exec" ? v1::EVENT_TYPE_EXEC : v1::EVENT_TYPE_EXIT);
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
  if (sinceGiven) {
    auto since = parseSince(flags.since, now);
    if (!since) {
      throw CLI::ValidationError("--since",
                                 "expected a duration such as 30s, 5m or 2h, or an RFC 3339 time "
                                 "such as 2026-11-25T19:44:15Z, got '" +
                                     flags.since + "'");
    }
    *request.mutable_since() = *since;
  }
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
  grpc::ClientContext context;
  context.set_wait_for_ready(false);
  context.set_deadline(std::chrono::system_clock::now() + invocation.timeout);
  if (env.interrupt != nullptr) env.interrupt->watch(&context);
  v1::GetStatusResponse response;
  grpc::Status status = stub->GetStatus(&context, v1::GetStatusRequest{}, &response);
  if (env.interrupt != nullptr) {
    env.interrupt->watch(nullptr);
    if (env.interrupt->interrupted()) return 130;
  }
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
  grpc::ClientContext context;
  context.set_wait_for_ready(false);
  if (env.interrupt != nullptr) env.interrupt->watch(&context);
  EventPrinter printer(out, command.format, invocation.color, command.request.follow());
  bool received = false;
  auto reader = stub->GetEvents(&context, command.request);
  v1::GetEventsResponse response;
  while (reader->Read(&response)) {
    received = true;
    printer.print(response.event());
  }
  grpc::Status status = reader->Finish();
  printer.finish();
  if (env.interrupt != nullptr) {
    env.interrupt->watch(nullptr);
    if (env.interrupt->interrupted()) return 0;
  }
  if (status.ok()) return 0;
  if (received && status.error_code() == grpc::StatusCode::UNAVAILABLE) {
    err << "vigil: lost the connection to the agent at " << invocation.server.display << ": "
        << status.error_message() << '\n';
    return 1;
  }
  return reportRpcError(err, "GetEvents", invocation.server, status);
}

}  // namespace

Environment processEnvironment(Interrupt* interrupt) {
  Environment env;
  if (const char* server = std::getenv("VIGIL_SERVER"); server != nullptr) env.server = server;
  env.noColor = std::getenv("NO_COLOR") != nullptr;
  env.stdoutIsTty = ::isatty(STDOUT_FILENO) == 1;
  env.now = std::chrono::system_clock::now();
  env.interrupt = interrupt;
  return env;
}

ParseResult parseCommandLine(const std::vector<std::string>& args, std::ostream& out,
                             std::ostream& err, const Environment& env) {
  Flags flags;
  flags.server = env.server.empty() ? std::string(kDefaultServer) : env.server;

  CLI::App app{
      "vigil: see the processes that start and end on this node, as recorded by "
      "vigil-agent.",
      "vigil"};
  app.require_subcommand(0, 1);
  app.fallthrough();
  app.footer(kAppFooter);
  app.add_option("--server", flags.server,
                 "Agent address: unix:///path, /path, host:port or tcp://host:port")
      ->type_name("ADDR")
      ->capture_default_str();
  app.add_option("--timeout", flags.timeout,
                 "Deadline for one-shot calls such as status: 500ms, 5s, 1m")
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
      "events", "Show process exec and exit events: recent history, or live with -f");
  events->footer(kEventsFooter);
  events->add_flag("-f,--follow", flags.follow, "Keep streaming new events until Ctrl-C");
  CLI::Option* last =
      events->add_option("--last", flags.last, "Start with the N most recent matches (0: all)")
          ->type_name("N");
  events->add_option("--type", flags.types, "Only this event type: exec or exit")
      ->type_name("TYPE")
      ->delimiter(',')
      ->allow_extra_args(false)
      ->check(CLI::IsMember({"exec", "exit"}));
  events->add_option("--pid", flags.pids, "Only events of this process id")
      ->type_name("PID")
      ->delimiter(',')
      ->allow_extra_args(false);
  events
      ->add_option("--binary", flags.binaries,
                   "Only this binary: exact path, or prefix if it ends in '/' or '*'")
      ->type_name("PATH")
      ->allow_extra_args(false);
  CLI::Option* since = events
                           ->add_option("--since", flags.since,
                                        "Only events after TIME: 30s, 5m, 2h ago or RFC 3339")
                           ->type_name("TIME");
  events->add_option("-o,--output", flags.eventsOutput, "Output format: compact, json or table")
      ->type_name("FORMAT")
      ->check(CLI::IsMember({"compact", "json", "table"}))
      ->capture_default_str();

  ParseResult result;
  try {
    std::vector<std::string> reversed(args.rbegin(), args.rend());
    app.parse(reversed);
    if (app.get_subcommands().empty()) throw CLI::RequiredError("A command (status or events)");

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
    std::string command = events->parsed()   ? "vigil events"
                          : status->parsed() ? "vigil status"
                                             : "vigil";
    err << "vigil: " << e.what() << "\nRun '" << command << " --help' for usage.\n";
    result.exitCode = 2;
  }
  return result;
}

int execute(const Invocation& invocation, std::ostream& out, std::ostream& err,
            const Environment& env) {
  if (std::string reason = unreachableReason(invocation.server); !reason.empty()) {
    return reportUnreachable(err, invocation.server, reason);
  }
  if (const auto* events = std::get_if<EventsCommand>(&invocation.command)) {
    return runEvents(invocation, *events, out, err, env);
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
