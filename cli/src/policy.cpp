#include "cli/src/policy.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "cli/src/format.hpp"
#include "policy/document.hpp"
#include "policy/exec_rules.hpp"
#include "policy/model.hpp"
#include "vigil/v1/vigil.grpc.pb.h"

namespace vigil::cli {
namespace {

constexpr std::size_t kChunk = 64 * 1024;

std::string tooLarge(const std::string& sourceName) {
  return sourceName + " is larger than 1 MiB, the most a policy file may hold";
}

// Reads all of `fd`, giving up once it holds more than `limit` bytes. Returns an errno, or 0.
int readAll(int fd, std::size_t limit, std::string& text) {
  while (text.size() <= limit) {
    std::size_t used = text.size();
    text.resize(used + kChunk);
    ssize_t n = ::read(fd, text.data() + used, kChunk);
    if (n < 0) {
      text.resize(used);
      if (errno == EINTR) continue;
      return errno;
    }
    text.resize(used + static_cast<std::size_t>(n));
    if (n == 0) break;
  }
  return 0;
}

// The agent's "does not know this call" means it predates policies; say that, not a code.
int reportPolicyRpcError(std::ostream& err, std::string_view call, const ServerAddress& server,
                         const grpc::Status& status) {
  if (status.error_code() == grpc::StatusCode::UNIMPLEMENTED) {
    err << "vigil: the agent at " << server.display << " does not support policies (" << call
        << ": UNIMPLEMENTED); it is older than this vigil\n";
    return 1;
  }
  return reportRpcError(err, call, server, status);
}

// An error message from the agent, line by line, made safe for the terminal.
void printMessageLines(std::ostream& err, std::string_view message, std::string_view prefix) {
  for (const auto& line : splitLines(message)) err << prefix << sanitize(line) << '\n';
}

}  // namespace

std::optional<PolicyInput> readPolicyInput(const std::string& file, std::istream& in,
                                           std::string& error) {
  constexpr std::size_t kLimit = vigil::policy::kMaxFileBytes;
  PolicyInput input;
  if (file == "-") {
    input.sourceName = "<stdin>";
    std::string chunk(kChunk, '\0');
    while (input.text.size() <= kLimit && in) {
      in.read(chunk.data(), static_cast<std::streamsize>(chunk.size()));
      input.text.append(chunk.data(), static_cast<std::size_t>(in.gcount()));
    }
    if (in.bad()) {
      error = "cannot read the policy from standard input";
      return std::nullopt;
    }
  } else {
    input.sourceName = file;
    int fd = ::open(file.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
      error = "cannot read " + file + ": " + std::strerror(errno);
      return std::nullopt;
    }
    int errnum = readAll(fd, kLimit, input.text);
    ::close(fd);
    if (errnum != 0) {
      error = "cannot read " + file + ": " + std::strerror(errnum);
      return std::nullopt;
    }
  }
  if (input.text.size() > kLimit) {
    error = tooLarge(input.sourceName);
    return std::nullopt;
  }
  return input;
}

int validatePolicies(const PolicyValidateCommand& command, std::istream& in, std::ostream& out,
                     std::ostream& err) {
  std::string error;
  auto input = readPolicyInput(command.file, in, error);
  if (!input) {
    err << "vigil: " << error << '\n';
    return 1;
  }
  vigil::policy::ParseResult parsed = vigil::policy::parsePolicies(input->text, input->sourceName);
  if (!parsed.ok()) {
    for (const auto& issue : parsed.errors) err << sanitize(issue.str()) << '\n';
    return 1;
  }
  if (parsed.policies.empty()) {
    err << "vigil: " << input->sourceName
        << ": no policies found (expected YAML documents of kind: Policy)\n";
    return 1;
  }
  // What the agent checks when it applies: binaries and cgroups must exist on this node (an
  // error for a rule that would kill, a warning otherwise).
  vigil::policy::SlotTable slots;
  std::vector<const vigil::policy::Policy*> all;
  for (const auto& policy : parsed.policies) all.push_back(&policy);
  auto compiled = vigil::policy::compileExecRules(all, slots, vigil::policy::hostResolver());
  for (const auto& w : compiled.warnings) err << "warning: " << sanitize(w.str()) << '\n';
  if (!compiled.errors.empty()) {
    for (const auto& e : compiled.errors) err << sanitize(e.str()) << '\n';
    return 1;
  }
  for (const auto& policy : parsed.policies) {
    std::size_t rules = policy.exec.size();
    out << sanitize(policy.name) << ": valid (" << vigil::policy::toString(policy.mode) << ", "
        << rules << (rules == 1 ? " exec rule)\n" : " exec rules)\n");
  }
  return 0;
}

int applyPolicies(const AgentCall& call, const PolicyApplyCommand& command, std::istream& in,
                  std::ostream& out, std::ostream& err) {
  // A file that cannot be read is this side's problem, whatever the agent's state.
  std::string error;
  auto input = readPolicyInput(command.file, in, error);
  if (!input) {
    err << "vigil: " << error << '\n';
    return 1;
  }
  if (call.interrupt != nullptr && call.interrupt->interrupted()) return 130;
  if (std::string reason = unreachableReason(call.server); !reason.empty()) {
    return reportUnreachable(err, call.server, reason);
  }

  v1::ApplyPolicyRequest request;
  request.set_yaml(std::move(input->text));
  request.set_source_name(input->sourceName);
  v1::ApplyPolicyResponse response;
  auto stub = v1::Vigil::NewStub(makeChannel(call.server));
  UnaryCall rpc(call.timeout, call.interrupt);
  grpc::Status status = stub->ApplyPolicy(rpc.context(), request, &response);
  if (rpc.finish()) return 130;
  if (!status.ok()) {
    // The agent's own "file:line:col: message" lines, and nothing was applied.
    if (status.error_code() == grpc::StatusCode::INVALID_ARGUMENT &&
        !splitLines(status.error_message()).empty()) {
      printMessageLines(err, status.error_message(), "");
      return 1;
    }
    return reportPolicyRpcError(err, "ApplyPolicy", call.server, status);
  }
  for (const auto& warning : response.warnings()) printMessageLines(err, warning, "warning: ");
  out << formatPolicyApplied(response, call.color);
  out.flush();
  for (const auto& policy : response.policies()) {
    if (policy.state() == "error") return 1;
  }
  return 0;
}

int deletePolicy(const AgentCall& call, const PolicyDeleteCommand& command, std::ostream& out,
                 std::ostream& err) {
  if (std::string reason = unreachableReason(call.server); !reason.empty()) {
    return reportUnreachable(err, call.server, reason);
  }
  v1::DeletePolicyRequest request;
  request.set_name(command.name);
  v1::DeletePolicyResponse response;
  auto stub = v1::Vigil::NewStub(makeChannel(call.server));
  UnaryCall rpc(call.timeout, call.interrupt);
  grpc::Status status = stub->DeletePolicy(rpc.context(), request, &response);
  if (rpc.finish()) return 130;
  if (status.error_code() == grpc::StatusCode::NOT_FOUND) {
    err << "vigil: no policy named " << sanitize(command.name) << '\n';
    return 1;
  }
  // For example a policy from the policy directory: the agent says which file to remove.
  if (status.error_code() == grpc::StatusCode::FAILED_PRECONDITION &&
      !splitLines(status.error_message()).empty()) {
    printMessageLines(err, status.error_message(), "vigil: ");
    return 1;
  }
  if (!status.ok()) return reportPolicyRpcError(err, "DeletePolicy", call.server, status);
  out << sanitize(command.name) << ": deleted\n";
  out.flush();
  return 0;
}

int listPolicies(const AgentCall& call, const PolicyListCommand& command, std::ostream& out,
                 std::ostream& err) {
  if (std::string reason = unreachableReason(call.server); !reason.empty()) {
    return reportUnreachable(err, call.server, reason);
  }
  v1::ListPoliciesResponse response;
  auto stub = v1::Vigil::NewStub(makeChannel(call.server));
  UnaryCall rpc(call.timeout, call.interrupt);
  grpc::Status status = stub->ListPolicies(rpc.context(), v1::ListPoliciesRequest{}, &response);
  if (rpc.finish()) return 130;
  if (!status.ok()) return reportPolicyRpcError(err, "ListPolicies", call.server, status);
  if (command.format == PolicyListFormat::kJson) {
    out << formatJson(response) << '\n';
  } else {
    out << formatPolicyList(response, call.color);
  }
  out.flush();
  return 0;
}

}  // namespace vigil::cli
