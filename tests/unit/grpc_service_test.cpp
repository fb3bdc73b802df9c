// The gRPC service over an in-process channel: history, follow, filters, errors, status,
// policies with their exec and XDP rules, and flows and traffic.
#include <gtest/gtest.h>

#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "export/api_server.hpp"
#include "export/grpc_service.hpp"
#include "fake_host.hpp"
#include "policy/policy_store.hpp"

namespace vigil::api {
namespace {

v1::Event execEvent(uint32_t pid, const std::string& bin) {
  v1::Event ev;
  ev.set_type(v1::EVENT_TYPE_EXEC);
  ev.mutable_exec()->mutable_process()->set_pid(pid);
  ev.mutable_exec()->mutable_process()->set_binary(bin);
  return ev;
}

class ServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    service = std::make_unique<VigilService>(hub, [] {
      v1::GetStatusResponse s;
      s.set_version("test");
      auto* c = s.add_capabilities();
      c->set_name("bpf_lsm");
      c->set_detail("not in the LSM list");
      return s;
    });
    grpc::ServerBuilder builder;
    builder.RegisterService(service.get());
    server = builder.BuildAndStart();
    stub = v1::Vigil::NewStub(server->InProcessChannel({}));
  }
  void TearDown() override {
    hub.close();
    server->Shutdown();
  }

  std::vector<v1::Event> readAll(const v1::GetEventsRequest& req, grpc::Status* status) {
    grpc::ClientContext ctx;
    auto reader = stub->GetEvents(&ctx, req);
    std::vector<v1::Event> out;
    v1::GetEventsResponse resp;
    while (reader->Read(&resp)) out.push_back(resp.event());
    *status = reader->Finish();
    return out;
  }

  server::EventHub hub{100, 100};
  std::unique_ptr<VigilService> service;
  std::unique_ptr<grpc::Server> server;
  std::unique_ptr<v1::Vigil::Stub> stub;
};

TEST_F(ServiceTest, LastReturnsNewestMatching) {
  for (uint32_t i = 1; i <= 5; i++) hub.publish(execEvent(i, i % 2 ? "/bin/a" : "/bin/b"));
  v1::GetEventsRequest req;
  req.set_last(2);
  req.add_binaries("/bin/a");
  grpc::Status st;
  auto events = readAll(req, &st);
  ASSERT_TRUE(st.ok()) << st.error_message();
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[0].exec().process().pid(), 3u);
  EXPECT_EQ(events[1].exec().process().pid(), 5u);
}

TEST_F(ServiceTest, BadFilterIsInvalidArgument) {
  v1::GetEventsRequest req;
  req.add_types(static_cast<v1::EventType>(99));
  grpc::Status st;
  readAll(req, &st);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(st.error_message().find("unsupported event type"), std::string::npos);
}

TEST_F(ServiceTest, FollowStreamsNewEventsUntilCancelled) {
  hub.publish(execEvent(1, "/old"));
  v1::GetEventsRequest req;
  req.set_follow(true);  // no last, no since: only new events
  grpc::ClientContext ctx;
  auto reader = stub->GetEvents(&ctx, req);
  std::thread producer([&] {
    // Publish until the subscription exists, then a few more.
    while (hub.clients() == 0) std::this_thread::sleep_for(std::chrono::milliseconds(5));
    hub.publish(execEvent(2, "/new"));
    hub.publish(execEvent(3, "/new"));
  });
  v1::GetEventsResponse resp;
  ASSERT_TRUE(reader->Read(&resp));
  EXPECT_EQ(resp.event().exec().process().pid(), 2u);
  ASSERT_TRUE(reader->Read(&resp));
  EXPECT_EQ(resp.event().exec().process().pid(), 3u);
  producer.join();
  ctx.TryCancel();
  while (reader->Read(&resp)) {
  }
  EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::CANCELLED);
  for (int i = 0; i < 100 && hub.clients() != 0; i++)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  EXPECT_EQ(hub.clients(), 0u);
}

TEST_F(ServiceTest, FollowEndsWithUnavailableWhenAgentStops) {
  v1::GetEventsRequest req;
  req.set_follow(true);
  grpc::ClientContext ctx;
  auto reader = stub->GetEvents(&ctx, req);
  while (hub.clients() == 0) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  hub.close();
  v1::GetEventsResponse resp;
  EXPECT_FALSE(reader->Read(&resp));
  EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::UNAVAILABLE);
}

