// The process table and the tracker that turns records into events with parent chains.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "events/process_table.hpp"
#include "events/process_tracker.hpp"

namespace vigil::events {
namespace {

v1::Process proc(uint32_t pid, uint32_t ppid, const std::string& bin) {
  v1::Process p;
  p.set_pid(pid);
  p.set_ppid(ppid);
  p.set_binary(bin);
  p.set_exec_id("n:" + std::to_string(pid));
  return p;
}

TEST(ProcessTable, EvictsLeastRecentlyUsedAndCounts) {
  ProcessTable t(2);
  t.upsert(proc(1, 0, "/a"), 1);
  t.upsert(proc(2, 1, "/b"), 2);
  ASSERT_NE(t.find(1), nullptr);  // 1 is now the most recently used
  t.upsert(proc(3, 1, "/c"), 3);
  EXPECT_EQ(t.size(), 2u);
  EXPECT_EQ(t.evictions(), 1u);
  EXPECT_EQ(t.find(2), nullptr);
  EXPECT_NE(t.find(1), nullptr);
  EXPECT_NE(t.find(3), nullptr);
}

TEST(ProcessTable, AncestorsNearestFirstAndBounded) {
  ProcessTable t(16);
  t.upsert(proc(1, 0, "/sbin/init"), 1);
  t.upsert(proc(10, 1, "/usr/sbin/sshd"), 2);
  t.upsert(proc(20, 10, "/bin/bash"), 3);
  google::protobuf::RepeatedPtrField<v1::Ancestor> chain;
  t.ancestors(20, 8, &chain);
  ASSERT_EQ(chain.size(), 3);
  EXPECT_EQ(chain[0].binary(), "/bin/bash");
  EXPECT_EQ(chain[1].binary(), "/usr/sbin/sshd");
  EXPECT_EQ(chain[2].binary(), "/sbin/init");
  google::protobuf::RepeatedPtrField<v1::Ancestor> two, none;
  t.ancestors(20, 2, &two);
  t.ancestors(999, 8, &none);
  EXPECT_EQ(two.size(), 2);
  EXPECT_TRUE(none.empty());
}

TEST(ProcessTable, AncestorArgsAreASummary) {
  ProcessTable t(4);
  v1::Process p = proc(9, 0, "/usr/bin/python3");
  p.add_args("python3");
  p.add_args(std::string(1000, 'x'));
  p.add_args("--never-seen");
  t.upsert(p, 1);
  google::protobuf::RepeatedPtrField<v1::Ancestor> chain;
  t.ancestors(9, 4, &chain);
  ASSERT_EQ(chain.size(), 1);
  EXPECT_TRUE(chain[0].args_truncated());
  ASSERT_EQ(chain[0].args_size(), 2);
  EXPECT_EQ(chain[0].args(0), "python3");
  EXPECT_EQ(chain[0].args(1).size(), kAncestorArgsBytes - 8 - 1);
  EXPECT_EQ(t.find(9)->args(1).size(), 1000u);  // the table keeps the full argv
}

TEST(ProcessTable, SelfParentDoesNotLoop) {
  ProcessTable t(4);
  t.upsert(proc(5, 5, "/x"), 1);
  google::protobuf::RepeatedPtrField<v1::Ancestor> chain;
  t.ancestors(5, 100, &chain);
  EXPECT_EQ(chain.size(), 1);
}

ExecRecord exec(uint32_t pid, uint32_t ppid, const std::string& path, uint64_t t) {
  ExecRecord r;
  r.ktimeNs = t;
  r.pid = r.tid = pid;
  r.ppid = ppid;
  r.path = path;
  r.args = {path, "arg"};
  r.cwd = "/work";
  r.procStartNs = t - 10;
  return r;
}

class TrackerTest : public ::testing::Test {
 protected:
  ProcessTracker tracker{{"node1", 1024, 32}, Clock(0), nullptr};
};

TEST_F(TrackerTest, ExecIdsChainThroughForkAndExec) {
  auto e1 = tracker.onRecord(exec(100, 1, "/bin/bash", 1000));
  ASSERT_TRUE(e1);
  const std::string bashId = e1->exec().process().exec_id();
  EXPECT_EQ(bashId, "node1:1000:100");

  // bash forks 101, which execs curl.
  ForkRecord f;
  f.pid = 101;
  f.ppid = 100;
  f.procStartNs = 2000;
  EXPECT_FALSE(tracker.onRecord(f));
  auto e2 = tracker.onRecord(exec(101, 101 - 1, "/usr/bin/curl", 3000));
  ASSERT_TRUE(e2);
  const auto& p = e2->exec().process();
  EXPECT_EQ(p.parent_exec_id(), bashId);
  ASSERT_EQ(e2->ancestors_size(), 1);
  EXPECT_EQ(e2->ancestors(0).binary(), "/bin/bash");
  EXPECT_EQ(e2->ancestors(0).exec_id(), bashId);
  EXPECT_EQ(e2->time().nanos(), 3000);

  ExitRecord x;
  x.ktimeNs = 5000;
  x.pid = x.tid = 101;
  x.ppid = 100;
  x.status = 3 << 8;
  x.procStartNs = 2000;
  auto e3 = tracker.onRecord(x);
  ASSERT_TRUE(e3);
  EXPECT_EQ(e3->exit().process().exec_id(), p.exec_id());  // stable from exec to exit
  EXPECT_EQ(e3->exit().process().binary(), "/usr/bin/curl");
  EXPECT_EQ(e3->exit().exit_code(), 3);
  EXPECT_EQ(e3->exit().lifetime().nanos(), 3000);
  EXPECT_FALSE(e3->exit().has_rss_bytes()) << "no RSS where the kernel did not give one";
  EXPECT_EQ(tracker.table().size(), 1u);  // curl is gone, bash stays
}

TEST_F(TrackerTest, ExitMemoryInBytes) {
  tracker.onRecord(exec(300, 1, "/usr/bin/make", 1000));
  ExitRecord x;
  x.pid = x.tid = 300;
  x.procStartNs = 1000;
  x.peakRssPages = 30;
  x.rssPages = 20;
  auto ev = tracker.onRecord(x);
  ASSERT_TRUE(ev);
  const auto page = static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
  EXPECT_EQ(ev->exit().peak_rss_bytes(), 30 * page);
  ASSERT_TRUE(ev->exit().has_rss_bytes());
  EXPECT_EQ(ev->exit().rss_bytes(), 20 * page);
}

TEST_F(TrackerTest, ForkedChildWithoutExecCarriesItsParentsProgram) {
  tracker.onRecord(exec(200, 1, "/usr/bin/python3", 1000));
  ForkRecord f;
  f.pid = 201;
  f.ppid = 200;
  f.procStartNs = 1500;
  tracker.onRecord(f);
  ExitRecord x;
  x.ktimeNs = 1600;
  x.pid = x.tid = 201;
  x.ppid = 200;
  x.status = 9;
  x.procStartNs = 1500;
  auto ev = tracker.onRecord(x);
  ASSERT_TRUE(ev);
  EXPECT_TRUE(ev->exit().process().forked_only());
  EXPECT_EQ(ev->exit().process().binary(), "/usr/bin/python3");
  EXPECT_EQ(ev->exit().signal(), 9);
  EXPECT_EQ(ev->exit().process().exec_id(), "node1:1500:201");
}

TEST_F(TrackerTest, ExitOfUnknownProcessStillReported) {
  ExitRecord x;
  x.ktimeNs = 10;
  x.pid = 300;
  x.comm = "ghost";
  x.procStartNs = 5;
  auto ev = tracker.onRecord(x);
  ASSERT_TRUE(ev);
  EXPECT_EQ(ev->exit().process().comm(), "ghost");
  EXPECT_TRUE(ev->exit().process().binary().empty());
}

TEST_F(TrackerTest, ReusedPidIsNotConfusedWithTheOldProcess) {
  tracker.onRecord(exec(400, 1, "/old", 1000));
  ExitRecord x;  // an exit whose start time is not the table entry's: a different process
  x.ktimeNs = 90'000'000'000;
  x.pid = 400;
  x.procStartNs = 50'000'000'000;
  auto ev = tracker.onRecord(x);
  ASSERT_TRUE(ev);
  EXPECT_TRUE(ev->exit().process().binary().empty());
  EXPECT_EQ(tracker.table().size(), 1u);
}

TEST_F(TrackerTest, ScriptIsMadeAbsoluteAgainstCwd) {
  ExecRecord r = exec(500, 1, "/usr/bin/dash", 1000);
  r.flags = 1 << 3;  // VIGIL_EXEC_INTERP
  r.filename = "./sub/../run.sh";
  r.interp = "/bin/sh";
  auto ev = tracker.onRecord(r);
  ASSERT_TRUE(ev);
  EXPECT_EQ(ev->exec().process().script(), "/work/run.sh");
  EXPECT_EQ(ev->exec().process().interpreter(), "/bin/sh");
  EXPECT_EQ(ev->exec().process().binary(), "/usr/bin/dash");
}

TEST_F(TrackerTest, PolicyEventCarriesTheExecContext) {
  tracker.onRecord(exec(600, 1, "/bin/bash", 1000));
  ExecRecord r = exec(601, 600, "/tmp/evil", 2000);
  r.verdict = 2;  // VIGIL_VERDICT_KILL
  auto execEv = tracker.onRecord(r);
  ASSERT_TRUE(execEv);
  auto ev = tracker.policyEventFor(r, *execEv);
  ASSERT_EQ(ev->type(), v1::EVENT_TYPE_POLICY);
  EXPECT_EQ(ev->policy().action(), "kill");
  EXPECT_EQ(ev->policy().mechanism(), "sigkill");
  EXPECT_EQ(ev->policy().process().exec_id(), execEv->exec().process().exec_id());
  EXPECT_EQ(ev->policy().process().binary(), "/tmp/evil");
  ASSERT_EQ(ev->ancestors_size(), 1);
  EXPECT_EQ(ev->ancestors(0).binary(), "/bin/bash");
  r.verdict = 1;  // VIGIL_VERDICT_AUDIT
  auto audit = tracker.policyEventFor(r, *execEv);
  EXPECT_EQ(audit->policy().action(), "audit");
  EXPECT_TRUE(audit->policy().mechanism().empty());
}

TEST(TrackerSeed, ReadsAFakeProcTree) {
  namespace fs = std::filesystem;
  fs::path root = fs::temp_directory_path() / ("vigil-proc-" + std::to_string(getpid()));
  fs::remove_all(root);
  auto mk = [&](int pid, int ppid, const std::string& comm, const std::string& exe,
                uint32_t flags) {
    fs::path d = root / std::to_string(pid);
    fs::create_directories(d);
    std::ofstream(d / "stat") << pid << " (" << comm << ") S " << ppid << " 1 1 0 -1 " << flags
                              << " 0 0 0 0 0 0 0 0 20 0 1 0 500 0 0\n";
    std::ofstream(d / "status") << "Name:\t" << comm << "\nUid:\t1000\t0\t0\t0\nGid:\t50\t50\t50\t50\n";
    std::ofstream(d / "cmdline") << exe << '\0' << "--flag" << '\0';
    if (!exe.empty()) fs::create_symlink(exe, d / "exe");
  };
  mk(1, 0, "init", "/sbin/init", 0);
  mk(2, 0, "kthreadd", "", 0x00200000);  // a kernel thread: skipped
  mk(30, 1, "my (odd) name", "/usr/bin/app", 0);
  ProcessTracker tracker({"n", 64, 8}, Clock(0), nullptr);
  EXPECT_EQ(tracker.seedFromProc(root.string()), 2u);
  google::protobuf::RepeatedPtrField<v1::Ancestor> chain;
  tracker.table().ancestors(30, 8, &chain);
  ASSERT_EQ(chain.size(), 2);
  EXPECT_EQ(chain[0].binary(), "/usr/bin/app");
  EXPECT_EQ(chain[0].args(1), "--flag");
  EXPECT_EQ(chain[1].binary(), "/sbin/init");
  fs::remove_all(root);
}

}  // namespace
}  // namespace vigil::events
