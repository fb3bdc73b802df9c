// Privileged tier: the JSON lines export of a real agent. Execs the test starts reach the file
// exactly once each, across size rotations, and every line is a whole event.
#include <google/protobuf/util/json_util.h>
#include <gtest/gtest.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <set>

#include "events/filter.hpp"
#include "support/traffic.hpp"
#include "test_agent.hpp"

extern char** environ;

namespace vigil {
namespace {
using namespace std::chrono_literals;

TEST(JsonExport, EveryExecReachesTheRotatedFilesExactlyOnce) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root to load BPF programs";
  std::string error;
  std::string exportPath;
  auto env = testing::startTestAgent(
      "vigil-export",
      [&](server::AgentConfig& cfg) {
        exportPath = std::filesystem::path(cfg.policyDir).parent_path() / "events.json";
        cfg.exportFile = exportPath;
        cfg.exportMaxBytes = 16384;
        cfg.exportMaxFiles = 1000;
        cfg.exportTypes = {"exec", "exit"};
        cfg.flows = false;
      },
      &error);
  ASSERT_NE(env, nullptr) << error;

  constexpr int kExecs = 300;
  std::set<uint32_t> pids;
  char arg0[] = "true";
  char* argv[] = {arg0, nullptr};
  for (int i = 0; i < kExecs; i++) {
    pid_t pid = 0;
    ASSERT_EQ(posix_spawn(&pid, "/bin/true", nullptr, nullptr, argv, environ), 0);
    waitpid(pid, nullptr, 0);
    pids.insert(static_cast<uint32_t>(pid));
  }
  // Wait until the agent has published all of them, then stop it: the exporter writes what
  // it has queued before it goes.
  v1::GetEventsRequest req;
  req.add_types(v1::EVENT_TYPE_EXIT);
  auto filter = events::EventFilter::fromRequest(req);
  ASSERT_TRUE(filter);
  auto exited = [&] {
    size_t n = 0;
    for (const auto& ev : env->agent->hub().history(*filter, 0))
      if (pids.count(ev->exit().process().pid())) n++;
    return n;
  };
  ASSERT_TRUE(testing::waitUntil([&] { return exited() == kExecs; }, 20s)) << exited();
  auto status = env->agent->status();
  EXPECT_EQ(status.export_().path(), exportPath);
  env->agent->stop();

  std::map<std::string, int> seen;  // "exec:<pid>" and "exit:<pid>" of our children
  size_t files = 0, lines = 0;
  for (const auto& f : std::filesystem::directory_iterator(
           std::filesystem::path(exportPath).parent_path())) {
    if (f.path().filename().string().rfind("events.json", 0) != 0) continue;
    files++;
    EXPECT_LE(f.file_size(), 16384u) << f.path();
    std::ifstream in(f.path());
    std::string line;
    while (std::getline(in, line)) {
      lines++;
      v1::Event ev;
      ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(line, &ev).ok()) << line;
      ASSERT_TRUE(ev.type() == v1::EVENT_TYPE_EXEC || ev.type() == v1::EVENT_TYPE_EXIT ||
                  ev.type() == v1::EVENT_TYPE_LOST)
          << line;
      uint32_t pid = ev.type() == v1::EVENT_TYPE_EXEC ? ev.exec().process().pid()
                                                      : ev.exit().process().pid();
      if (!pids.count(pid)) continue;
      seen[(ev.type() == v1::EVENT_TYPE_EXEC ? "exec:" : "exit:") + std::to_string(pid)]++;
      if (ev.type() == v1::EVENT_TYPE_EXEC)
        EXPECT_EQ(ev.exec().process().binary(), std::filesystem::canonical("/bin/true").string());
    }
  }
  EXPECT_GT(files, 5u) << "the export did not rotate";
  EXPECT_EQ(seen.size(), 2u * kExecs);
  for (const auto& [key, n] : seen) EXPECT_EQ(n, 1) << key;
  EXPECT_GE(lines, 2u * kExecs);
}

}  // namespace
}  // namespace vigil