TEST_F(ServiceTest, StatusComesFromTheAgent) {
  grpc::ClientContext ctx;
  v1::GetStatusResponse resp;
  ASSERT_TRUE(stub->GetStatus(&ctx, {}, &resp).ok());
  EXPECT_EQ(resp.version(), "test");
  EXPECT_EQ(resp.capabilities(0).detail(), "not in the LSM list");
}

// --- Flows and traffic ------------------------------------------------------------------------

v1::Event flowEvent(uint32_t port, int64_t secs) {
  v1::Event ev;
  ev.set_type(v1::EVENT_TYPE_FLOW);
  ev.mutable_time()->set_seconds(secs);
  auto* f = ev.mutable_flow();
  f->set_event_type(v1::FLOW_NEW);
  f->set_protocol("tcp");
  f->mutable_source()->set_ip("10.0.0.1");
  f->mutable_source()->set_port(40000);
  f->mutable_destination()->set_ip("10.0.0.2");
  f->mutable_destination()->set_port(port);
  return ev;
}

// The service with a flow hub (beside the process-event hub) and a traffic hook.
class FlowServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    start(FlowHooks{&flows, [this](const v1::GetTrafficRequest& req) {
                      trafficRequests.push_back(req);
                      v1::GetTrafficResponse resp;
                      resp.set_source("cgroup_skb on /sys/fs/cgroup");
                      resp.add_rows()->set_cgroup_path("/a");
                      return resp;
                    }});
  }
  void TearDown() override {
    events.close();
    flows.close();
    server->Shutdown();
  }
  void start(FlowHooks hooks) {
    if (server) server->Shutdown();
    service = std::make_unique<VigilService>(
        events, [] { return v1::GetStatusResponse{}; }, PolicyHooks{}, std::move(hooks));
    grpc::ServerBuilder builder;
    builder.RegisterService(service.get());
    server = builder.BuildAndStart();
    stub = v1::Vigil::NewStub(server->InProcessChannel({}));
  }

  std::vector<v1::Event> readFlows(const v1::GetFlowsRequest& req, grpc::Status* status) {
    grpc::ClientContext ctx;
    auto reader = stub->GetFlows(&ctx, req);
    std::vector<v1::Event> out;
    v1::GetFlowsResponse resp;
    while (reader->Read(&resp)) out.push_back(resp.event());
    *status = reader->Finish();
    return out;
  }

  // Destination ports of the flows read with `req`; fails the test on an error.
  std::vector<uint32_t> ports(const v1::GetFlowsRequest& req) {
    grpc::Status st;
    std::vector<uint32_t> out;
    for (const auto& ev : readFlows(req, &st)) out.push_back(ev.flow().destination().port());
    EXPECT_TRUE(st.ok()) << st.error_message();
    return out;
  }

  server::EventHub events{100, 100};
  server::EventHub flows{100, 100};
  std::vector<v1::GetTrafficRequest> trafficRequests;
  std::unique_ptr<VigilService> service;
  std::unique_ptr<grpc::Server> server;
  std::unique_ptr<v1::Vigil::Stub> stub;
};

TEST_F(FlowServiceTest, HistoryLastFirstSinceUntilAndFilters) {
  for (uint32_t i = 1; i <= 6; i++) flows.publish(flowEvent(i % 2 ? 443 : 53, 100 + i));
  events.publish(execEvent(1, "/bin/a"));  // the process hub is a different stream

  EXPECT_EQ(ports({}), (std::vector<uint32_t>{443, 53, 443, 53, 443, 53}));
  v1::GetFlowsRequest last;
  last.set_last(2);
  EXPECT_EQ(ports(last), (std::vector<uint32_t>{443, 53}));
  v1::GetFlowsRequest first;
  first.set_first(1);
  first.mutable_include()->add_port(53);
  EXPECT_EQ(ports(first), (std::vector<uint32_t>{53}));
  v1::GetFlowsRequest window;
  window.mutable_since()->set_seconds(103);
  window.mutable_until()->set_seconds(105);
  EXPECT_EQ(ports(window), (std::vector<uint32_t>{443, 53}));
  v1::GetFlowsRequest notDns;
  notDns.mutable_exclude()->add_destination_port(53);
  EXPECT_EQ(ports(notDns), (std::vector<uint32_t>{443, 443, 443}));

  grpc::Status st;
  auto all = readFlows({}, &st);
  ASSERT_FALSE(all.empty());
  EXPECT_EQ(all[0].type(), v1::EVENT_TYPE_FLOW);
  EXPECT_EQ(all[0].time().seconds(), 101);
}

