// The gRPC service over an in-process channel: history, follow, filters, errors, status.
#include <gtest/gtest.h>

#include <thread>

#include <grpcpp/grpcpp.h>

#include "export/api_server.hpp"
#include "export/grpc_service.hpp"

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

}  // namespace
}  // namespace vigil::api
