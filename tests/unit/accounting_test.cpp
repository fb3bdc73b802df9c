// GetAccounting rows from a memory snapshot: bytes from pages, the peak as VmHWM, grouping by
// process, cgroup and pod (a cgroup's network bytes counted once), filters, sort and limit,
// and the requests that are refused.
#include "events/accounting.hpp"

#include <gtest/gtest.h>

#include <cstring>
#include <vector>

namespace vigil::events {
namespace {

vigil_mem_task task(uint32_t pid, uint64_t cgroup, uint64_t anonPages, uint64_t filePages = 0,
                    uint64_t shmemPages = 0, uint64_t hiwater = 0, uint32_t threads = 1) {
  vigil_mem_task t{};
  t.pid = pid;
  t.cgroup_id = cgroup;
  t.anon_pages = anonPages;
  t.file_pages = filePages;
  t.shmem_pages = shmemPages;
  t.hiwater_pages = hiwater;
  t.threads = threads;
  std::strcpy(t.comm, ("p" + std::to_string(pid)).c_str());
  return t;
}

AccountingContext context() {
  AccountingContext c;
  c.pageSize = 4096;
  c.cgroupPath = [](uint64_t id, uint32_t) {
    return id == 10 ? std::string("/kubepods/pod-a/c1")
           : id == 11 ? std::string("/kubepods/pod-a/c2")
                      : std::string("/system.slice/x.service");
  };
  c.workload = [](const std::string& path, uint32_t) {
    v1::Workload w;
    if (path.starts_with("/kubepods/pod-a")) {
      w.set_kind("pod");
      w.set_namespace_("shop");
      w.set_pod("cart");
      w.set_pod_uid("uid-a");
      w.set_container(path.back() == '1' ? "api" : "sidecar");
    } else {
      w.set_kind("host");
    }
    return w;
  };
  c.network = {{10, {1000, 2000}}, {20, {5, 6}}};
  c.cgroupMemory = [](const std::string& path) -> std::optional<uint64_t> {
    if (path == "/system.slice/x.service") return 123456;
    return std::nullopt;
  };
  c.cgroupMemoryPeak = [](const std::string& path) -> std::optional<uint64_t> {
    if (path == "/system.slice/x.service") return 654321;
    return std::nullopt;
  };
  return c;
}

const std::vector<vigil_mem_task> kTasks = {
    task(1, 20, 100, 50, 10, 200),   // host, RSS 160 pages, peak 200
    task(2, 10, 1000, 0, 0, 0, 16),  // pod container c1, peak = RSS (hiwater not yet set)
    task(3, 10, 10),                 // pod container c1 again
    task(4, 11, 300),                // pod container c2
};

TEST(Accounting, ProcessRowsInBytesLargestFirst) {
  auto r = buildAccounting(kTasks, {}, context());
  ASSERT_EQ(r.rows_size(), 4);
  EXPECT_EQ(r.processes(), 4u);
  EXPECT_EQ(r.rows(0).pid(), 2u);
  EXPECT_EQ(r.rows(0).memory().rss_bytes(), 1000u * 4096);
  EXPECT_EQ(r.rows(0).memory().peak_rss_bytes(), 1000u * 4096) << "peak is at least the RSS";
  EXPECT_EQ(r.rows(0).threads(), 16u);
  EXPECT_EQ(r.rows(0).workload().pod(), "cart");
  EXPECT_EQ(r.rows(0).network_rx_bytes(), 1000u);
  const auto& host = r.rows(2);
  EXPECT_EQ(host.pid(), 1u);
  EXPECT_EQ(host.memory().rss_bytes(), 160u * 4096);
  EXPECT_EQ(host.memory().anon_bytes(), 100u * 4096);
  EXPECT_EQ(host.memory().file_bytes(), 50u * 4096);
  EXPECT_EQ(host.memory().shmem_bytes(), 10u * 4096);
  EXPECT_EQ(host.memory().peak_rss_bytes(), 200u * 4096);
  EXPECT_EQ(host.comm(), "p1");
  EXPECT_EQ(r.total().rss_bytes(), (160u + 1000 + 10 + 300) * 4096);
}

TEST(Accounting, CgroupsAndPodsGroupTheirProcesses) {
  v1::GetAccountingRequest byCgroup;
  byCgroup.set_group_by("cgroup");
  auto c = buildAccounting(kTasks, byCgroup, context());
  ASSERT_EQ(c.rows_size(), 3);
  EXPECT_EQ(c.rows(0).cgroup_path(), "/kubepods/pod-a/c1");
  EXPECT_EQ(c.rows(0).processes(), 2u);
  EXPECT_EQ(c.rows(0).memory().rss_bytes(), 1010u * 4096);
  EXPECT_EQ(c.rows(0).network_rx_bytes(), 1000u) << "a cgroup's bytes count once";
  EXPECT_EQ(c.rows(2).cgroup_memory_bytes(), 123456u);
  EXPECT_EQ(c.rows(2).cgroup_memory_peak_bytes(), 654321u);

  v1::GetAccountingRequest byPod;
  byPod.set_group_by("pod");
  auto p = buildAccounting(kTasks, byPod, context());
  ASSERT_EQ(p.rows_size(), 2);
  EXPECT_EQ(p.rows(0).workload().pod(), "cart");
  EXPECT_EQ(p.rows(0).workload().container(), "") << "a pod row spans its containers";
  EXPECT_EQ(p.rows(0).processes(), 3u);
  EXPECT_EQ(p.rows(0).memory().rss_bytes(), 1310u * 4096);
  EXPECT_EQ(p.rows(1).cgroup_path(), "/system.slice/x.service") << "outside pods: by cgroup";
}

TEST(Accounting, FiltersSortAndLimit) {
  v1::GetAccountingRequest req;
  req.add_pids(4);
  req.add_pids(999);
  auto r = buildAccounting(kTasks, req, context());
  ASSERT_EQ(r.rows_size(), 1);
  EXPECT_EQ(r.rows(0).pid(), 4u);

  v1::GetAccountingRequest prefix;
  prefix.set_cgroup_prefix("/kubepods/pod-a");
  EXPECT_EQ(buildAccounting(kTasks, prefix, context()).rows_size(), 3);
  prefix.set_cgroup_prefix("/kubepods/pod");  // a whole component only
  EXPECT_EQ(buildAccounting(kTasks, prefix, context()).rows_size(), 0);

  v1::GetAccountingRequest net;
  net.set_sort_by("network");
  net.set_limit(2);
  auto n = buildAccounting(kTasks, net, context());
  ASSERT_EQ(n.rows_size(), 2);
  EXPECT_EQ(n.rows(0).pid(), 2u);  // 3000 bytes, then the larger RSS of the same cgroup
  EXPECT_EQ(n.rows(1).pid(), 3u);
}

TEST(Accounting, BadRequestsNameTheField) {
  v1::GetAccountingRequest r;
  r.set_group_by("node");
  EXPECT_EQ(checkAccountingRequest(r).error().context(),
            "group_by: 'node' is not process, cgroup or pod");
  r.Clear();
  r.set_sort_by("cpu");
  EXPECT_EQ(checkAccountingRequest(r).error().context(), "sort_by: 'cpu' is not memory or network");
  r.Clear();
  r.set_cgroup_prefix("system.slice");
  EXPECT_FALSE(checkAccountingRequest(r).ok());
  r.Clear();
  r.add_pids(0);
  EXPECT_FALSE(checkAccountingRequest(r).ok());
  EXPECT_TRUE(checkAccountingRequest({}).ok());
  r.Clear();
  r.mutable_since()->set_seconds(1'700'000'000);
  r.set_group_by("pod");
  EXPECT_EQ(checkAccountingRequest(r).error().context(),
            "since: exited processes are process rows; it cannot be used with group_by pod");
  r.set_group_by("process");
  EXPECT_TRUE(checkAccountingRequest(r).ok());
  r.mutable_since()->set_nanos(-1);
  EXPECT_EQ(checkAccountingRequest(r).error().context().rfind("since: not a valid time", 0), 0u);
  r.mutable_since()->set_nanos(0);
  r.mutable_since()->set_seconds(-5);
  EXPECT_FALSE(checkAccountingRequest(r).ok());
  r.mutable_since()->set_seconds(253402300800);  // past 9999-12-31
  EXPECT_FALSE(checkAccountingRequest(r).ok());
}

v1::AccountingRow exitedRow(uint32_t pid, uint64_t cgroup, const std::string& path,
                            uint64_t rss) {
  v1::AccountingRow row;
  row.set_pid(pid);
  row.set_cgroup_id(cgroup);
  row.set_cgroup_path(path);
  row.mutable_memory()->set_rss_bytes(rss);
  row.mutable_memory()->set_peak_rss_bytes(rss * 2);
  row.mutable_exited()->set_has_rss(true);
  return row;
}

TEST(Accounting, ExitedProcessesJoinTheProcessRowsNotTheTotals) {
  AccountingContext c = context();
  c.exited = {exitedRow(90, 10, "/kubepods/pod-a/c1", 5'000'000),
              exitedRow(91, 20, "/system.slice/x.service", 1)};
  v1::GetAccountingRequest req;
  req.mutable_since()->set_seconds(1);
  auto all = buildAccounting(kTasks, req, c);
  auto without = buildAccounting(kTasks, {}, context());
  EXPECT_EQ(all.total().rss_bytes(), without.total().rss_bytes()) << "totals are live memory";
  EXPECT_EQ(all.processes(), without.processes());
  ASSERT_EQ(all.rows_size(), without.rows_size() + 2);
  // Sorted with the live rows by RSS: 5 MB is above every live process here (1000 pages).
  EXPECT_EQ(all.rows(0).pid(), 90u);
  EXPECT_TRUE(all.rows(0).has_exited());
  EXPECT_EQ(all.rows(0).network_rx_bytes(), 1000u) << "its cgroup's bytes, as a live row";
  EXPECT_EQ(all.rows(all.rows_size() - 1).pid(), 91u);

  // The pid and cgroup filters apply to them too.
  req.add_pids(91);
  auto one = buildAccounting(kTasks, req, c);
  ASSERT_EQ(one.rows_size(), 1);
  EXPECT_EQ(one.rows(0).pid(), 91u);
  req.clear_pids();
  req.set_cgroup_prefix("/kubepods/");
  auto pods = buildAccounting(kTasks, req, c);
  for (const auto& row : pods.rows()) EXPECT_NE(row.pid(), 91u);

  // Grouped views never carry them (the request check refuses since there).
  req.Clear();
  req.set_group_by("cgroup");
  auto grouped = buildAccounting(kTasks, req, c);
  for (const auto& row : grouped.rows()) EXPECT_FALSE(row.has_exited());
}

}  // namespace
}  // namespace vigil::events