TEST_F(FlowServiceTest, FollowStreamsNewFlows) {
  flows.publish(flowEvent(1, 100));
  v1::GetFlowsRequest req;
  req.set_follow(true);
  req.mutable_include()->add_port(443);
  grpc::ClientContext ctx;
  auto reader = stub->GetFlows(&ctx, req);
  std::thread producer([&] {
    while (flows.clients() == 0) std::this_thread::sleep_for(std::chrono::milliseconds(5));
    flows.publish(flowEvent(80, 101));
    flows.publish(flowEvent(443, 102));
  });
  v1::GetFlowsResponse resp;
  ASSERT_TRUE(reader->Read(&resp));
  EXPECT_EQ(resp.event().flow().destination().port(), 443u);
  producer.join();
  EXPECT_EQ(events.clients(), 0u);
  flows.close();
  while (reader->Read(&resp)) {
  }
  EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::UNAVAILABLE);
}

TEST_F(FlowServiceTest, BadFiltersAreInvalidArgument) {
  v1::GetFlowsRequest req;
  req.mutable_include()->add_ip("10.0.0.0/33");
  grpc::Status st;
  readFlows(req, &st);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(st.error_message().find("include.ip"), std::string::npos) << st.error_message();

  v1::GetFlowsRequest both;
  both.set_first(1);
  both.set_last(1);
  readFlows(both, &st);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
}

TEST_F(FlowServiceTest, TrafficComesFromTheHookAndChecksThePrefix) {
  grpc::ClientContext ctx;
  v1::GetTrafficRequest req;
  req.set_cgroup_prefix("/system.slice");
  v1::GetTrafficResponse resp;
  ASSERT_TRUE(stub->GetTraffic(&ctx, req, &resp).ok());
  EXPECT_EQ(resp.source(), "cgroup_skb on /sys/fs/cgroup");
  ASSERT_EQ(resp.rows_size(), 1);
  ASSERT_EQ(trafficRequests.size(), 1u);
  EXPECT_EQ(trafficRequests[0].cgroup_prefix(), "/system.slice");

  grpc::ClientContext bad;
  req.set_cgroup_prefix("system.slice");
  grpc::Status st = stub->GetTraffic(&bad, req, &resp);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(st.error_message().find("cgroup_prefix"), std::string::npos);
  EXPECT_EQ(trafficRequests.size(), 1u);
}

TEST_F(FlowServiceTest, WithoutFlowTrackingBothAreUnimplemented) {
  start(FlowHooks{});
  grpc::Status st;
  readFlows({}, &st);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::UNIMPLEMENTED);
  EXPECT_EQ(st.error_message(), "flow tracking is not running on this agent");
  grpc::ClientContext ctx;
  v1::GetTrafficResponse resp;
  EXPECT_EQ(stub->GetTraffic(&ctx, {}, &resp).error_code(), grpc::StatusCode::UNIMPLEMENTED);
}

TEST(Endpoint, ParsesAndRejects) {
  auto u = parseEndpoint("unix:///run/vigil/vigil.sock");
  ASSERT_TRUE(u.ok());
  EXPECT_EQ(u->kind, Endpoint::Kind::unix_socket);
  EXPECT_EQ(u->where, "/run/vigil/vigil.sock");
  auto t = parseEndpoint("tcp://127.0.0.1:4245");
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(t->where, "127.0.0.1:4245");
  EXPECT_FALSE(parseEndpoint("unix://relative").ok());
  EXPECT_FALSE(parseEndpoint("tcp://127.0.0.1").ok());
  EXPECT_FALSE(parseEndpoint("http://x:1").ok());
}

// --- Policies with XDP rules -----------------------------------------------------------------

// An edge policy: one exec rule, then three XDP rules on eth0.
constexpr const char* kEdgePolicy = R"(apiVersion: vigil.dev/v1alpha1
kind: Policy
metadata:
  name: edge
