#include "export/api_server.hpp"

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <filesystem>

#include <grpcpp/health_check_service_interface.h>

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

ApiServer::~ApiServer() { shutdown(); }

void ApiServer::shutdown() {
  if (!server_) return;
  server_->GetHealthCheckService()->SetServingStatus(false);
  server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
  server_.reset();
  if (!socketPath_.empty()) ::unlink(socketPath_.c_str());
}

}  // namespace vigil::api
