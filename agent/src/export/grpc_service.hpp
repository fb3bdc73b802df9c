#pragma once

// The vigil.v1.Vigil gRPC service over the event hub and the agent's status.

#include <functional>

#include <grpcpp/grpcpp.h>

#include "server/event_hub.hpp"
#include "vigil/v1/vigil.grpc.pb.h"

namespace vigil::api {

class VigilService final : public v1::Vigil::Service {
 public:
  using StatusFn = std::function<v1::GetStatusResponse()>;

  VigilService(server::EventHub& hub, StatusFn status);

  grpc::Status GetEvents(grpc::ServerContext* context, const v1::GetEventsRequest* request,
                         grpc::ServerWriter<v1::GetEventsResponse>* writer) override;
  grpc::Status GetStatus(grpc::ServerContext* context, const v1::GetStatusRequest* request,
                         v1::GetStatusResponse* response) override;

 private:
  server::EventHub& hub_;
  StatusFn status_;
};

}  // namespace vigil::api