spec:
  mode: enforce
  exec:
    - name: no-shell
      action: kill
      match: {uids: [0]}
  xdp:
    interfaces: [eth0]
    rules:
      - name: scanners
        action: drop
        match: {sourceCIDRs: [203.0.113.0/24]}
      - name: flood
        mode: audit
        match: {protocol: udp}
        rateLimit: {packetsPerSecond: 1000}
      - name: monitoring
        action: pass
        match: {sourceCIDRs: ["2001:db8::/32"]}
)";

// The service over a real PolicyStore whose kernel and host are fakes; kernel counters come
// from maps the test fills in.
class PolicyServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    host_.interfaces["eth0"] = policy::InterfaceInfo{2, false};
    store_ = std::make_unique<policy::PolicyStore>(
        host_.resolver(),
        [](const policy::CompiledRules&, const std::vector<uint32_t>&) { return Status{}; },
        host_.xdpResolver(),
        [this](const policy::CompiledXdp&, const std::vector<uint32_t>&) -> Status {
          if (xdpFails_) return Error(EBUSY, "attach xdp to eth0");
          return {};
        });
    PolicyHooks hooks{store_.get(), [this] { return hits_; }, "sigkill (test)",
                      [this] { return xdp_; }};
    service_ = std::make_unique<VigilService>(
        hub_, [] { return v1::GetStatusResponse{}; }, hooks);
    grpc::ServerBuilder builder;
    builder.RegisterService(service_.get());
    server_ = builder.BuildAndStart();
    stub_ = v1::Vigil::NewStub(server_->InProcessChannel({}));
  }
  void TearDown() override {
    hub_.close();
    server_->Shutdown();
  }

  v1::ListPoliciesResponse list() {
    grpc::ClientContext ctx;
    v1::ListPoliciesResponse resp;
    grpc::Status st = stub_->ListPolicies(&ctx, {}, &resp);
    EXPECT_TRUE(st.ok()) << st.error_message();
    return resp;
  }

  // The XDP slot of a rule of policy "edge".
  uint32_t xdpSlot(const std::string& rule) {
    for (const auto& info : store_->list()) {
      if (info.name != "edge") continue;
      auto it = info.xdpRuleSlots.find(rule);
      if (it != info.xdpRuleSlots.end()) return it->second;
    }
    ADD_FAILURE() << "edge/" << rule << " has no XDP slot";
    return ~0u;
  }

  policy::testing::FakeHost host_;
  std::unique_ptr<policy::PolicyStore> store_;
  std::vector<uint64_t> hits_;
  std::map<uint32_t, XdpCounters> xdp_;
  bool xdpFails_ = false;
  server::EventHub hub_{100, 100};
  std::unique_ptr<VigilService> service_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<v1::Vigil::Stub> stub_;
};

