#include "export/grpc_service.hpp"

#include <algorithm>

#include "events/filter.hpp"
#include "events/flow_filter.hpp"

namespace vigil::api {
namespace {

// GetEventsResponse or GetFlowsResponse: both carry one Event.
template <typename Response>
bool send(grpc::ServerWriter<Response>* writer, const v1::Event& event) {
  Response response;
  *response.mutable_event() = event;
  return writer->Write(response);
}

// Removes the subscription however the stream ends.
struct Unsubscribe {
  server::EventHub& hub;
  std::shared_ptr<server::Subscription> sub;
  ~Unsubscribe() { hub.unsubscribe(sub); }
};

// Which retained events a stream starts with.
struct HistoryWindow {
  uint32_t last = 0;
  uint32_t first = 0;
  // With follow: whether to send any history at all (else only new events).
  bool withFollow = false;
};

// The body of GetEvents and GetFlows: the matching history, then, with `follow`, new events
// until the client cancels or the hub closes.
template <typename Response, typename Matcher>
grpc::Status stream(grpc::ServerContext* context, server::EventHub& hub, Matcher matcher,
                    bool follow, HistoryWindow window, grpc::ServerWriter<Response>* writer) {
  if (!follow) {
    for (const auto& ev : hub.history(matcher, window.last, window.first)) {
      if (!send(writer, *ev)) return {grpc::StatusCode::CANCELLED, "client went away"};
    }
    return grpc::Status::OK;
  }

  std::vector<server::EventPtr> history;
  Unsubscribe guard{hub,
                    hub.subscribe(std::move(matcher), window.withFollow, window.last, &history)};
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

}  // namespace

VigilService::VigilService(server::EventHub& hub, StatusFn status, PolicyHooks policies,
                           FlowHooks flows, AccountingFn accounting)
    : hub_(hub),
      status_(std::move(status)),
      policies_(std::move(policies)),
      flows_(std::move(flows)),
      accounting_(std::move(accounting)) {}

grpc::Status VigilService::GetAccounting(grpc::ServerContext*,
                                         const v1::GetAccountingRequest* request,
                                         v1::GetAccountingResponse* response) {
  if (!accounting_) return {grpc::StatusCode::UNIMPLEMENTED, "memory accounting is not running"};
  auto r = accounting_(*request);
  if (!r) {
    const auto code = r.error().code() == EINVAL    ? grpc::StatusCode::INVALID_ARGUMENT
                      : r.error().code() == ENOTSUP ? grpc::StatusCode::FAILED_PRECONDITION
                                                    : grpc::StatusCode::INTERNAL;
    return {code, code == grpc::StatusCode::INTERNAL ? r.error().message() : r.error().context()};
  }
  *response = std::move(r.value());
  return grpc::Status::OK;
}

grpc::Status VigilService::GetEvents(grpc::ServerContext* context,
                                     const v1::GetEventsRequest* request,
                                     grpc::ServerWriter<v1::GetEventsResponse>* writer) {
  auto filter = events::EventFilter::fromRequest(*request);
  if (!filter) return {grpc::StatusCode::INVALID_ARGUMENT, filter.error().context()};
  HistoryWindow window{request->last(), 0, request->last() > 0 || request->has_since()};
  return stream(context, hub_, std::move(*filter), request->follow(), window, writer);
}

grpc::Status VigilService::GetFlows(grpc::ServerContext* context,
                                    const v1::GetFlowsRequest* request,
                                    grpc::ServerWriter<v1::GetFlowsResponse>* writer) {
  if (flows_.hub == nullptr) {
    return {grpc::StatusCode::UNIMPLEMENTED, "flow tracking is not running on this agent"};
  }
  auto filter = events::FlowFilter::fromRequest(*request);
  if (!filter) return {grpc::StatusCode::INVALID_ARGUMENT, filter.error().context()};
  HistoryWindow window{request->last(), request->first(),
                       request->last() > 0 || request->has_since()};
  return stream(context, *flows_.hub, std::move(*filter), request->follow(), window, writer);
}

grpc::Status VigilService::GetTraffic(grpc::ServerContext*, const v1::GetTrafficRequest* request,
                                      v1::GetTrafficResponse* response) {
  if (!flows_.traffic) {
    return {grpc::StatusCode::UNIMPLEMENTED, "traffic accounting is not running on this agent"};
  }
  const std::string& prefix = request->cgroup_prefix();
  if (!prefix.empty() && prefix.front() != '/') {
    return {grpc::StatusCode::INVALID_ARGUMENT,
            "cgroup_prefix: '" + prefix + "' is not a cgroup path (it must start with '/')"};
  }
  *response = flows_.traffic(*request);
  return grpc::Status::OK;
}

grpc::Status VigilService::GetStatus(grpc::ServerContext*, const v1::GetStatusRequest*,
                                     v1::GetStatusResponse* response) {
  *response = status_();
  return grpc::Status::OK;
}

namespace {

const grpc::Status kNoPolicies{grpc::StatusCode::UNIMPLEMENTED,
                               "this agent runs without a policy engine"};

void fillStatus(const policy::PolicyInfo& info, const std::vector<uint64_t>& hits,
                const std::map<uint32_t, XdpCounters>& xdp, v1::PolicyStatus* out) {
  out->set_name(info.name);
  out->set_source(info.source);
  out->set_error(info.error);
  if (!info.policy) {
    out->set_state("error");
    return;
  }
  const policy::Policy& p = *info.policy;
  out->set_mode(policy::toString(p.mode));
  out->set_state(!info.error.empty()        ? "error"
                 : p.mode == policy::Mode::enforce ? "enforcing"
                                                   : "audit");
  for (const auto& r : p.exec) {
    auto* rs = out->add_rules();
    rs->set_name(r.name);
    rs->set_action(policy::toString(r.action));
    rs->set_mode(policy::toString(r.effectiveMode(p.mode)));
    auto it = info.ruleSlots.find(r.name);
    if (it != info.ruleSlots.end() && it->second < hits.size()) rs->set_hits(hits[it->second]);
    rs->set_kind("exec");
  }
  if (!p.xdp) return;
  for (const auto& r : p.xdp->rules) {
    auto* rs = out->add_rules();
    rs->set_name(r.name);
    rs->set_kind("xdp");
    rs->set_action(policy::toString(r.action));
    rs->set_mode(policy::toString(r.effectiveMode(p.mode)));
    rs->set_rate_limited(r.rateLimit.has_value());
    auto slot = info.xdpRuleSlots.find(r.name);
    if (slot == info.xdpRuleSlots.end()) continue;
    if (auto c = xdp.find(slot->second); c != xdp.end()) {
      rs->set_packets(c->second.packets);
      rs->set_bytes(c->second.bytes);
      rs->set_limited_packets(c->second.limitedPackets);
      rs->set_limited_bytes(c->second.limitedBytes);
    }
  }
}

}  // namespace

grpc::Status VigilService::ApplyPolicy(grpc::ServerContext*, const v1::ApplyPolicyRequest* request,
                                       v1::ApplyPolicyResponse* response) {
  if (!policies_.store) return kNoPolicies;
  if (request->yaml().size() > policy::kMaxFileBytes) {
    return {grpc::StatusCode::INVALID_ARGUMENT,
            "policy text is larger than " + std::to_string(policy::kMaxFileBytes) + " bytes"};
  }
  std::string source = request->source_name().empty() ? "<api>" : request->source_name();
  auto outcome = policies_.store->applyText(request->yaml(), source);
  if (!outcome) {
    auto code = outcome.error().code() == EEXIST ? grpc::StatusCode::ALREADY_EXISTS
                                                 : grpc::StatusCode::INVALID_ARGUMENT;
    return {code, outcome.error().context()};
  }
  auto hits = policies_.hits ? policies_.hits() : std::vector<uint64_t>{};
  auto xdp = policies_.xdpCounters ? policies_.xdpCounters() : std::map<uint32_t, XdpCounters>{};
  for (const auto& info : policies_.store->list()) {
    if (std::find(outcome->names.begin(), outcome->names.end(), info.name) !=
        outcome->names.end())
      fillStatus(info, hits, xdp, response->add_policies());
  }
  for (const auto& w : outcome->warnings) response->add_warnings(w);
  return grpc::Status::OK;
}

grpc::Status VigilService::DeletePolicy(grpc::ServerContext*,
                                        const v1::DeletePolicyRequest* request,
                                        v1::DeletePolicyResponse*) {
  if (!policies_.store) return kNoPolicies;
  if (request->name().empty()) return {grpc::StatusCode::INVALID_ARGUMENT, "name is empty"};
  auto s = policies_.store->remove(request->name());
  if (s) return grpc::Status::OK;
  switch (s.error().code()) {
    case ENOENT: return {grpc::StatusCode::NOT_FOUND, s.error().context()};
    case EPERM: return {grpc::StatusCode::FAILED_PRECONDITION, s.error().context()};
    default: return {grpc::StatusCode::INTERNAL, s.error().message()};
  }
}

grpc::Status VigilService::ListPolicies(grpc::ServerContext*, const v1::ListPoliciesRequest*,
                                        v1::ListPoliciesResponse* response) {
  if (!policies_.store) return kNoPolicies;
  auto hits = policies_.hits ? policies_.hits() : std::vector<uint64_t>{};
  auto xdp = policies_.xdpCounters ? policies_.xdpCounters() : std::map<uint32_t, XdpCounters>{};
  for (const auto& info : policies_.store->list())
    fillStatus(info, hits, xdp, response->add_policies());
  response->set_enforcement(policies_.enforcement);
  return grpc::Status::OK;
}

}  // namespace vigil::api
