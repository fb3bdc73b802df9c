#pragma once

// The vigil.v1.Vigil gRPC service over the event hubs (process events, flows), the policy
// store and the agent's status.

#include <grpcpp/grpcpp.h>

#include <functional>
#include <map>

#include "bpf/xdp_datapath.hpp"
#include "policy/policy_store.hpp"
#include "server/event_hub.hpp"
#include "vigil/v1/vigil.grpc.pb.h"

namespace vigil::api {

// What the policy RPCs need; without a store they answer UNIMPLEMENTED.
// Kernel counters of one XDP rule, summed over CPUs (the data path's own type: its header
// has no libbpf in it).
using XdpCounters = bpf::XdpRuleCounters;

struct PolicyHooks {
  policy::PolicyStore* store = nullptr;
  std::function<std::vector<uint64_t>()> hits;  // by exec rule slot
  std::string enforcement;
  std::function<std::map<uint32_t, XdpCounters>()> xdpCounters;  // by XDP rule slot
};

// What the flow RPCs need. Without a hub GetFlows answers UNIMPLEMENTED, without `traffic`
// GetTraffic does. `traffic` gets requests whose cgroup_prefix is empty or starts with '/'.
struct FlowHooks {
  server::EventHub* hub = nullptr;  // flow events only, apart from the process-event hub
  std::function<v1::GetTrafficResponse(const v1::GetTrafficRequest&)> traffic;
};

// GetAccounting: errors are EINVAL (a bad request) or ENOTSUP (not on this kernel).
using AccountingFn =
    std::function<Expected<v1::GetAccountingResponse>(const v1::GetAccountingRequest&)>;

class VigilService final : public v1::Vigil::Service {
 public:
  using StatusFn = std::function<v1::GetStatusResponse()>;

  VigilService(server::EventHub& hub, StatusFn status, PolicyHooks policies = {},
               FlowHooks flows = {}, AccountingFn accounting = {});

  grpc::Status GetEvents(grpc::ServerContext* context, const v1::GetEventsRequest* request,
                         grpc::ServerWriter<v1::GetEventsResponse>* writer) override;
  grpc::Status GetStatus(grpc::ServerContext* context, const v1::GetStatusRequest* request,
                         v1::GetStatusResponse* response) override;
  grpc::Status ApplyPolicy(grpc::ServerContext* context, const v1::ApplyPolicyRequest* request,
                           v1::ApplyPolicyResponse* response) override;
  grpc::Status DeletePolicy(grpc::ServerContext* context, const v1::DeletePolicyRequest* request,
                            v1::DeletePolicyResponse* response) override;
  grpc::Status ListPolicies(grpc::ServerContext* context, const v1::ListPoliciesRequest* request,
                            v1::ListPoliciesResponse* response) override;
  grpc::Status GetFlows(grpc::ServerContext* context, const v1::GetFlowsRequest* request,
                        grpc::ServerWriter<v1::GetFlowsResponse>* writer) override;
  grpc::Status GetTraffic(grpc::ServerContext* context, const v1::GetTrafficRequest* request,
                          v1::GetTrafficResponse* response) override;
  grpc::Status GetAccounting(grpc::ServerContext* context, const v1::GetAccountingRequest* request,
                             v1::GetAccountingResponse* response) override;

 private:
  server::EventHub& hub_;
  StatusFn status_;
  PolicyHooks policies_;
  FlowHooks flows_;
  AccountingFn accounting_;
};

}  // namespace vigil::api
