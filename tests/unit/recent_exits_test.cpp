// The table of recent exits behind GetAccounting's since: exit events become rows with their
// memory, the oldest go first when it is full, and a query returns what exited since a time.
#include "events/recent_exits.hpp"

#include <gtest/gtest.h>

namespace vigil::events {
namespace {

v1::Event exitEvent(uint32_t pid, int64_t seconds, uint64_t peak, std::optional<uint64_t> rss) {
  v1::Event ev;
  ev.set_type(v1::EVENT_TYPE_EXIT);
  ev.mutable_time()->set_seconds(seconds);
  v1::ExitEvent* x = ev.mutable_exit();
  x->set_signal(pid % 2 ? 9 : 0);
  x->set_exit_code(pid % 2 ? 0 : 3);
  x->set_peak_rss_bytes(peak);
  if (rss) x->set_rss_bytes(*rss);
  v1::Process* p = x->mutable_process();
  p->set_pid(pid);
  p->set_comm("job");
  p->set_binary("/usr/bin/job");
  p->set_exec_id("node:1:" + std::to_string(pid));
  p->set_cgroup_id(7);
  p->set_cgroup_path("/kubepods/pod-a/c1");
  p->mutable_workload()->set_kind("pod");
  p->mutable_workload()->set_pod("cart");
  return ev;
}

TEST(RecentExits, AnExitBecomesARowWithItsMemoryAndHowItEnded) {
  RecentExits exits(8);
  exits.record(exitEvent(11, 100, 8192, 4096));
  exits.record(exitEvent(12, 101, 8192, std::nullopt));  // a kernel that gives no RSS at exit
  v1::Event exec;
  exec.mutable_exec()->mutable_process()->set_pid(13);
  exits.record(exec);  // not an exit: ignored
  auto rows = exits.since(0);
  ASSERT_EQ(rows.size(), 2u);
  const auto& a = rows[0];
  EXPECT_EQ(a.pid(), 11u);
  EXPECT_EQ(a.comm(), "job");
  EXPECT_EQ(a.cgroup_id(), 7u);
  EXPECT_EQ(a.cgroup_path(), "/kubepods/pod-a/c1");
  EXPECT_EQ(a.workload().pod(), "cart");
  EXPECT_EQ(a.memory().rss_bytes(), 4096u);
  EXPECT_EQ(a.memory().peak_rss_bytes(), 8192u);
  EXPECT_EQ(a.processes(), 1u);
  EXPECT_EQ(a.threads(), 0u);
  ASSERT_TRUE(a.has_exited());
  EXPECT_EQ(a.exited().time().seconds(), 100);
  EXPECT_EQ(a.exited().signal(), 9);
  EXPECT_EQ(a.exited().binary(), "/usr/bin/job");
  EXPECT_EQ(a.exited().exec_id(), "node:1:11");
  EXPECT_TRUE(a.exited().has_rss());
  EXPECT_FALSE(rows[1].exited().has_rss());
  EXPECT_EQ(rows[1].memory().rss_bytes(), 0u);
  EXPECT_EQ(rows[1].exited().exit_code(), 3);
}

TEST(RecentExits, SinceIsInclusiveAndTheOldestGoFirst) {
  RecentExits exits(3);
  for (uint32_t i = 0; i < 5; i++) exits.record(exitEvent(100 + i, 1000 + i, 1, 1));
  EXPECT_EQ(exits.size(), 3u);
  EXPECT_EQ(exits.capacity(), 3u);
  EXPECT_EQ(exits.evicted(), 2u);
  auto rows = exits.since(1003'000'000'000);
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[0].pid(), 103u);
  EXPECT_EQ(rows[1].pid(), 104u);
  EXPECT_EQ(exits.since(0).front().pid(), 102u) << "the two oldest were pushed out";
  EXPECT_TRUE(exits.since(1005'000'000'000).empty());
}

TEST(RecentExits, ExitsFromTwoCpusArriveOutOfOrderAndStaySorted) {
  RecentExits exits(10);
  exits.record(exitEvent(1, 50, 1, 1));
  exits.record(exitEvent(2, 40, 1, 1));
  exits.record(exitEvent(3, 60, 1, 1));
  auto rows = exits.since(45'000'000'000);
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[0].pid(), 1u);
  EXPECT_EQ(rows[1].pid(), 3u);
}

TEST(RecentExits, SizeZeroKeepsNothing) {
  RecentExits exits(0);
  exits.record(exitEvent(1, 50, 1, 1));
  EXPECT_EQ(exits.size(), 0u);
  EXPECT_TRUE(exits.since(0).empty());
}

}  // namespace
}  // namespace vigil::events
