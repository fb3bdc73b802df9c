// `vigil top`: flags to GetAccountingRequest, bad values, the table, byte units; and the OOM
// event in `vigil events`.
#include <gtest/gtest.h>

#include "cli/src/app.hpp"
#include "cli/src/format.hpp"
#include "cli/src/top.hpp"
#include "cli_test_support.hpp"

namespace vigil::cli {
namespace {

TEST(cliTop, FlagsFillTheRequest) {
  auto c = test_support::parseCommand<TopCommand>(
      {"top", "--by", "pod", "--sort", "network", "-n", "5", "--pid", "10,20", "--cgroup",
       "/kubepods.slice/", "--interval", "2s"});
  EXPECT_EQ(c.request.group_by(), "pod");
  EXPECT_EQ(c.request.sort_by(), "network");
  EXPECT_EQ(c.request.limit(), 5u);
  EXPECT_EQ(c.request.pids_size(), 2);
  EXPECT_EQ(c.request.cgroup_prefix(), "/kubepods.slice/");
  EXPECT_EQ(c.interval, std::chrono::seconds(2));
  EXPECT_FALSE(c.once);

  auto d = test_support::parseCommand<TopCommand>({"top"});
  EXPECT_EQ(d.request.limit(), 25u) << "a refreshing view shows a screenful";
  auto json = test_support::parseCommand<TopCommand>({"top", "-o", "json"});
  EXPECT_TRUE(json.once) << "json is one snapshot";
  EXPECT_EQ(json.format, TopFormat::kJson);
  EXPECT_EQ(json.request.limit(), 0u);
}

TEST(cliTop, BadFlagsExitTwoWithOneClearMessage) {
  struct Case {
    std::vector<std::string> args;
    std::string message;
  };
  const std::vector<Case> cases = {
      {{"top", "--by", "node"}, "--by: node not in"},
      {{"top", "--sort", "cpu"}, "--sort: cpu not in"},
      {{"top", "--interval", "10ms"}, "--interval: expected a duration of at least 100ms"},
      {{"top", "--pid", "x"}, "--pid: expected a process id, got 'x'"},
      {{"top", "--cgroup", "kubepods"}, "--cgroup: expected a cgroup path prefix"},
      {{"top", "-n", "-1"}, "--limit: expected a whole number"},
      {{"top", "-o", "yaml"}, "--output: yaml not in"},
      {{"top", "--since", "yesterday"}, "--since: expected a duration such as 10m"},
      {{"top", "--since", "10m", "--by", "pod"},
       "--since: exited processes are shown as processes: use it with --by process"},
  };
  for (const auto& c : cases) test_support::expectUsageError(c.args, c.message, "vigil top");
}

TEST(cliTop, SinceIsKeptAsGivenSoThatADurationMovesWithEachRefresh) {
  auto c = test_support::parseCommand<TopCommand>({"top", "--since", "10m", "--once"});
  EXPECT_EQ(c.since, "10m");
  EXPECT_FALSE(c.request.has_since()) << "set at each refresh from the clock";
  auto d = test_support::parseCommand<TopCommand>({"top"});
  EXPECT_TRUE(d.since.empty());
}

TEST(cliTop, ExitedProcessesSayWhenAndHow) {
  v1::GetAccountingResponse r;
  r.mutable_time()->set_seconds(1000);
  auto* live = r.add_rows();
  live->set_pid(7);
  live->set_comm("nginx");
  live->set_threads(2);
  live->mutable_memory()->set_rss_bytes(10u << 20);
  auto* gone = r.add_rows();
  gone->set_pid(8);
  gone->set_comm("batch");
  gone->mutable_memory()->set_rss_bytes(300u << 20);
  gone->mutable_memory()->set_peak_rss_bytes(512u << 20);
  gone->mutable_exited()->mutable_time()->set_seconds(988);
  gone->mutable_exited()->set_signal(9);
  gone->mutable_exited()->set_has_rss(true);
  auto* old = r.add_rows();
  old->set_pid(9);
  old->set_comm("cron");
  old->mutable_memory()->set_peak_rss_bytes(1u << 20);
  old->mutable_exited()->mutable_time()->set_seconds(940);
  old->mutable_exited()->set_exit_code(1);
  std::string text = formatTop(r, "process", false, true);
  EXPECT_NE(text.find("EXITED"), std::string::npos) << text;
  EXPECT_NE(text.find("8    batch  -    300.0 MiB  -"), std::string::npos) << text;
  EXPECT_NE(text.find("512.0 MiB"), std::string::npos) << text;
  EXPECT_NE(text.find("12.0s ago, SIGKILL"), std::string::npos) << text;
  EXPECT_NE(text.find("9    cron   -    -"), std::string::npos) << "no RSS at exit: -\n" << text;
  EXPECT_NE(text.find("1m0s ago, code 1"), std::string::npos) << text;
  EXPECT_EQ(formatTop(r, "process", false).find("EXITED"), std::string::npos)
      << "no column without --since";
}

TEST(cliTop, Table) {
  v1::GetAccountingResponse r;
  r.set_processes(2);
  r.set_snapshot_ns(123456);
  r.mutable_total()->set_rss_bytes(3u << 20);
  auto* row = r.add_rows();
  row->set_pid(42);
  row->set_comm("postgres");
  row->set_threads(3);
  row->mutable_memory()->set_rss_bytes(64u << 20);
  row->mutable_memory()->set_anon_bytes(48u << 20);
  row->mutable_memory()->set_peak_rss_bytes(80u << 20);
  row->mutable_workload()->set_kind("pod");
  row->mutable_workload()->set_namespace_("db");
  row->mutable_workload()->set_pod("pg-0");
  row->mutable_workload()->set_container("postgres");
  std::string text = formatTop(r, "process", false);
  EXPECT_NE(text.find("Processes: 2, RSS 3.0 MiB"), std::string::npos) << text;
  EXPECT_NE(text.find("snapshot 123 us"), std::string::npos) << text;
  EXPECT_NE(text.find("PID  COMM"), std::string::npos) << text;
  EXPECT_NE(text.find("42   postgres  3    64.0 MiB  48.0 MiB"), std::string::npos) << text;
  EXPECT_NE(text.find("80.0 MiB"), std::string::npos) << text;
  EXPECT_NE(text.find("db/pg-0/postgres"), std::string::npos) << text;
  EXPECT_EQ(humanBytes(0), "0 B");
  EXPECT_EQ(humanBytes(1023), "1023 B");
  EXPECT_EQ(humanBytes(1536), "1.5 KiB");
  EXPECT_EQ(humanBytes(5ull << 30), "5.0 GiB");
}

TEST(cliTop, OomEventsAreATypeAndPrintTheirMemory) {
  auto c = test_support::parseCommand<EventsCommand>({"events", "--type", "oom"});
  ASSERT_EQ(c.request.types_size(), 1);
  EXPECT_EQ(c.request.types(0), v1::EVENT_TYPE_OOM_KILL);

  v1::Event ev;
  ev.set_type(v1::EVENT_TYPE_OOM_KILL);
  ev.mutable_time()->set_seconds(1795700000);
  auto* oom = ev.mutable_oom_kill();
  oom->mutable_process()->set_pid(77);
  oom->mutable_process()->set_binary("/usr/bin/hog");
  oom->mutable_process()->set_cgroup_path("/oom-test");
  oom->set_anon_rss_bytes(1000);
  oom->set_file_rss_bytes(20);
  std::string line = formatCompact(ev, false);
  EXPECT_NE(line.find("OOM   pid=77 uid=0 /usr/bin/hog  rss=1020 (anon 1000, file 20, shmem 0)"
                      "  cgroup=/oom-test"),
            std::string::npos)
      << line;
  EXPECT_EQ(line.find("memcg="), std::string::npos) << "no memory cgroup known: " << line;
  oom->set_memory_cgroup("/oom-test");
  EXPECT_EQ(formatCompact(ev, false).find("memcg="), std::string::npos)
      << "cgroup v2: the memory cgroup is the cgroup";
  oom->set_memory_cgroup("/batch/limited");  // a hybrid host's v1 memory hierarchy
  EXPECT_NE(formatCompact(ev, false).find("  cgroup=/oom-test  memcg=/batch/limited"),
            std::string::npos)
      << formatCompact(ev, false);
}

}  // namespace
}  // namespace vigil::cli
