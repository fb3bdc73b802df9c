#pragma once

#include <grpcpp/channel.h>
#include <grpcpp/support/status.h>

#include <memory>
#include <ostream>
#include <string>
#include <string_view>

namespace vigil::cli {

inline constexpr std::string_view kDefaultServer = "unix:///run/vigil/vigil.sock";

// Where the agent listens: as the user wrote it (for messages) and as gRPC wants it.
struct ServerAddress {
  std::string display;
  std::string target;
  // The socket file for a unix address, else empty.
  std::string unixPath;
};

// Accepts "unix:///path", "unix:/path", a bare absolute path (a unix socket), "tcp://host:port"
// and anything gRPC itself understands ("host:port", "dns:///host:port", "ipv4:...").
ServerAddress parseServerAddress(std::string_view server);

// A channel whose calls fail at once when the agent cannot be reached, instead of waiting
// for it to appear (wait_for_ready stays false on every call).
std::shared_ptr<grpc::Channel> makeChannel(const ServerAddress& address);

// Why the agent is certainly unreachable without trying, for example a missing socket file;
// empty when a call may succeed.
std::string unreachableReason(const ServerAddress& address);

// "UNAVAILABLE", "PERMISSION_DENIED", ...
std::string statusCodeName(grpc::StatusCode code);

// Writes the one-line "cannot reach the agent" message and returns exit code 1.
int reportUnreachable(std::ostream& err, const ServerAddress& address, std::string_view detail);

// Writes a failed call's code and message (or the unreachable message for UNAVAILABLE) and
// returns exit code 1.
int reportRpcError(std::ostream& err, std::string_view call, const ServerAddress& address,
                   const grpc::Status& status);

}  // namespace vigil::cli
