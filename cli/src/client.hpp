#pragma once

#include <grpcpp/channel.h>
#include <grpcpp/client_context.h>
#include <grpcpp/support/status.h>
#include <grpcpp/support/sync_stream.h>

#include <chrono>
#include <functional>
#include <memory>
#include <ostream>
#include <string>
#include <string_view>

#include "cli/src/interrupt.hpp"
#include "vigil/v1/vigil.pb.h"

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

// The context of one unary call: it fails at once when the agent cannot be reached, ends at
// the deadline, and, while this object lives, Ctrl-C cancels it (when `interrupt` is set).
class UnaryCall {
 public:
  UnaryCall(std::chrono::nanoseconds timeout, Interrupt* interrupt);
  ~UnaryCall();
  UnaryCall(const UnaryCall&) = delete;
  UnaryCall& operator=(const UnaryCall&) = delete;

  grpc::ClientContext* context() { return &context_; }
  // Stops listening for Ctrl-C; true when it came (the caller then exits with 130).
  bool finish();

 private:
  grpc::ClientContext context_;
  Interrupt* interrupt_;
};

// "UNAVAILABLE", "PERMISSION_DENIED", ...
std::string statusCodeName(grpc::StatusCode code);

// Writes the one-line "cannot reach the agent" message and returns exit code 1.
int reportUnreachable(std::ostream& err, const ServerAddress& address, std::string_view detail);

// Writes a failed call's code and message (or the unreachable message for UNAVAILABLE) and
// returns exit code 1.
int reportRpcError(std::ostream& err, std::string_view call, const ServerAddress& address,
                   const grpc::Status& status);

// Runs one event-streaming call (GetEvents, GetFlows) to its end: `start` begins it on the
// given context, and `print` gets every event. Ctrl-C (with `interrupt`) ends it quietly.
// Returns the exit code: 0 when the stream ended well or was interrupted, else 1 with the
// error on `err` ("lost the connection" when the agent went away in the middle).
template <typename Response>
int streamEvents(
    const ServerAddress& server, Interrupt* interrupt, std::string_view callName,
    const std::function<std::unique_ptr<grpc::ClientReader<Response>>(grpc::ClientContext*)>& start,
    const std::function<void(const v1::Event&)>& print, std::ostream& err) {
  grpc::ClientContext context;
  context.set_wait_for_ready(false);
  if (interrupt != nullptr) interrupt->watch(&context);
  bool received = false;
  auto reader = start(&context);
  Response response;
  while (reader->Read(&response)) {
    received = true;
    print(response.event());
  }
  grpc::Status status = reader->Finish();
  if (interrupt != nullptr) {
    interrupt->watch(nullptr);
    if (interrupt->interrupted()) return 0;
  }
  if (status.ok()) return 0;
  if (received && status.error_code() == grpc::StatusCode::UNAVAILABLE) {
    err << "vigil: lost the connection to the agent at " << server.display << ": "
        << status.error_message() << '\n';
    return 1;
  }
  return reportRpcError(err, callName, server, status);
}

}  // namespace vigil::cli
