#pragma once

// The gRPC server: vigil.v1.Vigil plus grpc.health.v1.Health, on a unix socket (mode 0600)
// and optionally on TCP; and, optionally, a second server on its own TCP port that serves
// grpc.health.v1.Health alone (for kubelet gRPC probes, which must not reach the API).

#include <memory>
#include <optional>
#include <string>

#include <grpcpp/grpcpp.h>

#include "common/error.hpp"

namespace vigil::api {

class HealthOnlyService;

struct Endpoint {
  enum class Kind { unix_socket, tcp } kind;
  std::string where;  // a socket path, or host:port
};

// Accepts "unix:///path", "unix:/path" and "tcp://host:port".
Expected<Endpoint> parseEndpoint(const std::string& address);

// A TCP listening address: "host:port", "[v6]:port", ":port" (every address), or the same
// with tcp://. The result is what gRPC and civetweb take ("0.0.0.0:port" for ":port").
Expected<std::string> parseHostPort(const std::string& address);

class ApiServer {
 public:
  // Refuses to start when another agent already serves the unix socket; removes a stale one.
  static Expected<std::unique_ptr<ApiServer>> start(const Endpoint& unixEndpoint,
                                                    const std::optional<Endpoint>& tcpEndpoint,
                                                    grpc::Service* service);
  // Serves grpc.health.v1.Health alone on hostPort, SERVING until shutdown().
  Status startHealthOnly(const std::string& hostPort);
  int healthPort() const { return healthPort_; }
  ApiServer();
  ~ApiServer();
  // Stops accepting calls and waits (briefly) for running ones; idempotent.
  void shutdown();
  // Stops the health-only server alone (the agent is going away); idempotent.
  void stopHealth();
  // Port actually bound for TCP (useful with port 0), 0 without TCP.
  int tcpPort() const { return tcpPort_; }

 private:
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<HealthOnlyService> healthService_;
  std::unique_ptr<grpc::Server> healthServer_;
  int healthPort_ = 0;
  std::string socketPath_;
  int tcpPort_ = 0;
};

}  // namespace vigil::api
