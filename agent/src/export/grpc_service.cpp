#include "export/grpc_service.hpp"

namespace vigil::api {
namespace {

bool send(grpc::ServerWriter<v1::GetEventsResponse>* writer, const v1::Event& event) {
  v1::GetEventsResponse response;
  *response.mutable_event() = event;
  return writer->Write(response);
}

// Removes the subscription however the stream ends.
struct Unsubscribe {
  server::EventHub& hub;
  std::shared_ptr<server::Subscription> sub;
  ~Unsubscribe() { hub.unsubscribe(sub); }
};

}  // namespace

VigilService::VigilService(server::EventHub& hub, StatusFn status)
    : hub_(hub), status_(std::move(status)) {}

grpc::Status VigilService::GetEvents(grpc::ServerContext* context,
                                     const v1::GetEventsRequest* request,
                                     grpc::ServerWriter<v1::GetEventsResponse>* writer) {
  auto filter = events::EventFilter::fromRequest(*request);
  if (!filter) return {grpc::StatusCode::INVALID_ARGUMENT, filter.error().context()};

  if (!request->follow()) {
    for (const auto& ev : hub_.history(*filter, request->last())) {
      if (!send(writer, *ev)) return {grpc::StatusCode::CANCELLED, "client went away"};
    }
    return grpc::Status::OK;
  }

  bool withHistory = request->last() > 0 || request->has_since();
  std::vector<server::EventPtr> history;
  Unsubscribe guard{hub_, hub_.subscribe(*filter, withHistory, request->last(), &history)};
  for (const auto& ev : history) {
    if (!send(writer, *ev)) return {grpc::StatusCode::CANCELLED, "client went away"};
  }
  while (!context->IsCancelled()) {
    auto ev = guard.sub->next(std::chrono::milliseconds(200));
    if (ev) {
      if (!send(writer, **ev)) return {grpc::StatusCode::CANCELLED, "client went away"};
    } else if (guard.sub->closed()) {
      return {grpc::StatusCode::UNAVAILABLE, "the agent is shutting down"};
    }
  }
  return grpc::Status::OK;
}

grpc::Status VigilService::GetStatus(grpc::ServerContext*, const v1::GetStatusRequest*,
                                     v1::GetStatusResponse* response) {
  *response = status_();
  return grpc::Status::OK;
}

}  // namespace vigil::api