TEST_F(PolicyServiceTest, ListPoliciesShowsXdpRulesWithTheirCounters) {
  auto applied = store_->applyText(kEdgePolicy, "edge.yaml");
  ASSERT_TRUE(applied.ok()) << applied.error().message();
  const uint32_t execSlot = store_->list()[0].ruleSlots.at("no-shell");
  hits_.assign(execSlot + 1, 0);
  hits_[execSlot] = 4;
  // The exec slot number is also an XDP slot number: the two must not be mixed up.
  xdp_[xdpSlot("scanners")] = XdpCounters{1000, 64000, 0, 0};
  xdp_[xdpSlot("flood")] = XdpCounters{5000, 700000, 1200, 96000};
  ASSERT_EQ(xdpSlot("scanners"), execSlot);

  v1::ListPoliciesResponse resp = list();
  EXPECT_EQ(resp.enforcement(), "sigkill (test)");
  ASSERT_EQ(resp.policies_size(), 1);
  const v1::PolicyStatus& p = resp.policies(0);
  EXPECT_EQ(p.name(), "edge");
  EXPECT_EQ(p.source(), "api");
  EXPECT_EQ(p.mode(), "enforce");
  EXPECT_EQ(p.state(), "enforcing");
  EXPECT_EQ(p.error(), "");
  ASSERT_EQ(p.rules_size(), 4);

  const v1::RuleStatus& exec = p.rules(0);
  EXPECT_EQ(exec.name(), "no-shell");
  EXPECT_EQ(exec.kind(), "exec");
  EXPECT_EQ(exec.action(), "kill");
  EXPECT_EQ(exec.hits(), 4u);
  EXPECT_EQ(exec.packets(), 0u);

  const v1::RuleStatus& scanners = p.rules(1);
  EXPECT_EQ(scanners.name(), "scanners");
  EXPECT_EQ(scanners.kind(), "xdp");
  EXPECT_EQ(scanners.action(), "drop");
  EXPECT_EQ(scanners.mode(), "enforce");
  EXPECT_FALSE(scanners.rate_limited());
  EXPECT_EQ(scanners.packets(), 1000u);
  EXPECT_EQ(scanners.bytes(), 64000u);
  EXPECT_EQ(scanners.limited_packets(), 0u);
  EXPECT_EQ(scanners.limited_bytes(), 0u);
  EXPECT_EQ(scanners.hits(), 0u) << "XDP rules count packets, not exec hits";

  const v1::RuleStatus& flood = p.rules(2);
  EXPECT_EQ(flood.name(), "flood");
  EXPECT_EQ(flood.kind(), "xdp");
  EXPECT_EQ(flood.action(), "drop");
  EXPECT_EQ(flood.mode(), "audit");
  EXPECT_TRUE(flood.rate_limited());
  EXPECT_EQ(flood.packets(), 5000u);
  EXPECT_EQ(flood.bytes(), 700000u);
  EXPECT_EQ(flood.limited_packets(), 1200u);
  EXPECT_EQ(flood.limited_bytes(), 96000u);

  // No counters read for this slot: zeros.
  const v1::RuleStatus& monitoring = p.rules(3);
  EXPECT_EQ(monitoring.name(), "monitoring");
  EXPECT_EQ(monitoring.kind(), "xdp");
  EXPECT_EQ(monitoring.action(), "pass");
  EXPECT_EQ(monitoring.mode(), "enforce");
  EXPECT_FALSE(monitoring.rate_limited());
  EXPECT_EQ(monitoring.packets(), 0u);
  EXPECT_EQ(monitoring.bytes(), 0u);
}

TEST_F(PolicyServiceTest, ApplyPolicyAnswersWithTheXdpRules) {
  grpc::ClientContext ctx;
  v1::ApplyPolicyRequest req;
  req.set_yaml(kEdgePolicy);
  req.set_source_name("edge.yaml");
  v1::ApplyPolicyResponse resp;
  grpc::Status st = stub_->ApplyPolicy(&ctx, req, &resp);
  ASSERT_TRUE(st.ok()) << st.error_message();
  ASSERT_EQ(resp.policies_size(), 1);
  ASSERT_EQ(resp.policies(0).rules_size(), 4);
  EXPECT_EQ(resp.policies(0).rules(1).kind(), "xdp");
  EXPECT_EQ(resp.policies(0).rules(3).action(), "pass");
}

TEST_F(PolicyServiceTest, RejectedXdpUpdateKeepsListingTheRulesInForce) {
  ASSERT_TRUE(store_->applyText(kEdgePolicy, "edge.yaml").ok());
  xdp_[xdpSlot("scanners")] = XdpCounters{7, 420, 0, 0};

  // A new version the kernel refuses (the interface will not take the program).
  xdpFails_ = true;
  grpc::ClientContext ctx;
  v1::ApplyPolicyRequest req;
  std::string v2 = kEdgePolicy;
  v2.replace(v2.find("203.0.113.0/24"), 14, "203.0.113.0/25");
  req.set_yaml(v2);
  v1::ApplyPolicyResponse applied;
  grpc::Status st = stub_->ApplyPolicy(&ctx, req, &applied);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(st.error_message().find("attach xdp to eth0"), std::string::npos) << st.error_message();

  v1::ListPoliciesResponse resp = list();
  ASSERT_EQ(resp.policies_size(), 1);
  const v1::PolicyStatus& p = resp.policies(0);
  EXPECT_EQ(p.state(), "error");
  EXPECT_NE(p.error().find("attach xdp to eth0"), std::string::npos) << p.error();
  ASSERT_EQ(p.rules_size(), 4);
  EXPECT_EQ(p.rules(1).name(), "scanners");
  EXPECT_EQ(p.rules(1).packets(), 7u);
  EXPECT_EQ(p.rules(1).bytes(), 420u);
}

}  // namespace
}  // namespace vigil::api
