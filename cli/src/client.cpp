#include "cli/src/client.hpp"

#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstring>

namespace vigil::cli {
namespace {

bool startsWith(std::string_view text, std::string_view prefix) {
  return text.substr(0, prefix.size()) == prefix;
}

}  // namespace

ServerAddress parseServerAddress(std::string_view server) {
  ServerAddress address{std::string(server), std::string(server), {}};
  if (startsWith(server, "unix://")) {
    address.unixPath = std::string(server.substr(7));
  } else if (startsWith(server, "unix:")) {
    address.unixPath = std::string(server.substr(5));
  } else if (startsWith(server, "/")) {
    address.unixPath = std::string(server);
    address.target = "unix://" + address.unixPath;
  } else if (startsWith(server, "tcp://")) {
    address.target = std::string(server.substr(6));
  }
  return address;
}

std::shared_ptr<grpc::Channel> makeChannel(const ServerAddress& address) {
  return grpc::CreateChannel(address.target, grpc::InsecureChannelCredentials());
}

std::string unreachableReason(const ServerAddress& address) {
  if (address.unixPath.empty()) return {};
  struct stat st {};
  if (::stat(address.unixPath.c_str(), &st) != 0) {
    if (errno == ENOENT) return address.unixPath + " does not exist";
    return {};  // Let the call report permission problems and the like in its own words.
  }
  if (!S_ISSOCK(st.st_mode)) return address.unixPath + " is not a socket";
  return {};
}

UnaryCall::UnaryCall(std::chrono::nanoseconds timeout, Interrupt* interrupt)
    : interrupt_(interrupt) {
  context_.set_wait_for_ready(false);
  context_.set_deadline(std::chrono::system_clock::now() + timeout);
  if (interrupt_ != nullptr) interrupt_->watch(&context_);
}

UnaryCall::~UnaryCall() { finish(); }

bool UnaryCall::finish() {
  if (interrupt_ == nullptr) return false;
  interrupt_->watch(nullptr);
  return interrupt_->interrupted();
}

std::string statusCodeName(grpc::StatusCode code) {
  switch (code) {
    case grpc::StatusCode::OK:
      return "OK";
    case grpc::StatusCode::CANCELLED:
      return "CANCELLED";
    case grpc::StatusCode::UNKNOWN:
      return "UNKNOWN";
    case grpc::StatusCode::INVALID_ARGUMENT:
      return "INVALID_ARGUMENT";
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      return "DEADLINE_EXCEEDED";
    case grpc::StatusCode::NOT_FOUND:
      return "NOT_FOUND";
    case grpc::StatusCode::ALREADY_EXISTS:
      return "ALREADY_EXISTS";
    case grpc::StatusCode::PERMISSION_DENIED:
      return "PERMISSION_DENIED";
    case grpc::StatusCode::RESOURCE_EXHAUSTED:
      return "RESOURCE_EXHAUSTED";
    case grpc::StatusCode::FAILED_PRECONDITION:
      return "FAILED_PRECONDITION";
    case grpc::StatusCode::ABORTED:
      return "ABORTED";
    case grpc::StatusCode::OUT_OF_RANGE:
      return "OUT_OF_RANGE";
    case grpc::StatusCode::UNIMPLEMENTED:
      return "UNIMPLEMENTED";
    case grpc::StatusCode::INTERNAL:
      return "INTERNAL";
    case grpc::StatusCode::UNAVAILABLE:
      return "UNAVAILABLE";
    case grpc::StatusCode::DATA_LOSS:
      return "DATA_LOSS";
    case grpc::StatusCode::UNAUTHENTICATED:
      return "UNAUTHENTICATED";
    default:
      return "CODE_" + std::to_string(static_cast<int>(code));
  }
}

int reportUnreachable(std::ostream& err, const ServerAddress& address, std::string_view detail) {
  err << "vigil: cannot reach the agent at " << address.display << ": " << detail
      << ". Is vigil-agent running? (set --server or VIGIL_SERVER)\n";
  return 1;
}

int reportRpcError(std::ostream& err, std::string_view call, const ServerAddress& address,
                   const grpc::Status& status) {
  if (status.error_code() == grpc::StatusCode::UNAVAILABLE) {
    return reportUnreachable(err, address, status.error_message());
  }
  err << "vigil: " << call << " failed: " << statusCodeName(status.error_code());
  if (!status.error_message().empty()) err << ": " << status.error_message();
  err << '\n';
  return 1;
}

}  // namespace vigil::cli
