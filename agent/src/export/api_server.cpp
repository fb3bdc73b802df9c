#include "export/api_server.hpp"

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <filesystem>

#include <grpcpp/ext/health_check_service_server_builder_option.h>
#include <grpcpp/health_check_service_interface.h>
#include <grpcpp/resource_quota.h>

#include "grpc/health/v1/health.grpc.pb.h"

namespace vigil::api {
namespace {

// True when something accepts connections on the socket.
bool socketInUse(const std::string& path) {
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path.c_str(), sizeof(addr.sun_path) - 1);
  bool inUse = ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  ::close(fd);
  return inUse;
}

}  // namespace

// grpc.health.v1.Health for the health-only server. gRPC's built-in health service cannot
// serve alone (it needs a synchronous service beside it), so this one is ours: the agent's
// overall state ("") and vigil.v1.Vigil are SERVING until shutdown.
class HealthOnlyService final : public grpc::health::v1::Health::Service {
 public:
  using Response = grpc::health::v1::HealthCheckResponse;
  void setServing(bool serving) { serving_ = serving; }

  grpc::Status Check(grpc::ServerContext*, const grpc::health::v1::HealthCheckRequest* request,
                     Response* response) override {
    if (!known(request->service()))
      return {grpc::StatusCode::NOT_FOUND, "unknown service \"" + request->service() + "\""};
    response->set_status(current());
    return grpc::Status::OK;
  }

  // Watch is left unimplemented on purpose: the port is reachable from the node's network,
  // and each open Watch would hold a server thread. Kubelet probes (and grpc_health_probe)
  // call Check.

 private:
  static bool known(const std::string& service) {
    return service.empty() || service == "vigil.v1.Vigil";
  }
  Response::ServingStatus current() const {
    return serving_ ? Response::SERVING : Response::NOT_SERVING;
  }
  std::atomic<bool> serving_{false};
};

Expected<Endpoint> parseEndpoint(const std::string& address) {
  if (address.rfind("unix://", 0) == 0) {
    std::string path = address.substr(7);
    if (path.empty() || path.front() != '/')
      return Error(EINVAL, "\"" + address + "\": a unix address needs an absolute path, "
                                            "as in unix:///run/vigil/vigil.sock");
    return Endpoint{Endpoint::Kind::unix_socket, path};
  }
  if (address.rfind("unix:", 0) == 0 && address.size() > 5 && address[5] == '/') {
    return Endpoint{Endpoint::Kind::unix_socket, address.substr(5)};
  }
  if (address.rfind("tcp://", 0) == 0) {
    std::string hostPort = address.substr(6);
    auto colon = hostPort.rfind(':');
    if (colon == std::string::npos || colon + 1 == hostPort.size())
      return Error(EINVAL, "\"" + address + "\": a tcp address needs a port, as in "
                                            "tcp://127.0.0.1:4245");
    return Endpoint{Endpoint::Kind::tcp, hostPort};
  }
  return Error(EINVAL, "\"" + address + "\": expected unix:///PATH or tcp://HOST:PORT");
}

Expected<std::string> parseHostPort(const std::string& address) {
  std::string hostPort = address.rfind("tcp://", 0) == 0 ? address.substr(6) : address;
  auto colon = hostPort.rfind(':');
  auto bad = [&](const std::string& why) {
    return Error(EINVAL, "\"" + address + "\": " + why +
                             " (expected HOST:PORT, [IPv6]:PORT or :PORT for every address)");
  };
  if (colon == std::string::npos) return bad("no port");
  std::string host = hostPort.substr(0, colon), port = hostPort.substr(colon + 1);
  if (port.empty() || port.size() > 5 || port.find_first_not_of("0123456789") != std::string::npos ||
      std::stoul(port) > 65535)
    return bad("port '" + port + "' is not a number from 0 to 65535");
  if (host.empty()) host = "0.0.0.0";
  if (host.find(':') != std::string::npos && host.front() != '[')
    return bad("an IPv6 address goes in brackets");
  if (host.find_first_of(" /") != std::string::npos) return bad("'" + host + "' is not a host");
  return host + ":" + port;
}

