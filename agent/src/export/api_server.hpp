#pragma once

// The gRPC server: vigil.v1.Vigil plus grpc.health.v1.Health, on a unix socket (mode 0600)
// and optionally on TCP.

#include <memory>
#include <optional>
#include <string>

#include <grpcpp/grpcpp.h>

#include "common/error.hpp"

namespace vigil::api {

struct Endpoint {
  enum class Kind { unix_socket, tcp } kind;
  std::string where;  // a socket path, or host:port
};

// Accepts "unix:///path", "unix:/path" and "tcp://host:port".
Expected<Endpoint> parseEndpoint(const std::string& address);

class ApiServer {
 public:
  // Refuses to start when another agent already serves the unix socket; removes a stale one.
  static Expected<std::unique_ptr<ApiServer>> start(const Endpoint& unixEndpoint,
                                                    const std::optional<Endpoint>& tcpEndpoint,
                                                    grpc::Service* service);
  ~ApiServer();
  // Stops accepting calls and waits (briefly) for running ones; idempotent.
  void shutdown();
  // Port actually bound for TCP (useful with port 0), 0 without TCP.
  int tcpPort() const { return tcpPort_; }

 private:
  std::unique_ptr<grpc::Server> server_;
  std::string socketPath_;
  int tcpPort_ = 0;
};

}  // namespace vigil::api
