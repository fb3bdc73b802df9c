// The API server on a real unix socket: mode 0600, the standard health service, a stale
// socket replaced, a live one refused.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>

#include <grpcpp/grpcpp.h>

#include "export/api_server.hpp"
#include "export/grpc_service.hpp"
#include "grpc/health/v1/health.grpc.pb.h"

namespace vigil::api {
namespace {
namespace fs = std::filesystem;

class ApiServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir = fs::temp_directory_path() / ("vigil-api-" + std::to_string(getpid()));
    fs::remove_all(dir);
    sock = (dir / "sub" / "vigil.sock").string();
  }
  void TearDown() override { fs::remove_all(dir); }

  fs::path dir;
  std::string sock;
  server::EventHub hub{10, 10};
  VigilService service{hub, [] { return v1::GetStatusResponse(); }};
};

TEST_F(ApiServerTest, ServesHealthOnAnOwnerOnlySocket) {
  auto server = ApiServer::start({Endpoint::Kind::unix_socket, sock}, std::nullopt, &service);
  ASSERT_TRUE(server.ok()) << server.error().message();
  struct stat st {};
  ASSERT_EQ(stat(sock.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);

  auto channel = grpc::CreateChannel("unix:" + sock, grpc::InsecureChannelCredentials());
  auto health = grpc::health::v1::Health::NewStub(channel);
  grpc::ClientContext ctx;
  grpc::health::v1::HealthCheckResponse resp;
  ASSERT_TRUE(health->Check(&ctx, {}, &resp).ok());
  EXPECT_EQ(resp.status(), grpc::health::v1::HealthCheckResponse::SERVING);

  // A second agent on the same socket is refused, and says why.
  server::EventHub hub2{10, 10};
  VigilService service2{hub2, [] { return v1::GetStatusResponse(); }};
  auto second = ApiServer::start({Endpoint::Kind::unix_socket, sock}, std::nullopt, &service2);
  ASSERT_FALSE(second.ok());
  EXPECT_NE(second.error().message().find("another vigil-agent"), std::string::npos);

  (*server)->shutdown();
  EXPECT_FALSE(fs::exists(sock));
}

TEST_F(ApiServerTest, ReplacesAStaleSocketFile) {
  fs::create_directories(fs::path(sock).parent_path());
  std::ofstream(sock) << "left over";
  auto server = ApiServer::start({Endpoint::Kind::unix_socket, sock}, std::nullopt, &service);
  ASSERT_TRUE(server.ok()) << server.error().message();
  auto stub = v1::Vigil::NewStub(
      grpc::CreateChannel("unix:" + sock, grpc::InsecureChannelCredentials()));
  grpc::ClientContext ctx;
  v1::GetStatusResponse resp;
  EXPECT_TRUE(stub->GetStatus(&ctx, {}, &resp).ok());
}

TEST_F(ApiServerTest, TcpListenerOnAnEphemeralPort) {
  auto server = ApiServer::start({Endpoint::Kind::unix_socket, sock},
                                 Endpoint{Endpoint::Kind::tcp, "127.0.0.1:0"}, &service);
  ASSERT_TRUE(server.ok()) << server.error().message();
  ASSERT_GT((*server)->tcpPort(), 0);
  auto stub = v1::Vigil::NewStub(grpc::CreateChannel(
      "127.0.0.1:" + std::to_string((*server)->tcpPort()), grpc::InsecureChannelCredentials()));
  grpc::ClientContext ctx;
  v1::GetStatusResponse resp;
  EXPECT_TRUE(stub->GetStatus(&ctx, {}, &resp).ok());
}

TEST_F(ApiServerTest, HealthAloneOnItsOwnPort) {
  auto server = ApiServer::start({Endpoint::Kind::unix_socket, sock}, std::nullopt, &service);
  ASSERT_TRUE(server.ok()) << server.error().message();
  ASSERT_TRUE((*server)->startHealthOnly("127.0.0.1:0").ok());
  ASSERT_GT((*server)->healthPort(), 0);
  auto channel = grpc::CreateChannel("127.0.0.1:" + std::to_string((*server)->healthPort()),
                                     grpc::InsecureChannelCredentials());
  auto health = grpc::health::v1::Health::NewStub(channel);
  for (const char* name : {"", "vigil.v1.Vigil"}) {
    grpc::ClientContext ctx;
    grpc::health::v1::HealthCheckRequest req;
    req.set_service(name);
    grpc::health::v1::HealthCheckResponse resp;
    ASSERT_TRUE(health->Check(&ctx, req, &resp).ok()) << name;
    EXPECT_EQ(resp.status(), grpc::health::v1::HealthCheckResponse::SERVING) << name;
  }
  {
    grpc::ClientContext ctx;
    grpc::health::v1::HealthCheckRequest req;
    req.set_service("no.such.Service");
    grpc::health::v1::HealthCheckResponse resp;
    EXPECT_EQ(health->Check(&ctx, req, &resp).error_code(), grpc::StatusCode::NOT_FOUND);
  }
  {
    // Watch would hold a thread per stream on a port open to the node's network.
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
    auto reader = health->Watch(&ctx, {});
    grpc::health::v1::HealthCheckResponse resp;
    EXPECT_FALSE(reader->Read(&resp));
    EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::UNIMPLEMENTED);
  }
  // The API itself is not served there.
  auto stub = v1::Vigil::NewStub(channel);
  grpc::ClientContext ctx;
  v1::GetStatusResponse resp;
  EXPECT_EQ(stub->GetStatus(&ctx, {}, &resp).error_code(), grpc::StatusCode::UNIMPLEMENTED);

  // A port in use is a clear error.
  auto busy = ApiServer::start({Endpoint::Kind::unix_socket, (dir / "b.sock").string()},
                               std::nullopt, &service);
  ASSERT_TRUE(busy.ok());
  auto s = (*busy)->startHealthOnly("127.0.0.1:" + std::to_string((*server)->healthPort()));
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.error().message().find("serve gRPC health on 127.0.0.1:"), std::string::npos);
}

TEST(ParseHostPort, AcceptsTheUsualFormsAndNamesWhatIsWrong) {
  EXPECT_EQ(parseHostPort(":9610").value(), "0.0.0.0:9610");
  EXPECT_EQ(parseHostPort("127.0.0.1:0").value(), "127.0.0.1:0");
  EXPECT_EQ(parseHostPort("tcp://localhost:9610").value(), "localhost:9610");
  EXPECT_EQ(parseHostPort("[::1]:9610").value(), "[::1]:9610");
  for (const char* bad : {"9610", "host:", "host:99999", "host:x1", "::1:9610", "a b:1"}) {
    auto r = parseHostPort(bad);
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_NE(r.error().message().find(std::string("\"") + bad + "\""), std::string::npos)
        << r.error().message();
  }
}

}  // namespace
}  // namespace vigil::api