Expected<std::unique_ptr<ApiServer>> ApiServer::start(const Endpoint& unixEndpoint,
                                                      const std::optional<Endpoint>& tcpEndpoint,
                                                      grpc::Service* service) {
  namespace fs = std::filesystem;
  auto server = std::make_unique<ApiServer>();
  const std::string& path = unixEndpoint.where;
  if (path.size() >= sizeof(sockaddr_un::sun_path))
    return Error(ENAMETOOLONG, "API socket path " + path);

  std::error_code ec;
  fs::create_directories(fs::path(path).parent_path(), ec);
  if (ec) return Error(ec.value(), "create directory for API socket " + path);
  if (fs::exists(fs::symlink_status(path, ec))) {
    if (socketInUse(path))
      return Error(EADDRINUSE, "another vigil-agent already serves " + path);
    fs::remove(path, ec);  // stale, from an agent that did not stop cleanly
  }

  grpc::EnableDefaultHealthCheckService(true);
  grpc::ServerBuilder builder;
  builder.AddListeningPort("unix:" + path, grpc::InsecureServerCredentials());
  if (tcpEndpoint) {
    builder.AddListeningPort(tcpEndpoint->where, grpc::InsecureServerCredentials(),
                             &server->tcpPort_);
  }
  builder.RegisterService(service);

  // The socket is created by BuildAndStart: make it owner-only from the first instant.
  mode_t old = ::umask(0177);
  server->server_ = builder.BuildAndStart();
  ::umask(old);
  if (!server->server_) {
    return Error(EADDRNOTAVAIL, "start gRPC server on unix:" + path +
                                    (tcpEndpoint ? " and " + tcpEndpoint->where : ""));
  }
  if (tcpEndpoint && server->tcpPort_ == 0)
    return Error(EADDRNOTAVAIL, "listen on " + tcpEndpoint->where);
  ::chmod(path.c_str(), 0600);
  server->socketPath_ = path;
  server->server_->GetHealthCheckService()->SetServingStatus(true);
  return server;
}

Status ApiServer::startHealthOnly(const std::string& hostPort) {
  healthService_ = std::make_unique<HealthOnlyService>();
  grpc::ServerBuilder builder;
  builder.AddListeningPort(hostPort, grpc::InsecureServerCredentials(), &healthPort_);
  builder.RegisterService(healthService_.get());
  // gRPC sets SO_REUSEPORT by default: a second agent would share the port, not fail.
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  // Health checks are tiny and short: a few threads, whoever connects to the port.
  grpc::ResourceQuota quota("vigil-health");
  quota.SetMaxThreads(4);
  builder.SetResourceQuota(quota);
  // No built-in health service beside ours (a null option turns it off for this server).
  builder.SetOption(std::make_unique<grpc::HealthCheckServiceServerBuilderOption>(nullptr));
  healthServer_ = builder.BuildAndStart();
  if (!healthServer_ || healthPort_ == 0) {
    healthServer_.reset();
    return Error(EADDRNOTAVAIL, "serve gRPC health on " + hostPort +
                                    " (is the address local and the port free?)");
  }
  healthService_->setServing(true);
  return {};
}

ApiServer::ApiServer() = default;
ApiServer::~ApiServer() { shutdown(); }

void ApiServer::stopHealth() {
  if (!healthServer_) return;
  healthService_->setServing(false);
  healthServer_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(1));
  healthServer_.reset();
}

void ApiServer::shutdown() {
  stopHealth();
  if (!server_) return;
  server_->GetHealthCheckService()->SetServingStatus(false);
  server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
  server_.reset();
  if (!socketPath_.empty()) ::unlink(socketPath_.c_str());
}

}  // namespace vigil::api
