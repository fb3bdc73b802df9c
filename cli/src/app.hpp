#pragma once

#include <chrono>
#include <istream>
#include <optional>
#include <ostream>
#include <string>
#include <variant>
#include <vector>

#include "cli/src/client.hpp"
#include "cli/src/format.hpp"
#include "cli/src/interrupt.hpp"
#include "cli/src/observe.hpp"
#include "cli/src/top.hpp"
#include "cli/src/policy.hpp"
#include "vigil/v1/vigil.pb.h"

namespace vigil::cli {

// Everything the CLI takes from its surroundings, so that tests can supply their own.
struct Environment {
  // VIGIL_SERVER; empty when unset.
  std::string server;
  // NO_COLOR is set (to anything).
  bool noColor = false;
  bool stdoutIsTty = false;
  // The time that relative --since values count back from.
  std::chrono::system_clock::time_point now;
  // Cancels the call in progress on Ctrl-C; without one, Ctrl-C simply kills the process.
  Interrupt* interrupt = nullptr;
  // Standard input, read by `policy validate|apply -f -`; nullptr means std::cin.
  std::istream* in = nullptr;
};

// Reads the environment of this process: VIGIL_SERVER, NO_COLOR, whether stdout is a TTY.
Environment processEnvironment(Interrupt* interrupt);

struct StatusCommand {
  StatusFormat format = StatusFormat::kText;
};

struct EventsCommand {
  v1::GetEventsRequest request;
  EventFormat format = EventFormat::kCompact;
};

// A command line, checked and turned into what to send and how to show it.
struct Invocation {
  ServerAddress server;
  // Deadline for unary calls.
  std::chrono::nanoseconds timeout{};
  bool color = false;
  std::variant<StatusCommand, EventsCommand, PolicyValidateCommand, PolicyApplyCommand,
               PolicyDeleteCommand, PolicyListCommand, ObserveCommand, TrafficCommand,
               TopCommand>
      command;
};

struct ParseResult {
  // Set when there is a command to run.
  std::optional<Invocation> invocation;
  // Otherwise how to exit: 0 after --help, 2 after a usage error (already reported on err).
  int exitCode = 0;
};

// Parses `args` (without the program name). Help goes to `out`; errors go to `err` as one
// line plus a pointer to --help.
ParseResult parseCommandLine(const std::vector<std::string>& args, std::ostream& out,
                             std::ostream& err, const Environment& env);

// Runs a parsed command, against the agent for all but `policy validate`. Returns the exit
// code: 0 on success (also when Ctrl-C ends `events --follow` or `observe --follow`), 1 when
// the agent is unreachable, the call fails or a policy is invalid, 130 when Ctrl-C cancels a
// one-shot call.
int execute(const Invocation& invocation, std::ostream& out, std::ostream& err,
            const Environment& env);

// parseCommandLine() then execute(): the whole `vigil` program.
int run(const std::vector<std::string>& args, std::ostream& out, std::ostream& err,
        const Environment& env);

}  // namespace vigil::cli
