// The JSON lines export: every event is one whole line in exactly one file, across rotations.
#include "export/json_export.hpp"

#include <google/protobuf/util/json_util.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <set>
#include <thread>

namespace vigil::api {
namespace {

namespace fs = std::filesystem;

class JsonExportTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("vigil-export-test-" + std::to_string(getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::string path() const { return (dir_ / "events.json").string(); }

  // Every line of the export and its rotations, oldest file first.
  std::vector<std::string> lines(uint32_t maxFiles) const {
    std::vector<std::string> out;
    for (int64_t i = maxFiles; i >= 0; i--) {
      std::string p = i == 0 ? path() : path() + "." + std::to_string(i);
      std::ifstream in(p);
      std::string line;
      while (std::getline(in, line)) out.push_back(line);
    }
    return out;
  }

  static v1::Event exec(uint32_t pid) {
    v1::Event ev;
    ev.set_type(v1::EVENT_TYPE_EXEC);
    ev.set_node_name("node-1");
    ev.mutable_time()->set_seconds(1'795'000'000 + pid);
    auto* p = ev.mutable_exec()->mutable_process();
    p->set_pid(pid);
    p->set_binary("/usr/bin/something-with-a-longer-name");
    for (int i = 0; i < 4; i++) p->add_args("argument-" + std::to_string(i));
    return ev;
  }

  fs::path dir_;
};

TEST_F(JsonExportTest, RotatingUnderLoadLosesNoLine) {
  server::EventHub hub(16, 16);
  JsonExportOptions o;
  o.path = path();
  o.maxBytes = 65536;
  o.maxFiles = 1000;      // every file stays: about 100 of them
  o.queueSize = 1 << 20;  // the test publishes faster than anything would
  constexpr uint32_t kEvents = 20000;
  auto exporter = JsonExporter::start(o, {&hub});
  ASSERT_TRUE(exporter) << exporter.error().message();
  std::thread publisher([&] {
    for (uint32_t i = 1; i <= kEvents; i++) hub.publish(exec(i));
  });
  publisher.join();
  exporter->reset();  // writes what is queued

  auto all = lines(o.maxFiles);
  ASSERT_EQ(all.size(), kEvents);
  std::set<uint32_t> pids;
  uint32_t previous = 0;
  for (const auto& line : all) {
    v1::Event ev;
    ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(line, &ev).ok()) << line;
    uint32_t pid = ev.exec().process().pid();
    EXPECT_GT(pid, previous) << "out of order";  // oldest file first, in publish order
    previous = pid;
    pids.insert(pid);
  }
  EXPECT_EQ(pids.size(), kEvents);
  size_t files = 0;
  for (const auto& f : fs::directory_iterator(dir_)) {
    EXPECT_LE(f.file_size(), o.maxBytes);
    files++;
  }
  EXPECT_GT(files, 50u);
}

TEST_F(JsonExportTest, KeepsAtMostMaxFilesRotatedFiles) {
  server::EventHub hub(16, 1 << 16);
  JsonExportOptions o;
  o.path = path();
  o.maxBytes = 4096;
  o.maxFiles = 2;
  auto exporter = JsonExporter::start(o, {&hub});
  ASSERT_TRUE(exporter);
  for (uint32_t i = 1; i <= 200; i++) hub.publish(exec(i));
  exporter->reset();
  EXPECT_TRUE(fs::exists(path()));
  EXPECT_TRUE(fs::exists(path() + ".1"));
  EXPECT_TRUE(fs::exists(path() + ".2"));
  EXPECT_FALSE(fs::exists(path() + ".3"));
  // The newest events survive; the last line is the last event.
  auto kept = lines(2);
  ASSERT_FALSE(kept.empty());
  v1::Event last;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(kept.back(), &last).ok());
  EXPECT_EQ(last.exec().process().pid(), 200u);
}

TEST_F(JsonExportTest, AppendsToAnExistingFileAndFiltersByType) {
  { std::ofstream(path()) << "{\"earlier\":true}\n"; }
  server::EventHub hub(16, 64);
  server::EventHub flows(16, 64);
  JsonExportOptions o;
  o.path = path();
  o.types = {"exit", "flow"};
  auto exporter = JsonExporter::start(o, {&hub, &flows});
  ASSERT_TRUE(exporter);
  hub.publish(exec(1));
  v1::Event exit;
  exit.set_type(v1::EVENT_TYPE_EXIT);
  exit.mutable_exit()->mutable_process()->set_pid(2);
  hub.publish(exit);
  v1::Event lost;
  lost.set_type(v1::EVENT_TYPE_LOST);
  lost.mutable_lost()->set_count(7);
  hub.publish(lost);
  v1::Event flow;
  flow.set_type(v1::EVENT_TYPE_FLOW);
  flow.mutable_flow()->set_protocol("udp");
  flows.publish(flow);
  exporter->reset();
  auto all = lines(0);
  ASSERT_EQ(all.size(), 4u);
  EXPECT_EQ(all[0], "{\"earlier\":true}");
  std::multiset<std::string> types;
  for (size_t i = 1; i < all.size(); i++) {
    v1::Event ev;
    ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(all[i], &ev).ok()) << all[i];
    types.insert(v1::EventType_Name(ev.type()));
    // Proto field names, zero values included: the same keys on every line of a type.
    EXPECT_NE(all[i].find("\"node_name\""), std::string::npos) << all[i];
  }
  EXPECT_EQ(types, (std::multiset<std::string>{"EVENT_TYPE_EXIT", "EVENT_TYPE_LOST",
                                                "EVENT_TYPE_FLOW"}));
}

TEST_F(JsonExportTest, RejectsBadOptions) {
  server::EventHub hub(16, 64);
  JsonExportOptions o;
  o.path = path();
  o.types = {"exec", "bogus"};
  auto bad = JsonExporter::start(o, {&hub});
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().message().find("unknown type 'bogus'"), std::string::npos);
  o.types.clear();
  o.maxBytes = 100;
  bad = JsonExporter::start(o, {&hub});
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().message().find("at least 4096"), std::string::npos);
  o.maxBytes = 1 << 20;
  o.path = (dir_ / "missing" / "events.json").string();
  bad = JsonExporter::start(o, {&hub});
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().message().find("missing/events.json"), std::string::npos)
      << bad.error().message();
  EXPECT_EQ(hub.clients(), 0u);
}

}  // namespace
}  // namespace vigil::api
