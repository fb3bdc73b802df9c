#pragma once

// `vigil policy`: validate (offline), apply, delete and list exec policies.

#include <chrono>
#include <istream>
#include <optional>
#include <ostream>
#include <string>

#include "cli/src/client.hpp"
#include "cli/src/interrupt.hpp"

namespace vigil::cli {

enum class PolicyListFormat { kTable, kJson };

// "-" as a file name means standard input.
struct PolicyValidateCommand {
  std::string file;
};
struct PolicyApplyCommand {
  std::string file;
};
struct PolicyDeleteCommand {
  std::string name;
};
struct PolicyListCommand {
  PolicyListFormat format = PolicyListFormat::kTable;
};

// Policy YAML as read from a file or standard input.
struct PolicyInput {
  std::string text;
  // What messages call it: the file name as given, or "<stdin>".
  std::string sourceName;
};

// Reads `file`, or `in` when it is "-", up to policy::kMaxFileBytes (1 MiB). On failure returns
// nullopt and sets `error` to one line that names the file ("cannot read x.yaml: ...").
std::optional<PolicyInput> readPolicyInput(const std::string& file, std::istream& in,
                                           std::string& error);

// How the agent-facing commands reach the agent.
struct AgentCall {
  ServerAddress server;
  // Deadline of each call.
  std::chrono::nanoseconds timeout{};
  Interrupt* interrupt = nullptr;
  bool color = false;
};

// Each returns the exit code: 0 on success, 1 on any failure (reported on `err`), 130 when
// Ctrl-C cancelled the call.

// Checks policies with the agent's own parser, without an agent. Prints
// "deny-tmp: valid (enforce, 2 exec rules)" per policy, or every error as
// "file:line:col: message" on `err`.
int validatePolicies(const PolicyValidateCommand& command, std::istream& in, std::ostream& out,
                     std::ostream& err);

// Sends the file to the agent, which validates it and applies all of its policies or none.
int applyPolicies(const AgentCall& call, const PolicyApplyCommand& command, std::istream& in,
                  std::ostream& out, std::ostream& err);

int deletePolicy(const AgentCall& call, const PolicyDeleteCommand& command, std::ostream& out,
                 std::ostream& err);

int listPolicies(const AgentCall& call, const PolicyListCommand& command, std::ostream& out,
                 std::ostream& err);

}  // namespace vigil::cli
